"""Which user agents are bots: crawlers, spiders and headless browsers, whose page views are not
counted.

Crawlers come from the maintained list of the ``crawlerdetect`` package (the Python port of
CrawlerDetect); headless browsers from a short list of our own, checked first, for the automation
tools that list names only in part or not at all.

crawlerdetect's own check is one Python regular expression of 1,462 alternatives, searched in a
user agent from which 52 more (browser and platform tokens) have been removed. Python's engine
backtracks: that costs milliseconds for an in-app browser's user agent and a fifth of a second
for 1,024 random letters, on the event loop. Here the same lists give the same verdicts in time
linear in the user agent, a few microseconds for one seen for the first time:

- Hyperscan (automata, no backtracking) finds where tokens may be removed and then searches the
  crawler list, both compiled once per process from crawlerdetect's own patterns;
- Python's regular expressions still decide each removal's extent, but only by a ``match`` at
  the few places Hyperscan found, where each costs a fraction of a microsecond;
- Hyperscan cannot express crawlerdetect's one lookahead (``Yandex(?!Search)``): it searches
  ``Yandex`` and Python checks what follows each hit.

Hyperscan reads bytes and folds only ASCII letters' case, where Python reads characters and
folds them as Unicode does; :func:`_matchable` maps each character to a byte that every pattern
here treats as Python treats the character (tests/ingest/test_bots.py holds the two to the same
verdicts on crawlerdetect's fixtures, on a corpus of real user agents and on generated ones).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from re import _constants as sre
from re import _parser as sre_parse
from typing import Any, Final

import hyperscan
from crawlerdetect.providers.crawlers import data as CRAWLER_PATTERNS
from crawlerdetect.providers.exclusions import data as EXCLUSION_PATTERNS

CRAWLER: Final = "crawler"
HEADLESS_BROWSER: Final = "headless_browser"
REASONS: Final = (CRAWLER, HEADLESS_BROWSER)
"""Every reason an event may be excluded for: the fixed label set of the excluded-events metric."""

MAX_CACHED_VERDICTS = 8192
"""User agents whose verdicts are kept. A page-view stream repeats a few thousand user agents all
day; one not seen before costs a few microseconds (about 10 µs for a 250-character in-app
browser's), a seen one a dictionary lookup."""

# Marks automation tools leave in their user agents. HeadlessChrome is also Puppeteer's and
# Playwright's default; crawlerdetect knows it and PhantomJS only as crawlers, and the others
# not at all.
_HEADLESS_RE = re.compile(
    r"headless|phantomjs|puppeteer|playwright|slimerjs|selenium|webdriver|htmlunit|jsdom"
    r"|nightmare|zombie\.js",
    re.IGNORECASE,
)

# What _matchable maps each character to. Python's \d is any Unicode decimal digit; the other
# non-ASCII characters match nothing in these patterns but "." (none names one), except the four
# that IGNORECASE folds onto an ASCII letter.
_DIGIT = "\x80"  # a non-ASCII decimal digit; the patterns' \d becomes [0-9\x80]
_OTHER = "\x81"  # any other non-ASCII character
_ASCII_FOLDS: Final = {0x130: "i", 0x131: "i", 0x17F: "s", 0x212A: "k"}
"""The non-ASCII characters that Python's IGNORECASE matches with an ASCII letter (U+0130,
U+0131, U+017F, U+212A); tests/ingest/test_bots.py checks this against every code point."""
_MAX_CLASSES = 65_536


class _Classes(dict[int, str]):
    """``str.translate``'s table from a code point to its byte's character: ASCII to itself,
    the others filled on first sight, so translating runs in C for the characters met before;
    bounded, as a sender chooses the characters."""

    def __missing__(self, code_point: int) -> str:
        char = chr(code_point)
        mapped = _ASCII_FOLDS.get(code_point) or (_DIGIT if char.isdecimal() else _OTHER)
        if len(self) < _MAX_CLASSES + 128:
            self[code_point] = mapped
        return mapped


_CLASSES = _Classes({code_point: chr(code_point) for code_point in range(128)} | _ASCII_FOLDS)


def _matchable(user_agent: str) -> bytes:
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
    """One member of a character set, written back for Hyperscan (see _hyperscan_pattern)."""
    if member is sre.LITERAL:
        return _char(value)
    if member is sre.RANGE:
        return f"{_char(value[0])}-{_char(value[1])}"
    if member is sre.CATEGORY and value is sre.CATEGORY_DIGIT:
        return "0-9\\x80"
    raise ValueError(f"unsupported in a character set: {member} {value}")


def _hyperscan_pattern(parsed: Sequence[tuple[Any, Any]], *, reverse: bool = False) -> str:
    """A parsed Python pattern written back for Hyperscan on :func:`_matchable`'s bytes, or as
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
            out.append(f"(?:{_hyperscan_pattern(item, reverse=reverse)}){bound}")
        elif op is sre.SUBPATTERN:
            out.append(f"(?:{_hyperscan_pattern(arg[3], reverse=reverse)})")
        elif op is sre.BRANCH:
            branches = (_hyperscan_pattern(b, reverse=reverse) for b in arg[1])
            out.append(f"(?:{'|'.join(branches)})")
        elif op is sre.AT and arg is sre.AT_BEGINNING and not reverse:
            out.append("^")
        elif op is sre.AT and arg is sre.AT_END and not reverse:
            out.append("$")  # at the end or before a final newline, in both engines
        else:
            raise ValueError(f"unsupported: {op} {arg}")
    return "".join(out)


def _compile(
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


class _Lists:
    """crawlerdetect's lists and the headless list, compiled once per process (about 0.15 s).

    A Hyperscan database holds one scratch space: scans must not run in two threads at once,
    and do not (every check runs on its process's event loop)."""

    def __init__(self) -> None:
        # Where the exclusions may start: each searched (reversed) in the reversed user agent,
        # so every place one matches is reported as an end there, and with no start-of-match
        # tracking, which costs Hyperscan twice the time. The headless marks ride along.
        parsed_exclusions = [sre_parse.parse(p) for p in EXCLUSION_PATTERNS]
        if len(parsed_exclusions) >= _HEADLESS_ID:
            raise ValueError("more exclusions than _on_start's 6 bits can number")
        # Where an exclusion found at a start ends: Python's match decides (its backtracking
        # is cheap here, and the same as crawlerdetect's), on the same bytes as Hyperscan.
        self.exclusions = [
            re.compile(_hyperscan_pattern(parsed.data).encode("latin-1"), re.IGNORECASE)
            for parsed in parsed_exclusions
        ]
        # An exclusion of one width ends there, with no match to run.
        self.widths = [
            low if low == high else 0 for low, high in (p.getwidth() for p in parsed_exclusions)
        ]
        reversed_patterns = [_hyperscan_pattern(p.data, reverse=True) for p in parsed_exclusions]
        caseless = hyperscan.HS_FLAG_CASELESS
        flags = [caseless] * len(reversed_patterns)
        headless = _hyperscan_pattern(sre_parse.parse(_HEADLESS_RE.pattern).data, reverse=True)
        self.starts = _compile(
            [*reversed_patterns, headless],
            [*flags, caseless | hyperscan.HS_FLAG_SINGLEMATCH],
            [*range(len(reversed_patterns)), _HEADLESS_ID],
        )
        # The crawler list. A pattern ending in a negative lookahead is searched without it,
        # every match reported, and each match's next bytes checked in Python.
        self.lookaheads: dict[int, re.Pattern[bytes]] = {}
        crawler_patterns, flags = [], []
        for index, pattern in enumerate(CRAWLER_PATTERNS):
            parsed = sre_parse.parse(pattern).data
            flag = caseless | hyperscan.HS_FLAG_SINGLEMATCH
            if parsed and parsed[-1][0] is sre.ASSERT_NOT and parsed[-1][1][0] == 1:
                lookahead = _hyperscan_pattern(parsed[-1][1][1])
                self.lookaheads[index] = re.compile(lookahead.encode("latin-1"), re.IGNORECASE)
                parsed, flag = parsed[:-1], caseless
            crawler_patterns.append(_hyperscan_pattern(parsed))
            flags.append(flag)
        self.crawlers = _compile(crawler_patterns, flags)

    def reason(self, user_agent: str) -> str | None:
        """The verdict of :func:`bot_reason`, uncached."""
        # crawlerdetect strips the user agent first; the headless marks hold no space, so they
        # are found in the stripped one exactly as in the whole.
        user_agent = user_agent.strip()
        if not user_agent:
            return None
        data = _matchable(user_agent)
        found = self._starts(data)
        if found and found[-1] >= 0:
            return HEADLESS_BROWSER
        agent = self._without_exclusions(user_agent, data, found) if found else data
        if not agent:
            return None
        hits = [agent, self.lookaheads]
        self.crawlers.scan(agent, match_event_handler=_on_crawler, context=hits)
        return CRAWLER if len(hits) > 2 else None

    def agent(self, user_agent: str) -> bytes:
        """What crawlerdetect searches for crawlers, ``EXCLUSIONS.sub("", user_agent)``, as
        :func:`_matchable` bytes (for the tests)."""
        data = _matchable(user_agent)
        found = [entry for entry in self._starts(data) if entry < 0]
        return self._without_exclusions(user_agent, data, found)

    def _starts(self, data: bytes) -> list[int]:
        """Where exclusions match (see _on_start), sorted; a headless mark adds a last entry
        >= 0."""
        found: list[int] = []
        self.starts.scan(data[::-1], match_event_handler=_on_start, context=found)
        found.sort()
        return found

    def _without_exclusions(self, user_agent: str, data: bytes, found: list[int]) -> bytes:
        # crawlerdetect's EXCLUSIONS.sub("", user_agent): from the left, at each place the
        # first alternative that matches there, as far as Python's match takes it.
        size, exclusions, widths = len(data), self.exclusions, self.widths
        pieces, kept_from = [], 0
        for entry in found:
            start = size + (entry >> 6)
            if start < kept_from:
                continue
            pieces.append(data[kept_from:start])
            pattern = entry & 63
            width = widths[pattern]
            if width:
                kept_from = start + width
                continue
            match = exclusions[pattern].match(data, start)
            if match is None:  # cannot happen: Hyperscan saw this alternative match here
                raise AssertionError(f"exclusion {pattern} at {start} in {user_agent!r}")
            kept_from = match.end()
        pieces.append(data[kept_from:])
        return b"".join(pieces)


_HEADLESS_ID = 63
"""The headless marks' pattern in the starts database; exclusions are numbered below it."""


# The callbacks are plain functions (a bound method costs Hyperscan's binding more per call) and
# never stop a scan: a stop raises an exception that costs more than the rest of the scan.
def _on_start(pattern: int, _from: int, to: int, _flags: int, found: Any) -> None:
    if pattern == _HEADLESS_ID:
        found.append(pattern)  # the only entry >= 0: last once sorted
    else:
        # An exclusion starts size - to bytes in. Sorted, -to << 6 | pattern (negative, as
        # to > 0) orders by start, then by pattern, as Python's alternation tries them.
        found.append(-to << 6 | pattern)


def _on_crawler(pattern: int, _from: int, to: int, _flags: int, hits: Any) -> None:
    # hits: [the agent, its lookaheads, then one entry a crawler pattern matched]
    lookahead = hits[1].get(pattern)
    if lookahead is None or lookahead.match(hits[0], to) is None:
        hits.append(pattern)


_LISTS = _Lists()


@lru_cache(maxsize=MAX_CACHED_VERDICTS)
def bot_reason(user_agent: str) -> str | None:
    """Why a page view sent with ``user_agent`` is not counted (one of :data:`REASONS`), or None
    when the user agent is a person's browser.

    The same verdict as ``_HEADLESS_RE`` first and then crawlerdetect 0.4.2's
    ``CrawlerDetect().is_crawler``, in time linear in the user agent's length."""
    return _LISTS.reason(user_agent)
