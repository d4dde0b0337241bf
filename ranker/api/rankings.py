"""The list endpoints: ``GET /v1/rankings`` (what there is to ask for), and one ranking's list,
``GET /v1/rankings/{section}`` as JSON and ``GET /v1/rankings/{section}.html`` as an HTML
fragment, with the fast path that answers a poll from the cache by its raw request target and the
handler behind it for every other spelling."""

from __future__ import annotations

from aiohttp import web

from ranker.config import DEFAULT_WINDOW, Settings
from ranker.config.limits import DEFAULT_LIMIT, MAX_LIMIT
from ranker.errors import InvalidLimit, InvalidQuery, UnknownSection, UnknownWindow
from ranker.lists.render import MAX_EXCLUDED, STALE_HEADER, CachedList, Selection
from ranker.validation import ARTICLE_ID_RE, ARTICLE_ID_RULE

from .appkeys import CACHE, SETTINGS
from .responses import accepts_gzip, etag_matches, json_response

HTML_SUFFIX = ".html"
"""What a ranking's path ends with for its HTML fragment."""

MAX_ALIAS_LENGTH = 512
"""The longest request target an answer is also kept under, as it was spelled."""

_NOT_MODIFIED_HEADERS = ("ETag", "Cache-Control", "Vary", STALE_HEADER)
"""What a 304 repeats of the 200 it stands for."""


def cached_ranking(request: web.Request) -> web.Response | None:
    """A poll for a list in a spelling the cache knows (``?limit=N``, or no query for the
    default; ``?window=W``, ``?window=W&limit=N`` or ``?limit=N&window=W`` for a window's; any
    other a list was first asked with), answered from the cache by its raw request target with
    one dict lookup; None if not there.
    """
    cached = request.app[CACHE].lookup(request.raw_path)
    if cached is None:
        return None
    return ranking_response(request, cached)


async def get_ranking(
    request: web.Request, section: str | None = None, *, html: bool = False
) -> web.Response:
    """The top ``limit`` articles of a section (or ``all``) in a window (``?window=``; none
    or ``default``: the default profile), scored as of ``generated_at``; with ``require=title``
    only those with a title, and without the articles ``exclude`` names. As JSON, or with
    ``html`` as an HTML fragment.

    Served from the in-memory cache; only a list asked for the first time waits for Redis.
    ``section`` is given by a ranking's own route, else taken from the path.
    """
    app = request.app
    settings = app[SETTINGS]
    if section is None:
        section = request.match_info["section"]
    if section not in settings.rankings:
        raise UnknownSection(_unknown_section_message(section, settings))
    query = request.query
    selection = Selection(
        _parse_limit(query.get("limit")),
        _parse_require(query.getall("require", ())),
        _parse_exclude(query.getall("exclude", ())),
        html,
    )
    window = parse_window(query.get("window"), settings)
    plain = not selection.require_title and not selection.excluded
    aliases = ranking_targets(section, selection.limit, window, html) if plain else ()
    # The spelling it came in, too: a poller asks the same target again and again.
    raw_path = request.raw_path
    if raw_path not in aliases and len(raw_path) <= MAX_ALIAS_LENGTH:
        aliases = (*aliases, raw_path)
    cached = await app[CACHE].get(section, selection, aliases, window)
    return ranking_response(request, cached)


async def get_ranking_html(request: web.Request, section: str | None = None) -> web.Response:
    """:func:`get_ranking` as an HTML fragment."""
    if section is None:
        section = request.match_info["section"]
    return await get_ranking(request, section, html=True)


async def list_rankings(request: web.Request) -> web.Response:
    """What there is to ask for: every ranking with its list's paths, every window, and the
    limits a list takes."""
    settings = request.app[SETTINGS]
    return json_response(
        {
            "rankings": [
                {
                    "name": name,
                    "path": ranking_path(name),
                    "html_path": ranking_path(name) + HTML_SUFFIX,
                }
                for name in settings.rankings
            ],
            "windows": [
                {"name": DEFAULT_WINDOW, "half_life_s": settings.half_life_s},
                *(
                    {"name": name, "half_life_s": half_life_s}
                    for name, half_life_s in settings.windows.items()
                ),
            ],
            "default_limit": DEFAULT_LIMIT,
            "max_limit": MAX_LIMIT,
            "max_excluded": MAX_EXCLUDED,
        },
        headers={"Cache-Control": settings.cache_control},
    )


def ranking_response(request: web.Request, cached: CachedList) -> web.Response:
    """A cached answer as the request asks it: 304 when its ``If-None-Match`` holds the ETag,
    gzipped when it takes gzip, else as it is."""
    headers = request.headers
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None and etag_matches(if_none_match, cached.etag):
        # What the 200 would have said of freshness, stale or not.
        kept = {
            name: value for name, value in cached.headers.items() if name in _NOT_MODIFIED_HEADERS
        }
        return web.Response(status=304, headers=kept)
    if accepts_gzip(headers.get("Accept-Encoding")):
        gzipped = cached.gzipped()
        if gzipped is not None:
            response_headers = cached.headers.copy()
            response_headers["Content-Encoding"] = "gzip"
            return web.Response(body=gzipped, headers=response_headers)
    return web.Response(body=cached.body, headers=cached.headers.copy())


def ranking_path(section: str) -> str:
    """The path of a ranking's list: what routes registers, and what the cache is keyed by."""
    return f"/v1/rankings/{section}"


def ranking_targets(
    section: str, limit: int, window: str | None = None, html: bool = False
) -> tuple[str, ...]:
    """The raw request targets a poll for this list usually arrives with."""
    path = ranking_path(section) + (HTML_SUFFIX if html else "")
    if window is None:
        canonical = f"{path}?limit={limit}"
        return (canonical, path) if limit == DEFAULT_LIMIT else (canonical,)
    targets = (f"{path}?window={window}&limit={limit}", f"{path}?limit={limit}&window={window}")
    return (*targets, f"{path}?window={window}") if limit == DEFAULT_LIMIT else targets


def _unknown_section_message(section: str, settings: Settings) -> str:
    return f"no ranking named {section[:64]!r}; the rankings are {', '.join(settings.rankings)}"


def parse_window(raw: str | None, settings: Settings) -> str | None:
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


def _parse_require(raw: list[str] | tuple[str, ...]) -> bool:
    """Whether ``require=title`` was asked (the one requirement there is)."""
    for value in raw:
        if value not in ("title", ""):
            raise InvalidQuery(f"require takes title, not {value[:64]!r}")
    return "title" in raw


def _parse_exclude(raw: list[str] | tuple[str, ...]) -> frozenset[str]:
    """The article ids ``exclude`` names, comma-separated, given once or more."""
    ids = frozenset(article_id for value in raw for article_id in value.split(",") if article_id)
    if len(ids) > MAX_EXCLUDED:
        raise InvalidQuery(f"exclude names at most {MAX_EXCLUDED} article ids")
    for article_id in ids:
        if not ARTICLE_ID_RE.fullmatch(article_id):
            raise InvalidQuery(f"exclude takes article ids ({ARTICLE_ID_RULE})")
    return ids
