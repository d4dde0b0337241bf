"""Change notices: a view, pin or hide made through one replica shows in another's lists at
once, not at its next timed refresh; a broken subscription is made again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from ranker.api.appkeys import METRICS
from ranker.app import create_app
from ranker.config import Settings
from ranker.runtime.embedded import EmbeddedRedis
from tests.conftest import AiohttpClient, Client, FakeClock
from tests.support.http import ingest
from tests.support.waiting import eventually

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

# So long that only a notice can make a replica read a list again within a test.
NEVER_S = 3600.0


async def listed(client: Client, path: str) -> list[str]:
    response = await client.get(path)
    assert response.status == 200
    return [item["article_id"] for item in (await response.json())["items"]]


def notices(client: Client, direction: str) -> float:
    """How many change notices a replica has sent or received."""
    registry = client.app[METRICS].registry
    value = registry.get_sample_value("ranker_change_notices_total", {"direction": direction})
    return value or 0.0


def subscribed(client: Client) -> bool:
    registry = client.app[METRICS].registry
    return registry.get_sample_value("ranker_change_subscription_up") == 1


async def two_replicas(
    aiohttp_client: AiohttpClient, settings: Settings, clock: FakeClock
) -> tuple[Client, Client]:
    first = await aiohttp_client(create_app(settings, clock=clock))
    second = await aiohttp_client(create_app(settings, clock=clock))
    return first, second


@pytest.fixture
async def replicas(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> tuple[Client, Client]:
    """Two replicas on the test Redis whose timed refreshes never come during a test."""
    return await two_replicas(aiohttp_client, make_settings(refresh_interval_s=NEVER_S), clock)


async def test_a_view_through_one_replica_shows_in_the_others_lists_at_once(
    replicas: tuple[Client, Client],
) -> None:
    one, other = replicas
    assert await listed(other, "/v1/rankings/sports") == []  # kept, read once
    await ingest(one, {"article_id": "a", "section": "sports"})

    async def shown() -> bool:
        return await listed(other, "/v1/rankings/sports") == ["a"]

    await eventually(shown)
    assert notices(other, "received") >= 1
    # A replica does not act on its own notices: its own flush marked its lists already.
    assert notices(one, "received") == 0
    assert notices(one, "sent") >= 1


async def test_an_editorial_change_through_one_replica_shows_in_the_other(
    replicas: tuple[Client, Client],
) -> None:
    one, other = replicas
    await ingest(
        one, *({"article_id": f"p{n}", "section": "world", "weight": 5 - n} for n in range(3))
    )

    async def listing(expected: list[str]) -> bool:
        return await listed(other, "/v1/rankings/world") == expected

    await eventually(lambda: listing(["p0", "p1", "p2"]))
    pinned = await one.put("/v1/editorial/pins/world/1", json={"article_id": "p2"})
    assert pinned.status == 200, await pinned.text()
    await eventually(lambda: listing(["p2", "p0", "p1"]))
    hidden = await one.put("/v1/editorial/hides/p0", json={})
    assert hidden.status == 200, await hidden.text()
    await eventually(lambda: listing(["p2", "p1"]))


@pytest.mark.single_node
async def test_a_broken_subscription_is_made_again(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    private_redis: EmbeddedRedis,
) -> None:
    settings = make_settings(redis_url=private_redis.url, refresh_interval_s=NEVER_S)
    one, other = await two_replicas(aiohttp_client, settings, clock)
    await eventually(lambda: _is(subscribed(other)))
    assert await listed(other, "/v1/rankings/sports") == []
    admin = Redis.from_url(private_redis.url, decode_responses=True)
    try:
        # Every subscription on this server broken, as a failover or a proxy restart would.
        killed = await admin.client_kill_filter(_type="pubsub")
        assert killed >= 2
        await eventually(lambda: _is(not subscribed(other)))
    finally:
        await admin.aclose()
    await eventually(lambda: _is(subscribed(other)))
    await ingest(one, {"article_id": "b", "section": "sports"})

    async def shown() -> bool:
        return await listed(other, "/v1/rankings/sports") == ["b"]

    await eventually(shown)


async def _is(value: bool) -> bool:
    return value


@pytest.mark.single_node
async def test_a_quiet_subscription_costs_a_ping_now_and_then(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    private_redis: EmbeddedRedis,
) -> None:
    settings = make_settings(redis_url=private_redis.url, refresh_interval_s=NEVER_S)
    replica = await aiohttp_client(create_app(settings, clock=clock))
    await eventually(lambda: _is(subscribed(replica)))
    admin = Redis.from_url(private_redis.url, decode_responses=True)
    try:
        before = (await admin.info("commandstats")).get("cmdstat_ping", {}).get("calls", 0)
        await asyncio.sleep(1.0)
        after = (await admin.info("commandstats")).get("cmdstat_ping", {}).get("calls", 0)
    finally:
        await admin.aclose()
    # One every 5 s at most from the subscription, one every 5 s from the Redis check: a
    # second of quiet is a handful at most, never a loop of them.
    assert after - before <= 5
