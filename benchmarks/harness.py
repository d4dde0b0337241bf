"""Shared benchmark machinery: server processes, wrk, Zipf batches, CPU accounting, Redis keys.

Everything here is synchronous orchestration around subprocesses; the load generators that need
an event loop (``ingest``, ``freshness``) bring their own. The Markdown report and its
statistics are in ``benchmarks.report``; the baselines' multi-process serving in
``benchmarks.bare``.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import orjson
import redis

from ranker.config import DEFAULT_SECTIONS
from ranker.runtime.cluster import LocalCluster
from ranker.runtime.embedded import (
    EmbeddedRedis,
    EmbeddedServerError,
    find_server_binary,
    free_port,
)

RANKER = str(Path(sys.executable).with_name("ranker"))
DEFAULT_REDIS_URL = os.environ.get("RANKER_REDIS_URL", "redis://127.0.0.1:6379/0")
RANKING_PATH = "/v1/rankings/all?limit=10"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays a clean Markdown report."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Server:
    """A server subprocess in a session (process group) of its own, listening on ``port``."""

    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and every process below it, reaped ones included."""
        return tree_cpu_seconds(self.process.pid)


def tree_cpu_seconds(root: int) -> float:
    """CPU time of ``root`` and its descendants, from /proc (psutil is not a dependency)."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (ppid, utime+stime+cutime+cstime)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # The command name may hold spaces or parentheses: fields start after the last ')'.
        fields = raw[raw.rindex(")") + 2 :].split()
        # cutime/cstime hold children that already exited and were waited for; live children
        # are counted by themselves, so nothing is counted twice.
        ticks = sum(int(f) for f in fields[11:15])
        stats[int(entry.name)] = (int(fields[1]), ticks / CLK_TCK)
    total, frontier = 0.0, [root]
    while frontier:
        pid = frontier.pop()
        if pid in stats:
            total += stats[pid][1]
            frontier.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return total


def listening_sockets(port: int) -> int:
    """How many sockets listen on ``port``: with SO_REUSEPORT each worker has its own."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count


