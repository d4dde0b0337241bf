"""Parsing and validating page-view event bodies: JSON (one object or an array) or NDJSON.

A malformed body is rejected whole; a malformed event is rejected alone with its index and a
stable code, and the rest of the batch is counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Container, Generator
from dataclasses import dataclass, field
from typing import Any

from ranker.decay import MAX_FUTURE_S
from ranker.errors import UnsupportedMediaType
from ranker.validation import (
    ARTICLE_ID_RE,
    ARTICLE_ID_RULE,
    MAX_TITLE,
    MAX_URL,
    TITLE_FORBIDDEN,
    TITLE_RULE,
    URL_RULE,
    is_valid_url,
)

from .bots import bot_reason
from .framing import (
    JSON_TYPES,
    NDJSON_TYPES,
    BadLine,
    PlainEvent,
    check_count,
    json_items,
    ndjson_items,
    plain_events,
)
from .slices import SLICE_S, run_at_once, run_in_slices

MAX_WEIGHT = 1000.0
MAX_VISITOR_ID = 128
MAX_USER_AGENT = 1024
REJECTION_CODES = (
    "invalid_json",
    "not_an_object",
    "invalid_article_id",
    "invalid_section",
    "unknown_section",
    "invalid_ts",
    "future_ts",
    "invalid_weight",
    "invalid_visitor_id",
    "invalid_title",
    "invalid_url",
    "invalid_user_agent",
)
"""Every code an event may be rejected with: the label set of the rejected-events metric, whose
series start at 0 (tests/test_metrics.py checks the list against this module's code)."""

_CLOCK_EVERY = 255  # the fast path reads the clock every 256 events, the slow one after each


View = tuple[str, str, float, float]
"""One accepted page view: (article_id, section, ts, weight). A plain tuple, not a class: ingest
makes one per event, and a NamedTuple costs several times as much to create."""


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A valid event not counted: it came from a bot (``reason`` is one of ``bots.REASONS``).
    A reader's repeat views are no Exclusion: they are found after parsing, in Redis (dedup)."""

    index: int
    reason: str


@dataclass(slots=True)
class ParsedEvents:
    views: list[View] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    # (index into views, visitor id) for the accepted views that carry a visitor_id.
    visitors: list[tuple[int, str]] = field(default_factory=list)
    # article id -> (title, url) from the first event that carried either; fills unset metadata.
    metadata: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


class _Rejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Excluded(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_events(
    body: bytes,
    content_type: str,
    charset: str | None,
    *,
    now: float,
    sections: Container[str],
    max_events: int | None = None,
) -> ParsedEvents:
    """Parse a request body into accepted views and per-event rejections, in one go.

    Raises :class:`UnsupportedMediaType`, :class:`InvalidJson`, :class:`InvalidBody` or (past
    ``max_events``) :class:`TooManyEvents` when the body as a whole cannot be taken; then
    nothing of it may be applied.
    """
    return run_at_once(_parsing(body, content_type, charset, now, sections, max_events, math.inf))


async def parse_events_yielding(
    body: bytes,
    content_type: str,
    charset: str | None,
    *,
    now: float,
    sections: Container[str],
    max_events: int | None = None,
    slice_s: float = SLICE_S,
) -> ParsedEvents:
    """:func:`parse_events`, letting the event loop run other requests every ``slice_s`` of
    work: a 1 MiB body of distinct, long user agents or of bad NDJSON lines takes tens of
    milliseconds, which no other request should wait for."""
    return await run_in_slices(
        _parsing(body, content_type, charset, now, sections, max_events, slice_s)
    )


# The hot path, one function on purpose: a call per event costs ingest measurably.
def _parsing(  # noqa: C901
    body: bytes,
    content_type: str,
    charset: str | None,
    now: float,
    sections: Container[str],
    max_events: int | None,
    slice_s: float,
) -> Generator[None, None, ParsedEvents]:
    """The parse, as steps of about ``slice_s`` of work each (one, with math.inf)."""
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"charset {charset!r} is not supported; send UTF-8")
    slice_end = time.perf_counter() + slice_s
    if content_type in JSON_TYPES:
        plain = plain_events(body)
        if plain is not None:
            check_count(len(plain), max_events)
            return (yield from _plain_parsing(plain, now, sections, slice_s))
        items = json_items(body)
    elif content_type in NDJSON_TYPES:
        items = []
        for _ in ndjson_items(body, items, max_events):
            if time.perf_counter() > slice_end:
                yield
                slice_end = time.perf_counter() + slice_s
    else:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; "
            "send application/json or application/x-ndjson"
        )
    check_count(len(items), max_events)
    parsed = ParsedEvents()
    max_ts = now + MAX_FUTURE_S
    accept, metadata = parsed.views.append, parsed.metadata
    known_ids = _KNOWN_ARTICLE_IDS
    for index, item in enumerate(items):
        if not index & _CLOCK_EVERY and time.perf_counter() > slice_end:
            yield
            slice_end = time.perf_counter() + slice_s
        # The fast path: the shape analytics sends all day (article_id, section, and ts and
        # weight absent or floats in range; an article id seen before) is accepted inline, for
        # NDJSON and for JSON with other fields than these (_plain_parsing takes the rest). It
        # accepts a subset of what _validate does, with the same result (a test holds them
        # to that); everything else, including every rejection, goes through _validate.
        if type(item) is dict:
            article_id, section = item.get("article_id"), item.get("section")
            ts, weight = item.get("ts"), item.get("weight")
            fields = 2  # the fields read here: any other (title, url, ...) takes _validate
            if ts is None:
                ts = now
            else:
                fields += 1
            if weight is None:
                weight = 1.0
            else:
                fields += 1
            if (
                len(item) == fields
                and type(article_id) is str
                and article_id in known_ids
                and type(section) is str
                and section in sections
                and type(ts) is float
                and 0.0 <= ts <= max_ts
                and type(weight) is float
                and 0.0 < weight <= MAX_WEIGHT
            ):
                accept((article_id, section, ts, weight))
                continue
        try:
            if type(item) is BadLine:
                raise _Rejected("invalid_json", item.message)
            accept(_validate(item, now, max_ts, sections, metadata))
            # A valid event, so a dict with a valid visitor_id if any; never the fast path's.
            visitor_id = item.get("visitor_id")
            if visitor_id is not None:
                parsed.visitors.append((len(parsed.views) - 1, visitor_id))
        except _Rejected as exc:
            parsed.rejected.append(Rejection(index, exc.code, exc.message))
        except _Excluded as exc:
            parsed.excluded.append(Exclusion(index, exc.reason))
        if time.perf_counter() > slice_end:
            yield
            slice_end = time.perf_counter() + slice_s
    return parsed


