"""Rank movement: how each item of a list moved since the list of one movement interval ago.

Time is cut into intervals of ``movement_interval_s`` aligned on the clock (interval ``k`` runs
from ``k * interval`` to ``(k + 1) * interval`` seconds since the epoch). The first refresh of a
ranking in interval ``k``, by any replica, records the ranking's top ``MAX_LIMIT`` ids in Redis
(SET NX: the first replica's record stands, the others keep it). Throughout interval ``k``,
every list of that ranking is compared with the record of interval ``k - 1``: the list as it
stood one to two intervals ago, the same one in every replica and across restarts. Each process
reads that record once per interval and ranking, in the refresh that writes its own.

Recording is best effort: a list must not fail because Redis refused a write (out of memory
under ``noeviction``, a read-only replica). The refresh then compares with the record there is
(or none), and tries to record again a little later.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Literal, Protocol

from redis.exceptions import ResponseError

from ranker.config import Settings
from ranker.metrics import Metrics
from ranker.store import Ranking, RankingStore

# The name its log lines have always carried (they came from ranker/cache.py).
log = logging.getLogger("ranker.cache")

Movement = Literal["up", "down", "same", "new"]


def movement_period(now: float, interval_s: float) -> int:
    """The number of the movement interval that clock time ``now`` falls in."""
    return math.floor(now / interval_s)


def record_ttl_s(interval_s: float) -> int:
    """How long a record must be kept: through its own interval and the next one that compares
    with it, with a minute to spare for replicas whose clocks are a little behind."""
    return math.ceil(2 * interval_s) + 60


def previous_ranks(record: list[str] | None) -> dict[str, int]:
    """Article id -> rank (1-based) in a record; empty when there was none to compare with
    (after a cold start every item is then ``new``)."""
    if record is None:
        return {}
    return {article_id: rank for rank, article_id in enumerate(record, start=1)}


def moved(rank: int, previous_rank: int | None) -> Movement:
    """How an item now at ``rank`` moved from ``previous_rank`` (None: not in that list)."""
    if previous_rank is None:
        return "new"
    if previous_rank > rank:
        return "up"
    if previous_rank < rank:
        return "down"
    return "same"


RECORD_RETRY_S = 10.0
"""After Redis refused to record a list for rank movement, the record is tried again no
sooner than this."""


class RecordedList(Protocol):
    """What the recorder reads and sets of a list the cache keeps (``kept.ListState``)."""

    name: str
    window: str | None
    window_label: str
    movement_period: int | None
    record_retry: tuple[int, float] | None
    previous_ranks: dict[str, int]


class MovementRecorder:
    """Records each list at the start of its movement interval, for the cache's refreshes, and
    learns the ranks of the interval before's."""

    def __init__(self, store: RankingStore, settings: Settings, metrics: Metrics) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._warned: int | None = None  # the movement interval last warned of

    async def record(self, state: RecordedList, period: int, ranking: Ranking) -> None:
        """Record the list this interval begins with, and learn the ranks of the interval
        before's. Best effort: when Redis refuses the write (out of memory under
        ``noeviction``, a read-only replica), the list is compared with the record there is,
        and served all the same."""
        ids = [item.article_id for item in ranking.items]
        ttl_s = record_ttl_s(self._settings.movement_interval_s)
        try:
            record = await self._store.movement_record(state.name, period, ids, ttl_s, state.window)
        except ResponseError as exc:
            self._metrics.redis_errors.labels(operation="movement").inc()
            if self._warned != period:
                self._warned = period
                log.warning(
                    "Redis refused to record the %s list (window %s) for rank movement; lists"
                    " are served, compared with the record there is (further failures in this"
                    " interval are only counted, as operation=movement): %s",
                    state.name,
                    state.window_label,
                    exc,
                )
            state.record_retry = (period, time.monotonic() + RECORD_RETRY_S)
            record = await self._store.movement_record(
                state.name, period, None, ttl_s, state.window
            )
        else:
            state.movement_period = period
            state.record_retry = None
        state.previous_ranks = previous_ranks(record)
