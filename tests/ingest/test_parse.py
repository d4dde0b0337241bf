"""Unit tests of ``ranker.ingest.parse.parse_events``: body shapes, per-event rules, whole-body
errors."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from ranker.decay import MAX_FUTURE_S
from ranker.errors import (
    InvalidBody,
    InvalidJson,
    RankerError,
    TooManyEvents,
    UnsupportedMediaType,
)
from ranker.ingest.bots import CRAWLER, HEADLESS_BROWSER
from ranker.ingest.framing import MAX_DETAILED_BAD_LINES, plain_events
from ranker.ingest.parse import (
    Exclusion,
    ParsedEvents,
    View,
    _Excluded,
    _Rejected,
    _validate,
    parse_events,
)
from tests.ingest.test_bots import BROWSERS, CRAWLERS, HEADLESS_BROWSERS

NOW = 1_800_000_000.0
SECTIONS = frozenset({"national", "sports"})
JSON = "application/json"
NDJSON = "application/x-ndjson"
KOREAN_TITLE = "북한, 동해상으로 탄도미사일 발사… 합참 “추가 도발 경계”"


def parse(body: bytes, content_type: str = JSON, charset: str | None = None) -> ParsedEvents:
    return parse_events(body, content_type, charset, now=NOW, sections=SECTIONS)


def event(**fields: Any) -> dict[str, Any]:
    """A valid event with the given fields added, replaced, or (given as ``...``) removed."""
    base: dict[str, Any] = {"article_id": "a1", "section": "national"}
    base.update(fields)
    return {name: value for name, value in base.items() if value is not ...}


def parse_one(item: object) -> ParsedEvents:
    return parse(orjson.dumps(item))


ACCEPTED = [
    pytest.param(event(), ("a1", "national", NOW, 1.0), id="defaults-ts-now-weight-1"),
    pytest.param(event(ts=NOW + 300), ("a1", "national", NOW + 300, 1.0), id="ts-now+300"),
    pytest.param(event(ts=NOW - 3600.5), ("a1", "national", NOW - 3600.5, 1.0), id="ts-past"),
    pytest.param(event(ts=0), ("a1", "national", 0.0, 1.0), id="ts-zero"),
    pytest.param(event(ts=None), ("a1", "national", NOW, 1.0), id="ts-null-is-default"),
    pytest.param(event(weight=1000), ("a1", "national", NOW, 1000.0), id="weight-1000"),
    pytest.param(event(weight=2.5), ("a1", "national", NOW, 2.5), id="weight-2.5"),
    pytest.param(event(weight=1e-9), ("a1", "national", NOW, 1e-9), id="weight-tiny"),
    pytest.param(event(weight=None), ("a1", "national", NOW, 1.0), id="weight-null-default"),
    pytest.param(event(article_id="x" * 128), ("x" * 128, "national", NOW, 1.0), id="id-128-chars"),
    pytest.param(
        event(article_id="Az09._:-"), ("Az09._:-", "national", NOW, 1.0), id="id-all-classes"
    ),
    pytest.param(event(article_id="..."), ("...", "national", NOW, 1.0), id="id-three-dots"),
    pytest.param(event(section="sports"), ("a1", "sports", NOW, 1.0), id="other-section"),
    pytest.param(
        event(color="red", nested={"a": [1]}, visitor_id="v-1"),
        ("a1", "national", NOW, 1.0),
        id="unknown-fields-ignored",
    ),
    pytest.param(event(title=None, url=None), ("a1", "national", NOW, 1.0), id="null-meta"),
    pytest.param(event(url="/news/1?x=1#y"), ("a1", "national", NOW, 1.0), id="site-relative-url"),
    pytest.param(event(user_agent=None), ("a1", "national", NOW, 1.0), id="user-agent-null"),
    *(
        pytest.param(event(user_agent=ua), ("a1", "national", NOW, 1.0), id=f"ua-{name}")
        for name, ua in BROWSERS.items()
    ),
]

REJECTED = [
    pytest.param(event(ts=NOW + 300.001), "future_ts", id="ts-now+300.001"),
    pytest.param(event(ts=NOW + 86_400 * 365), "future_ts", id="ts-far-future"),
    pytest.param(event(ts=-1), "invalid_ts", id="ts-negative"),
    pytest.param(event(ts="1800000000"), "invalid_ts", id="ts-string"),
    pytest.param(event(ts=True), "invalid_ts", id="ts-bool"),
    pytest.param(event(ts=[NOW]), "invalid_ts", id="ts-list"),
    pytest.param(event(weight=0), "invalid_weight", id="weight-zero"),
    pytest.param(event(weight=-1), "invalid_weight", id="weight-negative"),
    pytest.param(event(weight=-0.0), "invalid_weight", id="weight-negative-zero"),
    pytest.param(event(weight=1000.0001), "invalid_weight", id="weight-1000.0001"),
    pytest.param(event(weight=1e308), "invalid_weight", id="weight-huge"),
    pytest.param(event(weight=True), "invalid_weight", id="weight-true"),
    pytest.param(event(weight=False), "invalid_weight", id="weight-false"),
    pytest.param(event(weight="2"), "invalid_weight", id="weight-string"),
    pytest.param(event(weight="NaN"), "invalid_weight", id="weight-string-nan"),
    pytest.param(event(weight="Infinity"), "invalid_weight", id="weight-string-infinity"),
    pytest.param(event(article_id="x" * 129), "invalid_article_id", id="id-129-chars"),
    pytest.param(event(article_id=""), "invalid_article_id", id="id-empty"),
    pytest.param(event(article_id="a b"), "invalid_article_id", id="id-space"),
    pytest.param(event(article_id="a/b"), "invalid_article_id", id="id-slash"),
    pytest.param(event(article_id="기사1"), "invalid_article_id", id="id-non-ascii"),
    pytest.param(event(article_id="a1\n"), "invalid_article_id", id="id-trailing-newline"),
    # Clients resolve a "." or ".." path segment away: /v1/articles/{id} could never reach it.
    pytest.param(event(article_id="."), "invalid_article_id", id="id-dot"),
    pytest.param(event(article_id=".."), "invalid_article_id", id="id-dot-dot"),
    pytest.param(event(article_id=123), "invalid_article_id", id="id-number"),
    pytest.param(event(article_id=None), "invalid_article_id", id="id-null"),
    pytest.param(event(article_id=...), "invalid_article_id", id="id-missing"),
    pytest.param(event(section="weather"), "unknown_section", id="section-unknown"),
    pytest.param(event(section="National"), "unknown_section", id="section-wrong-case"),
    pytest.param(event(section="all"), "unknown_section", id="section-all-not-a-section"),
    pytest.param(event(section=5), "invalid_section", id="section-number"),
    pytest.param(event(section=["national"]), "invalid_section", id="section-list"),
    pytest.param(event(section=...), "invalid_section", id="section-missing"),
    pytest.param(event(title=5), "invalid_title", id="title-number"),
    pytest.param(event(title=""), "invalid_title", id="title-empty"),
    pytest.param(event(title="t" * 501), "invalid_title", id="title-501-chars"),
    pytest.param(event(title="a\x00b"), "invalid_title", id="title-nul"),
    pytest.param(event(title="\x1b[31mred"), "invalid_title", id="title-esc"),
    pytest.param(event(title="a\u202egnp.exe"), "invalid_title", id="title-bidi-override"),
    pytest.param(event(title="a\u2067b"), "invalid_title", id="title-bidi-isolate"),
    pytest.param(event(url="/a\u200bb"), "invalid_url", id="url-zero-width-space"),
    pytest.param(event(url="https://e.example\uff0fx/a"), "invalid_url", id="url-fullwidth-host"),
    pytest.param(event(url=7), "invalid_url", id="url-number"),
    pytest.param(event(url=""), "invalid_url", id="url-empty"),
    pytest.param(event(url="ftp://example.com/a"), "invalid_url", id="url-ftp"),
    pytest.param(event(url="javascript:alert(1)"), "invalid_url", id="url-javascript"),
    pytest.param(event(url="//evil.example/a"), "invalid_url", id="url-protocol-relative"),
    pytest.param(event(url="/a b"), "invalid_url", id="url-whitespace"),
    pytest.param(event(url="/a\x00b"), "invalid_url", id="url-control-char"),
    pytest.param(event(url="/a\x7fb"), "invalid_url", id="url-delete-char"),
    pytest.param(event(url="/a\x9bb"), "invalid_url", id="url-c1-control-char"),
    # A browser reads "\" as "/": this is //evil.example/a, another site.
    pytest.param(event(url="/\\evil.example/a"), "invalid_url", id="url-backslash"),
    pytest.param(event(url="/" + "u" * 2048), "invalid_url", id="url-2049-chars"),
    pytest.param(event(visitor_id="v" * 129), "invalid_visitor_id", id="visitor-id-too-long"),
    pytest.param(event(user_agent=""), "invalid_user_agent", id="user-agent-empty"),
    pytest.param(event(user_agent="u" * 1025), "invalid_user_agent", id="user-agent-1025-chars"),
    pytest.param(event(user_agent=["Googlebot"]), "invalid_user_agent", id="user-agent-list"),
    # Invalid is invalid, whoever sent it: a bot's bad event is rejected, not excluded.
    pytest.param(
        event(user_agent=CRAWLERS["googlebot"], weight=0), "invalid_weight", id="bot-bad-weight"
    ),
    pytest.param({}, "invalid_article_id", id="empty-object"),
    pytest.param([event()], "not_an_object", id="nested-array"),
    pytest.param(1, "not_an_object", id="number-element"),
    pytest.param("a1", "not_an_object", id="string-element"),
    pytest.param(None, "not_an_object", id="null-element"),
    pytest.param(True, "not_an_object", id="bool-element"),
]


@pytest.mark.parametrize(("item", "expected"), ACCEPTED)
def test_valid_event_is_accepted(item: dict[str, Any], expected: View) -> None:
    parsed = parse_one(item)
    assert parsed.rejected == []
    assert parsed.views == [expected]
    assert type(parsed.views[0][3]) is float
    assert type(parsed.views[0][2]) is float


@pytest.mark.parametrize(("item", "code"), REJECTED)
def test_invalid_event_is_rejected_alone(item: object, code: str) -> None:
    # Wrapped between two good events: the bad one goes, its neighbours stay.
    first, last = event(article_id="first"), event(article_id="last", section="sports")
    parsed = parse(orjson.dumps([first, item, last]))
    assert [v[0] for v in parsed.views] == ["first", "last"]
    assert [(r.index, r.code) for r in parsed.rejected] == [(1, code)]
    assert parsed.rejected[0].message
    assert "a1" not in parsed.metadata


@pytest.mark.parametrize(
    ("user_agent", "reason"),
    [
        *((ua, CRAWLER) for ua in CRAWLERS.values()),
        *((ua, HEADLESS_BROWSER) for ua in HEADLESS_BROWSERS.values()),
    ],
)
def test_a_bots_event_is_excluded_with_its_reason_and_not_rejected(
    user_agent: str, reason: str
) -> None:
    first, last = event(article_id="first"), event(article_id="last", section="sports")
    bot = event(user_agent=user_agent, title="A bot's title", url="/bot")
    parsed = parse(orjson.dumps([first, bot, last]))
    assert [v[0] for v in parsed.views] == ["first", "last"]
    assert parsed.rejected == []
    assert parsed.excluded == [Exclusion(1, reason)]
    assert "a1" not in parsed.metadata, "a bot's title and url are not taken either"


def test_a_user_agent_of_1024_characters_is_taken() -> None:
    parsed = parse_one(event(user_agent=BROWSERS["firefox-linux"].ljust(1024, "x")))
    assert parsed.views == [("a1", "national", NOW, 1.0)]


def test_single_object_body_is_one_event() -> None:
    parsed = parse(orjson.dumps(event(weight=3)))
    assert parsed.views == [("a1", "national", NOW, 3.0)]
    assert parsed.rejected == []


def test_json_array_keeps_order_and_duplicates() -> None:
    items = [event(article_id="b"), event(article_id="a", section="sports"), event(article_id="b")]
    parsed = parse(orjson.dumps(items))
    assert parsed.views == [
        ("b", "national", NOW, 1.0),
        ("a", "sports", NOW, 1.0),
        ("b", "national", NOW, 1.0),
    ]


def test_empty_array_is_nothing() -> None:
    assert parse(b"[]") == ParsedEvents()


@pytest.mark.parametrize(
    "content_type", [NDJSON, "application/ndjson", "application/jsonl"], ids=lambda ct: ct
)
def test_ndjson_skips_blank_lines(content_type: str) -> None:
    body = (
        b'\n{"article_id":"a","section":"national"}\n\n  \t \r\n'
        b'{"article_id":"b","section":"sports"}\n'
    )
    parsed = parse(body, content_type)
    assert parsed.views == [("a", "national", NOW, 1.0), ("b", "sports", NOW, 1.0)]
    assert parsed.rejected == []


@pytest.mark.parametrize(
    ("bad_line", "code"),
    [
        pytest.param(b'{"article_id": "x",', "invalid_json", id="truncated"),
        pytest.param(b"not json", "invalid_json", id="text"),
        pytest.param(b'{"article_id":"x","weight":NaN}', "invalid_json", id="nan"),
        pytest.param(b'{"article_id":"x","weight":1e400}', "invalid_json", id="1e400"),
        pytest.param(b"42", "not_an_object", id="scalar-line"),
        pytest.param(b'{"article_id":"x","title":"\xff"}', "invalid_json", id="invalid-utf-8"),
        pytest.param(b'{"article_id":"x","section":"weather"}', "unknown_section", id="bad-event"),
    ],
)
def test_ndjson_bad_line_is_rejected_alone_at_its_index(bad_line: bytes, code: str) -> None:
    # Blank lines do not count: the bad line is the second non-blank line (index 1), not line 3.
    body = b"\n".join(
        [
            b"",
            b'{"article_id":"a","section":"national"}',
            b"",
            bad_line,
            b'{"article_id":"b","section":"sports","title":"B"}',
        ]
    )
    parsed = parse(body, NDJSON)
    assert [v[0] for v in parsed.views] == ["a", "b"]
    assert [(r.index, r.code) for r in parsed.rejected] == [(1, code)]
    assert parsed.metadata == {"b": ("B", None)}


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"], ids=["u2028", "u2029", "nel"])
def test_ndjson_splits_only_on_newlines(separator: str) -> None:
    line = orjson.dumps(event(visitor_id=f"first{separator}second"))
    assert separator.encode("utf-8") in line  # orjson leaves it raw, as JSON allows
    parsed = parse(line + b"\n" + orjson.dumps(event(article_id="b")), NDJSON)
    assert [v[0] for v in parsed.views] == ["a1", "b"]
    assert parsed.rejected == []


def test_korean_title_is_kept_byte_for_byte() -> None:
    url = "https://www.example.co.kr/news/%EB%B6%81%ED%95%9C?id=1"
    parsed = parse(orjson.dumps(event(title=KOREAN_TITLE, url=url)))
    title, got_url = parsed.metadata["a1"]
    assert title is not None
    assert title.encode("utf-8") == KOREAN_TITLE.encode("utf-8")
    assert got_url == url


def test_first_title_and_url_per_article_fill_metadata() -> None:
    items = [
        event(article_id="a"),
        event(article_id="a", title="A first", url="https://example.com/a1"),
        event(article_id="a", title="A second", url="https://example.com/a2"),
        event(article_id="b", url="/b"),
        event(article_id="c", title="rejected", weight=0),
        event(article_id="c", title="C kept"),
        event(article_id="d"),
    ]
    parsed = parse(orjson.dumps(items))
    assert parsed.metadata == {
        "a": ("A first", "https://example.com/a1"),
        "b": (None, "/b"),
        "c": ("C kept", None),
    }


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [
        pytest.param(JSON, "utf-8", id="json-utf-8"),
        pytest.param(JSON, "UTF-8", id="json-UTF-8"),
        pytest.param(JSON, "utf8", id="json-utf8"),
        pytest.param(JSON, None, id="json-no-charset"),
        pytest.param(NDJSON, "utf-8", id="ndjson-utf-8"),
    ],
)
def test_utf8_charsets_are_accepted(content_type: str, charset: str | None) -> None:
    parsed = parse(orjson.dumps(event(title=KOREAN_TITLE)), content_type, charset)
    assert parsed.views == [("a1", "national", NOW, 1.0)]


@pytest.mark.parametrize(
    ("content_type", "charset", "body", "error"),
    [
        pytest.param(JSON, "latin-1", b"[]", UnsupportedMediaType, id="charset-latin-1"),
        pytest.param(JSON, "iso-8859-1", b"[]", UnsupportedMediaType, id="charset-iso-8859-1"),
        pytest.param(JSON, "utf-16", b"[]", UnsupportedMediaType, id="charset-utf-16"),
        pytest.param(NDJSON, "euc-kr", b"", UnsupportedMediaType, id="ndjson-charset-euc-kr"),
        pytest.param("text/plain", None, b"[]", UnsupportedMediaType, id="text-plain"),
        pytest.param("application/xml", None, b"[]", UnsupportedMediaType, id="xml"),
        pytest.param("application/octet-stream", None, b"[]", UnsupportedMediaType, id="octet"),
        pytest.param("", None, b"[]", UnsupportedMediaType, id="empty-content-type"),
        pytest.param("application/json-seq", None, b"[]", UnsupportedMediaType, id="json-seq"),
        pytest.param(JSON, None, b"", InvalidJson, id="empty-body"),
        pytest.param(JSON, None, b"not json", InvalidJson, id="not-json"),
        pytest.param(JSON, None, b'[{"article_id":"a1",', InvalidJson, id="truncated"),
        pytest.param(JSON, None, b'[{"a":1}] x', InvalidJson, id="trailing-garbage"),
        pytest.param(JSON, None, b"[NaN]", InvalidJson, id="nan-literal"),
        pytest.param(JSON, None, b'[{"weight":1e400}]', InvalidJson, id="1e400"),
        pytest.param(JSON, None, b'[{"title":"\xff"}]', InvalidJson, id="invalid-utf-8"),
        pytest.param(JSON, None, b"42", InvalidBody, id="number"),
        pytest.param(JSON, None, b'"a1"', InvalidBody, id="string"),
        pytest.param(JSON, None, b"null", InvalidBody, id="null"),
        pytest.param(JSON, None, b"true", InvalidBody, id="bool"),
    ],
)
def test_unreadable_body_is_rejected_whole(
    content_type: str, charset: str | None, body: bytes, error: type[RankerError]
) -> None:
    with pytest.raises(RankerError) as exc_info:
        parse(body, content_type, charset)
    assert type(exc_info.value) is error
    assert exc_info.value.message


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        pytest.param(UnsupportedMediaType, 415, "unsupported_media_type", id="415"),
        pytest.param(InvalidJson, 400, "invalid_json", id="invalid-json"),
        pytest.param(InvalidBody, 400, "invalid_body", id="invalid-body"),
    ],
)
def test_body_errors_carry_status_and_code(
    error: type[RankerError], status: int, code: str
) -> None:
    assert (error.status, error.code) == (status, code)


def reference_parse(
    items: list[Any],
) -> tuple[list[View], list[tuple[int, str]], list[Exclusion]]:
    """What parse_events must give, from _validate alone, event by event (no fast path)."""
    views: list[View] = []
    rejected: list[tuple[int, str]] = []
    excluded: list[Exclusion] = []
    metadata: dict[str, tuple[str | None, str | None]] = {}
    for index, item in enumerate(items):
        try:
            views.append(_validate(item, NOW, NOW + MAX_FUTURE_S, SECTIONS, metadata))
        except _Rejected as exc:
            rejected.append((index, exc.code))
        except _Excluded as exc:
            excluded.append(Exclusion(index, exc.reason))
    return views, rejected, excluded


FIELD_VALUES: dict[str, list[Any]] = {
    "article_id": ["a1", "a2", "", "x" * 129, "a b", 5, None, [1], {"a": 1}, "기사"],
    "section": ["national", "sports", "weather", 5, None, ["national"], {"s": 1}],
    "ts": [NOW, NOW - 10.5, NOW + 300, NOW + 301, 0.0, -1.0, 0, int(NOW), "1", None, True, [1]],
    "weight": [1.0, 0.5, 1000.0, 1000.5, 0.0, -1.0, 2, 0, None, False, "2", {"w": 1}],
    "title": ["T", "", 5, None],
    "url": ["/a", "ftp://x", None],
    "visitor_id": ["v", "", None],
    "user_agent": [
        BROWSERS["chrome-windows"],
        CRAWLERS["googlebot"],
        HEADLESS_BROWSERS["headless-chrome"],
        "",
        5,
        None,
    ],
    "extra": [1, None],
}


def test_the_fast_path_agrees_with_the_full_validation_on_every_event() -> None:
    rng = random.Random(20261128)
    items: list[Any] = [1, "a1", None, [event()]]
    for _ in range(5000):
        item: dict[str, Any] = {}
        for name, values in FIELD_VALUES.items():
            # The core fields are usually there; the others rarely.
            if rng.random() < (0.95 if name in ("article_id", "section") else 0.25):
                # Mostly one of the first values of each list, which are valid.
                item[name] = rng.choice(values[:2] if rng.random() < 0.8 else values)
        items.append(item)
    # Twice: the second time every valid id is known, so the fast path takes more events.
    for _ in range(2):
        parsed = parse(orjson.dumps(items))
        views, rejected, excluded = reference_parse(orjson.loads(orjson.dumps(items)))
        assert parsed.views == views
        assert [(r.index, r.code) for r in parsed.rejected] == rejected
        assert parsed.excluded == excluded
        assert all(type(ts) is float and type(weight) is float for _, _, ts, weight in views)
    assert len(views) > 1000
    assert len(rejected) > 1000
    assert {exclusion.reason for exclusion in excluded} == {CRAWLER, HEADLESS_BROWSER}


PLAIN_VALUES: dict[str, list[Any]] = {
    name: [value for value in FIELD_VALUES[name] if type(value) in types]
    for name, types in (
        ("article_id", {str}),
        ("section", {str}),
        ("ts", {float, int, type(None)}),
        ("weight", {float, int, type(None)}),
    )
}
"""The values a plain event's fields may take (a string; a number or null), valid or not."""


