"""``ranker.ingest.bots.bot_reason``: people's browsers pass, crawlers and headless browsers do
not."""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from pathlib import Path

import pytest
from crawlerdetect import CrawlerDetect
from crawlerdetect import crawlerdetect as crawlerdetect_module
from crawlerdetect.providers.crawlers import data as CRAWLER_PATTERNS
from crawlerdetect.providers.exclusions import data as EXCLUSION_PATTERNS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ranker.ingest.bots import _HEADLESS_RE, _LISTS, CRAWLER, HEADLESS_BROWSER, bot_reason
from ranker.ingest.parse import MAX_USER_AGENT
from ranker.ingest.patterns import matchable

# Real user agents of the browsers most readers use, desktop and mobile, in-app included.
BROWSERS = {
    "chrome-windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like"
    " Gecko) Chrome/131.0.0.0 Safari/537.36",
    "firefox-linux": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "safari-mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML,"
    " like Gecko) Version/18.1 Safari/605.1.15",
    "safari-iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "chrome-android": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like"
    " Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
    "edge-windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like"
    " Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "samsung-internet": "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML,"
    " like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "facebook-in-app": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)"
    " AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.38.108;]",
}
CRAWLERS = {
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "bingbot": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "gptbot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2;"
    " +https://openai.com/gptbot)",
    "curl": "curl/8.5.0",
    "python-requests": "python-requests/2.32.3",
}
HEADLESS_BROWSERS = {
    "headless-chrome": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " HeadlessChrome/131.0.0.0 Safari/537.36",
    "phantomjs": "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko)"
    " PhantomJS/2.1.1 Safari/538.1",
    "puppeteer": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36 Puppeteer",
    "playwright": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36 Playwright/1.40",
    "slimerjs": "Mozilla/5.0 (X11; Linux x86_64; rv:60.0) Gecko/20100101 SlimerJS/1.0.0",
    "jsdom": "Mozilla/5.0 (linux) AppleWebKit/537.36 (KHTML, like Gecko) jsdom/22.1.0",
    "htmlunit": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) HtmlUnit/2.70",
    "selenium": "Mozilla/5.0 Selenium/4.0",
}


@pytest.mark.parametrize("user_agent", BROWSERS.values(), ids=BROWSERS.keys())
def test_a_persons_browser_is_no_bot(user_agent: str) -> None:
    assert bot_reason(user_agent) is None


@pytest.mark.parametrize("user_agent", CRAWLERS.values(), ids=CRAWLERS.keys())
def test_a_crawler_from_the_maintained_list_is_a_crawler(user_agent: str) -> None:
    assert bot_reason(user_agent) == CRAWLER


@pytest.mark.parametrize("user_agent", HEADLESS_BROWSERS.values(), ids=HEADLESS_BROWSERS.keys())
def test_a_headless_browser_is_one(user_agent: str) -> None:
    assert bot_reason(user_agent) == HEADLESS_BROWSER


def test_a_user_agent_seen_before_is_answered_from_the_cache() -> None:
    user_agent = CRAWLERS["googlebot"] + " (cache test)"
    bot_reason(user_agent)
    hits = bot_reason.cache_info().hits
    assert bot_reason(user_agent) == CRAWLER
    assert bot_reason.cache_info().hits == hits + 1


# --- The same verdicts as crawlerdetect, in time linear in the user agent ---------------------

DATA = Path(__file__).parent.parent / "data" / "user_agents"
REFERENCE = CrawlerDetect()


def reference_reason(user_agent: str) -> str | None:
    """What bot_reason answered when it ran Python's regular expressions: the headless marks,
    then crawlerdetect 0.4.2's own check."""
    if _HEADLESS_RE.search(user_agent):
        return HEADLESS_BROWSER
    return CRAWLER if REFERENCE.is_crawler(user_agent) else None


