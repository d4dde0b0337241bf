"""What every part of the store shares: the pool's wait for a free connection, and what
running out of connections is (ranker's own back-pressure, not a Redis outage)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from ranker.api.appkeys import METRICS, REDIS, STORE
from ranker.app import create_app
from ranker.config import Settings
from ranker.runtime.embedded import free_port
from ranker.store.base import PoolExhausted, WaitingPool
from tests.conftest import AiohttpClient


async def test_running_out_of_pooled_connections_is_no_redis_outage(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(redis_max_connections=2, redis_timeout_s=0.2)
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/readyz")).status == 200
    app_redis = client.app[REDIS]
    assert isinstance(app_redis, Redis)
    pool = app_redis.connection_pool
    taken = [await pool.get_connection() for _ in range(2)]  # type: ignore[no-untyped-call]
    try:
        # A list never read needs a connection of that pool: none comes free.
        response = await client.get("/v1/rankings/world")
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == "overloaded"
        with pytest.raises(PoolExhausted):
            await client.app[STORE].ping()
    finally:
        for connection in taken:
            await pool.release(connection)
    assert client.app[STORE].available
    assert client.app[METRICS].registry.get_sample_value("ranker_redis_up") == 1
    assert await (await client.get("/readyz")).json() == {"status": "ready", "redis": "up"}
    assert (await client.get("/v1/rankings/world")).status == 200


async def test_only_a_wait_for_a_free_connection_is_pool_exhaustion(redis_url: str) -> None:
    # What WaitingPool tells apart relies on how redis-py raises each: checked here.
    pool = WaitingPool.from_url(redis_url, max_connections=1, timeout=0.1)
    held = await pool.get_connection()
    with pytest.raises(PoolExhausted):
        await pool.get_connection()
    await pool.release(held)
    await pool.disconnect()
    closed = WaitingPool.from_url(
        f"redis://127.0.0.1:{free_port()}/0", max_connections=1, timeout=0.1
    )
    with pytest.raises(RedisConnectionError) as refused:
        await closed.get_connection()
    assert not isinstance(refused.value, PoolExhausted)
