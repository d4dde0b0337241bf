"""``/docs``: Swagger UI over ``/openapi.json``, from the installed package's assets."""

from __future__ import annotations

import re
from importlib.resources import files

from ranker.site.apidocs import DOCS_CSP
from tests.conftest import Client


async def test_the_api_browser_loads_only_assets_served_here(client: Client) -> None:
    response = await client.get("/docs")
    assert response.status == 200
    assert response.headers["Content-Security-Policy"] == DOCS_CSP
    body = await response.text()
    # Every file it loads (its icon is an empty data: URL, so browsers ask for no favicon).
    sources = [s for s in re.findall(r'(?:src|href)="([^"]+)"', body) if s != "data:,"]
    assert sources
    for source in sources:
        assert source.startswith("/"), source  # nothing from elsewhere
        asset = await client.get(source)
        assert asset.status == 200, source
        name = source.rsplit("/", 1)[-1]
        if source.startswith("/docs/static/"):
            assert await asset.read() == files("swagger_ui").joinpath("static", name).read_bytes()


async def test_assets_revalidate_and_unknown_ones_are_404(client: Client) -> None:
    first = await client.get("/static/page.js")
    assert first.headers["Content-Type"] == "text/javascript; charset=utf-8"
    again = await client.get("/static/page.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    for path in ("/static/nope.js", "/docs/static/index.html", "/static/..%2Fpage.py"):
        missing = await client.get(path)
        assert missing.status == 404, path
