"""Flush plans: views summed per (ranking, article), keyed requests kept apart, script calls."""

from __future__ import annotations

import pytest

from ranker.config import Settings
from ranker.ingest.plan import (
    CHUNK,
    FlushPlan,
    KeyedBatch,
    plan_flush,
    plan_flush_yielding,
    ranking_call,
    script_call,
)
from tests.support.waiting import LoopTurns


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


def test_plan_flush_sums_each_window_at_its_own_half_lives() -> None:
    settings = Settings(
        sections=("sports", "world"),
        half_life_s=100.0,
        windows={"short": 10.0, "same": 100.0},
        window_half_lives={"short": {"world": 50.0}},
    )
    views = [("a", "sports", 1000.0, 1.0), ("a", "sports", 900.0, 2.0), ("b", "world", 950.0, 1.0)]
    plan = plan_flush([views], {}, settings, keyed=[("t1", "r1", [("c", "world", 990.0, 4.0)])])
    assert dict(plan.increments["sports"]) == {"a": pytest.approx(1.0 + 2.0 * 2**-1)}
    short = plan.windows["short"]
    assert dict(short["sports"]) == {"a": pytest.approx(1.0 + 2.0 * 2**-10)}
    assert dict(short["world"]) == {"b": pytest.approx(2**-1)}
    assert dict(short["all"]) == {
        "a": pytest.approx(1.0 + 2.0 * 2**-10),
        "b": pytest.approx(2**-5),
    }
    # A window with the default's half-lives has the default's amounts.
    assert {r: dict(a) for r, a in plan.windows["same"].items()} == {
        r: dict(a) for r, a in plan.increments.items()
    }
    (batch,) = plan.keyed
    assert dict(batch.windows["short"]["world"]) == {"c": pytest.approx(4.0 * 2**-0.2)}
    assert dict(batch.windows["short"]["all"]) == {"c": pytest.approx(4.0 * 2**-1)}
    assert dict(batch.increments["world"]) == {"c": pytest.approx(4.0 * 2**-0.1)}
    assert dict(plan.views_by_section) == {"sports": 2, "world": 2}


def test_plan_flush_with_no_windows_keeps_the_default_profile_only() -> None:
    settings = Settings(sections=("sports",), windows={})
    plan = plan_flush([[("a", "sports", 1000.0, 1.0)]], {}, settings)
    assert plan.windows == {}
    assert dict(plan.increments["all"]) == {"a": 1.0}


def test_a_ranking_call_carries_its_tokens_once_and_every_profiles_amounts() -> None:
    plan = FlushPlan(
        1000.0,
        {"sports": {"a": 1.0}},
        keyed=[
            KeyedBatch("t1", {"sports": {"a": 2.0}}, "r1", {"short": {"sports": {"a": 0.5}}}),
            KeyedBatch("t2", {"sports": {"b": 1.0}}, "r2", {"short": {"sports": {"b": 0.25}}}),
        ],
        windows={"short": {"sports": {"a": 0.125}}},
    )
    assert ranking_call(plan, "sports", set(), (None, "short")) == (
        ["t1", "t2"],
        [{"a": 3.0, "b": 1.0}, {"a": 0.625, "b": 0.25}],
    )
    assert ranking_call(plan, "sports", {"t1"}, (None, "short")) == (
        ["t2"],
        [{"a": 1.0, "b": 1.0}, {"a": 0.125, "b": 0.25}],
    )
    assert ranking_call(plan, "world", set(), (None, "short")) == ([], [{}, {}])


async def test_a_yielding_plan_lets_other_tasks_run_and_plans_the_same() -> None:
    # A flush of thousands of views takes milliseconds to sum: list reads must not wait for it.
    settings = Settings(sections=("sports", "world"), windows={"short": 60.0})
    views = [
        (f"a{i % 700}", ("sports", "world")[i % 2], 1000.0 - i % 50, 1.0 + i % 3)
        for i in range(3 * CHUNK + 10)
    ]
    keyed = [("t1", "r1", views[: CHUNK + 1])]
    async with LoopTurns() as loop:
        # slice_s=0: a turn of the loop before every chunk of views.
        plan = await plan_flush_yielding([views], {}, settings, keyed, slice_s=0)
    assert loop.turns >= 6  # 4 chunks of the unkeyed views, 2 of the keyed
    assert plan == plan_flush([views], {}, settings, keyed)
