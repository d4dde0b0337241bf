"""The ``ranker`` command, run as a user runs it: a real process, a real port, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
import redis

from ranker.runtime.cluster import LocalCluster
from ranker.runtime.embedded import EmbeddedRedis, free_port

RANKER = str(Path(sys.executable).with_name("ranker"))


def run_ranker(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    # A test never serves on the default port: something (the README's own `ranker serve`)
    # may hold it, and what the test checks would be lost behind "Address already in use".
    assert args[:1] != ("serve",) or "--port" in args or "--help" in args, args
    return subprocess.run(
        [RANKER, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKER_")}
    env.update(extra)
    return env


def http_json(url: str, data: bytes | None = None) -> object:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


@contextmanager
def serving(data_dir: Path, output: list[str] | None = None, **env: str) -> Iterator[str]:
    """``ranker serve`` on the embedded default in ``data_dir``; yields its base URL.

    ``output``, when given, gets what the process wrote (stdout and stderr) once it stopped.
    """
    port = free_port()
    process = subprocess.Popen(
        [RANKER, "serve", "--port", str(port)],
        env=clean_env(RANKER_DATA_DIR=str(data_dir), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                pytest.fail(
                    f"ranker serve exited early: {process.stdout.read() if process.stdout else ''}"
                )
            try:
                http_json(f"{base}/readyz")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            pytest.fail("ranker serve never became ready")
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        written, _ = process.communicate(timeout=60)
    assert process.returncode == 0, written
    if output is not None:
        output.append(written)


def test_help_describes_the_command_and_its_settings() -> None:
    top = run_ranker("--help")
    assert top.returncode == 0
    assert "serve" in top.stdout
    serve = run_ranker("serve", "--help")
    assert serve.returncode == 0
    assert "RANKER_REDIS_URL" in serve.stdout
    assert "--port" in serve.stdout


def test_plain_ranker_prints_its_help_and_every_command() -> None:
    plain = run_ranker()
    assert plain.returncode == 0
    assert plain.stdout == run_ranker("--help").stdout
    for command in ("serve", "simulate", "replay", "top"):
        assert command in plain.stdout


def test_a_redis_cluster_node_is_refused_at_start_up(local_cluster: LocalCluster) -> None:
    result = run_ranker(
        "serve",
        "--port",
        str(free_port()),
        env=clean_env(RANKER_REDIS_URL=local_cluster.urls[0]),
    )
    assert result.returncode == 2
    assert "RANKER_REDIS_URL" in result.stderr
    assert "Redis Cluster node" in result.stderr
    assert "set RANKER_REDIS_CLUSTER=true" in result.stderr


def test_a_bad_setting_stops_start_up_naming_the_variable() -> None:
    result = run_ranker(
        "serve", "--port", str(free_port()), env=clean_env(RANKER_HALF_LIFE_S="soon")
    )
    assert result.returncode == 2
    assert "RANKER_HALF_LIFE_S" in result.stderr


def test_serve_on_the_embedded_default_keeps_counts_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    event = orjson.dumps([{"article_id": "a-1", "section": "sports", "weight": 3}])
    with serving(data_dir) as base:
        assert http_json(f"{base}/v1/events", event) == {"accepted": 1, "rejected": []}
    # SIGTERM stopped ranker and its server; the data outlives both.
    with serving(data_dir) as base:
        body = http_json(f"{base}/v1/rankings/sports")
        assert isinstance(body, dict)
        assert [item["article_id"] for item in body["items"]] == ["a-1"]
        assert 0 < body["items"][0]["score"] <= 3


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_already_taken_stops_start_up_at_once(workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_ranker(
            "serve", "--port", str(port), "--workers", workers,
            env=clean_env(RANKER_REDIS_URL="redis://127.0.0.1:1/0"),
        )  # fmt: skip
    assert result.returncode == 1
    assert "RANKER_PORT" in result.stderr
    assert "Address already in use" in result.stderr


def test_an_address_that_does_not_resolve_is_a_clear_error() -> None:
    result = run_ranker(
        "serve", "--port", str(free_port()),
        env=clean_env(RANKER_HOST="no-such-host.invalid", RANKER_REDIS_URL="redis://x:1/0"),
    )  # fmt: skip
    assert result.returncode == 1
    assert "RANKER_HOST" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_data_dir_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_ranker(
        "serve", "--port", str(free_port()), env=clean_env(RANKER_DATA_DIR=str(blocker / "data"))
    )
    assert result.returncode == 1
    assert "RANKER_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def serve_until_it_stops(url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``ranker serve`` with Redis at ``url`` (None: the embedded default); a start-up that
    does not stop soon is a failure."""
    if url is not None:
        env["RANKER_REDIS_URL"] = url
    try:
        return run_ranker("serve", "--port", str(free_port()), env=clean_env(**env), timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ranker serve with {env} kept running")


def test_a_second_serve_in_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    event = orjson.dumps([{"article_id": "a-1", "section": "sports"}])
    with serving(data_dir) as base:
        second = serve_until_it_stops(RANKER_DATA_DIR=str(data_dir))
        assert second.returncode == 1, second.stderr
        assert "RANKER_DATA_DIR" in second.stderr
        assert "in use by another ranker serve" in second.stderr
        assert "Traceback" not in second.stderr
        # The first is untouched and still serves.
        assert http_json(f"{base}/v1/events", event) == {"accepted": 1, "rejected": []}


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:p1,h:p2/0",
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:6379/zero",
        "redis://127.0.0.1:6379/0?no_such_option=1",
    ],
)
def test_a_malformed_redis_url_is_a_configuration_error(url: str) -> None:
    result = serve_until_it_stops(url)
    assert result.returncode == 2, result.stderr
    assert "RANKER_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_redis_does_not_have_is_a_configuration_error(redis_url: str) -> None:
    # Redis has 16 databases unless configured otherwise; SELECT 99 is refused for good.
    result = serve_until_it_stops(urlsplit(redis_url)._replace(path="/99").geturl())
    assert result.returncode == 2, result.stderr
    assert "RANKER_REDIS_URL" in result.stderr
    assert "DB index is out of range" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def redis_with_a_password(tmp_path: Path) -> Iterator[int]:
    """A private Redis (this test changes its configuration) that requires a password; yields
    its port."""
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        client = redis.Redis(port=server.port)
        client.config_set("requirepass", "the-right-password-123")
        client.close()
        yield server.port


