"""The API browser at ``/docs``: Swagger UI 5 over ``/openapi.json``, its assets served from the
``swagger-ui-py`` package, so nothing is fetched from the internet at run time."""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web

from .assets import SITE_ASSETS, AssetFolder

SWAGGER_ASSETS = AssetFolder(
    files("swagger_ui").joinpath("static"),
    ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"),
)
"""What the browser's page loads of Swagger UI, and nothing else of the package."""

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""Swagger UI sets inline styles; its scripts and everything else come from here."""


async def api_docs(request: web.Request) -> web.Response:
    """``GET /docs``: the API browser's page."""
    response = SITE_ASSETS.get("docs.html").response(request)
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response
