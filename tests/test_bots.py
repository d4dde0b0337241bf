"""``ranker.bots.bot_reason``: people's browsers pass, crawlers and headless browsers do not."""

from __future__ import annotations

import pytest

from ranker.bots import CRAWLER, HEADLESS_BROWSER, bot_reason

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
