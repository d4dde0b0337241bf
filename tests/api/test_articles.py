"""GET and PUT /v1/articles/{article_id} through the app."""

from __future__ import annotations

import asyncio
import gc
import math
import string
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from ranker.api.appkeys import METRICS, STORE
from ranker.api.articles import FIELDS
from ranker.app import create_app
from ranker.config import Settings
from ranker.decay import MAX_FUTURE_S
from ranker.errors import InvalidArticle, InvalidJson, UnsupportedMediaType
from ranker.lists.render import STALE_HEADER
from tests.conftest import AiohttpClient, Client, refreshed
from tests.support.articles import parse_update, update_accepted
from tests.support.http import (
    JSON,
    KOREAN_TITLE,
    NDJSON,
    UNSUPPORTED,
    all_lists,
    assert_error,
    get_json,
    get_ranking,
    ingest,
    item,
    post_events,
)
from tests.support.strategies import (
    NOW,
    SECTIONS,
    is_site_url,
    is_title,
    is_utf8,
    json_values,
    near_json_bytes,
    site_urls,
    titles,
)

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too


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


def valid_field(name: str, value: Any) -> bool:
    """docs/api/articles.md's rule for each field of a PUT; null clears any of them."""
    if value is None:
        return True
    if name == "title":
        return isinstance(value, str) and is_title(value)
    if name == "url":
        return isinstance(value, str) and is_site_url(value)
    if name == "section":
        return value in SECTIONS if isinstance(value, str) else False
    if name == "published_at":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value) and 0 <= value <= NOW + MAX_FUTURE_S
    return isinstance(value, bool)  # hidden


FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "title": titles | json_values,
    "url": site_urls | json_values,
    "section": st.sampled_from(["national", "sports", "all", "weather"]) | json_values,
    "published_at": st.floats(allow_nan=False, allow_infinity=False) | json_values,
    "hidden": json_values,
}


@given(
    document=st.fixed_dictionaries({}, optional=FIELD_VALUES),
    unknown=st.dictionaries(st.text(string.ascii_lowercase + "_", max_size=12), json_values),
)
def test_an_update_is_accepted_exactly_when_every_field_is(
    document: dict[str, Any], unknown: dict[str, Any]
) -> None:
    assert set(FIELD_VALUES) == set(FIELDS)
    valid = all(valid_field(name, value) for name, value in document.items())
    assert update_accepted(document) == valid
    sent = {**unknown, **document}
    if set(sent) - set(FIELDS):
        assert not update_accepted(sent)
    if valid:
        # orjson reads ints past 2**63 as floats: compare with what went over the wire.
        expected = orjson.loads(orjson.dumps(document))
        assert parse_update(orjson.dumps(document), JSON, None) == expected


@given(
    body=st.binary(max_size=80) | near_json_bytes(),
    content_type=st.sampled_from([JSON, "application/x-ndjson"]) | st.text(max_size=20),
    charset=st.sampled_from([None, "utf-8", "UTF8"]) | st.text(max_size=10),
)
def test_any_update_body_is_parsed_or_refused_with_a_domain_error(
    body: bytes, content_type: str, charset: str | None
) -> None:
    try:
        update = parse_update(body, content_type, charset)
    except UnsupportedMediaType:
        assert content_type != JSON or not is_utf8(charset)
    except (InvalidJson, InvalidArticle):
        pass
    else:
        assert set(update) <= set(FIELDS)
        assert all(valid_field(name, value) for name, value in update.items())


@pytest.mark.parametrize(
    "published_at",
    [
        pytest.param(NOW * 1000, id="milliseconds"),
        pytest.param(32_503_680_000, id="year-3000"),
        pytest.param(NOW + MAX_FUTURE_S + 1, id="just-past-the-allowance"),
    ],
)
def test_a_publication_date_ahead_of_the_clock_is_refused(published_at: float) -> None:
    # Such a date would top every list's fill until then: for ever, in milliseconds.
    with pytest.raises(InvalidArticle, match="published_at is more than 300 s"):
        parse_update(orjson.dumps({"published_at": published_at}), JSON, None)


