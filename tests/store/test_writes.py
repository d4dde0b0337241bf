"""The store's writes against a real Redis, with time passed in by hand: decay, rebasing, pruning,
caps, and keyed batches counted once."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import pytest
from redis.asyncio import Redis

from ranker.config import DEFAULT_WINDOWS
from ranker.decay import HALF_LIFE_SETTLE_S
from ranker.ingest.idempotency import FINGERPRINT_LENGTH
from ranker.ingest.plan import FlushPlan, KeyedBatch
from ranker.store import RankingStore
from tests.support.store import T0, view

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too


async def scores(store: RankingStore, ranking: str, now: float) -> dict[str, float]:
    return {item.article_id: item.score for item in (await store.top(ranking, 100, now)).items}


async def test_a_view_is_worth_half_as_much_one_half_life_later(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store(half_life_s=600.0)
    await view(store, "a", T0, T0, w=3.0)
    assert await scores(store, "sports", T0) == {"a": 3.0}
    assert await scores(store, "sports", T0 + 600) == {"a": pytest.approx(1.5, rel=1e-15)}
    assert await scores(store, "all", T0 + 1800) == {"a": pytest.approx(0.375, rel=1e-15)}


async def test_a_late_view_counts_at_its_own_time(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store(half_life_s=600.0)
    await view(store, "a", T0, T0)
    await view(store, "b", T0 - 600, T0 + 1)  # arrives later, happened a half-life earlier
    got = await scores(store, "sports", T0)
    assert got == {"a": 1.0, "b": pytest.approx(0.5, rel=1e-15)}


async def test_decay_runs_past_double_range_by_rebasing_exactly(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    # 3000 half-lives: without rebasing, stored values would pass 2**1024 and become inf.
    store = make_store(half_life_s=1.0)
    for step in range(0, 3001, 10):
        await view(store, "steady", T0 + step, T0 + step)
    now = T0 + 3000
    landmark = float(await redis.hget(store.keys.decay("sports"), "landmark") or "nan")
    assert landmark > T0 + 2000
    stored = await redis.zscore(store.keys.scores("sports"), "steady")
    assert stored is not None
    assert math.isfinite(stored)
    # A view every 10 half-lives: 1 + 2**-10 + 2**-20 + ... = 1 / (1 - 2**-10).
    assert await scores(store, "sports", now) == {"steady": pytest.approx(1 / (1 - 2**-10))}


async def test_a_changed_half_life_keeps_current_scores_and_decays_at_the_new_rate(
    make_store: Callable[..., RankingStore],
) -> None:
    await view(make_store(half_life_s=600.0), "a", T0, T0)
    store = make_store(half_life_s=60.0)
    later = T0 + HALF_LIFE_SETTLE_S
    await view(store, "b", later, later)
    got = await store.top("sports", 10, later + 60)
    assert got.half_life_s == 60.0
    # a was worth 2**-(300/600) when the half-life changed, then lost half in one new half-life.
    assert {item.article_id: item.score for item in got.items} == {
        "a": pytest.approx(2**-0.5 / 2, rel=1e-12),
        "b": pytest.approx(0.5, rel=1e-12),
    }


async def test_replicas_that_disagree_on_a_half_life_do_not_rescale_on_every_flush(
    make_store: Callable[..., RankingStore],
) -> None:
    old, new = make_store(half_life_s=7200.0), make_store(half_life_s=3600.0)
    await view(old, "steady", T0, T0 + HALF_LIFE_SETTLE_S)
    # A rolling deploy: flushes alternate between replicas a few milliseconds apart, their
    # clocks two seconds apart. The first switch may happen; the rest must wait.
    now = T0 + 2 * HALF_LIFE_SETTLE_S
    for i in range(200):
        replica, skew = (new, 2.0) if i % 2 else (old, 0.0)
        await view(replica, "other", now, now + skew)
        now += 0.002
    ranking = await new.top("sports", 10, now)
    assert ranking.half_life_s == 3600.0
    steady = next(item.score for item in ranking.items if item.article_id == "steady")
    # One conversion at most, off by at most the two seconds of skew.
    switched = T0 + 2 * HALF_LIFE_SETTLE_S
    exact = 2 ** -((switched - T0) / 7200) * 2 ** -((now - switched) / 3600)
    assert steady == pytest.approx(exact, rel=1e-3)


async def test_articles_decayed_below_the_prune_fraction_are_dropped(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store(half_life_s=60.0, prune_below=0.01)
    await view(store, "old", T0 - 60 * 7, T0)  # 2**-7 < 0.01: dropped
    await view(store, "fading", T0 - 60 * 6, T0)  # 2**-6 > 0.01: kept
    assert set(await scores(store, "sports", T0)) == {"fading"}


async def test_views_lighter_than_the_prune_floor_still_add_up(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store(prune_below=0.01)
    for _ in range(100):
        await view(store, "light", T0, T0, w=0.005)
    await view(store, "other", T0, T0)  # a flush without "light": now it may be dropped, but
    assert await scores(store, "sports", T0) == {  # at 0.5 it is far above the floor
        "light": pytest.approx(0.5),
        "other": 1.0,
    }


async def test_a_set_is_capped_by_dropping_its_lowest_members(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    store = make_store(max_set_size=100)
    plan = FlushPlan(T0, {"sports": {f"a{i}": 1.0 + i for i in range(150)}})
    await store.apply(plan, T0)
    assert await redis.zcard(store.keys.scores("sports")) == 100
    top = (await store.top("sports", 100, T0)).items
    assert [item.article_id for item in top][-1] == "a50"


async def test_a_flush_of_thousands_of_articles_adds_exactly_like_zincrby(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    # More articles than the script writes per chunk, over two flushes: every score must be
    # the exact double sum, as ZINCRBY would leave it, across chunk boundaries.
    store = make_store(max_set_size=10_000)
    first = {f"a{n}": 1.0 + n / 7 for n in range(2345)}
    second = {f"a{n}": 0.1 * n + 1 / 3 for n in range(0, 2345, 3)}
    await store.apply(FlushPlan(T0, {"sports": first}), T0)
    await store.apply(FlushPlan(T0, {"sports": second}), T0)
    pairs = await redis.zrange(store.keys.scores("sports"), 0, -1, withscores=True)
    stored = dict(cast("list[tuple[str, float]]", pairs))
    expected = {name: first[name] + second.get(name, 0.0) for name in first}
    assert len(stored) == len(expected)
    mismatched = [name for name in expected if stored[name] != expected[name]]
    assert mismatched == []


async def test_a_profile_without_an_article_of_another_is_left_alone(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    # The default profile has two articles, one window one, the other none: the script is sent
    # the ids once, and each profile must count its own amounts only, an empty one nothing.
    store = make_store(windows={"trending": 3600.0, "popular": 86_400.0})
    plan = FlushPlan(
        T0, {"sports": {"a": 1.0, "b": 2.0}}, windows={"trending": {"sports": {"b": 0.5}}}
    )
    await store.apply(plan, T0)
    assert await scores(store, "sports", T0) == {"b": 2.0, "a": 1.0}
    trending = await store.top("sports", 10, T0, "trending")
    assert [(item.article_id, item.score) for item in trending.items] == [("b", 0.5)]
    assert not await redis.exists(store.keys.scores("sports", "popular"))
    assert not await redis.exists(store.keys.decay("sports", "popular"))


def body(token: str) -> str:
    """A made-up fingerprint of the body a token was first sent with."""
    return token.ljust(FINGERPRINT_LENGTH, "f")


def keyed(token: str, increments: dict[str, dict[str, float]]) -> KeyedBatch:
    return KeyedBatch(token, increments, record=body(token) + f'{{"token": "{token}"}}')


async def test_unkeyed_and_keyed_groups_of_one_flush_add_up_exactly(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    plan = FlushPlan(
        T0,
        {"sports": {"a": 1.0, "b": 0.25}},
        keyed=[
            keyed("t1", {"sports": {"a": 2.0, "c": 0.5}, "all": {"a": 2.0, "c": 0.5}}),
            keyed("t2", {"sports": {"a": 4.0}, "world": {"d": 8.0}}),
        ],
    )
    assert await store.apply(plan, T0) == frozenset()
    assert await scores(store, "sports", T0) == {"a": 7.0, "b": 0.25, "c": 0.5}
    assert await scores(store, "all", T0) == {"a": 2.0, "c": 0.5}
    assert await scores(store, "world", T0) == {"d": 8.0}


async def test_apply_returns_the_tokens_some_ranking_had_counted_already(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    await store.apply(FlushPlan(T0, {}, keyed=[keyed("t1", {"sports": {"a": 1.0}})]), T0)
    plan = FlushPlan(
        T0,
        {"sports": {"b": 1.0}},
        keyed=[
            # Counted in "sports" before, not in "all": a retry all the same.
            keyed("t1", {"sports": {"a": 1.0}, "all": {"a": 1.0}}),
            keyed("t2", {"sports": {"a": 1.0}}),
        ],
    )
    assert await store.apply(plan, T0) == frozenset({"t1"})
    assert await scores(store, "sports", T0) == {"a": 2.0, "b": 1.0}
    assert await scores(store, "all", T0) == {"a": 1.0}


async def test_a_keyed_group_is_counted_once_per_ranking_however_often_it_is_applied(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    batch = keyed("t1", {"sports": {"a": 1.0}, "all": {"a": 1.0}})
    for _ in range(3):
        await store.apply(FlushPlan(T0, {"sports": {"b": 1.0}}, keyed=[batch]), T0)
    # The unkeyed views alongside are counted every time.
    assert await scores(store, "sports", T0) == {"a": 1.0, "b": 3.0}
    assert await scores(store, "all", T0) == {"a": 1.0}


async def test_a_keyed_group_is_counted_once_even_twice_in_one_flush(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    batch = keyed("t1", {"sports": {"a": 1.0}})
    assert await store.apply(FlushPlan(T0, {}, keyed=[batch, batch]), T0) == frozenset({"t1"})
    assert await scores(store, "sports", T0) == {"a": 1.0}


async def test_the_answer_of_a_keyed_batch_is_kept_once_applied_and_the_first_stays(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    assert await store.claim_keys({"t1": body("t1")}) == {"t1": body("t1")}
    await store.apply(FlushPlan(T0, {}, keyed=[keyed("t1", {"sports": {"a": 1.0}})]), T0)
    assert await store.idempotency_record("t1") == (body("t1"), '{"token": "t1"}')
    retry = KeyedBatch("t1", {"sports": {"a": 1.0}}, record=body("t1") + "the retry's")
    await store.apply(FlushPlan(T0, {}, keyed=[retry]), T0)
    assert await store.keep_answer("t1", body("t1") + "another") is False
    assert await store.idempotency_record("t1") == (body("t1"), '{"token": "t1"}')
    assert await store.claim_keys({"t2": body("t2")}) == {"t2": body("t2")}
    assert await store.keep_answer("t2", body("t2") + "nothing counted") is True
    assert await store.idempotency_record("t2") == (body("t2"), "nothing counted")


async def test_a_key_stands_for_the_first_body_it_was_kept_with(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    store = make_store()
    assert await store.idempotency_record("t1") == (None, None)
    first = {"t1": body("t1"), "t2": body("t2")}
    assert await store.claim_keys(first) == first
    # Before any answer is kept (the views may be counted in part already), and after.
    assert await store.claim_keys({"t1": body("t3")}) == {"t1": body("t1")}
    assert await store.idempotency_record("t1") == (body("t1"), None)
    assert await store.keep_answer("t1", body("t3") + "another body's") is False
    assert await store.keep_answer("t1", body("t1") + "its own") is True
    assert await store.claim_keys({"t1": body("t3")}) == {"t1": body("t1")}
    assert await store.idempotency_record("t1") == (body("t1"), "its own")
    window = store._settings.idempotency_window_s
    assert window - 5 <= await redis.ttl(store.keys.idempotency("t1")) <= window


async def all_scores(store: RankingStore, now: float) -> dict[tuple[str, str | None], object]:
    """Every profile's decayed scores of "sports" and "all", as the lists read them."""
    got: dict[tuple[str, str | None], object] = {}
    for ranking in ("sports", "all"):
        for window in (None, *DEFAULT_WINDOWS):
            top = await store.top(ranking, 100, now, window=window)
            got[ranking, window] = {
                item.article_id: pytest.approx(item.score, rel=1e-12) for item in top.items
            }
    return got


