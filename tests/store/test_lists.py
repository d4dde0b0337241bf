"""The store's list reads against a real Redis: hidden articles, maximum ages, and fill."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from ranker.config.limits import SITE_WIDE
from ranker.ingest.plan import FlushPlan
from ranker.store import RankedItem, Ranking, RankingStore
from ranker.store.editorial import FOREVER, Change
from tests.support.store import T0, view

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too


async def hide(store: RankingStore, article_id: str) -> None:
    await store.hide(article_id, FOREVER, Change("hide", "test", T0, article_id), T0)


async def unhide(store: RankingStore, article_id: str) -> None:
    assert await store.unhide(article_id, Change("unhide", "test", T0, article_id), T0)


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
        RankedItem("new", 0.0, "New", "/new", True, False, "sports", T0 - 1 * HOUR),
        RankedItem("mid", 0.0, None, None, True, False, "sports", T0 - 2 * HOUR),
    ]


async def test_a_listed_item_carries_its_section_and_publication_time(
    make_store: Callable[..., RankingStore],
) -> None:
    store = make_store()
    await view(store, "a", T0, T0, w=2.0)
    await view(store, "b", T0, T0, w=1.0)
    await store.put_article("a", {"title": "A", "section": "sports", "published_at": T0 - HOUR})
    (first, second) = (await store.top(SITE_WIDE, 10, T0)).items
    assert (first.section, first.published_at) == ("sports", T0 - HOUR)
    assert (second.section, second.published_at) == (None, None)


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
