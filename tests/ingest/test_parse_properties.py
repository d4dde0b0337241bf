"""Properties of ``ranker.ingest.parse.parse_events`` over generated input (hypothesis).

tests/ingest/test_parse.py holds the worked examples; these hold for every body, content type and
charset hypothesis can think of: only the three body errors escape, every accepted view is sound,
accepted, rejected and excluded (bots') events partition the batch, JSON and NDJSON agree, and
the fast path agrees with the full validation.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranker.errors import InvalidBody, InvalidJson, UnsupportedMediaType
from ranker.ingest import parse as events
from ranker.ingest.bots import REASONS, bot_reason
from ranker.ingest.framing import JSON_TYPES, NDJSON_TYPES
from ranker.ingest.parse import MAX_WEIGHT, ParsedEvents, parse_events
from ranker.validation import MAX_TITLE
from tests.ingest.test_parse import reference_parse
from tests.support.strategies import (
    MAX_TS,
    NOW,
    SECTIONS,
    bad_fields,
    batch_items,
    is_article_id,
    is_site_url,
    is_utf8,
    near_json_bytes,
    titles,
    valid_events,
)

JSON = "application/json"
NDJSON = "application/x-ndjson"
UTF8_CHARSETS = (None, "utf-8", "UTF-8", "utf8", "Utf8")
# What docs/api/events.md promises a rejected event may be labelled with (and so the label values of
# ranker_events_rejected_total: a fixed set, whatever is sent).
EVENT_CODES = frozenset(
    {
        "not_an_object",
        "invalid_json",
        "invalid_article_id",
        "invalid_section",
        "unknown_section",
        "invalid_ts",
        "future_ts",
        "invalid_weight",
        "invalid_visitor_id",
        "invalid_user_agent",
        "invalid_title",
        "invalid_url",
    }
)

Outcome = tuple[list[events.View], list[tuple[int, str, str]], dict[str, Any]]


def parse(body: bytes, content_type: str = JSON, charset: str | None = None) -> ParsedEvents:
    return parse_events(body, content_type, charset, now=NOW, sections=SECTIONS)


def outcome(parsed: ParsedEvents) -> Outcome:
    rejected = [(r.index, r.code, r.message) for r in parsed.rejected]
    return parsed.views, rejected, parsed.metadata


def ndjson(items: list[Any], separator: bytes = b"\n") -> bytes:
    return separator.join(orjson.dumps(item) for item in items)


def expected_view(event: dict[str, Any]) -> events.View:
    ts, weight = event.get("ts"), event.get("weight")
    return (
        event["article_id"],
        event["section"],
        NOW if ts is None else float(ts),
        1.0 if weight is None else float(weight),
    )


def assert_sound(items: list[Any], parsed: ParsedEvents) -> None:
    """What any outcome of any batch must be, whatever the batch held."""
    indices = [r.index for r in parsed.rejected]
    assert indices == sorted(set(indices)), "rejections in order, each event at most once"
    assert all(0 <= index < len(items) for index in indices)
    left_out = [e.index for e in parsed.excluded]
    assert left_out == sorted(set(left_out)), "exclusions in order, each event at most once"
    assert not set(left_out) & set(indices), "an event is rejected or excluded, not both"
    assert {e.reason for e in parsed.excluded} <= set(REASONS)
    for index in left_out:
        assert bot_reason(items[index]["user_agent"]) is not None
    accepted = [i for i in range(len(items)) if i not in {*indices, *left_out}]
    assert len(parsed.views) == len(accepted), "accepted, rejected and excluded partition the batch"
    for index, (article_id, section, ts, weight) in zip(accepted, parsed.views, strict=True):
        assert article_id == items[index]["article_id"]
        assert is_article_id(article_id)
        assert section in SECTIONS
        assert type(ts) is float
        assert math.isfinite(ts)
        assert 0 <= ts <= MAX_TS
        assert type(weight) is float
        assert math.isfinite(weight)
        assert 0 < weight <= MAX_WEIGHT
    assert {r.code for r in parsed.rejected} <= EVENT_CODES
    assert all(r.message for r in parsed.rejected)
    # Metadata: the first title and the first url of each article's accepted events.
    metadata: dict[str, tuple[str | None, str | None]] = {}
    for index in accepted:
        item = items[index]
        title, url = item.get("title"), item.get("url")
        if title is not None or url is not None:
            known_title, known_url = metadata.get(item["article_id"], (None, None))
            metadata[item["article_id"]] = (known_title or title, known_url or url)
    assert parsed.metadata == metadata
    for title, url in metadata.values():
        assert title is None or 0 < len(title) <= MAX_TITLE
        assert url is None or is_site_url(url)


@given(
    body=st.binary(max_size=80) | near_json_bytes() | st.lists(batch_items, max_size=4).map(ndjson),
    content_type=st.sampled_from(sorted(JSON_TYPES | NDJSON_TYPES)) | st.text(max_size=30),
    charset=st.sampled_from(UTF8_CHARSETS) | st.text(max_size=12),
)
def test_any_body_is_parsed_or_refused_with_a_body_error(
    body: bytes, content_type: str, charset: str | None
) -> None:
    readable = content_type in JSON_TYPES | NDJSON_TYPES and is_utf8(charset)
    try:
        parsed = parse(body, content_type, charset)
    except UnsupportedMediaType:
        assert not readable
    except InvalidJson:
        assert readable
        assert content_type in JSON_TYPES
    except InvalidBody:
        assert readable
        assert content_type in JSON_TYPES
        assert type(orjson.loads(body)) not in (dict, list)
    else:
        assert readable
        if content_type in NDJSON_TYPES:
            # A damaged line costs only itself: every non-blank line is one event.
            lines = [line for line in body.split(b"\n") if line.strip()]
            counted = len(parsed.views) + len(parsed.rejected) + len(parsed.excluded)
            assert counted == len(lines)


@given(items=st.lists(batch_items, max_size=12))
def test_every_outcome_is_sound_and_the_fast_path_agrees(items: list[Any]) -> None:
    # Cold (no id known, so nothing takes the fast path) and warm (every valid id known).
    events._KNOWN_ARTICLE_IDS.clear()
    body = orjson.dumps(items)
    sent = orjson.loads(body)  # what the parser sees: ints beyond 2**63 come back as floats
    cold = parse(body)
    warm = parse(body)
    assert_sound(sent, cold)
    assert outcome(warm) == outcome(cold)
    views, rejected, excluded = reference_parse(sent)
    assert cold.views == views
    assert [(r.index, r.code) for r in cold.rejected] == rejected
    assert cold.excluded == excluded


@given(event=valid_events)
def test_a_valid_event_is_accepted_as_sent(event: dict[str, Any]) -> None:
    parsed = parse(orjson.dumps(event))
    assert parsed.rejected == []
    assert parsed.views == [expected_view(event)]
    title, url = event.get("title"), event.get("url")
    if title is None and url is None:
        assert parsed.metadata == {}
    else:
        assert parsed.metadata == {event["article_id"]: (title, url)}


@given(event=valid_events, bad=bad_fields)
def test_one_bad_field_rejects_its_event_alone_with_its_code(
    event: dict[str, Any], bad: tuple[str, Any, str]
) -> None:
    name, value, code = bad
    neighbour = {"article_id": "n", "section": "sports", "title": "N"}
    parsed = parse(orjson.dumps([neighbour, {**event, name: value}, neighbour]))
    assert [(r.index, r.code) for r in parsed.rejected] == [(1, code)]
    assert parsed.views == [("n", "sports", NOW, 1.0)] * 2
    assert parsed.metadata == {"n": ("N", None)}


@given(
    items=st.lists(batch_items, max_size=8),
    separator=st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\n \t\n", b" \n"]),
)
def test_json_and_ndjson_of_the_same_events_agree(items: list[Any], separator: bytes) -> None:
    as_json = outcome(parse(orjson.dumps(items)))
    as_ndjson = outcome(parse(separator + ndjson(items, separator) + separator, NDJSON))
    assert as_ndjson == as_json
    for content_type in sorted(NDJSON_TYPES):
        assert outcome(parse(ndjson(items), content_type)) == as_json


@given(item=batch_items)
def test_a_single_object_body_is_an_array_of_one(item: Any) -> None:
    if isinstance(item, list):
        return  # an array body is a batch, not one event
    try:
        single = outcome(parse(orjson.dumps(item)))
    except InvalidBody:
        assert not isinstance(item, dict)
    else:
        assert single == outcome(parse(orjson.dumps([item])))


@given(title=titles, other=titles)
def test_a_title_comes_through_exactly_and_the_first_one_wins(title: str, other: str) -> None:
    first = {"article_id": "t", "section": "national", "title": title}
    parsed = parse(orjson.dumps([first, {**first, "title": other}]))
    kept = parsed.metadata["t"][0]
    assert kept == title
    assert kept is not None
    assert kept.encode() == title.encode()


@pytest.mark.parametrize("content_type", [JSON, NDJSON])
@given(charset=st.text(max_size=12).filter(lambda charset: not is_utf8(charset)))
def test_every_charset_but_utf8_is_refused(content_type: str, charset: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse(b"[]", content_type, charset)
