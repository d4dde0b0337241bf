"""Capacity benchmark: ingest and reads on one Redis node against a 3-master Redis Cluster,
and the memory an article takes in Redis.

    .venv/bin/python -m benchmarks.capacity [--only ingest|read|memory] [--runs 3]
        [--duration 10] [--senders 8] [--catalog 5000] [--connections 64] [--articles 5000]
        [--also RANKER_SITE_SHARDS=3]

``ingest`` and ``read`` start two private Redis of the same ``redis-server`` binary, neither
persisting: one node, and a local cluster of 3 masters with a replica each
(``ranker.runtime.cluster.LocalCluster``), with one ``ranker serve`` on each (the cluster's with
``RANKER_REDIS_CLUSTER=true`` and every node's URL). ``ingest``: the load of
``benchmarks.ingest`` (8 senders posting batches of 500-1,000 Zipf-distributed views over
``--catalog`` articles, 5,000 by default, in every default section; a flush counts the views of
one article once per ranking, so the fewer articles, the fewer updates per view), runs
alternating between the two; views/s are the views
acknowledged over wall time, with the CPU seconds of ranker, of each master and of the load
generator. ``read``: ``wrk`` polling ``GET /v1/rankings/all?limit=10`` of each, alternating,
with ranker's and Redis's CPU. ``memory``: one ``ranker serve`` with its default settings on a
private node is sent ``--articles`` distinct articles (ids of 18 characters, a title and a url
each) in one section; then ``MEMORY USAGE ... SAMPLES 0`` of every scores key the views landed
in (the section's and the site-wide ranking, each in the default profile and every default
window) and of each article's metadata hash, per article. ``--also NAME=VALUE`` adds a third
``ranker serve`` to ingest and read, on the same cluster with that setting (under keys of its
own), to the alternation: ``RANKER_SITE_SHARDS=3`` spreads the site-wide ranking's writes,
which every view makes, over three slots.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import redis
from redis.crc import key_slot

from benchmarks import harness, ingest, read
from benchmarks.harness import RANKING_PATH, PrivateRedis, Server, Zipf, log
from benchmarks.report import Report, median, ratio
from ranker import config
from ranker.config import DEFAULT_WINDOWS, SITE_WIDE
from ranker.runtime.embedded import find_server_binary
from ranker.store.keys import Keys
from ranker.store.shards import Shards

MODULE = "benchmarks.capacity"
PREFIX = "bench-capacity"
MEMORY_SECTION = "national"


@dataclass(frozen=True)
class Target:
    name: str
    redis: PrivateRedis
    ranker: Server
    prefix: str
    settings: dict[str, str]


@contextlib.contextmanager
def targets(also: dict[str, str]) -> Iterator[list[Target]]:
    """One ranker on a private node, one on a private 3-master cluster, and with ``also``, a
    second one on the same cluster with those settings (keys of its own)."""
    with contextlib.ExitStack() as stack:
        found = []
        for cluster in (False, True):
            private = stack.enter_context(harness.private_redis(cluster))
            log(f"{private.name} up: {private.url}")
            variants: list[tuple[str, str, dict[str, str]]] = [(private.name, PREFIX, {})]
            if cluster and also:
                named = ", ".join(f"{k}={v}" for k, v in also.items())
                variants.append((f"{private.name}, {named}", f"{PREFIX}-also", also))
            for name, prefix, settings in variants:
                server = stack.enter_context(
                    harness.ranker_server(
                        private.url, prefix, settings=private.settings | settings, name=name
                    )
                )
                found.append(Target(name, private, server, prefix, settings))
        yield found


@dataclass(frozen=True)
class IngestRun:
    load: ingest.Load
    ranker_cpu_s: float
    redis_cpu_s: tuple[float, ...]  # each master's

    @property
    def rate(self) -> float:
        return self.load.accepted / self.load.wall_s


def ingest_once(target: Target, zipf: Zipf, args: argparse.Namespace) -> IngestRun:
    bodies = zipf.pool(args.pool)  # fresh timestamps, built outside the measured time
    ranker_cpu, redis_cpu = target.ranker.cpu_seconds(), target.redis.cpu_seconds()
    url = target.ranker.base + "/v1/events"
    load = ingest.generate(url, bodies, args.senders, args.procs, args.duration)
    after = target.redis.cpu_seconds()
    return IngestRun(
        load,
        target.ranker.cpu_seconds() - ranker_cpu,
        tuple(b - a for a, b in zip(redis_cpu, after, strict=True)),
    )


def site_wide_masters(target: Target) -> list[int]:
    """The indexes in ``masters`` of the masters holding the site-wide ranking's scores (its
    sub-rankings' with ``RANKER_SITE_SHARDS``), one per sub-ranking."""
    shards = Shards(config.from_env(target.settings).site_shards)
    slots = [
        key_slot(Keys(target.prefix).scores(part).encode()) for part in shards.parts(SITE_WIDE)
    ]
    owners = []
    for index, url in enumerate(target.redis.masters):
        client = redis.Redis.from_url(url)
        try:
            nodes = client.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
        finally:
            client.close()
        (myself,) = (node for node in nodes.values() if "myself" in node["flags"])
        ranges = [(int(start), int(end)) for start, end, *_ in myself["slots"]]
        owners += [index for slot in slots if any(a <= slot <= b for a, b in ranges)]
    return sorted(owners)


