"""CORS for browsers on other origins that read the lists (``RANKER_CORS_ORIGINS``): the headers
of read routes' answers, and their preflights."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from ranker.config import ANY_ORIGIN, Settings

__all__ = ["CorsPolicy"]

# What a browser script may read of a list besides the safelisted headers, and what it may send.
EXPOSED_HEADERS = "ETag, X-Ranker-Stale, X-Request-ID"
ALLOWED_REQUEST_HEADERS = "If-None-Match"
CORS_METHODS = ("GET", "HEAD")
PREFLIGHT_MAX_AGE_S = 7200
"""How long a browser may reuse a preflight's answer (Chromium caps it at 2 h)."""


class CorsPolicy:
    """The CORS headers of read routes, for ``RANKER_CORS_ORIGINS``."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self._any = origins == (ANY_ORIGIN,)
        self._origins = frozenset(origins)

    @classmethod
    def from_settings(cls, settings: Settings) -> CorsPolicy | None:
        """The policy, or None when no origin is allowed (and read routes add nothing)."""
        return cls(settings.cors_origins) if settings.cors_origins else None

    def allows(self, origin: str) -> bool:
        """Whether a browser page from ``origin`` may read."""
        return self._any or origin in self._origins

    def apply(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Add the CORS headers to a read route's answer (errors and 304s included).

        They go on answers to requests without an ``Origin`` too: ranking answers are
        ``public``, and a CDN that kept one made for a server (no ``Origin``) would otherwise
        hand it to browsers without the header they need, or, for a list of origins, hand one
        origin's answer to another. ``*`` needs no ``Vary``; a list does.
        """
        headers = response.headers
        if self._any:
            headers["Access-Control-Allow-Origin"] = ANY_ORIGIN
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            return
        headers.add("Vary", "Origin")
        origin = request.headers.get("Origin")
        if origin is not None and origin in self._origins:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS

    def preflight(self, allow: str) -> Handler:
        """The ``OPTIONS`` handler of a read path whose methods are ``allow``.

        A preflight from an allowed origin for a ``GET`` or ``HEAD`` is answered with the
        CORS headers; any other (a ``PUT``, another origin) gets none, so the browser does not
        send the request it asked about.
        """

        async def options(request: web.Request) -> web.StreamResponse:
            headers = {"Allow": allow}
            if not self._any:
                headers["Vary"] = "Origin"
            origin = request.headers.get("Origin")
            wanted = request.headers.get("Access-Control-Request-Method")
            if origin is not None and wanted in CORS_METHODS and self.allows(origin):
                headers["Access-Control-Allow-Origin"] = ANY_ORIGIN if self._any else origin
                headers["Access-Control-Allow-Methods"] = ", ".join(CORS_METHODS)
                headers["Access-Control-Allow-Headers"] = ALLOWED_REQUEST_HEADERS
                headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
            return web.Response(status=204, headers=headers)

        return options
