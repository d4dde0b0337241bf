"""POST /v1/events through the app: malformed bodies and their codes, limits, defaults, bots and
event metadata."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from ranker.config import Settings
from tests.conftest import Client, FakeClock
from tests.ingest.test_bots import BROWSERS, CRAWLERS, HEADLESS_BROWSERS
from tests.support.http import (
    GOOD,
    JSON,
    KOREAN_TITLE,
    NDJSON,
    UNSUPPORTED,
    all_lists,
    assert_error,
    bad,
    get_json,
    get_ranking,
    ingest,
    item,
    mixed,
    post_events,
    redis_keys,
)

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

MIB = 1024 * 1024
SEED = {"article_id": "seed", "section": "national", "weight": 5}


def raw_bad(fragment: bytes) -> bytes:
    """A bad event written by hand, for what orjson cannot serialize (NaN, huge numbers)."""
    return b'{"article_id":"bad-1","section":"national",' + fragment + b"}"


def case(
    case_id: str, body: bytes, status: int, code: str, ct: str | None = JSON, chunked: bool = False
) -> pytest.ParameterSet:
    return pytest.param(ct, body, status, code, chunked, id=case_id)


OVERSIZED = b"[" + GOOD + b"," + b" " * MIB + GOOD + b"]"
FORM = "application/x-www-form-urlencoded"
LATIN_1 = JSON + "; charset=latin-1"
BAD_UTF8 = raw_bad(b'"title":"\xc3"')

MALFORMED = [
    # The body as a whole is refused: even the valid event inside it must not count.
    case("not-json", b"hello, ranker", 400, "invalid_json"),
    case("truncated-json", b"[" + GOOD + b',{"article_id":"bad-1",', 400, "invalid_json"),
    case("empty-body", b"", 400, "invalid_json"),
    case("trailing-garbage", mixed(bad()) + b" ]", 400, "invalid_json"),
    case("nan-literal", mixed(raw_bad(b'"weight":NaN')), 400, "invalid_json"),
    case("weight-1e400", mixed(raw_bad(b'"weight":1e400')), 400, "invalid_json"),
    case("ts-infinity-literal", mixed(raw_bad(b'"ts":Infinity')), 400, "invalid_json"),
    case("invalid-utf-8", mixed(raw_bad(b'"title":"\xff"')), 400, "invalid_json"),
    case("top-level-number", b"42", 400, "invalid_body"),
    case("top-level-string", b'"good-1"', 400, "invalid_body"),
    case("top-level-null", b"null", 400, "invalid_body"),
    case("top-level-true", b"true", 400, "invalid_body"),
    case("text-plain", mixed(bad()), 415, UNSUPPORTED, "text/plain"),
    case("form-urlencoded", b"article_id=good-1&section=sports", 415, UNSUPPORTED, FORM),
    case("no-content-type", mixed(bad()), 415, UNSUPPORTED, None),
    case("charset-latin-1", mixed(bad()), 415, UNSUPPORTED, LATIN_1),
    case("oversized-content-length", OVERSIZED, 413, "payload_too_large"),
    case("oversized-chunked", OVERSIZED, 413, "payload_too_large", chunked=True),
    # One event is refused: the good one beside it (index 0) counts, the bad one (index 1) not.
    case("weight-string-nan", mixed(bad(weight="NaN")), 200, "invalid_weight"),
    case("weight-string-infinity", mixed(bad(weight="Infinity")), 200, "invalid_weight"),
    case("weight-negative", mixed(bad(weight=-1)), 200, "invalid_weight"),
    case("weight-zero", mixed(bad(weight=0)), 200, "invalid_weight"),
    case("weight-1001", mixed(bad(weight=1001)), 200, "invalid_weight"),
    case("weight-bool", mixed(bad(weight=True)), 200, "invalid_weight"),
    case("weight-huge-finite", mixed(bad(weight=1e308)), 200, "invalid_weight"),
    case("ts-far-future", mixed(bad(ts=1_800_000_000 + 86_400)), 200, "future_ts"),
    case("ts-negative", mixed(bad(ts=-5)), 200, "invalid_ts"),
    case("ts-string", mixed(bad(ts="2027-01-15T08:00:00Z")), 200, "invalid_ts"),
    case("article-id-space", mixed(bad(article_id="bad 1")), 200, "invalid_article_id"),
    case("article-id-129-chars", mixed(bad(article_id="b" * 129)), 200, "invalid_article_id"),
    case("article-id-number", mixed(bad(article_id=1)), 200, "invalid_article_id"),
    case("article-id-missing", mixed(bad(article_id=...)), 200, "invalid_article_id"),
    case("empty-object", mixed(b"{}"), 200, "invalid_article_id"),
    case("section-unknown", mixed(bad(section="weather")), 200, "unknown_section"),
    case("section-all", mixed(bad(section="all")), 200, "unknown_section"),
    case("section-number", mixed(bad(section=3)), 200, "invalid_section"),
    case("section-missing", mixed(bad(section=...)), 200, "invalid_section"),
    case("element-not-object", mixed(b'"bad-1"'), 200, "not_an_object"),
    case("element-array", mixed(b"[" + bad() + b"]"), 200, "not_an_object"),
    case("title-not-string", mixed(bad(title=["a"])), 200, "invalid_title"),
    case("url-bad-scheme", mixed(bad(url="javascript:alert(1)")), 200, "invalid_url"),
    case("visitor-id-number", mixed(bad(visitor_id=7)), 200, "invalid_visitor_id"),
    case("user-agent-empty", mixed(bad(user_agent="")), 200, "invalid_user_agent"),
    case("ndjson-bad-utf-8", GOOD + b"\n" + BAD_UTF8, 200, "invalid_json", NDJSON),
    case("ndjson-broken-line", GOOD + b'\n\n{"article_id":"bad-1"', 200, "invalid_json", NDJSON),
    case("ndjson-bad-event", GOOD + b"\n" + bad(weight=-3) + b"\n", 200, "invalid_weight", NDJSON),
]  # fmt: skip


@pytest.mark.parametrize(("ct", "body", "status", "code", "chunked"), MALFORMED)
async def test_malformed_input_gets_its_code_and_changes_no_list(
    client: Client,
    settings: Settings,
    redis: Redis,
    key_prefix: str,
    ct: str | None,
    body: bytes,
    status: int,
    code: str,
    chunked: bool,
) -> None:
    await ingest(client, SEED)
    before = await all_lists(client, settings)
    keys_before = await redis_keys(redis, key_prefix)

    resp = await post_events(client, body, ct, chunked)

    expected = dict(before)
    if status == 200:
        reply = await resp.json()
        message = reply["rejected"][0]["message"]
        assert reply == {
            "accepted": 1,
            "rejected": [{"index": 1, "code": code, "message": message}],
        }
        assert message
        expected["all"] = [item(1, "seed", 5.0), item(2, "good-1", 1.0)]
        expected["sports"] = [item(1, "good-1", 1.0)]
    else:
        await assert_error(resp, status, code)
        assert await redis_keys(redis, key_prefix) == keys_before
        await assert_error(await client.get("/v1/articles/good-1"), 404, "article_not_found")
    assert await all_lists(client, settings) == expected
    await assert_error(await client.get("/v1/articles/bad-1"), 404, "article_not_found")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_of_exactly_the_limit_is_accepted(
    client: Client, settings: Settings, chunked: bool
) -> None:
    prefix = b"[" + GOOD
    body = prefix + b" " * (settings.max_body_bytes - len(prefix) - 1) + b"]"
    assert len(body) == settings.max_body_bytes
    resp = await post_events(client, body, chunked=chunked)
    assert resp.status == 200
    assert await resp.json() == {"accepted": 1, "rejected": []}


async def test_default_ts_is_clock_now_and_weights_add_up(client: Client, clock: FakeClock) -> None:
    await ingest(
        client,
        {"article_id": "one", "section": "sports"},
        {"article_id": "heavy", "section": "sports", "weight": 2.5},
        {"article_id": "old", "section": "sports", "ts": clock.now - 7200},
    )
    ranking = await get_ranking(client, "/v1/rankings/sports")
    heavy, one, old = ranking.pop("items")
    assert ranking == {
        "section": "sports",
        "window": "default",
        "generated_at": clock.now,
        "half_life_s": 7200.0,
    }
    assert heavy == item(1, "heavy", 2.5)
    assert one == item(2, "one", 1.0)
    assert (old["rank"], old["article_id"]) == (3, "old")
    assert old["score"] == pytest.approx(0.5, rel=1e-12)
    article = await get_json(client, "/v1/articles/one")
    assert article["scores"] == {"all": 1.0, "sports": 1.0}
    assert (article["title"], article["url"], article["hidden"]) == (None, None, False)

    # The default ts was the clock's now: one half-life later the view is worth half.
    clock.now += 7200
    ranking = await get_ranking(client, "/v1/rankings/all")
    assert ranking["generated_at"] == clock.now
    assert ranking["items"][1]["article_id"] == "one"
    assert ranking["items"][1]["score"] == pytest.approx(0.5, rel=1e-12)
    assert ranking["items"][0]["score"] == pytest.approx(1.25, rel=1e-12)


async def test_event_metadata_fills_only_what_the_cms_left_unset(client: Client) -> None:
    put = await client.put("/v1/articles/a-1", json={"title": "CMS title"})
    assert put.status == 200
    await ingest(
        client,
        {"article_id": "a-1", "section": "world", "title": "Event title", "url": "/world/a-1"},
        {"article_id": "b-1", "section": "world", "title": KOREAN_TITLE},
    )
    await ingest(client, {"article_id": "b-1", "section": "world", "title": "Later title"})
    items = (await get_ranking(client, "/v1/rankings/world"))["items"]
    assert items == [
        item(1, "b-1", 2.0, title=KOREAN_TITLE),
        item(2, "a-1", 1.0, title="CMS title", url="/world/a-1"),
    ]
    # The CMS still overrides what an event filled in.
    await client.put("/v1/articles/b-1", json={"title": "CMS b"})
    assert (await get_json(client, "/v1/articles/b-1"))["title"] == "CMS b"


async def test_bots_events_are_answered_and_counted_as_excluded_per_reason(client: Client) -> None:
    person = {"article_id": "read", "section": "sports", "user_agent": BROWSERS["safari-iphone"]}
    events = [
        {"article_id": "crawled", "section": "sports", "user_agent": CRAWLERS["googlebot"]},
        person,
        {"article_id": "crawled", "section": "sports", "user_agent": CRAWLERS["bingbot"]},
        {"article_id": "shot", "section": "sports", "user_agent": HEADLESS_BROWSERS["puppeteer"]},
        {"article_id": "bad-1", "section": "sports", "user_agent": 7},
    ]
    resp = await client.post("/v1/events", json=events)
    assert resp.status == 200
    answer = await resp.json()
    assert answer["accepted"] == 1
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == [(4, "invalid_user_agent")]
    assert answer["excluded"] == {"crawler": 2, "headless_browser": 1}
    items = (await get_ranking(client, "/v1/rankings/sports"))["items"]
    assert [item["article_id"] for item in items] == ["read"]

    resp = await client.get("/metrics")
    samples = [s for f in text_string_to_metric_families(await resp.text()) for s in f.samples]
    excluded = {
        s.labels["reason"]: s.value for s in samples if s.name == "ranker_events_excluded_total"
    }
    # Every reason's series is there from the start, at 0 until it counts.
    assert excluded == {"crawler": 2.0, "headless_browser": 1.0, "duplicate_reader": 0.0}
    accepted = {
        s.labels["section"]: s.value for s in samples if s.name == "ranker_events_accepted_total"
    }
    assert sum(accepted.values()) == accepted["sports"] == 1.0


async def test_an_answer_with_no_bots_event_has_no_excluded_field(client: Client) -> None:
    event = {"article_id": "read", "section": "sports", "user_agent": BROWSERS["chrome-android"]}
    resp = await client.post("/v1/events", json=[event])
    assert await resp.json() == {"accepted": 1, "rejected": []}
