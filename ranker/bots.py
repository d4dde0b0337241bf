"""Which user agents are bots: crawlers, spiders and headless browsers, whose page views are not
counted.

Crawlers come from the maintained list of the ``crawlerdetect`` package (the Python port of
CrawlerDetect); headless browsers from a short list of our own, checked first, for the automation
tools that list names only in part or not at all.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from crawlerdetect import CrawlerDetect

CRAWLER: Final = "crawler"
HEADLESS_BROWSER: Final = "headless_browser"
REASONS: Final = (CRAWLER, HEADLESS_BROWSER)
"""Every reason an event may be excluded for: the fixed label set of the excluded-events metric."""

MAX_CACHED_VERDICTS = 8192
"""User agents whose verdicts are kept. A page-view stream repeats a few thousand user agents all
day, and matching one against the crawler list costs about 200 µs, a thousand set lookups."""

# Marks automation tools leave in their user agents. HeadlessChrome is also Puppeteer's and
# Playwright's default; crawlerdetect knows it and PhantomJS only as crawlers, and the others
# not at all.
_HEADLESS_RE = re.compile(
    r"headless|phantomjs|puppeteer|playwright|slimerjs|selenium|webdriver|htmlunit|jsdom"
    r"|nightmare|zombie\.js",
    re.IGNORECASE,
)
_DETECTOR = CrawlerDetect()


@lru_cache(maxsize=MAX_CACHED_VERDICTS)
def bot_reason(user_agent: str) -> str | None:
    """Why a page view sent with ``user_agent`` is not counted (one of :data:`REASONS`), or None
    when the user agent is a person's browser."""
    if _HEADLESS_RE.search(user_agent) is not None:
        return HEADLESS_BROWSER
    if bool(_DETECTOR.is_crawler(user_agent)):
        return CRAWLER
    return None