def flushes() -> list[FlushPlan]:
    """Flushes a minute apart, with articles in common and each of its own."""
    return [
        FlushPlan(
            T0 + 60 * n,
            {
                "sports": {"a": 1.0 + n, f"only{n}": 0.5},
                "all": {"a": 1.0 + n, f"only{n}": 0.5, "w": 2.0},
            },
        )
        for n in range(4)
    ]


def two_stores(
    make_store: Callable[..., RankingStore], key_prefix: str
) -> tuple[RankingStore, RankingStore]:
    """Two stores of the test's own keys, one applying each flush as it comes, one queueing."""
    return make_store(key_prefix=f"{key_prefix}:one-by-one"), make_store()


async def test_flushes_queued_are_counted_not_applied_until_a_flush_applies_them_all(
    make_store: Callable[..., RankingStore], redis: Redis, key_prefix: str
) -> None:
    # The same flushes, each applied as it comes, and the first three queued, then taken by
    # the fourth: the same scores in every profile.
    one_by_one, queued = two_stores(make_store, key_prefix)
    *first, last = flushes()
    for plan in first:
        await one_by_one.apply(plan, plan.reference_ts)
        await queued.apply(plan, plan.reference_ts, queue=True)
    now = last.reference_ts
    assert await scores(queued, "sports", now) == {}
    assert await redis.llen(queued.keys.queued("sports")) == 3
    await one_by_one.apply(last, now)
    await queued.apply(last, now)
    assert await redis.llen(queued.keys.queued("sports")) == 0
    assert await all_scores(queued, now + 30) == await all_scores(one_by_one, now + 30)


