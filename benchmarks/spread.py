"""List-cache benchmark: what one reader asking for every list at every limit costs a ranker.

    .venv/bin/python -m benchmarks.spread [--items usual|largest] [--ranker-path DIR]

One ``ranker serve`` (one worker), every ranking filled with 110 articles per section. First
one list is polled alone (``GET /v1/rankings/all?limit=10``) and measured; then one client asks
for every ranking x window x limit 1-100 (3,600 GETs, 16 at a time, as the hostile-clients
review did), and the same is measured again within the minute those answers are kept: the
server's RSS, its CPU over ``--idle`` seconds with no traffic, its Redis list reads a second
then (``ranker_redis_command_duration_seconds_count{operation="top"}``), the latency of
``--polls`` GETs of the one list, 10 ms apart, and of ``--puts`` CMS ``PUT /v1/articles/<id>``
that change a listed article's title (each refreshes the replica's lists before it answers).

``--items largest`` gives every article the longest title (500 emoji) and URL (2,048
characters) allowed, what any writer can plant. ``--ranker-path`` runs the ranker of another
checkout (its directory goes first on the server's ``PYTHONPATH``): main's code for a before.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

from benchmarks import harness
from benchmarks.harness import Server, log
from benchmarks.report import Report, percentile
from ranker.config import DEFAULT_SECTIONS, DEFAULT_WINDOWS, SITE_WIDE

MODULE = "benchmarks.spread"
POLLED = "/v1/rankings/all?limit=10"
ARTICLES_PER_SECTION = 110
LIMITS = range(1, 101)


@dataclass(frozen=True)
class Measure:
    rss_mb: float
    peak_rss_mb: float
    idle_cpu: float  # fraction of a core
    reads_per_s: float
    poll_p50_ms: float
    poll_p99_ms: float
    put_median_ms: float
    put_max_ms: float
    errors: int  # polls and PUTs not answered 200


def item_fields(n: int, largest: bool) -> dict[str, str]:
    if largest:
        return {"title": "\U0001f600" * 500, "url": "https://e.example/" + "\U0001f600" * 2030}
    return {
        "title": f"Story {n}: a headline about as long as most, with a few more words to it {n}",
        "url": f"https://news.example/2026/12/03/section/story-{n:04}-a-slug-of-words",
    }


def post(base: str, events: list[dict[str, object]]) -> None:
    request = urllib.request.Request(
        f"{base}/v1/events", orjson.dumps(events), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200


def seed(base: str, largest: bool) -> None:
    """110 articles in each section, scored 1-110, so every list is 100 long."""
    events: list[dict[str, object]] = []
    for s, section in enumerate(DEFAULT_SECTIONS):
        for n in range(ARTICLES_PER_SECTION):
            article = {"article_id": f"spread-{s:02}-{n:03}", "section": section}
            events.append(article | item_fields(n, largest) | {"weight": 1 + n})
    # Under RANKER_MAX_BODY_BYTES however long the items are.
    batch = 50 if largest else 1000
    for start in range(0, len(events), batch):
        post(base, events[start : start + batch])


def rss_mb(server: Server, field: str = "VmRSS") -> float:
    """The server's resident memory now (``VmHWM``: at its peak so far)."""
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


def top_reads(base: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=60) as response:
        text = response.read().decode()
    prefix = 'ranker_redis_command_duration_seconds_count{operation="top"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def timed(call: Callable[[], int]) -> tuple[float, bool]:
    """Milliseconds a call took, and whether it was answered 200."""
    started = time.perf_counter()
    status = call()
    return (time.perf_counter() - started) * 1e3, status == 200


def get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=600) as response:
        response.read()


