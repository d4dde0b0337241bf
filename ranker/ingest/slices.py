"""Work done in slices: a generator that yields between slices of its work (a request body's
parse, a flush's sums), run to its end at once, or with the event loop let run between slices,
so other requests wait for at most a slice however large the work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")

SLICE_S = 0.002
"""Work done between two turns of the event loop: other requests wait at most about this long
(and one step's work, at most a few hundred microseconds)."""


def run_at_once(steps: Generator[None, None, T]) -> T:
    """Run ``steps`` to its end; its result."""
    while not (ended := _step(steps)):
        pass
    return ended[0]


async def run_in_slices(steps: Generator[None, None, T]) -> T:
    """Run ``steps`` to its end, letting the event loop run each time it yields; its result."""
    while True:
        ended = _step(steps)
        if ended:
            return ended[0]
        # A turn of the loop: other requests run, then the next slice.
        await asyncio.sleep(0)


def _step(steps: Generator[None, None, T]) -> list[T]:
    """One step of ``steps``: nothing while it goes on, its result once it has ended."""
    try:
        next(steps)
    except StopIteration as done:
        return [done.value]
    return []


class Slices:
    """Whether the slice of work in progress is up, for work that reads the clock now and then
    (every few hundred items: once per item would cost the work)."""

    __slots__ = ("end", "slice_s")

    def __init__(self, slice_s: float) -> None:
        self.slice_s = slice_s
        self.end = time.perf_counter() + slice_s

    def up(self) -> bool:
        """Whether this slice is over; if so, the next one starts now."""
        now = time.perf_counter()
        if now <= self.end:
            return False
        self.end = now + self.slice_s
        return True
