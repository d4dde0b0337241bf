"""Group commit: every ingest request waits for one shared flush to Redis.

While a flush is in flight, new requests queue their views; the next flush takes them all at
once. Views of one article in one ranking become one increment, so Redis sees one script call
per ranking per flush however many events arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from math import exp2

from redis.exceptions import RedisError

from .config import SITE_WIDE, Settings
from .errors import Overloaded, StoreUnavailable
from .events import View, merge_metadata
from .metrics import Metrics
from .store import FlushPlan, RankingStore

log = logging.getLogger(__name__)

Clock = Callable[[], float]

MAX_FLUSH_VIEWS = 25_000
"""Views per flush at most (whole requests are never split): keeps each script call short, so
one flush never holds Redis, or outlasts the command timeout, however far ingest falls behind."""


def plan_flush(
    views: Sequence[View],
    metadata: dict[str, tuple[str | None, str | None]],
    settings: Settings,
) -> FlushPlan:
    """Coalesce views into one amount per (ranking, article).

    Amounts are relative to the newest view's time, so every exponent is at most zero and no
    amount can overflow; the script scales them to the ranking's landmark.
    """
    reference_ts = max(view.ts for view in views)
    increments: dict[str, defaultdict[str, float]] = {}
    # Per section: the (ranking, half-life) pairs a view of it feeds, and their running sums.
    targets: dict[str, list[tuple[defaultdict[str, float], float]]] = {}
    for section in {view.section for view in views}:
        targets[section] = [
            (increments.setdefault(ranking, defaultdict(float)), settings.half_life_for(ranking))
            for ranking in (section, SITE_WIDE)
        ]
    for article_id, section, ts, weight in views:
        age = ts - reference_ts
        for amounts, half_life in targets[section]:
            amounts[article_id] += weight * exp2(age / half_life)
    return FlushPlan(reference_ts, increments, metadata)


def _discard_outcome(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class _Request:
    __slots__ = ("future", "metadata", "views")

    def __init__(
        self,
        views: list[View],
        metadata: dict[str, tuple[str | None, str | None]],
        future: asyncio.Future[None],
    ) -> None:
        self.views = views
        self.metadata = metadata
        self.future = future


class Ingestor:
    """Owns the flush loop. ``submit`` returns once the views are applied in Redis."""

    def __init__(
        self,
        store: RankingStore,
        settings: Settings,
        metrics: Metrics,
        clock: Clock,
        *,
        on_applied: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        self._store = store
        self._on_applied = on_applied
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._queue: deque[_Request] = deque()
        self._queued_views = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ranker-flush")

    async def submit(
        self, views: list[View], metadata: dict[str, tuple[str | None, str | None]]
    ) -> None:
        """Queue views for the next flush and wait for it.

        Raises :class:`Overloaded` at once when the queue is full, :class:`StoreUnavailable`
        when the flush fails; in both cases nothing is acknowledged.
        """
        if not views:
            return
        if self._closing:
            raise StoreUnavailable("ranker is shutting down; nothing was counted")
        limit = self._settings.max_pending_events
        if self._queue and self._queued_views + len(views) > limit:
            raise Overloaded(
                f"more than {limit} views are waiting to be applied; nothing was counted"
            )
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(views, metadata, future))
        self._queued_views += len(views)
        self._metrics.flush_queue_events.set(self._queued_views)
        self._wakeup.set()
        try:
            # Shielded: a request cancelled while it waits must not cancel the shared flush.
            await asyncio.shield(future)
        except asyncio.CancelledError:
            # Nobody will read this request's outcome now; take it, so a failed flush is not
            # also reported as an exception that was never retrieved.
            future.add_done_callback(_discard_outcome)
            raise

    async def close(self) -> None:
        """Refuse new views, flush whatever is queued, then end the loop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while self._queue or not self._closing:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._flush(self._take_batch())

    def _take_batch(self) -> list[_Request]:
        """Whole requests, oldest first, up to MAX_FLUSH_VIEWS (at least one request)."""
        batch = [self._queue.popleft()]
        size = len(batch[0].views)
        while self._queue and size + len(self._queue[0].views) <= MAX_FLUSH_VIEWS:
            request = self._queue.popleft()
            size += len(request.views)
            batch.append(request)
        self._queued_views -= size
        self._metrics.flush_queue_events.set(self._queued_views)
        return batch

    async def _flush(self, batch: list[_Request]) -> None:
        started = time.perf_counter()
        views = [view for request in batch for view in request.views]
        metadata: dict[str, tuple[str | None, str | None]] = {}
        for request in batch:
            for article_id, (title, url) in request.metadata.items():
                merge_metadata(metadata, article_id, title, url)
        error: Exception | None = None
        plan = plan_flush(views, metadata, self._settings)
        try:
            await self._store.apply(plan, self._clock())
        except RedisError as exc:
            log.warning("flush of %d views failed: %s", len(views), exc)
            self._metrics.redis_errors.labels(operation="flush").inc()
            error = StoreUnavailable(
                f"Redis did not acknowledge the batch ({type(exc).__name__}); it was not "
                "counted, or only partly if Redis failed part-way through the flush"
            )
        except Exception as exc:
            # A bug must fail the requests sharing this flush, not kill the loop for later ones.
            log.exception("flush of %d views failed", len(views))
            error = exc
        if error is None:
            if self._on_applied is not None:
                self._on_applied(plan.increments)
            self._metrics.flush_duration.observe(time.perf_counter() - started)
            self._metrics.flush_events.observe(len(views))
        for request in batch:
            if request.future.done():
                continue
            if error is None:
                request.future.set_result(None)
            else:
                request.future.set_exception(error)
