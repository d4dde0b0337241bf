"""Validating article metadata sent by the CMS."""

from __future__ import annotations

import math
from collections.abc import Container, Sequence
from typing import Any

import orjson

from ranker.decay import MAX_FUTURE_S
from ranker.errors import (
    BadRequest,
    InvalidArticle,
    InvalidArticleId,
    InvalidJson,
    UnsupportedMediaType,
)
from ranker.validation import (
    ARTICLE_ID_RE,
    ARTICLE_ID_RULE,
    MAX_TITLE,
    MAX_URL,
    TITLE_RULE,
    URL_RULE,
    is_valid_title,
    is_valid_url,
)

FIELDS = ("title", "url", "section", "published_at", "hidden")


def check_article_id(article_id: str) -> str:
    if not ARTICLE_ID_RE.fullmatch(article_id):
        raise InvalidArticleId(f"article id must be {ARTICLE_ID_RULE}")
    return article_id


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


def parse_json_object(
    body: bytes,
    content_type: str,
    charset: str | None,
    allowed: Sequence[str],
    *,
    what: str,
    invalid: type[BadRequest],
) -> dict[str, Any]:
    """A body that must be a JSON object in UTF-8 with none but the ``allowed`` fields; what
    is wrong with it raised as ``invalid`` (or as a media type or JSON error), naming ``what``
    the body is."""
    if content_type != "application/json" or (
        charset is not None and charset.lower() not in ("utf-8", "utf8")
    ):
        raise UnsupportedMediaType(f"send {what} as application/json in UTF-8")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise invalid("body must be a JSON object")
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise invalid(f"unknown fields {unknown}; allowed: {', '.join(allowed)}")
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
