"""Read benchmark: ranker's Top 10 endpoint against a bare aiohttp app, its HTML fragment
against its JSON, and 1 vs 2 workers.

    .venv/bin/python -m benchmarks.read [--only read|fragment|workers] [--runs 5] [--duration 10]

``read``: ``GET /v1/rankings/all?limit=10`` of ``ranker serve`` against ``benchmarks.bare``
serving the very bytes ranker answered, with ``wrk -t2 -c{64,256} --latency``; runs alternate
between the two, each after a short warm-up. ``fragment``: ``GET
/v1/rankings/all.html?limit=10`` against ``GET /v1/rankings/all?limit=10`` of the same ``ranker
serve``, alternating, at each connection count. ``workers``: the same request against
``ranker serve --workers 1`` and ``--workers 2``, alternating, at 64 connections.

wrk shares the machine with the servers (and Redis), so read the ratios rather than the
absolute numbers, and only next to the machine table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import resource
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import RANKING_PATH, Server, WrkResult, log
from benchmarks.report import Report, median, ratio

MODULE = "benchmarks.read"
FRAGMENT_PATH = "/v1/rankings/all.html?limit=10"
CACHE_HEADERS = ("ETag", "Cache-Control")


@dataclass(frozen=True)
class Run:
    """One measured wrk run, and the CPU the server and wrk spent in it, per request."""

    wrk: WrkResult
    server_cpu_us: float
    wrk_cpu_us: float


def measure(
    server: Server, connections: int, args: argparse.Namespace, pipeline: int, path: str
) -> Run:
    url = server.base + path
    if args.warmup > 0:
        harness.run_wrk(url, connections, args.warmup, 0, pipeline)
    server_cpu = server.cpu_seconds()
    wrk_cpu = _children_cpu_seconds()
    result = harness.run_wrk(url, connections, args.duration, 0, pipeline)
    if pipeline:
        # wrk times a pipelined batch, not its requests: no latency to report.
        result = dataclasses.replace(result, p50_ms=0.0, p99_ms=0.0)
    per_request = 1e6 / max(result.requests, 1)
    return Run(
        result,
        (server.cpu_seconds() - server_cpu) * per_request,
        (_children_cpu_seconds() - wrk_cpu) * per_request,
    )


def _children_cpu_seconds() -> float:
    # wrk runs as our child and has been waited for: its CPU is in RUSAGE_CHILDREN.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def alternate(
    servers: list[Server],
    connections: int,
    args: argparse.Namespace,
    pipeline: int = 0,
    paths: Mapping[str, str] | None = None,
) -> dict[str, list[Run]]:
    """``args.runs`` rounds, each running every server once in turn, so drift in the machine's
    load (it is shared) falls on all of them alike. ``paths``: by server name, the path it is
    asked (default: the Top 10)."""
    results: dict[str, list[Run]] = {s.name: [] for s in servers}
    for run in range(1, args.runs + 1):
        for s in servers:
            path = (paths or {}).get(s.name, RANKING_PATH)
            measured = measure(s, connections, args, pipeline, path)
            log(f"  c={connections} run {run} {s.name}: {measured.wrk.rps:,.0f} req/s")
            results[s.name].append(measured)
    return results


def rows(results: dict[str, list[Run]]) -> list[list[str]]:
    """One row per run and server, then the medians (and all the runs' errors)."""

    def cells(r: Run) -> list[str]:
        w = r.wrk
        latency = [f"{w.p50_ms:.2f}", f"{w.p99_ms:.2f}"] if w.p50_ms > 0 else ["-", "-"]
        return [f"{w.rps:,.0f}", *latency, f"{r.server_cpu_us:.1f}", f"{r.wrk_cpu_us:.1f}"]

    table = [
        [name, str(n), *cells(r), str(r.wrk.errors)]
        for name, runs in results.items()
        for n, r in enumerate(runs, start=1)
    ]
    for name, runs in results.items():
        middle = Run(
            WrkResult(
                median(r.wrk.rps for r in runs),
                median(r.wrk.p50_ms for r in runs),
                median(r.wrk.p99_ms for r in runs),
                0,
                0,
            ),
            median(r.server_cpu_us for r in runs),
            median(r.wrk_cpu_us for r in runs),
        )
        rps, *rest = cells(middle)
        table.append(
            [f"**{name}**", "median", f"**{rps}**", *rest, f"{sum(r.wrk.errors for r in runs)}"]
        )
    return table


HEADER = [
    "server",
    "run",
    "req/s",
    "p50 ms",
    "p99 ms",
    "server CPU µs/req",
    "wrk CPU µs/req",
    "errors",
]


def compare(report: Report, results: dict[str, list[Run]], connections: int) -> None:
    """The runs' table and the first server's medians over the second's."""
    report.add(f"### {connections} connections")
    report.table(HEADER, rows(results))
    (first, a), (second, b) = results.items()
    report.add(
        f"{first}/{second} at {connections} connections: req/s "
        f"{ratio(median(x.wrk.rps for x in a), median(x.wrk.rps for x in b))}, p99 "
        f"{ratio(median(x.wrk.p99_ms for x in a), median(x.wrk.p99_ms for x in b))}, "
        "server CPU per request "
        f"{ratio(median(x.server_cpu_us for x in a), median(x.server_cpu_us for x in b))}"
    )


def read_section(report: Report, args: argparse.Namespace) -> None:
    prefix = harness.unique_prefix("read")
    with contextlib.ExitStack() as stack:
        stack.callback(harness.delete_keys, args.redis_url, prefix)
        ranker = stack.enter_context(harness.ranker_server(args.redis_url, prefix))
        harness.seed_views(ranker.base)
        with urllib.request.urlopen(ranker.base + RANKING_PATH) as response:
            body = response.read()
            same_headers = [f"{name}:{response.headers[name]}" for name in CACHE_HEADERS]
        body_file = Path(stack.enter_context(tempfile.TemporaryDirectory()), "body.json")
        body_file.write_bytes(body)
        bare = stack.enter_context(
            harness.python_server(
                "bare",
                "benchmarks.bare",
                "--body-file",
                str(body_file),
                *(arg for header in same_headers for arg in ("--header", header)),
                ready_path=RANKING_PATH,
            )
        )
        report.add(
            "## ranker vs bare aiohttp",
            f"`GET {RANKING_PATH}`; bare serves the body ranker answered ({len(body)} bytes) "
            "with the same ETag and Cache-Control, so both send the same bytes. "
            f"Each run: `wrk -t2 -c<C> -d{args.duration}s --latency <url>` after a "
            f"{args.warmup} s warm-up; runs alternate ranker, bare, ranker, ... Errors are wrk's "
            "socket errors plus non-2xx answers; a run with errors does not compare.",
        )
        for connections in args.connections:
            compare(report, alternate([ranker, bare], connections, args), connections)


def fragment_section(report: Report, args: argparse.Namespace) -> None:
    prefix = harness.unique_prefix("fragment")
    with contextlib.ExitStack() as stack:
        stack.callback(harness.delete_keys, args.redis_url, prefix)
        ranker = stack.enter_context(harness.ranker_server(args.redis_url, prefix))
        harness.seed_views(ranker.base)
        # One server, asked for two paths in turn: the names tell the runs apart.
        as_json = dataclasses.replace(ranker, name="json")
        as_html = dataclasses.replace(ranker, name="html")
        paths = {"json": RANKING_PATH, "html": FRAGMENT_PATH}
        sizes = {}
        for name, path in paths.items():
            with urllib.request.urlopen(ranker.base + path) as response:
                sizes[name] = len(response.read())
        report.add(
            "## HTML fragment vs JSON",
            f"`GET {FRAGMENT_PATH}` ({sizes['html']} bytes) against `GET {RANKING_PATH}` "
            f"({sizes['json']} bytes) of one `ranker serve`, both answered from its list cache. "
            f"Each run: `wrk -t2 -c<C> -d{args.duration}s --latency <url>` after a "
            f"{args.warmup} s warm-up; runs alternate html, json, html, ...",
        )
        for connections in args.connections:
            results = alternate([as_html, as_json], connections, args, paths=paths)
            compare(report, results, connections)


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
        for pipeline in (0, args.pipeline):
            how = f"{pipeline} requests written at a time" if pipeline else "one at a time"
            results = alternate([one, two], args.workers_connections, args, pipeline)
            report.add(
                f"### {how}",
                f"`wrk -t2 -c{args.workers_connections} -d{args.duration}s --latency "
                + (f"-s benchmarks/pipeline.lua <url> -- {pipeline}` " if pipeline else "<url>` ")
                + f"after a {args.warmup} s warm-up; runs alternate --workers 1, --workers 2, "
                "...",
            )
            report.table(HEADER, rows(results))
            rps = [median(x.wrk.rps for x in runs) for runs in results.values()]
            report.add(f"req/s --workers 2 / --workers 1 ({how}): {ratio(rps[1], rps[0])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL)
    parser.add_argument(
        "--only", choices=["read", "fragment", "workers"], help="run one section only"
    )
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
    parser.add_argument(
        "--pipeline",
        type=int,
        default=8,
        help="requests per write in the second workers comparison (the load generator's share)",
    )
    args = parser.parse_args()
    report = Report("Read benchmark", MODULE, args.redis_url)
    if args.only in (None, "read"):
        read_section(report, args)
    if args.only in (None, "fragment"):
        fragment_section(report, args)
    if args.only in (None, "workers"):
        workers_section(report, args)
    report.print()


if __name__ == "__main__":
    main()
