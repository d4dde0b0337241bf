"""Freshness benchmark: how long after a 200 to ``POST /v1/events`` the Top 10 shows it.

    .venv/bin/python -m benchmarks.freshness [--samples 100] [--poll-ms 5]

Against ``ranker serve`` with its default settings (so its default refresh, once ranking
responses are cached). Each sample posts 20 views of weight 1000 of a brand-new article, stamped
now, which makes it #1 site-wide, notes when the 200 arrived, then polls ``GET
/v1/rankings/all?limit=10`` (never with ``If-None-Match``) every ``--poll-ms`` until the article
is listed; the delay is from the 200 to the arrival of the first answer listing it. Samples
are spaced by a random 0-1.5 s so they fall at every phase of a refresh cycle, not one.

The delay can never be below one poll round trip: the first poll is sent right after the 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time

import aiohttp
import orjson

from benchmarks import harness
from benchmarks.harness import RANKING_PATH, log
from benchmarks.report import Report, percentile

MODULE = "benchmarks.freshness"


async def sample(
    session: aiohttp.ClientSession, base: str, article_id: str, poll_s: float
) -> float:
    """Seconds from the ingest's 200 until a ranking lists ``article_id``."""
    now = time.time()
    body = orjson.dumps(
        [
            {"article_id": article_id, "section": "national", "weight": 1000, "ts": now}
            for _ in range(20)
        ]
    )
    headers = {"Content-Type": "application/json"}
    async with session.post(f"{base}/v1/events", data=body, headers=headers) as response:
        answer = await response.read()
        if response.status != 200 or orjson.loads(answer)["accepted"] != 20:
            raise RuntimeError(f"ingest failed: {response.status} {answer!r}")
    acknowledged = time.perf_counter()
    while True:
        async with session.get(base + RANKING_PATH) as response:
            ranking = orjson.loads(await response.read())
        arrived = time.perf_counter()
        if response.status != 200:
            raise RuntimeError(f"ranking failed: {response.status} {ranking}")
        if any(item["article_id"] == article_id for item in ranking["items"]):
            return arrived - acknowledged
        await asyncio.sleep(poll_s)


async def measure(base: str, args: argparse.Namespace, prefix: str) -> list[float | None]:
    rng = random.Random(args.seed)
    delays: list[float | None] = []  # None: not listed within --timeout
    # One connection, kept alive: the delay measured is the service's, not TCP set-up's.
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(args.samples):
            await asyncio.sleep(rng.uniform(0, args.max_gap))
            try:
                async with asyncio.timeout(args.timeout):
                    delay = await sample(session, base, f"{prefix}-{n}", args.poll_ms / 1000)
            except TimeoutError:
                delay = None
            delays.append(delay)
            if (n + 1) % 10 == 0:
                log(f"  {n + 1}/{args.samples} samples")
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--poll-ms", type=float, default=5.0, help="pause between polls")
    parser.add_argument("--max-gap", type=float, default=1.5, help="longest random pause, s")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up on a sample, s")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    report = Report("Freshness benchmark", MODULE, args.redis_url)
    prefix = harness.unique_prefix("fresh")
    with contextlib.ExitStack() as stack:
        stack.callback(harness.delete_keys, args.redis_url, prefix)
        ranker = stack.enter_context(harness.ranker_server(args.redis_url, prefix))
        # A realistic list to climb: every article of the Top 10 has views and metadata.
        harness.seed_views(ranker.base)
        delays = asyncio.run(measure(ranker.base, args, prefix))
    seen = [d * 1000 for d in delays if d is not None]
    report.add(
        f"{args.samples} samples against `ranker serve` (default settings), polling every "
        f"{args.poll_ms:g} ms, a random 0-{args.max_gap:g} s between samples.",
    )
    rows = [["samples listed", f"{len(seen)} of {len(delays)}"]]
    if seen:
        rows += [[f"p{q}", f"{percentile(seen, q):.1f}"] for q in (50, 90, 99)]
        rows += [["min", f"{min(seen):.1f}"], ["max", f"{max(seen):.1f}"]]
    report.table(["delay from 200 to listed", "ms"], rows)
    if len(seen) < len(delays):
        report.add(f"{len(delays) - len(seen)} samples were not listed within {args.timeout:g} s.")
    report.print()


if __name__ == "__main__":
    main()
