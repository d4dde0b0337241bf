"""The embedded server: starts on a free port, keeps data across restarts, stops cleanly."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ranker.runtime.embedded import (
    DataDirInUse,
    EmbeddedRedis,
    EmbeddedServerError,
    find_server_binary,
)


def test_data_survives_a_restart_with_append_only_persistence(tmp_data_dir: Path) -> None:
    with EmbeddedRedis(tmp_data_dir) as server:
        client = redis.Redis.from_url(server.url)
        client.zincrby("ranking", 2.5, "a")
        client.close()
    assert any(tmp_data_dir.rglob("*.aof*")), "an append-only file is kept in the data dir"
    with EmbeddedRedis(tmp_data_dir) as server:
        client = redis.Redis.from_url(server.url)
        assert client.zscore("ranking", "a") == 2.5
        client.close()


def test_one_data_directory_serves_one_server_at_a_time(tmp_data_dir: Path) -> None:
    with EmbeddedRedis(tmp_data_dir, persist=False) as first:
        second = EmbeddedRedis(tmp_data_dir, persist=False)
        with pytest.raises(DataDirInUse, match="RANKER_DATA_DIR") as raised:
            second.start()
        assert str(os.getpid()) in str(raised.value)  # who holds it
        assert second.pid is None
        assert redis.Redis.from_url(first.url).ping()
    # Stopped, the first lets the directory go.
    with EmbeddedRedis(tmp_data_dir, persist=False) as third:
        assert redis.Redis.from_url(third.url).ping()


def test_stop_ends_the_server(tmp_data_dir: Path) -> None:
    server = EmbeddedRedis(tmp_data_dir, persist=False)
    server.start()
    url = server.url
    server.stop()
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()


def test_a_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(EmbeddedServerError, match="RANKER_REDIS_SERVER"):
        find_server_binary("/nonexistent/redis-server")


def test_a_server_that_cannot_start_reports_its_log(tmp_data_dir: Path) -> None:
    server = EmbeddedRedis(tmp_data_dir, persist=False, binary="false")  # exits at once
    with pytest.raises(EmbeddedServerError, match="exited with 1"):
        server.start()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port held by a socket that listens and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_chosen_port_taken_before_the_server_binds_is_replaced(
    tmp_data_dir: Path, busy_port: int
) -> None:
    server = EmbeddedRedis(tmp_data_dir, persist=False)
    server.port = busy_port  # as if another process took it between choosing and binding
    with server:
        assert server.port != busy_port
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()


def test_a_port_asked_for_and_taken_is_an_error(tmp_data_dir: Path, busy_port: int) -> None:
    server = EmbeddedRedis(tmp_data_dir, persist=False, port=busy_port)
    with pytest.raises(EmbeddedServerError, match="in use"):
        server.start()


def test_the_server_runs_in_a_session_of_its_own(tmp_data_dir: Path) -> None:
    # A Ctrl-C to ranker's process group must not stop the server before ranker has flushed.
    with EmbeddedRedis(tmp_data_dir, persist=False) as server:
        assert server.pid is not None
        assert os.getsid(server.pid) == server.pid
        assert os.getpgid(server.pid) != os.getpgid(0)
