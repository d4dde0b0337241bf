"""Group commit: every ingest request waits for one shared flush to Redis.

While a flush is in flight, new requests queue their views; the next flush takes them all at
once. Views of one article in one ranking become one increment, so Redis sees one script call
per ranking per flush however many events arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable

from redis.exceptions import RedisError

from ranker.config import Settings
from ranker.decay import Clock
from ranker.errors import FlushFailed, Overloaded, ReplicationUnconfirmed, StoreUnavailable
from ranker.metrics import Metrics
from ranker.store import FlushNotSent, RankingStore

from .applier import QueuedFlushes
from .idempotency import IdempotencyKey, key_reused
from .parse import View, merge_metadata
from .plan import FlushPlan, plan_flush_yielding

# The name its log lines have always carried (the module was ranker/ingest.py).
log = logging.getLogger("ranker.ingest")

MAX_FLUSH_VIEWS = 25_000
"""Views per flush at most (whole requests are never split): keeps each script call short, so
one flush never holds Redis, or outlasts the command timeout, however far ingest falls behind."""

PAUSE_S = 0.05
"""Ingest counts as paused, and what its busy spell queued is applied at once, when nothing is
queued or in flight and no request has come for this long. Not at the first moment nothing is:
under load that moment comes between every few flushes (the senders are reading their answers),
and a pass in each made two to three times the passes ``RANKER_APPLY_INTERVAL_S`` apart alone
make, each of fewer flushes, for 0.91 of the views a second (benchmarks/RESULTS.md)."""


def _discard_outcome(future: asyncio.Future[bool]) -> None:
    if not future.cancelled():
        future.exception()


class _Request:
    __slots__ = ("future", "key", "metadata", "views")

    def __init__(
        self,
        views: list[View],
        metadata: dict[str, tuple[str | None, str | None]],
        key: tuple[IdempotencyKey, str] | None,
        future: asyncio.Future[bool],
    ) -> None:
        self.views = views
        self.metadata = metadata
        self.key = key
        self.future = future


class Ingestor:
    """Owns the flush loop. ``submit`` returns once the views are counted in Redis: applied
    to the scores, or (while ingest is busy) queued there for :class:`QueuedFlushes` to apply."""

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
        self._queued = QueuedFlushes(store, settings, metrics, clock, on_applied, self._wakeup.set)
        self._planning = asyncio.Lock()
        self._settled = asyncio.Event()
        """Set while nothing is queued here, in flight, or counted and not applied."""
        self._submitted_at = -math.inf
        """When the last request was queued (monotonic clock)."""

    def check_room(self) -> None:
        """Refuse at once, before a body is read and parsed, when the queue is already full:
        under overload, parsing a batch only to refuse it would take the time reads need."""
        limit = self._settings.max_pending_events
        if self._queued_views >= limit:
            raise Overloaded(
                f"{self._queued_views} views are waiting to be applied, as many as "
                f"RANKER_MAX_PENDING_EVENTS ({limit}) allows; nothing was counted"
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ranker-flush")
        self._queued.start()

    async def submit(
        self,
        views: list[View],
        metadata: dict[str, tuple[str | None, str | None]],
        key: tuple[IdempotencyKey, str] | None = None,
    ) -> bool:
        """Queue views for the next flush and wait for it. ``key`` is the (key, answer to
        keep) of a request sent with an ``Idempotency-Key``. Returns True when Redis found that
        key's views already counted (a retry), so they were not counted again.

        A keyed request that shares a flush with an earlier one of the same key and body is
        such a retry too (only the first is sent to Redis).

        Raises :class:`Overloaded` or :class:`StoreUnavailable` at once when the queue is full
        or Redis is known to be down (nothing counted), :class:`IdempotencyKeyReused` when the
        key was first sent with another body (nothing counted), and :class:`FlushFailed` when
        the flush fails (possibly counted in part).
        """
        if not views:
            # Nothing to count, but the answer is kept all the same: a retry gets it back,
            # and the key cannot be used again for another batch.
            if key is None:
                return False
            idempotency, record = key
            claimed = await self._store.claim_keys({idempotency.token: idempotency.fingerprint})
            idempotency.check(claimed[idempotency.token])
            return not await self._store.keep_answer(idempotency.token, record)
        if self._closing:
            raise StoreUnavailable("ranker is shutting down; nothing was counted")
        if not self._store.available:
            raise StoreUnavailable("Redis is unavailable; nothing was counted")
        limit = self._settings.max_pending_events
        if self._queue and self._queued_views + len(views) > limit:
            raise Overloaded(
                f"{self._queued_views} views are waiting to be applied, and these "
                f"{len(views)} would take the queue past {limit}; nothing was counted"
            )
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(views, metadata, key, future))
        self._settled.clear()
        self._queued_views += len(views)
        self._metrics.flush_queue_events.set(self._queued_views)
        self._submitted_at = time.monotonic()
        self._wakeup.set()
        try:
            # Shielded: a request cancelled while it waits must not cancel the shared flush.
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Nobody will read this request's outcome now; take it, so a failed flush is not
            # also reported as an exception that was never retrieved.
            future.add_done_callback(_discard_outcome)
            raise

    async def applied(self) -> None:
        """Wait until every view submitted so far is applied to the scores (none waits for a
        flush, nor is counted and queued): what a reader of the lists then sees includes them.
        Waits as long as Redis refuses them."""
        await self._settled.wait()

    async def close(self) -> None:
        """Refuse new views, flush whatever is queued (and apply it), then end the loop."""
        self._closing = True
        self._wakeup.set()
        await self._queued.close()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        # Up to the store's flushes_at_once flushes in flight: on a single Redis the next one
        # is planned and written while Redis applies the one before, on one connection, so
        # Redis applies them in order (see ranker/store/line.py).
        in_flight: set[asyncio.Task[None]] = set()

        def track(task: asyncio.Task[None]) -> None:
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            task.add_done_callback(lambda _: self._wakeup.set())

        try:
            while self._queue or in_flight or not self._closing:
                if self._queue and len(in_flight) < self._store.flushes_at_once:
                    track(asyncio.create_task(self._flush(self._take_batch(), bool(in_flight))))
                    continue
                idle = not self._queue and not in_flight
                pause_in: float | None = None  # until ingest counts as paused
                if idle and self._queued.due:
                    pause_in = self._submitted_at + PAUSE_S - time.monotonic()
                    if pause_in <= 0:
                        # Ingest paused: what the busy spell queued is applied at once.
                        track(asyncio.create_task(self._queued.sweep()))
                        continue
                self._wakeup.clear()
                if idle and not self._queued.waiting:
                    self._settled.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), pause_in)
            if self._queued.waiting and self._store.available:
                # The last flushes queued, applied before the end (with Redis down, they stay
                # counted in Redis, for the next flush of their rankings to take).
                await self._queued.sweep()
        finally:
            # Cancelled (close() lets them finish): they end with the loop.
            for flush in in_flight:
                flush.cancel()

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

    async def _flush(self, batch: list[_Request], behind_another: bool) -> None:
        started = time.perf_counter()
        queue = self._queued.queues(behind_another)
        answered = self._queued.answers
        views = sum(len(request.views) for request in batch)
        error: Exception | None = None
        plan: FlushPlan | None = None
        replayed: frozenset[str] = frozenset()
        first_of: dict[str, tuple[str, _Request]] = {}
        repeats: list[_Request] = []
        try:
            first_of, repeats = _first_of_each_key(batch, await self._claim_keys(batch))
            unkeyed = [request.views for request in batch if request.key is None]
            if unkeyed or first_of:  # else every request was refused: nothing to send
                # Planned in turn (the lock is first come, first served), and written as soon
                # as planned, with nothing to wait for between: flushes are written to Redis
                # in the order they were planned, though each lets other requests run while
                # it sums.
                async with self._planning:
                    plan = await plan_flush_yielding(
                        unkeyed,
                        _metadata_of(batch),
                        self._settings,
                        [(token, record, r.views) for token, (record, r) in first_of.items()],
                    )
                replayed = await self._store.apply(plan, self._clock(), queue=queue)
        except RedisError as exc:
            error = self._failed(views, exc)
        except ReplicationUnconfirmed as exc:
            # Counted on the primary: only this flush's batches wait on the replicas' word.
            log.warning("flush of %d views not confirmed by the replicas: %s", views, exc)
            error = exc
        except Exception as exc:
            # A bug must fail the requests sharing this flush, not kill the loop for later ones.
            log.exception("flush of %d views failed", views)
            error = exc
        # Sent to Redis and found counted already: in the plan, their views not counted now.
        skipped = [request for token, (_, request) in first_of.items() if token in replayed]
        retries = {id(request) for request in (*skipped, *repeats)}
        if plan is not None:
            # Queued (or perhaps, as it failed): for a sweep to apply.
            applied = error is None and not queue
            self._queued.answered(plan.rankings(), queue, answered if applied else None)
        if error is None and plan is not None:
            self._counted(plan, skipped, len(retries), applied=not queue)
            self._metrics.flush_duration.observe(time.perf_counter() - started)
            self._metrics.flush_events.observe(views)
        for request in batch:
            if request.future.done():
                continue
            if error is None:
                request.future.set_result(id(request) in retries)
            else:
                request.future.set_exception(error)

    def _failed(self, views: int, exc: RedisError) -> Exception:
        """What the requests of a flush Redis failed are answered with; those queued behind it
        are failed too."""
        log.warning("flush of %d views failed: %s", views, exc)
        self._metrics.redis_errors.labels(operation="flush").inc()
        if isinstance(exc, FlushNotSent):
            error = StoreUnavailable("Redis did not answer; nothing was counted")
            self._fail_queued(error)
            return error
        # Those queued behind it were never sent, and would only wait out the same failure.
        self._fail_queued(
            StoreUnavailable("Redis did not answer a flush just before; nothing was counted")
        )
        return FlushFailed(
            f"Redis did not acknowledge the batch ({type(exc).__name__}). It may still have "
            "been counted, in part or in full: retry with the same Idempotency-Key to have "
            "it counted exactly once"
        )

    def _counted(
        self, plan: FlushPlan, skipped: list[_Request], retries: int, *, applied: bool
    ) -> None:
        """Count a flush's views in the metrics, less those of batches Redis had counted before
        (retries), and, when it ``applied`` them (did not queue them), tell the lists which
        rankings changed."""
        accepted = dict(plan.views_by_section)
        for request in skipped:
            for view in request.views:
                accepted[view[1]] -= 1
        if retries:
            self._metrics.batches_replayed.labels(found="flush").inc(retries)
        for section, count in accepted.items():
            if count:
                self._metrics.events_accepted.labels(section=section).inc(count)
        if not applied:
            return
        if self._on_applied is not None:
            self._on_applied(plan.rankings())

    async def _claim_keys(self, batch: list[_Request]) -> dict[str, str]:
        """The fingerprint each key in ``batch`` stands for (see ``RankingStore.claim_keys``);
        raises :class:`FlushNotSent` when Redis did not take them (no view was sent)."""
        bodies: dict[str, str] = {}
        for request in batch:
            if request.key is not None:
                bodies.setdefault(request.key[0].token, request.key[0].fingerprint)
        if not bodies:
            return {}
        try:
            return await self._store.claim_keys(bodies)
        except FlushNotSent:
            raise
        except RedisError as exc:
            raise FlushNotSent(f"the keys of the flush were not kept: {exc}") from exc

    def _fail_queued(self, error: Exception) -> None:
        while self._queue:
            request = self._queue.popleft()
            if not request.future.done():
                request.future.set_exception(error)
        self._queued_views = 0
        self._metrics.flush_queue_events.set(0)


def _first_of_each_key(
    batch: list[_Request], claimed: dict[str, str]
) -> tuple[dict[str, tuple[str, _Request]], list[_Request]]:
    """The first request of each key and body, which goes to Redis, and the later ones with
    both the same: retries of it, not sent (in one script call, both would be reported as
    retries). One with the same key and another body than the key was first sent with (in
    Redis, or in this flush) is refused, and none of its views counted."""
    first_of: dict[str, tuple[str, _Request]] = {}
    repeats: list[_Request] = []
    for request in batch:
        if request.key is None:
            continue
        key, record = request.key
        if claimed[key.token] != key.fingerprint:
            if not request.future.done():
                request.future.set_exception(key_reused())
        elif key.token in first_of:
            repeats.append(request)
        else:
            first_of[key.token] = (record, request)
    return first_of, repeats


def _metadata_of(batch: list[_Request]) -> dict[str, tuple[str | None, str | None]]:
    """The titles and URLs a flush's requests carry, but those of requests refused."""
    metadata: dict[str, tuple[str | None, str | None]] = {}
    for request in batch:
        if request.future.done():
            continue  # refused: its titles and URLs are not taken either
        for article_id, (title, url) in request.metadata.items():
            merge_metadata(metadata, article_id, title, url)
    return metadata
