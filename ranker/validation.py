"""The rules an article's id, title and url keep to, shared by page-view events and the CMS's
article updates."""

from __future__ import annotations

import re

__all__ = [
    "ARTICLE_ID_RE",
    "ARTICLE_ID_RULE",
    "MAX_TITLE",
    "MAX_URL",
    "TITLE_FORBIDDEN",
    "TITLE_RULE",
    "URL_RULE",
    "is_valid_title",
    "is_valid_url",
]

# Not "." or "..": clients resolve those path segments away, so /v1/articles/{id} could never
# reach an article by either name (to read it, retitle it or hide it).
ARTICLE_ID_RE = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9._:-]{1,128}")
ARTICLE_ID_RULE = "1-128 characters of A-Za-z0-9._:-, other than . and .."
MAX_TITLE = 500
MAX_URL = 2048


def is_valid_url(url: str) -> bool:
    """An absolute http(s) URL or a site-relative path, with no whitespace, control or format
    characters (U+200B, bidi controls, ...) or backslashes, and an ASCII host (an
    internationalised one in its xn-- form, as browsers give it). A path may hold other
    characters; a browser sends them percent-encoded."""
    # A browser reads "\" as "/" in an http(s) URL, so "/\evil.example" is "//evil.example": a
    # link off the site. No URL needs a raw backslash (it is sent as %5C). A host is mapped
    # (IDNA) before use: "evil.example\uff0fx" becomes "evil.example/x", another site.
    if not url.startswith(("http://", "https://", "/")) or url.startswith("//"):
        return False
    if _URL_FORBIDDEN.search(url) is not None:
        return False
    if url.isascii() or url.startswith("/"):
        return True
    authority = _AUTHORITY.match(url, url.index("//") + 2)
    return authority is not None and authority.group().isascii()


URL_RULE = (
    "url must start with http://, https:// or /, with an ASCII host and no whitespace, control "
    "or format characters or backslashes"
)


def is_valid_title(title: str) -> bool:
    """No control characters (NUL, ESC, newlines, C1) and no bidi embeddings, overrides or
    isolates, which could make a headline read as something else where it is shown."""
    return TITLE_FORBIDDEN.search(title) is None


TITLE_RULE = (
    "title must hold no control characters and no bidi embedding, override or isolate "
    "(U+202A-U+202E, U+2066-U+2069)"
)
# Searched directly by the event parser, whose hot path saves the call to is_valid_title.
TITLE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Unicode's Cf (14.0); tests/test_validation.py checks it covers this Python's.
_FORMAT_CHARACTERS = (
    r"\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    r"\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    r"\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    r"\U000e0020-\U000e007f"
)
_URL_FORBIDDEN = re.compile(r"[\s\\\x00-\x1f\x7f-\x9f" + _FORMAT_CHARACTERS + "]")
_AUTHORITY = re.compile("[^/?#]*")
