"""The request boundary: what the HTTP layer refuses before a handler runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from redis.asyncio import Redis

from ranker.api.appkeys import ADMISSION, METRICS
from ranker.app import create_app
from ranker.config import Settings
from ranker.runtime.embedded import free_port
from ranker.runtime.server import start
from tests.conftest import Client, FakeClock
from tests.support.http import assert_error


class Served:
    """An app served as ``ranker serve`` serves it (the test client's server cancels a
    handler whose client left, which ranker's does not), on a port of its own."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.app = app
        self.port = port


@pytest.fixture
async def served(settings: Settings, clock: FakeClock, redis: Redis) -> AsyncIterator[Served]:
    app = create_app(settings, clock=clock)
    port = free_port()
    runner = await start(app, settings, host="127.0.0.1", port=port)
    try:
        yield Served(app, port)
    finally:
        await runner.cleanup()


async def test_an_ignored_query_parameter_is_answered(client: Client) -> None:
    response = await client.get("/v1/rankings/all", params={"pad": "x" * 100})
    assert response.status == 200


async def test_a_request_line_past_8190_bytes_is_refused(client: Client) -> None:
    response = await client.get("/v1/rankings/all", params={"pad": "x" * 9000})
    assert response.status == 400


async def test_more_than_128_headers_are_refused(client: Client) -> None:
    headers = {f"X-Filler-{n}": "x" for n in range(200)}
    response = await client.get("/v1/rankings/all", headers=headers)
    assert response.status == 400


async def test_a_header_past_8190_bytes_is_refused(client: Client) -> None:
    response = await client.get("/v1/rankings/all", headers={"X-Big": "x" * 9000})
    assert response.status == 400


def metric_samples(app: web.Application, status: str) -> float:
    """The count of POST /v1/events requests recorded with ``status``."""
    registry = app[METRICS].registry
    value = registry.get_sample_value(
        "ranker_http_request_duration_seconds_count",
        {"route": "/v1/events", "method": "POST", "status": status},
    )
    return value or 0.0


async def test_a_client_that_disconnects_mid_upload_is_a_499_logged_at_info(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ranker")
    _, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n[{"article'
    )
    await writer.drain()
    # Closed once the handler reads the body (the request is in progress by then).
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 20
    while served.app[ADMISSION].pending_bytes == 0:
        assert loop.time() < give_up, "the upload never started"
        await asyncio.sleep(0.01)
    writer.close()
    while not (metric_samples(served.app, "499") or metric_samples(served.app, "500")):
        assert loop.time() < give_up, "the abort was never recorded"
        await asyncio.sleep(0.01)
    assert metric_samples(served.app, "500") == 0
    assert metric_samples(served.app, "499") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("client closed the connection" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/nope", 404, "not_found", id="unknown-route"),
        pytest.param("GET", "/v1/rankings/", 404, "not_found", id="rankings-no-section"),
        pytest.param("POST", "/v1/rankings", 405, "method_not_allowed", id="post-rankings"),
        pytest.param("GET", "/v1/events", 405, "method_not_allowed", id="get-events"),
        pytest.param("DELETE", "/v1/articles/a-1", 405, "method_not_allowed", id="delete-article"),
        pytest.param("POST", "/v1/rankings/all", 405, "method_not_allowed", id="post-ranking"),
    ],
)
async def test_routing_errors_are_json(
    client: Client, method: str, path: str, status: int, code: str
) -> None:
    resp = await client.request(method, path)
    await assert_error(resp, status, code)
    if status == 405:
        assert resp.headers["Allow"]
        assert method not in resp.headers["Allow"].split(", ")
