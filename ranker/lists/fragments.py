"""A list as an HTML fragment, the way a news page's box shows it: rank, linked title, a leading
label as a badge, rank movement. Markup only (no ``<html>``), with stable class names a site
styles, for pages that include it on the server (SSI, edge includes, a PHP or Java template).

Rendered by Jinja2 with autoescaping on: a title, URL or id is always text, never markup,
whatever an editor or a sender put in it. Jinja2, not hand-made escaping, because the fragment
has attributes, text and URLs, each escaped by the one engine that knows the difference; the
template is compiled once per process.
"""

from __future__ import annotations

from typing import Any

import jinja2


def templates(package: str) -> jinja2.Environment:
    """The templates of a package's ``templates/`` folder, as ranker renders all its HTML:
    autoescaped, an undefined name an error, compiled once per process (never reloaded)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


_FRAGMENT = templates("ranker.lists").get_template("ranking.html")

MOVEMENT_MARKS = {"up": "▲", "down": "▼", "same": "\u2013", "new": "NEW"}
"""What each movement shows as, beside its class name (``ranker-move-up`` and so on)."""

_SAFE_SCHEMES = ("http://", "https://", "/")


def _link(url: Any) -> str | None:
    """A URL the fragment links to: only web and site-relative ones (a ``javascript:`` URL
    stored by mistake or malice is shown as no link)."""
    if isinstance(url, str) and url.lower().startswith(_SAFE_SCHEMES) and not url.startswith("//"):
        return url
    return None


def render_fragment(ranking: str, window: str, items: list[dict[str, Any]]) -> bytes:
    """The fragment of one answer: ``items`` are the answer's items as its JSON gives them."""
    for item in items:
        item["link"] = _link(item["url"])
        item["mark"] = MOVEMENT_MARKS[item["movement"]]
    return _FRAGMENT.render(ranking=ranking, window=window, items=items).encode("utf-8")
