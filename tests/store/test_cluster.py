"""Cluster mode's client, on the local Redis Cluster: script calls in pipelines, scripts a
master lost, seeds that are down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from ranker.api.appkeys import METRICS
from ranker.app import create_app
from ranker.config import Settings
from ranker.runtime.cluster import LocalCluster
from ranker.runtime.embedded import free_port
from ranker.store import RankingStore
from ranker.store.cluster import (
    ClusterUnavailable,
    ClusterUnreachable,
    ScriptedCluster,
    cluster_outages,
    open_cluster,
)
from ranker.store.editorial import FOREVER, Change
from ranker.store.keys import Keys
from tests.conftest import AiohttpClient, FakeClock, RedisTarget
from tests.support.store import T0, view
from tests.support.waiting import eventually

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


async def script_checks(client: ScriptedCluster) -> int:
    """SCRIPT EXISTS calls the masters have answered so far."""
    stats = await client.info("commandstats", target_nodes=ScriptedCluster.PRIMARIES)
    return sum(
        int(node_stats.get("cmdstat_script|exists", {}).get("calls", 0))
        for node_stats in stats.values()
    )


async def test_article_reads_ask_no_master_for_its_scripts_and_load_one_lost(
    cluster_store: RankingStore,
) -> None:
    await view(cluster_store, "a", T0, T0)
    client = cluster_store._article_redis
    assert isinstance(client, ScriptedCluster)
    before = await script_checks(client)
    for _ in range(5):
        article = await cluster_store.get_article("a", T0)
        assert article is not None
        assert article.scores == {"sports": 1.0, "all": 1.0}
    # A round trip to every master per read saved: the script is called, not checked first.
    assert await script_checks(client) == before
    await client.script_flush()
    article = await cluster_store.get_article("a", T0)
    assert article is not None
    assert article.scores == {"sports": 1.0, "all": 1.0}


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


@pytest.mark.parametrize(
    "error",
    [
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        MasterDownError("MASTERDOWN Link with MASTER is down"),
        TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
        SlotNotCoveredError('Slot "7" is not covered by the cluster.'),
        RedisClusterUnreachableError("no node of the cluster answered"),
    ],
)
def test_a_cluster_that_cannot_serve_is_an_outage(
    error: Exception, redis_target: RedisTarget
) -> None:
    with pytest.raises(RedisConnectionError) as raised, cluster_outages():
        raise error
    unreachable = isinstance(error, RedisClusterUnreachableError)
    assert type(raised.value) is (ClusterUnreachable if unreachable else ClusterUnavailable)
    assert raised.value.__cause__ is error


def on(cluster: LocalCluster, key_prefix: str) -> Settings:
    """Settings of a ranker on a private cluster, quick to give up on a node."""
    return Settings(
        redis_url=",".join(cluster.urls),
        redis_cluster=True,
        key_prefix=key_prefix,
        redis_timeout_s=0.5,
    )


@pytest.fixture
def small_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A private cluster of three masters, to take a slot from (never the session's)."""
    with LocalCluster(tmp_path / "cluster", replicas=0) as cluster:
        yield cluster


async def test_a_slot_not_served_answers_503_and_a_keyed_retry_counts_once(
    aiohttp_client: AiohttpClient, small_cluster: LocalCluster, redis_target: RedisTarget
) -> None:
    """The site-wide ranking's slot taken from its master: the cluster answers CLUSTERDOWN
    for it (as while a failed master waits for its replica to take over). A flush that
    counted in the other ranking and failed in that one is a 503 that may have counted; its
    retry with the same key, once the slot is served again, counts it exactly once."""
    keys = Keys("down")
    client = await aiohttp_client(create_app(on(small_cluster, "down"), clock=FakeClock(T0)))
    admin = open_cluster(tuple(small_cluster.urls), decode_responses=True)
    try:
        await admin.initialize()
        slot = admin.keyslot(keys.scores("all"))
        owner = admin.get_node_from_key(keys.scores("all"))
        # A key whose idempotency record lives elsewhere: its claim is taken, its counts fail.
        token = next(
            f"batch-{n}"
            for n in range(100)
            if admin.get_node_from_key(keys.idempotency(f"batch-{n}")) != owner
        )
        batch = [{"article_id": "a", "section": "sports", "ts": T0}]
        first = await client.post("/v1/events", json=batch)
        assert first.status == 200, await first.text()
        await admin.execute_command("CLUSTER DELSLOTS", slot, target_nodes=owner)

        failed = await client.post("/v1/events", json=batch, headers={"Idempotency-Key": token})
        assert failed.status == 503
        assert "Retry-After" in failed.headers
        error = (await failed.json())["error"]
        assert error["code"] == "redis_unavailable"
        assert "may still have been counted" in error["message"]
        article = await client.get("/v1/articles/a")
        assert article.status == 503
        assert (await article.json())["error"]["code"] == "redis_unavailable"

        await admin.execute_command("CLUSTER ADDSLOTS", slot, target_nodes=owner)

        async def retried() -> bool:
            again = await client.post("/v1/events", json=batch, headers={"Idempotency-Key": token})
            return again.status == 200

        await eventually(retried)
        scores = (await (await client.get("/v1/articles/a")).json())["scores"]
        # Two batches of one view each, at the clock's time: the failed one and its retry
        # counted once between them, in both rankings.
        assert scores == {"sports": pytest.approx(2.0), "all": pytest.approx(2.0)}
        assert client.app[METRICS].redis_up._value.get() == 1
    finally:
        await admin.aclose()


async def test_a_cluster_not_joined_yet_is_not_ready_and_is_taken_up_once_it_is(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_target: RedisTarget
) -> None:
    """Nodes that answer but are not joined cover no slot: ranker is not ready (503, never a
    500) and refuses views with a 503; once the cluster is made, it is ready, takes views,
    and hears the other replicas' change notices, without a restart."""
    cluster = LocalCluster(tmp_path / "cluster", replicas=0)
    cluster.start_nodes()
    try:
        client = await aiohttp_client(create_app(on(cluster, "forming"), clock=FakeClock(T0)))
        batch = [{"article_id": "a", "section": "sports", "ts": T0}]
        not_ready = await client.get("/readyz")
        assert not_ready.status == 503
        refused = await client.post("/v1/events", json=batch)
        assert refused.status == 503
        assert (await refused.json())["error"]["code"] == "redis_unavailable"

        await asyncio.to_thread(cluster.join)

        async def ready() -> bool:
            return (await client.get("/readyz")).status == 200

        async def hearing() -> bool:
            up = client.app[METRICS].registry.get_sample_value("ranker_change_subscription_up")
            return up == 1

        await eventually(ready)
        await eventually(hearing)

        async def taken() -> bool:
            return (await client.post("/v1/events", json=batch)).status == 200

        await eventually(taken)
    finally:
        cluster.stop()
