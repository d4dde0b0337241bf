"""The ranking cache: lists served from memory, refreshed once for all callers, HTTP caching."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDictProxy
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from ranker.api.appkeys import CACHE, METRICS, SETTINGS, STORE
from ranker.api.responses import etag_matches
from ranker.app import create_app
from ranker.config import Settings
from ranker.config.limits import MAX_LIMIT
from ranker.lists import cache as cache_module
from ranker.lists import kept as kept_module
from ranker.lists.render import STALE_HEADER
from ranker.runtime.embedded import EmbeddedRedis
from ranker.store import Ranking
from ranker.store.lists import Metadata
from tests.conftest import AiohttpClient, Client, FakeClock
from tests.support.waiting import eventually

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

Reads = dict[str, int]


def count_reads(client: Client, monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Count the store's ranking reads per ranking, from here on."""
    store = client.app[STORE]
    real_top = store.top
    reads: Reads = {}

    async def top(
        ranking: str,
        limit: int,
        now: float,
        window: str | None = None,
        metadata: Metadata | None = None,
    ) -> Ranking:
        reads[ranking] = reads.get(ranking, 0) + 1
        return await real_top(ranking, limit, now, window, metadata)

    monkeypatch.setattr(store, "top", top)
    return reads


async def post(client: Client, *events: dict[str, Any]) -> None:
    response = await client.post("/v1/events", json=list(events))
    assert response.status == 200, await response.text()


async def ids(client: Client, path: str) -> list[str]:
    response = await client.get(path)
    assert response.status == 200
    return [item["article_id"] for item in (await response.json())["items"]]


