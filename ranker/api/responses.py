"""JSON responses, serialized by orjson, and conditional requests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    status: int, code: str, message: str, *, retry_after: int | None = None
) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison (what ``If-None-Match`` uses) of an ``If-None-Match`` value
    against one of our ETags, weak or strong: equal once ``W/`` is taken off both."""
    if if_none_match == etag:
        return True
    opaque = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` value takes gzip (named, or ``*``, with a q above 0)."""
    if not accept_encoding:
        return False
    value = accept_encoding.lower()
    if "gzip" not in value and "*" not in value:
        return False
    accepted = None
    for entry in value.split(","):
        coding, _, params = entry.partition(";")
        coding = coding.strip()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        q = params.replace(" ", "")
        refused = q.startswith("q=") and q[2:].rstrip("0").rstrip(".") in ("0", "")
        if coding != "*":
            return not refused
        accepted = not refused
    return bool(accepted)
