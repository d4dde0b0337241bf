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
