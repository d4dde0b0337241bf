"""Parsing a CMS article update in tests, and whether one is accepted."""

from __future__ import annotations

from typing import Any

import orjson

from ranker.api.articles import parse_article_update
from ranker.errors import InvalidArticle
from tests.support.strategies import (
    NOW,
    SECTIONS,
)

JSON = "application/json"


def parse_update(body: bytes, content_type: str, charset: str | None) -> dict[str, Any]:
    return parse_article_update(body, content_type, charset, SECTIONS, now=NOW)


def update_accepted(document: dict[str, Any]) -> bool:
    try:
        parse_update(orjson.dumps(document), JSON, None)
    except InvalidArticle:
        return False
    return True
