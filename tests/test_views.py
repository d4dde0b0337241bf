"""HTTP tests through the app against a real Redis: ingest validation, rankings, articles, ops."""

from __future__ import annotations

import io
import string
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from ranker.api.rankings import _parse_limit
from ranker.app import create_app
from ranker.config import Settings
from ranker.errors import InvalidLimit
from ranker.lists.cache import DEFAULT_LIMIT, MAX_LIMIT
from ranker.store.keys import Keys
from tests.conftest import AiohttpClient, Client, FakeClock, refreshed
from tests.test_bots import BROWSERS, CRAWLERS, HEADLESS_BROWSERS

JSON = "application/json"
NDJSON = "application/x-ndjson"
MIB = 1024 * 1024
GOOD = orjson.dumps({"article_id": "good-1", "section": "sports"})
SEED = {"article_id": "seed", "section": "national", "weight": 5}
KOREAN_TITLE = "북한, 동해상으로 탄도미사일 발사… 합참 “추가 도발 경계”"


def bad(**fields: Any) -> bytes:
    """An event for article ``bad-1`` in ``national``; a field given as ``...`` is left out."""
    base: dict[str, Any] = {"article_id": "bad-1", "section": "national", **fields}
    return orjson.dumps({name: value for name, value in base.items() if value is not ...})


def raw_bad(fragment: bytes) -> bytes:
    """A bad event written by hand, for what orjson cannot serialize (NaN, huge numbers)."""
    return b'{"article_id":"bad-1","section":"national",' + fragment + b"}"


def mixed(bad_event: bytes) -> bytes:
    """A JSON array of the good event (index 0) and a bad one (index 1)."""
    return b"[" + GOOD + b"," + bad_event + b"]"


def case(
    case_id: str, body: bytes, status: int, code: str, ct: str | None = JSON, chunked: bool = False
) -> pytest.ParameterSet:
    return pytest.param(ct, body, status, code, chunked, id=case_id)


OVERSIZED = b"[" + GOOD + b"," + b" " * MIB + GOOD + b"]"
FORM = "application/x-www-form-urlencoded"
LATIN_1 = JSON + "; charset=latin-1"
UNSUPPORTED = "unsupported_media_type"
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


async def _chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def post_events(
    client: Client, body: bytes, ct: str | None = JSON, chunked: bool = False
) -> ClientResponse:
    """POST a raw body; ``ct=None`` sends no Content-Type; ``chunked`` sends no Content-Length."""
    headers = {} if ct is None else {"Content-Type": ct}
    skip = ("Content-Type",) if ct is None else ()
    # BytesIO, not bytes: aiohttp warns about large raw bytes bodies. Its size is known, so it
    # still goes with a Content-Length.
    data = _chunks(body) if chunked else io.BytesIO(body)
    resp = await client.post("/v1/events", data=data, headers=headers, skip_auto_headers=skip)
    sent = resp.request_info.headers
    assert ("Content-Length" in sent, sent.get("Transfer-Encoding")) == (
        (False, "chunked") if chunked else (True, None)
    )
    return resp


async def ingest(client: Client, *events: dict[str, Any]) -> None:
    resp = await client.post("/v1/events", json=list(events))
    assert resp.status == 200
    assert await resp.json() == {"accepted": len(events), "rejected": []}


