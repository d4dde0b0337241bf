"""``ranker.ingest.patterns``: crawlerdetect's patterns written for Hyperscan and cut for the fast
path match where Python's would."""

from __future__ import annotations

import re
from re import _parser as sre_parse

import hyperscan
import pytest

from ranker.ingest.patterns import (
    ANY_RUN,
    ASCII_FOLDS,
    DIGIT,
    LITERAL,
    MATCH,
    OPTIONAL_ANY_RUN,
    RUN,
    compile_database,
    hyperscan_pattern,
    literal_heads,
    matchable,
    tail,
)


def parsed(pattern: str) -> list[tuple[object, object]]:
    return list(sre_parse.parse(pattern).data)


def hyperscan_finds(pattern: str, text: str) -> list[int]:
    """The ends of every match Hyperscan reports of ``pattern`` as written back, in ``text``."""
    database = compile_database([hyperscan_pattern(parsed(pattern))], [hyperscan.HS_FLAG_CASELESS])
    ends: list[int] = []

    def on_match(_id: int, _from: int, to: int, _flags: int, _context: object) -> None:
        ends.append(to)

    database.scan(matchable(text), match_event_handler=on_match)
    return ends


def test_the_only_non_ascii_characters_ignorecase_takes_for_ascii_letters_are_the_four() -> None:
    every = "".join(chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c <= 0xDFFF)
    folded = re.findall("[a-z]", every, re.IGNORECASE)
    assert {ord(c) for c in folded} == set(ASCII_FOLDS)
    for code_point, letter in ASCII_FOLDS.items():
        assert re.fullmatch(letter, chr(code_point), re.IGNORECASE)
    # And \d is str.isdecimal, which _Classes asks.
    assert re.findall(r"\d", every) == [c for c in every if c.isdecimal()]


def test_matchable_keeps_offsets_one_byte_a_character() -> None:
    text = "Mozilla/5.0 (Linux; 안드로이드 \u0661\u0664) KAKAOTALK \u0130"
    data = matchable(text)
    assert len(data) == len(text)
    assert data[text.index("\u0661")] == ord(DIGIT)
    assert data[-1:] == b"i"
    assert data.startswith(b"Mozilla/5.0 (Linux; ")


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        (r"Chrome/[\d\.]*", "x Chrome/131.0 y", True),
        (r"Chrome/[\d\.]*", "x Chrom/131.0 y", False),
        (r"Version/\d+", "Version/\u0661\u0668", True),  # Python's \d takes any decimal digit
        (r"(?:Mobile|Tablet);", "mobile;", True),
        (r"^curl", "xcurl", False),
        (r"^curl", "curl/8", True),
        (r"Kelvin", "\u212aelvin", True),  # KELVIN SIGN folds onto k in Python's IGNORECASE
    ],
)
def test_a_written_back_pattern_finds_what_pythons_finds(
    pattern: str, text: str, found: bool
) -> None:
    assert bool(re.search(pattern, text, re.IGNORECASE)) is found
    assert bool(hyperscan_finds(pattern, text)) is found


def test_a_construct_the_lists_do_not_use_is_refused_at_translation() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        hyperscan_pattern(parsed(r"(?<=a)b"))
    with pytest.raises(ValueError, match="unsupported"):
        hyperscan_pattern(parsed(r"\bword"))


def test_literal_heads_take_an_optional_start_both_ways() -> None:
    assert literal_heads(parsed("(like )?Gecko/[0-9]*")) == [b"like gecko/", b"gecko/"]
    assert literal_heads(parsed("Safari/[0-9.]*")) == [b"safari/"]
    with pytest.raises(ValueError, match="no literal text"):
        literal_heads(parsed("[0-9]+x"))


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        ("Mobile", LITERAL),
        (r"Chrome/[\d\.]*", RUN),
        ("Build.", ANY_RUN),
        (r"Android.[\d\.]*", ANY_RUN),
        (r"Safari(.[\d\.]*)?", OPTIONAL_ANY_RUN),
        (r"Version/\d+", MATCH),  # a run of at least one: Python's match decides
        (r"Chrome/[a-z]*", MATCH),  # a run of letters folds case: Python's match decides
    ],
)
def test_tail_tells_how_an_exclusion_goes_on_after_its_head(pattern: str, kind: int) -> None:
    assert tail(parsed(pattern))[0] == kind
