"""Ingest benchmark: acknowledged views per second, ranker against a naive ZINCRBY server.

    .venv/bin/python -m benchmarks.ingest [--runs 3] [--duration 10] [--senders 8] [--workers 1]
        [--keyed] [--visitors N] [--windows none] [--user-agents distinct|repeated]
        [--also-workers 2] [--also-setting RANKER_APPLY_INTERVAL_S=0]

``--senders`` concurrent senders (asyncio tasks in one process, or spread over ``--procs``
processes) POST pre-encoded batches of 500-1,000 Zipf-distributed views (exponent 1.1 over
5,000 articles in all 11 default sections). The pool of bodies is rebuilt before every run, so
each ``ts`` is at most a run old and never ahead. Runs alternate ``ranker serve`` and
``benchmarks.naive``; acknowledged views are the ``accepted`` of 200 answers over wall time.
``redis-benchmark`` pipelining ZINCRBY gives the Redis ceiling. CPU seconds per run show where
the two cores went: the server's process tree, the load generator, Redis (INFO; on a shared
Redis that includes everyone else's commands). ``--windows SPEC`` also runs a second ranker with
``RANKER_WINDOWS=SPEC`` (``none``: the default profile only), in the same alternation, to price
the named windows the first one keeps by default. ``--user-agents distinct`` also sends the
same views with a ``user_agent`` on each, every one different (in-app browsers' shapes, with
their per-device, build and version parts, 130-270 characters: no verdict is ever cached), and
``repeated`` with one of 2,000 such user agents, Zipf-drawn, as a day's traffic repeats them.
``--also-workers N`` also runs a ranker with ``--workers N`` in the same alternation, and
``--also-setting NAME=VALUE`` one with that ``RANKER_*`` setting (e.g.
``RANKER_APPLY_INTERVAL_S=0``: every flush applied as it is counted, none queued).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import random
import re
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import orjson
import redis

from benchmarks import harness
from benchmarks.harness import Server, Zipf, log
from benchmarks.report import Report, median, ratio

MODULE = "benchmarks.ingest"
HEADERS = {"Content-Type": "application/json"}


def in_app_user_agent(rng: random.Random) -> str:
    """A user agent of the shape in-app browsers send (KakaoTalk, NAVER, Facebook, Instagram,
    Line, Whale, Samsung Internet), with random device, build and version parts."""
    n = rng.randint
    android = (
        f"Mozilla/5.0 (Linux; Android {n(9, 15)}; SM-{rng.choice('SGAFN')}{n(100, 999)}"
        f"{rng.choice(['N', 'B', 'U', 'F'])} Build/{rng.choice(['TP1A', 'UP1A', 'AP3A'])}."
        f"{n(200000, 259999)}.{n(1, 99):03d}; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Version/4.0 Chrome/{n(110, 131)}.0.{n(5000, 6999)}.{n(10, 199)} Mobile Safari/537.36"
    )
    ios = (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {n(15, 18)}_{n(0, 7)}_{n(0, 3)} like Mac OS X) "
        f"AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/{n(15, 22)}{rng.choice('ABCDEFGH')}"
        f"{n(100, 399)}"
    )
    shape = n(0, 7)
    if shape == 0:
        return f"{android};KAKAOTALK {n(10000000, 11099999)}"
    if shape == 1:
        return f"{ios} KAKAOTALK {n(10, 11)}.{n(0, 9)}.{n(0, 9)}"
    if shape == 2:
        return (
            f"{android} NAVER(inapp; search; {n(1000, 2099)}; {n(11, 12)}.{n(0, 40)}.{n(0, 9)}; "
            f"{rng.choice(['S24', 'S23', 'A54', 'Z Flip5'])})"
        )
    if shape == 3:
        return (
            f"{ios} [FBAN/FBIOS;FBAV/{n(400, 499)}.0.0.{n(10, 60)}.{n(10, 120)};FBBV/"
            f"{n(500000000, 699999999)};FBDV/iPhone{n(12, 17)},{n(1, 8)};FBMD/iPhone;FBSN/iOS;"
            f"FBSV/{n(15, 18)}.{n(0, 7)};FBSS/3;FBID/phone;FBLC/ko_KR;FBOP/5;FBRV/"
            f"{n(500000000, 699999999)}]"
        )
    if shape == 4:
        return (
            f"{android} Instagram {n(300, 360)}.0.0.{n(10, 50)}.{n(10, 120)} Android "
            f"({n(29, 35)}/{n(10, 15)}; {rng.choice([420, 450, 480, 560])}dpi; 1080x{n(2000, 2400)}"
            f"; samsung; SM-S{n(900, 938)}N; {rng.choice(['dm3q', 'e3q', 'b0q'])}; qcom; ko_KR; "
            f"{n(500000000, 699999999)})"
        )
    if shape == 5:
        return f"{android} Line/{n(13, 14)}.{n(0, 20)}.{n(0, 9)}/IAB"
    if shape == 6:
        return android.replace(
            "Version/4.0 ", f"Whale/{n(3, 4)}.{n(20, 29)}.{n(100, 399)}.{n(10, 30)} "
        )
    return android.replace("Version/4.0 ", f"SamsungBrowser/{n(20, 27)}.{n(0, 9)} ").replace(
        "; wv)", ")"
    )


class WithUserAgents(Zipf):
    """The same views as :class:`Zipf` draws, each with a ``user_agent``: a new one every event
    (``repeated=0``), or one of ``repeated`` drawn Zipf-like."""

    def __init__(self, seed: int, repeated: int = 0) -> None:
        super().__init__(seed=seed)
        # A generator of their own: the views drawn are the same as Zipf(seed)'s.
        self.agent_rng = random.Random(seed + 1)
        self.agents = [in_app_user_agent(self.agent_rng) for _ in range(repeated)]
        self.agent_cum = list(
            itertools.accumulate(1 / (rank + 1) ** 1.1 for rank in range(repeated))
        )

    def batch(self, size: int | None = None, metadata: bool = False) -> bytes:
        events = orjson.loads(super().batch(size, metadata))
        if self.agents:
            agents = self.agent_rng.choices(self.agents, cum_weights=self.agent_cum, k=len(events))
        else:
            agents = [in_app_user_agent(self.agent_rng) for _ in events]
        for event, agent in zip(events, agents, strict=True):
            event["user_agent"] = agent
        return orjson.dumps(events)


@dataclass
class Load:
    """What one run's senders saw, and what it cost the generator."""

    accepted: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # non-200 status (or error) -> n
    wall_s: float = 0.0
    generator_cpu_s: float = 0.0


