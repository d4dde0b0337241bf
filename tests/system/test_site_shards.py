"""Two ``ranker serve`` processes on the local 3+3 Redis Cluster, each given a different seed node,
with the site-wide ranking spread over four sub-rankings (``RANKER_SITE_SHARDS=4``): views sent
to both, some with an ``Idempotency-Key`` and retried through the other, add up to the exact
decayed sums, and both serve the same lists."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ranker.config import Settings
from ranker.runtime.cluster import LocalCluster
from tests.conftest import RedisTarget
from tests.ingest.test_flusher import SECTIONS, batches, make_events
from tests.support.oracle import Oracle, assert_list_matches
from tests.test_cli import serving


def serving_with_seed(tmp_path: Path, seed: str, key_prefix: str) -> Any:
    return serving(
        tmp_path,
        RANKER_REDIS_URL=seed,
        RANKER_REDIS_CLUSTER="true",
        RANKER_SITE_SHARDS="4",
        RANKER_KEY_PREFIX=key_prefix,
        RANKER_SECTIONS=",".join(SECTIONS),
        RANKER_REFRESH_INTERVAL_S="0.2",
        RANKER_LOG_LEVEL="WARNING",
    )


async def lists_of(session: aiohttp.ClientSession, base: str) -> dict[str, dict[str, Any]]:
    found = {}
    for ranking in ("all", *SECTIONS):
        async with session.get(f"{base}/v1/rankings/{ranking}", params={"limit": "20"}) as reply:
            assert reply.status == 200
            found[ranking] = await reply.json()
    return found


def exact(oracle: Oracle, lists: dict[str, dict[str, Any]]) -> bool:
    try:
        for ranking, body in lists.items():
            assert_list_matches(oracle, ranking, 20, body)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize("redis_target", ["cluster"], indirect=True)
async def test_two_processes_with_other_seeds_and_four_site_shards_serve_the_exact_sums(
    local_cluster: LocalCluster,
    redis_target: RedisTarget,
    redis: Redis,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    seeds = local_cluster.urls
    rng = random.Random(4)
    now = time.time()
    events = make_events(rng, 12_000, 300, now - 1800, now)
    oracle = Oracle(Settings(sections=SECTIONS).half_life_for)
    oracle.add(events)
    with (
        serving_with_seed(tmp_path / "first", seeds[0], key_prefix) as first,
        serving_with_seed(tmp_path / "second", seeds[-1], key_prefix) as second,
    ):
        bases = (first, second)
        async with aiohttp.ClientSession() as session:

            async def post(base: str, batch: Any, key: str | None) -> None:
                headers = {} if key is None else {"Idempotency-Key": key}
                async with session.post(f"{base}/v1/events", json=batch, headers=headers) as reply:
                    assert reply.status == 200, await reply.text()

            sends = []
            for n, batch in enumerate(batches(events, 300)):
                key = f"batch-{key_prefix}-{n}" if n % 2 else None
                sends.append(post(bases[n % 2], list(batch), key))
            await asyncio.gather(*sends)
            # Keyed batches sent again, each through the other process: counted once.
            await asyncio.gather(
                *(
                    post(bases[(n + 1) % 2], list(batch), f"batch-{key_prefix}-{n}")
                    for n, batch in enumerate(batches(events, 300))
                    if n % 2
                )
            )
            give_up = time.monotonic() + 30
            while True:
                served = [await lists_of(session, base) for base in bases]
                if all(exact(oracle, lists) for lists in served):
                    break
                assert time.monotonic() < give_up, "the lists never matched the exact sums"
                await asyncio.sleep(0.1)
            for ranking in ("all", *SECTIONS):
                orders = [
                    [item["article_id"] for item in lists[ranking]["items"]] for lists in served
                ]
                assert orders[0] == orders[1], ranking
    # The site-wide scores are in four sub-rankings, not in one set.
    parts = [key async for key in redis.scan_iter(match=f"{key_prefix}:{{r:all#*}}:scores")]
    assert len(parts) == 4
