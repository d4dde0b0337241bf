"""``ranker.commands.traffic``: made-up traffic a news site would recognise, repeatable."""

from __future__ import annotations

from collections import Counter

from ranker.commands.traffic import Traffic, expected_rate
from ranker.ingest.bots import bot_reason
from ranker.ingest.parse import MAX_USER_AGENT
from ranker.validation import ARTICLE_ID_RE, is_valid_title

SECTIONS = ["national", "sports", "entertainment"]
T0 = 1_800_000_000.0


def run(seed: int) -> list[dict[str, object]]:
    traffic = Traffic(SECTIONS, seed, start=T0)
    events = []
    for step in range(20):
        now = T0 + step * 10
        traffic.publish_due(now)
        events += traffic.views(50, now)
    return events


def test_the_same_seed_makes_the_same_traffic() -> None:
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_views_are_valid_events_with_readers_bots_and_labels() -> None:
    traffic = Traffic(SECTIONS, 3, start=T0)
    traffic.publish_due(T0 + 600)
    events = traffic.views(2000, T0 + 600)
    assert len(events) == 2000
    for event in events:
        assert ARTICLE_ID_RE.fullmatch(str(event["article_id"]))
        assert event["section"] in SECTIONS
        assert len(str(event["user_agent"])) <= MAX_USER_AGENT
    reasons = Counter(bot_reason(str(event["user_agent"])) for event in events)
    assert 0 < reasons["crawler"] < 200  # a few percent are crawlers
    assert len({event["visitor_id"] for event in events}) > 1000
    titles = [article.title for article in traffic.articles]
    assert all(is_valid_title(title) for title in titles)
    assert any(title.startswith("[") for title in titles)
    assert any(any("\uac00" <= c <= "\ud7a3" for c in title) for title in titles)


def test_popularity_rises_then_decays() -> None:
    article = Traffic(SECTIONS, 5, start=T0).articles[0]
    born = article.published_at
    rising = article.popularity(born + article.rise_s / 2)
    peak = article.popularity(born + article.rise_s)
    later = article.popularity(born + article.rise_s + 3 * article.half_life_s)
    assert rising < peak
    assert later < peak / 7


def test_batches_are_a_tenth_of_a_second_of_views() -> None:
    assert expected_rate(200, 1000) == (20, 0.1)
    assert expected_rate(5, 1000) == (1, 0.2)
    assert expected_rate(100_000, 1000) == (1000, 0.01)
