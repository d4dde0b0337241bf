"""The page at ``/``: laid out like a national daily's front page, with its three reader-driven
boxes (the header's 20-item "most read" ticker, "Top 10 Stories" site-wide, "Top 5 ... News"
for one section), each rendered on the server from the lists' HTML fragments, so it works with
JavaScript off; a small script then polls those fragments and swaps a box when it changed.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from aiohttp import web
from markupsafe import Markup
from redis.exceptions import RedisError

from ranker.api.appkeys import CACHE, SETTINGS
from ranker.api.rankings import parse_window, ranking_targets
from ranker.config import DEFAULT_WINDOW, SITE_WIDE, Settings
from ranker.errors import NotFound, StoreUnavailable, UnknownSection
from ranker.lists.fragments import templates
from ranker.lists.render import CachedList, Selection

SECTION_NAMES = {
    "all": "Top Stories",
    "national": "National",
    "north-korea": "North Korea",
    "business": "Business",
    "finance": "Finance",
    "opinion": "Opinion",
    "lifestyle": "Lifestyle",
    "entertainment": "Entertainment",
    "sports": "Sports",
    "world": "World",
    "video": "Video",
    "photos": "Photos",
}
"""How the page names the seed site's sections; any other slug is shown title-cased."""

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Only the page's own script and style run: a title that slipped through as markup could not
load or run anything."""

_PAGE = templates("ranker.site").get_template("page.html")


class Box(NamedTuple):
    """One reader-driven box of the page, and the list it shows."""

    kind: str  # ticker, top or section: its place and style on the page
    heading: str
    ranking: str
    limit: int


def section_name(slug: str) -> str:
    """A section's name as the page shows it."""
    return SECTION_NAMES.get(slug) or slug.replace("-", " ").title()


def page_boxes(section: str) -> tuple[Box, ...]:
    """The page's boxes, the section box showing ``section``."""
    return (
        Box("ticker", "Most read", SITE_WIDE, 20),
        Box("top", "Top 10 Stories", SITE_WIDE, 10),
        Box("section", f"Top 5 {section_name(section)} News", section, 5),
    )


async def _fragment(
    request: web.Request, box: Box, window: str | None
) -> tuple[CachedList | None, str]:
    """A box's fragment from the list cache, and the path the page polls it at; no fragment
    while its list cannot be read (the script fills it in once it can)."""
    aliases = ranking_targets(box.ranking, box.limit, window, html=True)
    try:
        cached = await request.app[CACHE].get(
            box.ranking, Selection(box.limit, html=True), aliases, window
        )
    except (StoreUnavailable, RedisError):
        cached = None
    return cached, aliases[0]


def _section(request: web.Request, settings: Settings) -> str:
    section = request.query.get("section") or settings.page_ranking
    if section not in settings.sections:
        raise UnknownSection(
            f"no section named {section[:64]!r}; the sections are {', '.join(settings.sections)}"
        )
    return section


def _markup(cached: CachedList) -> Markup:
    # The fragment was rendered by the lists' own autoescaping template: every title, URL and
    # id in it is already text, so it goes into the page as it is.
    return Markup(cached.body.decode("utf-8"))  # noqa: S704 - escaped when it was rendered


async def front_page(request: web.Request) -> web.Response:
    """``GET /``: the page, its boxes as of the lists' last refresh."""
    settings = request.app[SETTINGS]
    if not settings.demo_page:
        raise NotFound(f"no such path: {request.path[:200]}")
    window = parse_window(request.query.get("window"), settings)
    section = _section(request, settings)
    boxes = page_boxes(section)
    fragments = await asyncio.gather(*(_fragment(request, box, window) for box in boxes))
    html = _PAGE.render(
        boxes=[
            {
                "kind": box.kind,
                "heading": box.heading,
                "ranking": box.ranking,
                "limit": box.limit,
                "path": path,
                "etag": None if cached is None else cached.etag,
                "fragment": None if cached is None else _markup(cached),
            }
            for box, (cached, path) in zip(boxes, fragments, strict=True)
        ],
        window=DEFAULT_WINDOW if window is None else window,
        windows=(DEFAULT_WINDOW, *settings.windows),
        section=section,
        sections=[(slug, section_name(slug)) for slug in settings.sections],
        refresh_ms=round(settings.refresh_interval_s * 1000),
    )
    return web.Response(
        text=html,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_CSP},
    )
