"""crawlerdetect's Python patterns in the forms that search them in linear time: written back
for Hyperscan over the bytes :func:`matchable` makes of a user agent, and, for the exclusions'
fast path, cut into a literal head (for an Aho-Corasick search) and a tail of a known kind.

Python's ``re._parser`` parses each pattern; a construct these lists did not use when this was
written raises ValueError, so a bump of crawlerdetect that brings one fails at import, in the
tests (tests/ingest/test_bots.py holds the translations to Python's verdicts).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Final

import hyperscan

# re's own parser, which these patterns are written for. Imported by name: typeshed has no stubs
# for re's private modules, so a type checker sees them or not by version.
sre = importlib.import_module("re._constants")

# What matchable maps each character to. Python's \d is any Unicode decimal digit; the other
# non-ASCII characters match nothing in these patterns but "." (none names one), except the four
# that IGNORECASE folds onto an ASCII letter.
DIGIT = "\x80"  # a non-ASCII decimal digit; the patterns' \d becomes [0-9\x80]
_OTHER = "\x81"  # any other non-ASCII character
ASCII_FOLDS: Final = {0x130: "i", 0x131: "i", 0x17F: "s", 0x212A: "k"}
"""The non-ASCII characters that Python's IGNORECASE matches with an ASCII letter (U+0130,
U+0131, U+017F, U+212A); tests/ingest/test_bots.py checks this against every code point."""
_MAX_CLASSES = 65_536
NEWLINE = ord("\n")  # what "." does not match


class _Classes(dict[int, str]):
    """``str.translate``'s table from a code point to its byte's character: ASCII to itself,
    the others filled on first sight, so translating runs in C for the characters met before;
    bounded, as a sender chooses the characters."""

    def __missing__(self, code_point: int) -> str:
        char = chr(code_point)
        mapped = ASCII_FOLDS.get(code_point) or (DIGIT if char.isdecimal() else _OTHER)
        if len(self) < _MAX_CLASSES + 128:
            self[code_point] = mapped
        return mapped


_CLASSES = _Classes({code_point: chr(code_point) for code_point in range(128)} | ASCII_FOLDS)


def matchable(user_agent: str) -> bytes:
    """One byte a character, each matched by these patterns (as compiled here) exactly where
    Python matches the character with crawlerdetect's patterns: offsets are the string's."""
    if user_agent.isascii():
        return user_agent.encode("ascii")
    translated: str = user_agent.translate(_CLASSES)  # typeshed wants a dict, not a subclass
    return translated.encode("latin-1")


def _char(code_point: int) -> str:
    char = chr(code_point)
    return char if char.isascii() and char.isalnum() else f"\\x{code_point:02x}"


def _set_member(member: Any, value: Any) -> str:
    """One member of a character set, written back for Hyperscan (see hyperscan_pattern)."""
    if member is sre.LITERAL:
        return _char(value)
    if member is sre.RANGE:
        return f"{_char(value[0])}-{_char(value[1])}"
    if member is sre.CATEGORY and value is sre.CATEGORY_DIGIT:
        return "0-9\\x80"
    raise ValueError(f"unsupported in a character set: {member} {value}")


def hyperscan_pattern(parsed: Sequence[tuple[Any, Any]], *, reverse: bool = False) -> str:
    """A parsed Python pattern written back for Hyperscan on :func:`matchable`'s bytes, or as
    the pattern of the reversed strings when ``reverse``. Raises ValueError for a construct
    these lists did not use when this was written (a bump of crawlerdetect that brings one fails
    at import, in the tests)."""
    out = []
    for op, arg in reversed(parsed) if reverse else parsed:
        if op is sre.LITERAL:
            out.append(_char(arg))
        elif op is sre.ANY:
            out.append(".")
        elif op is sre.IN:
            out.append(f"[{''.join(_set_member(member, value) for member, value in arg)}]")
        elif op is sre.MAX_REPEAT:
            low, high, item = arg
            bound = f"{{{low},}}" if high is sre.MAXREPEAT else f"{{{low},{high}}}"
            out.append(f"(?:{hyperscan_pattern(item, reverse=reverse)}){bound}")
        elif op is sre.SUBPATTERN:
            out.append(f"(?:{hyperscan_pattern(arg[3], reverse=reverse)})")
        elif op is sre.BRANCH:
            branches = (hyperscan_pattern(b, reverse=reverse) for b in arg[1])
            out.append(f"(?:{'|'.join(branches)})")
        elif op is sre.AT and arg is sre.AT_BEGINNING and not reverse:
            out.append("^")
        elif op is sre.AT and arg is sre.AT_END and not reverse:
            out.append("$")  # at the end or before a final newline, in both engines
        else:
            raise ValueError(f"unsupported: {op} {arg}")
    return "".join(out)


def _literal_byte(op: Any, arg: Any) -> int | None:
    """The ASCII byte a parsed item matches, if it matches just one (a literal, or a set of one
    literal)."""
    if op is sre.IN and len(arg) == 1:
        op, arg = arg[0]
    return arg if op is sre.LITERAL and arg < 128 else None


def _optional_start(parsed: Sequence[tuple[Any, Any]]) -> Sequence[tuple[Any, Any]] | None:
    """What an optional group that starts a pattern holds, as in ``(like )?Gecko``."""
    if len(parsed) > 1 and parsed[0][0] is sre.MAX_REPEAT and parsed[0][1][:2] == (0, 1):
        (group,) = parsed[0][1][2]
        if group[0] is sre.SUBPATTERN:
            inner: Sequence[tuple[Any, Any]] = group[1][3]
            return inner
    return None


def _head_length(parsed: Sequence[tuple[Any, Any]]) -> int:
    """How many items at the start of a pattern each match one ASCII byte."""
    length = 0
    while length < len(parsed) and _literal_byte(*parsed[length]) is not None:
        length += 1
    return length


def literal_heads(parsed: Sequence[tuple[Any, Any]]) -> list[bytes]:
    """The literal texts (lowercase ASCII) a pattern's matches can start with: its literal
    prefix, with an optional group at the start taken both ways. Raises ValueError for a
    pattern with none (each exclusion of these lists has one)."""
    optional = _optional_start(parsed)
    if optional is not None:
        rest = literal_heads(parsed[1:])
        return [*(h + r for h in literal_heads(optional) for r in rest), *rest]
    length = _head_length(parsed)
    if not length:
        raise ValueError("an exclusion that starts with no literal text")
    return [bytes(_literal_byte(*item) or 0 for item in parsed[:length]).lower()]


# How an exclusion goes on after its literal head, for the fast path: nothing more (a literal), a
# run of class bytes, any one byte but a newline and then such a run, that optionally, or
# something else, which Python's match decides.
LITERAL, RUN, ANY_RUN, OPTIONAL_ANY_RUN, MATCH = range(5)


def _run_class(item: Sequence[tuple[Any, Any]]) -> bytes | None:
    """The bytes ``[...]*`` repeats, for a repeat of one character set of literals and \\d."""
    if len(item) != 1 or item[0][0] is not sre.IN:
        return None
    members = bytearray()
    for member, value in item[0][1]:
        if member is sre.LITERAL and value < 128 and not chr(value).isalpha():
            members.append(value)
        elif member is sre.CATEGORY and value is sre.CATEGORY_DIGIT:
            members += b"0123456789" + DIGIT.encode("latin-1")
        else:
            return None
    return bytes(members)


def tail(parsed: Sequence[tuple[Any, Any]]) -> tuple[int, bytes | None]:
    """How an exclusion goes on after its literal head (see LITERAL and the others), and the
    class of its run."""
    if _optional_start(parsed) is not None:
        parsed = parsed[1:]  # literal_heads gave the head with and without the group
    ops = parsed[_head_length(parsed) :]
    if not ops:
        return LITERAL, None
    op, arg = ops[0]
    if len(ops) == 1 and op is sre.MAX_REPEAT and arg[:2] == (0, sre.MAXREPEAT):
        run = _run_class(arg[2])
        return (RUN, run) if run is not None else (MATCH, None)
    if op is sre.ANY and len(ops) == 1:
        return ANY_RUN, b""
    if op is sre.ANY and len(ops) == 2:
        kind, run = tail(ops[1:])
        return (ANY_RUN, run) if kind == RUN else (MATCH, None)
    if len(ops) == 1 and op is sre.MAX_REPEAT and arg[:2] == (0, 1):
        (group,) = arg[2]
        kind, run = tail(group[1][3]) if group[0] is sre.SUBPATTERN else (MATCH, None)
        return (OPTIONAL_ANY_RUN, run) if kind == ANY_RUN else (MATCH, None)
    return MATCH, None


def compile_database(
    patterns: Sequence[str], flags: Sequence[int], ids: Sequence[int] | None = None
) -> hyperscan.Database:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[pattern.encode("latin-1") for pattern in patterns],
        ids=list(range(len(patterns)) if ids is None else ids),
        elements=len(patterns),
        flags=list(flags),
    )
    return database
