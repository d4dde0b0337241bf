"""Unit tests of ``ranker.ingest.framing.plain_events``: which JSON bodies are read as plain
events, and that they are read as orjson reads them (the general way)."""

from __future__ import annotations

import gc

import orjson
import pytest

from ranker.ingest.framing import PlainEvent, plain_events


def test_a_batch_of_plain_events_is_read_with_its_times_and_weights_as_floats() -> None:
    body = orjson.dumps(
        [
            {"article_id": "a1", "section": "national"},
            {"article_id": "a2", "section": "sports", "ts": 1_800_000_000, "weight": 2},
            {"article_id": "a3", "section": "sports", "ts": 1.5, "weight": None},
        ]
    )
    events = plain_events(body)
    assert events == [
        PlainEvent("a1", "national"),
        PlainEvent("a2", "sports", 1_800_000_000.0, 2.0),
        PlainEvent("a3", "sports", 1.5, None),
    ]
    assert events is not None
    types = [(type(e.ts), type(e.weight)) for e in events[1:]]
    assert types == [(float, float), (float, type(None))]


def test_plain_events_are_not_tracked_by_the_garbage_collector() -> None:
    events = plain_events(b'[{"article_id": "a1", "section": "national"}]')
    assert events is not None
    assert not gc.is_tracked(events[0])


def test_the_last_of_duplicate_keys_counts_as_orjson_reads_it() -> None:
    body = b'[{"article_id": "a1", "article_id": "a2", "section": "national"}]'
    assert plain_events(body) == [PlainEvent("a2", "national")]
    assert orjson.loads(body)[0]["article_id"] == "a2"


@pytest.mark.parametrize(
    "body",
    [
        b'{"article_id": "a1", "section": "national"}',  # one object, not an array
        b'[{"article_id": "a1", "section": "national", "title": "T"}]',  # another field
        b'[{"article_id": "a1", "section": "national", "extra": null}]',
        b'[{"article_id": "a1"}]',  # no section
        b'[{"article_id": 5, "section": "national"}]',
        b'[{"article_id": "a1", "section": "national", "ts": true}]',  # a bool is no number
        b'[{"article_id": "a1", "section": "national", "ts": "1"}]',
        b'[{"article_id": "a1", "section": "national", "weight": [1]}]',
        b'[{"article_id": "a1", "section": "national", "ts": 1e400}]',  # no finite double
        b'[{"article_id": "a1", "section": "national"}, 5]',
        b'[{"article_id": "\\ud800", "section": "national"}]',  # a lone surrogate
        b'[{"article_id": "a\xff", "section": "national"}]',  # not UTF-8
        b'\xef\xbb\xbf[{"article_id": "a1", "section": "national"}]',  # a BOM
        b'[{"article_id": "a1", "section": "national"}] x',
        b"[",
        b"",
    ],
)
def test_any_other_body_is_left_to_the_general_way(body: bytes) -> None:
    assert plain_events(body) is None
