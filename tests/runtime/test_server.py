"""The server ranker serves with: a deadline for headers, a cap on connections, the open-files
limit, and malformed requests answered without echoing them. Real sockets, a real server."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from redis.asyncio import Redis

from ranker.app import create_app
from ranker.config import Settings
from ranker.runtime.embedded import free_port
from ranker.runtime.server import (
    RESERVED_FILES,
    Server,
    connection_cap,
    start,
)
from tests.conftest import FakeClock

GIVE_UP_S = 30.0
"""How long a test waits for what must happen before it fails (no timing is asserted)."""


class Served:
    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self.runner = runner
        self.port = port

    @property
    def open_connections(self) -> int:
        server = self.runner.server
        assert isinstance(server, Server)
        return server.open_connections

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@pytest.fixture
async def serve(
    make_settings: Callable[..., Settings], clock: FakeClock, redis: Redis
) -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def serve(**overrides: Any) -> Served:
        settings = make_settings(**overrides)
        port = free_port()
        runner = await start(
            create_app(settings, clock=clock), settings, host="127.0.0.1", port=port
        )
        runners.append(runner)
        return Served(runner, port)

    yield serve
    for runner in runners:
        await runner.cleanup()


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length: its status and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP_S)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


async def get(served: Served, path: str = "/healthz") -> int:
    reader, writer = await served.connect()
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: ranker\r\n\r\n".encode())
        return (await answer(reader))[0]
    finally:
        writer.close()


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server has closed the connection (it has sent nothing else)."""
    try:
        return await asyncio.wait_for(reader.read(1), 0.05) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def test_a_request_whose_headers_trickle_in_is_closed_at_the_header_deadline(
    serve: Callable[..., Any],
) -> None:
    served = await serve(header_timeout_s=0.5)
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
    loop = asyncio.get_running_loop()
    give_up = loop.time() + GIVE_UP_S
    # A byte every 0.1 s: never idle for long, so only a deadline on the whole header ends it.
    while not await closed(reader):
        assert loop.time() < give_up, "the slow request was never closed"
        writer.write(b"a")
        await asyncio.sleep(0.05)
    writer.close()
    assert await get(served) == 200


async def test_an_idle_keep_alive_connection_and_a_slow_body_are_not_cut_by_the_deadline(
    serve: Callable[..., Any],
) -> None:
    served = await serve(header_timeout_s=0.2)
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: ranker\r\n\r\n")
    assert (await answer(reader))[0] == 200
    await asyncio.sleep(1.0)  # idle between requests for five header deadlines
    body = orjson.dumps([{"article_id": "slow-body", "section": "sports"}])
    writer.write(
        b"POST /v1/events HTTP/1.1\r\nHost: ranker\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    for byte in range(len(body)):  # the body trickles in over five deadlines
        writer.write(body[byte : byte + 1])
        await asyncio.sleep(1.0 / len(body))
    status, answered = await answer(reader)
    assert (status, orjson.loads(answered)) == (200, {"accepted": 1, "rejected": []})
    writer.close()


async def test_past_the_connection_cap_the_longest_waiting_are_closed_and_reads_answer(
    serve: Callable[..., Any],
) -> None:
    served = await serve(max_connections=16, header_timeout_s=600)

    async def slow() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await served.connect()
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        await writer.drain()
        return reader, writer

    first = [await slow() for _ in range(8)]
    # At once, so the server accepts many in one turn of its loop: each must close another.
    crowd = await asyncio.gather(*(slow() for _ in range(24)))
    loop = asyncio.get_running_loop()
    give_up = loop.time() + GIVE_UP_S
    while served.open_connections > 16:
        assert loop.time() < give_up, f"{served.open_connections} connections stay open"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert served.open_connections == 16
    # The first ones, which had waited longest, made room for the later ones.
    assert [await closed(reader) for reader, _ in first] == [True] * 8
    still_open = [not await closed(reader) for reader, _ in crowd]
    assert sum(still_open) == 16
    # A new client is answered: the cap is full of waiting connections, not of requests.
    assert await get(served, "/v1/rankings/all") == 200
    assert served.open_connections <= 16
    for _, writer in first + crowd:
        writer.close()


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer secret-token-0123456789\x01tail",
        b"X-Bad\x00Name: secret-token-0123456789",
        b"X-Long: secret-token-0123456789" + b"x" * 9000,
    ],
    ids=["control-character", "bad-name", "too-long"],
)
async def test_a_malformed_request_is_a_json_400_that_quotes_none_of_it(
    serve: Callable[..., Any], header: bytes
) -> None:
    served = await serve()
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: ranker\r\n" + header + b"\r\n\r\n")
    status, body = await answer(reader)
    writer.close()
    assert status == 400
    assert b"secret-token" not in body
    assert orjson.loads(body)["error"]["code"] == "bad_request"


def test_the_connection_cap_leaves_room_for_the_other_files(
    open_files_limit: tuple[int, int],
) -> None:
    settings = Settings(max_connections=10_000, redis_max_connections=32)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, open_files_limit[1]))
    assert connection_cap(settings) == 1024 - RESERVED_FILES - 33
    assert connection_cap(Settings(max_connections=100)) == 100


async def test_a_broken_compressed_body_is_a_400_and_no_error_in_the_logs(
    serve: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve()
    reader, writer = await served.connect()
    body = b"\x1f\x8b" + b"\x00" * 40  # gzip's magic, then no known compression method
    writer.write(
        b"POST /v1/events HTTP/1.1\r\nHost: ranker\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    status, answered = await answer(reader)
    assert (status, orjson.loads(answered)["error"]["code"]) == (400, "bad_request")
    await closed(reader)  # the rest of the body has been dropped by now
    writer.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
