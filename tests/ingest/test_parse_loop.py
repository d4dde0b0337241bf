"""Parsing a batch never holds the event loop for long: other requests are served meanwhile.

Durations are never asserted: the tests count how far a parse had got when something else ran.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
from typing import Any

import orjson
import pytest

from ranker.ingest import parse as events_module
from ranker.ingest.bots import bot_reason
from ranker.ingest.parse import parse_events, parse_events_yielding
from tests.conftest import Client
from tests.support.waiting import LoopTurns

NOW = 1_800_000_000.0
SECTIONS = frozenset({"national", "sports"})


def hostile_batch(count: int, seed: int) -> bytes:
    """Events each with a distinct user agent of 1,024 random letters: the shape that held a
    worker for seconds when user agents were matched by Python's backtracking engine."""
    rng = random.Random(seed)
    return orjson.dumps(
        [
            {
                "article_id": "a1",
                "section": "national",
                "user_agent": "".join(rng.choices(string.ascii_letters, k=1024)),
            }
            for _ in range(count)
        ]
    )


async def test_a_yielding_parse_lets_other_tasks_run_and_parses_the_same() -> None:
    body = hostile_batch(200, seed=1)
    async with LoopTurns() as loop:
        # slice_s=0: a turn of the loop after every event past the fast path.
        parsed = await parse_events_yielding(
            body, "application/json", None, now=NOW, sections=SECTIONS, slice_s=0
        )
    assert loop.turns >= 200
    assert parsed == parse_events(body, "application/json", None, now=NOW, sections=SECTIONS)


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
async def test_healthz_is_answered_while_a_slow_batch_is_being_checked(
    client: Client, monkeypatch: pytest.MonkeyPatch, content_type: str
) -> None:
    checked, started = 0, asyncio.Event()

    def slow_bot_reason(user_agent: str) -> Any:
        # Each user agent made to cost a millisecond of work on the loop, as long ones did.
        nonlocal checked
        checked += 1
        started.set()
        time.sleep(0.001)
        return bot_reason(user_agent)

    monkeypatch.setattr(events_module, "bot_reason", slow_bot_reason)
    events = orjson.loads(hostile_batch(200, seed=2))
    if content_type == "application/json":
        body = orjson.dumps(events)
    else:
        body = b"\n".join(orjson.dumps(event) for event in events)
    post = asyncio.create_task(
        client.post("/v1/events", data=body, headers={"Content-Type": content_type})
    )
    await started.wait()
    health = await client.get("/healthz")
    assert health.status == 200
    # Answered while the batch was still being checked, not after it.
    assert checked < len(events)
    answer = await post
    assert answer.status == 200
    taken = await answer.json()
    assert taken["rejected"] == []
    assert taken["accepted"] + sum(taken.get("excluded", {}).values()) == len(events)
