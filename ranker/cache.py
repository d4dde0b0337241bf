"""Every ranking answer served from memory, as ready bytes, refreshed in the background.

Each process keeps the serialized answer of every (ranking, window, limit) asked for recently.
One task refreshes them: every ``refresh_interval_s``, one Redis read per ranking and window
(at the deepest limit asked for) re-renders all of its answers. So a poll costs a dict
lookup whatever the request rate, and a list no one asks for costs nothing: it is dropped after
``IDLE_AFTER_S`` without a request.

A ranking this process has just written to (a flush, an editorial change) is refreshed early,
at most every ``EARLY_REFRESH_GAP_S``, so lists on the replica that took the events are
fresher still, at a bounded cost to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable

from redis.exceptions import RedisError

from .config import DEFAULT_WINDOW, Settings
from .errors import StoreUnavailable
from .metrics import Metrics
from .movement import moved, movement_period, previous_ranks, record_ttl_s
from .responses import STALE_HEADER, CachedList, render
from .scoring import Clock
from .store import Ranking, RankingStore

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10
MAX_LIMIT = 100

IDLE_AFTER_S = 60.0
"""An answer no one has asked for in this long is dropped and no longer refreshed."""

EARLY_REFRESH_GAP_S = 0.1
"""After a local write, a ranking is refreshed this long after its last refresh at the
earliest, instead of waiting for the next tick: at most ten extra reads a second."""


class Slot:
    """One (ranking, window, limit) answer. Requests only read ``current`` and set ``requested``."""

    __slots__ = ("aliases", "current", "idle_since", "limit", "requested")

    def __init__(self, limit: int, aliases: tuple[str, ...]) -> None:
        self.limit = limit
        self.aliases = aliases
        self.current: CachedList | None = None
        self.requested = True
        self.idle_since: float | None = None


class _RankingState:
    __slots__ = (
        "dirty",
        "fetch",
        "movement_period",
        "name",
        "previous_ranks",
        "refreshed_at",
        "slots",
        "snapshot",
        "stale",
        "window",
        "window_label",
    )

    def __init__(self, name: str, window: str | None) -> None:
        self.name = name
        self.window = window  # None: the default profile
        self.window_label = DEFAULT_WINDOW if window is None else window
        self.slots: dict[int, Slot] = {}
        # The last read: when its scores are as of (clock time), the ranking, how deep it went.
        self.snapshot: tuple[float, Ranking, int] | None = None
        self.fetch: asyncio.Task[None] | None = None
        self.refreshed_at = -math.inf  # time.monotonic() of the last successful read
        self.dirty = False
        self.stale = False  # the last refresh failed: answers are marked so
        # The movement interval this process has recorded the list of, and the ranks of the
        # list recorded for the one before (ranker/movement.py).
        self.movement_period: int | None = None
        self.previous_ranks: dict[str, int] = {}


class RankingCache:
    """Serialized ranking answers for the lists being polled, refreshed by :meth:`run`."""

    def __init__(
        self, store: RankingStore, settings: Settings, metrics: Metrics, clock: Clock
    ) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._interval = settings.refresh_interval_s
        # (ranking, window) -> its lists; window None: the default profile
        self._rankings: dict[tuple[str, str | None], _RankingState] = {}
        # Request key (the raw request target, in its common spellings) -> slot: a poll is one
        # dict lookup, with no parsing.
        self._by_alias: dict[str, Slot] = {}
        self._wakeup = asyncio.Event()
        self._failing = False
        metrics.ranking_age.watch(self.ages)
        store.outage_listeners.append(self.mark_all_stale)

    def lookup(self, alias: str) -> CachedList | None:
        """The answer cached under a request key given to :meth:`get`, if any."""
        slot = self._by_alias.get(alias)
        if slot is None:
            return None
        slot.requested = True
        return slot.current

    async def get(
        self,
        section: str,
        limit: int,
        aliases: Iterable[str] = (),
        window: str | None = None,
    ) -> CachedList:
        """The answer for a ranking, limit and window (None: the default profile), reading
        Redis only if it is not cached yet.

        ``section`` must be a configured ranking, ``window`` a configured window; ``aliases``
        are request keys that :meth:`lookup` will find it by from now on. Raises what the store
        raises when the first read of a ranking fails.
        """
        state = self._rankings.get((section, window))
        if state is None:
            state = self._rankings[(section, window)] = _RankingState(section, window)
        slot = state.slots.get(limit)
        if slot is None:
            slot = state.slots[limit] = Slot(limit, tuple(aliases))
            for alias in slot.aliases:
                self._by_alias[alias] = slot
            if state.snapshot is not None and state.snapshot[2] >= limit:
                self._render(state, slot)
        slot.requested = True
        while slot.current is None:
            if not self._store.available:
                # Nothing to serve, and a read would only wait out the timeout.
                raise StoreUnavailable("Redis is unavailable and this list was never read")
            await self._read(state)
        return slot.current

    def active(self) -> dict[str, list[int]]:
        """The lists being kept, as ranking (``<ranking>?window=<window>`` for a window's)
        -> limits: what each refresh reads and renders."""
        return {
            name if window is None else f"{name}?window={window}": sorted(state.slots)
            for (name, window), state in self._rankings.items()
        }

    def mark_written(self, rankings: Iterable[str]) -> None:
        """Rankings this process just changed in Redis: refresh them early, in every window."""
        written = set(rankings)
        woken = False
        for state in self._rankings.values():
            if state.name in written:
                state.dirty = woken = True
        if woken:
            self._wakeup.set()

    async def refresh(self, rankings: Iterable[str] | None = None) -> None:
        """Re-read the given rankings (default: every cached one), in every window, with a read
        that starts after this call, so it sees every write made before it, and wait for that."""
        names = None if rankings is None else set(rankings)
        states = [s for s in self._rankings.values() if names is None or s.name in names]
        for state in states:
            # A read already running may predate the caller's write: dirty makes _read
            # wait for it and then read again.
            state.dirty = True
        await asyncio.gather(*(self._read(state) for state in states))

    async def close(self) -> None:
        """Cancel reads still running, so none outlives the Redis client it uses."""
        fetches = [s.fetch for s in self._rankings.values() if s.fetch is not None]
        for fetch in fetches:
            fetch.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)

    async def run(self) -> None:
        """Refresh every ``refresh_interval_s``, at a fixed rate, until cancelled."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._interval
        min_gap = min(EARLY_REFRESH_GAP_S, self._interval)
        while True:
            now = loop.time()
            wake_at = next_tick
            for state in self._rankings.values():
                if state.dirty:
                    wake_at = min(wake_at, state.refreshed_at + min_gap)
            if wake_at > now:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(wake_at - now):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
                continue
            if now >= next_tick:
                # Missed ticks (a stalled loop) are skipped, not made up in a burst.
                next_tick = max(next_tick + self._interval, now + min_gap)
                self._drop_idle(now)
                due = list(self._rankings.values())
            else:
                due = [s for s in self._rankings.values() if s.dirty]
            await self._refresh_all(due)

    async def _refresh_all(self, states: list[_RankingState]) -> None:
        results = await asyncio.gather(
            *(self._read(state) for state in states), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for state, result in zip(states, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                self._mark_stale(state)
        for failure in failures:
            if isinstance(failure, RedisError):
                self._metrics.redis_errors.labels(operation="refresh").inc()
            elif not isinstance(failure, asyncio.CancelledError):
                # A bug, not an outage: log it with its traceback and keep serving.
                log.error("refreshing a ranking failed", exc_info=failure)
        if failures and not self._failing:
            log.warning("refreshing rankings failed, serving the last good lists: %s", failures[0])
        elif self._failing and not failures:
            log.info("refreshing rankings works again")
        self._failing = bool(failures)

    async def _read(self, state: _RankingState) -> None:
        """Read a ranking, sharing a read that is already running when it covers the need."""
        while True:
            fetch = state.fetch
            if fetch is None:
                fetch = state.fetch = asyncio.create_task(self._fetch(state))
                await asyncio.shield(fetch)
                return
            await asyncio.shield(fetch)
            # That read started before this caller came: it may have been too shallow for a
            # new limit, or have missed a write made since. Read again if so.
            snapshot = state.snapshot
            if snapshot is not None and snapshot[2] >= _depth(state) and not state.dirty:
                return

    async def _fetch(self, state: _RankingState) -> None:
        generated_at = self._clock()
        interval_s = self._settings.movement_interval_s
        period = movement_period(generated_at, interval_s)
        recording = state.movement_period != period
        # The record is as deep as any list, whichever replica makes it: once an interval.
        depth = max(_depth(state), MAX_LIMIT) if recording else _depth(state)
        # Cleared before the read: a write that lands while it runs marks the ranking again.
        state.dirty = False
        try:
            ranking = await self._store.top(state.name, depth, generated_at, state.window)
            if recording:
                ids = [item.article_id for item in ranking.items]
                record = await self._store.movement_record(
                    state.name, period, ids, record_ttl_s(interval_s), state.window
                )
                state.previous_ranks = previous_ranks(record)
                state.movement_period = period
        except BaseException:
            # The next tick retries; a write made meanwhile must not turn a Redis outage into
            # a loop of early refreshes.
            state.dirty = False
            raise
        finally:
            # Cleared here, not in a done callback: a waiter resumed before such a callback
            # would find the finished task still set and spin on it.
            state.fetch = None
        state.snapshot = (generated_at, ranking, depth)
        state.refreshed_at = time.monotonic()
        state.stale = False
        self._metrics.ranking_members.labels(ranking=state.name, window=state.window_label).set(
            ranking.members
        )
        for slot in state.slots.values():
            if slot.limit <= depth:
                self._render(state, slot)

    def _render(self, state: _RankingState, slot: Slot) -> None:
        assert state.snapshot is not None
        generated_at, ranking, _ = state.snapshot
        previous = state.previous_ranks
        items = []
        for rank, item in enumerate(ranking.items[: slot.limit], start=1):
            previous_rank = previous.get(item.article_id)
            items.append(
                {
                    "rank": rank,
                    "article_id": item.article_id,
                    "score": item.score,
                    "title": item.title,
                    "url": item.url,
                    "fill": item.fill,
                    "pinned": item.pinned,
                    "movement": moved(rank, previous_rank),
                    "previous_rank": previous_rank,
                }
            )
        # What the scores actually decay by: the configured value can be newer than the
        # stored one for up to a settle period after a change.
        half_life = ranking.half_life_s or self._settings.half_life_for(state.name, state.window)
        current = render(
            state.name,
            state.window_label,
            generated_at,
            half_life,
            items,
            self._settings.cache_control,
        )
        slot.current = current.as_stale(self._settings.stale_if_error_s) if state.stale else current

    def mark_all_stale(self) -> None:
        """Redis was found unreachable: mark every list stale now, not only once its own next
        read has failed too (that can be a refresh interval plus a command timeout later)."""
        for state in self._rankings.values():
            self._mark_stale(state)

    def _mark_stale(self, state: _RankingState) -> None:
        state.stale = True
        stale_if_error_s = self._settings.stale_if_error_s
        for slot in state.slots.values():
            current = slot.current
            if current is not None and STALE_HEADER not in current.headers:
                slot.current = current.as_stale(stale_if_error_s)

    def _drop_idle(self, now: float) -> None:
        for key, state in list(self._rankings.items()):
            for limit, slot in list(state.slots.items()):
                if slot.requested:
                    slot.requested = False
                    slot.idle_since = None
                elif slot.idle_since is None:
                    slot.idle_since = now
                elif now - slot.idle_since >= IDLE_AFTER_S:
                    del state.slots[limit]
                    for alias in slot.aliases:
                        self._by_alias.pop(alias, None)
            if not state.slots and state.fetch is None:
                del self._rankings[key]
                # Absent when the ranking was never read successfully.
                with contextlib.suppress(KeyError):
                    self._metrics.ranking_members.remove(state.name, state.window_label)

    def ages(self) -> dict[tuple[str, str], float]:
        """Seconds since each cached ranking, by (ranking, window), was last read from Redis."""
        now = time.monotonic()
        return {
            (state.name, state.window_label): now - state.refreshed_at
            for state in self._rankings.values()
            if state.snapshot is not None
        }


def _depth(state: _RankingState) -> int:
    return max(state.slots, default=1)
