"""Shared fixtures. Every test runs against a real Redis under a key prefix of its own.

The Redis is ``RANKER_TEST_REDIS_URL`` when set (CI points it at the machine's server), else a
private embedded server started once for the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from redis.asyncio import Redis

from ranker.api.appkeys import CACHE, INGESTOR
from ranker.app import create_app
from ranker.config import Settings
from ranker.runtime.cluster import LocalCluster
from ranker.runtime.embedded import EmbeddedRedis
from ranker.store.cluster import open_cluster
from ranker.store.keys import Keys

Client = TestClient[web.Request, web.Application]

# Property tests run the same examples on every run (a failure in CI fails again on a laptop),
# keep no example database, and set no deadline: a shared 2-core machine makes timings noise.
# `pytest --hypothesis-profile=thorough` searches wider, with fresh examples each run.
hypothesis_settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.register_profile(
    "thorough", hypothesis_settings.get_profile("ci"), derandomize=False, max_examples=5000
)
hypothesis_settings.load_profile("ci")


class AiohttpClient(Protocol):
    """pytest-aiohttp's ``aiohttp_client`` fixture: a client of an app, or of a server already
    made for one (to choose its address); keyword arguments go to the ClientSession."""

    def __call__(self, app: web.Application | TestServer, **kwargs: Any) -> Awaitable[Client]: ...


class FakeClock:
    """A clock the test moves by hand, so scores are computed at a time the test knows."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def refreshed(client: Client) -> None:
    """Bring the app's cached lists up to date with Redis now, as its next refresh would."""
    await client.app[CACHE].refresh()


async def applied(client: Client) -> None:
    """Wait until every view the app took is applied to the scores: flushes sent while others
    were in flight are counted at once and applied a little later (ranker/ingest/applier.py)."""
    await client.app[INGESTOR].applied()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("RANKER_TEST_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server.url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A server of the test's own, to stop, pause or break the subscriptions of (never the
    shared one)."""
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        yield server


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real Redis Cluster of 3 masters and 3 replicas, for the whole run (a few seconds to
    start), on ports of its own: never the shared Redis."""
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@dataclass(frozen=True)
class RedisTarget:
    """The Redis a test runs against: the single node, or the local cluster (``url`` then
    names every node, as ``RANKER_REDIS_URL`` may in cluster mode)."""

    url: str
    cluster: bool


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test marked cluster_too runs twice: on the single node and on the local cluster; one on
    # a private server of its own (single_node, or the private_redis fixture) once.
    marked = metafunc.definition.get_closest_marker
    private = marked("single_node") or "private_redis" in metafunc.fixturenames
    if "redis_target" in metafunc.fixturenames and marked("cluster_too") and not private:
        metafunc.parametrize("redis_target", ["single", "cluster"], indirect=True)


@pytest.fixture
def redis_target(request: pytest.FixtureRequest, redis_url: str) -> RedisTarget:
    if getattr(request, "param", "single") == "cluster":
        cluster: LocalCluster = request.getfixturevalue("local_cluster")
        return RedisTarget(",".join(cluster.urls), cluster=True)
    return RedisTarget(redis_url, cluster=False)


@pytest.fixture
async def redis(redis_target: RedisTarget, key_prefix: str) -> AsyncIterator[Redis]:
    """A client of the test's Redis; its keys are deleted afterwards (on a cluster, SCAN runs
    on every master). On a cluster it is ranker's own cluster client: typed as a Redis, as
    the tests use only what both have."""
    if redis_target.cluster:
        urls = tuple(redis_target.url.split(","))
        client = cast(Redis, open_cluster(urls, decode_responses=True))
    else:
        client = Redis.from_url(redis_target.url, decode_responses=True)
    yield client
    pattern = Keys(key_prefix).pattern()
    keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
    if keys:
        # A cluster client deletes them slot by slot.
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_settings(redis_target: RedisTarget, key_prefix: str) -> Callable[..., Settings]:
    """Settings for a test: its own key prefix, the test Redis (the cluster, in cluster mode,
    for a test marked ``cluster_too``), anything else overridden."""

    def make(**overrides: Any) -> Settings:
        fields: dict[str, Any] = {
            "redis_url": redis_target.url,
            "redis_cluster": redis_target.cluster,
            "key_prefix": key_prefix,
        }
        fields.update(overrides)
        return Settings(**fields)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings, clock: FakeClock, redis: Redis
) -> Client:
    """A test client for an app on the default settings. Depends on ``redis`` so the test's
    keys are deleted afterwards."""
    return await aiohttp_client(create_app(settings, clock=clock))


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
