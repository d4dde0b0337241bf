"""Cluster mode's client, on the local Redis Cluster: script calls in pipelines, scripts a
master lost, seeds that are down."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from ranker.config import Settings
from ranker.runtime.cluster import LocalCluster
from ranker.runtime.embedded import free_port
from ranker.store import RankingStore
from ranker.store.cluster import ClusterUnreachable, ScriptedCluster, open_cluster
from ranker.store.editorial import FOREVER, Change
from tests.conftest import RedisTarget
from tests.support.store import T0, view

# The test Redis is the cluster (in cluster mode) here, and only the cluster.
pytestmark = pytest.mark.parametrize("redis_target", ["cluster"], indirect=True)


@pytest.fixture
def cluster_store(make_settings: Callable[..., Settings], redis: Redis) -> RankingStore:
    settings = make_settings()
    assert settings.redis_cluster
    return RankingStore(redis, settings)


async def test_a_flush_after_every_master_lost_its_scripts_loads_them_and_counts_once(
    cluster_store: RankingStore,
) -> None:
    await view(cluster_store, "a", T0, T0)
    client = cluster_store._flush_redis
    assert isinstance(client, ScriptedCluster)
    # As after a restart or a failover: Redis 7 neither persists nor replicates scripts.
    await client.script_flush()
    await view(cluster_store, "a", T0, T0)
    await client.script_flush()
    await cluster_store.hide("a", FOREVER, Change("hide", "test", T0, "a"), T0)
    await cluster_store.unhide("a", Change("unhide", "test", T0, "a"), T0)
    await client.script_flush()
    top = await cluster_store.top("sports", 10, T0)
    assert [(item.article_id, item.score) for item in top.items] == [("a", 2.0)]


async def test_any_seed_that_answers_is_enough(
    local_cluster: LocalCluster, redis_target: RedisTarget
) -> None:
    down = f"redis://127.0.0.1:{free_port()}"
    client = open_cluster((down, *local_cluster.urls[-1:]), decode_responses=True)
    try:
        assert await client.ping()
        assert len(client.get_primaries()) == 3
    finally:
        await client.aclose()


async def test_a_cluster_no_seed_of_which_answers_is_an_outage(redis_target: RedisTarget) -> None:
    client = open_cluster((f"redis://127.0.0.1:{free_port()}",), socket_connect_timeout=0.5)
    try:
        with pytest.raises(ClusterUnreachable):
            await client.ping()
    finally:
        await client.aclose()
