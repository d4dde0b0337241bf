"""Group commit: every ingest request waits for one shared flush to Redis.

While a flush is in flight, new requests queue their views; the next flush takes them all at
once. Views of one article in one ranking become one increment, so Redis sees one script call
per ranking per flush however many events arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from math import exp2

from redis.exceptions import RedisError

from .config import SITE_WIDE, Settings
from .errors import StoreUnavailable
from .events import View, merge_metadata
from .metrics import Metrics
from .store import FlushPlan, RankingStore

log = logging.getLogger(__name__)

Clock = Callable[[], float]


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


class _Pending:
    __slots__ = ("futures", "metadata", "views")

    def __init__(self) -> None:
        self.views: list[View] = []
        self.metadata: dict[str, tuple[str | None, str | None]] = {}
        self.futures: list[asyncio.Future[None]] = []


class Ingestor:
    """Owns the flush loop. ``submit`` returns once the views are applied in Redis."""

    def __init__(
        self, store: RankingStore, settings: Settings, metrics: Metrics, clock: Clock
    ) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._pending = _Pending()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ranker-flush")

    async def submit(
        self, views: list[View], metadata: dict[str, tuple[str | None, str | None]]
    ) -> None:
        """Queue views for the next flush and wait for it; raise StoreUnavailable if it fails."""
        if not views:
            return
        if self._closing:
            raise StoreUnavailable("ranker is shutting down; nothing was counted")
        future = asyncio.get_running_loop().create_future()
        pending = self._pending
        pending.views.extend(views)
        for article_id, (title, url) in metadata.items():
            merge_metadata(pending.metadata, article_id, title, url)
        pending.futures.append(future)
        self._metrics.flush_queue_events.set(len(pending.views))
        self._wakeup.set()
        # Shielded: a client that hangs up must not cancel a flush other requests share.
        await asyncio.shield(future)

    async def close(self) -> None:
        """Refuse new views, flush whatever is queued, then end the loop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not (self._closing and not self._pending.futures):
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, _Pending()
            self._metrics.flush_queue_events.set(0)
            if batch.futures:
                await self._flush(batch)

    async def _flush(self, batch: _Pending) -> None:
        started = time.perf_counter()
        error: Exception | None = None
        try:
            plan = plan_flush(batch.views, batch.metadata, self._settings)
            await self._store.apply(plan, self._clock())
        except RedisError as exc:
            log.warning("flush of %d views failed: %s", len(batch.views), exc)
            self._metrics.redis_errors.labels(operation="flush").inc()
            error = StoreUnavailable(
                f"Redis did not acknowledge the batch ({type(exc).__name__}); "
                "it was not counted, or only partly if the connection broke mid-flush"
            )
        except Exception as exc:
            # A bug must fail the requests sharing this flush, not kill the loop for later ones.
            log.exception("flush of %d views failed", len(batch.views))
            error = exc
        self._metrics.flush_duration.observe(time.perf_counter() - started)
        self._metrics.flush_events.observe(len(batch.views))
        for future in batch.futures:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
