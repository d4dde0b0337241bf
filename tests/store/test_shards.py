"""The site-wide ranking spread over sub-rankings (``RANKER_SITE_SHARDS``): where each article's
scores are kept, how a flush is split, and lists, pins, hides, windows, fill and article reads
that are the very ones an unsharded ranking gives."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from ranker.config import Settings
from ranker.ingest.plan import FlushPlan, KeyedBatch
from ranker.store import Ranking, RankingStore
from ranker.store.editorial import FOREVER, Change, Pin
from ranker.store.keys import shard_ranking, unsharded
from ranker.store.shards import Shards, shard_of
from tests.support.store import T0

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

HOUR = 3600.0
SECTIONS = ("sports", "world")


def test_an_article_lives_in_one_sub_ranking_the_same_in_every_process() -> None:
    # CRC-32, not Python's salted hash: these are what every replica, in every run, computes.
    ids = ("a", "b", "story-1", "기사")
    assert [shard_of(article_id, 4) for article_id in ids] == [3, 1, 2, 2]
    shards = Shards(4)
    assert shards.parts("all") == ["all#0", "all#1", "all#2", "all#3"]
    assert shards.home("all", "b") == shard_ranking("all", 1) == "all#1"
    assert unsharded("all#1") == "all"
    # Sections are never sharded, nor is anything with one shard.
    assert shards.parts("sports") == ["sports"]
    assert shards.home("sports", "b") == "sports"
    assert Shards(1).parts("all") == ["all"]


def test_a_flush_gives_each_sub_ranking_its_articles_keyed_batches_included() -> None:
    plan = FlushPlan(
        T0,
        {"sports": {"a": 1.0, "b": 2.0}, "all": {"a": 1.0, "b": 2.0}},
        windows={"trending": {"all": {"a": 3.0}}},
        keyed=[KeyedBatch("token", {"all": {"b": 5.0}, "world": {"b": 5.0}}, "{}")],
    )
    split = Shards(4).split(plan)
    assert split.increments == {
        "sports": {"a": 1.0, "b": 2.0},
        "all#3": {"a": 1.0},
        "all#1": {"b": 2.0},
    }
    assert split.windows == {"trending": {"all#3": {"a": 3.0}}}
    assert split.keyed[0].increments == {"world": {"b": 5.0}, "all#1": {"b": 5.0}}
    assert Shards(1).split(plan) is plan


def comparable(ranking: Ranking) -> list[tuple[str, float, bool, bool]]:
    return [(item.article_id, item.score, item.fill, item.pinned) for item in ranking.items]


async def same_views_and_editorial(*stores: RankingStore) -> float:
    """Twelve flushes of random views, then metadata, hides and pins, the same in each store;
    returns the time they are all as of."""
    rng = random.Random(14)
    ids = [f"story-{n}" for n in range(60)]
    for flush in range(12):
        now = T0 + 60 * flush
        views: dict[str, dict[str, float]] = {"sports": {}, "world": {}}
        for article_id in rng.sample(ids, 25):
            views[rng.choice(SECTIONS)][article_id] = rng.uniform(0.5, 40.0)
        site: dict[str, float] = {}
        for amounts in views.values():
            for article_id, amount in amounts.items():
                site[article_id] = site.get(article_id, 0.0) + amount
        plan = FlushPlan(now - 5, {**views, "all": site}, windows={"trending": {"all": site}})
        for each in stores:
            await each.apply(plan, now)
    now = T0 + 60 * 12
    for each in stores:
        for n, article_id in enumerate(ids):
            age = 40 * HOUR if n % 7 == 0 else HOUR
            await each.put_article(article_id, {"title": article_id, "published_at": now - age})
        await each.put_article("fresh", {"title": "Fresh", "published_at": now - 60})
        for article_id in ("story-3", "story-11", "story-20"):
            await each.hide(article_id, FOREVER, Change("hide", "test", now, article_id), now)
        await each.pin(Pin("all", 2, "story-5", FOREVER), Change("pin", "test", now), now)
        await each.pin(Pin("all", 4, "never-viewed", FOREVER), Change("pin", "test", now), now)
    return now


async def test_sharded_lists_are_the_unsharded_ones_pins_hides_windows_and_fill_included(
    make_settings: Callable[..., Settings], redis: Redis, key_prefix: str
) -> None:
    def store(prefix: str, shards: int) -> RankingStore:
        settings = make_settings(
            key_prefix=prefix,
            sections=SECTIONS,
            site_shards=shards,
            max_age_hours={"all": 30.0},
        )
        return RankingStore(redis, settings)

    one, sharded = store(f"{key_prefix}:one", 1), store(f"{key_prefix}:five", 5)
    now = await same_views_and_editorial(one, sharded)
    for window in (None, "trending"):
        for limit in (1, 3, 10, 40, 100):
            expected = await one.top("all", limit, now, window)
            got = await sharded.top("all", limit, now, window)
            assert len(got.items) == min(limit, len(expected.items) or limit), (window, limit)
            assert [item[0] for item in comparable(got)] == [
                item[0] for item in comparable(expected)
            ], (window, limit)
            for mine, theirs in zip(comparable(got), comparable(expected), strict=True):
                assert mine[1] == pytest.approx(theirs[1], rel=1e-9, abs=0)
                assert mine[2:] == theirs[2:]
            assert (got.members, got.half_life_s) == (expected.members, expected.half_life_s)
    full = await sharded.top("all", 100, now)
    # The list ran out of scored articles (hidden and too old left out) and was filled.
    assert any(item.fill for item in full.items)
    assert [item.article_id for item in full.items[1:4:2]] == ["story-5", "never-viewed"]
    assert not {"story-3", "story-11", "story-20"} & {item.article_id for item in full.items}
    # Every sub-ranking holds some, and the ranking's own set none.
    parts = sharded.shards.parts("all")
    assert all([await redis.zcard(sharded.keys.scores(part)) for part in parts])
    assert not await redis.exists(sharded.keys.scores("all"))
    for article_id in ("story-1", "story-5", "fresh"):
        article, same = (
            await sharded.get_article(article_id, now),
            await one.get_article(article_id, now),
        )
        assert article is not None
        assert same is not None
        assert article.scores == pytest.approx(same.scores, rel=1e-9)
        assert article.windows.keys() == same.windows.keys()
        for window, scores in article.windows.items():
            assert scores == pytest.approx(same.windows[window], rel=1e-9)
    assert await sharded.known("story-1")
    assert not await sharded.known("nobody")