@pytest.mark.parametrize("published_at", [0, NOW - 86_400, NOW, NOW + MAX_FUTURE_S])
def test_a_publication_date_up_to_the_allowance_is_taken(published_at: float) -> None:
    update = parse_update(orjson.dumps({"published_at": published_at}), JSON, None)
    assert update == {"published_at": published_at}


# --- Reads of an article through the app: their cost, and a flood of them -----------------------


def operations(client: Client, operation: str) -> float:
    value = client.app[METRICS].registry.get_sample_value(
        "ranker_redis_command_duration_seconds_count", {"operation": operation}
    )
    return value or 0.0


class HeldReads:
    """Holds every article read that has its connection until released: a stand-in for reads
    that are slow to come back, so the others queue behind them."""

    def __init__(self, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
        store = client.app[STORE]
        send = store._send_article_read
        self.started = asyncio.Event()
        self.release = asyncio.Event()

        async def held(article_id: str) -> tuple[dict[str, str], list[Any]]:
            self.started.set()
            await self.release.wait()
            return await send(article_id)

        monkeypatch.setattr(store, "_send_article_read", held)


async def test_reads_of_one_article_that_wait_together_share_one_redis_read(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await aiohttp_client(create_app(make_settings(redis_max_connections=4)))
    assert (await client.put("/v1/articles/a", json={"title": "A"})).status == 200
    held = HeldReads(client, monkeypatch)
    before = operations(client, "article_get")
    first = asyncio.ensure_future(client.get("/v1/articles/a"))
    await held.started.wait()  # the only article connection is taken: the rest wait
    rest = [asyncio.ensure_future(client.get("/v1/articles/a")) for _ in range(50)]
    await asyncio.sleep(0.1)
    held.release.set()
    responses = await asyncio.gather(first, *rest)
    assert {response.status for response in responses} == {200}
    assert {(await response.json())["title"] for response in responses} == {"A"}
    # The first read, and one for all that came while it was out.
    assert operations(client, "article_get") - before == 2


async def test_a_flood_of_article_reads_gets_503s_and_starves_nothing_else(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One connection for article reads (a quarter of 4), held: every other read waits for it.
    settings = make_settings(redis_max_connections=4, redis_timeout_s=0.2, refresh_interval_s=0.1)
    client = await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))
    event = [{"article_id": "read", "section": "sports"}]
    assert (await client.post("/v1/events", json=event)).status == 200
    assert (await client.get("/v1/rankings/all")).status == 200
    held = HeldReads(client, monkeypatch)
    flood = [asyncio.ensure_future(client.get(f"/v1/articles/id-{n}")) for n in range(300)]
    await held.started.wait()
    statuses: list[int] = []
    for _ in range(5):
        lists = await client.get("/v1/rankings/all")
        assert lists.status == 200
        assert STALE_HEADER not in lists.headers
        readiness = await client.get("/readyz")
        assert readiness.status == 200
        assert await readiness.json() == {"status": "ready", "redis": "up"}
        assert (await client.post("/v1/events", json=event)).status == 200
        await asyncio.sleep(0.1)  # a refresh interval: the lists are re-read meanwhile
    held.release.set()
    for response in await asyncio.gather(*flood):
        statuses.append(response.status)
        if response.status == 503:
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["error"]["code"] == "overloaded"
    assert 503 in statuses  # the flood was refused in part, as back-pressure...
    assert set(statuses) <= {404, 503}
    store = client.app[STORE]
    assert store.available  # ...and not taken for a Redis outage
    assert client.app[METRICS].registry.get_sample_value("ranker_redis_up") == 1


async def test_a_shared_read_that_fails_after_every_caller_left_logs_no_error(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(redis_max_connections=4, request_timeout_s=0.3, redis_timeout_s=0.6)
    client = await aiohttp_client(create_app(settings))
    held = HeldReads(client, monkeypatch)
    first = asyncio.ensure_future(client.get("/v1/articles/a"))
    await held.started.wait()
    # Its caller gives up (the request timeout) before its read gives up waiting for a slot.
    response = await client.get("/v1/articles/b")
    assert (await response.json())["error"]["code"] == "timeout"
    await asyncio.sleep(0.6)
    gc.collect()  # where asyncio reports an exception nobody retrieved
    held.release.set()
    await first
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
