"""The site's routes: the page, the API browser, and the files they load."""

from __future__ import annotations

from aiohttp.typedefs import Handler

from .apidocs import SWAGGER_ASSETS, api_docs
from .assets import SITE_ASSETS
from .page import front_page


def site_routes() -> tuple[tuple[str, Handler], ...]:
    """(path, handler) of each of the site's ``GET`` routes (``HEAD`` too)."""
    return (
        ("/", front_page),
        ("/static/{name}", SITE_ASSETS.handler()),
        ("/docs", api_docs),
        ("/docs/static/{name}", SWAGGER_ASSETS.handler()),
    )
