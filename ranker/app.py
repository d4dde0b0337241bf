"""The application factory. Synchronous and free of I/O; resources open in cleanup contexts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from ranker.api.appkeys import (
    ADMISSION,
    CACHE,
    CLOCK,
    INGESTOR,
    METRICS,
    METRICS_DIR,
    NOTICES,
    REDIS,
    SETTINGS,
    STORE,
)
from ranker.api.routes import ROUTES, add_routes
from ranker.config import Settings
from ranker.ingest.admission import Admission
from ranker.ingest.bots import REASONS as BOT_REASONS
from ranker.ingest.dedup import DUPLICATE_READER
from ranker.ingest.flusher import Ingestor
from ranker.ingest.parse import REJECTION_CODES
from ranker.lists.cache import RankingCache
from ranker.metrics import REDIS_BACKGROUND_OPERATIONS, Metrics
from ranker.runtime.worker_metrics import keep_writing_snapshots
from ranker.site import site_routes
from ranker.store import RankingStore
from ranker.store.base import article_connections, open_client
from ranker.store.notices import ChangeNotices
from ranker.store.watch import keep_watching_redis

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
    app.cleanup_ctx.append(_notices_ctx)
    app.cleanup_ctx.append(_ingestor_ctx)
    add_routes(app, site_routes())
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Reads and metadata writes are idempotent: retry once on a broken connection, which is how
    # a pooled connection that Redis closed (restart, idle timeout) first shows itself.
    read_retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    client = open_client(settings, settings.redis_max_connections, read_retry)
    # Article reads are open to anyone, for any id: a pool of their own, so a flood of them
    # cannot take the connections list refreshes, ingest and editors need.
    article_client = open_client(settings, article_connections(settings), read_retry)
    # Flushes have a connection of their own, so no burst of reads can hold up ingest, and are
    # never retried: a retried increment script could count a flush twice (see RankingStore).
    flush_client = open_client(settings, 1, Retry(NoBackoff(), 0))
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


async def _redis_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    watcher = asyncio.create_task(
        keep_watching_redis(app[STORE], app[METRICS]), name="ranker-redis"
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


async def _notices_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, cache = app[SETTINGS], app[CACHE]
    # A connection of its own, which the subscription holds for as long as it lasts.
    subscriber = open_client(settings, 1, Retry(NoBackoff(), 0))
    notices = ChangeNotices(
        app[REDIS], subscriber, app[STORE].keys.changes(), settings.rankings, app[METRICS]
    )
    app[NOTICES] = notices
    listener = asyncio.create_task(
        notices.listen(cache.mark_written, cache.mark_stale_for_refresh),
        name="ranker-notices",
    )
    yield
    await stop_task(listener)
    await notices.close()
    await subscriber.aclose()


async def _ingestor_ctx(app: web.Application) -> AsyncIterator[None]:
    cache, notices = app[CACHE], app[NOTICES]

    def applied(rankings: Iterable[str]) -> None:
        # This replica's lists, and (by a notice) the others', show the views at once.
        written = set(rankings)
        cache.mark_written(written)
        notices.publish(written)

    ingestor = Ingestor(app[STORE], app[SETTINGS], app[METRICS], app[CLOCK], on_applied=applied)
    ingestor.start()
    app[INGESTOR] = ingestor
    yield
    await ingestor.close()
