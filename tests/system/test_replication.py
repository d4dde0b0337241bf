"""``RANKER_REDIS_WAIT_REPLICAS``: a batch is acknowledged once a replica has it; with the replica
gone it is answered 503, and its retry (same Idempotency-Key) is counted once when a replica is
back. A private primary and replicas, never the shared Redis."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ranker.app import create_app
from ranker.config import Settings
from ranker.runtime.cluster import LocalCluster
from ranker.runtime.embedded import EmbeddedRedis
from ranker.store.keys import Keys
from tests.conftest import AiohttpClient, FakeClock
from tests.support.cluster import serving
from tests.support.waiting import eventually

BATCH = [{"article_id": "safe", "section": "sports", "weight": 2}]
KEY = {"Idempotency-Key": "batch-0001"}


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "primary", persist=False) as server:
        yield server


async def replicate(primary: EmbeddedRedis, replica: EmbeddedRedis) -> None:
    """Make ``replica`` a replica of ``primary`` and wait until it is in sync."""
    client = Redis.from_url(replica.url, decode_responses=True)
    try:
        await client.replicaof("127.0.0.1", primary.port)
        for _ in range(200):
            if (await client.info("replication")).get("master_link_status") == "up":
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the replica never caught up")
    finally:
        await client.aclose()


async def test_a_batch_is_answered_once_a_replica_has_it_and_counted_once(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    primary: EmbeddedRedis,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        redis_url=primary.url, redis_wait_replicas=1, redis_wait_timeout_ms=200
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    with EmbeddedRedis(tmp_path / "replica-1", persist=False) as replica:
        await replicate(primary, replica)
        first = await client.post("/v1/events", json=BATCH)
        assert first.status == 200, await first.text()
    # The replica is gone: counted on the primary, but not confirmed.
    unconfirmed = await client.post("/v1/events", json=BATCH, headers=KEY)
    assert unconfirmed.status == 503
    body = await unconfirmed.json()
    assert body["error"]["code"] == "redis_replication_unconfirmed"
    assert "Retry-After" in unconfirmed.headers
    with EmbeddedRedis(tmp_path / "replica-2", persist=False) as replica:
        await replicate(primary, replica)
        retried = await client.post("/v1/events", json=BATCH, headers=KEY)
        assert retried.status == 200, await retried.text()
        assert (await retried.json())["accepted"] == 1
    article = await (await client.get("/v1/articles/safe")).json()
    # Two batches of weight 2: the unconfirmed one and its retry counted once between them.
    assert article["scores"]["sports"] == pytest.approx(4.0)


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """3 masters and a replica each, of this test's own: it pauses a replica."""
    with LocalCluster(tmp_path / "cluster") as cluster:
        yield cluster


async def test_on_a_cluster_a_batch_waits_for_every_master_it_wrote_to(
    aiohttp_client: AiohttpClient, clock: FakeClock, private_cluster: LocalCluster
) -> None:
    """The replica of the site-wide ranking's master paused: the flush's WAIT on that master
    (over the connection the flush wrote on, or a paused replica would count as having it)
    is not answered by it, so the batch is 503; its retry once the replica is back is 200
    and counted once."""
    settings = Settings(
        redis_url=",".join(private_cluster.urls),
        redis_cluster=True,
        key_prefix="wait",
        redis_wait_replicas=1,
        # A second: six nodes share this machine's two cores with the test, and a replica that
        # is up may take longer than 200 ms to acknowledge (a fresh-clone CI run's first batch
        # got 0 of 1 within 200 ms). The paused replica's batch is 503 after it all the same.
        redis_wait_timeout_ms=1000,
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    first = await client.post("/v1/events", json=BATCH)
    assert first.status == 200, await first.text()
    replica = await serving(private_cluster, Keys("wait").scores("all"), replica=True)
    assert replica.pid is not None
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        unconfirmed = await client.post("/v1/events", json=BATCH, headers=KEY)
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    assert unconfirmed.status == 503, await unconfirmed.text()
    body = await unconfirmed.json()
    assert body["error"]["code"] == "redis_replication_unconfirmed"
    assert "Retry-After" in unconfirmed.headers

    async def confirmed() -> bool:
        retried = await client.post("/v1/events", json=BATCH, headers=KEY)
        return retried.status == 200

    await eventually(confirmed)
    article = await (await client.get("/v1/articles/safe")).json()
    # Two batches of weight 2: the unconfirmed one and its retries counted once between them.
    assert article["scores"] == {"sports": pytest.approx(4.0), "all": pytest.approx(4.0)}