async def _send(
    url: str, bodies: list[bytes], senders: int, duration: float, keyed: bool = False
) -> Load:
    load = Load()
    deadline = time.perf_counter() + duration
    run = uuid.uuid4().hex  # keys never repeat across runs: every request is a first try

    async def sender(offset: int, session: aiohttp.ClientSession) -> None:
        i = offset
        while time.perf_counter() < deadline:
            i += 1
            try:
                headers = (
                    {**HEADERS, "Idempotency-Key": f"{run}-{offset}-{i}"} if keyed else HEADERS
                )
                async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as r:
                    answer = await r.read()
                    if r.status == 200:
                        taken = orjson.loads(answer)
                        # A reader's repeat is taken too, only not counted.
                        excluded = taken.get("excluded", {}).get("duplicate_reader", 0)
                        load.accepted += taken["accepted"] + excluded
                    else:
                        load.failures[str(r.status)] += 1
            except aiohttp.ClientError as exc:
                load.failures[type(exc).__name__] += 1
                await asyncio.sleep(0.01)  # do not spin on a refused connection

    cpu, started = time.process_time(), time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        # Spread the starting points so concurrent senders do not send the same bodies.
        step = len(bodies) // senders or 1
        await asyncio.gather(*(sender(n * step, session) for n in range(senders)))
    load.wall_s = time.perf_counter() - started
    load.generator_cpu_s = time.process_time() - cpu
    return load


