"""Properties of the article validators (``ranker.articles``), and their agreement with the
event parser on the rules the two share: article ids, titles and urls; then what reading an
article costs Redis, and what a flood of reads may and may not do to the rest of the service.

Other requests through the app are in tests/test_views.py; here the validators meet generated
input.
"""

from __future__ import annotations

import asyncio
import gc
import math
import string
import unicodedata
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from yarl import URL

from ranker.api.appkeys import METRICS, REDIS, STORE
from ranker.api.articles import FIELDS, parse_article_update
from ranker.api.preconditions import check_article_id
from ranker.app import create_app
from ranker.config import Settings
from ranker.decay import MAX_FUTURE_S
from ranker.errors import InvalidArticle, InvalidArticleId, InvalidJson, UnsupportedMediaType
from ranker.ingest.parse import parse_events
from ranker.lists.render import STALE_HEADER
from ranker.runtime.embedded import free_port
from ranker.store.base import PoolExhausted, WaitingPool
from ranker.validation import MAX_TITLE, is_valid_url
from tests.conftest import AiohttpClient, Client
from tests.strategies import (
    ID_CHARS,
    NOW,
    SECTIONS,
    any_urls,
    is_article_id,
    is_site_url,
    is_title,
    is_utf8,
    json_values,
    near_json_bytes,
    site_urls,
    texts,
    titles,
)

JSON = "application/json"
# Mostly id characters, so that many candidates are ids; the rest anything at all.
id_candidates = st.text(ID_CHARS + "{}*? /\\\n%", max_size=140) | texts


def event_accepted(**fields: Any) -> bool:
    event = {"article_id": "a1", "section": "national", **fields}
    parsed = parse_events(orjson.dumps(event), JSON, None, now=NOW, sections=SECTIONS)
    return bool(parsed.views)


def parse_update(body: bytes, content_type: str, charset: str | None) -> dict[str, Any]:
    return parse_article_update(body, content_type, charset, SECTIONS, now=NOW)


def update_accepted(document: dict[str, Any]) -> bool:
    try:
        parse_update(orjson.dumps(document), JSON, None)
    except InvalidArticle:
        return False
    return True


def id_accepted(article_id: str) -> bool:
    try:
        assert check_article_id(article_id) == article_id
    except InvalidArticleId:
        return False
    return True


@given(article_id=id_candidates | st.sampled_from([".", "..", "...", "a.", ".a"]))
def test_an_article_id_is_accepted_exactly_when_it_meets_the_rule(article_id: str) -> None:
    assert id_accepted(article_id) == is_article_id(article_id)
    assert event_accepted(article_id=article_id) == is_article_id(article_id)


@given(article_id=id_candidates)
def test_an_accepted_id_names_its_article_in_a_url_path(article_id: str) -> None:
    # What the CMS does to GET, PUT or hide the article a view named: the id as one path
    # segment. Clients normalise the path (yarl, urllib3, curl, browsers, proxies); the id
    # must come through that whole, or the article cannot be reached.
    if id_accepted(article_id):
        base = "http://ranker.example/v1/articles/"
        assert URL(base + article_id).path == "/v1/articles/" + article_id
        assert URL(base).joinpath(article_id).path == "/v1/articles/" + article_id


@given(url=any_urls)
def test_a_url_is_accepted_exactly_when_it_stays_on_the_site(url: str) -> None:
    assert update_accepted({"url": url}) == is_site_url(url)
    assert event_accepted(url=url) == is_site_url(url)


@given(
    title=titles
    | texts
    | st.text("가", min_size=MAX_TITLE - 2, max_size=MAX_TITLE + 2)
    | st.text("a\x00\x1b\n\t\x85\u202e\u2066\u200e\u200d가", min_size=1, max_size=8)
)
def test_a_title_is_accepted_whole_or_not_at_all(title: str) -> None:
    valid = is_title(title)
    assert update_accepted({"title": title}) == valid
    assert event_accepted(title=title) == valid
    if valid:
        update = parse_update(orjson.dumps({"title": title}), JSON, "utf-8")
        assert update == {"title": title}


def valid_field(name: str, value: Any) -> bool:
    """The README's rule for each field of a PUT; null clears any of them."""
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


