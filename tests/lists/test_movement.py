"""Rank movement: each item compared with its ranking's list recorded one interval before."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from ranker.api.appkeys import METRICS, STORE
from ranker.app import create_app
from ranker.config import Settings
from ranker.lists import movement as movement_module
from ranker.lists.movement import moved, movement_period, previous_ranks, record_ttl_s
from ranker.runtime.embedded import EmbeddedRedis
from ranker.store.keys import Keys
from tests.conftest import AiohttpClient, Client, FakeClock, refreshed

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

HOUR = 3600.0
START = 1_800_000_000.0  # the default FakeClock's time: the start of an hour-long interval
Move = tuple[str, str, int | None]


async def post(client: Client, **weights: float) -> None:
    events = [{"article_id": a, "section": "world", "weight": w} for a, w in weights.items()]
    response = await client.post("/v1/events", json=events)
    assert response.status == 200, await response.text()
    assert (await response.json())["accepted"] == len(events)


async def moves(client: Client, limit: int = 10) -> list[Move]:
    response = await client.get(f"/v1/rankings/world?limit={limit}")
    assert response.status == 200
    items: list[dict[str, Any]] = (await response.json())["items"]
    return [(item["article_id"], item["movement"], item["previous_rank"]) for item in items]


def test_movement_compares_the_rank_now_with_the_rank_before() -> None:
    assert moved(3, 5) == "up"
    assert moved(3, 1) == "down"
    assert moved(3, 3) == "same"
    assert moved(3, None) == "new"
    assert previous_ranks(["x", "y"]) == {"x": 1, "y": 2}
    assert previous_ranks(None) == {}


def test_intervals_are_aligned_on_the_clock() -> None:
    assert movement_period(START, HOUR) == movement_period(START + HOUR - 0.001, HOUR)
    assert movement_period(START + HOUR, HOUR) == movement_period(START, HOUR) + 1


async def test_a_scripted_sequence_of_refreshes(client: Client, clock: FakeClock) -> None:
    assert clock.now == START
    await post(client, a=4, b=3, c=2)
    # No list was recorded an interval ago: everything is new.
    assert await moves(client) == [("a", "new", None), ("b", "new", None), ("c", "new", None)]

    clock.now = START + HOUR / 2
    await post(client, c=10, b=2, d=1)
    await refreshed(client)
    # Within the interval the list changes, but there is still nothing to compare with.
    assert await moves(client) == [
        ("c", "new", None),
        ("b", "new", None),
        ("a", "new", None),
        ("d", "new", None),
    ]

    clock.now = START + HOUR
    await refreshed(client)
    # Compared with the list this interval's first read recorded: a, b, c.
    assert await moves(client) == [
        ("c", "up", 3),
        ("b", "same", 2),
        ("a", "down", 1),
        ("d", "new", None),
    ]
    # A shorter list knows ranks below its own end from the deeper record.
    assert await moves(client, limit=1) == [("c", "up", 3)]

    clock.now = START + 1.5 * HOUR
    await post(client, d=20)
    await refreshed(client)
    # Still compared with a, b, c, not with this interval's own first list (c, b, a, d).
    assert await moves(client) == [
        ("d", "new", None),
        ("c", "up", 3),
        ("b", "down", 2),
        ("a", "down", 1),
    ]

    clock.now = START + 2 * HOUR
    await refreshed(client)
    # The boundary is crossed again: now compared with c, b, a, d.
    assert await moves(client) == [
        ("d", "up", 4),
        ("c", "down", 1),
        ("b", "down", 2),
        ("a", "down", 3),
    ]

    clock.now = START + 4 * HOUR
    await refreshed(client)
    # No refresh ran in the interval before this one: nothing to compare with again.
    assert [move for _, move, _ in await moves(client)] == ["new"] * 4


async def test_an_article_from_below_the_recorded_top_100_is_new(
    client: Client, clock: FakeClock
) -> None:
    await post(client, **{f"a{n:03}": 500 - 4 * n for n in range(120)})
    await moves(client)
    await post(client, a110=1000)
    clock.now = START + HOUR
    await refreshed(client)
    assert (await moves(client, limit=2)) == [("a110", "new", None), ("a000", "down", 1)]


async def test_replicas_sharing_redis_agree_and_a_restart_remembers(
    aiohttp_client: AiohttpClient, settings: Settings, clock: FakeClock, redis: Redis
) -> None:
    first = await aiohttp_client(create_app(settings, clock=clock))
    await post(first, a=4, b=3, c=2)
    await moves(first)  # records a, b, c
    await post(first, c=10)
    # A replica (or a restart) reading first later in the interval keeps the record that stands.
    second_clock = FakeClock(START + HOUR / 2)
    second = await aiohttp_client(create_app(settings, clock=second_clock))
    await moves(second)
    clock.now = second_clock.now = START + HOUR
    await refreshed(first)
    await refreshed(second)
    expected = [("c", "up", 3), ("a", "down", 1), ("b", "down", 2)]
    assert await moves(first) == expected
    assert await moves(second) == expected


async def test_a_record_expires_once_no_interval_compares_with_it(
    client: Client, redis: Redis, settings: Settings
) -> None:
    await post(client, a=1)
    await moves(client)
    key = Keys(settings.key_prefix).movement("world", movement_period(START, HOUR))
    assert await redis.get(key) == '["a"]'
    assert 2 * HOUR < await redis.ttl(key) <= record_ttl_s(HOUR)


async def test_each_process_records_and_reads_once_an_interval(
    client: Client, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = client.app[STORE]
    real = store.movement_record
    calls: list[int] = []

    async def movement_record(
        ranking: str, period: int, ids: list[str] | None, ttl_s: int, window: str | None = None
    ) -> list[str] | None:
        calls.append(period)
        return await real(ranking, period, ids, ttl_s, window)

    monkeypatch.setattr(store, "movement_record", movement_record)
    await post(client, a=1)
    for _ in range(3):
        await moves(client)
        await refreshed(client)
    clock.now = START + HOUR
    for _ in range(3):
        await refreshed(client)
        await moves(client)
    assert calls == [movement_period(START, HOUR), movement_period(START, HOUR) + 1]


@pytest.mark.single_node
async def test_a_list_is_served_when_redis_refuses_to_record_it(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every refresh tries the record again.
    monkeypatch.setattr(movement_module, "RECORD_RETRY_S", 0.0, raising=False)
    # A server of the test's own, made to refuse writes as a full one does under noeviction.
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        settings = make_settings(redis_url=server.url, refresh_interval_s=3600)
        first = await aiohttp_client(create_app(settings, clock=clock))
        await post(first, a=4, b=3, c=2)
        await moves(first)  # records a, b, c for this interval
        await post(first, c=10)
        admin = Redis.from_url(server.url)
        try:
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", 1)
            with pytest.raises(OutOfMemoryError):
                await admin.set("anything", "x")
            # A replica started during the incident, in the next interval: it cannot record
            # its list, and compares with the record there is.
            clock.now = START + HOUR
            fresh = await aiohttp_client(create_app(settings, clock=clock))
            with caplog.at_level(logging.WARNING, logger="ranker.cache"):
                assert await moves(fresh) == [
                    ("c", "up", 3),
                    ("a", "down", 1),
                    ("b", "down", 2),
                ]
                for _ in range(3):
                    await refreshed(fresh)
                    assert (await fresh.get("/v1/rankings/world?limit=7")).status == 200
            warnings = [r for r in caplog.records if "movement" in r.getMessage()]
            assert len(warnings) == 1
            registry = fresh.app[METRICS].registry
            labels = {"operation": "movement"}
            assert registry.get_sample_value("ranker_redis_errors_total", labels) == 4
            # Once Redis takes writes again, the record is made.
            await admin.config_set("maxmemory", 0)
            await refreshed(fresh)
            key = Keys(settings.key_prefix).movement("world", movement_period(clock.now, HOUR))
            assert orjson.loads(await admin.get(key) or "null") == ["c", "a", "b"]
        finally:
            await admin.aclose()
