"""``GET`` and ``PUT /v1/articles/{article_id}``: an article's metadata and scores, and the
CMS's updates to it, validated here."""

from __future__ import annotations

import logging
import math
from collections.abc import Container
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from ranker.config import Settings
from ranker.decay import MAX_FUTURE_S
from ranker.errors import (
    ArticleNotFound,
    InvalidArticle,
)
from ranker.store import Article
from ranker.validation import (
    MAX_TITLE,
    MAX_URL,
    TITLE_RULE,
    URL_RULE,
    is_valid_title,
    is_valid_url,
)

from .appkeys import ADMISSION, CACHE, CLOCK, SETTINGS, STORE
from .auth import client_identity
from .editorial import cms_editor, cms_hide
from .preconditions import (
    check_article_id,
    declared_size,
    parse_json_object,
    read_body,
    require_redis,
)
from .responses import json_response

# The name its log lines have always carried (the handlers were in ranker/views.py).
log = logging.getLogger("ranker.views")

FIELDS = ("title", "url", "section", "published_at", "hidden")


def parse_article_update(
    body: bytes,
    content_type: str,
    charset: str | None,
    sections: Container[str],
    *,
    now: float,
) -> dict[str, Any]:
    """Validate a PUT body: the fields it names, each a value to set or null to clear;
    ``published_at`` may be at most MAX_FUTURE_S past ``now``."""
    document = parse_json_object(
        body, content_type, charset, FIELDS, what="article metadata", invalid=InvalidArticle
    )
    for name, value in document.items():
        if value is not None:
            _check_field(name, value, sections, now)
    return document


def _check_field(name: str, value: Any, sections: Container[str], now: float) -> None:
    if name == "title":
        if not isinstance(value, str) or not 0 < len(value) <= MAX_TITLE:
            raise InvalidArticle(f"title must be a string of 1-{MAX_TITLE} characters")
        if not is_valid_title(value):
            raise InvalidArticle(TITLE_RULE)
    elif name == "url":
        if not isinstance(value, str) or len(value) > MAX_URL or not is_valid_url(value):
            raise InvalidArticle(f"{URL_RULE}, at most {MAX_URL} characters")
    elif name == "section":
        if not isinstance(value, str) or value not in sections:
            raise InvalidArticle("section must be a configured section slug")
    elif name == "published_at":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise InvalidArticle("published_at must be a non-negative number of epoch seconds")
        # A date ahead of now would top every list's fill until then (for ever, in
        # milliseconds), and show a story before it is out: it is set when it is published.
        if value > now + MAX_FUTURE_S:
            raise InvalidArticle(
                f"published_at is more than {MAX_FUTURE_S:g} s past the server's clock: send "
                "epoch seconds (not milliseconds), once the story is published"
            )
    elif name == "hidden" and not isinstance(value, bool):
        raise InvalidArticle("hidden must be true or false")


async def get_article(request: web.Request) -> web.Response:
    """An article's metadata and its current score in every ranking that holds it."""
    app = request.app
    article_id = check_article_id(request.match_info["article_id"])
    require_redis(request, "try again shortly")
    article = await app[STORE].get_article(article_id, app[CLOCK]())
    if article is None:
        raise ArticleNotFound(f"no metadata or views for article {article_id!r}")
    return json_response(article)


async def put_article(request: web.Request) -> web.Response:
    """Set article metadata: the fields sent are set (null clears one), the others are kept.
    ``hidden`` true or false hides or unhides, for editors only; null leaves it as it is."""
    app = request.app
    settings = app[SETTINGS]
    article_id = check_article_id(request.match_info["article_id"])
    require_redis(request, "nothing was changed")
    changes = await _read_article_update(request, settings)
    store = app[STORE]
    now = app[CLOCK]()
    # The CMS's hide is an editorial change like any other, refused before anything is written.
    # Null is no change: a CMS that sends every field with each update ends no editor's hide.
    hidden = changes.pop("hidden", None)
    editor = None if hidden is None else cms_editor(request)
    if changes:
        await store.put_article(article_id, changes)
    # After the metadata: an article this update makes known may be hidden in the same step.
    hidden_changed = editor is not None and await cms_hide(
        request, article_id, bool(hidden), editor, now
    )
    if hidden_changed or changes.keys() & {"title", "url", "section", "published_at"}:
        # The editor who hid, retitled, moved or re-dated a story sees it in this replica's lists
        # at once (a move or a date can change which articles fill a short list);
        # other replicas within one refresh interval. The change is made by now: a failed
        # refresh must not report it failed (the next one picks it up).
        # A new title or URL shows only in the lists that list the article: only those are
        # read again, not every list kept.
        retitled = None if hidden_changed or changes.keys() - {"title", "url"} else article_id
        try:
            await app[CACHE].refresh(listing=retitled)
        except RedisError as exc:
            log.warning("lists not refreshed after an article update: %s", exc)
    article = await store.get_article(article_id, now)
    # Clearing every field of an article with no views leaves nothing stored: say so plainly.
    return json_response(article or Article.blank(article_id))


async def _read_article_update(request: web.Request, settings: Settings) -> dict[str, Any]:
    """The changes a PUT asks for. Its body counts against the write budget, as events' do,
    while it is read and parsed; the changes parsed from it are small."""
    app = request.app
    client = client_identity(request, tokens_configured=bool(settings.write_tokens))
    budget = app[ADMISSION].writes
    with budget.hold(client, declared_size(request), "nothing was changed") as hold:
        body = await read_body(request, settings.max_body_bytes, hold)
        return parse_article_update(
            body, request.content_type, request.charset, settings.sections, now=app[CLOCK]()
        )
