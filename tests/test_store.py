"""RankingStore and its Lua scripts against a real Redis, with time passed in by hand."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from ranker.config import Settings
from ranker.decay import HALF_LIFE_SETTLE_S
from ranker.ingest.idempotency import FINGERPRINT_LENGTH
from ranker.ingest.plan import FlushPlan, KeyedBatch
from ranker.store import RankedItem, Ranking, RankingStore
from ranker.store.editorial import FOREVER, Change

T0 = 1_800_000_000.0


@pytest.fixture
def make_store(redis: Redis, make_settings: Callable[..., Settings]) -> Callable[..., RankingStore]:
    def make(**overrides: Any) -> RankingStore:
        return RankingStore(redis, make_settings(**overrides))

    return make


async def view(store: RankingStore, article_id: str, ts: float, now: float, w: float = 1.0) -> None:
    await store.apply(FlushPlan(ts, {"sports": {article_id: w}, "all": {article_id: w}}), now)


async def hide(store: RankingStore, article_id: str) -> None:
    await store.hide(article_id, FOREVER, Change("hide", "test", T0, article_id), T0)


async def unhide(store: RankingStore, article_id: str) -> None:
    assert await store.unhide(article_id, Change("unhide", "test", T0, article_id), T0)


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


async def test_hidden_articles_are_skipped_however_many_there_are(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    await store.apply(FlushPlan(T0, {"sports": {f"a{i}": 100.0 - i for i in range(40)}}), T0)
    for i in range(15):
        await hide(store, f"a{i}")
    top = (await store.top("sports", 10, T0)).items
    assert [item.article_id for item in top] == [f"a{i}" for i in range(15, 25)]
    await unhide(store, "a0")
    assert (await store.top("sports", 1, T0)).items[0].article_id == "a0"


async def test_articles_hidden_before_their_ranking_existed_are_skipped_and_the_list_fills(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    store = make_store()
    await store.apply(FlushPlan(T0, {"sports": {f"a{i}": 100.0 - i for i in range(60)}}), T0)
    # As if hidden while "sports" was not yet a configured section: only the articles know.
    for i in range(40):
        await redis.hset(store.keys.article(f"a{i}"), "hidden", "1")
    ranking = await store.top("sports", 10, T0)
    assert [item.article_id for item in ranking.items] == [f"a{i}" for i in range(40, 50)]
    ranking = await store.top("sports", 100, T0)
    assert [item.article_id for item in ranking.items] == [f"a{i}" for i in range(40, 60)]


async def test_unhiding_reaches_rankings_this_process_does_not_know(
    make_store: Callable[..., RankingStore], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    newer = make_store(sections=("sports", "weather"))
    await newer.apply(FlushPlan(T0, {"weather": {"a": 1.0}}), T0)
    await hide(newer, "a")
    older = make_store(sections=("sports",))

    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("unhiding must not walk the keyspace: it may be shared and huge")

    monkeypatch.setattr(redis, "scan_iter", no_scan)
    await unhide(older, "a")
    assert [item.article_id for item in (await newer.top("weather", 10, T0)).items] == ["a"]


async def test_metadata_from_events_never_overwrites_the_cms(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    await store.put_article("a", {"title": "From the CMS"})
    plan = FlushPlan(T0, {"sports": {"a": 1.0}}, {"a": ("From an event", "https://x.example/a")})
    await store.apply(plan, T0)
    article = await store.get_article("a", T0)
    assert article is not None
    assert (article.title, article.url) == ("From the CMS", "https://x.example/a")
    assert article.scores == {"sports": 1.0}


async def test_an_unknown_article_is_none_and_an_empty_ranking_is_empty(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    assert await store.get_article("nobody", T0) is None
    assert await store.top("sports", 10, T0) == Ranking(None, [])


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


HOUR = 3600.0


async def publish(store: RankingStore, ages_h: dict[str, float | None], now: float) -> None:
    """Give each article a published_at that many hours before ``now`` (None: none)."""
    for article_id, age_h in ages_h.items():
        published_at = None if age_h is None else now - age_h * HOUR
        await store.put_article(article_id, {"published_at": published_at})


async def test_a_ranking_with_a_maximum_age_leaves_out_older_articles_and_fills_its_list(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store(max_age_hours={"sports": 48.0})
    articles = {f"a{i}": 100.0 - i for i in range(30)}
    await store.apply(FlushPlan(T0, {"sports": articles, "all": articles}), T0)
    # The 15 best were published three days ago, the rest an hour ago.
    await publish(store, {f"a{i}": 72.0 if i < 15 else 1.0 for i in range(30)}, T0)
    top = (await store.top("sports", 10, T0)).items
    assert [item.article_id for item in top] == [f"a{i}" for i in range(15, 25)]
    # Only sports is limited: the site-wide list keeps them.
    top = (await store.top("all", 10, T0)).items
    assert [item.article_id for item in top] == [f"a{i}" for i in range(10)]


async def test_an_article_with_no_published_at_is_never_too_old(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store(max_age_hours={"sports": 1.0})
    await store.apply(FlushPlan(T0, {"sports": {"unknown": 3.0, "old": 2.0, "new": 1.0}}), T0)
    await publish(store, {"old": 2.0, "new": 0.5}, T0)
    top = (await store.top("sports", 10, T0)).items
    assert [item.article_id for item in top] == ["unknown", "new"]


async def test_an_article_exactly_the_maximum_age_old_is_kept_and_a_moment_later_is_not(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store(max_age_hours={"sports": 24.0})
    await store.apply(FlushPlan(T0, {"sports": {"a": 2.0, "b": 1.0}}), T0)
    await store.put_article("a", {"published_at": T0 - 24 * HOUR})
    assert [item.article_id for item in (await store.top("sports", 10, T0)).items] == ["a", "b"]
    later = T0 + 0.25
    assert [item.article_id for item in (await store.top("sports", 10, later)).items] == ["b"]


def listing(ranking: Ranking) -> list[tuple[str, bool]]:
    """A ranking's items as (article id, whether it is fill)."""
    return [(item.article_id, item.fill) for item in ranking.items]