def ingest_section(report: Report, found: list[Target], args: argparse.Namespace) -> None:
    zipf = Zipf(seed=1, articles=args.catalog)
    results: dict[str, list[IngestRun]] = {t.name: [] for t in found}
    for number in range(1, args.runs + 1):
        for target in found:
            run = ingest_once(target, zipf, args)
            log(f"  ingest run {number} {target.name}: {run.rate:,.0f} views/s")
            results[target.name].append(run)
    report.add(
        "## Ingest: 1 node vs 3-master cluster",
        f"{args.senders} senders in {args.procs} process(es), views of {args.catalog:,} "
        f"articles, a pool of {args.pool} bodies per run, {args.duration:g} s per run, "
        "`ranker serve` (one process) on each; runs alternate 1 node, cluster, ... Redis CPU s: "
        "each master's (INFO cpu).",
    )
    header = ["Redis", "run", "views/s", "ranker CPU s", "Redis CPU s", "generator CPU s"]
    rows = [
        [
            name,
            str(n),
            f"{run.rate:,.0f}",
            f"{run.ranker_cpu_s:.2f}",
            " / ".join(f"{s:.2f}" for s in run.redis_cpu_s),
            f"{run.load.generator_cpu_s:.2f}",
        ]
        for name, runs in results.items()
        for n, run in enumerate(runs, start=1)
    ]
    rows += [
        [f"**{name}**", "median", f"**{median(r.rate for r in runs):,.0f}**", "", "", ""]
        for name, runs in results.items()
    ]
    report.table(header, rows)
    failures = sum(sum(r.load.failures.values()) for runs in results.values() for r in runs)
    rates = {name: median(r.rate for r in runs) for name, runs in results.items()}
    single, *others = rates
    report.add(
        "; ".join(
            f"{name}/{single} views/s: {ratio(rates[name], rates[single])}" for name in others
        )
        + f"; failed requests in all runs: {failures}"
    )
    lines = [per_cpu_second(target, results[target.name]) for target in found]
    report.add("Per CPU second, over every run:\n\n" + "\n".join(lines))


def per_cpu_second(target: Target, runs: list[IngestRun]) -> str:
    """What one CPU second of ranker and of Redis took, over ``runs``; on a cluster, how the
    masters shared the work and what the busiest one took."""
    views = sum(r.load.accepted for r in runs)
    ranker_cpu = sum(r.ranker_cpu_s for r in runs)
    redis_cpu = [sum(r.redis_cpu_s[m] for r in runs) for m in range(len(target.redis.masters))]
    line = (
        f"- {target.name}: {views / ranker_cpu:,.0f} views per ranker CPU second, "
        f"{views / sum(redis_cpu):,.0f} views per Redis CPU second (all masters)"
    )
    if not target.redis.cluster:
        return line
    shares = " / ".join(f"{cpu / sum(redis_cpu):.0%}" for cpu in redis_cpu)
    holders = ", ".join(str(m + 1) for m in site_wide_masters(target))
    return line + (
        f"; each master's share of their CPU: {shares} (the site-wide ranking's scores on "
        f"master {holders}); the busiest: {views / max(redis_cpu):,.0f} views per its CPU second"
    )


def read_section(report: Report, found: list[Target], args: argparse.Namespace) -> None:
    for target in found:
        harness.seed_views(target.ranker.base)
    results: dict[str, list[tuple[read.Run, float]]] = {t.name: [] for t in found}
    for number in range(1, args.runs + 1):
        for target in found:
            before = sum(target.redis.cpu_seconds())
            run = read.measure(target.ranker, args.connections, args, 0, RANKING_PATH)
            redis_cpu = sum(target.redis.cpu_seconds()) - before
            log(f"  read run {number} {target.name}: {run.wrk.rps:,.0f} polls/s")
            results[target.name].append((run, redis_cpu))
    report.add(
        "## Reads: 1 node vs 3-master cluster",
        f"`wrk -t2 -c{args.connections} -d{args.duration}s --latency <ranker>{RANKING_PATH}` after "
        f"a {args.warmup} s warm-up; runs alternate 1 node, cluster, ... Redis CPU s: all "
        "masters' during the measured run.",
    )
    header = ["Redis", "run", "polls/s", "p99 ms", "ranker CPU µs/poll", "Redis CPU s", "errors"]
    rows = [
        [
            name,
            str(n),
            f"{run.wrk.rps:,.0f}",
            f"{run.wrk.p99_ms:.2f}",
            f"{run.server_cpu_us:.1f}",
            f"{redis_cpu:.3f}",
            str(run.wrk.errors),
        ]
        for name, runs in results.items()
        for n, (run, redis_cpu) in enumerate(runs, start=1)
    ]
    medians = {name: median(r.wrk.rps for r, _ in runs) for name, runs in results.items()}
    cpu = {name: median(r.server_cpu_us for r, _ in runs) for name, runs in results.items()}
    rows += [
        [f"**{name}**", "median", f"**{medians[name]:,.0f}**", "", f"{cpu[name]:.1f}", "", ""]
        for name in results
    ]
    report.table(header, rows)
    single, *others = medians
    report.add(
        "; ".join(
            f"{name}/{single} polls/s: {ratio(medians[name], medians[single])}" for name in others
        )
        + ". Polls per ranker CPU second (1e6 / median µs per poll): "
        + ", ".join(f"{name} {1e6 / cpu[name]:,.0f}" for name in medians)
        + ". Polls are answered from each replica's list cache; Redis sees each list's refresh "
        "(every 1 s), however many polls there are."
    )