def user_agents(name: str) -> list[str]:
    """The lines of a file of tests/data/user_agents, "#" lines left out."""
    text = (DATA / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize(
    "name",
    [
        # A selection of the first lines of the upstream fixtures: the Python port's
        # (moskrc/crawlerdetect, tests/fixtures/user_agent/crawlers.txt, 6b20562) and
        # CrawlerDetect's (JayBizzle/Crawler-Detect, tests/devices.txt, 06cd937).
        "crawlerdetect-crawlers.txt",
        "crawler-detect-devices.txt",
        # Real browsers, in-app browsers (KakaoTalk, NAVER, Facebook, Instagram, Line, WeChat,
        # Samsung Internet, Whale, ...), crawlers and tools, and the lists' own edge cases.
        "real-world.txt",
    ],
)
def test_every_verdict_on_the_fixtures_and_the_corpus_is_crawlerdetects(name: str) -> None:
    agents = user_agents(name)
    assert len(agents) > 50
    differ = [ua for ua in agents if bot_reason(ua) != reference_reason(ua)]
    assert differ == []


def test_the_corpus_of_real_user_agents_tells_people_from_bots() -> None:
    text = (DATA / "real-world.txt").read_text(encoding="utf-8")
    group, verdicts = "", Counter[tuple[str, str | None]]()
    for line in text.splitlines():
        if line.startswith("# "):
            group = line.split(":")[0][2:]
        elif line and not line.startswith("#"):
            verdicts[group, bot_reason(line)] += 1
    assert verdicts["people", None] >= 30
    assert verdicts["people", CRAWLER] == verdicts["people", HEADLESS_BROWSER] == 0
    assert verdicts["bots", None] == 0


def test_the_user_agent_as_crawlerdetect_searches_it_is_its_own() -> None:
    """Where Hyperscan found exclusions and Python's match took them, the rest is exactly what
    Python's substitution leaves."""
    for ua in user_agents("real-world.txt") + user_agents("crawler-detect-devices.txt"):
        assert _LISTS.agent(ua) == matchable(EXCLUSIONS.sub("", ua)), ua


EXCLUSIONS = re.compile(f"({'|'.join(EXCLUSION_PATTERNS)})", re.IGNORECASE)
"""crawlerdetect's own substitution of the exclusions, as it compiles it."""


# Pieces that make the lists' matches, their near misses and their junctions: where an
# exclusion is taken out, what is left on either side meets.
TRICKY = [
    "bo", "t", "b0t", "Yandex", "Search", "SEARCH", "\u017fearch", "Safari", "Safari/",
    "/537.36", "Mozilla/5.0", "like ", "Gecko", "Gecko/2010", "KHTML,", " Chrome/", "Cubot",
    "; M bot", "Opera Mini/12.34.5/6.", "Opera", "CPU iPhone OS 17_1 like Mac OS X",
    "Mac OS X 10_15", "Android 14", "x86_64", "x86_", "Build", "rv:1.9", ".NET CLR 2.0",
    "DebugBear", "\n", " ", "\t", "\u00a0", "\u0130", "\u0131", "\u212a", "\u0663",
    "\uff13", "\U0001d7d8", "\u00e9", "\u0080", "\x00", "Googlebot", "crawl", "spider",
    "Headless", "\u017felenium", "curl/", "^", "$", "Amazon Simple Notification Service Agent",
    "super/12/Android/3", '"Yandex"', "YandexModule2", "[ ]", "SafariLike", "Macintosh",
]  # fmt: skip
_CRAWLER_SAMPLE = [p for p in CRAWLER_PATTERNS if "(?" not in p][::29]


@st.composite
def mixed_user_agents(draw: st.DrawFn) -> str:
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(TRICKY),
                st.sampled_from(EXCLUSION_PATTERNS).flatmap(
                    lambda p: st.from_regex(re.compile(p, re.IGNORECASE), fullmatch=True)
                ),
                st.sampled_from(_CRAWLER_SAMPLE).flatmap(
                    lambda p: st.from_regex(re.compile(p, re.IGNORECASE), fullmatch=True)
                ),
                st.text(max_size=12),
                st.text(alphabet=string.ascii_letters + string.digits + " ./;()_-", max_size=12),
            ),
            max_size=12,
        )
    )
    return "".join(parts)[:MAX_USER_AGENT]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_agent=mixed_user_agents())
