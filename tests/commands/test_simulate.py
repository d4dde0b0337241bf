"""``ranker simulate``: a steady rate of realistic views into a live ranker, which lists them."""

from __future__ import annotations

import asyncio
import io

from rich.console import Console

from ranker.commands.client import RankerClient
from ranker.commands.simulate import simulate


def quiet() -> Console:
    return Console(file=io.StringIO(), force_terminal=False)


async def test_a_run_sends_the_rate_for_the_duration_and_the_lists_fill(
    client: RankerClient,
) -> None:
    console = quiet()
    tally = await simulate(client, 200.0, 1.0, seed=1, console=console)
    # Batches follow a schedule: 10 a second of 20 views, whatever the answers' latency.
    assert tally.sent == 200
    assert tally.accepted + tally.excluded == tally.sent
    assert tally.excluded > 0  # crawlers, and readers' repeats
    assert tally.rejected == 0
    await asyncio.sleep(0.3)  # past the early refresh after the last flush
    _, _, listed = await client.get_json("/v1/rankings/all?limit=5")
    assert len(listed["items"]) == 5
    assert all(item["title"] for item in listed["items"])
    assert "done: sent 200" in console.file.getvalue()  # type: ignore[attr-defined]


async def test_stop_ends_a_run_cleanly(client: RankerClient) -> None:
    stop = asyncio.Event()
    run = asyncio.create_task(simulate(client, 100.0, 600.0, seed=2, console=quiet(), stop=stop))
    await asyncio.sleep(0.5)
    stop.set()
    tally = await asyncio.wait_for(run, 30)
    # Every batch sent was answered before it returned.
    assert 0 < tally.sent < 600 * 100
    assert tally.accepted + tally.excluded == tally.sent
