"""Flush plans: views summed per (ranking, article), keyed requests kept apart, script calls."""

from __future__ import annotations

import pytest

from ranker.config import Settings
from ranker.flush import FlushPlan, KeyedBatch, plan_flush, script_call


def test_plan_flush_coalesces_views_into_one_amount_per_ranking_and_article() -> None:
    settings = Settings(sections=("sports", "world"), section_half_lives={"world": 100.0})
    views = [
        ("a", "sports", 1000.0, 1.0),
        ("a", "sports", 1000.0 - 7200.0, 2.0),
        ("b", "world", 900.0, 3.0),
    ]
    plan = plan_flush([views[:1], views[1:]], {"a": ("Title", None)}, settings)
    assert plan.reference_ts == 1000.0
    assert dict(plan.increments["sports"]) == {"a": pytest.approx(2.0)}
    assert dict(plan.increments["world"]) == {"b": pytest.approx(1.5)}
    assert dict(plan.increments["all"]) == {
        "a": pytest.approx(2.0),
        "b": pytest.approx(3.0 * 2 ** (-100 / 7200)),
    }
    assert plan.metadata == {"a": ("Title", None)}


def test_plan_flush_keeps_each_keyed_request_apart_and_counts_every_view_by_section() -> None:
    settings = Settings(sections=("sports", "world"))
    plan = plan_flush(
        [[("a", "sports", 1000.0, 1.0)]],
        {},
        settings,
        keyed=[("t1", "answer 1", [("a", "sports", 1000.0, 2.0), ("b", "world", 1000.0, 1.0)])],
    )
    assert dict(plan.increments["sports"]) == {"a": 1.0}
    (batch,) = plan.keyed
    assert batch.token == "t1"
    assert batch.record == "answer 1"
    assert {r: dict(a) for r, a in batch.increments.items()} == {
        "sports": {"a": 2.0},
        "world": {"b": 1.0},
        "all": {"a": 2.0, "b": 1.0},
    }
    assert dict(plan.views_by_section) == {"sports": 2, "world": 1}
    assert plan.rankings() == {"sports", "world", "all"}


def test_a_script_call_merges_the_keyed_batches_it_carries_with_the_rest() -> None:
    plan = FlushPlan(
        1000.0,
        {"sports": {"a": 1.0}},
        keyed=[
            KeyedBatch("t1", {"sports": {"a": 2.0, "b": 1.0}}, "r1"),
            KeyedBatch("t2", {"world": {"c": 1.0}}, "r2"),
            KeyedBatch("t3", {"sports": {"b": 4.0}}, "r3"),
            KeyedBatch("t1", {"sports": {"a": 2.0, "b": 1.0}}, "r1"),  # the same batch again
        ],
    )
    assert script_call(plan, "sports", set()) == (["t1", "t3"], {"a": 3.0, "b": 5.0})
    # Sent again without a batch the ranking had counted: its share is left out.
    assert script_call(plan, "sports", {"t1"}) == (["t3"], {"a": 1.0, "b": 4.0})
    assert script_call(plan, "world", set()) == (["t2"], {"c": 1.0})
    assert script_call(plan, "national", set()) == ([], {})
