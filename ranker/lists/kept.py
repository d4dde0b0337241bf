"""What the list cache keeps: each polled list's state, and the finished answers, bounded in
number and bytes whatever limits are asked for."""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass

from ranker.config import DEFAULT_WINDOW, Settings

from .render import CachedList, Selection, Snapshot, cut

__all__ = ["ANSWERS_KEPT", "ANSWER_BYTES_KEPT", "Answer", "CacheStats", "KeptAnswers", "ListState"]

ANSWERS_KEPT = 256
"""Finished answers (one per ranking, window and selection) kept ready, the most recently asked:
beyond, an answer is cut again from its list when asked for."""

ANSWER_BYTES_KEPT = 16 * 1024 * 1024
"""The most bytes those answers may hold in all (a list of 100 items at the largest titles
and URLs is about 1 MB)."""


class Answer:
    """One (ranking, window, selection) answer. ``current`` was cut from the snapshot of
    ``version``; ``aliases`` are the request keys it is looked up by."""

    __slots__ = ("aliases", "current", "key", "selection", "state", "version")

    def __init__(self, state: ListState, selection: Selection, aliases: tuple[str, ...]) -> None:
        self.state = state
        self.selection = selection
        self.key = (state.name, state.window, selection)
        self.aliases = aliases
        self.current: CachedList | None = None
        self.version = -1


class ListState:
    """One (ranking, window) list the cache keeps: which limits are asked, its snapshot, its
    answers and its refresh state."""

    __slots__ = (
        "answers",
        "asked",
        "dirty",
        "early_at",
        "fetch",
        "movement_period",
        "name",
        "previous_ranks",
        "record_retry",
        "refreshed_at",
        "snapshot",
        "stale",
        "version",
        "window",
        "window_label",
    )

    def __init__(self, name: str, window: str | None) -> None:
        self.name = name
        self.window = window  # None: the default profile
        self.window_label = DEFAULT_WINDOW if window is None else window
        # Depth (Selection.depth: a limit, with what may be left out) -> None when asked for
        # since the last tick, else the tick that found it unasked. Keyed by depth, not by
        # selection: bounded whatever ids ``exclude`` names.
        self.asked: dict[int, float | None] = {}
        # Those of the cache's answers that are this list's.
        self.answers: dict[Selection, Answer] = {}
        self.snapshot: Snapshot | None = None
        self.version = 0  # counts successful reads: an answer of an older one is cut again
        self.fetch: asyncio.Task[None] | None = None
        self.refreshed_at = -math.inf  # time.monotonic() of the last successful read
        self.early_at = -math.inf  # loop time the last early (not timed) refresh started
        self.dirty = False
        self.stale = False  # the last refresh failed: answers are marked so
        # The movement interval this process has recorded the list of, and the ranks of the
        # list recorded for the one before (ranker/lists/movement.py).
        self.movement_period: int | None = None
        self.previous_ranks: dict[str, int] = {}
        # (interval, time.monotonic()): Redis refused this interval's record; not before then.
        self.record_retry: tuple[int, float] | None = None


@dataclass(frozen=True)
class CacheStats:
    """What the cache holds now, and the work it has done since it started."""

    lists: int
    """(ranking, window) lists kept, each refreshed once a tick."""
    items: int
    """Rendered items held in those lists' snapshots."""
    item_bytes: int
    """Bytes of those items' JSON."""
    answers: int
    """Finished answers kept ready."""
    answer_bytes: int
    """Bytes of those answers' bodies."""
    items_rendered: int
    """Items serialized, in all: at most one per item of each list read."""
    answers_built: int
    """Answers cut from a snapshot (joined and hashed), in all."""


class KeptAnswers:
    """The finished answers kept ready, least recently asked first, at most ``ANSWERS_KEPT`` of
    them and ``ANSWER_BYTES_KEPT`` bytes; each found by its request keys in one dict lookup."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._answers: OrderedDict[tuple[str, str | None, Selection], Answer] = OrderedDict()
        # Request key (the raw request target, in its common spellings) -> answer: a poll is
        # one dict lookup, with no parsing.
        self._by_alias: dict[str, Answer] = {}
        self.bytes = 0
        """Bytes of the kept answers' bodies."""
        self.built = 0
        """Answers cut from a snapshot (joined and hashed), in all."""

    def __len__(self) -> int:
        return len(self._answers)

    def find(self, alias: str) -> Answer | None:
        """The answer kept under a request key, now the most recently asked."""
        answer = self._by_alias.get(alias)
        if answer is not None:
            self._answers.move_to_end(answer.key)
        return answer

    def add(self, state: ListState, selection: Selection, aliases: tuple[str, ...]) -> Answer:
        """A list's answer for ``selection``, kept from now on (found by ``aliases``) if it was
        not, and now the most recently asked."""
        answer = state.answers.get(selection)
        if answer is None:
            answer = state.answers[selection] = Answer(state, selection, aliases)
            self._answers[answer.key] = answer
            for alias in answer.aliases:
                self._by_alias[alias] = answer
        else:
            self._answers.move_to_end(answer.key)
        return answer

    def current(self, answer: Answer) -> CachedList:
        """The answer cut from its list's latest snapshot: cut again if the list was read
        since."""
        if answer.version != answer.state.version or answer.current is None:
            return self._cut(answer)
        return answer.current

    def drop(self, answer: Answer) -> None:
        """Forget a kept answer (its selection is no longer asked for)."""
        del self._answers[answer.key]
        self._forget(answer)

    def _cut(self, answer: Answer) -> CachedList:
        """Cut an answer from its list's snapshot, keep it, and drop the least recently asked
        answers past the bounds."""
        state = answer.state
        snapshot = state.snapshot
        # Answers are kept for selections asked only, and every read covers those.
        assert snapshot is not None
        assert snapshot.depth >= answer.selection.depth
        current = cut(snapshot, answer.selection, self._settings.cache_control)
        if state.stale:
            current = current.as_stale(self._settings.stale_if_error_s)
        if answer.current is not None:
            self.bytes -= len(answer.current.body)
        self.bytes += len(current.body)
        answer.current = current
        answer.version = state.version
        self.built += 1
        answers = self._answers
        while len(answers) > 1 and (len(answers) > ANSWERS_KEPT or self.bytes > ANSWER_BYTES_KEPT):
            # The one just cut is the most recent: it stays.
            _, oldest = answers.popitem(last=False)
            self._forget(oldest)
        return current

    def _forget(self, answer: Answer) -> None:
        """Drop an answer already taken out of the kept ones."""
        del answer.state.answers[answer.selection]
        for alias in answer.aliases:
            self._by_alias.pop(alias, None)
        if answer.current is not None:
            self.bytes -= len(answer.current.body)
