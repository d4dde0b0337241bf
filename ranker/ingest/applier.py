"""Flushes counted now and applied a little later, while ingest is busy.

Redis's work for a flush is one ZMSCORE and one ZADD member per (ranking, article, profile) it
applies, whatever number of views each sums; a busy spell's flushes hold the same popular
articles again and again. So a flush sent while another is still in flight, or while what
earlier ones queued waits to be applied, only *queues* its amounts, in each ranking's slot
(counted: its keyed batches' tokens are recorded in the same step, exactly as when applied),
and :class:`QueuedFlushes` applies what they queued every ``RANKER_APPLY_INTERVAL_S``, each
ranking's in one pass, and at once when ingest pauses. A flush sent alone, with nothing
waiting, applies as it is counted, so a quiet site's lists are as fresh as ever. See
ranker/store/lua/increment.lua and ``RankingStore.apply_queued``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable

from redis.exceptions import RedisError

from ranker.config import SITE_WIDE, Settings
from ranker.decay import Clock
from ranker.metrics import Metrics
from ranker.store import RankingStore

log = logging.getLogger("ranker.ingest")

RETRY_S = 1.0
"""After applying the queued flushes failed, how long until the next try (a flush that applies
takes them meanwhile)."""


class QueuedFlushes:
    """The rankings this process queued flushes for and has not applied since, and the task
    that applies them while ingest is busy."""

    def __init__(
        self,
        store: RankingStore,
        settings: Settings,
        metrics: Metrics,
        clock: Clock,
        on_applied: Callable[[Iterable[str]], None] | None,
        on_swept: Callable[[], None],
    ) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._on_applied = on_applied
        self._on_swept = on_swept
        self._unapplied: dict[str, int] = {}
        """Ranking -> the number of the last answer to a flush that queued for it. A flush or
        sweep that applies takes what flushes answered before it was sent had queued (they
        were written before it), not what one answered later did."""
        self.answers = 0
        """Flushes answered so far (applied, queued or failed)."""
        self._failed_at = -math.inf
        self._queued_some = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def queues(self, behind_another: bool) -> bool:
        """Whether a flush sent now queues its amounts rather than applying them: when it
        follows another still in flight, or flushes this process queued still wait to be
        applied (ingest is busy), unless ``apply_interval_s`` is 0. So while ingest is busy
        only sweeps apply, a ranking at a time: a flush that applied would add every queued
        flush's sums to its own, in one script call that flushes behind it wait for."""
        return (behind_another or bool(self._unapplied)) and self._settings.apply_interval_s > 0

    def answered(self, rankings: Iterable[str], queued: bool, applied_from: int | None) -> None:
        """A flush to ``rankings`` was answered: it ``queued`` its amounts (or may have, as it
        failed), or applied them with what flushes answered by ``applied_from`` had queued."""
        self.answers += 1
        if queued:
            self._unapplied.update(dict.fromkeys(rankings, self.answers))
            self._queued_some.set()
        elif applied_from is not None:
            self._took(rankings, applied_from)

    @property
    def due(self) -> bool:
        """Something is queued, and the last try to apply it did not fail just now."""
        return bool(self._unapplied) and time.monotonic() - self._failed_at >= RETRY_S

    @property
    def waiting(self) -> bool:
        """Something is queued and not applied yet."""
        return bool(self._unapplied)

    async def sweep(self) -> None:
        """Apply what this process queued, and tell the lists those rankings changed: a
        ranking at a time, the sections first and the site-wide ranking, the largest, last,
        each in a round trip of its own (see ``RankingStore.apply_queued``), so the flushes
        counted meanwhile are not held up behind them all. A failure is logged and left for the
        next try: the flushes are counted, and kept in Redis, where the next flush of their
        ranking that applies (any replica's) takes them too."""
        rankings, answered = sorted(self._unapplied, key=lambda r: r == SITE_WIDE), self.answers
        try:
            for ranking in rankings:
                try:
                    await self._store.apply_queued(ranking, self._clock())
                except RedisError as exc:
                    log.warning("applying the queued flushes of %s failed: %s", ranking, exc)
                    self._metrics.redis_errors.labels(operation="flush").inc()
                    self._failed_at = time.monotonic()
                    return
                self._took([ranking], answered)
                if self._on_applied is not None:
                    self._on_applied([ranking])
        finally:
            self._on_swept()

    def start(self) -> None:
        self._task = asyncio.create_task(self._apply_while_busy(), name="ranker-apply")

    async def close(self) -> None:
        """End the task (the flusher sweeps once more as it ends)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _apply_while_busy(self) -> None:
        """Every ``apply_interval_s`` while flushes queue, a sweep; after a failed one, another
        every ``RETRY_S`` until one succeeds."""
        while True:
            await self._queued_some.wait()
            await asyncio.sleep(self._settings.apply_interval_s)
            self._queued_some.clear()
            if not self.waiting:
                continue  # the flusher's sweep, or a flush that applied, took it
            await asyncio.sleep(max(0.0, self._failed_at + RETRY_S - time.monotonic()))
            await self.sweep()
            if self.waiting:
                self._queued_some.set()

    def _took(self, rankings: Iterable[str], answered: int) -> None:
        """Forget what ``rankings`` had queued by answer ``answered``: applied."""
        for ranking in rankings:
            if self._unapplied.get(ranking, answered + 1) <= answered:
                del self._unapplied[ranking]