@pytest.mark.parametrize("seed", range(3))
def test_a_plain_batch_agrees_with_the_full_validation_on_every_event(seed: int) -> None:
    """Bodies of the four plain fields only, with every kind of value they may hold: read as
    plain events (ranker.ingest.framing.plain_events), and accepted and rejected as
    ``_validate`` does event by event; the same with one event of another shape, which sends
    the body the general way."""
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    for _ in range(2000):
        item: dict[str, Any] = {}
        for name, values in PLAIN_VALUES.items():
            if name in ("article_id", "section") or rng.random() < 0.5:
                item[name] = rng.choice(values[:2] if rng.random() < 0.8 else values)
        if rng.random() < 0.05:
            item["article_id"] = f"new-{rng.randrange(10**9)}"  # never seen before
        items.append(item)
    for body_items in (items, [*items, {"article_id": "a1", "section": "national", "x": 1}]):
        body = orjson.dumps(body_items)
        views, rejected, excluded = reference_parse(orjson.loads(body))
        parsed = parse(body)
        assert parsed.views == views
        assert [(r.index, r.code) for r in parsed.rejected] == rejected
        assert parsed.excluded == excluded == []
        assert all(type(ts) is float and type(weight) is float for _, _, ts, weight in views)
    assert plain_events(orjson.dumps(items)) is not None
    assert len(views) > 500
    assert len(rejected) > 100


