"""The editorial store on a real Redis: hides, pins, their ends, and the audit log."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from redis.asyncio import Redis

from ranker.config import Settings
from ranker.ingest.plan import FlushPlan
from ranker.store import RankingStore
from ranker.store.editorial import FOREVER, Change, Pin

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

T0 = 1_800_000_000.0


def make(redis: Redis, make_settings: Callable[..., Settings], **overrides: object) -> RankingStore:
    return RankingStore(redis, make_settings(**overrides))


def change(action: str, **what: object) -> Change:
    return Change(action, "test", T0, **what)  # type: ignore[arg-type]


async def listed(store: RankingStore, ranking: str, now: float = T0) -> list[tuple[str, bool]]:
    return [(item.article_id, item.pinned) for item in (await store.top(ranking, 10, now)).items]


async def test_an_article_hidden_by_an_older_version_stays_hidden_until_unhidden(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    store = make(redis, make_settings)
    await store.apply(FlushPlan(T0, {"sports": {"a": 2.0, "b": 1.0}}), T0)
    # As versions before timed hides left it: a flag in the metadata, and a set nobody reads.
    await redis.hset(store.keys.article("a"), "hidden", "1")
    assert await listed(store, "sports") == [("b", False)]
    article = await store.get_article("a", T0)
    assert article is not None
    assert (article.hidden, article.hidden_until) == (True, None)
    assert await store.unhide("a", change("unhide", article_id="a"), T0)
    assert await listed(store, "sports") == [("a", False), ("b", False)]


async def test_a_hide_with_no_end_is_also_marked_as_older_versions_mark_it(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    # Replicas still on an older version during a rolling deploy read only that mark.
    store = make(redis, make_settings)
    key = store.keys.article("a")
    await store.hide("a", FOREVER, change("hide", article_id="a"), T0)
    assert await redis.hmget(key, ["hidden", "hidden_until"]) == ["1", "inf"]
    # They know no ends: a hide with one is not marked, and replaces the mark.
    await store.hide("a", T0 + 60, change("hide", article_id="a", until=T0 + 60), T0)
    assert await redis.hmget(key, ["hidden", "hidden_until"]) == [None, repr(T0 + 60)]
    await store.hide("a", FOREVER, change("hide", article_id="a"), T0)
    assert await store.unhide("a", change("unhide", article_id="a"), T0)
    assert await redis.hmget(key, ["hidden", "hidden_until"]) == [None, None]


async def test_a_hide_reaches_every_ranking_and_ends_at_its_time(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    store = make(redis, make_settings)
    await store.apply(FlushPlan(T0, {"sports": {"a": 2.0, "b": 1.0}, "all": {"a": 2.0}}), T0)
    await store.hide("a", T0 + 10, change("hide", article_id="a", until=T0 + 10), T0)
    for ranking in ("all", "sports", "world"):
        assert await redis.zscore(store.keys.hides(ranking), "a") == T0 + 10
    assert await listed(store, "sports") == [("b", False)]
    assert await listed(store, "all") == []
    assert await listed(store, "sports", T0 + 10) == [("a", False), ("b", False)]
    assert (await store.active(T0 + 9))[0] == [("a", T0 + 10)]
    assert (await store.active(T0 + 10))[0] == []
    # Ended: nothing to unhide, and nothing recorded for trying.
    assert not await store.unhide("a", change("unhide", article_id="a"), T0 + 10)
    assert len(await store.audit_log(10, None)) == 1
    # A later hide drops the ended ones on its way.
    await store.hide("b", FOREVER, change("hide", article_id="b"), T0 + 11)
    assert await redis.zrange(store.keys.hides("sports"), 0, -1) == ["b"]


async def test_a_pin_is_stored_once_per_ranking_and_ended_pins_are_dropped(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    store = make(redis, make_settings)
    await store.pin(Pin("sports", 1, "a", T0 + 5), change("pin"), T0)
    await store.pin(Pin("sports", 2, "b", FOREVER), change("pin"), T0)
    result = await store.pin(Pin("sports", 3, "b", FOREVER), change("pin"), T0 + 6)
    assert (result.replaced, result.moved_from) == (None, 2)
    stored = await redis.hgetall(store.keys.pins("sports"))
    # a's pin ended at T0 + 5: dropped by the write at T0 + 6.
    assert {slot: orjson.loads(value) for slot, value in stored.items()} == {"3": ["b", None]}
    result = await store.pin(Pin("sports", 3, "c", T0 + 100), change("pin"), T0 + 6)
    assert (result.replaced, result.moved_from) == ("b", None)
    hides, pins = await store.active(T0 + 6)
    assert (hides, pins) == ([], [Pin("sports", 3, "c", T0 + 100)])
    assert await store.unpin("sports", 3, change("unpin"), T0 + 100) is None
    assert await store.unpin("sports", 3, change("unpin"), T0 + 99) == "c"
    assert await redis.hgetall(store.keys.pins("sports")) == {}


async def test_the_audit_log_pages_back_and_is_bounded(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    store = make(redis, make_settings, audit_max_entries=1000)
    for n in range(1500):
        await store.hide(f"a{n}", FOREVER, change("hide", article_id=f"a{n}"), T0)
    # Trimmed as Redis trims streams cheaply: to about the bound, never below it.
    assert 1000 <= await redis.xlen(store.keys.audit()) < 1500
    newest = await store.audit_log(3, None)
    assert [fields["article_id"] for _, fields in newest] == ["a1499", "a1498", "a1497"]
    older = await store.audit_log(2, newest[-1][0])
    assert [fields["article_id"] for _, fields in older] == ["a1496", "a1495"]
    assert await store.audit_log(5, "0-0") == []