def _send_in_process(job: tuple[str, list[bytes], int, float, bool]) -> Load:
    return asyncio.run(_send(*job))


def generate(
    url: str, bodies: list[bytes], senders: int, procs: int, duration: float, keyed: bool = False
) -> Load:
    """The load, from this process or from ``procs`` forked ones, each with its share of the
    senders and of the bodies; wall time is the slowest process's."""
    if procs == 1:
        return _send_in_process((url, bodies, senders, duration, keyed))
    jobs = [
        (url, bodies[p::procs], max(1, senders // procs), duration, keyed) for p in range(procs)
    ]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        loads = pool.map(_send_in_process, jobs)
    total = Load(wall_s=max(load.wall_s for load in loads))
    for load in loads:
        total.accepted += load.accepted
        total.failures += load.failures
        total.generator_cpu_s += load.generator_cpu_s
    return total


@dataclass(frozen=True)
class Run:
    load: Load
    server_cpu_s: float
    redis_cpu_s: float

    @property
    def rate(self) -> float:
        return self.load.accepted / self.load.wall_s


def measure(target: Server, args: argparse.Namespace, zipf: Zipf, keyed: bool = False) -> Run:
    bodies = zipf.pool(args.pool)  # fresh timestamps, built outside the measured time
    server_cpu, redis_cpu = target.cpu_seconds(), harness.redis_cpu_seconds(args.redis_url)
    url = target.base + "/v1/events"
    load = generate(url, bodies, args.senders, args.procs, args.duration, keyed)
    return Run(
        load,
        target.cpu_seconds() - server_cpu,
        harness.redis_cpu_seconds(args.redis_url) - redis_cpu,
    )


def redis_ceiling(redis_url: str, key: str) -> float:
    """ZINCRBY ops/s that redis-benchmark gets, pipelining 64 deep over 5,000 members."""
    url = urlsplit(redis_url)
    argv = ["redis-benchmark", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379)]
    argv += ["--dbnum", (url.path.strip("/") or "0")] + (
        ["-a", url.password] if url.password else []
    )
    argv += ["-P", "64", "-n", "2000000", "-r", "5000", "-q", "zincrby", key, "1", "__rand_int__"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    finally:
        redis.Redis.from_url(redis_url).delete(key)
    return parse_redis_benchmark(out)


def parse_redis_benchmark(output: str) -> float:
    """Requests per second from ``redis-benchmark -q`` output."""
    # -q still writes progress lines, separated by \r; the last figure is the final one.
    found = re.findall(r"([\d.]+) requests per second", output)
    if not found:
        raise ValueError(f"unexpected redis-benchmark output: {output!r}")
    return float(found[-1])


def report_runs(report: Report, results: dict[str, list[Run]], args: argparse.Namespace) -> None:
    header = ["server", "run", "events/s", "accepted", "wall s", "failures"]
    header += ["server CPU s", "generator CPU s", "Redis CPU s"]
    rows = []
    for name, runs in results.items():
        for n, run in enumerate(runs, start=1):
            failures = ", ".join(f"{k}: {v}" for k, v in sorted(run.load.failures.items()))
            rows.append(
                [
                    name,
                    str(n),
                    f"{run.rate:,.0f}",
                    f"{run.load.accepted:,}",
                    f"{run.load.wall_s:.2f}",
                    failures or "0",
                    f"{run.server_cpu_s:.2f}",
                    f"{run.load.generator_cpu_s:.2f}",
                    f"{run.redis_cpu_s:.2f}",
                ]
            )
    for name, runs in results.items():
        rows.append(
            [f"**{name}**", "median", f"**{median(r.rate for r in runs):,.0f}**"] + [""] * 6
        )
    report.table(header, rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=harness.DEFAULT_REDIS_URL)
    parser.add_argument("--runs", type=int, default=3, help="runs per server")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--senders", type=int, default=8, help="concurrent senders in all")
    parser.add_argument("--procs", type=int, default=1, help="load-generator processes")
    parser.add_argument("--pool", type=int, default=300, help="distinct bodies per run")
    parser.add_argument("--workers", type=int, default=1, help="server processes, both servers")
    parser.add_argument("--skip-ceiling", action="store_true", help="no redis-benchmark run")
    parser.add_argument(
        "--keyed", action="store_true", help="also ranker with an Idempotency-Key per request"
    )
    parser.add_argument(
        "--visitors",
        type=int,
        default=0,
        help="also ranker with a visitor_id on every event, drawn from this many readers",
    )
    parser.add_argument(
        "--user-agents",
        choices=["distinct", "repeated"],
        help="also ranker with an in-app browser's user_agent on every event: a new one each "
        "time (distinct) or one of 2,000 (repeated)",
    )
    parser.add_argument(
        "--also-workers",
        type=int,
        metavar="N",
        help="also a ranker with --workers N (e.g. 2), against the one with --workers",
    )
    parser.add_argument(
        "--also-setting",
        metavar="NAME=VALUE",
        type=_setting,
        help="also a ranker with this RANKER_* setting, against the default one",
    )
    parser.add_argument(
        "--windows",
        metavar="SPEC",
        help="also a ranker with RANKER_WINDOWS=SPEC (e.g. none), against the default windows",
    )
    return parser


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.startswith("RANKER_"):
        raise argparse.ArgumentTypeError(f"{text!r} is not RANKER_NAME=VALUE")
    return name, value


def _setting_name(args: argparse.Namespace) -> str:
    return "ranker {}={}".format(*args.also_setting)


def _report_ratios(
    report: Report, results: dict[str, list[Run]], args: argparse.Namespace, r: float
) -> None:
    """Each variant's rate against plain ranker's ``r``, same run."""
    n = median(run.rate for run in results["naive"])
    agents_name = f"ranker user agents {args.user_agents}"
    windows_name = f"ranker RANKER_WINDOWS={args.windows}"
    if args.keyed:
        k = median(run.rate for run in results["ranker keyed"])
        report.add(
            f"ranker with an Idempotency-Key per request / without: {ratio(k, r)}; "
            f"keyed/naive: {ratio(k, n)}"
        )
    if args.visitors:
        v = median(run.rate for run in results["ranker visitors"])
        report.add(
            f"ranker with a visitor_id on every event (from {args.visitors:,} readers; events/s "
            f"counts the repeats left out) / without: {ratio(v, r)}"
        )
    if args.user_agents:
        a = median(run.rate for run in results[agents_name])
        report.add(f"ranker with user agents ({args.user_agents}) / without: {ratio(a, r)}")
    if args.also_workers:
        m = median(run.rate for run in results[f"ranker --workers {args.also_workers}"])
        report.add(
            f"ranker --workers {args.also_workers} / --workers {args.workers}: {ratio(m, r)}"
        )
    if args.also_setting:
        a = median(run.rate for run in results[_setting_name(args)])
        report.add(f"{_setting_name(args)} / ranker: {ratio(a, r)}")
    if args.windows is not None:
        w = median(run.rate for run in results[windows_name])
        report.add(
            f"ranker with its default windows / with RANKER_WINDOWS={args.windows}: {ratio(r, w)}"
        )


def _variants(
    args: argparse.Namespace,
    ranker: Server,
    naive: Server,
    other: Server | None,
    more_workers: Server | None = None,
    with_setting: Server | None = None,
) -> list[tuple[str, Server, Zipf, bool]]:
    """What each run sends where, in the order runs alternate: (name, server, views, keyed)."""
    zipf = Zipf(seed=1)
    variants: list[tuple[str, Server, Zipf, bool]] = [
        ("ranker", ranker, zipf, False),
        ("naive", naive, zipf, False),
    ]
    if args.keyed:
        variants.append(("ranker keyed", ranker, zipf, True))
    if args.visitors:
        variants.append(("ranker visitors", ranker, Zipf(seed=2, visitors=args.visitors), False))
    if args.user_agents:
        # Seed 1, as zipf: the same views, so the user agents are all that differs.
        agents = WithUserAgents(seed=1, repeated=2000 if args.user_agents == "repeated" else 0)
        variants.append((f"ranker user agents {args.user_agents}", ranker, agents, False))
    if other is not None:
        variants.append((f"ranker RANKER_WINDOWS={args.windows}", other, zipf, False))
    if more_workers is not None:
        variants.append((f"ranker --workers {args.also_workers}", more_workers, zipf, False))
    if with_setting is not None:
        variants.append((_setting_name(args), with_setting, zipf, False))
    return variants


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.workers != 1 and not harness.ranker_has_workers():
        parser.error("this ranker's serve has no --workers option yet")
    report = Report("Ingest benchmark", MODULE, args.redis_url)
    ranker_prefix, naive_prefix = harness.unique_prefix("ingest"), harness.unique_prefix("naive")
    windows_name = f"ranker RANKER_WINDOWS={args.windows}"
    windows_prefix = harness.unique_prefix("windows")
    workers_prefix = harness.unique_prefix("workers")
    setting_prefix = harness.unique_prefix("setting")
    prefixes = (ranker_prefix, naive_prefix, windows_prefix, workers_prefix, setting_prefix)
    with contextlib.ExitStack() as stack:
        for prefix in prefixes:
            stack.callback(harness.delete_keys, args.redis_url, prefix)
        # Pass --workers only to a ranker that knows it; without it ranker runs one process.
        workers = args.workers if harness.ranker_has_workers() else None
        ranker = stack.enter_context(harness.ranker_server(args.redis_url, ranker_prefix, workers))
        naive = stack.enter_context(
            harness.python_server(
                "naive", "benchmarks.naive", "--redis-url", args.redis_url,
                "--key-prefix", naive_prefix, workers=args.workers,
            )
        )  # fmt: skip

        def also(prefix: str, name: str, n: int | None, **settings: str) -> Server:
            return stack.enter_context(
                harness.ranker_server(args.redis_url, prefix, n, settings=settings, name=name)
            )

        other = more_workers = with_setting = None
        if args.windows is not None:
            other = also(windows_prefix, windows_name, workers, RANKER_WINDOWS=args.windows)
        if args.also_workers:
            name = f"ranker --workers {args.also_workers}"
            more_workers = also(workers_prefix, name, args.also_workers)
        if args.also_setting:
            with_setting = also(
                setting_prefix, _setting_name(args), workers, **dict([args.also_setting])
            )
        variants = _variants(args, ranker, naive, other, more_workers, with_setting)
        results: dict[str, list[Run]] = {name: [] for name, *_ in variants}
        for number in range(1, args.runs + 1):
            for name, target, source, keyed in variants:
                run = measure(target, args, source, keyed)
                log(f"  run {number} {name}: {run.rate:,.0f} events/s")
                results[name].append(run)
        ceiling = (
            0.0 if args.skip_ceiling else redis_ceiling(args.redis_url, f"{naive_prefix}:scratch")
        )
    report.add(
        f"{args.senders} senders in {args.procs} generator process(es), a pool of {args.pool} "
        f"bodies per run, {args.duration:g} s per run, `--workers {args.workers}` for both "
        "servers; runs alternate ranker, naive"
        + (", ranker keyed (a fresh Idempotency-Key per request)" if args.keyed else "")
        + ", ranker, ...",
    )
    report_runs(report, results, args)
    r, n = (median(run.rate for run in results[name]) for name in ("ranker", "naive"))
    report.add(f"ranker/naive events/s: {ratio(r, n)}")
    _report_ratios(report, results, args, r)
    if ceiling:
        report.add(
            f"Redis ceiling (`redis-benchmark -P 64 -n 2000000 -r 5000 -q zincrby`): "
            f"{ceiling:,.0f} ZINCRBY/s. ranker events/s / ceiling: {ratio(r, ceiling)}; naive "
            f"sends 2 ZINCRBY per event, so it uses {ratio(2 * n, ceiling)} of the ceiling.",
        )
    report.print()


if __name__ == "__main__":
    main()
