"""What handlers check before they do any work: that Redis is not known to be down, and that a
body is within its limit and its budget, read only once it is."""

from __future__ import annotations

from aiohttp import hdrs, web

from ranker.errors import BadRequest, PayloadTooLarge, StoreUnavailable, UnsupportedMediaType
from ranker.ingest.admission import BodyHold
from ranker.state import STORE

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
