"""Reader dedup: a visitor's views of one article count once per window, in every replica.
The clock stands still, so every counted view is worth exactly 1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from ranker.api.appkeys import METRICS, STORE
from ranker.app import create_app
from ranker.config import Settings
from ranker.ingest.dedup import DUPLICATE_READER, SHARDS, count_once, mark
from ranker.ingest.idempotency import HEADER, REPLAYED_HEADER, idempotency_key
from tests.conftest import AiohttpClient, Client, FakeClock

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

WINDOW = 600


@pytest.fixture
async def app_client(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> Client:
    return await aiohttp_client(create_app(make_settings(dedup_window_s=WINDOW), clock=clock))


def view(article_id: str, visitor_id: str | None = None, section: str = "sports") -> dict[str, Any]:
    event: dict[str, Any] = {"article_id": article_id, "section": section}
    if visitor_id is not None:
        event["visitor_id"] = visitor_id
    return event


async def post(client: Client, events: list[dict[str, Any]], **headers: str) -> dict[str, Any]:
    response = await client.post("/v1/events", json=events, headers=headers)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def score(redis: Redis, client: Client, article_id: str, ranking: str = "all") -> float:
    value = await redis.zscore(client.app[STORE].keys.scores(ranking), article_id)
    return 0.0 if value is None else value


def repeats_in_metrics(client: Client) -> float:
    value = client.app[METRICS].registry.get_sample_value(
        "ranker_events_excluded_total", {"reason": DUPLICATE_READER}
    )
    return 0.0 if value is None else value


async def marks(redis: Redis, client: Client) -> list[str]:
    pattern = f"{client.app[STORE].keys.prefix}:{{v:*}}:seen:*"
    return [key async for key in redis.scan_iter(match=pattern, count=1000)]


async def test_refresh_spam_from_one_visitor_counts_once_and_from_many_once_each(
    app_client: Client, redis: Redis
) -> None:
    accepted = repeats = 0
    for _ in range(100):  # 1,000 views: repeats within a batch and across batches
        answer = await post(app_client, [view("spammed", "reader-1")] * 10)
        accepted += answer["accepted"]
        repeats += answer.get("excluded", {}).get(DUPLICATE_READER, 0)
    assert (accepted, repeats) == (1, 999)
    assert await score(redis, app_client, "spammed") == 1.0
    assert await score(redis, app_client, "spammed", "sports") == 1.0

    for start in range(0, 1000, 100):
        answer = await post(
            app_client, [view("popular", f"r-{n}") for n in range(start, start + 100)]
        )
        assert answer == {"accepted": 100, "rejected": []}
    assert await score(redis, app_client, "popular") == 1000.0
    assert repeats_in_metrics(app_client) == 999


async def test_views_without_a_visitor_id_all_count_and_leave_no_mark(
    app_client: Client, redis: Redis
) -> None:
    for _ in range(10):
        assert await post(app_client, [view("anonymous")] * 100) == {
            "accepted": 100,
            "rejected": [],
        }
    assert await score(redis, app_client, "anonymous") == 1000.0
    assert await marks(redis, app_client) == []
    assert repeats_in_metrics(app_client) == 0


async def test_a_repeat_is_reported_in_the_answer_and_metrics_beside_bots(
    app_client: Client,
) -> None:
    events = [
        view("a", "reader-1"),
        view("a", "reader-1"),
        view("a", "reader-2"),
        {**view("a", "reader-3"), "user_agent": "curl/8.5.0"},
        view("b", "reader-1"),
    ]
    answer = await post(app_client, events)
    assert answer == {
        "accepted": 3,
        "rejected": [],
        "excluded": {"crawler": 1, DUPLICATE_READER: 1},
    }
    assert repeats_in_metrics(app_client) == 1
    value = app_client.app[METRICS].registry.get_sample_value(
        "ranker_events_accepted_total", {"section": "sports"}
    )
    assert value == 3


async def test_a_readers_view_of_an_article_counts_once_whatever_its_section(
    app_client: Client, redis: Redis
) -> None:
    answer = await post(
        app_client, [view("a", "reader-1", "sports"), view("a", "reader-1", "world")]
    )
    assert answer["excluded"] == {DUPLICATE_READER: 1}
    assert await score(redis, app_client, "a", "sports") == 1.0
    assert await score(redis, app_client, "a", "world") == 0.0
    assert await score(redis, app_client, "a") == 1.0


async def test_replicas_sharing_one_redis_count_a_reader_once(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    settings = make_settings(dedup_window_s=WINDOW)
    one = await aiohttp_client(create_app(settings, clock=clock))
    two = await aiohttp_client(create_app(settings, clock=clock))
    assert (await post(one, [view("a", "reader-1")]))["accepted"] == 1
    assert (await post(two, [view("a", "reader-1")]))["accepted"] == 0
    assert (await post(two, [view("a", "reader-2")]))["accepted"] == 1
    assert (await post(one, [view("a", "reader-2")]))["accepted"] == 0
    assert await score(redis, one, "a") == 2.0


async def test_a_mark_lasts_the_window_and_once_gone_the_reader_counts_again(
    app_client: Client, redis: Redis
) -> None:
    await post(app_client, [view("a", "reader-1")])
    (key,) = await marks(redis, app_client)
    shard, digest = mark("reader-1", "a")
    assert key == app_client.app[STORE].keys.seen(shard, digest)
    # Redis keeps the mark for the window, on its own clock (not the test's fake one).
    assert WINDOW - 5 <= await redis.ttl(key) <= WINDOW
    assert (await post(app_client, [view("a", "reader-1")]))["accepted"] == 0
    await redis.delete(key)  # what Redis does when the window is over
    assert (await post(app_client, [view("a", "reader-1")]))["accepted"] == 1
    assert await score(redis, app_client, "a") == 2.0


async def test_a_keyed_retry_is_not_deduplicated_against_its_own_first_try(
    app_client: Client, redis: Redis
) -> None:
    events = [view("a", "reader-1"), view("b", "reader-1"), view("a", "reader-1")]
    key = idempotency_key("batch-1", "application/json", b"")
    assert key is not None
    # The first try's dedup step set its marks, and its flush then failed: nothing counted.
    store = app_client.app[STORE]
    views = [("a", "sports", 0.0, 1.0), ("b", "sports", 0.0, 1.0)]
    counted, repeats = await count_once(store, views, [(0, "reader-1"), (1, "reader-1")], key.token)
    assert (len(counted), repeats) == (2, 0)
    assert len(await marks(redis, app_client)) == 2

    answer = await post(app_client, events, **{HEADER: "batch-1"})
    assert answer == {"accepted": 2, "rejected": [], "excluded": {DUPLICATE_READER: 1}}
    assert await score(redis, app_client, "a") == 1.0
    assert await score(redis, app_client, "b") == 1.0
    # Another batch from the same reader is a repeat all the same.
    assert (await post(app_client, events, **{HEADER: "batch-2"}))["accepted"] == 0


async def test_a_keyed_retry_after_a_lost_answer_is_answered_as_the_first_try_was(
    app_client: Client, redis: Redis
) -> None:
    events = [view("a", "reader-1"), view("a", "reader-1")]
    first = await post(app_client, events, **{HEADER: "batch-1"})
    assert first == {"accepted": 1, "rejected": [], "excluded": {DUPLICATE_READER: 1}}
    # As if the answer had been lost: the views are counted and marked, no answer is kept.
    token = idempotency_key("batch-1", "application/json", orjson.dumps(events))
    assert token is not None
    await redis.delete(app_client.app[STORE].keys.idempotency(token.token))
    retry = await app_client.post("/v1/events", json=events, headers={HEADER: "batch-1"})
    assert retry.headers[REPLAYED_HEADER] == "true"
    assert await retry.json() == first
    assert await score(redis, app_client, "a") == 1.0


async def test_an_unkeyed_resend_of_a_counted_batch_counts_nothing(
    app_client: Client, redis: Redis
) -> None:
    # As after a 503 that said the batch may have been counted: without a key, a resend is
    # a repeat (where the first try's flush failed after its marks were set, its views are
    # then lost: docs/api/events.md says so).
    await post(app_client, [view("a", "reader-1")])
    assert (await post(app_client, [view("a", "reader-1")]))["accepted"] == 0
    assert await score(redis, app_client, "a") == 1.0


async def test_a_window_of_0_counts_every_view(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    client = await aiohttp_client(create_app(make_settings(dedup_window_s=0), clock=clock))
    assert (await post(client, [view("a", "reader-1")] * 5))["accepted"] == 5
    assert await score(redis, client, "a") == 5.0
    assert await marks(redis, client) == []


def test_a_pairs_mark_is_its_own_and_spread_over_the_shards() -> None:
    assert mark("v", "a") == mark("v", "a")
    assert mark("v", "a") != mark("v", "b")
    assert mark("v", "a") != mark("w", "a")
    shards = {mark(f"reader-{n}", "a")[0] for n in range(1000)}
    assert shards == set(range(SHARDS))
