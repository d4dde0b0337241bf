"""A live ranker on a real port for the client commands, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from ranker.app import create_app
from ranker.commands.client import RankerClient
from ranker.config import Settings


@pytest.fixture
async def live(make_settings: Callable[..., Settings], redis: Redis) -> AsyncIterator[str]:
    """The base URL of a ranker on the test Redis (real time: the commands stamp views now)."""
    server = TestServer(create_app(make_settings()), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def client(live: str) -> AsyncIterator[RankerClient]:
    async with RankerClient(live) as client:
        yield client