def test_a_plain_batch_past_the_limit_is_refused_whole() -> None:
    body = orjson.dumps([event() for _ in range(11)])
    with pytest.raises(TooManyEvents, match="at most 10 events; this one has 11"):
        parse_events(body, JSON, None, now=NOW, sections=SECTIONS, max_events=10)


def test_the_views_that_carry_a_visitor_id_are_listed_with_it() -> None:
    body = orjson.dumps(
        [
            event(article_id="anonymous"),
            event(visitor_id="v-1"),
            event(article_id="bad id", visitor_id="v-2"),  # rejected: not among the views
            event(article_id="null-visitor", visitor_id=None),
            event(article_id="b2", visitor_id="v-1"),
        ]
    )
    parsed = parse(body)
    assert [view[0] for view in parsed.views] == ["anonymous", "a1", "null-visitor", "b2"]
    assert parsed.visitors == [(1, "v-1"), (3, "v-1")]


def test_an_ndjson_body_over_the_limit_is_refused_at_the_first_line_past_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1 MiB of bad lines: 524,288 of them. Parsing them all took the worker 2.5 s before the
    # count was checked; now no line past the limit is even parsed.
    parsed_lines = 0
    loads = orjson.loads

    def counting_loads(line: bytes) -> Any:
        nonlocal parsed_lines
        parsed_lines += 1
        return loads(line)

    monkeypatch.setattr(orjson, "loads", counting_loads)
    with pytest.raises(TooManyEvents):
        parse_events(b"x\n" * 524_288, NDJSON, None, now=NOW, sections=SECTIONS, max_events=1000)
    assert parsed_lines <= 1000  # 524,288 before; now the first hundred only