async def test_concurrent_requests_share_one_read_and_repeat_requests_read_nothing(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await post(client, {"article_id": "a", "section": "sports"})
    reads = count_reads(client, monkeypatch)
    paths = ["/v1/rankings/sports", "/v1/rankings/all?limit=10", "/v1/rankings/all?limit=3"]
    responses = await asyncio.gather(*(client.get(paths[i % 3]) for i in range(300)))
    assert {r.status for r in responses} == {200}
    # One read per ranking however many callers: limit 3 of "all" is cut from the same read
    # (or, if it came first, the deeper read replaced it and covered both).
    assert reads["sports"] == 1
    assert reads["all"] in (1, 2)
    before = dict(reads)
    for path in paths * 20:
        assert (await client.get(path)).status == 200
    assert reads == before


async def test_a_shallower_limit_is_cut_from_the_deeper_read(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await post(
        client, *({"article_id": f"a{n}", "section": "world", "weight": n} for n in range(1, 30))
    )
    reads = count_reads(client, monkeypatch)
    deep = await ids(client, "/v1/rankings/world?limit=25")
    assert reads == {"world": 1}
    assert await ids(client, "/v1/rankings/world?limit=5") == deep[:5]
    assert await ids(client, "/v1/rankings/world") == deep[:10]
    assert reads == {"world": 1}


async def test_every_spelling_of_a_query_gets_the_same_answer(client: Client) -> None:
    await post(client, {"article_id": "a", "section": "sports"})
    bodies = set()
    for path in (
        "/v1/rankings/sports",
        "/v1/rankings/sports?limit=10",
        "/v1/rankings/sports?limit=010",
        "/v1/rankings/sports?utm_source=x&limit=10",
    ):
        response = await client.get(path)
        assert response.status == 200
        bodies.add(await response.read())
    assert len(bodies) == 1
    assert client.app[CACHE].active() == {"sports": [10]}


async def test_etag_and_if_none_match(client: Client, settings: Settings) -> None:
    await post(client, {"article_id": "a", "section": "sports"})
    first = await client.get("/v1/rankings/sports")
    etag = first.headers["ETag"]
    assert re.fullmatch(r'W/"[0-9a-f]{32}"', etag)
    assert first.headers["Cache-Control"] == (
        "public, max-age=1, stale-while-revalidate=10, stale-if-error=300"
    )
    strong = etag.removeprefix("W/")
    for header in (etag, strong, f'"other", {etag}', "*"):
        response = await client.get("/v1/rankings/sports", headers={"If-None-Match": header})
        assert response.status == 304, header
        assert await response.read() == b""
        assert response.headers["ETag"] == etag
        assert response.headers["Cache-Control"] == settings.cache_control
    stale = await client.get("/v1/rankings/sports", headers={"If-None-Match": '"other"'})
    assert stale.status == 200
    assert await stale.read() == await first.read()


def test_etag_comparison_is_weak_as_rfc_9110_asks() -> None:
    assert etag_matches('"x"', '"x"')
    assert etag_matches('W/"x"', '"x"')
    assert etag_matches(' "a" ,W/"x"', '"x"')
    assert etag_matches("*", '"x"')
    assert not etag_matches('"y"', '"x"')
    assert not etag_matches("x", '"x"')
    assert not etag_matches("", '"x"')


OUR_ETAG = '"0123456789abcdef0123456789abcdef"'
other_etags = st.builds(
    lambda weak, tag, pad: f"{pad}{weak}{tag}{pad}",
    st.sampled_from(["", "W/"]),
    st.text('"0123456789abcdefx', max_size=36).filter(lambda tag: tag != OUR_ETAG),
    st.sampled_from(["", " ", "\t"]),
)


@given(
    others=st.lists(other_etags, max_size=4),
    ours=st.sampled_from([OUR_ETAG, f"W/{OUR_ETAG}", f" {OUR_ETAG} ", "*", None]),
    at=st.integers(0, 4),
)
def test_if_none_match_matches_exactly_when_it_lists_our_etag(
    others: list[str], ours: str | None, at: int
) -> None:
    candidates = list(others)
    if ours is not None:
        candidates.insert(at, ours)
    assert etag_matches(",".join(candidates), OUR_ETAG) == (ours is not None)


async def test_cache_control_follows_the_settings(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings(
        refresh_interval_s=2.5, stale_while_revalidate_s=30, stale_if_error_s=0
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/v1/rankings/all")
    assert response.headers["Cache-Control"] == (
        "public, max-age=3, stale-while-revalidate=30, stale-if-error=0"
    )


async def test_the_background_refresh_picks_up_writes_from_another_replica(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    settings = make_settings(refresh_interval_s=0.1)
    reader = await aiohttp_client(create_app(settings, clock=clock))
    writer = await aiohttp_client(create_app(settings, clock=clock))
    assert await ids(reader, "/v1/rankings/sports") == []
    await post(writer, {"article_id": "elsewhere", "section": "sports"})

    async def visible() -> bool:
        return await ids(reader, "/v1/rankings/sports") == ["elsewhere"]

    await eventually(visible)


async def test_a_local_write_refreshes_early(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    # An hour between ticks: only the early refresh after the flush can show the view.
    client = await aiohttp_client(create_app(make_settings(refresh_interval_s=3600), clock=clock))
    assert await ids(client, "/v1/rankings/sports") == []
    await post(client, {"article_id": "here", "section": "sports"})

    async def visible() -> bool:
        return await ids(client, "/v1/rankings/sports") == ["here"]

    await eventually(visible)


async def test_hiding_an_article_shows_in_this_replicas_lists_at_once(client: Client) -> None:
    await post(client, {"article_id": "a", "section": "sports", "weight": 2})
    await post(client, {"article_id": "b", "section": "sports"})
    await client.app[CACHE].refresh()
    assert await ids(client, "/v1/rankings/sports") == ["a", "b"]
    assert (await client.put("/v1/articles/a", json={"hidden": True})).status == 200
    assert await ids(client, "/v1/rankings/sports") == ["b"]
    assert await ids(client, "/v1/rankings/all") == ["b"]


async def test_lists_no_one_asks_for_are_dropped(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cache_module, "IDLE_AFTER_S", 0.0)
    client = await aiohttp_client(create_app(make_settings(refresh_interval_s=0.05)))
    assert (await client.get("/v1/rankings/sports?limit=5")).status == 200
    cache = client.app[CACHE]
    assert cache.active() == {"sports": [5]}

    async def dropped() -> bool:
        return cache.active() == {}

    await eventually(dropped)
    reads = count_reads(client, monkeypatch)
    await asyncio.sleep(0.3)
    assert reads == {}
    # Asked again, it comes back.
    assert (await client.get("/v1/rankings/sports?limit=5")).status == 200
    assert cache.active() == {"sports": [5]}


async def test_age_and_members_are_reported(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], redis: Redis
) -> None:
    # No tick for an hour: the age must keep growing between scrapes all the same.
    client = await aiohttp_client(create_app(make_settings(refresh_interval_s=3600)))
    await post(client, *({"article_id": f"a{n}", "section": "video"} for n in range(7)))
    await client.app[CACHE].refresh()
    assert len(await ids(client, "/v1/rankings/video")) == 7
    registry = client.app[METRICS].registry

    def age() -> float:
        value = registry.get_sample_value(
            "ranker_ranking_age_seconds", {"ranking": "video", "window": "default"}
        )
        assert value is not None
        return value

    first = age()
    await asyncio.sleep(0.05)
    assert 0 <= first < age()
    default = {"window": "default"}
    assert registry.get_sample_value("ranker_ranking_members", {"ranking": "video"} | default) == 7
    world = {"ranking": "world"} | default
    assert registry.get_sample_value("ranker_ranking_age_seconds", world) is None


@pytest.mark.single_node
async def test_lists_keep_answering_from_memory_while_redis_is_down(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    # A private server: this test stops it.
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    server.start()
    try:
        settings = make_settings(redis_url=server.url, refresh_interval_s=0.05)
        client = await aiohttp_client(create_app(settings, clock=clock))
        await post(client, {"article_id": "a", "section": "sports"})
        await client.app[CACHE].refresh()
        before = await (await client.get("/v1/rankings/sports")).read()
    finally:
        server.stop()
    registry = client.app[METRICS].registry

    async def refresh_failed() -> bool:
        value = registry.get_sample_value("ranker_redis_errors_total", {"operation": "refresh"})
        return value is not None and value > 0

    await eventually(refresh_failed)
    response = await client.get("/v1/rankings/sports")
    assert response.status == 200
    assert await response.read() == before
    assert orjson.loads(before)["items"][0]["article_id"] == "a"
    # A list never read before has nothing to fall back on.
    assert (await client.get("/v1/rankings/world")).status == 503


async def test_head_answers_the_headers_of_a_get(client: Client) -> None:
    get = await client.get("/v1/rankings/sports")
    head = await client.head("/v1/rankings/sports")
    assert head.status == 200
    assert await head.read() == b""
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Length"] == get.headers["Content-Length"]


async def test_a_put_waits_for_a_read_that_started_after_its_write(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No tick for an hour: only the PUT's own refresh can take the hidden article out.
    client = await aiohttp_client(create_app(make_settings(refresh_interval_s=3600), clock=clock))
    await post(client, {"article_id": "a", "section": "sports", "weight": 2})
    await post(client, {"article_id": "b", "section": "sports"})
    await client.app[CACHE].refresh()
    assert await ids(client, "/v1/rankings/sports") == ["a", "b"]

    store = client.app[STORE]
    real_top = store.top
    read_done, release = asyncio.Event(), asyncio.Event()

    async def slow_top(
        ranking: str,
        limit: int,
        now: float,
        window: str | None = None,
        metadata: Metadata | None = None,
    ) -> Ranking:
        # A read that took its data before the PUT's write, and answers after it.
        result = await real_top(ranking, limit, now, window, metadata)
        if not release.is_set():
            read_done.set()
            await release.wait()
        return result

    monkeypatch.setattr(store, "top", slow_top)
    in_flight = asyncio.ensure_future(client.app[CACHE].refresh(["sports"]))
    await read_done.wait()
    put = asyncio.ensure_future(client.put("/v1/articles/a", json={"hidden": True}))

    async def written() -> bool:
        return await redis.hget(store.keys.article("a"), "hidden_until") == "inf"

    await eventually(written)
    release.set()
    assert (await put).status == 200
    await in_flight
    assert await ids(client, "/v1/rankings/sports") == ["b"]


@contextlib.contextmanager
def paused(server: EmbeddedRedis) -> Iterator[None]:
    """The server stopped by SIGSTOP: connections stay open, nothing is answered."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


@pytest.fixture
async def pausable(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    private_redis: EmbeddedRedis,
) -> Client:
    """A client of an app on the private server, with a list of one article read."""
    # Refreshed often, and a read of a paused server given up quickly.
    settings = make_settings(
        redis_url=private_redis.url, refresh_interval_s=0.05, redis_timeout_s=0.2
    )
    client = await aiohttp_client(create_app(settings, clock=clock))

    async def posted() -> bool:
        # A 0.2 s timeout can pass on a busy machine before the fresh server first answers:
        # a batch refused then was not counted ("nothing was counted"), and is sent again.
        response = await client.post("/v1/events", json=[{"article_id": "a", "section": "sports"}])
        return response.status == 200

    await eventually(posted)
    await client.app[CACHE].refresh()
    return client


# The common spelling, answered by the fast path, and another, answered through the cache.
SPELLINGS = ("/v1/rankings/sports", "/v1/rankings/sports?utm_source=x")


async def answers(client: Client) -> list[tuple[bytes, CIMultiDictProxy[str]]]:
    responses = [await client.get(path) for path in SPELLINGS]
    assert {response.status for response in responses} == {200}
    return [(await response.read(), response.headers) for response in responses]


async def stale_answers(client: Client) -> list[tuple[bytes, CIMultiDictProxy[str]]]:
    """The answers once a refresh has failed and marked them stale."""
    result: list[tuple[bytes, CIMultiDictProxy[str]]] = []

    async def marked() -> bool:
        nonlocal result
        result = await answers(client)
        return all(headers.get(STALE_HEADER) == "true" for _, headers in result)

    await eventually(marked)
    return result


async def test_a_list_that_cannot_be_refreshed_is_served_as_it_was_marked_stale(
    pausable: Client, private_redis: EmbeddedRedis
) -> None:
    client = pausable
    fresh = await answers(client)
    assert all(STALE_HEADER not in headers for _, headers in fresh)
    with paused(private_redis):
        stale = await stale_answers(client)
    settings = client.app[SETTINGS]
    for (body, headers), (fresh_body, fresh_headers) in zip(stale, fresh, strict=True):
        assert body == fresh_body
        assert headers["ETag"] == fresh_headers["ETag"]
        assert headers["Cache-Control"] == (
            f"public, max-age=0, stale-if-error={settings.stale_if_error_s}"
        )


async def test_a_304_of_a_stale_list_says_it_is_stale(
    pausable: Client, private_redis: EmbeddedRedis
) -> None:
    client = pausable
    etag = (await answers(client))[0][1]["ETag"]
    with paused(private_redis):
        (_, stale), _ = await stale_answers(client)
        for path in SPELLINGS:
            response = await client.get(path, headers={"If-None-Match": etag})
            assert response.status == 304
            assert response.headers["ETag"] == etag
            assert response.headers[STALE_HEADER] == "true"
            assert response.headers["Cache-Control"] == stale["Cache-Control"]


async def test_a_stale_list_is_fresh_again_after_a_refresh_that_works(
    pausable: Client, private_redis: EmbeddedRedis
) -> None:
    client = pausable
    fresh = await answers(client)
    with paused(private_redis):
        await stale_answers(client)

    async def fresh_again() -> bool:
        return all(STALE_HEADER not in headers for _, headers in await answers(client))

    await eventually(fresh_again)
    again = await answers(client)
    settings = client.app[SETTINGS]
    for (body, headers), (fresh_body, fresh_headers) in zip(again, fresh, strict=True):
        assert body == fresh_body  # the clock stood still: the same list
        assert headers["ETag"] == fresh_headers["ETag"]
        assert headers["Cache-Control"] == settings.cache_control


async def test_a_list_never_read_is_refused_without_a_read_while_redis_is_known_down(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    private_redis: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(redis_url=private_redis.url)
    client = await aiohttp_client(create_app(settings, clock=clock))
    assert (await client.get("/readyz")).status == 200
    private_redis.stop()
    with pytest.raises(RedisConnectionError):  # now the service knows
        await client.app[STORE].ping()
    reads = count_reads(client, monkeypatch)
    response = await client.get("/v1/rankings/world")
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "redis_unavailable"
    assert response.headers["Retry-After"] == "1"
    assert "world" not in reads
    private_redis.start()

    async def ready() -> bool:
        body: dict[str, str] = await (await client.get("/readyz")).json()
        return body["redis"] == "up"

    await eventually(ready)
    assert (await client.get("/v1/rankings/world")).status == 200
    assert reads["world"] == 1


async def test_lists_are_marked_stale_as_soon_as_any_command_finds_redis_down(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    private_redis: EmbeddedRedis,
) -> None:
    # No refresh comes for a minute: only the failed command can mark the lists.
    settings = make_settings(redis_url=private_redis.url, refresh_interval_s=60.0)
    client = await aiohttp_client(create_app(settings, clock=clock))
    await post(client, {"article_id": "a", "section": "sports"})
    await client.app[CACHE].refresh()
    assert all(STALE_HEADER not in headers for _, headers in await answers(client))
    private_redis.stop()
    with pytest.raises(RedisConnectionError):
        await client.app[STORE].ping()
    assert all(headers[STALE_HEADER] == "true" for _, headers in await answers(client))


def titled(section: str, n: int, weight: float) -> dict[str, Any]:
    """A view of an article with a headline and a URL of the usual size."""
    return {
        "article_id": f"{section}-{n:03}",
        "section": section,
        "weight": weight,
        "title": f"Story {n} of {section}: a headline about as long as most, give or take",
        "url": f"https://news.example/{section}/2026/12/03/story-{n:03}",
    }


def top_reads(client: Client) -> float:
    """Ranking reads from Redis so far, by the store's own operation timer."""
    value = client.app[METRICS].registry.get_sample_value(
        "ranker_redis_command_duration_seconds_count", {"operation": "top"}
    )
    return value or 0.0


# Once: it weighs what a refresh leaves held, which a cluster client's own caches would blur.
@pytest.mark.single_node
async def test_every_limit_asked_costs_no_more_to_keep_and_refresh_than_the_deepest_alone(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    # No tick for an hour: every refresh here is the test's own.
    settings = make_settings(refresh_interval_s=3600)
    client = await aiohttp_client(create_app(settings, clock=clock))
    for section in settings.sections:
        await post(client, *(titled(section, n, 1 + n % 7) for n in range(110)))
    lists = [(ranking, window) for ranking in settings.rankings for window in settings.profiles]
    cache = client.app[CACHE]

    async def ask(limits: range) -> None:
        for ranking, window in lists:
            query = "" if window is None else f"&window={window}"
            for limit in limits:
                response = await client.get(f"/v1/rankings/{ranking}?limit={limit}{query}")
                assert response.status == 200
                assert len((await response.json())["items"]) == limit

    async def one_refresh() -> tuple[float, int]:
        """The Redis reads of one refresh, and the bytes it leaves held."""
        reads = top_reads(client)
        tracemalloc.start()
        try:
            await cache.refresh()
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return top_reads(client) - reads, held

    await ask(range(100, 101))
    deepest_reads, deepest_held = await one_refresh()
    # Every limit of every list, the deepest first so that each list is read once.
    await ask(range(100, 0, -1))
    every_reads, every_held = await one_refresh()
    assert deepest_reads == every_reads == len(lists)
    assert every_held < 1.5 * deepest_held

    kept = cache.stats()
    rendered = kept.items_rendered
    await cache.refresh()
    # Each item of each list rendered once a refresh, however many limits are asked...
    assert cache.stats().items_rendered - rendered == len(lists) * MAX_LIMIT
    assert kept.lists == len(lists)
    # ...and answers cut from them kept within a bound, in number and bytes.
    assert kept.answers <= kept_module.ANSWERS_KEPT
    assert kept.answer_bytes <= kept_module.ANSWER_BYTES_KEPT
    assert kept.item_bytes < 400 * len(lists) * MAX_LIMIT
    # What a refresh leaves held is little more than those items' bytes (their ids, each
    # list's head): not buffers a serializer wrote them in.
    assert every_held < 4 * kept.item_bytes


async def test_each_limit_is_the_deepest_list_cut_byte_for_byte(
    client: Client, settings: Settings
) -> None:
    await post(client, *(titled("world", n, 1 + n % 7) for n in range(40)))
    # A pin, and fewer articles than the deepest limit: its list is filled after them.
    fresh = {"published_at": 1.7e9, "section": "world"}
    assert (await client.put("/v1/articles/fresh", json=fresh)).status == 200
    pin = {"article_id": "world-039"}
    assert (await client.put("/v1/editorial/pins/world/3", json=pin)).status == 200
    assert (await client.put("/v1/editorial/hides/world-006", json={})).status == 200
    for window in settings.profiles:
        query = "" if window is None else f"&window={window}"
        deepest = orjson.loads(
            await (await client.get(f"/v1/rankings/world?limit=100{query}")).read()
        )
        assert [item["fill"] for item in deepest["items"]][-2:] == [False, True]
        etags: dict[bytes, str] = {}  # body -> its ETag
        for limit in range(1, 101):
            response = await client.get(f"/v1/rankings/world?limit={limit}{query}")
            body = await response.read()
            assert body == orjson.dumps(deepest | {"items": deepest["items"][:limit]})
            assert etags.setdefault(body, response.headers["ETag"]) == response.headers["ETag"]
        # One ETag a body: limits past the list's length show the same items, the same tag.
        assert len(set(etags.values())) == len(etags) == len(deepest["items"])


async def test_a_shorter_list_is_the_start_of_the_deepest_one(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    # What cutting every limit from one deep read relies on, with everything that depends on
    # where a list ends: hides (editorial, and in metadata only), too-old articles skipped,
    # pins at slots within and past the list's end, fill from the newest published.
    settings = make_settings(max_age_hours={"sports": 48.0})
    client = await aiohttp_client(create_app(settings, clock=clock))
    hour = 3600.0
    await post(client, *(titled("sports", n, 1 + n % 9) for n in range(60)))
    for n in range(0, 60, 7):
        old = {"published_at": clock.now - 72 * hour}
        assert (await client.put(f"/v1/articles/sports-{n:03}", json=old)).status == 200
    for n in range(30):
        fill = {"section": "sports", "published_at": clock.now - (n % 4) * 20 * hour - n}
        assert (await client.put(f"/v1/articles/fill-{n:03}", json=fill)).status == 200
    for article_id in ("sports-001", "sports-010", "fill-003"):
        assert (await client.put(f"/v1/editorial/hides/{article_id}", json={})).status == 200
    store = client.app[STORE]
    await redis.hset(store.keys.article("sports-020"), "hidden", "1")
    for slot, article_id in ((2, "sports-050"), (30, "sports-055"), (80, "fill-001")):
        pin = {"article_id": article_id}
        assert (await client.put(f"/v1/editorial/pins/sports/{slot}", json=pin)).status == 200
    # (Windows differ in scores only: the default profile stands for them.)
    for ranking in ("sports", "all"):
        deepest = (await store.top(ranking, 100, clock.now)).items
        assert 60 < len(deepest) < 100
        assert any(item.fill for item in deepest)
        if ranking == "sports":
            assert deepest[-1].article_id == "fill-001"  # a pin past the end goes last
        for limit in range(1, 101):
            assert (await store.top(ranking, limit, clock.now)).items == deepest[:limit]


async def test_a_new_title_reads_again_only_the_lists_that_list_the_article(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    # No tick for an hour: every read here is the PUT's own.
    client = await aiohttp_client(create_app(make_settings(refresh_interval_s=3600), clock=clock))
    await post(client, titled("world", 1, 2), titled("sports", 2, 1))
    paths = ["/v1/rankings/world", "/v1/rankings/all", "/v1/rankings/sports?window=trending"]
    for path in paths:
        assert (await client.get(path)).status == 200
    reads = top_reads(client)
    put = await client.put("/v1/articles/world-001", json={"title": "Retitled"})
    assert put.status == 200
    assert top_reads(client) - reads == 2  # world's list and the site-wide one
    for path in paths[:2]:
        items = (await (await client.get(path)).json())["items"]
        assert [item["title"] for item in items if item["article_id"] == "world-001"] == [
            "Retitled"
        ]
    # A move can change any list (fill): every list is read again.
    reads = top_reads(client)
    assert (await client.put("/v1/articles/world-001", json={"section": "sports"})).status == 200
    assert top_reads(client) - reads == len(paths)


async def test_a_refresh_reads_a_few_lists_at_a_time(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(refresh_interval_s=0.05)
    client = await aiohttp_client(create_app(settings, clock=clock))
    for ranking in settings.rankings:
        assert (await client.get(f"/v1/rankings/{ranking}")).status == 200
    store = client.app[STORE]
    real_top = store.top
    in_flight, most, reads = 0, 0, 0

    async def top(
        ranking: str,
        limit: int,
        now: float,
        window: str | None = None,
        metadata: Metadata | None = None,
    ) -> Ranking:
        nonlocal in_flight, most, reads
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.01)  # long enough for every read a tick starts to overlap
            return await real_top(ranking, limit, now, window, metadata)
        finally:
            in_flight -= 1
            reads += 1

    monkeypatch.setattr(store, "top", top)

    async def ticks_done() -> bool:
        return reads >= 3 * len(settings.rankings)

    await eventually(ticks_done)
    assert most == cache_module.REFRESH_READS_AT_ONCE


async def test_a_refresh_reads_an_article_once_for_every_window_that_lists_it(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    private_redis: EmbeddedRedis,
) -> None:
    # A server of the test's own: its command counts are this test's only.
    settings = make_settings(redis_url=private_redis.url, refresh_interval_s=0.1)
    client = await aiohttp_client(create_app(settings, clock=clock))
    articles = 20
    await post(client, *(titled("world", n, 1 + n % 5) for n in range(articles)))
    for window in settings.profiles:
        query = "" if window is None else f"&window={window}"
        assert (await client.get(f"/v1/rankings/world?limit={articles}{query}")).status == 200
    admin = Redis.from_url(private_redis.url)
    try:
        await admin.config_resetstat()
        reads = top_reads(client)

        async def ticks() -> bool:
            return top_reads(client) - reads >= 3 * len(settings.profiles)

        await eventually(ticks)
        metadata_reads = (await admin.info("commandstats"))["cmdstat_hmget"]["calls"]
        # The ticks that read since the reset, one more begun before it counted in full.
        refreshes = (top_reads(client) - reads) / len(settings.profiles) + 1
    finally:
        await admin.aclose()
    assert metadata_reads <= articles * refreshes


async def test_a_deeper_limit_is_cut_from_a_deeper_read_already_made(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No tick for an hour: only the requests read.
    client = await aiohttp_client(create_app(make_settings(refresh_interval_s=3600), clock=clock))
    await post(client, *(titled("world", n, 1) for n in range(60)))
    reads = count_reads(client, monkeypatch)
    assert len(await ids(client, "/v1/rankings/world?limit=5")) == 5
    # That first read of the interval was 100 deep, to record the list for movement.
    assert len(await ids(client, "/v1/rankings/world?limit=50")) == 50
    assert reads == {"world": 1}
