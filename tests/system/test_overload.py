"""Ingest offered at ten times what a server sustains: memory stays bounded, reads answer.

A real ``ranker serve`` process (so its resident memory is its own), the shared Redis under the
test's key prefix, and a load generator in the test that first measures what the server
sustains, then offers ten times that, open-loop.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from ranker.runtime.embedded import free_port
from tests.test_cli import RANKER, clean_env

EVENTS_PER_BATCH = 4000
MAX_PENDING_BYTES = 8 * 1024 * 1024
RSS_HEADROOM = 160 * 1024 * 1024
"""What the server may grow by under overload: the byte budget and what parsing it makes
(a few times the bytes), plus what each of the generator's 128 connections costs while it
sends (its buffers; about 0.3 MiB each here, measured with 128 and 256 connections). Measured:
+86 MiB; without a bound, the backlog would be the offered bodies, 400 MB a second here."""


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@contextmanager
def server(redis_url: str, key_prefix: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [RANKER, "serve", "--port", str(port)],
        env=clean_env(
            RANKER_REDIS_URL=redis_url,
            RANKER_KEY_PREFIX=key_prefix,
            RANKER_MAX_PENDING_BYTES=str(MAX_PENDING_BYTES),
            # Room for what the byte budget lets in: that budget, checked before a body is
            # read, is what refuses the excess.
            RANKER_MAX_PENDING_EVENTS=str(MAX_PENDING_BYTES // 40),
            RANKER_LOG_LEVEL="ERROR",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail("ranker serve never became ready")


def batches() -> list[bytes]:
    sections = ("sports", "world", "business", "national")
    return [
        orjson.dumps(
            [
                {"article_id": f"b{n}-a{i % 500}", "section": sections[i % 4]}
                for i in range(EVENTS_PER_BATCH)
            ]
        )
        for n in range(8)
    ]


async def post(
    session: aiohttp.ClientSession, base: str, body: bytes, statuses: Counter[int]
) -> None:
    try:
        async with session.post(
            f"{base}/v1/events", data=body, headers={"Content-Type": "application/json"}
        ) as response:
            await response.read()
            statuses[response.status] += 1
    except aiohttp.ClientError:
        statuses[0] += 1


async def sustainable_rate(session: aiohttp.ClientSession, base: str, bodies: list[bytes]) -> float:
    """Batches a second the server takes from four senders that wait for each answer."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + 2.0

    async def sender(n: int) -> None:
        while time.monotonic() < deadline:
            await post(session, base, bodies[n % len(bodies)], statuses)

    started = time.monotonic()
    await asyncio.gather(*(sender(n) for n in range(4)))
    assert set(statuses) == {200}, statuses
    return statuses[200] / (time.monotonic() - started)


async def test_ten_times_the_sustainable_ingest_keeps_memory_bounded_and_reads_answering(
    redis_url: str, key_prefix: str, redis: Redis
) -> None:
    bodies = batches()
    connector = aiohttp.TCPConnector(limit=128)
    async with aiohttp.ClientSession(connector=connector) as session:
        with server(redis_url, key_prefix) as (base, process):
            await wait_ready(session, base)
            sustained = await sustainable_rate(session, base, bodies)
            baseline_kib = memory_kib(process.pid, "VmRSS")

            reads: Counter[int] = Counter()
            read_ms: list[float] = []
            stop = asyncio.Event()

            async def poll() -> None:
                # A page renderer on a connection of its own.
                async with aiohttp.ClientSession() as renderer:
                    while not stop.is_set():
                        try:
                            asked = time.monotonic()
                            async with renderer.get(f"{base}/v1/rankings/all") as response:
                                await response.read()
                                reads[response.status] += 1
                            read_ms.append((time.monotonic() - asked) * 1000)
                        except aiohttp.ClientError:
                            reads[0] += 1

            poller = asyncio.create_task(poll())
            offered = 10 * sustained
            statuses: Counter[int] = Counter()
            pending: set[asyncio.Task[None]] = set()
            started = time.monotonic()
            sent = 0
            scheduled_s = 0.0
            while (elapsed := time.monotonic() - started) < 4.0:
                # Open loop: requests go out on schedule, whether or not earlier ones returned.
                while sent < elapsed * offered:
                    task = asyncio.create_task(post(session, base, bodies[sent % 8], statuses))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    sent += 1
                scheduled_s = elapsed  # every request due by now is on its way
                await asyncio.sleep(0.005)
            # Over the time scheduled, not up to now: a loaded machine can be late to wake the
            # last round, which would count the schedule short though nothing was left out.
            scheduled_rate = sent / scheduled_s
            await asyncio.gather(*pending)
            stop.set()
            await poller
            peak_kib = memory_kib(process.pid, "VmHWM")

    print(
        f"sustained {sustained:.0f} batches/s of {EVENTS_PER_BATCH} events; offered "
        f"{scheduled_rate:.0f}/s; answers {dict(statuses)}; reads {dict(reads)}; RSS "
        f"{baseline_kib // 1024} MiB before, peak {peak_kib // 1024} MiB; read latency "
        f"median {statistics.median(read_ms):.1f} ms, max {max(read_ms):.1f} ms"
    )
    assert scheduled_rate >= 9.5 * sustained
    # The server refused what it could not take, at once, and still took some.
    assert statuses[503] > 0
    assert statuses[200] > 0
    assert set(statuses) <= {200, 503}
    assert (peak_kib - baseline_kib) * 1024 <= RSS_HEADROOM
    assert set(reads) == {200}
    assert reads[200] > 0