def test_an_ndjson_body_of_blank_lines_is_no_event() -> None:
    assert parse(b" \r\n\t\n" * 100_000 + b"\n" * 100_000, NDJSON) == ParsedEvents()


def test_every_bad_ndjson_line_is_reported_and_only_the_first_hundred_quote_the_parser() -> None:
    parsed = parse(b"x\n" * 300 + b'{"article_id":"a","section":"national"}\n', NDJSON)
    assert [r.index for r in parsed.rejected] == list(range(300))
    assert {r.code for r in parsed.rejected} == {"invalid_json"}
    detailed = [r.message for r in parsed.rejected[:MAX_DETAILED_BAD_LINES]]
    assert all(m.startswith("line is not valid JSON: ") for m in detailed)
    rest = {r.message for r in parsed.rejected[MAX_DETAILED_BAD_LINES:]}
    assert rest == {"line is not valid JSON"}
    assert parsed.views == [("a", "national", NOW, 1.0)]


def test_bad_ndjson_lines_past_the_first_hundred_keep_their_codes() -> None:
    # Past the first hundred, a line no JSON value can start is rejected without the parser;
    # one that could is still parsed: each keeps the code the parser would give.
    lines = [b"x"] * MAX_DETAILED_BAD_LINES + [b"x", b"{x", b"42", b' "s"', b"nul", b"[1]"]
    parsed = parse(b"\n".join(lines), NDJSON)
    codes = [(r.index, r.code) for r in parsed.rejected[MAX_DETAILED_BAD_LINES:]]
    first = MAX_DETAILED_BAD_LINES
    assert codes == [
        (first, "invalid_json"),
        (first + 1, "invalid_json"),
        (first + 2, "not_an_object"),
        (first + 3, "not_an_object"),
        (first + 4, "invalid_json"),
        (first + 5, "not_an_object"),
    ]