@pytest.mark.parametrize(
    "credentials",
    [pytest.param(":the-wrong-password-456@", id="wrong-password"), pytest.param("", id="none")],
)
def test_credentials_redis_refuses_are_a_configuration_error(
    redis_with_a_password: int, credentials: str
) -> None:
    result = serve_until_it_stops(f"redis://{credentials}127.0.0.1:{redis_with_a_password}/0")
    assert result.returncode == 2, result.stderr
    assert "RANKER_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "the-wrong-password" not in result.stderr


def test_cluster_mode_on_a_redis_without_it_is_refused_at_start_up(redis_url: str) -> None:
    result = serve_until_it_stops(redis_url, RANKER_REDIS_CLUSTER="true")
    assert result.returncode == 2, result.stderr
    assert "unset RANKER_REDIS_CLUSTER" in result.stderr


def test_cluster_mode_serves_from_the_nodes_that_answer(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    # The first seed is down (nothing listens there): the others give the topology.
    seeds = ",".join([f"redis://127.0.0.1:{free_port()}", *local_cluster.urls])
    prefix = f"cli-{os.getpid()}-{time.monotonic_ns()}"
    with serving(
        tmp_path, RANKER_REDIS_CLUSTER="true", RANKER_REDIS_URL=seeds, RANKER_KEY_PREFIX=prefix
    ) as base:
        views = [
            {"article_id": "a", "section": "world"},
            {"article_id": "b", "section": "entertainment"},
        ]
        answer = http_json(f"{base}/v1/events", orjson.dumps(views))
        assert answer == {"accepted": 2, "rejected": []}
        for ranking, articles in (("all", {"a", "b"}), ("world", {"a"}), ("entertainment", {"b"})):
            assert _listed(f"{base}/v1/rankings/{ranking}", len(articles)) == articles


def _listed(url: str, count: int) -> set[str]:
    """The ids in the list at ``url``, once it has ``count`` (or after 5 s)."""
    for _ in range(100):
        listed = http_json(url)
        assert isinstance(listed, dict)
        ids = {item["article_id"] for item in listed["items"]}
        if len(ids) >= count:
            break
        time.sleep(0.05)
    return ids
