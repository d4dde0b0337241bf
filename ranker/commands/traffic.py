"""A news site's traffic, made up: articles published over time in every section, with titles
(some Korean, some with a leading label), each read a lot for a while and then less and less,
by readers with visitor ids, through browsers, in-app browsers and, now and then, crawlers.

Everything but the clock comes from one ``random.Random(seed)``: the same seed gives the same
articles and the same views in the same order.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

LABELS = ("INTERVIEW", "PHOTOS", "VIDEO", "LIVE", "ANALYSIS", "속보", "단독", "포토")
SUBJECTS = (
    "Parliament",
    "The central bank",
    "Seoul's mayor",
    "The national team",
    "A K-pop group",
    "Chipmakers",
    "The weather service",
    "국회",
    "서울시",
    "대표팀",
    "한국은행",
    "배우 김민지",
)
PREDICATES = (
    "passes the budget after a long night",
    "surprises the markets",
    "announces a world tour",
    "wins in extra time",
    "warns of a cold wave",
    "opens a new subway line",
    "예산안 통과",
    "금리 동결 결정",
    "월드컵 본선 진출 확정",
    "새 드라마 촬영 시작",
    "첫눈 예보",
)
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
    " Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918N) AppleWebKit/537.36 (KHTML, like Gecko)"
    " SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
)
IN_APP = (
    "Mozilla/5.0 (Linux; Android 14; SM-S918N Build/UP1A.{build}; wv) AppleWebKit/537.36"
    " (KHTML, like Gecko) Version/4.0 Chrome/131.0.{minor}.0 Mobile Safari/537.36"
    " KAKAOTALK 10{build3}",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{minor} like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
    " like Gecko) Mobile/15E148 NAVER(inapp; search; 2000; 12.{build3}.1)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
    " Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.{minor}.{build3};FBBV/{build}]",
)
CRAWLERS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; Yeti/1.1; +https://naver.me/spd)",
    "Mozilla/5.0 (compatible; Daum/4.1; +http://cs.daum.net/faq/15/4118.html?faqId=28966)",
)
CRAWLER_SHARE = 0.04
IN_APP_SHARE = 0.35
LABEL_SHARE = 0.3
KOREAN_SHARE = 0.5


@dataclass
class Article:
    """One made-up article and how it is read: ``peak`` views a second ``rise_s`` after it
    is published, halving every ``half_life_s`` after that."""

    article_id: str
    section: str
    title: str
    published_at: float
    peak: float
    rise_s: float
    half_life_s: float

    def metadata(self, base_url: str) -> dict[str, Any]:
        """What a CMS would PUT for it."""
        return {
            "title": self.title,
            "url": f"{base_url}/news/{self.article_id}",
            "section": self.section,
            "published_at": self.published_at,
        }

    def popularity(self, now: float) -> float:
        age = now - self.published_at
        if age < 0:
            return 0.0
        if age < self.rise_s:
            return self.peak * (0.1 + 0.9 * age / self.rise_s)
        decay: float = 0.5 ** ((age - self.rise_s) / self.half_life_s)
        return self.peak * decay


class Traffic:
    """The made-up site: call :meth:`publish_due` as time goes on, then :meth:`views`."""

    def __init__(
        self,
        sections: list[str],
        seed: int | None = None,
        *,
        start: float,
        articles_per_minute: float = 30.0,
        visitors: int = 50_000,
    ) -> None:
        if not sections:
            raise ValueError("no sections to publish in")
        # Made-up traffic, repeatable from its seed: no secret depends on it.
        self._rng = random.Random(seed)  # noqa: S311 - a simulation's, not a secret
        self._sections = sections
        self._gap_s = 60.0 / articles_per_minute
        self._visitors = visitors
        self._next_at = start
        self._count = 0
        self.articles: list[Article] = []
        # A site is not empty when the simulation starts: a day's worth of articles, some old.
        for _ in range(min(60, 4 * len(sections))):
            self._publish(start - self._rng.uniform(0, 6 * 3600))

    def publish_due(self, now: float) -> list[Article]:
        """The articles published since the last call, up to ``now``."""
        new = []
        while self._next_at <= now:
            new.append(self._publish(self._next_at))
            self._next_at += self._rng.expovariate(1.0 / self._gap_s)
        # Articles read by almost no one are dropped, so choosing among them stays cheap.
        self.articles = [a for a in self.articles if a.popularity(now) > a.peak * 1e-3]
        return new

    def _publish(self, at: float) -> Article:
        self._count += 1
        section = self._rng.choice(self._sections)
        article = Article(
            article_id=f"sim-{section}-{self._count:06d}",
            section=section,
            title=self._title(),
            published_at=at,
            peak=self._rng.lognormvariate(0.0, 1.2),
            rise_s=self._rng.uniform(60, 900),
            half_life_s=self._rng.uniform(900, 7200),
        )
        self.articles.append(article)
        return article

    def _title(self) -> str:
        rng = self._rng
        korean = rng.random() < KOREAN_SHARE
        subjects = [s for s in SUBJECTS if (ord(s[0]) > 0x3000) == korean] or list(SUBJECTS)
        predicates = [p for p in PREDICATES if (ord(p[0]) > 0x3000) == korean] or list(PREDICATES)
        title = f"{rng.choice(subjects)} {rng.choice(predicates)}"
        if rng.random() < LABEL_SHARE:
            title = f"[{rng.choice(LABELS)}] {title}"
        return title

    def views(self, count: int, now: float) -> list[dict[str, Any]]:
        """``count`` page views at ``now``, each of an article chosen by how read it is now."""
        live = [a for a in self.articles if a.published_at <= now]
        if not live:
            return []
        weights = [a.popularity(now) for a in live]
        chosen = self._rng.choices(live, weights=weights, k=count)
        return [
            {
                "article_id": article.article_id,
                "section": article.section,
                "ts": now,
                "visitor_id": f"v{self._rng.randrange(self._visitors):06d}",
                "user_agent": self._user_agent(),
            }
            for article in chosen
        ]

    def _user_agent(self) -> str:
        rng = self._rng
        draw = rng.random()
        if draw < CRAWLER_SHARE:
            return rng.choice(CRAWLERS)
        if draw < CRAWLER_SHARE + IN_APP_SHARE:
            # In-app browsers put build and version numbers in: a long tail of distinct strings.
            return rng.choice(IN_APP).format(
                build=rng.randrange(100_000, 999_999),
                build3=rng.randrange(100, 999),
                minor=rng.randrange(10, 99),
            )
        return rng.choice(BROWSERS)


def expected_rate(views_per_s: float, batch: int) -> tuple[int, float]:
    """Views per batch and seconds between batches for a rate: batches of about a tenth of a
    second's views (at most ``batch``), as an analytics pipeline flushes."""
    size = max(1, min(batch, math.ceil(views_per_s / 10)))
    return size, size / views_per_s