async def get_json(client: Client, path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def get_ranking(client: Client, path: str) -> Any:
    """A ranking as of now: the cache is brought up to date first, as its refresh would."""
    await refreshed(client)
    return await get_json(client, path)


async def assert_error(resp: ClientResponse, status: int, code: str) -> None:
    assert resp.status == status, await resp.text()
    assert resp.content_type == JSON
    body = await resp.json()
    message = body["error"]["message"]
    assert body == {"error": {"code": code, "message": message}}
    assert isinstance(message, str)
    assert message


async def all_lists(client: Client, settings: Settings) -> dict[str, list[dict[str, Any]]]:
    return {
        ranking: (await get_ranking(client, f"/v1/rankings/{ranking}?limit=100"))["items"]
        for ranking in settings.rankings
    }


def item(rank: int, article_id: str, score: float, **meta: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"rank": rank, "article_id": article_id, "score": score}
    # Every list in these tests is from an interval with none recorded before it: all new.
    defaults = {"title": None, "url": None, "movement": "new", "previous_rank": None}
    return fields | defaults | meta | {"fill": False, "pinned": False}


async def redis_keys(redis: Redis, key_prefix: str) -> set[str]:
    return {key async for key in redis.scan_iter(match=Keys(key_prefix).pattern())}


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


@pytest.mark.parametrize("section", ["weather", "ALL", "Sports", "x" * 200])
async def test_unknown_ranking_is_404(client: Client, section: str) -> None:
    await assert_error(await client.get(f"/v1/rankings/{section}"), 404, "unknown_section")


@pytest.mark.parametrize("limit", ["0", "101", "abc", "1.5", "", "-1", "+5", " 5", "1e2", "٣"])
async def test_bad_limit_is_400(client: Client, limit: str) -> None:
    resp = await client.get("/v1/rankings/all", params={"limit": limit})
    await assert_error(resp, 400, "invalid_limit")


@given(raw=st.none() | st.text(string.digits, max_size=5) | st.text(max_size=5))
def test_a_limit_is_one_to_three_digits_from_1_to_the_cap(raw: str | None) -> None:
    try:
        limit = _parse_limit(raw)
    except InvalidLimit:
        assert raw is not None
        digits = 0 < len(raw) <= 3 and set(raw) <= set(string.digits)
        assert not (digits and 1 <= int(raw) <= MAX_LIMIT)
    else:
        assert 1 <= limit <= MAX_LIMIT
        assert limit == (DEFAULT_LIMIT if raw is None else int(raw))


async def test_limit_defaults_to_10_and_caps_the_list(client: Client) -> None:
    await ingest(
        client, *({"article_id": f"w{w}", "section": "business", "weight": w} for w in range(1, 13))
    )
    default = (await get_ranking(client, "/v1/rankings/business"))["items"]
    assert [i["article_id"] for i in default] == [f"w{w}" for w in range(12, 2, -1)]
    assert [i["rank"] for i in default] == list(range(1, 11))
    assert len((await get_ranking(client, "/v1/rankings/business?limit=100"))["items"]) == 12
    top = (await get_ranking(client, "/v1/rankings/all?limit=1"))["items"]
    assert top == [item(1, "w12", 12.0)]


@pytest.mark.parametrize("article_id", ["bad%20id", "x" * 129, "%ED%95%9C", "a+b", "a!b", "a%2Cb"])
async def test_bad_article_id_is_400(client: Client, article_id: str) -> None:
    path = f"/v1/articles/{article_id}"
    await assert_error(await client.get(path), 400, "invalid_article_id")
    await assert_error(await client.put(path, json={"title": "t"}), 400, "invalid_article_id")


async def test_unknown_article_is_404(client: Client) -> None:
    await assert_error(await client.get("/v1/articles/nobody-here"), 404, "article_not_found")


def put_case(
    case_id: str, body: bytes, status: int = 400, code: str = "invalid_article", ct: str = JSON
) -> pytest.ParameterSet:
    return pytest.param(ct, body, status, code, id=case_id)


@pytest.mark.parametrize(
    ("ct", "body", "status", "code"),
    [
        put_case("unknown-field", b'{"title":"t","color":"red"}'),
        put_case("title-number", b'{"title":5}'),
        put_case("title-empty", b'{"title":""}'),
        put_case("url-ftp", b'{"url":"ftp://x.example/a"}'),
        # A browser reads "\" as "/": this is //evil.example/a, another site.
        put_case("url-backslash", b'{"url":"/\\\\evil.example/a"}'),
        put_case("url-delete-char", b'{"url":"/a\\u007fb"}'),
        put_case("section-unknown", b'{"section":"weather"}'),
        put_case("section-all", b'{"section":"all"}'),
        put_case("published-at-string", b'{"published_at":"2027-01-01"}'),
        put_case("published-at-bool", b'{"published_at":true}'),
        put_case("published-at-negative", b'{"published_at":-1}'),
        put_case("hidden-string", b'{"hidden":"yes"}'),
        put_case("hidden-number", b'{"hidden":1}'),
        put_case("array-body", b'[{"title":"t"}]'),
        put_case("not-json", b'{"title":"t"', code="invalid_json"),
        put_case("nan", b'{"published_at":NaN}', code="invalid_json"),
        put_case("text-plain", b'{"title":"t"}', 415, UNSUPPORTED, "text/plain"),
        put_case("ndjson", b'{"title":"t"}', 415, UNSUPPORTED, NDJSON),
    ],
)
async def test_bad_article_update_is_refused_and_writes_nothing(
    client: Client, ct: str, body: bytes, status: int, code: str
) -> None:
    resp = await client.put("/v1/articles/a-1", data=body, headers={"Content-Type": ct})
    await assert_error(resp, status, code)
    await assert_error(await client.get("/v1/articles/a-1"), 404, "article_not_found")


async def test_article_put_get_round_trip(client: Client) -> None:
    sent = {
        "title": KOREAN_TITLE,
        "url": "https://www.example.co.kr/national/1?x=1",
        "section": "national",
        "published_at": 1_799_990_000.25,
        "hidden": False,
    }
    put = await client.put("/v1/articles/art:2027.01-15_x", json=sent)
    assert put.status == 200
    expected = {"article_id": "art:2027.01-15_x", **sent, "scores": {}, "windows": {}}
    expected["hidden_until"] = None
    assert await put.json() == expected
    got = await client.get("/v1/articles/art:2027.01-15_x")
    assert await got.json() == expected
    assert KOREAN_TITLE.encode("utf-8") in await got.read()

    # Fields not sent are kept; null clears one.
    cleared = await client.put("/v1/articles/art:2027.01-15_x", json={"url": None})
    assert await cleared.json() == expected | {"url": None}


@pytest.mark.parametrize("body", [{}, {"title": None}], ids=["empty", "clear-only"])
async def test_a_put_that_stores_nothing_answers_a_blank_article(
    client: Client, body: dict[str, Any]
) -> None:
    resp = await client.put("/v1/articles/nobody", json=body)
    assert resp.status == 200
    assert await resp.json() == {
        "article_id": "nobody",
        "title": None,
        "url": None,
        "section": None,
        "published_at": None,
        "hidden": False,
        "scores": {},
        "hidden_until": None,
        "windows": {},
    }
    await assert_error(await client.get("/v1/articles/nobody"), 404, "article_not_found")


async def test_hidden_article_keeps_its_score_and_reappears(
    client: Client, settings: Settings
) -> None:
    await ingest(
        client,
        {"article_id": "star", "section": "sports", "weight": 3},
        *({"article_id": f"h{n}", "section": "sports", "weight": 2} for n in range(3)),
        {"article_id": "plain", "section": "sports"},
    )
    for article_id in ("star", "h0", "h1", "h2"):
        assert (await client.put(f"/v1/articles/{article_id}", json={"hidden": True})).status == 200
    # Views keep counting while hidden.
    await ingest(client, {"article_id": "star", "section": "sports"})

    for ranking, items in (await all_lists(client, settings)).items():
        assert [i["article_id"] for i in items] == (
            ["plain"] if ranking in ("all", "sports") else []
        )
    for path in ("/v1/rankings/all?limit=1", "/v1/rankings/sports?limit=1"):
        assert (await get_ranking(client, path))["items"] == [item(1, "plain", 1.0)]
    star = await get_json(client, "/v1/articles/star")
    assert (star["hidden"], star["scores"]) == (True, {"all": 4.0, "sports": 4.0})

    assert (await client.put("/v1/articles/star", json={"hidden": False})).status == 200
    items = (await get_ranking(client, "/v1/rankings/sports"))["items"]
    assert items == [item(1, "star", 4.0), item(2, "plain", 1.0)]


@pytest.fixture
async def sports_48h(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> Client:
    """A client of an app whose sports lists leave out articles published over 48 hours ago."""
    settings = make_settings(max_age_hours={"sports": 48.0})
    return await aiohttp_client(create_app(settings, clock=clock))


async def test_lists_leave_out_articles_older_than_their_rankings_maximum_age(
    sports_48h: Client, clock: FakeClock
) -> None:
    client = sports_48h
    await ingest(
        client,
        {"article_id": "old", "section": "sports", "weight": 3},
        {"article_id": "young", "section": "sports", "weight": 2},
        {"article_id": "undated", "section": "sports"},
    )
    hour = 3600
    put = await client.put("/v1/articles/young", json={"published_at": clock.now - 47 * hour})
    assert put.status == 200
    ids = ["old", "young", "undated"]
    assert await listed(client, "/v1/rankings/sports") == ids
    # A PUT of published_at refreshes this replica's lists before it answers, as hiding does.
    put = await client.put("/v1/articles/old", json={"published_at": clock.now - 49 * hour})
    assert put.status == 200
    items = (await get_json(client, "/v1/rankings/sports"))["items"]
    assert [i["article_id"] for i in items] == ["young", "undated"]
    assert await listed(client, "/v1/rankings/all") == ids

    # Age is measured at each refresh: two hours on, "young" is 49 hours old too.
    clock.now += 2 * hour
    assert await listed(client, "/v1/rankings/sports") == ["undated"]
    assert await listed(client, "/v1/rankings/all") == ids


async def listed(client: Client, path: str) -> list[str]:
    """The ids a ranking lists as of now."""
    return [i["article_id"] for i in (await get_ranking(client, path))["items"]]


NON_ASCII_TITLES = {
    "ko-event": KOREAN_TITLE,
    "ko-cms": "손흥민, 시즌 10호골… “팀이 먼저”",
    # Decomposed (e + combining acute), an astral emoji, a right-to-left script, a ZWJ sequence:
    # what comes in goes out, never normalized or escaped.
    "mixed": "Cafe\u0301 😀 日本語 עברית 👩\u200d💻",
}


async def test_non_ascii_titles_round_trip_byte_for_byte(client: Client) -> None:
    event_title, cms_title, mixed = NON_ASCII_TITLES.values()
    # Raw UTF-8 bodies: a JSON encoder's \u escapes would test the JSON parser, not the bytes.
    events = [
        {"article_id": "ko-event", "section": "national", "weight": 3, "title": event_title},
        {"article_id": "ko-cms", "section": "national", "weight": 2},
        {"article_id": "mixed", "section": "national", "title": mixed},
    ]
    resp = await post_events(client, orjson.dumps(events))
    assert resp.status == 200
    put = await client.put(
        "/v1/articles/ko-cms",
        data=orjson.dumps({"title": cms_title}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert put.status == 200
    assert f'"title":"{cms_title}"'.encode() in await put.read()
    await refreshed(client)
    answers = [
        *[await (await client.get(f"/v1/articles/{id_}")).read() for id_ in NON_ASCII_TITLES],
        *[await (await client.get(f"/v1/rankings/{name}")).read() for name in ("national", "all")],
    ]
    for answer in answers:
        assert b"\\u" not in answer
    for (article_id, title), article in zip(NON_ASCII_TITLES.items(), answers, strict=False):
        encoded = f'"title":"{title}"'.encode()
        assert encoded in article, article_id
        assert all(encoded in ranking for ranking in answers[-2:]), article_id
    items = orjson.loads(answers[-1])["items"]
    assert {i["article_id"]: i["title"] for i in items} == NON_ASCII_TITLES


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


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/nope", 404, "not_found", id="unknown-route"),
        pytest.param("GET", "/v1/rankings", 404, "not_found", id="rankings-no-section"),
        pytest.param("GET", "/v1/events", 405, "method_not_allowed", id="get-events"),
        pytest.param("DELETE", "/v1/articles/a-1", 405, "method_not_allowed", id="delete-article"),
        pytest.param("POST", "/v1/rankings/all", 405, "method_not_allowed", id="post-ranking"),
    ],
)
async def test_routing_errors_are_json(
    client: Client, method: str, path: str, status: int, code: str
) -> None:
    resp = await client.request(method, path)
    await assert_error(resp, status, code)
    if status == 405:
        assert resp.headers["Allow"]
        assert method not in resp.headers["Allow"].split(", ")


async def test_health_and_readiness(client: Client) -> None:
    assert await get_json(client, "/healthz") == {"status": "ok"}
    assert await get_json(client, "/readyz") == {"status": "ready", "redis": "up"}


async def test_metrics_count_events_and_label_routes_by_template(client: Client) -> None:
    resp = await post_events(client, mixed(bad(weight=0)))
    assert resp.status == 200
    await assert_error(await post_events(client, b"nope"), 400, "invalid_json")
    await get_json(client, "/v1/rankings/sports")
    await get_json(client, "/v1/rankings/national")
    await get_json(client, "/v1/articles/good-1")
    await client.get("/nope")

    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    samples = [s for f in text_string_to_metric_families(await resp.text()) for s in f.samples]

    def value(name: str, **labels: str) -> float | None:
        return next((s.value for s in samples if s.name == name and s.labels == labels), None)

    assert value("ranker_events_accepted_total", section="sports") == 1.0
    assert value("ranker_events_rejected_total", reason="invalid_weight") == 1.0
    assert value("ranker_event_batches_rejected_total", reason="invalid_json") == 1.0
    count = "ranker_http_request_duration_seconds_count"
    assert value(count, route="/v1/rankings/{section}", method="GET", status="200") == 2.0
    assert value(count, route="/v1/articles/{article_id}", method="GET", status="200") == 1.0
    assert value(count, route="/v1/events", method="POST", status="200") == 1.0
    assert value(count, route="/v1/events", method="POST", status="400") == 1.0
    routes = {s.labels["route"] for s in samples if s.name == count}
    assert routes == {
        "/v1/events",
        "/v1/rankings/{section}",
        "/v1/articles/{article_id}",
        "unmatched",
    }


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


def entries(body: Any) -> list[tuple[str, bool]]:
    """A list answer's items as (article id, whether it is fill)."""
    return [(i["article_id"], i["fill"]) for i in body["items"]]


async def test_short_lists_are_filled_newest_first_through_a_sequence_of_refreshes(
    sports_48h: Client, clock: FakeClock
) -> None:
    client = sports_48h
    hour = 3600
    for article_id, age_h in {"s1": 1, "s2": 2, "s3": 3, "s4": 4, "w1": 0.5}.items():
        put = await client.put(
            f"/v1/articles/{article_id}",
            json={
                "section": "world" if article_id == "w1" else "sports",
                "published_at": clock.now - age_h * hour,
            },
        )
        assert put.status == 200
    path = "/v1/rankings/sports?limit=3"

    # No views yet: the newest published articles, as fill, score 0.
    body = await get_ranking(client, path)
    assert entries(body) == [("s1", True), ("s2", True), ("s3", True)]
    assert body["items"][0] == item(1, "s1", 0.0) | {"fill": True}
    all_fill = entries(await get_ranking(client, "/v1/rankings/all?limit=3"))
    assert all_fill == [("w1", True), ("s1", True), ("s2", True)]

    # Views arrive: the scored take the top, the fill shrinks and skips what is listed.
    await ingest(client, {"article_id": "s3", "section": "sports"})
    assert entries(await get_ranking(client, path)) == [("s3", False), ("s1", True), ("s2", True)]
    await ingest(
        client,
        {"article_id": "s4", "section": "sports", "weight": 3},
        {"article_id": "s1", "section": "sports", "weight": 2},
    )
    assert entries(await get_ranking(client, path)) == [("s4", False), ("s1", False), ("s3", False)]

    # Hidden or too old: never fill. Only s2 is left to fill a list of 4; then nothing.
    await client.put("/v1/articles/s1", json={"hidden": True})
    path = "/v1/rankings/sports?limit=4"
    assert entries(await get_ranking(client, path)) == [("s4", False), ("s3", False), ("s2", True)]
    clock.now += 46.5 * hour  # s2 is 48.5 hours old; s3 and s4 are scored but older still
    assert entries(await get_ranking(client, path)) == []

    # A move takes an article out of its old section's fill and into the new one's, in this
    # replica's lists before the PUT answers.
    assert (await client.put("/v1/articles/w1", json={"section": "sports"})).status == 200
    assert entries(await get_json(client, path)) == [("w1", True)]
    assert entries(await get_ranking(client, "/v1/rankings/world")) == []
