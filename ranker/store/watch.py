"""Finds Redis down and back in the background, and keeps ``ranker_redis_up`` and
``ranker_redis_writable`` current when no traffic touches it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ranker.metrics import Metrics

from . import RankingStore
from .base import refuses_writes

__all__ = ["REDIS_CHECK_INTERVAL_S", "keep_watching_redis"]

# The name its lines have always carried, from before this module was cut from ranker.app.
log = logging.getLogger("ranker.app")


REDIS_CHECK_INTERVAL_S = 5.0
"""How often Redis is PINGed while it answers, so ``ranker_redis_up`` is current when no
traffic touches it."""

WRITE_RECHECK_S = 1.0
"""How often the write check runs while Redis refuses writes: ranker takes writes again within
about a second of Redis doing so."""

RECONNECT_BACKOFF_S = (0.05, 0.1, 0.2, 0.5)
"""Waits between checks while Redis is down, the last repeated: ranker is ready again within
about half a second of Redis answering, at two checks a second for a long outage."""


async def _watch_redis(store: RankingStore, metrics: Metrics) -> None:
    version_known = False
    failures = 0
    while True:
        # Cleared first: a command failing while this check runs wakes the next one at once.
        store.went_down.clear()
        # The store's timing keeps ranker_redis_up current; an outage is the alert's to report.
        error: RedisError | None = None
        try:
            await store.ping()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            metrics.redis_errors.labels(operation="ping").inc()
            error = exc
        else:
            if not version_known:
                await _check_server(store, metrics)
                version_known = True
            await _check_writes(store, metrics)
        if store.available:
            if failures:
                log.info("Redis answers again")
            failures = 0
            # While Redis refuses writes, sooner: its return is what writers wait for.
            interval = REDIS_CHECK_INTERVAL_S if store.writable else WRITE_RECHECK_S
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await store.went_down.wait()
        else:
            if not failures:
                # What is wrong, once: a wrong RANKER_REDIS_URL shows here.
                log.warning("Redis is unavailable; checking until it answers: %s", error)
            await asyncio.sleep(RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S) - 1)])
            failures += 1


async def _check_writes(store: RankingStore, metrics: Metrics) -> None:
    """Whether Redis takes writes, so ``ranker_redis_writable`` is current without traffic:
    under OOM or on a read-only replica, PING still answers."""
    try:
        await store.check_writes()
    except (RedisConnectionError, RedisTimeoutError):
        metrics.redis_errors.labels(operation="write_check").inc()  # the next PING sees to it
    except ResponseError as exc:
        metrics.redis_errors.labels(operation="write_check").inc()
        if not refuses_writes(exc):  # e.g. an ACL that forbids the key: say so, go on
            log.warning("the Redis write check failed: %s", exc)


async def _check_server(store: RankingStore, metrics: Metrics) -> None:
    """Once Redis first answers: its version for ``ranker_build_info``, and a warning if it may
    evict keys (eviction can drop what makes retries count once, or the counts themselves)."""
    try:
        metrics.set_build_info(await store.server_version())
        policy = await store.eviction_policy()
    except RedisError as exc:  # e.g. INFO refused by an ACL: the version stays unknown
        log.warning("cannot read the Redis server's version and eviction policy: %s", exc)
        return
    if policy != "noeviction":
        log.warning(
            "Redis evicts keys under memory pressure (maxmemory-policy %s): it may drop the "
            "keys that make a retried batch count once, or counts themselves. Set "
            "maxmemory-policy noeviction",
            policy,
        )


async def keep_watching_redis(store: RankingStore, metrics: Metrics) -> None:
    """Check Redis in the background for as long as the process runs: ``ranker_redis_up``,
    ``ranker_redis_writable`` and readiness stay current without traffic."""
    # Whatever goes wrong, the watcher must not end: ranker_redis_up would freeze.
    while True:
        try:
            await _watch_redis(store, metrics)
        except RedisError as exc:
            log.warning("Redis check failed: %s", exc)
        except Exception:
            log.exception("Redis check failed")
        await asyncio.sleep(REDIS_CHECK_INTERVAL_S)
