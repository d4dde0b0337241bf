"""Freshness benchmark: how long after a 200 to ``POST /v1/events`` the Top 10 shows it.

    .venv/bin/python -m benchmarks.freshness [--samples 100] [--poll-ms 5] [--cluster]
        [--busy 8] [--setting RANKER_APPLY_INTERVAL_S=0 ...]

Against ``ranker serve`` with its default settings (lists refreshed every 1 s), twice: read
from the replica that took the views (it refreshes the rankings it wrote early), then from a
second replica on the same Redis (it refreshes on the first one's change notice). Each sample
posts 20 views of weight 1000 of a brand-new article, stamped now, which makes it #1
site-wide, notes when the 200 arrived, then polls ``GET /v1/rankings/all?limit=10`` (never
with ``If-None-Match``) every ``--poll-ms`` until the article is listed; the delay is from the
200 to the arrival of the first answer listing it. Samples are spaced by a random 0-1.5 s so
they fall at every phase of a refresh cycle, not one.

The delay can never be below one poll round trip: the first poll is sent right after the 200.
``--cluster``: the same on a private local Redis Cluster of 3 masters with a replica each
(``LocalCluster``), both replicas with ``RANKER_REDIS_CLUSTER=true``, instead of ``--redis-url``.
``--busy N``: while it samples, N senders keep posting the ingest benchmark's batches (Zipf
views of every default section but ``national``) to the replica that takes the samples' views,
so a sample's flush is often sent behind another, counted at once and applied with the busy
spell's others (``RANKER_APPLY_INTERVAL_S``); the samples then climb the Top 10 of
``national``, which the load leaves alone, so they still make #1. ``--setting NAME=VALUE``
(repeatable) starts both replicas with that ``RANKER_*`` setting.
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
from benchmarks.harness import RANKING_PATH, Zipf, log
from benchmarks.report import Report, percentile

MODULE = "benchmarks.freshness"


BUSY_PATH = "/v1/rankings/national?limit=10"
"""What the samples climb under ``--busy``: a section the load sends nothing to."""


def busy_bodies(count: int) -> list[bytes]:
    """The ingest benchmark's batches, with no view of ``national``."""
    zipf = Zipf(seed=1)
    bodies = []
    for _ in range(count):
        events = orjson.loads(zipf.batch())
        for event in events:
            if event["section"] == "national":
                event["section"] = "world"
        bodies.append(orjson.dumps(events))
    return bodies


async def keep_busy(base: str, senders: int, stop: asyncio.Event) -> int:
    """``senders`` posting batches to ``base`` until ``stop``; returns the views accepted."""
    bodies = busy_bodies(100)
    accepted = 0

    async def sender(offset: int, session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        i = offset
        while not stop.is_set():
            i += 1
            headers = {"Content-Type": "application/json"}
            body = bodies[i % len(bodies)]
            async with session.post(f"{base}/v1/events", data=body, headers=headers) as answer:
                if answer.status == 200:
                    accepted += orjson.loads(await answer.read())["accepted"]

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(sender(n * 7, session) for n in range(senders)))
    return accepted


async def sample(
    session: aiohttp.ClientSession,
    base: str,
    reader: str,
    article_id: str,
    poll_s: float,
    path: str = RANKING_PATH,
) -> float:
    """Seconds from the ingest's 200 (from ``base``) until ``reader``'s ranking lists
    ``article_id``."""
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
        async with session.get(reader + path) as response:
            ranking = orjson.loads(await response.read())
        arrived = time.perf_counter()
        if response.status != 200:
            raise RuntimeError(f"ranking failed: {response.status} {ranking}")
        if any(item["article_id"] == article_id for item in ranking["items"]):
            return arrived - acknowledged
        await asyncio.sleep(poll_s)