def _plain_parsing(
    events: list[PlainEvent], now: float, sections: Container[str], slice_s: float
) -> Generator[None, None, ParsedEvents]:
    """:func:`_parsing` of a batch of plain events: typed already, so only their values are
    checked, inline, as the general way's fast path does; an event that fails any check (an
    article id not seen before included) goes through ``_validate``, as there."""
    parsed = ParsedEvents()
    max_ts = now + MAX_FUTURE_S
    accept, known_ids = parsed.views.append, _KNOWN_ARTICLE_IDS
    slice_end = time.perf_counter() + slice_s
    for index, event in enumerate(events):
        if not index & _CLOCK_EVERY and time.perf_counter() > slice_end:
            yield
            slice_end = time.perf_counter() + slice_s
        article_id, section, ts, weight = event.article_id, event.section, event.ts, event.weight
        if ts is None:
            ts = now
        if weight is None:
            weight = 1.0
        if (
            article_id in known_ids
            and section in sections
            and 0.0 <= ts <= max_ts
            and 0.0 < weight <= MAX_WEIGHT
        ):
            accept((article_id, section, ts, weight))
            continue
        # As the general way would read it: a field sent as null is one not sent.
        item = {
            "article_id": article_id,
            "section": section,
            "ts": event.ts,
            "weight": event.weight,
        }
        try:
            accept(_validate(item, now, max_ts, sections, parsed.metadata))
        except _Rejected as exc:
            parsed.rejected.append(Rejection(index, exc.code, exc.message))
    return parsed


def merge_metadata(
    metadata: dict[str, tuple[str | None, str | None]],
    article_id: str,
    title: str | None,
    url: str | None,
) -> None:
    """Keep the first title and the first url seen for an article, each on its own."""
    known_title, known_url = metadata.get(article_id, (None, None))
    metadata[article_id] = (known_title or title, known_url or url)


