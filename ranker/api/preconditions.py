"""What handlers check before they do any work: that Redis is not known to be down, and that a
body is within its limit and its budget, read only once it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import hdrs, web

from ranker.errors import (
    BadRequest,
    InvalidArticleId,
    InvalidJson,
    PayloadTooLarge,
    StoreUnavailable,
    UnsupportedMediaType,
)
from ranker.ingest.admission import BodyHold
from ranker.validation import ARTICLE_ID_RE, ARTICLE_ID_RULE

from .appkeys import STORE

CONTENT_ENCODINGS = ("gzip", "deflate", "identity")
"""The ``Content-Encoding`` a body may be sent in; aiohttp unpacks gzip and deflate as they
arrive. Anything else is refused before a byte is read."""


def require_redis(request: web.Request, consequence: str) -> None:
    """Refuse at once while Redis is known to be down: waiting out a command timeout would
    tell the client nothing more (the background check finds Redis back within a second)."""
    if not request.app[STORE].available:
        raise StoreUnavailable(f"Redis is unavailable; {consequence}")


def check_declared_length(request: web.Request, max_bytes: int) -> None:
    """Refuse a body whose declared length is over ``max_bytes``, before a byte is read."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")


def declared_size(request: web.Request) -> int:
    """What a body first holds of its budget, before a byte of it is read: its declared length
    (sent compressed, what it declares is what it is sent as; the hold grows as it unpacks),
    else one byte, so that even a body of unknown length is refused at once while the budget
    is spent."""
    return max(1, request.content_length or 0)


async def read_body(request: web.Request, max_bytes: int, hold: BodyHold) -> bytes:
    """The request's body, unpacked, refused (``413``) when it is over ``max_bytes``.

    ``hold`` grows with what has been read, so a compressed or chunked body holds its budget
    for what it is in memory, not for what it said it would be; it raises ``Overloaded`` when
    the budget has no room for the rest.
    """
    # Refuse by the declared length before reading a byte; bodies that are chunked or
    # compressed are refused once what has been read of them passes the limit.
    check_declared_length(request, max_bytes)
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding must be gzip, deflate or identity (none), not {encoding[:40]!r}"
        )
    body = bytearray()
    stream = request.content
    try:
        while chunk := await stream.readany():
            size = len(body) + len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")
            hold.grow_to(size)
            body += chunk
    except web.RequestPayloadError:
        # Broken chunked framing, or a compressed body that does not unpack. aiohttp's message
        # is not passed on: it may quote the bytes it choked on.
        raise BadRequest(
            "the body could not be read: its chunked framing or its Content-Encoding is broken"
        ) from None
    return bytes(body)


def check_article_id(article_id: str) -> str:
    """The article id of a path, if it keeps to the rule (else 400 ``invalid_article_id``)."""
    if not ARTICLE_ID_RE.fullmatch(article_id):
        raise InvalidArticleId(f"article id must be {ARTICLE_ID_RULE}")
    return article_id


def parse_json_object(
    body: bytes,
    content_type: str,
    charset: str | None,
    allowed: Sequence[str],
    *,
    what: str,
    invalid: type[BadRequest],
) -> dict[str, Any]:
    """A body that must be a JSON object in UTF-8 with none but the ``allowed`` fields; what
    is wrong with it raised as ``invalid`` (or as a media type or JSON error), naming ``what``
    the body is."""
    if content_type != "application/json" or (
        charset is not None and charset.lower() not in ("utf-8", "utf8")
    ):
        raise UnsupportedMediaType(f"send {what} as application/json in UTF-8")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise invalid("body must be a JSON object")
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise invalid(f"unknown fields {unknown}; allowed: {', '.join(allowed)}")
    return document