def post(base: str, events: list[dict[str, object]]) -> None:
    request = urllib.request.Request(
        f"{base}/v1/events", data=orjson.dumps(events), headers=ingest.HEADERS
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        taken = orjson.loads(response.read())
        if response.status != 200 or taken["accepted"] != len(events):
            raise RuntimeError(f"ingest failed: {response.status} {taken}")


def memory_usage(client: redis.Redis, keys: list[str]) -> list[int]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("MEMORY USAGE", key, "SAMPLES", "0")  # type: ignore[no-untyped-call]
    return [int(n or 0) for n in pipe.execute()]


def memory_section(report: Report, args: argparse.Namespace) -> None:
    n = args.articles
    keys = Keys(PREFIX)
    ids = [f"mem-article-{i:06d}" for i in range(n)]
    with harness.private_redis(cluster=False) as private:
        client = redis.Redis.from_url(private.url)
        before = int(str(harness.redis_info(private.url)["used_memory"]))
        with harness.ranker_server(private.url, PREFIX) as ranker:
            now = time.time()
            for start in range(0, n, 1000):
                post(
                    ranker.base,
                    [
                        {
                            "article_id": id_,
                            "section": MEMORY_SECTION,
                            "ts": now,
                            "title": f"Story {id_}: a headline about as long as most",
                            "url": f"https://news.example/{MEMORY_SECTION}/{id_}",
                        }
                        for id_ in ids[start : start + 1000]
                    ],
                )
        after = int(str(harness.redis_info(private.url)["used_memory"]))
        rows = []
        total = 0
        for ranking in (MEMORY_SECTION, SITE_WIDE):
            for window in (None, *DEFAULT_WINDOWS):
                key = keys.scores(ranking, window)
                (size,) = memory_usage(client, [key])
                members = int(client.zcard(key))
                total += size
                name = f"`{ranking}` {window or 'default'}"
                rows.append([name, f"{members:,}", f"{size:,}", f"{size / n:.1f}"])
        metadata = memory_usage(client, [keys.article(id_) for id_ in ids])
        rows.append(
            ["article metadata hashes", f"{n:,}", f"{sum(metadata):,}", f"{sum(metadata) / n:.1f}"]
        )
        total += sum(metadata)
        client.close()
    report.add(
        "## Memory per article",
        f"{n:,} distinct articles (ids of {len(ids[0])} characters, a title of about 60 and a url "
        f"of about 50), one view each, in section `{MEMORY_SECTION}`, through `ranker serve` "
        "with its default settings (the default profile and the windows "
        + ", ".join(f"`{w}`" for w in DEFAULT_WINDOWS)
        + ") on a private node; `MEMORY USAGE <key> SAMPLES 0` of each key.",
    )
    report.table(["key", "members", "bytes", "bytes per article"], rows)
    report.add(
        f"All of these per article: {total / n:.1f} bytes. Redis's used_memory grew by "
        f"{after - before:,} bytes, {(after - before) / n:.1f} per article (with the keyspace's "
        "own entries and everything else ranker keeps)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["ingest", "read", "memory"], help="one section only")
    parser.add_argument("--runs", type=int, default=3, help="runs per Redis")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk warm-up per run")
    parser.add_argument("--senders", type=int, default=8, help="concurrent ingest senders")
    parser.add_argument("--procs", type=int, default=1, help="load-generator processes")
    parser.add_argument("--pool", type=int, default=300, help="distinct bodies per ingest run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--catalog", type=int, default=5000, help="articles the views are of")
    parser.add_argument("--articles", type=int, default=5000, help="articles for memory")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="RANKER_NAME=VALUE",
        help="also a ranker with this setting (repeat for more) on the cluster, in the same "
        "alternation (e.g. RANKER_SITE_SHARDS=3)",
    )
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL, help=argparse.SUPPRESS)
    args = parser.parse_args()
    report = Report("Capacity benchmark", MODULE, args.redis_url)
    version = subprocess.run(
        [find_server_binary(shutil.which("redis-server")), "--version"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    report.add(f"Redis here: private servers of this run's own, not the one above: `{version}`.")
    if args.only in (None, "ingest", "read"):
        with targets(dict(setting.split("=", 1) for setting in args.also)) as found:
            if args.only in (None, "ingest"):
                ingest_section(report, found, args)
            if args.only in (None, "read"):
                read_section(report, found, args)
    if args.only in (None, "memory"):
        memory_section(report, args)
    report.print()


if __name__ == "__main__":
    main()
