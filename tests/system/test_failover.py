"""A master of a Redis Cluster killed under load, its replica promoted, and the killed node
back as a replica (issue 14): with ``RANKER_REDIS_WAIT_REPLICAS=1`` and senders that retry a
batch with its Idempotency-Key until a 200, every acknowledged batch is counted exactly once;
lists are served throughout, and ranker finds Redis back without a restart.

A private cluster of 3 masters and a replica each (never the session's): it kills a node."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.exceptions import RedisError

from ranker.api.appkeys import METRICS
from ranker.app import create_app
from ranker.config import Settings
from ranker.runtime.cluster import LocalCluster
from ranker.store.keys import Keys
from tests.conftest import AiohttpClient, Client, FakeClock
from tests.support.cluster import in_sync_replica, says_ok, serving
from tests.support.http import send_until_acknowledged
from tests.support.oracle import REL, Oracle
from tests.support.waiting import eventually

SECTIONS = ("sports", "world", "business")
ARTICLES = tuple(f"art-{n}" for n in range(6))
PREFIX = "failover"


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster") as cluster:
        yield cluster


@dataclass
class Load:
    """What the load saw: the events of every acknowledged batch, and every answer."""

    acknowledged: list[dict[str, Any]] = field(default_factory=list)
    sends: Counter[int] = field(default_factory=Counter)
    retried_batches: int = 0
    list_reads: Counter[int] = field(default_factory=Counter)
    article_reads: Counter[int] = field(default_factory=Counter)
    read_errors: list[str] = field(default_factory=list)


def batch(sender: str, number: int, now: float) -> list[dict[str, Any]]:
    """Views of the fixed articles, each in one section (its article's), at times in the last
    ten minutes: every article's score is a decayed sum, not a count."""
    return [
        {
            "article_id": ARTICLES[(number + i) % len(ARTICLES)],
            "section": SECTIONS[(number + i) % len(ARTICLES) % len(SECTIONS)],
            "ts": now - ((number * 37 + i * 11) % 600),
            "weight": 1 + (number + i) % 3,
        }
        for i in range(8)
    ]


async def sender(client: Client, name: str, now: float, load: Load, stop: asyncio.Event) -> None:
    """Sends keyed batches, each retried with its key until a 200."""
    number = 0
    while not stop.is_set():
        events = batch(name, number, now)
        tries = await send_until_acknowledged(client, events, f"{name}-{number}", load.sends)
        load.retried_batches += tries > 1
        load.acknowledged.extend(events)
        number += 1


async def reader(client: Client, load: Load, stop: asyncio.Event) -> None:
    lists = ["/v1/rankings/all", *(f"/v1/rankings/{section}?limit=5" for section in SECTIONS)]
    number = 0
    while not stop.is_set():
        article = f"/v1/articles/{ARTICLES[number % len(ARTICLES)]}"
        number += 1
        for path in (*lists, article):
            try:
                response = await client.get(path)
                await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.read_errors.append(f"{path}: {exc!r}")
                continue
            counted = load.article_reads if path == article else load.list_reads
            counted[response.status] += 1
        await asyncio.sleep(0.02)


async def redis_up(client: Client) -> bool:
    """/readyz says Redis answers, and ranker_redis_up says 1."""
    response = await client.get("/readyz")
    body = await response.json()
    gauge = client.app[METRICS].registry.get_sample_value("ranker_redis_up")
    return response.status == 200 and body["redis"] == "up" and gauge == 1


async def kill_the_site_wide_master_and_bring_it_back(cluster: LocalCluster) -> None:
    """SIGKILL the master of the site-wide ranking's slot; once its replica took over, start
    it again (same port, same data directory), and wait until it is that one's replica."""
    key = Keys(PREFIX).scores("all")
    master = await serving(cluster, key)
    master.kill()
    survivors = [node for node in cluster.nodes if node is not master]

    async def failed_over() -> bool:
        try:
            promoted = await serving(cluster, key)
        except RedisError:
            return False
        states = await asyncio.gather(*(says_ok(node) for node in survivors))
        return promoted is not master and all(states)

    await eventually(failed_over, deadline_s=30)
    await asyncio.sleep(0.5)
    master.start()  # its nodes.conf kept: it rejoins as a replica of the promoted one

    async def rejoined() -> bool:
        return await in_sync_replica(master)

    await eventually(rejoined, deadline_s=30)
    await asyncio.sleep(1.0)


async def test_a_master_killed_under_load_loses_nothing_acknowledged_and_counts_retries_once(
    aiohttp_client: AiohttpClient, private_cluster: LocalCluster
) -> None:
    clock = FakeClock()  # stands still: the oracle's sums are taken at the same instant
    settings = Settings(
        redis_url=",".join(private_cluster.urls),
        redis_cluster=True,
        key_prefix=PREFIX,
        sections=SECTIONS,
        redis_wait_replicas=1,
        redis_wait_timeout_ms=300,
        redis_timeout_s=0.5,
        request_timeout_s=3.0,
        refresh_interval_s=0.1,
        prune_below=1e-12,
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    load, stop = Load(), asyncio.Event()
    # Every article in every ranking, and every list read once, before the fault: a list is
    # served from memory while Redis cannot be read, once it was read.
    seed = [
        {"article_id": article, "section": section, "ts": clock.now}
        for article in ARTICLES
        for section in SECTIONS
    ]
    seeded = await client.post("/v1/events", json=seed)
    assert seeded.status == 200, await seeded.text()
    load.acknowledged.extend(seed)
    for path in ("/v1/rankings/all", *(f"/v1/rankings/{section}" for section in SECTIONS)):
        assert (await client.get(path)).status == 200
    tasks = [
        *(asyncio.create_task(sender(client, f"s{n}", clock.now, load, stop)) for n in range(3)),
        asyncio.create_task(reader(client, load, stop)),
    ]
    await asyncio.sleep(1.0)

    try:
        await kill_the_site_wide_master_and_bring_it_back(private_cluster)
        stop.set()
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    print(
        f"answers to sends {dict(load.sends)}, {load.retried_batches} batches retried; "
        f"list reads {dict(load.list_reads)}; article reads {dict(load.article_reads)}"
    )
    # The fault was felt: batches were refused (503) and retried, never answered 500.
    assert load.retried_batches > 0
    assert set(load.sends) <= {200, 503, 0}
    # Lists are served from memory throughout; an article read (Redis's, not cached) may be
    # refused while its ranking's slot has no master, never failed with a 500.
    assert load.read_errors == []
    assert set(load.list_reads) <= {200, 304}
    assert set(load.article_reads) <= {200, 304, 503}
    await eventually(lambda: redis_up(client))

    # Every acknowledged batch counted exactly once, in every ranking.
    oracle = Oracle(settings.half_life_for)
    oracle.add(load.acknowledged)
    for article in ARTICLES:
        response = await client.get(f"/v1/articles/{article}")
        assert response.status == 200
        scores = (await response.json())["scores"]
        expected = {
            ranking: oracle.score(ranking, article, clock.now)
            for ranking in ("all", *SECTIONS)
            if oracle.views[ranking].get(article)
        }
        assert scores == pytest.approx(expected, rel=REL), article
