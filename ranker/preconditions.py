"""What handlers check before they do any work: that Redis is not known to be down, and that a
body is within its limit, read only once it is."""

from __future__ import annotations

from aiohttp import web

from .errors import PayloadTooLarge, StoreUnavailable
from .state import STORE


def require_redis(request: web.Request, consequence: str) -> None:
    """Refuse at once while Redis is known to be down: waiting out a command timeout would
    tell the client nothing more (the background check finds Redis back within a second)."""
    if not request.app[STORE].available:
        raise StoreUnavailable(f"Redis is unavailable; {consequence}")


def check_declared_length(request: web.Request, max_bytes: int) -> None:
    """Refuse a body whose declared length is over ``max_bytes``, before a byte is read."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request's body, refused (``413``) when it is over ``max_bytes``."""
    # Refuse by the declared length before reading a byte; aiohttp's client_max_size (set to
    # the same limit) catches bodies that lie about their length or are chunked.
    check_declared_length(request, max_bytes)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes") from None