def test_generated_user_agents_get_crawlerdetects_verdict(user_agent: str) -> None:
    assert _LISTS.reason(user_agent) == reference_reason(user_agent)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_agent=mixed_user_agents())
def test_generated_user_agents_are_searched_as_crawlerdetect_searches_them(user_agent: str) -> None:
    """The fast path's removal of the exclusions, or the exact path's where it hands over, is
    exactly Python's substitution."""
    stripped = user_agent.strip()
    assert _LISTS.agent(stripped) == matchable(EXCLUSIONS.sub("", stripped))


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 Safari",  # a head whose exclusion needs one more character: none left
        "Macintosh",
        # "Safari." takes the L: the search found "like gecko" across the removal's end, and
        # went past the "Gecko" that starts inside it.
        "SafariLike Gecko/20100101",
        "Opera Mini/1 Opera",  # Opera Mini's exclusion fails; Opera's takes over there
        "x86_6",
        "CPU iPhone OS 17_1 like Mac OS",
    ],
)
def test_the_fast_path_hands_what_it_cannot_tell_to_the_exact_one(user_agent: str) -> None:
    data = matchable(user_agent)
    assert _LISTS._fast_agent(data, data.lower()) is None
    assert _LISTS.agent(user_agent) == matchable(EXCLUSIONS.sub("", user_agent))


def test_the_fast_path_tells_nearly_every_real_user_agent_on_its_own() -> None:
    """It is the path taken: only a user agent like Opera Mini's, whose exclusion's head is
    there but not the rest, goes the exact way."""
    told = 0
    corpus = user_agents("real-world.txt")
    for ua in corpus:
        data = matchable(ua)
        agent = _LISTS._fast_agent(data, data.lower())
        if agent is not None:
            assert agent == matchable(EXCLUSIONS.sub("", ua)), ua
            told += 1
    assert told >= 0.95 * len(corpus)


@settings(max_examples=300, deadline=None)
@given(
    user_agent=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300
    )
)
def test_any_text_gets_crawlerdetects_verdict(user_agent: str) -> None:
    assert _LISTS.reason(user_agent) == reference_reason(user_agent)


def test_a_hostile_user_agent_is_matched_as_python_would_without_its_cost() -> None:
    # The shapes that cost Python's engine most (a fifth of a second for the random letters):
    # verdicts only here; tests/ingest/test_parse.py counts the work, benchmarks time it.
    rng = random.Random(12)
    hostile = [
        "".join(rng.choices(string.ascii_letters, k=MAX_USER_AGENT)),
        "".join(rng.choices("a0_-", k=MAX_USER_AGENT)),
        "Mozilla/5.0 " * 85,
        "".join(
            rng.choices("\uac00\ub098\ub2e4\u03b1\u03b2\u0663\u0130\u017f\u212a ", k=MAX_USER_AGENT)
        ),
    ]
    for ua in hostile:
        assert _LISTS.reason(ua) == reference_reason(ua)


def test_no_user_agent_is_searched_by_pythons_backtracking_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """crawlerdetect's own check (one Python regular expression of 1,462 alternatives, after a
    substitution of 52) is what took milliseconds per user agent: it is never run."""

    def refused() -> re.Pattern[str]:
        raise AssertionError("crawlerdetect's Python expression was used")

    monkeypatch.setattr(crawlerdetect_module, "get_compiled_crawler_regex", refused)
    monkeypatch.setattr(crawlerdetect_module, "get_compiled_exclusions_regex", refused)
    rng = random.Random(7)
    for ua in user_agents("real-world.txt"):
        unseen = f"{ua} {rng.random()}"  # never in any verdict cache
        assert bot_reason(unseen) in (None, CRAWLER, HEADLESS_BROWSER)
