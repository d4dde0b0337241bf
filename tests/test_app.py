"""The app as assembled: resources it owns and how they behave under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from ranker import store as store_module
from ranker.app import create_app
from ranker.config import Settings
from ranker.embedded import EmbeddedRedis
from ranker.state import METRICS, REDIS, SETTINGS, STORE
from tests.conftest import AiohttpClient, FakeClock


def test_create_app_does_no_io_and_needs_a_redis_url(
    make_settings: Callable[..., Settings],
) -> None:
    # Nothing listens at this URL; building the app must not notice.
    app = create_app(make_settings(redis_url="redis://127.0.0.1:1/0"))
    assert app[SETTINGS].redis_url == "redis://127.0.0.1:1/0"
    assert REDIS not in app
    with pytest.raises(ValueError, match="redis_url"):
        create_app(Settings())


def test_two_apps_keep_their_metrics_apart(make_settings: Callable[..., Settings]) -> None:
    first, second = create_app(make_settings()), create_app(make_settings())
    first[METRICS].events_accepted.labels(section="sports").inc()
    assert (
        second[METRICS].registry.get_sample_value(
            "ranker_events_accepted_total", {"section": "sports"}
        )
        is None
    )


async def test_more_concurrent_requests_than_redis_connections_all_succeed(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    # Four connections for 300 concurrent readers and 20 writers: they wait their turn for a
    # connection rather than failing with 503.
    settings = make_settings(redis_max_connections=4)
    client = await aiohttp_client(
        create_app(settings, clock=clock), connector=aiohttp.TCPConnector(limit=0)
    )

    async def read() -> int:
        async with client.get("/v1/rankings/sports") as response:
            return response.status

    async def write(i: int) -> int:
        event = {"article_id": f"a{i}", "section": "sports"}
        async with client.post("/v1/events", json=[event]) as response:
            return response.status

    statuses = await asyncio.gather(*(read() for _ in range(300)), *(write(i) for i in range(20)))
    assert set(statuses) == {200}
    assert len((await client.app[STORE].top("sports", 100, clock.now)).items) == 20


async def test_pooled_connections_recover_after_redis_restarts(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A private server: this test stops and restarts it.
    first = EmbeddedRedis(tmp_path / "a", persist=False)
    first.start()
    port = first.port
    settings = make_settings(redis_url=first.url, redis_max_connections=8)
    client = await aiohttp_client(
        create_app(settings, clock=clock), connector=aiohttp.TCPConnector(limit=0)
    )

    async def burst() -> set[int]:
        async def read() -> int:
            async with client.get("/v1/rankings/sports") as response:
                return response.status

        return set(await asyncio.gather(*(read() for _ in range(40))))

    async def post() -> int:
        event = {"article_id": "a", "section": "sports"}
        async with client.post("/v1/events", json=event) as response:
            return response.status

    assert await burst() == {200}  # every pooled connection is now open
    assert await post() == 200
    first.stop()
    # As if Redis took longer than that to come back: the next flush checks its connection.
    monkeypatch.setattr(store_module, "FLUSH_IDLE_CHECK_S", 0.0)
    with EmbeddedRedis(tmp_path / "b", persist=False, port=port):
        # Every pooled connection was closed by the old server; none may cost a request.
        assert await burst() == {200}
        assert await post() == 200
        assert await post() == 200