async def test_apply_queued_takes_what_is_queued_and_nothing_else(
    make_store: Callable[..., RankingStore], redis: Redis, key_prefix: str
) -> None:
    one_by_one, queued = two_stores(make_store, key_prefix)
    for plan in flushes():
        await one_by_one.apply(plan, plan.reference_ts)
        await queued.apply(plan, plan.reference_ts, queue=True)
    now = T0 + 600
    for ranking in ("sports", "world", "all"):  # "world": nothing queued, nothing taken
        await queued.apply_queued(ranking, now)
    assert not await redis.exists(queued.keys.queued("sports"), queued.keys.queued("all"))
    assert not await redis.exists(queued.keys.scores("world"))
    assert await all_scores(queued, now) == await all_scores(one_by_one, now)
    await queued.apply_queued("sports", now)  # again: nothing queued, nothing changes
    assert await all_scores(queued, now) == await all_scores(one_by_one, now)


async def test_a_keyed_batch_queued_is_counted_and_its_retry_found_counted(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    batch = keyed("t1", {"sports": {"a": 1.0}, "all": {"a": 1.0}})
    assert await store.apply(FlushPlan(T0, {}, keyed=[batch]), T0, queue=True) == frozenset()
    # The retry applies, and finds the batch counted in both rankings: not counted again.
    retry = FlushPlan(T0, {"sports": {"b": 1.0}}, keyed=[batch])
    assert await store.apply(retry, T0) == frozenset({"t1"})
    for ranking in ("sports", "all"):
        await store.apply_queued(ranking, T0)
    assert await scores(store, "sports", T0) == {"a": 1.0, "b": 1.0}
    assert await scores(store, "all", T0) == {"a": 1.0}


async def test_past_256_flushes_queued_a_flush_applies_whatever_it_was_asked(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    # A ranking whose processes all died before applying what they queued holds a bounded
    # backlog: the next flush to it applies it all.
    store = make_store()
    for n in range(256):
        await store.apply(FlushPlan(T0, {"sports": {f"a{n}": 1.0}}), T0, queue=True)
    assert await redis.llen(store.keys.queued("sports")) == 256
    await store.apply(FlushPlan(T0, {"sports": {"a256": 1.0}}), T0, queue=True)
    assert await redis.llen(store.keys.queued("sports")) == 0
    assert await redis.zcard(store.keys.scores("sports")) == 257


async def test_a_flush_that_applies_takes_what_is_queued_even_when_its_own_batch_was_counted(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    # The retry of a keyed batch queued before applies nothing of its own (counted already),
    # but the flushes queued for its ranking are applied all the same.
    store = make_store()
    batch = keyed("t1", {"sports": {"a": 1.0}})
    await store.apply(FlushPlan(T0, {"sports": {"x": 1.0}}), T0, queue=True)
    await store.apply(FlushPlan(T0, {}, keyed=[batch]), T0, queue=True)
    assert await store.apply(FlushPlan(T0, {}, keyed=[batch]), T0) == frozenset({"t1"})
    assert await redis.llen(store.keys.queued("sports")) == 0
    assert await scores(store, "sports", T0) == {"a": 1.0, "x": 1.0}
