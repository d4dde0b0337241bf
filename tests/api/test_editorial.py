"""Editorial controls over HTTP: hides and pins in every list, their ends, who may make them,
and the audit log; and both seen by two server processes sharing one Redis."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from ranker.api.appkeys import STORE
from ranker.app import create_app
from ranker.config import Settings
from tests.conftest import AiohttpClient, Client, FakeClock, RedisTarget, refreshed
from tests.support.http import assert_error, redis_keys
from tests.test_cli import serving

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

EDITOR_TOKEN = "editor-token-kim-0123456789abcdef"
WRITE_TOKEN = "test-write-token-0123456789abcdef"
RANKINGS = ("all", "sports", "world")


async def post(client: Client, *events: dict[str, Any]) -> None:
    response = await client.post("/v1/events", json=list(events))
    assert response.status == 200, await response.text()


async def seed(client: Client) -> None:
    """Sports a (5 views) > b (4) > c (3) > d (2); world w (1). Every article has a title."""
    for article_id, section, views in (
        ("a", "sports", 5),
        ("b", "sports", 4),
        ("c", "sports", 3),
        ("d", "sports", 2),
        ("w", "world", 1),
    ):
        await post(client, *({"article_id": article_id, "section": section},) * views)
        put = await client.put(f"/v1/articles/{article_id}", json={"title": f"Title {article_id}"})
        assert put.status == 200


async def items(client: Client, ranking: str, limit: int = 10) -> list[dict[str, Any]]:
    await refreshed(client)
    response = await client.get(f"/v1/rankings/{ranking}?limit={limit}")
    assert response.status == 200
    listed: list[dict[str, Any]] = (await response.json())["items"]
    return listed


async def ids(client: Client, ranking: str, limit: int = 10) -> list[str]:
    return [item["article_id"] for item in await items(client, ranking, limit)]


async def edit(
    client: Client,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_hide_takes_an_article_out_of_every_list_until_unhidden(client: Client) -> None:
    await seed(client)
    hidden = await edit(client, "PUT", "/v1/editorial/hides/a", {"reason": "legal"})
    assert hidden == {"article_id": "a", "hidden": True, "until": None}
    assert await ids(client, "sports") == ["b", "c", "d"]
    assert await ids(client, "all") == ["b", "c", "d", "w"]
    # Views keep counting while hidden.
    await post(client, {"article_id": "a", "section": "sports"})
    article = await (await client.get("/v1/articles/a")).json()
    assert article["hidden"] is True
    assert article["hidden_until"] is None
    assert article["scores"]["sports"] == pytest.approx(6.0)

    state = await edit(client, "GET", "/v1/editorial")
    assert state == {"hides": [{"article_id": "a", "until": None}], "pins": []}
    assert await edit(client, "DELETE", "/v1/editorial/hides/a") == {
        "article_id": "a",
        "hidden": False,
    }
    assert await ids(client, "sports") == ["a", "b", "c", "d"]
    assert await ids(client, "all") == ["a", "b", "c", "d", "w"]
    assert (await edit(client, "GET", "/v1/editorial"))["hides"] == []


async def test_a_hide_with_an_end_ends_by_itself(client: Client, clock: FakeClock) -> None:
    await seed(client)
    until = clock.now + 600
    answer = await edit(client, "PUT", "/v1/editorial/hides/b", {"until": until})
    assert answer["until"] == until
    article = await (await client.get("/v1/articles/b")).json()
    assert (article["hidden"], article["hidden_until"]) == (True, until)
    for ranking in ("all", "sports"):
        assert "b" not in await ids(client, ranking)
    clock.now = until - 0.001
    assert "b" not in await ids(client, "sports")
    # No write at the end: the next read after it lists the article again.
    clock.now = until + 0.001
    assert await ids(client, "sports") == ["a", "b", "c", "d"]
    assert await ids(client, "all") == ["a", "b", "c", "d", "w"]
    assert (await edit(client, "GET", "/v1/editorial"))["hides"] == []
    article = await (await client.get("/v1/articles/b")).json()
    assert (article["hidden"], article["hidden_until"]) == (False, None)
    await assert_error(await client.delete("/v1/editorial/hides/b"), 404, "not_hidden")


async def test_a_pin_takes_its_slot_once_and_pushes_the_rest_down(client: Client) -> None:
    await seed(client)
    pinned = await edit(client, "PUT", "/v1/editorial/pins/sports/1", {"article_id": "d"})
    assert pinned == {
        "ranking": "sports",
        "slot": 1,
        "article_id": "d",
        "until": None,
        "replaced": None,
        "moved_from": None,
    }
    listed = await items(client, "sports")
    assert [(i["article_id"], i["rank"], i["pinned"]) for i in listed] == [
        ("d", 1, True),
        ("a", 2, False),
        ("b", 3, False),
        ("c", 4, False),
    ]
    # Its own score, not a made-up one; and only in the ranking it was pinned in.
    assert listed[0]["score"] == pytest.approx(2.0)
    assert await ids(client, "all") == ["a", "b", "c", "d", "w"]
    # A short list shows the pin only if its slot is within the list.
    assert await ids(client, "sports", limit=1) == ["d"]
    await edit(client, "PUT", "/v1/editorial/pins/sports/3", {"article_id": "w"})
    assert await ids(client, "sports", limit=2) == ["d", "a"]
    assert await ids(client, "sports") == ["d", "a", "w", "b", "c"]


async def test_a_pin_never_duplicates_an_article(client: Client) -> None:
    await seed(client)
    await edit(client, "PUT", "/v1/editorial/pins/sports/2", {"article_id": "c"})
    moved = await edit(client, "PUT", "/v1/editorial/pins/sports/4", {"article_id": "c"})
    assert (moved["replaced"], moved["moved_from"]) == (None, 2)
    assert await ids(client, "sports") == ["a", "b", "d", "c"]
    replaced = await edit(client, "PUT", "/v1/editorial/pins/sports/4", {"article_id": "a"})
    assert (replaced["replaced"], replaced["moved_from"]) == ("c", None)
    assert await ids(client, "sports") == ["b", "c", "d", "a"]
    pins = (await edit(client, "GET", "/v1/editorial"))["pins"]
    assert pins == [{"ranking": "sports", "slot": 4, "article_id": "a", "until": None}]


async def test_a_pin_past_the_end_of_a_short_list_goes_last(client: Client) -> None:
    await seed(client)
    await edit(client, "PUT", "/v1/editorial/pins/world/9", {"article_id": "a"})
    listed = await items(client, "world")
    assert [(i["article_id"], i["rank"], i["pinned"]) for i in listed] == [
        ("w", 1, False),
        ("a", 2, True),
    ]


async def test_a_pin_survives_its_article_losing_its_score(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    client = await aiohttp_client(create_app(make_settings(half_life_s=60.0), clock=clock))
    await seed(client)
    await edit(client, "PUT", "/v1/editorial/pins/sports/2", {"article_id": "d"})
    # Hours of half-lives later, a flush prunes every article it did not count.
    clock.now += 3600
    await post(client, {"article_id": "fresh", "section": "sports"})
    scores = client.app[STORE].keys.scores("sports")
    assert await redis.zscore(scores, "d") is None
    listed = await items(client, "sports")
    assert [(i["article_id"], i["pinned"], i["score"]) for i in listed][:2] == [
        ("fresh", False, pytest.approx(1.0)),
        ("d", True, 0.0),
    ]
    assert listed[1]["title"] == "Title d"
    # An article with metadata and no score at all can be pinned too.
    await client.put("/v1/articles/new", json={"title": "New", "section": "sports"})
    await edit(client, "PUT", "/v1/editorial/pins/sports/1", {"article_id": "new"})
    assert (await ids(client, "sports"))[:3] == ["new", "d", "fresh"]


async def test_a_pin_ends_by_itself(client: Client, clock: FakeClock) -> None:
    await seed(client)
    until = clock.now + 60
    await edit(client, "PUT", "/v1/editorial/pins/all/1", {"article_id": "w", "until": until})
    assert await ids(client, "all") == ["w", "a", "b", "c", "d"]
    clock.now = until
    assert await ids(client, "all") == ["a", "b", "c", "d", "w"]
    assert (await edit(client, "GET", "/v1/editorial"))["pins"] == []
    await assert_error(await client.delete("/v1/editorial/pins/all/1"), 404, "pin_not_found")


async def test_a_hide_beats_a_pin(client: Client) -> None:
    await seed(client)
    await edit(client, "PUT", "/v1/editorial/pins/sports/1", {"article_id": "d"})
    await edit(client, "PUT", "/v1/editorial/hides/d")
    assert await ids(client, "sports") == ["a", "b", "c"]
    await edit(client, "DELETE", "/v1/editorial/hides/d")
    assert await ids(client, "sports") == ["d", "a", "b", "c"]
    unpinned = await edit(client, "DELETE", "/v1/editorial/pins/sports/1")
    assert unpinned == {"ranking": "sports", "slot": 1, "article_id": "d"}
    assert await ids(client, "sports") == ["a", "b", "c", "d"]


async def test_every_change_is_in_the_audit_log_newest_first(
    client: Client, clock: FakeClock
) -> None:
    await seed(client)
    korean = "편집국 김기자"
    await edit(client, "PUT", "/v1/editorial/hides/a", {"editor": korean, "reason": "legal"})
    clock.now += 1
    await edit(client, "PUT", "/v1/editorial/pins/sports/2", {"article_id": "b", "until": 2e9})
    clock.now += 1
    await edit(client, "DELETE", "/v1/editorial/pins/sports/2", {"editor": "lee"})
    clock.now += 1
    await edit(client, "DELETE", "/v1/editorial/hides/a")
    # The CMS's hide is one too, under the editor that made it (a loopback one here).
    await edit(client, "PUT", "/v1/articles/c", {"hidden": True})
    # A change that changed nothing is refused, and not recorded.
    assert (await client.delete("/v1/editorial/hides/a")).status == 404

    log = await edit(client, "GET", "/v1/editorial/audit")
    t0 = clock.now - 3
    assert [{k: v for k, v in entry.items() if k != "id"} for entry in log["entries"]] == [
        {
            "at": t0 + 3,
            "action": "hide",
            "actor": "local",
            "editor": None,
            "article_id": "c",
            "ranking": None,
            "slot": None,
            "until": None,
            "reason": None,
        },
        {
            "at": t0 + 3,
            "action": "unhide",
            "actor": "local",
            "editor": None,
            "article_id": "a",
            "ranking": None,
            "slot": None,
            "until": None,
            "reason": None,
        },
        {
            "at": t0 + 2,
            "action": "unpin",
            "actor": "local",
            "editor": "lee",
            "article_id": "b",
            "ranking": "sports",
            "slot": 2,
            "until": None,
            "reason": None,
        },
        {
            "at": t0 + 1,
            "action": "pin",
            "actor": "local",
            "editor": None,
            "article_id": "b",
            "ranking": "sports",
            "slot": 2,
            "until": 2e9,
            "reason": None,
        },
        {
            "at": t0,
            "action": "hide",
            "actor": "local",
            "editor": korean,
            "article_id": "a",
            "ranking": None,
            "slot": None,
            "until": None,
            "reason": "legal",
        },
    ]
    assert log["next"] is None
    # Page by page, nothing lost or repeated.
    first = await edit(client, "GET", "/v1/editorial/audit?limit=2")
    second = await edit(client, "GET", f"/v1/editorial/audit?limit=2&before={first['next']}")
    third = await edit(client, "GET", f"/v1/editorial/audit?limit=2&before={second['next']}")
    paged = first["entries"] + second["entries"] + third["entries"]
    assert paged == log["entries"]
    assert third["next"] is None
    # A last page that is exactly full says so too.
    assert (await edit(client, "GET", "/v1/editorial/audit?limit=5"))["next"] is None
    whole = await edit(client, "GET", "/v1/editorial/audit?limit=4")
    assert whole["next"] == whole["entries"][-1]["id"]
    rest = await edit(client, "GET", f"/v1/editorial/audit?limit=1&before={whole['next']}")
    assert (rest["entries"], rest["next"]) == (log["entries"][4:], None)
    metrics = await (await client.get("/metrics")).text()
    assert 'ranker_editorial_changes_total{action="hide"} 2.0' in metrics
    assert 'ranker_editorial_changes_total{action="unpin"} 1.0' in metrics


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("PUT", "/v1/editorial/hides/a", {"until": 1.0}, 400, "invalid_editorial_change"),
        ("PUT", "/v1/editorial/hides/a", {"until": "soon"}, 400, "invalid_editorial_change"),
        ("PUT", "/v1/editorial/hides/a", {"until": True}, 400, "invalid_editorial_change"),
        ("PUT", "/v1/editorial/hides/a", {"who": "x"}, 400, "invalid_editorial_change"),
        ("PUT", "/v1/editorial/hides/a", {"editor": "a\nb"}, 400, "invalid_editorial_change"),
        ("PUT", "/v1/editorial/hides/a", {"reason": "x" * 501}, 400, "invalid_editorial_change"),
        ("PUT", "/v1/editorial/hides/a", [], 400, "invalid_editorial_change"),
        ("PUT", "/v1/editorial/hides/" + "x" * 129, None, 400, "invalid_article_id"),
        ("DELETE", "/v1/editorial/hides/a", None, 404, "not_hidden"),
        ("PUT", "/v1/editorial/pins/sports/1", {}, 400, "invalid_editorial_change"),
        (
            "PUT",
            "/v1/editorial/pins/sports/0",
            {"article_id": "a"},
            400,
            "invalid_editorial_change",
        ),
        (
            "PUT",
            "/v1/editorial/pins/sports/101",
            {"article_id": "a"},
            400,
            "invalid_editorial_change",
        ),
        (
            "PUT",
            "/v1/editorial/pins/sports/x",
            {"article_id": "a"},
            400,
            "invalid_editorial_change",
        ),
        ("PUT", "/v1/editorial/pins/weather/1", {"article_id": "a"}, 404, "unknown_section"),
        ("PUT", "/v1/editorial/pins/sports/1", {"article_id": "nobody"}, 404, "article_not_found"),
        ("DELETE", "/v1/editorial/pins/sports/1", None, 404, "pin_not_found"),
        ("GET", "/v1/editorial/audit?limit=0", None, 400, "invalid_editorial_change"),
        ("GET", "/v1/editorial/audit?before=x", None, 400, "invalid_editorial_change"),
    ],
)
async def test_a_bad_editorial_change_is_refused_and_changes_nothing(
    client: Client, method: str, path: str, body: Any, status: int, code: str
) -> None:
    await seed(client)
    before = await ids(client, "sports")
    response = await client.request(method, path, json=body)
    await assert_error(response, status, code)
    assert await ids(client, "sports") == before
    log = await edit(client, "GET", "/v1/editorial/audit")
    assert log["entries"] == []


async def test_a_change_over_the_body_limit_is_refused_as_too_large(
    client: Client, settings: Settings
) -> None:
    body = io.BytesIO(orjson.dumps({"reason": "x" * settings.max_body_bytes}))
    response = await client.put(
        "/v1/editorial/hides/a", data=body, headers={"Content-Type": "application/json"}
    )
    await assert_error(response, 413, "payload_too_large")
    assert (await edit(client, "GET", "/v1/editorial/audit"))["entries"] == []


async def test_a_change_in_another_media_type_is_refused(client: Client) -> None:
    response = await client.put(
        "/v1/editorial/hides/a", data=b"{}", headers={"Content-Type": "text/plain"}
    )
    await assert_error(response, 415, "unsupported_media_type")


async def test_editor_tokens_name_who_made_a_change(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    settings = make_settings(
        editor_tokens={"kim": EDITOR_TOKEN}, write_tokens=(WRITE_TOKEN,), refresh_interval_s=60
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    writer = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    seeded = await client.post(
        "/v1/events", json=[{"article_id": "a", "section": "sports"}], headers=writer
    )
    assert seeded.status == 200
    for method, path in (
        ("PUT", "/v1/editorial/hides/a"),
        ("GET", "/v1/editorial"),
        ("GET", "/v1/editorial/audit"),
    ):
        # Loopback is no editor once tokens are configured, nor is a write token.
        await assert_error(await client.request(method, path), 401, "unauthorized")
        wrong = {"Authorization": f"Bearer {WRITE_TOKEN}"}
        await assert_error(await client.request(method, path, headers=wrong), 401, "unauthorized")
    editor = {"Authorization": f"Bearer {EDITOR_TOKEN}"}
    await edit(client, "PUT", "/v1/editorial/hides/a", {"editor": "Kim J."}, editor)
    (entry,) = (await edit(client, "GET", "/v1/editorial/audit", None, editor))["entries"]
    assert (entry["actor"], entry["editor"]) == ("kim", "Kim J.")
    # An editor token is no write token.
    response = await client.post("/v1/events", json=[], headers=editor)
    await assert_error(response, 401, "unauthorized")


def guarded_settings(make_settings: Callable[..., Settings], **editors: str) -> Settings:
    return make_settings(editor_tokens=editors, write_tokens=(WRITE_TOKEN,), refresh_interval_s=60)


async def test_a_write_token_may_neither_hide_nor_unhide_an_article(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    client = await aiohttp_client(
        create_app(guarded_settings(make_settings, kim=EDITOR_TOKEN), clock=clock)
    )
    writer = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    editor = {"Authorization": f"Bearer {EDITOR_TOKEN}"}
    seeded = await client.post(
        "/v1/events", json=[{"article_id": "a", "section": "sports"}], headers=writer
    )
    assert seeded.status == 200
    # The analytics pipeline cannot pull a story, and nothing of its update is written.
    response = await client.put(
        "/v1/articles/a", json={"title": "T", "hidden": True}, headers=writer
    )
    await assert_error(response, 403, "editor_required")
    assert "editor token" in (await response.json())["error"]["message"]
    article = await edit(client, "GET", "/v1/articles/a")
    assert (article["title"], article["hidden"]) == (None, False)
    # Nor end an editor's hide; a CMS that sends hidden null with every update keeps it.
    await edit(client, "PUT", "/v1/editorial/hides/a", {"reason": "legal"}, editor)
    response = await client.put("/v1/articles/a", json={"hidden": False}, headers=writer)
    await assert_error(response, 403, "editor_required")
    updated = await edit(client, "PUT", "/v1/articles/a", {"title": "T", "hidden": None}, writer)
    assert (updated["title"], updated["hidden"]) == ("T", True)
    assert await ids(client, "sports") == []
    # An editor token may: it is the newsroom's CMS, recorded under its name.
    shown = await edit(client, "PUT", "/v1/articles/a", {"hidden": False, "url": "/a"}, editor)
    assert (shown["url"], shown["hidden"]) == ("/a", False)
    assert await ids(client, "sports") == ["a"]
    hidden = await edit(client, "PUT", "/v1/articles/a", {"hidden": True}, editor)
    assert hidden["hidden"] is True
    log = await edit(client, "GET", "/v1/editorial/audit", None, editor)
    assert [(e["action"], e["actor"]) for e in log["entries"]] == [
        ("hide", "kim"),
        ("unhide", "kim"),
        ("hide", "kim"),
    ]
    # A bad editor token is no write token either.
    bad = {"Authorization": "Bearer not-a-token-of-this-server-0123"}
    await assert_error(
        await client.put("/v1/articles/a", json={}, headers=bad), 401, "unauthorized"
    )


async def test_without_editor_tokens_only_a_local_writer_may_hide_through_articles(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    client = await aiohttp_client(create_app(guarded_settings(make_settings), clock=clock))
    writer = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    # Being local lets a client edit, not write without a token.
    response = await client.put("/v1/articles/a", json={"title": "T", "hidden": True})
    await assert_error(response, 401, "unauthorized")
    hidden = await edit(client, "PUT", "/v1/articles/a", {"title": "T", "hidden": True}, writer)
    assert hidden["hidden"] is True
    # Through a proxy on this host, the writer is no local editor.
    proxied = {**writer, "X-Real-IP": "203.0.113.9"}
    response = await client.put("/v1/articles/a", json={"hidden": False}, headers=proxied)
    await assert_error(response, 403, "editor_required")
    assert "RANKER_EDITOR_TOKENS" in (await response.json())["error"]["message"]
    assert (await edit(client, "GET", "/v1/articles/a"))["hidden"] is True


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/editorial/hides/never-seen", {}), ("/v1/articles/never-seen", {"hidden": True})],
)
async def test_a_hide_of_an_article_ranker_does_not_know_is_refused_and_stores_nothing(
    client: Client, redis: Redis, key_prefix: str, path: str, body: dict[str, Any]
) -> None:
    await assert_error(await client.put(path, json=body), 404, "article_not_found")
    assert await redis_keys(redis, key_prefix) == set()


async def test_an_update_that_makes_an_article_known_may_hide_it(client: Client) -> None:
    hidden = await edit(client, "PUT", "/v1/articles/new", {"title": "New", "hidden": True})
    assert (hidden["title"], hidden["hidden"]) == ("New", True)


async def test_a_remote_client_may_not_edit_without_editor_tokens(
    aiohttp_client: AiohttpClient, settings: Settings, redis: Redis
) -> None:
    client = await aiohttp_client(create_app(settings))
    response = await client.put("/v1/editorial/hides/a", headers={"X-Forwarded-For": "10.0.0.9"})
    await assert_error(response, 403, "forbidden")


# ---------------------------------------------------------------------------------------------
# Two server processes on one Redis
# ---------------------------------------------------------------------------------------------


def serving_on(tmp_path: Path, target: RedisTarget, key_prefix: str) -> AbstractContextManager[str]:
    """A ``ranker serve`` on the test's Redis (or cluster) and key prefix, ready; yields its
    base URL."""
    return serving(
        tmp_path,
        RANKER_REDIS_URL=target.url,
        RANKER_REDIS_CLUSTER=str(target.cluster).lower(),
        RANKER_KEY_PREFIX=key_prefix,
        RANKER_SECTIONS="sports,world",
        RANKER_REFRESH_INTERVAL_S="0.2",
        RANKER_LOG_LEVEL="WARNING",
    )


async def served(session: aiohttp.ClientSession, base: str, ranking: str) -> list[tuple[str, bool]]:
    async with session.get(f"{base}/v1/rankings/{ranking}") as response:
        assert response.status == 200
        body = await response.json()
    return [(item["article_id"], item["pinned"]) for item in body["items"]]


async def until_served(
    session: aiohttp.ClientSession,
    bases: tuple[str, ...],
    expected: dict[str, list[tuple[str, bool]]],
) -> None:
    """Wait until every server serves every expected list; a generous deadline, never an
    assertion on how long it took."""
    give_up = time.monotonic() + 30
    while True:
        seen = {
            (base, ranking): await served(session, base, ranking)
            for base in bases
            for ranking in expected
        }
        if all(seen[base, ranking] == expected[ranking] for base, ranking in seen):
            return
        assert time.monotonic() < give_up, seen
        await asyncio.sleep(0.05)


async def test_two_servers_on_one_redis_show_hides_pins_and_their_ends(
    redis_target: RedisTarget, key_prefix: str, redis: Redis, tmp_path: Path
) -> None:
    with (
        serving_on(tmp_path / "first", redis_target, key_prefix) as first,
        serving_on(tmp_path / "second", redis_target, key_prefix) as second,
    ):
        bases = (first, second)
        async with aiohttp.ClientSession() as session:
            events = [{"article_id": "a", "section": "sports"}] * 3
            events += [{"article_id": "b", "section": "sports"}] * 2
            events += [{"article_id": "w", "section": "world"}]
            async with session.post(f"{first}/v1/events", json=events) as response:
                assert response.status == 200
            plain = {
                "all": [("a", False), ("b", False), ("w", False)],
                "sports": [("a", False), ("b", False)],
                "world": [("w", False)],
            }
            await until_served(session, bases, plain)

            # Ends a few seconds on: long enough to be seen on a slow machine, then seen to end.
            until = time.time() + 8
            hide = {"until": until}
            async with session.put(f"{first}/v1/editorial/hides/a", json=hide) as response:
                assert response.status == 200
            pin = {"article_id": "w", "until": until}
            async with session.put(f"{second}/v1/editorial/pins/sports/1", json=pin) as response:
                assert response.status == 200
            await until_served(
                session,
                bases,
                {
                    "all": [("b", False), ("w", False)],
                    "sports": [("w", True), ("b", False)],
                    "world": [("w", False)],
                },
            )
            await until_served(session, bases, plain)
