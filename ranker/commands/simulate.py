"""``ranker simulate``: realistic traffic against a running ranker, at a steady rate, for a
while or until Ctrl-C. With it running, the page at ``/`` comes alive."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from .client import EventsAnswer, RankerClient
from .progress import Reporter, Tally
from .traffic import Article, Traffic, expected_rate

MAX_IN_FLIGHT = 8
"""Batches sent at once at most: a slow answer does not hold the rate back, and a service
that does not keep up is not sent ever more at once."""


async def simulate(
    client: RankerClient,
    rate: float,
    duration_s: float,
    *,
    seed: int | None = None,
    batch: int = 1000,
    console: Console | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> Tally:
    """Send ``rate`` views a second for ``duration_s`` seconds (or until ``stop`` is set) and
    return what ranker made of them. Batches follow a schedule, so the rate holds whatever the
    answers' latency; every batch sent is waited for before returning."""
    console = console or Console(stderr=True)
    stop = stop or asyncio.Event()
    traffic = Traffic(await client.sections(), seed, start=clock())
    await _publish(client, traffic.articles)
    size, interval = expected_rate(rate, batch)
    tally = Tally(started=time.monotonic())
    reporter = Reporter(console)
    in_flight: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent_batches = 0
    try:
        while not stop.is_set():
            due = start + sent_batches * interval
            if due - start >= duration_s or await _stopped(stop, due - loop.time()):
                break
            now = clock()
            await _publish(client, traffic.publish_due(now))
            while len(in_flight) >= MAX_IN_FLIGHT:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            events = traffic.views(size, now)
            task = asyncio.create_task(_send(client, events, tally))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent_batches += 1
            reporter.update(tally)
    finally:
        await asyncio.gather(*in_flight)
        reporter.close(tally, "stopped" if stop.is_set() else "done")
    return tally


async def _stopped(stop: asyncio.Event, wait_s: float) -> bool:
    """Wait ``wait_s`` (no time: return at once), or less if ``stop`` is set: whether it is."""
    if wait_s > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait_s)
    return stop.is_set()


async def _publish(client: RankerClient, articles: list[Article]) -> None:
    """PUT the articles' metadata, as the CMS does when it publishes them."""
    for start in range(0, len(articles), 16):
        await asyncio.gather(
            *(
                client.put_article(a.article_id, a.metadata(client.base_url))
                for a in articles[start : start + 16]
            )
        )


async def _send(client: RankerClient, events: list[dict[str, Any]], tally: Tally) -> None:
    answer: EventsAnswer = await client.post_events(events)
    tally.sent += len(events)
    tally.batches += 1
    tally.accepted += answer.accepted
    tally.rejected += len(answer.rejected)
    tally.excluded += sum(answer.excluded.values())
