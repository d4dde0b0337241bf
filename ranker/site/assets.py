"""Files shipped in the package, served as they are: read once, on first request, and kept."""

from __future__ import annotations

import hashlib
from importlib.resources import files
from importlib.resources.abc import Traversable

from aiohttp import web
from aiohttp.typedefs import Handler

from ranker.errors import NotFound

ASSET_CACHE_CONTROL = "public, max-age=3600"
"""Assets change with a release only; an hour keeps a deploy's new ones close."""

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
}


class Asset:
    """One file's bytes, with its type and a strong ETag (a digest of them)."""

    __slots__ = ("body", "content_type", "etag")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'

    def response(self, request: web.Request) -> web.Response:
        """The asset, or a 304 when the request already holds it."""
        headers = {"ETag": self.etag, "Cache-Control": ASSET_CACHE_CONTROL}
        if request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = self.content_type
        return web.Response(body=self.body, headers=headers)


class AssetFolder:
    """The files of one package folder that may be served, by name (nothing else is)."""

    def __init__(self, folder: Traversable, names: tuple[str, ...]) -> None:
        self._folder = folder
        self._names = frozenset(names)
        self._read: dict[str, Asset] = {}

    def handler(self) -> Handler:
        """A handler serving ``{name}`` from this folder."""

        async def serve(request: web.Request) -> web.StreamResponse:
            return self.get(request.match_info["name"]).response(request)

        return serve

    def get(self, name: str) -> Asset:
        """The asset named ``name``; :class:`~ranker.errors.NotFound` for any other name."""
        if name not in self._names:
            raise NotFound(f"no such asset: {name[:64]!r}")
        asset = self._read.get(name)
        if asset is None:
            suffix = name[name.rfind(".") :]
            body = self._folder.joinpath(name).read_bytes()
            asset = self._read[name] = Asset(body, CONTENT_TYPES[suffix])
        return asset


SITE_ASSETS = AssetFolder(
    files("ranker.site").joinpath("static"), ("page.js", "page.css", "docs.js", "docs.html")
)
"""The page's and the API browser's own script and style."""
