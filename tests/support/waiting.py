"""Waiting for what the service's background work makes true."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[bool]], deadline_s: float = 20.0) -> None:
    """Wait for a condition the background work (a refresh, a notice, a re-subscription) makes
    true; a generous deadline, since shared machines stall, and never an assertion on how long
    it took."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while not await check():
        assert loop.time() < give_up, "the condition never became true"
        await asyncio.sleep(0.02)


class LoopTurns:
    """Counts the event loop's turns while the block runs: how often work in it let other
    tasks run."""

    def __init__(self) -> None:
        self.turns = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)  # started: turns from here on are the block's
        self.turns = 0
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _tick(self) -> None:
        while True:
            self.turns += 1
            await asyncio.sleep(0)