def get_status(url: str) -> int:
    try:
        get(url)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def put_title(base: str, n: int) -> int:
    body = orjson.dumps({"title": f"A retitled story, version {n}"})
    request = urllib.request.Request(
        f"{base}/v1/articles/spread-00-109",
        body,
        {"Content-Type": "application/json"},
        method="PUT",
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def measure(server: Server, args: argparse.Namespace) -> Measure:
    base = server.base
    rss, peak = rss_mb(server), rss_mb(server, "VmHWM")
    cpu, reads = server.cpu_seconds(), top_reads(base)
    time.sleep(args.idle)
    idle_cpu = (server.cpu_seconds() - cpu) / args.idle
    # The /metrics scrape's own read counts nothing: lists are not read by a scrape.
    reads_per_s = (top_reads(base) - reads) / args.idle
    polls = []
    for _ in range(args.polls):
        polls.append(timed(lambda: get_status(base + POLLED)))
        time.sleep(0.01)
    puts = []
    for n in range(args.puts):
        puts.append(timed(lambda: put_title(base, n)))  # noqa: B023 - called at once
    poll_ms, put_ms = [ms for ms, _ in polls], [ms for ms, _ in puts]
    return Measure(
        rss,
        peak,
        idle_cpu,
        reads_per_s,
        percentile(poll_ms, 50),
        percentile(poll_ms, 99),
        statistics.median(put_ms),
        max(put_ms),
        sum(not ok for _, ok in (*polls, *puts)),
    )


def spread(base: str) -> tuple[float, int]:
    """Every ranking x window x limit, once; seconds it took, and the answers not 200."""
    rankings = (SITE_WIDE, *DEFAULT_SECTIONS)
    urls = [
        f"{base}/v1/rankings/{r}?limit={limit}" + (f"&window={w}" if w else "")
        for r in rankings
        for w in (None, *DEFAULT_WINDOWS)
        for limit in LIMITS
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(get_status, urls))
    return time.perf_counter() - started, sum(status != 200 for status in statuses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL)
    parser.add_argument("--items", choices=["usual", "largest"], default="usual")
    parser.add_argument("--ranker-path", help="a checkout whose ranker to run instead")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured")
    parser.add_argument("--polls", type=int, default=200, help="GETs of the polled list timed")
    parser.add_argument("--puts", type=int, default=20, help="CMS PUTs timed")
    args = parser.parse_args()
    report = Report("List-cache benchmark", MODULE, args.redis_url)
    env = {} if args.ranker_path is None else {"PYTHONPATH": os.path.abspath(args.ranker_path)}
    prefix = harness.unique_prefix("spread")
    rows: list[tuple[str, str, Measure]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(harness.delete_keys, args.redis_url, prefix)
        server = stack.enter_context(harness.ranker_server(args.redis_url, prefix, settings=env))
        log(f"seeding {args.items} items")
        seed(server.base, args.items == "largest")
        get(server.base + POLLED)
        time.sleep(2)
        log("measuring one list polled")
        rows.append(("one list polled", "-", measure(server, args)))
        log("asking for every ranking x window x limit")
        took, failed = spread(server.base)
        log(f"  took {took:.1f} s, {failed} answers not 200; measuring")
        asked = f"{took:.1f} s, {failed} not 200"
        rows.append(("after every list x limit asked", asked, measure(server, args)))
    report.add(
        f"Items: {args.items}; ranker from "
        f"{args.ranker_path or 'this checkout'}. Idle CPU over {args.idle:g} s (a fraction of one "
        f"core); {args.polls} polls of `GET {POLLED}` 10 ms apart; {args.puts} `PUT "
        '/v1/articles/<id>` `{"title": ...}` one after another.'
    )
    report.table(
        [
            "phase",
            "asking took",
            "RSS MB",
            "peak RSS MB",
            "idle CPU",
            "list reads/s idle",
            "poll p50 ms",
            "poll p99 ms",
            "PUT median ms",
            "PUT max ms",
            "polls, PUTs not 200",
        ],
        [
            [
                name,
                asked,
                f"{m.rss_mb:.0f}",
                f"{m.peak_rss_mb:.0f}",
                f"{m.idle_cpu:.0%}",
                f"{m.reads_per_s:.0f}",
                f"{m.poll_p50_ms:.2f}",
                f"{m.poll_p99_ms:.2f}",
                f"{m.put_median_ms:.1f}",
                f"{m.put_max_ms:.0f}",
                str(m.errors),
            ]
            for name, asked, m in rows
        ],
    )
    report.print()


if __name__ == "__main__":
    main()
