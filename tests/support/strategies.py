"""Hypothesis strategies for request input, and the rules it must meet written out on their own.

The rules here are spelled independently of ranker's validators (no shared regex), so a property
test compares the code against a second reading of the documented rules (docs/api/), not against
itself.
"""

from __future__ import annotations

import string
import unicodedata
from typing import Any

from hypothesis import strategies as st

from ranker.decay import MAX_FUTURE_S
from ranker.ingest.parse import MAX_USER_AGENT, MAX_VISITOR_ID, MAX_WEIGHT
from ranker.validation import MAX_TITLE, MAX_URL
from tests.ingest.test_bots import BROWSERS, CRAWLERS, HEADLESS_BROWSERS

NOW = 1_800_000_000.0
MAX_TS = NOW + MAX_FUTURE_S
SECTIONS = frozenset({"national", "sports"})
ID_CHARS = string.ascii_letters + string.digits + "._:-"
MAX_ID = 128
DOT_SEGMENTS = (".", "..")
KOREAN = "".join(map(chr, range(0xAC00, 0xAC00 + 200))) + " ,.…“”·"

# Text orjson can write: any code point but a lone surrogate.
texts = st.text(st.characters(codec="utf-8"))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def non_null(kinds: type | tuple[type, ...]) -> st.SearchStrategy[Any]:
    """JSON values that are not null and not of ``kinds``; a bool is never a number here, as
    it never is to a sender."""
    return json_values.filter(
        lambda value: (
            value is not None and (isinstance(value, bool) or not isinstance(value, kinds))
        )
    )


def is_article_id(value: str) -> bool:
    """The documented rule: 1-128 characters of A-Za-z0-9._:-, and not a URL dot segment (an id
    a client must be able to put in /v1/articles/{id} without the path losing it)."""
    return 0 < len(value) <= MAX_ID and set(value) <= set(ID_CHARS) and value not in DOT_SEGMENTS


def is_utf8(charset: str | None) -> bool:
    """A request's charset parameter that names UTF-8, or none at all (JSON is UTF-8)."""
    return charset is None or charset.lower() in ("utf-8", "utf8")


def is_site_url(url: str) -> bool:
    """The documented url rule, read as a browser reads a link: http(s) anywhere with an ASCII
    host, or a path that stays on the site; no whitespace, control or format characters or
    backslashes."""
    if not 0 < len(url) <= MAX_URL:
        return False
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") or ch == "\\" for ch in url):
        return False
    if url.startswith(("http://", "https://")):
        host = url.split("//", 1)[1]
        for end in "/?#":
            host = host.split(end, 1)[0]
        return host.isascii()
    # WHATWG URL parsing reads "\" as "/" in http(s) URLs: "/\host" is "//host", another site.
    return url.startswith("/") and not url.replace("\\", "/").startswith("//")


article_ids = st.sampled_from(["a1", "b-2", "c.3", "D:4", "..."]) | st.text(
    ID_CHARS, min_size=1, max_size=MAX_ID
).filter(lambda value: value not in DOT_SEGMENTS)
bad_article_ids = (
    st.sampled_from(["", *DOT_SEGMENTS, "a b", "a{b}", "{r:all}", "a*", "a/b", "기사", "a\n"])
    | st.text(ID_CHARS, min_size=MAX_ID + 1, max_size=MAX_ID + 40)
    | texts.filter(lambda value: not set(value) <= set(ID_CHARS))
    | non_null(str)
)
# A path character set without "/" and "\", so a generated path never starts a second slash.
_PATH_CHARS = string.ascii_letters + string.digits + "-._~%?#=&+!$'()*,;:@" + KOREAN[:20]
site_urls = st.one_of(
    st.sampled_from(["/", "/" + "u" * (MAX_URL - 1)]),
    st.builds(
        lambda scheme, host, rest: scheme + host + rest,
        st.sampled_from(["http://", "https://"]),
        st.text(_PATH_CHARS.replace(KOREAN[:20], ""), max_size=20),
        st.text(_PATH_CHARS + "/", max_size=60).map(lambda rest: "/" + rest if rest else ""),
    ),
    st.builds(
        lambda first, rest: "/" + first + rest,
        st.text(_PATH_CHARS, min_size=1, max_size=1),
        st.text(_PATH_CHARS + "/", max_size=60),
    ),
)
any_urls = (
    site_urls
    | st.builds(
        lambda start, rest: start + rest,
        st.sampled_from(["/", "//", "/\\", "\\\\", "http://", "https:", "ftp://", "javascript:"]),
        st.text(st.characters(codec="utf-8", max_codepoint=0x3000), max_size=12),
    )
    | texts
)
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def is_title(value: str) -> bool:
    """The documented title rule: 1-500 characters, no control character (Cc) and no bidi
    embedding, override or isolate."""
    return 0 < len(value) <= MAX_TITLE and not any(
        unicodedata.category(ch) == "Cc" or ch in BIDI_CONTROLS for ch in value
    )


titles = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"], exclude_characters=BIDI_CONTROLS),
    min_size=1,
    max_size=MAX_TITLE,
) | st.text(KOREAN, min_size=1, max_size=MAX_TITLE)


