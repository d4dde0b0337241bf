"""The list endpoint, ``GET /v1/rankings/{section}``: the fast path that answers a poll from the
cache by its raw request target, and the handler behind it for every other spelling."""

from __future__ import annotations

from aiohttp import web

from ranker.config import DEFAULT_WINDOW, Settings
from ranker.config.limits import DEFAULT_LIMIT, MAX_LIMIT
from ranker.errors import InvalidLimit, UnknownSection, UnknownWindow
from ranker.lists.render import STALE_HEADER, CachedList

from .appkeys import CACHE, SETTINGS
from .responses import etag_matches


def cached_ranking(request: web.Request) -> web.Response | None:
    """A poll for a list in a common spelling (``?limit=N``, or no query for the default;
    ``?window=W``, ``?window=W&limit=N`` or ``?limit=N&window=W`` for a window's), answered
    from the cache by its raw request target with one dict lookup; None if not there.
    """
    cached = request.app[CACHE].lookup(request.raw_path)
    if cached is None:
        return None
    if "If-None-Match" in request.headers:
        return _ranking_response(request, cached)
    return web.Response(body=cached.body, headers=cached.headers.copy())


async def get_ranking(request: web.Request, section: str | None = None) -> web.Response:
    """The top ``limit`` articles of a section (or ``all``) in a window (``?window=``; none
    or ``default``: the default profile), scored as of ``generated_at``.

    Served from the in-memory cache; only a list asked for the first time waits for Redis.
    ``section`` is given by a ranking's own route, else taken from the path.
    """
    app = request.app
    settings = app[SETTINGS]
    if section is None:
        section = request.match_info["section"]
    if section not in settings.rankings:
        raise UnknownSection(f"no ranking named {section[:64]!r}")
    limit = _parse_limit(request.query.get("limit"))
    window = _parse_window(request.query.get("window"), settings)
    targets = _ranking_targets(section, limit, window)
    cached = await app[CACHE].get(section, limit, targets, window)
    return _ranking_response(request, cached)


def _ranking_response(request: web.Request, cached: CachedList) -> web.Response:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and etag_matches(if_none_match, cached.etag):
        # What the 200 would have said of freshness, stale or not.
        headers = {
            name: value
            for name, value in cached.headers.items()
            if name in ("ETag", "Cache-Control", STALE_HEADER)
        }
        return web.Response(status=304, headers=headers)
    return web.Response(body=cached.body, headers=cached.headers.copy())


def ranking_path(section: str) -> str:
    """The path of a ranking's list: what routes registers, and what the cache is keyed by."""
    return f"/v1/rankings/{section}"


def _ranking_targets(section: str, limit: int, window: str | None = None) -> tuple[str, ...]:
    """The raw request targets a poll for this list usually arrives with."""
    path = ranking_path(section)
    if window is None:
        canonical = f"{path}?limit={limit}"
        return (canonical, path) if limit == DEFAULT_LIMIT else (canonical,)
    targets = (f"{path}?window={window}&limit={limit}", f"{path}?limit={limit}&window={window}")
    return (*targets, f"{path}?window={window}") if limit == DEFAULT_LIMIT else targets


def _parse_window(raw: str | None, settings: Settings) -> str | None:
    """The window asked for: None for the default profile (no ``window``, or ``default``)."""
    if raw is None or raw == DEFAULT_WINDOW:
        return None
    if raw not in settings.windows:
        names = ", ".join((DEFAULT_WINDOW, *settings.windows))
        raise UnknownWindow(f"no window named {raw[:64]!r}; the windows are {names}")
    return raw


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidLimit(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)
