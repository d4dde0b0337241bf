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

- the removal: one leftmost-first Aho-Corasick search (``ahocorasick_rs``) finds the literal
  heads the 52 tokens start with, all in one call, and each removal's extent is a known tail (a
  run of digits and dots, say) found with one ``bytes.find``, or, for a few tokens, Python's
  ``match`` at that place. Where that search cannot tell (a head whose token does not match in
  full, a head found across a removal's end: rare), Hyperscan (automata, no backtracking) finds
  where each token matches in full, and Python's ``match`` its extent;
- Hyperscan then searches the crawler list, compiled once per process from crawlerdetect's own
  patterns;
- Hyperscan cannot express crawlerdetect's one lookahead (``Yandex(?!Search)``): it searches
  ``Yandex`` and Python checks what follows each hit.

Hyperscan reads bytes and folds only ASCII letters' case, where Python reads characters and
folds them as Unicode does; :func:`.patterns.matchable` maps each character to a byte that every
pattern here treats as Python treats the character (tests/ingest/test_bots.py holds the two to the
same verdicts on crawlerdetect's fixtures, on a corpus of real user agents and on generated ones).
The patterns' translation for Hyperscan and the fast path lives in :mod:`.patterns`.
"""

from __future__ import annotations

import importlib
import re
from functools import lru_cache
from typing import Any, Final

import hyperscan
from ahocorasick_rs import BytesAhoCorasick, MatchKind
from crawlerdetect.providers.crawlers import data as CRAWLER_PATTERNS
from crawlerdetect.providers.exclusions import data as EXCLUSION_PATTERNS

from .patterns import (
    ANY_RUN,
    LITERAL,
    MATCH,
    NEWLINE,
    RUN,
    compile_database,
    hyperscan_pattern,
    literal_heads,
    matchable,
    tail,
)

# re's own parser, which these patterns are written for. Imported by name: typeshed has no stubs
# for re's private modules, so a type checker sees them or not by version.
sre = importlib.import_module("re._constants")
sre_parse = importlib.import_module("re._parser")

CRAWLER: Final = "crawler"
HEADLESS_BROWSER: Final = "headless_browser"
REASONS: Final = (CRAWLER, HEADLESS_BROWSER)
"""Every reason an event may be excluded for: the fixed label set of the excluded-events metric."""

MAX_CACHED_VERDICTS = 8192
"""User agents whose verdicts are kept. A page-view stream repeats a few thousand user agents all
day; one not seen before costs a few microseconds (about 6 µs for a 250-character in-app
browser's), a seen one a dictionary lookup."""

# Marks automation tools leave in their user agents. HeadlessChrome is also Puppeteer's and
# Playwright's default; crawlerdetect knows it and PhantomJS only as crawlers, and the others
# not at all.
HEADLESS_MARKS: Final = (
    "headless",
    "phantomjs",
    "puppeteer",
    "playwright",
    "slimerjs",
    "selenium",
    "webdriver",
    "htmlunit",
    "jsdom",
    "nightmare",
    "zombie.js",
)
_HEADLESS_RE = re.compile("|".join(map(re.escape, HEADLESS_MARKS)), re.IGNORECASE)


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
            re.compile(hyperscan_pattern(parsed.data).encode("latin-1"), re.IGNORECASE)
            for parsed in parsed_exclusions
        ]
        # An exclusion of one width ends there, with no match to run.
        self.widths = [
            low if low == high else 0 for low, high in (p.getwidth() for p in parsed_exclusions)
        ]
        # The fast path (see _fast_agent): each exclusion's literal heads, in the lists' order,
        # for a leftmost-first Aho-Corasick search, which hands back every match in one call.
        heads: list[bytes] = []
        self.head_exclusion: list[int] = []
        for index, parsed in enumerate(parsed_exclusions):
            for head in literal_heads(parsed.data):
                if head not in heads:
                    heads.append(head)
                    self.head_exclusion.append(index)
        self.heads = BytesAhoCorasick(heads, matchkind=MatchKind.LeftmostFirst)
        self.marks = BytesAhoCorasick([mark.encode() for mark in HEADLESS_MARKS])
        self.tails = [tail(parsed.data) for parsed in parsed_exclusions]
        # Per run class: bytes.translate's table that marks its bytes 1 and every other 0, so
        # a run's end is one find of a 0.
        self.run_tables = {
            run: bytes(1 if byte in run else 0 for byte in range(256))
            for _, run in self.tails
            if run
        }
        reversed_patterns = [hyperscan_pattern(p.data, reverse=True) for p in parsed_exclusions]
        caseless = hyperscan.HS_FLAG_CASELESS
        flags = [caseless] * len(reversed_patterns)
        headless = hyperscan_pattern(sre_parse.parse(_HEADLESS_RE.pattern).data, reverse=True)
        self.starts = compile_database(
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
                lookahead = hyperscan_pattern(parsed[-1][1][1])
                self.lookaheads[index] = re.compile(lookahead.encode("latin-1"), re.IGNORECASE)
                parsed, flag = parsed[:-1], caseless
            crawler_patterns.append(hyperscan_pattern(parsed))
            flags.append(flag)
        self.crawlers = compile_database(crawler_patterns, flags)

    def reason(self, user_agent: str) -> str | None:
        """The verdict of :func:`bot_reason`, uncached."""
        # crawlerdetect strips the user agent first; the headless marks hold no space, so they
        # are found in the stripped one exactly as in the whole.
        user_agent = user_agent.strip()
        if not user_agent:
            return None
        data = matchable(user_agent)
        lowered = data.lower()  # ASCII only, as IGNORECASE folds bytes
        if self.marks.find_matches_as_indexes(lowered):
            return HEADLESS_BROWSER
        agent = self._fast_agent(data, lowered)
        if agent is None:
            agent = self._exact_agent(user_agent, data)
        if not agent:
            return None
        hits = [agent, self.lookaheads]
        self.crawlers.scan(agent, match_event_handler=_on_crawler, context=hits)
        return CRAWLER if len(hits) > 2 else None

    def agent(self, user_agent: str) -> bytes:
        """What crawlerdetect searches for crawlers, ``EXCLUSIONS.sub("", user_agent)``, as
        :func:`matchable` bytes (for the tests)."""
        data = matchable(user_agent)
        agent = self._fast_agent(data, data.lower())
        return self._exact_agent(user_agent, data) if agent is None else agent

    def _fast_agent(self, data: bytes, lowered: bytes) -> bytes | None:
        """``EXCLUSIONS.sub("", ...)`` from one leftmost-first search of the exclusions' heads,
        or None when that search cannot tell (rare): then :meth:`_exact_agent` must.

        The search finds, from the left, the first head in the lists' order at the leftmost
        place any starts, and goes on after it: where the exclusion of that head matches in
        full, it is the one crawlerdetect's alternation removes there, and no exclusion starts
        between the last removal's end and it. Two things break that: a head whose exclusion
        does not match in full there (another alternative might, at this place or inside the
        head), and a head the search found across the end of a removal longer than its head
        (it may hide a head starting at that end). Either sends the user agent to the exact
        path.
        """
        found = self.heads.find_matches_as_indexes(lowered)
        if not found:
            return data
        tails, head_exclusion = self.tails, self.head_exclusion
        runs: dict[bytes, bytes] = {}  # run class -> the user agent translated by its table
        size = len(data)
        pieces, kept_from = [], 0
        for head, start, end in found:
            if start < kept_from:
                if end > kept_from:
                    return None
                continue
            pieces.append(data[kept_from:start])
            pattern = head_exclusion[head]
            kind, run = tails[pattern]
            if kind is LITERAL:
                kept_from = end
                continue
            if kind is MATCH:
                match = self.exclusions[pattern].match(data, start)
                if match is None:
                    return None
                kept_from = match.end()
                continue
            if kind is not RUN:  # one byte but a newline, then a run: optional or not
                if end < size and data[end] != NEWLINE:
                    end += 1
                elif kind is ANY_RUN:
                    return None
                else:
                    kept_from = end  # the optional part is absent
                    continue
            if run:
                marked = runs.get(run)
                if marked is None:
                    marked = runs[run] = data.translate(self.run_tables[run])
                stop = marked.find(0, end)
                end = size if stop < 0 else stop
            kept_from = end
        pieces.append(data[kept_from:])
        return b"".join(pieces)

    def _exact_agent(self, user_agent: str, data: bytes) -> bytes:
        """``EXCLUSIONS.sub("", ...)`` from where Hyperscan finds each exclusion in full."""
        found = [entry for entry in self._starts(data) if entry < 0]
        return self._without_exclusions(user_agent, data, found) if found else data

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