@contextmanager
def run_server(
    name: str,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    port: int,
    workers: int = 1,
    ready_path: str = "/",
    timeout: float = 30.0,
) -> Iterator[Server]:
    """Start ``argv``, wait until ``ready_path`` answers 200 and ``workers`` sockets listen,
    yield it, then SIGTERM it and anything of its process group still left."""
    process = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(f"http://127.0.0.1:{port}{ready_path}"):
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: {shlex.join(argv)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer within {timeout} s")
            time.sleep(0.05)
        # One ready worker is not enough: connections the kernel spreads at connect time would
        # all land on it, and wrk keeps its connections for the whole run.
        while listening_sockets(port) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        if listening_sockets(port) < workers:
            log(f"warning: {name}: fewer than {workers} sockets listen on port {port}")
        yield Server(name, process, port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Workers that outlived their parent; the group is ours (start_new_session).
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def ranker_has_workers() -> bool:
    """Whether this ranker's ``serve`` takes ``--workers`` (the lead is adding it)."""
    result = subprocess.run([RANKER, "serve", "--help"], capture_output=True, text=True, check=True)
    return "--workers" in result.stdout


@contextmanager
def ranker_server(
    redis_url: str,
    prefix: str,
    workers: int | None = None,
    settings: Mapping[str, str] | None = None,
    name: str = "ranker",
) -> Iterator[Server]:
    """``ranker serve`` on a free port under its own key prefix, with any further ``RANKER_*``
    ``settings``. ``workers=None`` passes no ``--workers`` flag, so this also runs a ranker that
    does not have one."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKER_")}
    env.update(
        RANKER_REDIS_URL=redis_url,
        RANKER_KEY_PREFIX=prefix,
        RANKER_HOST="127.0.0.1",
        RANKER_PORT=str(port),
    )
    env.update(settings or {})
    argv = [RANKER, "serve"] + ([] if workers is None else ["--workers", str(workers)])
    name = name if workers is None else f"{name} --workers {workers}"
    with run_server(
        name, argv, env=env, port=port, workers=workers or 1, ready_path="/readyz"
    ) as s:
        yield s


@contextmanager
def python_server(
    name: str, module: str, *args: str, workers: int = 1, ready_path: str = "/"
) -> Iterator[Server]:
    """One of our own baselines (``benchmarks.bare``, ``benchmarks.naive``) on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", module, "--port", str(port), "--workers", str(workers), *args]
    env = dict(os.environ)
    with run_server(name, argv, env=env, port=port, workers=workers, ready_path=ready_path) as s:
        yield s


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors plus non-2xx/3xx answers: a run with errors is not comparable


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(output: str) -> WrkResult:
    """The numbers we report from ``wrk --latency`` output."""

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {percent}% latency in wrk output:\n{output}")
        return float(match[1]) * _UNITS_MS[match[2]]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    requests = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if rps is None or requests is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = sum(map(int, sockets.groups())) if sockets else 0
    errors += int(non2xx[1]) if non2xx else 0
    return WrkResult(float(rps[1]), latency("50"), latency("99"), int(requests[1]), errors)


PIPELINE_SCRIPT = Path(__file__).with_name("pipeline.lua")


def wrk_argv(url: str, connections: int, duration: int, pipeline: int = 0) -> list[str]:
    """wrk's command line; ``pipeline`` > 0 writes that many requests at a time per connection."""
    # wrk takes whole seconds only.
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if pipeline:
        return [*argv, "-s", str(PIPELINE_SCRIPT), url, "--", str(pipeline)]
    return [*argv, url]


def run_wrk(url: str, connections: int, duration: int, warmup: int, pipeline: int = 0) -> WrkResult:
    """A warm-up (discarded: fills caches, settles the pools), then the measured run."""
    for seconds in (warmup, duration) if warmup > 0 else (duration,):
        argv = wrk_argv(url, connections, seconds, pipeline)
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


class Zipf:
    """Views of ``articles`` articles, Zipf-distributed, spread over every default section."""

    def __init__(
        self, seed: int, articles: int = 5000, exponent: float = 1.1, visitors: int = 0
    ) -> None:
        self.rng = random.Random(seed)
        # With visitors, every view carries a visitor_id drawn from that many readers.
        self.visitors = visitors
        self.ids = [f"bench-story-{i:05d}" for i in range(articles)]
        self.sections = [DEFAULT_SECTIONS[i % len(DEFAULT_SECTIONS)] for i in range(articles)]
        # Cumulative weights once, so each draw is a bisect rather than a pass over 5,000.
        self.cum = list(accumulate(1 / (rank + 1) ** exponent for rank in range(articles)))
        self.population = range(articles)
        # What a CMS would send: a headline-sized title and an absolute URL.
        self.metadata = [
            {
                "title": f"Story {i}: a headline about as long as most",
                "url": f"https://news.example/{id_}",
            }
            for i, id_ in enumerate(self.ids)
        ]

    def batch(self, size: int | None = None, metadata: bool = False) -> bytes:
        """One encoded batch of 500-1,000 views (or ``size``), stamped now: never ahead."""
        picks = self.rng.choices(
            self.population, cum_weights=self.cum, k=size or self.rng.randint(500, 1000)
        )
        now = time.time()
        return orjson.dumps(
            [
                {"article_id": self.ids[i], "section": self.sections[i], "ts": now}
                | (self.metadata[i] if metadata else {})
                | (
                    {"visitor_id": f"v-{self.rng.randrange(self.visitors)}"}
                    if self.visitors
                    else {}
                )
                for i in picks
            ]
        )

    def pool(self, count: int) -> list[bytes]:
        return [self.batch() for _ in range(count)]


def seed_views(base: str, batches: int = 8) -> None:
    """A few thousand views with titles and urls, so every Top 10 is full."""
    zipf = Zipf(seed=12345)
    for _ in range(batches):
        request = urllib.request.Request(
            f"{base}/v1/events",
            data=zipf.batch(metadata=True),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


def delete_keys(redis_url: str, prefix: str) -> int:
    """Delete every key under ``prefix:`` (never FLUSHDB: the Redis is shared)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


def redis_info(redis_url: str) -> dict[str, object]:
    client = redis.Redis.from_url(redis_url)
    try:
        info: dict[str, object] = client.info()
        return info
    finally:
        client.close()


def redis_cpu_seconds(redis_url: str) -> float:
    """Redis's own CPU time (INFO cpu): all of it, other users of a shared Redis included."""
    info = redis_info(redis_url)
    return float(str(info["used_cpu_user"])) + float(str(info["used_cpu_sys"]))


def unique_prefix(name: str) -> str:
    return f"bench-{name}-{os.getpid()}-{int(time.time())}"


@dataclass(frozen=True)
class PrivateRedis:
    """A Redis of a benchmark's own, thrown away after it: one node, or a local cluster.
    ``url`` is what ``RANKER_REDIS_URL`` takes (every node, comma-separated, for a cluster)."""

    name: str
    url: str
    masters: tuple[str, ...]  # the URL of each master: one per shard
    cluster: bool

    @property
    def settings(self) -> dict[str, str]:
        """The ``RANKER_*`` settings a ranker on it needs besides its URL."""
        return {"RANKER_REDIS_CLUSTER": "true"} if self.cluster else {}

    def cpu_seconds(self) -> list[float]:
        """Each master's CPU time so far (INFO cpu), in the order of ``masters``."""
        return [redis_cpu_seconds(url) for url in self.masters]


@contextmanager
def private_redis(cluster: bool, masters: int = 3) -> Iterator[PrivateRedis]:
    """A private ``redis-server`` without persistence, or a cluster of ``masters`` masters with a
    replica each (``LocalCluster``) of the same binary and settings, so the two compare."""
    binary = find_server_binary(shutil.which("redis-server"))
    with tempfile.TemporaryDirectory(prefix="ranker-bench-") as data:
        if cluster:
            nodes = _started_cluster(Path(data), masters, binary)
            try:
                found = tuple(url for url in nodes.urls if redis_info(url)["role"] == "master")
                yield PrivateRedis(f"{masters}-master cluster", ",".join(nodes.urls), found, True)
            finally:
                nodes.stop()
            return
        node = EmbeddedRedis(Path(data), binary=binary, persist=False)
        node.start()
        try:
            yield PrivateRedis("1 node", node.url, (node.url,), cluster=False)
        finally:
            node.stop()


def _started_cluster(data: Path, masters: int, binary: str) -> LocalCluster:
    # LocalCluster picks each node's port before the node binds it: on a busy machine another
    # process can take one in between, and that node fails to start. Pick again.
    for attempt in range(3):
        nodes = LocalCluster(data / str(attempt), masters=masters, binary=binary)
        try:
            nodes.start()
        except EmbeddedServerError as exc:
            log(f"the cluster did not start ({str(exc)[:200]}); again")
        else:
            return nodes
    raise EmbeddedServerError("the cluster did not start in 3 tries")