# An event docs/api/events.md says is accepted, with any of its optional fields, and others.
valid_events = st.fixed_dictionaries(
    {"article_id": article_ids, "section": st.sampled_from(sorted(SECTIONS))},
    optional={
        "ts": st.none()
        | st.floats(0, MAX_TS)
        | st.integers(0, int(MAX_TS))
        | st.floats(NOW - 86_400, MAX_TS),
        "weight": st.none()
        | st.floats(0, MAX_WEIGHT, exclude_min=True)
        | st.integers(1, int(MAX_WEIGHT)),
        "title": st.none() | titles,
        "url": st.none() | site_urls,
        "visitor_id": st.none()
        | st.text(st.characters(codec="utf-8"), min_size=1, max_size=MAX_VISITOR_ID),
        "user_agent": st.none() | st.sampled_from(sorted(BROWSERS.values())),
        "referrer": json_values,
    },
)


# Per field: values that make an otherwise valid event rejected, and the code that says why.
BAD_FIELDS: dict[str, list[tuple[st.SearchStrategy[Any], str]]] = {
    "article_id": [(bad_article_ids, "invalid_article_id")],
    "section": [
        (non_null(str), "invalid_section"),
        (texts.filter(lambda value: value not in SECTIONS), "unknown_section"),
    ],
    "ts": [
        (non_null((int, float)), "invalid_ts"),
        (st.floats(max_value=0, exclude_max=True, allow_infinity=False), "invalid_ts"),
        (st.integers(-(2**63), -1), "invalid_ts"),
        (st.floats(min_value=MAX_TS, exclude_min=True, allow_infinity=False), "future_ts"),
        (st.integers(int(MAX_TS) + 1, 2**64 - 1), "future_ts"),
    ],
    "weight": [
        (non_null((int, float)), "invalid_weight"),
        (st.floats(max_value=0, allow_infinity=False), "invalid_weight"),
        (st.floats(min_value=MAX_WEIGHT, exclude_min=True, allow_infinity=False), "invalid_weight"),
        (st.integers(-(2**63), 0) | st.integers(int(MAX_WEIGHT) + 1, 2**64 - 1), "invalid_weight"),
    ],
    "title": [
        (non_null(str), "invalid_title"),
        (
            st.just("") | st.text("가a", min_size=MAX_TITLE + 1, max_size=MAX_TITLE + 9),
            "invalid_title",
        ),
        (
            texts.filter(lambda value: 0 < len(value) <= MAX_TITLE and not is_title(value)),
            "invalid_title",
        ),
    ],
    "url": [
        (non_null(str), "invalid_url"),
        (any_urls.filter(lambda url: not is_site_url(url)), "invalid_url"),
        (st.just("/" + "u" * MAX_URL), "invalid_url"),
    ],
    "user_agent": [
        (non_null(str) | st.just(""), "invalid_user_agent"),
        (
            st.text("u", min_size=MAX_USER_AGENT + 1, max_size=MAX_USER_AGENT + 9),
            "invalid_user_agent",
        ),
    ],
    "visitor_id": [
        (non_null(str) | st.just(""), "invalid_visitor_id"),
        (
            st.text("v", min_size=MAX_VISITOR_ID + 1, max_size=MAX_VISITOR_ID + 9),
            "invalid_visitor_id",
        ),
    ],
}
bad_fields = st.one_of(
    [
        st.tuples(st.just(name), values, st.just(code))
        for name, cases in BAD_FIELDS.items()
        for values, code in cases
    ]
)
# Whatever a batch may hold: good events, events with a bad field, anything else JSON can say.
bot_user_agents = st.sampled_from(sorted({*CRAWLERS.values(), *HEADLESS_BROWSERS.values()}))
batch_items = st.one_of(
    valid_events,
    # A bot's event: excluded when otherwise valid.
    st.builds(lambda event, ua: {**event, "user_agent": ua}, valid_events, bot_user_agents),
    st.builds(lambda event, bad: {**event, bad[0]: bad[1]}, valid_events, bad_fields),
    json_values,
    st.dictionaries(
        st.sampled_from(["article_id", "section", "ts", "weight", "title"]), json_values
    ),
)


def near_json_bytes() -> st.SearchStrategy[bytes]:
    """Bodies that are almost JSON: event-shaped tokens in any order, damaged UTF-8 included."""
    tokens = st.sampled_from(
        [
            b"{", b"}", b"[", b"]", b",", b":", b" ", b"\n", b"\r\n", b'"article_id"', b'"section"',
            b'"ts"', b'"weight"', b'"title"', b'"url"', b'"national"', b'"a1"', b'"/x"', b"null",
            b"true", b"1", b"-0", b"1e400", b"123456789012345678901234567890", b"NaN",
            b"Infinity", b'"\\ud800"', b'"\xff"', b'"\xed\xa0\x80"', b"\xef\xbb\xbf", b'"\\u0000"',
        ]
    )  # fmt: skip
    return st.lists(tokens, max_size=30).map(b"".join)