@pytest.mark.parametrize("article_id", [".", ".."])
def test_a_dot_segment_is_not_an_article_id(article_id: str) -> None:
    # A client resolves /v1/articles/.. to /v1/: an article by that name could be counted,
    # but never read, retitled or hidden.
    with pytest.raises(InvalidArticleId):
        check_article_id(article_id)
    assert check_article_id("..." + article_id) == "..." + article_id


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


@pytest.mark.parametrize(
    "title",
    [
        pytest.param("a\x00b", id="nul"),
        pytest.param("\x1b[31mred", id="esc"),
        pytest.param("a\u202egnp.exe", id="right-to-left-override"),
        pytest.param("a\u2066b\u2069", id="isolate"),
        pytest.param("two\nlines", id="newline"),
        pytest.param("a\x85b", id="c1-next-line"),
    ],
)
def test_a_title_with_a_control_or_bidi_override_is_refused_by_put_and_events(title: str) -> None:
    with pytest.raises(InvalidArticle, match="bidi"):
        parse_update(orjson.dumps({"title": title}), JSON, None)
    assert not event_accepted(title=title)


@pytest.mark.parametrize(
    "title",
    ["북한, 동해상으로 탄도미사일 발사", "شكرا \u200f", "family \U0001f468\u200d\U0001f469"],
)
def test_titles_in_any_script_with_marks_and_joiners_are_taken(title: str) -> None:
    assert update_accepted({"title": title})
    assert event_accepted(title=title)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://news.example/a\u200bb", id="zero-width-space"),
        pytest.param("https://evil.example\uff0fnews.example/a", id="fullwidth-solidus-in-host"),
        pytest.param("https://\ud55c\uad6d.example/a", id="non-ascii-host"),
        pytest.param("/a\u202eb", id="bidi-override"),
        pytest.param("/a\ufeffb", id="byte-order-mark"),
    ],
)
def test_a_url_with_a_format_character_or_a_non_ascii_host_is_refused(url: str) -> None:
    assert not update_accepted({"url": url})
    assert not event_accepted(url=url)


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example/\uae30\uc0ac/1?q=\ud55c",
        "https://xn--3e0b707e.example/a",
        "/\uae30\uc0ac/1",
        "https://news.example/a\uff0fb",
    ],
)
def test_a_url_with_an_ascii_host_may_have_other_characters_in_its_path(url: str) -> None:
    assert update_accepted({"url": url})
    assert event_accepted(url=url)


def test_the_format_characters_refused_in_urls_cover_every_one_this_python_knows() -> None:
    every = (chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    format_characters = [c for c in every if unicodedata.category(c) == "Cf"]
    assert all(not is_valid_url(f"/a{c}") for c in format_characters)


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


async def test_running_out_of_pooled_connections_is_no_redis_outage(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(redis_max_connections=2, redis_timeout_s=0.2)
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/readyz")).status == 200
    pool = client.app[REDIS].connection_pool
    taken = [await pool.get_connection() for _ in range(2)]  # type: ignore[no-untyped-call]
    try:
        # A list never read needs a connection of that pool: none comes free.
        response = await client.get("/v1/rankings/world")
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == "overloaded"
        with pytest.raises(PoolExhausted):
            await client.app[STORE].ping()
    finally:
        for connection in taken:
            await pool.release(connection)
    assert client.app[STORE].available
    assert client.app[METRICS].registry.get_sample_value("ranker_redis_up") == 1
    assert await (await client.get("/readyz")).json() == {"status": "ready", "redis": "up"}
    assert (await client.get("/v1/rankings/world")).status == 200


async def test_only_a_wait_for_a_free_connection_is_pool_exhaustion(redis_url: str) -> None:
    # What WaitingPool tells apart relies on how redis-py raises each: checked here.
    pool = WaitingPool.from_url(redis_url, max_connections=1, timeout=0.1)
    held = await pool.get_connection()
    with pytest.raises(PoolExhausted):
        await pool.get_connection()
    await pool.release(held)
    await pool.disconnect()
    closed = WaitingPool.from_url(
        f"redis://127.0.0.1:{free_port()}/0", max_connections=1, timeout=0.1
    )
    with pytest.raises(RedisConnectionError) as refused:
        await closed.get_connection()
    assert not isinstance(refused.value, PoolExhausted)


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