_KNOWN_ARTICLE_IDS: set[str] = set()
"""Article ids already found valid: the same few thousand arrive all day long, and a set lookup
costs a fraction of a regex match. A memo of a pure check, bounded by MAX_KNOWN_ARTICLE_IDS."""

MAX_KNOWN_ARTICLE_IDS = 100_000


def _known_article_id(value: str) -> bool:
    if value in _KNOWN_ARTICLE_IDS:
        return True
    if ARTICLE_ID_RE.fullmatch(value) is None:
        return False
    if len(_KNOWN_ARTICLE_IDS) >= MAX_KNOWN_ARTICLE_IDS:
        _KNOWN_ARTICLE_IDS.clear()  # starts over; a rare regex match is all it costs
    _KNOWN_ARTICLE_IDS.add(value)
    return True


def _number(value: object) -> float | None:
    # orjson gives exact ints and floats only, never NaN or infinity, but be sure; bool is an
    # int to Python but never a number to a sender.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return None


def _optional_text(event: dict[str, Any], name: str, max_len: int) -> str | None:
    value = event.get(name)
    if value is None:
        return None
    if type(value) is not str or not 0 < len(value) <= max_len:
        raise _Rejected(f"invalid_{name}", f"{name} must be a string of 1-{max_len} characters")
    return value


# The hot path, one function on purpose: a helper call per field costs ingest measurably.
def _validate(  # noqa: C901
    event: object,
    now: float,
    max_ts: float,
    sections: Container[str],
    metadata: dict[str, tuple[str | None, str | None]],
) -> View:
    """One event's view; its title and url, if any, are merged into ``metadata``.

    Raises ``_Rejected`` for an invalid event and, for a valid one sent by a bot, ``_Excluded``
    (its title and url are not taken either).
    """
    # Runs once per event, the hottest code of ingest: exact type checks, no helper calls
    # on the common path, a plain tuple out.
    if type(event) is not dict:
        raise _Rejected("not_an_object", "event must be a JSON object")

    article_id = event.get("article_id")
    if type(article_id) is not str or len(article_id) > 128 or not _known_article_id(article_id):
        raise _Rejected("invalid_article_id", f"article_id must be {ARTICLE_ID_RULE}")

    section = event.get("section")
    if type(section) is not str:
        raise _Rejected("invalid_section", "section must be a string")
    if section not in sections:
        raise _Rejected("unknown_section", f"section {section[:64]!r} is not configured")

    raw_ts = event.get("ts")
    if raw_ts is None:
        ts = now
    else:
        number = _number(raw_ts)
        if number is None or number < 0:
            raise _Rejected(
                "invalid_ts", "ts must be a finite, non-negative number of epoch seconds"
            )
        if number > max_ts:
            raise _Rejected("future_ts", f"ts is more than {MAX_FUTURE_S:g} s in the future")
        ts = number

    raw_weight = event.get("weight")
    if raw_weight is None:
        weight = 1.0
    else:
        number = _number(raw_weight)
        if number is None or not 0 < number <= MAX_WEIGHT:
            raise _Rejected(
                "invalid_weight", f"weight must be a number above 0 and at most {MAX_WEIGHT:g}"
            )
        weight = number

    if "visitor_id" in event:
        _optional_text(event, "visitor_id", MAX_VISITOR_ID)
    title = url = None
    if "title" in event or "url" in event:
        title = _optional_text(event, "title", MAX_TITLE)
        if title is not None and TITLE_FORBIDDEN.search(title) is not None:
            raise _Rejected("invalid_title", TITLE_RULE)
        url = _optional_text(event, "url", MAX_URL)
        if url is not None and not is_valid_url(url):
            raise _Rejected("invalid_url", URL_RULE)
    user_agent = event.get("user_agent")
    if user_agent is not None:
        # Inline, not _optional_text: sent with every event by some trackers. Checked last: a
        # bot's event that is also invalid is rejected, as any invalid event.
        if type(user_agent) is not str or not 0 < len(user_agent) <= MAX_USER_AGENT:
            raise _Rejected(
                "invalid_user_agent",
                f"user_agent must be a string of 1-{MAX_USER_AGENT} characters",
            )
        reason = bot_reason(user_agent)
        if reason is not None:
            raise _Excluded(reason)
    if title is not None or url is not None:
        merge_metadata(metadata, article_id, title, url)
    return (article_id, section, ts, weight)
