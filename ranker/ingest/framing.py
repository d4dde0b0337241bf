"""An event body's framing: a JSON object or array, or NDJSON lines, into the items the parser
validates one by one. An NDJSON line that is no JSON stands in its place as a :class:`BadLine`.
A JSON array of events of the shape analytics sends all day is decoded straight into
:class:`PlainEvent` records (:func:`plain_events`), typed in C rather than as dicts checked in
Python."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson

from ranker.errors import InvalidBody, InvalidJson, TooManyEvents

__all__ = [
    "BAD_LINE",
    "JSON_TYPES",
    "MAX_DETAILED_BAD_LINES",
    "NDJSON_TYPES",
    "BadLine",
    "PlainEvent",
    "check_count",
    "json_items",
    "ndjson_items",
    "plain_events",
]

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})


class PlainEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An event with nothing but its article, its section and, perhaps, its time and weight:
    what analytics sends all day. Types only: its values are checked as any event's are. Not
    tracked by the garbage collector (it holds no containers), so a batch of them does not set
    off collections as a batch of dicts does."""

    article_id: str
    section: str
    ts: float | None = None
    weight: float | None = None


_PLAIN_BATCH = msgspec.json.Decoder(list[PlainEvent])


def plain_events(body: bytes) -> list[PlainEvent] | None:
    """A JSON body's events when it is an array of plain events only (:class:`PlainEvent`: no
    other field, each a string or number as the field takes, a whole number taken as a float);
    None for any other body, valid or not, which :func:`json_items` then reads.

    msgspec decodes and types the array in one pass in C, where orjson made dicts whose
    fields' types were checked in Python: the whole parse takes 0.37 us a view, not 0.57.
    It reads JSON as orjson does (RFC 8259, strict UTF-8, the last of duplicate keys, numbers
    to the nearest double); a body it cannot take whole goes the general way, so what is
    accepted or rejected never depends on which way a body went (tests/ingest/test_parse.py)."""
    try:
        return _PLAIN_BATCH.decode(body)
    except msgspec.DecodeError:  # ValidationError included: a field of another type
        return None


def json_items(body: bytes) -> list[Any]:
    """A JSON body's events: one object, or an array of them."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"body is not valid JSON: {exc}") from None
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        return document
    raise InvalidBody("body must be an event object or an array of event objects")


def check_count(count: int, max_events: int | None) -> None:
    """Raise :class:`TooManyEvents` when a body's ``count`` events are past ``max_events``."""
    if max_events is not None and count > max_events:
        raise TooManyEvents(
            f"a batch may hold at most {max_events} events; this one has {count}. "
            "Send it in smaller batches"
        )


def ndjson_items(body: bytes, items: list[Any], max_events: int | None) -> Iterator[None]:
    """An NDJSON body's events, each non-blank line parsed into ``items``, a line that is no
    JSON as a :class:`BadLine`;
    yields every few hundred lines, so the caller can let other work run. Raises
    :class:`TooManyEvents` at the first line past ``max_events``, whatever follows it."""
    # finditer finds the non-blank lines in C, however many blank ones there are; split on LF
    # alone: JSON strings may hold U+2028 and friends raw, which splitlines() breaks on. Lines
    # are parsed as bytes, so one damaged line (bad UTF-8 included) costs only itself.
    append, loads, bad_lines = items.append, orjson.loads, 0
    for number, line in enumerate(_NON_BLANK_LINE.finditer(body), start=1):
        if max_events is not None and number > max_events:
            raise TooManyEvents(
                f"a batch may hold at most {max_events} events; this one has more. "
                "Send it in smaller batches"
            )
        if not number & 255:
            yield
        if bad_lines >= MAX_DETAILED_BAD_LINES and line.group(1) not in _JSON_STARTS:
            append(BAD_LINE)  # no JSON value starts so: no need to ask the parser
            continue
        try:
            append(loads(line.group()))
        except orjson.JSONDecodeError as exc:
            bad_lines += 1
            # The parser's words for the first few; the same short message for the rest, so
            # a body of bad lines costs no more than one of events.
            if bad_lines <= MAX_DETAILED_BAD_LINES:
                append(BadLine(f"line is not valid JSON: {exc}"))
            else:
                append(BAD_LINE)


_NON_BLANK_LINE = re.compile(rb"(?m)^[^\S\n]*+(\S)[^\n]*")
"""A line with something besides ASCII whitespace (what bytes.strip() removes), its first such
byte as group 1. The leading whitespace is taken possessively: a blank line fails at its end,
never backtracks."""
_JSON_STARTS = frozenset(bytes([byte]) for byte in b'{["-0123456789tfn')
"""The bytes a JSON value can start with (RFC 8259)."""

MAX_DETAILED_BAD_LINES = 100
"""NDJSON lines that are no JSON whose rejection quotes the parser's error; later ones say only
that the line is not valid JSON."""


class BadLine:
    """An NDJSON line that is no JSON, in place of its event: rejected ``invalid_json``."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


BAD_LINE = BadLine("line is not valid JSON")
