"""The API browser at ``/docs``: Swagger UI over ``/openapi.json``, its assets served from the
``swagger-ui-bundle`` package, so nothing is fetched from the internet at run time."""

from __future__ import annotations

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from .assets import SITE_ASSETS, AssetFolder

SWAGGER_ASSETS = AssetFolder(
    swagger_ui_path,
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
