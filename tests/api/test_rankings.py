"""GET /v1/rankings and /v1/rankings/{ranking} through the app: unknown rankings, limits, maximum
ages, fill, validators, require and exclude, compression."""

from __future__ import annotations

import gzip
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from ranker.api.appkeys import CACHE
from ranker.api.rankings import _parse_limit
from ranker.app import create_app
from ranker.config import Settings
from ranker.config.limits import DEFAULT_LIMIT, MAX_LIMIT
from ranker.errors import InvalidLimit
from ranker.lists.kept import ANSWERS_KEPT
from tests.conftest import AiohttpClient, Client, FakeClock, refreshed
from tests.support.http import assert_error, get_json, get_ranking, ingest, item

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too


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
    fill = {"fill": True, "section": "sports", "published_at": clock.now - hour}
    assert body["items"][0] == item(1, "s1", 0.0) | fill
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


# ---------------------------------------------------------------------------------------------
# What a renderer needs: validators that follow the page, renderable items, compression
# ---------------------------------------------------------------------------------------------


async def test_a_refresh_that_changes_only_scores_keeps_the_etag(
    client: Client, clock: FakeClock
) -> None:
    await ingest(client, {"article_id": "a", "section": "sports", "weight": 2.0})
    await ingest(client, {"article_id": "b", "section": "sports"})
    first = await client.get("/v1/rankings/sports")
    etag = first.headers["ETag"]
    clock.now += 60  # every score decays, generated_at moves: the bytes change
    await refreshed(client)
    again = await client.get("/v1/rankings/sports")
    assert await again.read() != await first.read()
    assert again.headers["ETag"] == etag
    revalidated = await client.get("/v1/rankings/sports", headers={"If-None-Match": etag})
    assert revalidated.status == 304
    # What a page shows changes: a new title, a new order. Each is a new ETag.
    await client.put("/v1/articles/b", json={"title": "Now with a title"})
    await refreshed(client)
    titled = await client.get("/v1/rankings/sports", headers={"If-None-Match": etag})
    assert titled.status == 200
    assert titled.headers["ETag"] != etag
    await ingest(client, {"article_id": "b", "section": "sports", "weight": 5.0})
    await refreshed(client)
    reordered = await client.get("/v1/rankings/sports")
    assert reordered.headers["ETag"] not in (etag, titled.headers["ETag"])


async def test_items_carry_section_publication_time_and_label(
    client: Client, clock: FakeClock
) -> None:
    published = clock.now - 600
    await client.put(
        "/v1/articles/i1",
        json={
            "title": "[INTERVIEW] 김 감독 “다음 시즌”",
            "url": "https://news.example/i1",
            "section": "sports",
            "published_at": published,
        },
    )
    await ingest(client, {"article_id": "i1", "section": "sports"})
    (only,) = (await get_ranking(client, "/v1/rankings/sports"))["items"]
    assert only["label"] == "INTERVIEW"
    assert only["headline"] == "김 감독 “다음 시즌”"
    assert (only["section"], only["published_at"]) == ("sports", published)
    response = await client.get("/v1/rankings/sports")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


async def test_require_title_lists_only_renderable_items(client: Client) -> None:
    await ingest(
        client, *({"article_id": f"a{n}", "section": "world", "weight": 10 - n} for n in range(6))
    )
    for n in (1, 3, 4):
        await client.put(f"/v1/articles/a{n}", json={"title": f"Title {n}"})
    body = await get_ranking(client, "/v1/rankings/world?limit=2&require=title")
    assert [(i["rank"], i["article_id"]) for i in body["items"]] == [(1, "a1"), (2, "a3")]
    assert all(i["title"] for i in body["items"])
    plain = await get_ranking(client, "/v1/rankings/world?limit=2")
    assert [i["article_id"] for i in plain["items"]] == ["a0", "a1"]


async def test_exclude_leaves_articles_out_and_the_next_move_up(client: Client) -> None:
    await ingest(
        client, *({"article_id": f"e{n}", "section": "world", "weight": 10 - n} for n in range(6))
    )
    body = await get_ranking(client, "/v1/rankings/world?limit=3&exclude=e0,e2")
    ranked = [(i["rank"], i["article_id"]) for i in body["items"]]
    assert ranked == [(1, "e1"), (2, "e3"), (3, "e4")]
    again = await get_ranking(client, "/v1/rankings/world?exclude=e1&limit=3&exclude=e0")
    assert [i["article_id"] for i in again["items"]] == ["e2", "e3", "e4"]
    # And the plain list is untouched by them.
    plain = await get_ranking(client, "/v1/rankings/world?limit=3")
    assert [i["article_id"] for i in plain["items"]] == ["e0", "e1", "e2"]


@pytest.mark.parametrize(
    "query",
    [
        "require=url",
        "require=titles",
        "exclude=a%20b",
        "exclude=" + ",".join(f"x{n}" for n in range(11)),
        "exclude=..",
    ],
)
async def test_a_malformed_require_or_exclude_is_400(client: Client, query: str) -> None:
    await assert_error(await client.get(f"/v1/rankings/all?{query}"), 400, "invalid_query")


async def test_distinct_excludes_do_not_grow_what_a_list_is_read_for(client: Client) -> None:
    await ingest(client, {"article_id": "k", "section": "world"})
    for n in range(300):
        response = await client.get(f"/v1/rankings/world?limit=5&exclude=x{n}")
        assert response.status == 200
    # Read as deep as 6 (5 and one left out), whatever ids were named; answers stay bounded.
    assert client.app[CACHE].active() == {"world": [6]}
    assert client.app[CACHE].stats().answers <= ANSWERS_KEPT


async def test_lists_are_gzipped_when_asked_and_cached_so(client: Client) -> None:
    await ingest(
        client,
        *(
            {"article_id": f"g{n}", "section": "world", "title": f"A headline of some length {n}"}
            for n in range(20)
        ),
    )
    await refreshed(client)
    plain = await client.get("/v1/rankings/world", headers={"Accept-Encoding": "identity"})
    body = await plain.read()
    assert "Content-Encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers["Vary"]
    for _ in range(2):  # the second from the fast path
        raw = await client.get(
            "/v1/rankings/world", headers={"Accept-Encoding": "gzip, br"}, auto_decompress=False
        )
        assert raw.headers["Content-Encoding"] == "gzip"
        compressed = await raw.read()
        assert gzip.decompress(compressed) == body
        assert len(compressed) < len(body)
    assert raw.headers["ETag"] == plain.headers["ETag"]


async def test_the_rankings_and_windows_are_listed(client: Client, settings: Settings) -> None:
    catalog = await get_json(client, "/v1/rankings")
    assert [r["name"] for r in catalog["rankings"]] == list(settings.rankings)
    assert catalog["rankings"][0] == {
        "name": "all",
        "path": "/v1/rankings/all",
        "html_path": "/v1/rankings/all.html",
    }
    assert [w["name"] for w in catalog["windows"]] == ["default", *settings.windows]
    assert (catalog["default_limit"], catalog["max_limit"]) == (DEFAULT_LIMIT, MAX_LIMIT)


async def test_an_unknown_section_error_names_the_rankings(
    client: Client, settings: Settings
) -> None:
    response = await client.get("/v1/rankings/weather")
    await assert_error(response, 404, "unknown_section")
    message = (await response.json())["error"]["message"]
    assert all(name in message for name in settings.rankings)
