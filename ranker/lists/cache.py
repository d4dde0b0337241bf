"""Every ranking answer served from memory, refreshed in the background, at a cost that follows
the lists polled (ranking and window), not the ``limit`` values anyone asks for.

For each (ranking, window) asked for recently, each process keeps one snapshot: the list read
at the deepest limit asked for (at most ``MAX_LIMIT``), each item already serialized. One task
refreshes them: every ``refresh_interval_s``, one Redis read per ranking and window, and each
item rendered once. A limit's answer is the first ``limit`` items of its snapshot joined (a
shorter list is always the start of a deeper one: see ``ListReads.top``), hashed for its ETag
the first time it is asked for after a refresh, and then kept among the ``ANSWERS_KEPT`` most
recently asked (at most ``ANSWER_BYTES_KEPT`` bytes of them), so a poll is a dict lookup
whatever the request rate. A limit no one asks for is forgotten after ``IDLE_AFTER_S``, and a
list with none left costs nothing.

A ranking this process has just written to (a flush, an editorial change), or another replica
has (its change notice), is refreshed early, at once when it was not refreshed early in the
last ``EARLY_REFRESH_GAP_S``, else then: lists are fresh within milliseconds of a write, at a
bounded cost to Redis (at most ten early reads a second per list, however many writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from redis.exceptions import RedisError

from ranker.config import Settings
from ranker.config.limits import MAX_LIMIT
from ranker.decay import Clock
from ranker.errors import StoreUnavailable
from ranker.metrics import Metrics
from ranker.store import Ranking, RankingStore
from ranker.store.lists import Metadata

from .kept import CacheStats, KeptAnswers, ListState
from .movement import MovementRecorder, movement_period
from .render import STALE_HEADER, CachedList, Selection, Snapshot, render_snapshot

# The name its log lines have always carried (the module was ranker/cache.py).
log = logging.getLogger("ranker.cache")

IDLE_AFTER_S = 60.0
"""A limit no one has asked for in this long is forgotten: its answer dropped, and the list
read no deeper than the limits still asked for (not at all when none is)."""

EARLY_REFRESH_GAP_S = 0.1
"""After a local write, a ranking is refreshed this long after its last refresh at the
earliest, instead of waiting for the next tick: at most ten extra reads a second."""

REFRESH_READS_AT_ONCE = 4
"""Lists a refresh tick reads at a time."""


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
        # (ranking, window) -> its list; window None: the default profile
        self._rankings: dict[tuple[str, str | None], ListState] = {}
        self._answers = KeptAnswers(settings)
        self._items_rendered = 0
        self._recorder = MovementRecorder(store, settings, metrics)
        self._tick_metadata: Metadata = {}  # article metadata read by this refresh tick
        self._wakeup = asyncio.Event()
        self._failing = False
        metrics.ranking_age.watch(self.ages)
        store.outage_listeners.append(self.mark_all_stale)

    def lookup(self, alias: str) -> CachedList | None:
        """The answer kept under a request key given to :meth:`get`, if any."""
        answer = self._answers.find(alias)
        if answer is None:
            return None
        answer.state.asked[answer.selection.depth] = None
        return self._answers.current(answer)

    async def get(
        self,
        section: str,
        selection: Selection | int,
        aliases: Iterable[str] = (),
        window: str | None = None,
    ) -> CachedList:
        """The answer for a ranking, selection (a bare limit: that many items, as JSON) and
        window (None: the default profile), reading Redis only if its list is not kept, or not
        as deep, yet.

        ``section`` must be a configured ranking, ``window`` a configured window; ``aliases``
        are request keys that :meth:`lookup` will find it by while it is kept. Raises what the
        store raises when the first read of a list fails.
        """
        state = self._rankings.get((section, window))
        if state is None:
            state = self._rankings[(section, window)] = ListState(section, window)
        if isinstance(selection, int):
            selection = Selection(selection)
        state.asked[selection.depth] = None
        while state.snapshot is None or state.snapshot.depth < selection.depth:
            if not self._store.available:
                # Nothing to serve, and a read would only wait out the timeout.
                raise StoreUnavailable("Redis is unavailable and this list was never read")
            await self._read(state)
            # Asked for still, however long that read took: the next read goes as deep.
            state.asked[selection.depth] = None
        return self._answers.current(self._answers.add(state, selection, tuple(aliases)))

    def active(self) -> dict[str, list[int]]:
        """The lists being kept, as ranking (``<ranking>?window=<window>`` for a window's)
        -> the limits asked for: each refresh reads each list once, as deep as the deepest."""
        return {
            name if window is None else f"{name}?window={window}": sorted(state.asked)
            for (name, window), state in self._rankings.items()
        }

    def stats(self) -> CacheStats:
        """What is held, and the rendering done so far."""
        snapshots = [s.snapshot for s in self._rankings.values() if s.snapshot is not None]
        return CacheStats(
            lists=len(snapshots),
            items=sum(len(snapshot.items) for snapshot in snapshots),
            item_bytes=sum(len(item) for snapshot in snapshots for item in snapshot.items),
            answers=len(self._answers),
            answer_bytes=self._answers.bytes,
            items_rendered=self._items_rendered,
            answers_built=self._answers.built,
        )

    def mark_written(self, rankings: Iterable[str]) -> None:
        """Rankings this process just changed in Redis: refresh them early, in every window."""
        written = set(rankings)
        woken = False
        for state in self._rankings.values():
            if state.name in written:
                state.dirty = woken = True
        if woken:
            self._wakeup.set()

    def mark_stale_for_refresh(self) -> None:
        """Refresh early every list still marked stale (its last read failed, or Redis was
        found down since): once Redis is heard again, they need not wait for their timers. A
        list read since is current, and is left alone."""
        woken = False
        for state in self._rankings.values():
            if state.stale:
                state.dirty = woken = True
        if woken:
            self._wakeup.set()

    async def refresh(
        self, rankings: Iterable[str] | None = None, *, listing: str | None = None
    ) -> None:
        """Re-read the given rankings (default: every kept one), in every window, each list
        once, with a read that starts after this call, so it sees every write made before it,
        and wait for that. With ``listing``, an article id, only those of the lists that list
        it (or may, being read now): what a change to its title or URL can show in."""
        names = None if rankings is None else set(rankings)
        states = [
            s
            for s in self._rankings.values()
            if (names is None or s.name in names) and (listing is None or _may_list(s, listing))
        ]
        for state in states:
            # A read already running may predate the caller's write: dirty makes _read
            # wait for it and then read again.
            state.dirty = True
        # Lists of this refresh tick not read yet must not take metadata read before the write.
        self._tick_metadata = {}
        metadata: Metadata = {}
        await asyncio.gather(*(self._read(state, metadata) for state in states))

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
                    wake_at = min(wake_at, state.early_at + min_gap)
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
                # The gap is between early refreshes only: a view that lands just after a
                # timed one is not held back by it.
                due = [
                    s for s in self._rankings.values() if s.dirty and s.early_at + min_gap <= now
                ]
                for state in due:
                    state.early_at = now
            if due:
                await self._refresh_all(due)

    async def _refresh_all(self, states: list[ListState]) -> None:
        # A few lists at a time: each read's replies are taken in one go, so many at once
        # would hold up the requests that arrive meanwhile (and take a Redis connection each).
        running = asyncio.Semaphore(REFRESH_READS_AT_ONCE)
        # An article listed in several lists is read once for all (see refresh for writes).
        self._tick_metadata = {}

        async def read(state: ListState) -> None:
            async with running:
                await self._read(state, self._tick_metadata)

        # One window after the other, so that a ranking's other windows find what its first
        # one read (lists of one window share less: sections split the articles).
        windows: dict[str | None, list[ListState]] = {}
        for state in states:
            windows.setdefault(state.window, []).append(state)
        order: list[ListState] = []
        results: list[BaseException | None] = []
        for window_states in windows.values():
            order += window_states
            results += await asyncio.gather(
                *(read(state) for state in window_states), return_exceptions=True
            )
        self._tick_metadata = {}  # not held until the next tick
        failures = [r for r in results if isinstance(r, BaseException)]
        for state, result in zip(order, results, strict=True):
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

    async def _read(self, state: ListState, metadata: Metadata | None = None) -> None:
        """Read a list, sharing a read that is already running when it covers the need;
        article metadata found in ``metadata`` is not read again."""
        while True:
            fetch = state.fetch
            if fetch is None:
                fetch = state.fetch = asyncio.create_task(self._fetch(state, metadata))
                await asyncio.shield(fetch)
                return
            await asyncio.shield(fetch)
            # That read started before this caller came: it may have been too shallow for a
            # new limit, or have missed a write made since. Read again if so.
            snapshot = state.snapshot
            if snapshot is not None and snapshot.depth >= _depth(state) and not state.dirty:
                return

    async def _fetch(self, state: ListState, metadata: Metadata | None) -> None:
        generated_at = self._clock()
        interval_s = self._settings.movement_interval_s
        period = movement_period(generated_at, interval_s)
        retry = state.record_retry
        recording = state.movement_period != period and (
            retry is None or retry[0] != period or time.monotonic() >= retry[1]
        )
        # The record is as deep as any list, whichever replica makes it: once an interval.
        # Every item read is kept until the next read, so limits asked for meanwhile, up to
        # that depth, need no read of their own.
        depth = max(MAX_LIMIT, _depth(state)) if recording else _depth(state)
        # Cleared before the read: a write that lands while it runs marks the ranking again.
        state.dirty = False
        try:
            ranking = await self._store.top(state.name, depth, generated_at, state.window, metadata)
            if recording:
                await self._recorder.record(state, period, ranking)
        except BaseException:
            # The next tick retries; a write made meanwhile must not turn a Redis outage into
            # a loop of early refreshes.
            state.dirty = False
            raise
        finally:
            # Cleared here, not in a done callback: a waiter resumed before such a callback
            # would find the finished task still set and spin on it.
            state.fetch = None
        state.snapshot = self._render(state, generated_at, ranking, depth)
        state.version += 1
        state.refreshed_at = time.monotonic()
        state.stale = False
        self._metrics.ranking_members.labels(ranking=state.name, window=state.window_label).set(
            ranking.members
        )

    def _render(
        self, state: ListState, generated_at: float, ranking: Ranking, depth: int
    ) -> Snapshot:
        # What the scores actually decay by: the configured value can be newer than the
        # stored one for up to a settle period after a change.
        half_life = ranking.half_life_s or self._settings.half_life_for(state.name, state.window)
        snapshot = render_snapshot(
            ranking,
            depth,
            state.previous_ranks,
            state.name,
            state.window_label,
            generated_at,
            half_life,
        )
        self._items_rendered += len(snapshot.items)
        return snapshot

    def mark_all_stale(self) -> None:
        """Redis was found unreachable: mark every list stale now, not only once its own next
        read has failed too (that can be a refresh interval plus a command timeout later)."""
        for state in self._rankings.values():
            self._mark_stale(state)

    def _mark_stale(self, state: ListState) -> None:
        state.stale = True
        stale_if_error_s = self._settings.stale_if_error_s
        for answer in state.answers.values():
            current = answer.current
            if current is not None and STALE_HEADER not in current.headers:
                answer.current = current.as_stale(stale_if_error_s)

    def _drop_idle(self, now: float) -> None:
        for key, state in list(self._rankings.items()):
            asked = state.asked
            for depth, since in list(asked.items()):
                if since is None:
                    asked[depth] = now
                elif now - since >= IDLE_AFTER_S:
                    del asked[depth]
                    for selection, answer in list(state.answers.items()):
                        if selection.depth == depth:
                            self._answers.drop(answer)
            if not asked and state.fetch is None:
                del self._rankings[key]
                # Absent when the ranking was never read successfully.
                with contextlib.suppress(KeyError):
                    self._metrics.ranking_members.remove(state.name, state.window_label)

    def ages(self) -> dict[tuple[str, str], float]:
        """Seconds since each kept list, by (ranking, window), was last read from Redis."""
        now = time.monotonic()
        return {
            (state.name, state.window_label): now - state.refreshed_at
            for state in self._rankings.values()
            if state.snapshot is not None
        }


def _depth(state: ListState) -> int:
    return max(state.asked, default=1)


def _may_list(state: ListState, article_id: str) -> bool:
    """Whether a list lists an article, or may once the read running now (which can predate a
    change to it) is done."""
    return state.snapshot is None or state.fetch is not None or article_id in state.snapshot.ids
