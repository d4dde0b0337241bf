"""Read benchmark: ranker's Top 10 endpoint against a bare aiohttp app, and 1 vs 2 workers.

    .venv/bin/python -m benchmarks.read [--only read|workers] [--runs 5] [--duration 10]

``read``: ``GET /v1/rankings/all?limit=10`` of ``ranker serve`` against ``benchmarks.bare``
serving the very bytes ranker answered, with ``wrk -t2 -c{64,256} --latency``; runs alternate
between the two, each after a short warm-up. ``workers``: the same request against
``ranker serve --workers 1`` and ``--workers 2``, alternating, at 64 connections.

wrk shares the machine with the servers (and Redis), so read the ratios rather than the
absolute numbers, and only next to the machine table.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import urllib.request
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import RANKING_PATH, Server, WrkResult, log
from benchmarks.report import Report, median, ratio

MODULE = "benchmarks.read"


def alternate(
    servers: list[Server], connections: int, args: argparse.Namespace
) -> dict[str, list[WrkResult]]:
    """``args.runs`` rounds, each running every server once in turn, so drift in the machine's
    load (it is shared) falls on all of them alike."""
    results: dict[str, list[WrkResult]] = {s.name: [] for s in servers}
    for run in range(1, args.runs + 1):
        for s in servers:
            result = harness.run_wrk(s.base + RANKING_PATH, connections, args.duration, args.warmup)
            log(f"  c={connections} run {run} {s.name}: {result.rps:,.0f} req/s")
            results[s.name].append(result)
    return results


def rows(results: dict[str, list[WrkResult]]) -> list[list[str]]:
    """One row per run and server, then the medians (and all the runs' errors)."""
    table = [
        [name, str(n), f"{r.rps:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", str(r.errors)]
        for name, runs in results.items()
        for n, r in enumerate(runs, start=1)
    ]
    for name, runs in results.items():
        table.append(
            [
                f"**{name}**",
                "median",
                f"**{median(r.rps for r in runs):,.0f}**",
                f"{median(r.p50_ms for r in runs):.2f}",
                f"{median(r.p99_ms for r in runs):.2f}",
                f"{sum(r.errors for r in runs)} in all",
            ]
        )
    return table


HEADER = ["server", "run", "req/s", "p50 ms", "p99 ms", "errors"]


def read_section(report: Report, args: argparse.Namespace) -> None:
    prefix = harness.unique_prefix("read")
    with contextlib.ExitStack() as stack:
        stack.callback(harness.delete_keys, args.redis_url, prefix)
        ranker = stack.enter_context(harness.ranker_server(args.redis_url, prefix))
        harness.seed_views(ranker.base)
        with urllib.request.urlopen(ranker.base + RANKING_PATH) as response:
            body = response.read()
        body_file = Path(stack.enter_context(tempfile.TemporaryDirectory()), "body.json")
        body_file.write_bytes(body)
        bare = stack.enter_context(
            harness.python_server(
                "bare", "benchmarks.bare", "--body-file", str(body_file), ready_path=RANKING_PATH
            )
        )
        report.add(
            "## ranker vs bare aiohttp",
            f"`GET {RANKING_PATH}`; bare serves the body ranker answered ({len(body)} bytes). "
            f"Each run: `wrk -t2 -c<C> -d{args.duration}s --latency <url>` after a "
            f"{args.warmup} s warm-up; runs alternate ranker, bare, ranker, ... Errors are wrk's "
            "socket errors plus non-2xx answers; a run with errors does not compare.",
        )
        for connections in args.connections:
            results = alternate([ranker, bare], connections, args)
            report.add(f"### {connections} connections")
            report.table(HEADER, rows(results))
            r, b = results["ranker"], results["bare"]
            report.add(
                f"ranker/bare at {connections} connections: req/s "
                f"{ratio(median(x.rps for x in r), median(x.rps for x in b))}, p99 "
                f"{ratio(median(x.p99_ms for x in r), median(x.p99_ms for x in b))}"
            )


def workers_section(report: Report, args: argparse.Namespace) -> None:
    report.add("## ranker --workers 1 vs --workers 2")
    if not harness.ranker_has_workers():
        report.add("Skipped: this ranker's `serve` has no `--workers` option yet.")
        return
    prefix = harness.unique_prefix("workers")
    with contextlib.ExitStack() as stack:
        stack.callback(harness.delete_keys, args.redis_url, prefix)
        # Both serve the same keys, seeded once through the first.
        one = stack.enter_context(harness.ranker_server(args.redis_url, prefix, workers=1))
        two = stack.enter_context(harness.ranker_server(args.redis_url, prefix, workers=2))
        harness.seed_views(one.base)
        results = alternate([one, two], args.workers_connections, args)
        report.add(
            f"`wrk -t2 -c{args.workers_connections} -d{args.duration}s --latency <url>` after "
            f"a {args.warmup} s warm-up; runs alternate --workers 1, --workers 2, ..."
        )
        report.table(HEADER, rows(results))
        rps = [median(x.rps for x in runs) for runs in results.values()]
        report.add(f"req/s --workers 2 / --workers 1: {ratio(rps[1], rps[0])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL)
    parser.add_argument("--only", choices=["read", "workers"], help="run one section only")
    parser.add_argument("--runs", type=int, default=5, help="runs per server and setting")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run, 0: none")
    parser.add_argument(
        "--connections",
        type=lambda s: [int(c) for c in s.split(",")],
        default=[64, 256],
        help="comma-separated wrk -c values for the read section",
    )
    parser.add_argument("--workers-connections", type=int, default=64)
    args = parser.parse_args()
    report = Report("Read benchmark", MODULE, args.redis_url)
    if args.only in (None, "read"):
        read_section(report, args)
    if args.only in (None, "workers"):
        workers_section(report, args)
    report.print()


if __name__ == "__main__":
    main()
