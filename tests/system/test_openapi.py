"""The OpenAPI document: valid, complete, served, and true to what a live service answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from redis.asyncio import Redis

from ranker import __version__
from ranker.api.routes import ROUTES
from tests.conftest import Client
from tests.test_cli import serving

HERE = Path(__file__).resolve().parent
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    # Methods the spec does not list answer 405 with an Allow header.
    "unsupported_method",
)
MAX_EXAMPLES = 25
"""Per operation and phase: a run of seconds. Runs of 1000 (minutes each) found nothing more."""


def document() -> dict[str, Any]:
    spec: dict[str, Any] = orjson.loads(files("ranker.api").joinpath("openapi.json").read_bytes())
    return spec


def test_the_document_is_valid_openapi_3_1() -> None:
    spec = document()
    assert spec["openapi"].startswith("3.1.")
    # Raises, naming the place, where the document breaks the OpenAPI 3.1 schema.
    schemathesis.openapi.from_dict(spec).validate()


def test_every_pattern_in_the_document_is_a_regular_expression() -> None:
    patterns: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                patterns.append(pattern)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document())
    assert patterns
    for pattern in patterns:
        re.compile(pattern)


def test_the_document_describes_every_route_and_no_other() -> None:
    served = {(route.method, route.path) for route in ROUTES}
    served |= {("HEAD", path) for method, path in served if method == "GET"}
    documented = {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert documented == served


def test_the_document_names_the_package_version() -> None:
    assert document()["info"]["version"] == __version__


async def test_the_document_is_served_as_shipped(client: Client) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.read() == files("ranker.api").joinpath("openapi.json").read_bytes()


TOKEN = "schemathesis-token-0123456789"


@pytest.mark.parametrize(
    ("tokens", "headers"),
    [
        pytest.param({}, [], id="no-tokens-loopback-writes"),
        pytest.param(
            {"RANKER_WRITE_TOKENS": TOKEN, "RANKER_EDITOR_TOKENS": f"schemathesis:{TOKEN}"},
            ["-H", f"Authorization: Bearer {TOKEN}"],
            id="token-sent",
        ),
        pytest.param(
            {"RANKER_WRITE_TOKENS": TOKEN, "RANKER_EDITOR_TOKENS": f"schemathesis:{TOKEN}"},
            [],
            id="writes-unauthorized",
        ),
    ],
)
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_spec(
    redis_url: str,
    key_prefix: str,
    redis: Redis,
    tmp_path: Path,
    tokens: dict[str, str],
    headers: list[str],
) -> None:
    """A live ``ranker serve`` (its keys under the test's prefix, deleted by the ``redis``
    fixture) tested by schemathesis from the document it serves, deterministically: writable
    from loopback, with a token, and refusing writes (401) for want of one."""
    env = {"RANKER_REDIS_URL": redis_url, "RANKER_KEY_PREFIX": key_prefix, **tokens}
    with serving(tmp_path / "data", None, **env) as base:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "--no-color",
                "run",
                f"{base}/openapi.json",
                "--checks",
                ",".join(CHECKS),
                "--max-examples",
                str(MAX_EXAMPLES),
                "--generation-deterministic",
                # One thread: hypothesis parses source with ast, which CPython 3.11.7 breaks
                # when two threads do it at once (python/cpython#106905).
                "--workers",
                "1",
                "--request-timeout",
                "10",
                *headers,
            ],
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": str(HERE.parent / "support" / "openapi_hooks.py"),
            },
            # Anything schemathesis writes stays out of the checkout.
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
    # The summary, the failures and how to reproduce each; all of it when it failed early.
    report = run.stdout[run.stdout.find("=====") :] + run.stderr
    assert run.returncode == 0, report
