"""A quick end-to-end load on one ``ranker serve`` process: ingest and read throughput.

    .venv/bin/python -m benchmarks.quick [--redis-url URL] [--seconds 10] [--senders 4]

Ingest: ``--senders`` concurrent clients POST batches of 500-1,000 Zipf-distributed views
(exponent 1.1 over 5,000 articles, every section) for ``--seconds``; reported as acknowledged
views per second. Reads: ``--readers`` concurrent clients GET ``/v1/rankings/all?limit=10`` for
``--seconds``; reported as requests per second and latency percentiles as the client saw them.
The load generator is Python on the same machine, so it shares the CPU with the server: these
are rough numbers for regressions, not a capacity statement.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import orjson
import redis

from ranker.config import DEFAULT_SECTIONS
from ranker.embedded import free_port
from ranker.keys import Keys

RANKER = str(Path(sys.executable).with_name("ranker"))


def zipf_batches(seed: int, articles: int = 5000, exponent: float = 1.1) -> Iterator[bytes]:
    """An endless supply of encoded batches of 500-1,000 views."""
    rng = random.Random(seed)
    ids = [f"story-{i}" for i in range(articles)]
    sections = [DEFAULT_SECTIONS[i % len(DEFAULT_SECTIONS)] for i in range(articles)]
    weights = [1 / (rank + 1) ** exponent for rank in range(articles)]
    while True:
        picks = rng.choices(range(articles), weights=weights, k=rng.randint(500, 1000))
        now = time.time()
        yield orjson.dumps(
            [{"article_id": ids[i], "section": sections[i], "ts": now} for i in picks]
        )


@contextmanager
def ranker_server(redis_url: str | None) -> Iterator[str]:
    """``ranker serve`` on a free port, under a key prefix of its own that is deleted after."""
    port = free_port()
    prefix = f"bench-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKER_")}
    env["RANKER_KEY_PREFIX"] = prefix
    with tempfile.TemporaryDirectory() as data_dir:
        env["RANKER_DATA_DIR"] = data_dir
        if redis_url:
            env["RANKER_REDIS_URL"] = redis_url
        process = subprocess.Popen([RANKER, "serve", "--port", str(port)], env=env)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            if redis_url:
                client = redis.Redis.from_url(redis_url)
                keys = list(client.scan_iter(match=Keys(prefix).pattern(), count=1000))
                if keys:
                    client.delete(*keys)
                client.close()


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("ranker did not become ready")


async def ingest(session: aiohttp.ClientSession, base: str, senders: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    acknowledged = 0

    async def sender(seed: int) -> None:
        nonlocal acknowledged
        batches = zipf_batches(seed)
        headers = {"Content-Type": "application/json"}
        while time.perf_counter() < deadline:
            async with session.post(f"{base}/v1/events", data=next(batches), headers=headers) as r:
                body = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"ingest failed: {r.status} {body}")
                acknowledged += body["accepted"]

    started = time.perf_counter()
    await asyncio.gather(*(sender(seed) for seed in range(senders)))
    return acknowledged / (time.perf_counter() - started)


async def read(
    session: aiohttp.ClientSession, base: str, readers: int, seconds: float
) -> tuple[float, list[float]]:
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def reader() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.get(f"{base}/v1/rankings/all?limit=10") as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"read failed: {response.status}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(readers)))
    return len(latencies) / (time.perf_counter() - started), latencies


async def main(args: argparse.Namespace) -> None:
    with ranker_server(args.redis_url) as base:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_ready(session, base)
            rate = await ingest(session, base, args.senders, args.seconds)
            print(f"ingest: {rate:,.0f} acknowledged views/s ({args.senders} senders)")
            rps, latencies = await read(session, base, args.readers, args.seconds)
            q = statistics.quantiles(latencies, n=100)
            print(
                f"read:   {rps:,.0f} req/s ({args.readers} readers), "
                f"p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="Redis to use (default: the embedded server)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--readers", type=int, default=16)
    asyncio.run(main(parser.parse_args()))
