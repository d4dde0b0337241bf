"""The application factory. Synchronous and free of I/O; resources open in cleanup contexts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .admission import Admission
from .bots import REASONS as BOT_REASONS
from .cache import RankingCache
from .config import Settings
from .dedup import DUPLICATE_READER
from .events import REJECTION_CODES
from .ingest import Ingestor
from .metrics import REDIS_BACKGROUND_OPERATIONS, Metrics
from .routes import ROUTES, add_routes
from .state import ADMISSION, CACHE, CLOCK, INGESTOR, METRICS, METRICS_DIR, REDIS, SETTINGS, STORE
from .store import RankingStore
from .store_base import WaitingPool, article_connections, refuses_writes
from .worker_metrics import keep_writing_snapshots

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    metrics_dir: Path | None = None,
) -> web.Application:
    """Build the app. ``settings.redis_url`` must be set (``ranker serve`` fills it in when it
    starts the embedded server); ``clock`` is the time source for event defaults and scores.
    ``metrics_dir``, set for each of several workers, is where they share their metrics."""
    if settings.redis_url is None:
        raise ValueError("settings.redis_url is required to create the app")
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[METRICS].start_at_zero(
        sections=settings.sections,
        rejection_codes=REJECTION_CODES,
        exclusion_reasons=(*BOT_REASONS, DUPLICATE_READER),
        # Only the API's routes issue Redis commands of their own.
        redis_operations=(
            *REDIS_BACKGROUND_OPERATIONS,
            *(route.path for route in ROUTES if route.path.startswith("/v1/")),
        ),
    )
    app[CLOCK] = clock
    app[ADMISSION] = Admission(settings, app[METRICS])
    if metrics_dir is not None:
        app[METRICS_DIR] = metrics_dir
        app.cleanup_ctx.append(_metrics_snapshot_ctx)
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_redis_watch_ctx)
    app.cleanup_ctx.append(_cache_ctx)
    app.cleanup_ctx.append(_ingestor_ctx)
    add_routes(app)
    return app


def _client(settings: Settings, max_connections: int, retry: Retry) -> Redis:
    assert settings.redis_url is not None  # checked in create_app
    pool = WaitingPool.from_url(
        settings.redis_url,
        # Past the cap a request waits for a connection (up to the timeout) instead of failing;
        # after it, it fails with PoolExhausted, which is no sign of a Redis outage.
        max_connections=max_connections,
        timeout=settings.redis_timeout_s,
        decode_responses=True,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=retry,
    )
    return Redis.from_pool(pool)


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Reads and metadata writes are idempotent: retry once on a broken connection, which is how
    # a pooled connection that Redis closed (restart, idle timeout) first shows itself.
    read_retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    client = _client(settings, settings.redis_max_connections, read_retry)
    # Article reads are open to anyone, for any id: a pool of their own, so a flood of them
    # cannot take the connections list refreshes, ingest and editors need.
    article_client = _client(settings, article_connections(settings), read_retry)
    # Flushes have a connection of their own, so no burst of reads can hold up ingest, and are
    # never retried: a retried increment script could count a flush twice (see RankingStore).
    flush_client = _client(settings, 1, Retry(NoBackoff(), 0))
    app[REDIS] = client
    app[STORE] = RankingStore(
        client,
        settings,
        flush_redis=flush_client,
        article_redis=article_client,
        metrics=app[METRICS],
    )
    yield
    await client.aclose()
    await article_client.aclose()
    await flush_client.aclose()


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait until it has ended.

    Cancelling once is not always enough: redis-py can swallow a cancellation that lands while
    it waits on the socket, and the loop would go on to its next round (seen in a review, where
    it left a shutdown waiting for ever). So cancel again until the task is done.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())


async def _metrics_snapshot_ctx(app: web.Application) -> AsyncIterator[None]:
    writer = asyncio.create_task(
        keep_writing_snapshots(app[METRICS].registry, app[METRICS_DIR]), name="ranker-metrics"
    )
    yield
    # Last of all to stop (cleanup runs in reverse): the final snapshot has the final flush.
    await stop_task(writer)


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


async def _keep_watching_redis(store: RankingStore, metrics: Metrics) -> None:
    # Whatever goes wrong, the watcher must not end: ranker_redis_up would freeze.
    while True:
        try:
            await _watch_redis(store, metrics)
        except RedisError as exc:
            log.warning("Redis check failed: %s", exc)
        except Exception:
            log.exception("Redis check failed")
        await asyncio.sleep(REDIS_CHECK_INTERVAL_S)


async def _redis_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    watcher = asyncio.create_task(
        _keep_watching_redis(app[STORE], app[METRICS]), name="ranker-redis"
    )
    yield
    await stop_task(watcher)


async def _cache_ctx(app: web.Application) -> AsyncIterator[None]:
    cache = RankingCache(app[STORE], app[SETTINGS], app[METRICS], app[CLOCK])
    app[CACHE] = cache
    refresher = asyncio.create_task(cache.run(), name="ranker-refresh")
    yield
    await stop_task(refresher)
    await cache.close()


async def _ingestor_ctx(app: web.Application) -> AsyncIterator[None]:
    ingestor = Ingestor(
        app[STORE], app[SETTINGS], app[METRICS], app[CLOCK], on_applied=app[CACHE].mark_written
    )
    ingestor.start()
    app[INGESTOR] = ingestor
    yield
    await ingestor.close()
