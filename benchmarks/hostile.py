"""Hostile batches: how long ``/healthz`` waits while one is being checked.

    .venv/bin/python -m benchmarks.hostile [--runs 3] [--source DIR]

Each run sends, one after the other, batches a hostile or careless writer can send in one
request, and meanwhile asks ``/healthz`` every 10 ms from another connection:

- ``random-ua``: 950 events, each with a distinct user agent of 1,024 random letters (just under
  1 MiB);
- ``in-app-ua``: 3,800 events, each with a distinct in-app browser's user agent (1 MiB);
- ``bad-ndjson``: 1 MiB of NDJSON lines that are no JSON (``x`` and a newline, 524,288 times).

It reports each batch's answer and time, and the slowest ``/healthz`` during it. ``--source
DIR`` runs the ranker of another checkout (its ``ranker serve``, imported from DIR first, with
this environment's packages), to measure an older version the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import string
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import orjson

from benchmarks import harness
from benchmarks.harness import Server, log
from benchmarks.ingest import in_app_user_agent
from benchmarks.report import Report, median
from ranker.runtime.embedded import free_port

MODULE = "benchmarks.hostile"
PROBE_INTERVAL_S = 0.01


def random_ua_batch(rng: random.Random) -> tuple[bytes, str]:
    events = [
        {
            "article_id": "hostile-1",
            "section": "world",
            "user_agent": "".join(rng.choices(string.ascii_letters, k=1024)),
        }
        for _ in range(950)
    ]
    return orjson.dumps(events), "application/json"


def in_app_ua_batch(rng: random.Random) -> tuple[bytes, str]:
    events = [
        {"article_id": "hostile-2", "section": "world", "user_agent": in_app_user_agent(rng)}
        for _ in range(3800)
    ]
    body = orjson.dumps(events)
    while len(body) > 1024 * 1024:  # the default RANKER_MAX_BODY_BYTES
        events.pop()
        body = orjson.dumps(events)
    return body, "application/json"


def bad_ndjson_batch(rng: random.Random) -> tuple[bytes, str]:
    return b"x\n" * (512 * 1024), "application/x-ndjson"


BATCHES = {
    "random-ua": random_ua_batch,
    "in-app-ua": in_app_ua_batch,
    "bad-ndjson": bad_ndjson_batch,
}


@dataclass
class Outcome:
    status: int
    batch_s: float
    health_max_s: float
    health_count: int


async def one(base: str, body: bytes, content_type: str) -> Outcome:
    """Send the batch; probe /healthz on its own connection until the batch is answered."""
    health: list[float] = []
    done = asyncio.Event()

    async def probe(session: aiohttp.ClientSession) -> None:
        while not done.is_set():
            started = time.perf_counter()
            async with session.get(base + "/healthz") as response:
                await response.read()
            health.append(time.perf_counter() - started)
            await asyncio.sleep(PROBE_INTERVAL_S)

    timeout = aiohttp.ClientTimeout(total=600)
    async with (
        aiohttp.ClientSession(timeout=timeout) as writer,
        aiohttp.ClientSession(timeout=timeout) as reader,
    ):
        prober = asyncio.create_task(probe(reader))
        await asyncio.sleep(0.05)  # the prober's connection is open and warm
        started = time.perf_counter()
        async with writer.post(
            base + "/v1/events", data=body, headers={"Content-Type": content_type}
        ) as response:
            await response.read()
            status = response.status
        batch_s = time.perf_counter() - started
        done.set()
        await prober
    return Outcome(status, batch_s, max(health), len(health))


@contextlib.contextmanager
def server(args: argparse.Namespace, prefix: str) -> Iterator[Server]:
    if args.source is None:
        with harness.ranker_server(args.redis_url, prefix) as running:
            yield running
        return
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKER_")}
    env.update(
        RANKER_REDIS_URL=args.redis_url,
        RANKER_KEY_PREFIX=prefix,
        RANKER_HOST="127.0.0.1",
        RANKER_PORT=str(port),
    )
    # Its directory first on the path, before this one (the working directory) and before this
    # environment's editable install of ranker.
    start = (
        f"import sys; sys.path.insert(0, {args.source!r}); sys.argv = ['ranker', 'serve']; "
        "from ranker.cli import main; sys.exit(main())"
    )
    argv = [sys.executable, "-c", start]
    with harness.run_server(
        f"ranker from {args.source}", argv, env=env, port=port, ready_path="/readyz"
    ) as running:
        yield running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL)
    parser.add_argument("--runs", type=int, default=3, help="runs of every batch")
    parser.add_argument("--source", help="checkout whose ranker to run (default: this one)")
    parser.add_argument(
        "--batches", default=",".join(BATCHES), help=f"some of {', '.join(BATCHES)}"
    )
    args = parser.parse_args()
    names = args.batches.split(",")
    report = Report("Hostile batches and /healthz", MODULE, args.redis_url)
    prefix = harness.unique_prefix("hostile")
    rng = random.Random(12)
    outcomes: dict[str, list[Outcome]] = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        stack.callback(harness.delete_keys, args.redis_url, prefix)
        target = stack.enter_context(server(args, prefix))
        for number in range(1, args.runs + 1):
            for name in names:
                body, content_type = BATCHES[name](rng)
                outcome = asyncio.run(one(target.base, body, content_type))
                log(
                    f"  run {number} {name}: {outcome.status} in {outcome.batch_s:.3f} s, "
                    f"/healthz max {outcome.health_max_s * 1e3:.1f} ms"
                )
                outcomes[name].append(outcome)
    report.add(
        f"ranker {'from ' + args.source if args.source else 'of this checkout'}, default "
        f"settings; /healthz asked every {PROBE_INTERVAL_S * 1e3:g} ms on its own connection "
        "while each batch is sent and answered"
    )
    rows = []
    for name, runs in outcomes.items():
        for number, outcome in enumerate(runs, start=1):
            rows.append(
                [
                    name,
                    str(number),
                    str(outcome.status),
                    f"{outcome.batch_s * 1e3:,.0f}",
                    f"{outcome.health_max_s * 1e3:,.1f}",
                    str(outcome.health_count),
                ]
            )
        rows.append(
            [
                f"**{name}**",
                "median",
                "",
                f"**{median(o.batch_s for o in runs) * 1e3:,.0f}**",
                f"**{median(o.health_max_s for o in runs) * 1e3:,.1f}**",
                "",
            ]
        )
    header = ["batch", "run", "status", "batch ms", "slowest /healthz ms", "/healthz answered"]
    report.table(header, rows)
    report.print()


if __name__ == "__main__":
    main()
