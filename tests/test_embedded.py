"""The embedded server: starts on a free port, keeps data across restarts, stops cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from ranker.embedded import EmbeddedRedis, EmbeddedServerError, find_server_binary


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
