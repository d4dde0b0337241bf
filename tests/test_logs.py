"""Structured logs: one JSON object per line, request ids, the opt-in access log."""

from __future__ import annotations

import io
import logging
import re
import signal
import socket
import string
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from ranker.api.appkeys import CLOCK, STORE
from ranker.logs import REQUEST_ID_HEADER, JsonFormatter, request_id
from ranker.runtime.embedded import free_port
from tests.conftest import Client
from tests.runtime.test_workers import listening_pids, wait_until
from tests.test_cli import RANKER, clean_env, serving

EDITORIAL_FIELDS = ("action", "actor", "editor", "article_id", "ranking", "slot", "until", "reason")


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Everything logged under ``ranker`` while the test runs, as parsed JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ranker")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_a_record_is_one_line_of_json_with_its_extras(
    json_lines: Callable[[], list[dict[str, object]]],
) -> None:
    log = logging.getLogger("ranker.test")
    log.info("flushed %d views", 3, extra={"views": 3})
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("it failed")
    first, second = json_lines()
    assert first["message"] == "flushed 3 views"
    assert first["views"] == 3
    assert first["level"] == "INFO"
    assert first["logger"] == "ranker.test"
    assert isinstance(first["time"], str)
    assert "request_id" not in first
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in str(second["exception"])


async def test_logs_and_errors_carry_the_request_id(
    client: Client, redis: Redis, json_lines: Callable[[], list[dict[str, object]]]
) -> None:
    # An article key that is no hash: reading it fails in Redis, is logged, answers 500.
    for article_id in ("a", "b"):
        await redis.set(client.app[STORE].keys.article(article_id), "not a hash")
    sent = await client.get("/v1/articles/a", headers={"X-Request-ID": "edge-42"})
    assert sent.status == 500
    assert sent.headers["X-Request-ID"] == "edge-42"
    made = await client.get("/v1/articles/b", headers={"X-Request-ID": "bad id\u00e9"})
    assert made.status == 500
    made_id = made.headers["X-Request-ID"]
    assert made_id != "bad id\u00e9"
    assert len(made_id) == 32
    ids = {line.get("request_id") for line in json_lines() if line["level"] == "ERROR"}
    assert {"edge-42", made_id} <= ids
    ok = await client.get("/healthz")
    assert "X-Request-ID" not in ok.headers  # successful answers stay lean


SANE_ID_CHARS = string.ascii_letters + string.digits + "._:/+=-"


@given(
    sent=st.text(SANE_ID_CHARS, max_size=140)
    | st.text(st.characters(codec="utf-8"), max_size=20)
    | st.sampled_from(["a\r\nSet-Cookie: x=1", "a b", "%0d%0a", "x" * 128, "x" * 129])
)
def test_a_sane_request_id_is_kept_and_any_other_replaced(sent: str) -> None:
    # The id is echoed in a response header and written to every log line of the request.
    request = make_mocked_request("GET", "/", headers={REQUEST_ID_HEADER: sent})
    kept = request_id(request)
    sane = 0 < len(sent) <= 128 and set(sent) <= set(SANE_ID_CHARS)
    assert (kept == sent) == sane
    if not sane:
        assert re.fullmatch("[0-9a-f]{32}", kept)
    assert request_id(request) == kept  # made once per request


@pytest.mark.parametrize("access_log", [False, True], ids=["default", "access-log-on"])
def test_the_access_log_is_off_unless_switched_on(
    redis_url: str, key_prefix: str, access_log: bool
) -> None:
    port = free_port()
    env = clean_env(
        RANKER_REDIS_URL=redis_url,
        RANKER_KEY_PREFIX=key_prefix,
        RANKER_PORT=str(port),
        RANKER_ACCESS_LOG="true" if access_log else "false",
    )
    process = subprocess.Popen(
        [RANKER, "serve"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        wait_until(lambda: bool(listening_pids(port)), "ranker listening")
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10):
                pass
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    lines = [orjson.loads(line) for line in stderr.splitlines()]
    access = [line for line in lines if line["logger"] == "ranker.access"]
    if access_log:
        assert [(line["path"], line["status"]) for line in access] == [
            ("/healthz", 200),
            ("/healthz", 200),
            ("/healthz", 200),
            ("/nope", 404),
        ]
        assert all(isinstance(line["duration_ms"], float) for line in access)
    else:
        assert access == []
    assert any(line["message"] == "stopped" for line in lines)


def test_a_malformed_request_is_one_warning_that_does_not_quote_it(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    secret = "secret-token-0123456789"
    output: list[str] = []
    with serving(
        tmp_path, output, RANKER_REDIS_URL=redis_url, RANKER_KEY_PREFIX=key_prefix
    ) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            # A control character in a header value: aiohttp refuses the request as malformed.
            conn.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {secret}\x01\r\n\r\n".encode()
            )
            assert conn.recv(4096).split(b" ")[1] == b"400"
    (written,) = output
    assert secret not in written
    lines = [orjson.loads(line) for line in written.splitlines() if line.startswith("{")]
    refused = [line for line in lines if "malformed HTTP request" in str(line["message"])]
    assert [line["level"] for line in refused] == ["WARNING"]
    assert "exception" not in refused[0]


async def test_an_editorial_change_is_logged_as_fields_a_log_store_can_filter(
    client: Client, json_lines: Callable[[], list[dict[str, object]]]
) -> None:
    until = client.app[CLOCK]() + 3600
    body = {"until": until, "editor": "kim", "reason": "legal hold"}
    # One can hide and pin only what ranker knows.
    events = [{"article_id": f"story-{n}", "section": "sports"} for n in (1, 2)]
    assert (await client.post("/v1/events", json=events)).status == 200
    assert (await client.put("/v1/editorial/hides/story-1", json=body)).status == 200
    pin = {"article_id": "story-2", "editor": "kim"}
    assert (await client.put("/v1/editorial/pins/sports/2", json=pin)).status == 200
    hide, pinned = [line for line in json_lines() if line["logger"] == "ranker.editorial"]
    assert {name: hide[name] for name in EDITORIAL_FIELDS} == {
        "action": "hide",
        "actor": "local",
        "editor": "kim",
        "article_id": "story-1",
        "ranking": None,
        "slot": None,
        "until": until,
        "reason": "legal hold",
    }
    assert {name: pinned[name] for name in EDITORIAL_FIELDS} == {
        "action": "pin",
        "actor": "local",
        "editor": "kim",
        "article_id": "story-2",
        "ranking": "sports",
        "slot": 2,
        "until": None,
        "reason": None,
    }
    # The message is for a person; no dict is left in it to parse.
    assert "{" not in str(hide["message"])
    assert "story-1" in str(hide["message"])
