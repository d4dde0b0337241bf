"""``ranker serve --workers N``: real processes on one port, real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from ranker.runtime.embedded import free_port
from ranker.runtime.workers import MAX_START_FAILURES
from tests.test_cli import RANKER, clean_env, http_json


def listening_pids(port: int) -> set[int]:
    """The processes with a listening TCP socket on ``port`` (read from /proc, Linux)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(fields[9])
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fd_dir = Path("/proc", pid, "fd")
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except (FileNotFoundError, PermissionError):
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            pids.add(int(pid))
    return pids


def worker_pids(supervisor: int) -> set[int]:
    """The supervisor's worker processes, listening yet or not (not multiprocessing's
    resource tracker, its other child)."""
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path("/proc", pid, "stat").read_text()
            cmdline = Path("/proc", pid, "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == supervisor and b"spawn_main" in cmdline:
            pids.add(int(pid))
    return pids


def wait_until(check: Callable[[], bool], what: str, deadline_s: float = 30.0) -> None:
    """Wait for something the processes do in their own time; never a bound on that time."""
    give_up = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > give_up:
            pytest.fail(f"{what} never happened")
        time.sleep(0.05)


@contextmanager
def serving_workers(
    redis_url: str, key_prefix: str, workers: int, **env: str
) -> Iterator[tuple[str, int, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [RANKER, "serve", "--port", str(port), "--workers", str(workers)],
        env=clean_env(RANKER_REDIS_URL=redis_url, RANKER_KEY_PREFIX=key_prefix, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        return len(listening_pids(port)) == workers

    try:
        wait_until(ready, f"{workers} workers listening")
        yield base, port, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=90)


def ranked(base: str, section: str) -> list[str]:
    body = http_json(f"{base}/v1/rankings/{section}")
    assert isinstance(body, dict)
    return [item["article_id"] for item in body["items"]]


def test_workers_share_the_port_and_stop_cleanly_counting_every_view(
    redis_url: str, key_prefix: str, redis: Redis
) -> None:
    with serving_workers(redis_url, key_prefix, 2) as (base, port, process):
        pids = listening_pids(port)
        assert process.pid not in pids  # the supervisor serves nothing itself
        for n in range(40):
            event = orjson.dumps({"article_id": f"a{n % 4}", "section": "sports"})
            assert http_json(f"{base}/v1/events", event) == {"accepted": 1, "rejected": []}
        # Whichever worker answers, it reads the same Redis within a refresh interval.
        wait_until(lambda: sorted(ranked(base, "sports")) == ["a0", "a1", "a2", "a3"], "lists")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=90)
        assert process.returncode == 0, output
        assert "worker" in output
    assert not listening_pids(port)
    assert all(not Path("/proc", str(pid)).exists() for pid in pids)


def test_a_worker_that_dies_is_replaced(redis_url: str, key_prefix: str, redis: Redis) -> None:
    with serving_workers(redis_url, key_prefix, 2) as (base, port, process):
        victim = min(listening_pids(port))
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: len(listening_pids(port)) == 2 and victim not in listening_pids(port),
            "a replacement worker",
        )
        assert ranked(base, "world") == []
        assert process.poll() is None


def test_workers_killed_while_serving_are_replaced_however_often(
    redis_url: str, key_prefix: str, redis: Redis
) -> None:
    # An OOM kill, say, again and again: each worker had served, none is failing at start-up.
    with serving_workers(redis_url, key_prefix, 2) as (base, port, process):
        for _ in range(MAX_START_FAILURES + 2):
            victim = min(listening_pids(port))
            os.kill(victim, signal.SIGKILL)

            def replaced(victim: int = victim) -> bool:
                listening = listening_pids(port)
                return len(listening) == 2 and victim not in listening

            wait_until(replaced, "a replacement worker")
            assert ranked(base, "world") == []
            assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=90)
        assert process.returncode == 0, output
        assert output.count("while serving") == MAX_START_FAILURES + 2


def test_workers_that_keep_failing_at_start_up_stop_the_service(
    redis_url: str, key_prefix: str, redis: Redis
) -> None:
    with serving_workers(redis_url, key_prefix, 2) as (_, port, process):
        # Both serving workers go once; then every worker dies before it listens.
        for pid in listening_pids(port):
            os.kill(pid, signal.SIGKILL)
        give_up = time.monotonic() + 120
        while process.poll() is None:
            if time.monotonic() > give_up:
                pytest.fail("the supervisor never gave up on workers failing at start-up")
            for pid in worker_pids(process.pid) - listening_pids(port):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        output, _ = process.communicate(timeout=90)
        assert process.returncode == 1, output
        assert "workers keep failing at start-up; stopping" in output
        assert output.count("before it served") == MAX_START_FAILURES
    assert not listening_pids(port)


def test_a_port_in_use_is_refused_at_once(redis_url: str, key_prefix: str, redis: Redis) -> None:
    with serving_workers(redis_url, key_prefix, 2) as (_, port, _process):
        result = subprocess.run(
            [RANKER, "serve", "--port", str(port), "--workers", "2"],
            env=clean_env(RANKER_REDIS_URL=redis_url, RANKER_KEY_PREFIX=key_prefix),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert "Address already in use" in result.stderr
        # The running service was not joined by the second one's workers.
        assert len(listening_pids(port)) == 2


def test_workers_are_checked_like_every_setting() -> None:
    result = subprocess.run(
        [RANKER, "serve", "--port", str(free_port()), "--workers", "0"],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 2
    assert "RANKER_WORKERS" in result.stderr


def test_any_workers_metrics_count_every_workers_events(
    redis_url: str, key_prefix: str, redis: Redis
) -> None:
    with serving_workers(redis_url, key_prefix, 2) as (base, _port, _process):
        for n in range(30):
            # A new connection each time, so the kernel spreads them over both workers.
            event = orjson.dumps({"article_id": f"a{n}", "section": "video"})
            assert http_json(f"{base}/v1/events", event) == {"accepted": 1, "rejected": []}

        def every_scrape_counts_all() -> bool:
            for _ in range(6):
                with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
                    text = response.read().decode()
                counted = [
                    s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                    if s.name == "ranker_events_accepted_total" and s.labels == {"section": "video"}
                ]
                if counted != [30.0]:
                    return False
            return True

        wait_until(every_scrape_counts_all, "every scrape counting all 30 events")


def test_a_second_signal_waits_for_the_workers_and_still_cleans_up(
    redis_url: str, key_prefix: str, redis: Redis, tmp_path: Path
) -> None:
    with serving_workers(redis_url, key_prefix, 2, TMPDIR=str(tmp_path)) as (_, port, process):
        assert len(list(tmp_path.glob("ranker-metrics-*"))) == 1
        slow = min(listening_pids(port))
        os.kill(slow, signal.SIGSTOP)  # a worker that cannot finish yet
        try:
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)  # an impatient operator
            time.sleep(0.5)
            assert process.poll() is None  # still waiting for the stopped worker
        finally:
            os.kill(slow, signal.SIGCONT)
        output, _ = process.communicate(timeout=90)
        assert process.returncode == 0, output
        assert "already stopping" in output
    assert list(tmp_path.glob("ranker-metrics-*")) == []