async def measure(
    base: str, reader: str, args: argparse.Namespace, prefix: str
) -> list[float | None]:
    rng = random.Random(args.seed)
    delays: list[float | None] = []  # None: not listed within --timeout
    stop = asyncio.Event()
    load = asyncio.ensure_future(keep_busy(base, args.busy, stop)) if args.busy else None
    path = BUSY_PATH if args.busy else RANKING_PATH
    started = time.perf_counter()
    # One kept-alive connection per server: the delay measured is the service's, not TCP's.
    connector = aiohttp.TCPConnector(limit_per_host=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(args.samples):
            await asyncio.sleep(rng.uniform(0, args.max_gap))
            try:
                async with asyncio.timeout(args.timeout):
                    delay = await sample(
                        session, base, reader, f"{prefix}-{n}", args.poll_ms / 1000, path
                    )
            except TimeoutError:
                delay = None
            delays.append(delay)
            if (n + 1) % 10 == 0:
                log(f"  {n + 1}/{args.samples} samples")
    if load is not None:
        stop.set()
        views = await load
        log(f"  the load: {views / (time.perf_counter() - started):,.0f} views/s")
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--poll-ms", type=float, default=5.0, help="pause between polls")
    parser.add_argument("--max-gap", type=float, default=1.5, help="longest random pause, s")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up on a sample, s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--cluster", action="store_true", help="on a private local 3-master Redis Cluster"
    )
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        metavar="N",
        help="N senders keep ingest busy meanwhile (samples climb national's Top 10)",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a RANKER_* setting for both replicas (repeatable)",
    )
    args = parser.parse_args()
    extra = dict(setting.split("=", 1) for setting in args.setting)
    prefix = harness.unique_prefix("fresh")
    with contextlib.ExitStack() as stack:
        url, settings = args.redis_url, {}
        if args.cluster:
            cluster = stack.enter_context(harness.private_redis(cluster=True))
            url, settings = cluster.url, cluster.settings
            report = Report("Freshness benchmark", MODULE, cluster.masters[0])
        else:
            report = Report("Freshness benchmark", MODULE, args.redis_url)
            stack.callback(harness.delete_keys, args.redis_url, prefix)
        settings = {**settings, **extra}
        ranker = stack.enter_context(harness.ranker_server(url, prefix, settings=settings))
        # A second replica on the same Redis: it learns of the views by the first one's change
        # notice (or, failing that, its own timed refresh).
        replica = stack.enter_context(harness.ranker_server(url, prefix, settings=settings))
        # A realistic list to climb: every article of the Top 10 has views and metadata.
        harness.seed_views(ranker.base)
        cases = [
            ("the replica that took the views", ranker.base),
            ("another replica", replica.base),
        ]
        results = [
            (name, asyncio.run(measure(ranker.base, reader, args, f"{prefix}-{n}")))
            for n, (name, reader) in enumerate(cases)
        ]
    report.add(
        f"{args.samples} samples per case against `ranker serve` (default settings: lists "
        f"refreshed every 1 s), polling every {args.poll_ms:g} ms, a random 0-{args.max_gap:g} s "
        "between samples. Views are posted to one replica; the Top 10 is read from it, then "
        "from a second replica sharing its Redis"
        + (", a private 3-master Redis Cluster (3+3 nodes)." if args.cluster else ".")
        + (
            f" Meanwhile {args.busy} senders keep posting the ingest benchmark's batches to the "
            "first replica (no view of `national`, whose Top 10 the samples climb)."
            if args.busy
            else ""
        )
        + "".join(f" Both with `{name}={value}`." for name, value in extra.items()),
    )
    header = ["delay from 200 to listed, ms", *(name for name, _ in results)]
    columns = []
    for _, delays in results:
        seen = [d * 1000 for d in delays if d is not None]
        cells = [f"{len(seen)} of {len(delays)}"]
        if seen:
            cells += [f"{percentile(seen, q):.1f}" for q in (50, 90, 99)]
            cells += [f"{min(seen):.1f}", f"{max(seen):.1f}"]
        columns.append(cells)
    labels = ["samples listed", "p50", "p90", "p99", "min", "max"]
    report.table(
        header,
        [
            [label, *(c[i] if i < len(c) else "-" for c in columns)]
            for i, label in enumerate(labels)
        ],
    )
    for name, delays in results:
        missed = sum(d is None for d in delays)
        if missed:
            report.add(f"{name}: {missed} samples were not listed within {args.timeout:g} s.")
    report.print()


if __name__ == "__main__":
    main()
