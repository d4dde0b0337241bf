"""Named windows: one stream of events, several rankings profiles, each at its own half-life."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from ranker.api.appkeys import CACHE, METRICS, STORE
from ranker.app import create_app
from ranker.config import Settings
from ranker.decay import HALF_LIFE_SETTLE_S
from ranker.ingest.idempotency import HEADER, REPLAYED_HEADER, idempotency_key
from ranker.ingest.plan import KeyedBatch, plan_flush
from ranker.lists.movement import movement_period
from ranker.store import RankingStore
from tests.conftest import AiohttpClient, Client, FakeClock, refreshed
from tests.ingest.test_flusher import SECTIONS, batches, make_events, post
from tests.support.oracle import Oracle, assert_list_matches

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

HOUR = 3600.0
PROFILES = (None, "trending", "popular")


def window_settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    # Per-section overrides in the default profile and in each window, so every way a
    # half-life is chosen is checked.
    return make_settings(
        sections=SECTIONS,
        section_half_lives={"sports": HOUR},
        windows={"trending": 1800.0, "popular": 21600.0},
        window_half_lives={"trending": {"entertainment": 900.0}, "popular": {"all": 43200.0}},
        **overrides,
    )


# What window_settings configures, spelled out: the oracle must not share ranker's lookup.
HALF_LIVES: dict[str | None, tuple[float, dict[str, float]]] = {
    None: (7200.0, {"sports": HOUR}),
    "trending": (1800.0, {"entertainment": 900.0}),
    "popular": (21600.0, {"all": 43200.0}),
}


def half_life(ranking: str, window: str | None) -> float:
    default, overrides = HALF_LIVES[window]
    return overrides.get(ranking, default)


def oracle_for(window: str | None) -> Oracle:
    return Oracle(lambda ranking: half_life(ranking, window))


async def get_list(client: Client, ranking: str, window: str | None, limit: int) -> Any:
    params = {"limit": str(limit)} | ({} if window is None else {"window": window})
    response = await client.get(f"/v1/rankings/{ranking}", params=params)
    assert response.status == 200, await response.text()
    return await response.json()


async def check_every_window(client: Client, oracles: dict[str | None, Oracle]) -> None:
    await refreshed(client)
    for window, oracle in oracles.items():
        for ranking in ("all", *SECTIONS):
            body = await get_list(client, ranking, window, 20)
            assert body["window"] == (window or "default")
            assert body["half_life_s"] == half_life(ranking, window)
            assert_list_matches(oracle, ranking, 20, body)


async def test_one_stream_matches_the_exact_sums_of_every_window(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    settings = window_settings(make_settings, prune_below=1e-12)
    client = await aiohttp_client(create_app(settings, clock=clock))
    rng = random.Random(6)
    # Six hours: the shortest half-life (15 minutes) leaves the oldest views far above the
    # pruning floor, so the oracle, which never prunes, holds what ranker holds.
    events = make_events(rng, 6000, 300, clock.now - 6 * HOUR, clock.now + 200)
    rng.shuffle(events)
    oracles = {window: oracle_for(window) for window in PROFILES}
    for batch in batches(events, 500):
        await post(client, batch)
        for oracle in oracles.values():
            oracle.add(batch)
    await check_every_window(client, oracles)
    # The windows really differ: the same article scores less where it decays faster.
    top = oracles[None].ranked("all", clock.now)[0][0]
    trending, default, popular = [
        {item["article_id"]: item["score"] for item in body["items"]}
        for body in [await get_list(client, "all", w, 100) for w in ("trending", None, "popular")]
    ]
    assert trending[top] < default[top] < popular[top]

    # Scores move on with the clock, each window at its own rate.
    clock.now += 2 * HOUR
    await check_every_window(client, oracles)
    later = await get_list(client, "all", "trending", 100)
    assert {item["article_id"]: item["score"] for item in later["items"]}[top] == pytest.approx(
        trending[top] * 2**-4, rel=1e-9
    )


async def test_an_article_reports_its_score_in_every_window(
    client: Client, clock: FakeClock, settings: Settings
) -> None:
    await post(client, [{"article_id": "a", "section": "sports", "ts": clock.now - 1800}])
    response = await client.get("/v1/articles/a")
    body = await response.json()
    assert body["scores"] == {"all": 2**-0.25, "sports": 2**-0.25}
    assert body["windows"] == {
        "trending": {"all": 0.5, "sports": 0.5},
        "popular": {"all": pytest.approx(2 ** -(1 / 12)), "sports": pytest.approx(2 ** -(1 / 12))},
    }


async def test_a_keyed_batch_retried_is_counted_once_in_every_window(
    client: Client, redis: Redis, clock: FakeClock, settings: Settings
) -> None:
    body = orjson.dumps([{"article_id": "a", "section": "sports"}])
    key = idempotency_key("batch-1", "application/json", body)
    assert key is not None
    store = client.app[STORE]
    # The first try's pipeline broke after the script of one ranking ran: "sports" counted
    # the view in every profile, "all" in none, and no answer was kept.
    views = [("a", "sports", clock.now, 1.0)]
    whole = plan_flush([], {}, settings, keyed=[(key.token, "unused", views)])
    (batch,) = whole.keyed
    windows = {w: {"sports": amounts["sports"]} for w, amounts in batch.windows.items()}
    partial = KeyedBatch(key.token, {"sports": batch.increments["sports"]}, "unused", windows)
    await store.apply(type(whole)(clock.now, {}, keyed=[partial]), clock.now)
    await redis.delete(store.keys.idempotency(key.token))

    response = await client.post(
        "/v1/events", data=body, headers={"Content-Type": "application/json", HEADER: "batch-1"}
    )
    assert response.status == 200
    assert response.headers[REPLAYED_HEADER] == "true"
    for window in PROFILES:
        for ranking in ("sports", "all"):
            assert await redis.zscore(store.keys.scores(ranking, window), "a") == 1.0
    # And once more, answered from the kept answer: still once.
    response = await client.post(
        "/v1/events", data=body, headers={"Content-Type": "application/json", HEADER: "batch-1"}
    )
    assert response.status == 200
    article = await (await client.get("/v1/articles/a")).json()
    assert article["scores"] == {"all": 1.0, "sports": 1.0}
    assert article["windows"] == {w: {"all": 1.0, "sports": 1.0} for w in ("trending", "popular")}


async def test_a_windows_half_life_change_settles_as_the_defaults_does(
    redis: Redis, make_settings: Callable[..., Settings]
) -> None:
    t0 = 1_800_000_000.0

    async def view(store: RankingStore, article_id: str, at: float) -> None:
        settings = store._settings
        await store.apply(plan_flush([[(article_id, "sports", at, 1.0)]], {}, settings), at)

    await view(RankingStore(redis, make_settings(windows={"trending": 600.0})), "a", t0)
    store = RankingStore(redis, make_settings(windows={"trending": 60.0}))
    # Within the settle period the stored half-life still rules.
    await view(store, "b", t0 + 1)
    assert (await store.top("sports", 10, t0 + 1, "trending")).half_life_s == 600.0
    later = t0 + HALF_LIFE_SETTLE_S
    await view(store, "c", later)
    got = await store.top("sports", 10, later + 60, "trending")
    assert got.half_life_s == 60.0
    # a was worth 2**-(300/600) when the half-life changed, then lost half in one new half-life.
    assert {item.article_id: item.score for item in got.items} == {
        "a": pytest.approx(2**-0.5 / 2, rel=1e-12),
        "b": pytest.approx(2 ** -(299 / 600) / 2, rel=1e-12),
        "c": pytest.approx(0.5, rel=1e-12),
    }
    # The default profile's half-life did not change, nor did its scores' decay.
    default = await store.top("sports", 10, later, None)
    assert default.half_life_s == 7200.0
    assert {item.article_id: item.score for item in default.items}["a"] == pytest.approx(
        2 ** -(HALF_LIFE_SETTLE_S / 7200), rel=1e-12
    )


async def test_window_default_is_the_list_served_without_one(
    client: Client, clock: FakeClock
) -> None:
    await post(client, [{"article_id": "a", "section": "sports"}])
    await refreshed(client)
    plain = await client.get("/v1/rankings/sports")
    named = await client.get("/v1/rankings/sports", params={"window": "default"})
    assert named.status == plain.status == 200
    assert await named.read() == await plain.read()
    assert (await plain.json())["window"] == "default"


@pytest.mark.parametrize("window", ["weekly", "", "Trending", "x" * 300])
async def test_an_unknown_window_is_refused_naming_the_windows(client: Client, window: str) -> None:
    response = await client.get("/v1/rankings/sports", params={"window": window})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "unknown_window"
    assert "default, trending, popular" in error["message"]


async def test_with_no_windows_only_the_default_profile_is_served_and_kept(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    settings = make_settings(windows={})
    client = await aiohttp_client(create_app(settings, clock=clock))
    await post(client, [{"article_id": "a", "section": "sports"}])
    response = await client.get("/v1/rankings/sports", params={"window": "trending"})
    assert (await response.json())["error"]["code"] == "unknown_window"
    assert (await get_list(client, "sports", "default", 10))["items"][0]["article_id"] == "a"
    keys = {key async for key in redis.scan_iter(match=f"{settings.key_prefix}:*:w:*")}
    assert keys == set()


@pytest.mark.parametrize(
    "target",
    [
        "/v1/rankings/sports?window=trending",
        "/v1/rankings/sports?window=trending&limit=5",
        "/v1/rankings/sports?limit=5&window=trending",
    ],
)
async def test_the_common_spellings_of_a_windows_list_are_served_by_the_fast_path(
    client: Client, target: str
) -> None:
    await post(client, [{"article_id": "a", "section": "sports"}])
    cache = client.app[CACHE]
    assert cache.lookup(target) is None
    first = await client.get(target)
    assert first.status == 200
    assert (await first.json())["window"] == "trending"
    cached = cache.lookup(target)
    assert cached is not None
    assert cached.body == await first.read()


async def test_each_window_has_its_own_movement_and_metrics(
    client: Client, clock: FakeClock, redis: Redis
) -> None:
    await post(client, [{"article_id": "old", "section": "sports", "ts": clock.now - 3 * HOUR}])
    await post(client, [{"article_id": "new", "section": "sports"}] * 1)
    await post(client, [{"article_id": "old", "section": "sports", "ts": clock.now - 3 * HOUR}])
    # default (2 h): old is worth 2 * 2**-1.5 = 0.71 < 1; popular (6 h): 2 * 2**-0.5 = 1.41 > 1.
    assert [i["article_id"] for i in (await get_list(client, "sports", None, 10))["items"]] == [
        "new",
        "old",
    ]
    popular = await get_list(client, "sports", "popular", 10)
    assert [item["article_id"] for item in popular["items"]] == ["old", "new"]
    registry = client.app[METRICS].registry
    for window in ("default", "popular"):
        labels = {"ranking": "sports", "window": window}
        assert registry.get_sample_value("ranker_ranking_members", labels) == 2
        assert registry.get_sample_value("ranker_ranking_age_seconds", labels) is not None
    assert client.app[CACHE].active() == {"sports": [10], "sports?window=popular": [10]}
    # Each list recorded itself for rank movement under its own window's key.
    store, period = client.app[STORE], movement_period(clock.now, 3600.0)
    default_record = await redis.get(store.keys.movement("sports", period))
    popular_record = await redis.get(store.keys.movement("sports", period, "popular"))
    assert orjson.loads(default_record or "null") == ["new", "old"]
    assert orjson.loads(popular_record or "null") == ["old", "new"]