async def put_published(store: RankingStore, section: str | None, ages_h: dict[str, float]) -> None:
    """Give each article ``section`` and a published_at that many hours before T0."""
    for article_id, age_h in ages_h.items():
        await store.put_article(article_id, {"section": section, "published_at": T0 - age_h * HOUR})


async def test_a_ranking_with_no_scores_is_filled_newest_first_with_fill_items(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    await put_published(store, "sports", {"old": 3.0, "new": 1.0, "mid": 2.0})
    await store.put_article("new", {"title": "New", "url": "/new"})
    ranking = await store.top("sports", 2, T0)
    assert ranking.items == [
        RankedItem("new", 0.0, "New", "/new", fill=True),
        RankedItem("mid", 0.0, None, None, fill=True),
    ]


async def test_fill_follows_the_scored_articles_and_never_repeats_one(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    await view(store, "mid", T0, T0, w=2.0)
    await put_published(store, "sports", {"old": 3.0, "new": 1.0, "mid": 2.0})
    ranking = await store.top("sports", 10, T0)
    assert listing(ranking) == [("mid", False), ("new", True), ("old", True)]
    assert ranking.items[0].score == 2.0


async def test_a_full_list_has_no_fill(make_store: Callable[..., RankingStore]) -> None:
    store = make_store()
    await view(store, "a", T0, T0, w=2.0)
    await view(store, "b", T0, T0)
    await put_published(store, "sports", {"new": 0.0})
    assert listing(await store.top("sports", 2, T0)) == [("a", False), ("b", False)]


async def test_fill_is_never_hidden_nor_too_old_nor_undated(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store(max_age_hours={"sports": 24.0})
    await put_published(store, "sports", {"hidden": 1.0, "fresh": 2.0, "stale": 25.0})
    await hide(store, "hidden")
    await store.put_article("undated", {"section": "sports"})
    assert listing(await store.top("sports", 10, T0)) == [("fresh", True)]
    # Unlimited site-wide: the old one fills there, the hidden one nowhere.
    assert listing(await store.top("all", 10, T0)) == [("fresh", True), ("stale", True)]


async def test_an_article_moved_to_another_section_fills_that_one_only(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    store = make_store()
    await put_published(store, "sports", {"a": 1.0, "b": 2.0})
    await store.put_article("a", {"section": "world"})
    assert listing(await store.top("sports", 10, T0)) == [("b", True)]
    assert listing(await store.top("world", 10, T0)) == [("a", True)]
    assert await redis.zrange(store.keys.published("sports"), 0, -1) == ["b"]
    # A cleared section or date leaves every index it no longer belongs in.
    await store.put_article("a", {"section": None})
    await store.put_article("b", {"published_at": None})
    assert listing(await store.top("world", 10, T0)) == []
    assert listing(await store.top("sports", 10, T0)) == []
    assert listing(await store.top("all", 10, T0)) == [("a", True)]


async def test_a_redated_article_moves_within_the_fill_order(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    await put_published(store, "sports", {"a": 1.0, "b": 2.0})
    await store.put_article("b", {"published_at": T0})
    assert listing(await store.top("sports", 10, T0)) == [("b", True), ("a", True)]


async def test_a_stale_index_entry_of_a_section_is_not_fill_there(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    # As two PUTs racing to move one article could leave it: the metadata decides.
    store = make_store()
    await put_published(store, "world", {"a": 1.0})
    await redis.zadd(store.keys.published("sports"), {"a": T0 - HOUR})
    assert listing(await store.top("sports", 10, T0)) == []


async def test_each_fill_index_keeps_the_newest_max_set_size_articles(
    make_store: Callable[..., RankingStore], redis: Redis
) -> None:
    store = make_store(max_set_size=100)
    await put_published(store, "sports", {f"a{i}": float(i) for i in range(105)})
    for ranking in ("sports", "all"):
        kept = await redis.zrange(store.keys.published(ranking), 0, -1)
        assert sorted(kept) == sorted(f"a{i}" for i in range(100))


async def test_fill_reads_past_articles_it_may_not_list(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    await put_published(store, "sports", {f"h{i}": float(i) for i in range(40)})
    for i in range(40):
        await hide(store, f"h{i}")
    await put_published(store, "sports", {"x": 50.0, "y": 60.0})
    assert listing(await store.top("sports", 2, T0)) == [("x", True), ("y", True)]
