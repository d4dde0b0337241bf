"""Idempotency-Key on POST /v1/events: a batch retried with its key is counted once and
answered as the first time. The clock stands still, so every view is worth exactly 1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest
from multidict import CIMultiDictProxy
from redis.asyncio import Redis

from ranker.api.appkeys import METRICS, STORE
from ranker.app import create_app
from ranker.config import Settings
from ranker.ingest.idempotency import HEADER, REPLAYED_HEADER, idempotency_key
from ranker.ingest.plan import FlushPlan, KeyedBatch
from tests.conftest import AiohttpClient, Client, FakeClock, applied
from tests.ingest.test_bots import CRAWLERS

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

JSON = "application/json"

EVENTS = [
    {"article_id": "a", "section": "sports"},
    {"article_id": "b", "section": "world", "weight": 2},
    {"article_id": "c", "section": "nowhere"},  # rejected: the answer has a rejection to keep
]


async def post(
    client: Client, body: bytes, key: str | None
) -> tuple[int, bytes, CIMultiDictProxy[str]]:
    """POST a body as it is; the status, the body's bytes and the headers of the answer."""
    headers = {"Content-Type": JSON}
    if key is not None:
        headers[HEADER] = key
    response = await client.post("/v1/events", data=body, headers=headers)
    return response.status, await response.read(), response.headers


async def score(redis: Redis, client: Client, ranking: str, article_id: str) -> float | None:
    return await redis.zscore(client.app[STORE].keys.scores(ranking), article_id)


def sample(client: Client, name: str, labels: dict[str, str] | None = None) -> float:
    value = client.app[METRICS].registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def token_of(key: str, body: bytes, content_type: str = JSON) -> str:
    parsed = idempotency_key(key, content_type, body)
    assert parsed is not None
    return parsed.token


async def test_a_retry_gets_the_first_answer_byte_for_byte_and_counts_nothing_more(
    client: Client, redis: Redis
) -> None:
    body = orjson.dumps(EVENTS)
    status, first, first_headers = await post(client, body, "batch-1")
    assert status == 200
    assert REPLAYED_HEADER not in first_headers
    assert orjson.loads(first)["accepted"] == 2
    status, again, headers = await post(client, body, "batch-1")
    assert status == 200
    assert again == first
    assert headers[REPLAYED_HEADER] == "true"
    assert headers["Content-Type"].startswith(JSON)
    assert await score(redis, client, "sports", "a") == 1.0
    assert await score(redis, client, "world", "b") == 2.0
    assert await score(redis, client, "all", "a") == 1.0
    assert await score(redis, client, "all", "b") == 2.0


async def test_a_retry_answered_from_the_kept_answer_is_counted_in_the_metrics_as_such(
    client: Client,
) -> None:
    body = orjson.dumps(EVENTS)
    for _ in range(3):
        assert (await post(client, body, "batch-1"))[0] == 200
    replayed = "ranker_event_batches_replayed_total"
    assert sample(client, replayed, {"found": "answer"}) == 2
    assert sample(client, replayed, {"found": "flush"}) == 0
    # The views were counted once, and so were they in the metrics.
    assert sample(client, "ranker_events_accepted_total", {"section": "sports"}) == 1
    assert sample(client, "ranker_events_accepted_total", {"section": "world"}) == 1


async def test_the_same_key_with_another_body_is_refused_and_counts_nothing(
    client: Client, redis: Redis
) -> None:
    assert (await post(client, orjson.dumps(EVENTS), "batch-1"))[0] == 200
    other = orjson.dumps([{"article_id": "other", "section": "sports"}])
    status, body, _ = await post(client, other, "batch-1")
    assert status == 422
    assert orjson.loads(body)["error"]["code"] == "idempotency_key_reused"
    assert await score(redis, client, "sports", "other") is None
    assert await score(redis, client, "all", "other") is None
    assert (
        sample(client, "ranker_event_batches_rejected_total", {"reason": "idempotency_key_reused"})
        == 1
    )


async def test_the_same_key_and_body_with_another_media_type_is_another_request(
    client: Client, redis: Redis
) -> None:
    line = orjson.dumps({"article_id": "a", "section": "sports"})
    assert (await post(client, line, "batch-1"))[0] == 200
    response = await client.post(
        "/v1/events",
        data=line,
        headers={"Content-Type": "application/x-ndjson", HEADER: "batch-1"},
    )
    assert response.status == 422
    assert await score(redis, client, "sports", "a") == 1.0


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="256-chars"),
        pytest.param("secret key", id="space"),
        pytest.param("sécret-key", id="non-ascii"),
        # The one control character a header value may hold: aiohttp's parser refuses the
        # others with a 400 of its own before any handler runs.
        pytest.param("secret\tkey", id="tab"),
    ],
)
async def test_an_invalid_key_is_refused_without_echoing_it_and_counts_nothing(
    client: Client, redis: Redis, key: str
) -> None:
    status, body, _ = await post(client, orjson.dumps(EVENTS), key)
    assert status == 400
    error = orjson.loads(body)["error"]
    assert error["code"] == "invalid_idempotency_key"
    if key:
        assert key not in error["message"]
        assert "secret" not in error["message"]
    assert await score(redis, client, "sports", "a") is None


@pytest.mark.parametrize("key", ["k", "~" * 255, "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}"])
async def test_a_key_of_1_to_255_visible_characters_is_taken(
    client: Client, redis: Redis, key: str
) -> None:
    body = orjson.dumps(EVENTS)
    assert (await post(client, body, key))[0] == 200
    status, _, headers = await post(client, body, key)
    assert status == 200
    assert headers[REPLAYED_HEADER] == "true"
    assert await score(redis, client, "sports", "a") == 1.0


async def test_concurrent_requests_with_the_same_key_are_counted_once(
    client: Client, redis: Redis
) -> None:
    body = orjson.dumps(EVENTS)
    answers = await asyncio.gather(*(post(client, body, "batch-1") for _ in range(5)))
    assert {status for status, _, _ in answers} == {200}
    assert len({answer for _, answer, _ in answers}) == 1
    # One of them counted the batch; every other one is a retry, and says so.
    replayed = [headers.get(REPLAYED_HEADER) for _, _, headers in answers]
    assert sorted(replayed, key=str) == [None, "true", "true", "true", "true"]
    await applied(client)
    assert await score(redis, client, "sports", "a") == 1.0
    assert await score(redis, client, "all", "b") == 2.0
    assert sample(client, "ranker_events_accepted_total", {"section": "sports"}) == 1


async def test_concurrent_requests_with_the_same_key_and_other_bodies_count_one_body(
    client: Client, redis: Redis
) -> None:
    bodies = [orjson.dumps([{"article_id": f"a{n}", "section": "sports"}]) for n in range(5)]
    answers = await asyncio.gather(*(post(client, body, "batch-1") for body in bodies))
    statuses = [status for status, _, _ in answers]
    assert sorted(statuses) == [200, 422, 422, 422, 422]
    counted = statuses.index(200)
    await applied(client)
    stored = await redis.zrange(client.app[STORE].keys.scores("sports"), 0, -1, withscores=True)
    assert stored == [(f"a{counted}", 1.0)]


async def test_a_retry_counts_only_the_rankings_a_broken_first_try_did_not_reach(
    client: Client, redis: Redis, clock: FakeClock
) -> None:
    body = orjson.dumps([{"article_id": "a", "section": "sports"}])
    token = token_of("batch-1", body)
    store = client.app[STORE]
    # The first try's pipeline broke after the script of one ranking ran: "sports" counted
    # the view, "all" did not, and no answer was kept.
    partial = KeyedBatch(token, {"sports": {"a": 1.0}}, record="unused")
    await store.apply(FlushPlan(clock.now, {}, keyed=[partial]), clock.now)
    await redis.delete(store.keys.idempotency(token))

    status, answer, headers = await post(client, body, "batch-1")
    assert status == 200
    assert orjson.loads(answer) == {"accepted": 1, "rejected": []}
    assert headers[REPLAYED_HEADER] == "true"
    assert await score(redis, client, "sports", "a") == 1.0
    assert await score(redis, client, "all", "a") == 1.0
    assert sample(client, "ranker_event_batches_replayed_total", {"found": "flush"}) == 1
    # The retry's own answer is kept now: the next retry is answered from it.
    assert (await post(client, body, "batch-1"))[1] == answer
    assert sample(client, "ranker_event_batches_replayed_total", {"found": "answer"}) == 1


async def test_another_body_never_counts_where_a_broken_first_try_did_not_reach(
    client: Client, redis: Redis, clock: FakeClock
) -> None:
    body = orjson.dumps([{"article_id": "a", "section": "sports"}])
    key = idempotency_key("batch-1", JSON, body)
    assert key is not None
    store = client.app[STORE]
    # The first try's key was kept, then its pipeline broke after the script of one ranking
    # ran: "sports" counted the view, "all" did not, and no answer was kept.
    await store.claim_keys({key.token: key.fingerprint})
    partial = KeyedBatch(key.token, {"sports": {"a": 1.0}}, record="unused")
    await store.apply(FlushPlan(clock.now, {}, keyed=[partial]), clock.now)

    other = orjson.dumps([{"article_id": "b", "section": "sports"}])
    status, answer, headers = await post(client, other, "batch-1")
    assert status == 422
    assert REPLAYED_HEADER not in headers
    assert orjson.loads(answer)["error"]["code"] == "idempotency_key_reused"
    for ranking in ("sports", "all"):
        assert await score(redis, client, ranking, "b") is None
    # The retry of the first body counts where the first try did not reach, and only there.
    status, answer, headers = await post(client, body, "batch-1")
    assert (status, headers[REPLAYED_HEADER]) == (200, "true")
    assert orjson.loads(answer) == {"accepted": 1, "rejected": []}
    assert await score(redis, client, "sports", "a") == 1.0
    assert await score(redis, client, "all", "a") == 1.0


async def test_requests_with_one_key_and_two_bodies_in_one_flush_count_one_body(
    client: Client, redis: Redis
) -> None:
    first = orjson.dumps([{"article_id": "a", "section": "sports"}])
    other = orjson.dumps([{"article_id": "b", "section": "sports"}])
    answers = await asyncio.gather(
        *(post(client, body, "batch-1") for body in (first, other, first, other))
    )
    statuses = [status for status, _, _ in answers]
    assert sorted(statuses) == [200, 200, 422, 422]
    counted = "a" if statuses[0] == 200 else "b"
    await applied(client)
    stored = await redis.zrange(client.app[STORE].keys.scores("sports"), 0, -1, withscores=True)
    assert stored == [(counted, 1.0)]


async def test_views_a_retry_finds_already_counted_are_not_counted_in_the_metrics(
    client: Client, redis: Redis
) -> None:
    body = orjson.dumps([{"article_id": "a", "section": "sports"}])
    assert (await post(client, body, "batch-1"))[0] == 200
    # As if the answer had been lost: the views are counted, nothing is kept to replay.
    await redis.delete(client.app[STORE].keys.idempotency(token_of("batch-1", body)))
    assert (await post(client, body, "batch-1"))[0] == 200
    assert sample(client, "ranker_event_batches_replayed_total", {"found": "flush"}) == 1
    assert sample(client, "ranker_events_accepted_total", {"section": "sports"}) == 1
    assert await score(redis, client, "sports", "a") == 1.0


WINDOW = 600


@pytest.fixture
async def windowed(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> Client:
    """A client of an app that remembers keys for WINDOW seconds."""
    return await aiohttp_client(create_app(make_settings(idempotency_window_s=WINDOW), clock=clock))


async def test_the_answer_and_the_counted_tokens_are_kept_for_the_configured_window(
    windowed: Client, clock: FakeClock, redis: Redis
) -> None:
    body = orjson.dumps(EVENTS)
    assert (await post(windowed, body, "batch-1"))[0] == 200
    keys, token = windowed.app[STORE].keys, token_of("batch-1", body)
    assert WINDOW - 5 <= await redis.ttl(keys.idempotency(token)) <= WINDOW
    for ranking in ("all", "sports", "world"):
        # Forgotten by the script at that time on the service's clock...
        assert await redis.zscore(keys.applied(ranking), token) == clock.now + WINDOW
        # ...and by Redis with the set's last entry.
        assert WINDOW - 5 <= await redis.ttl(keys.applied(ranking)) <= WINDOW


async def test_past_the_window_a_retry_is_counted_again(
    windowed: Client, clock: FakeClock, redis: Redis
) -> None:
    t0 = clock.now
    body = orjson.dumps([{"article_id": "a", "section": "sports", "ts": t0}])
    assert (await post(windowed, body, "batch-1"))[0] == 200
    store = windowed.app[STORE]
    answer_key = store.keys.idempotency(token_of("batch-1", body))
    # Redis drops the kept answer after the window; the tokens the script recorded remain
    # until a flush past their time prunes them.
    await redis.delete(answer_key)
    clock.now = t0 + WINDOW - 1
    status, _, headers = await post(windowed, body, "batch-1")
    assert (status, headers[REPLAYED_HEADER]) == (200, "true")
    assert (await store.top("sports", 10, t0)).items[0].score == 1.0

    await redis.delete(answer_key)
    clock.now = t0 + WINDOW
    status, _, headers = await post(windowed, body, "batch-1")
    assert status == 200
    assert REPLAYED_HEADER not in headers
    assert (await store.top("sports", 10, t0)).items[0].score == 2.0
    assert (await store.top("all", 10, t0)).items[0].score == 2.0


async def test_a_keyed_batch_with_no_view_accepted_is_answered_the_same_on_retry(
    client: Client, redis: Redis
) -> None:
    body = orjson.dumps([{"article_id": "a", "section": "nowhere"}])
    status, first, first_headers = await post(client, body, "batch-1")
    assert status == 200
    assert orjson.loads(first)["accepted"] == 0
    assert REPLAYED_HEADER not in first_headers
    status, again, headers = await post(client, body, "batch-1")
    assert (status, again) == (200, first)
    assert headers[REPLAYED_HEADER] == "true"


async def test_a_key_first_used_for_a_batch_with_no_view_accepted_is_not_reused(
    client: Client, redis: Redis
) -> None:
    assert (await post(client, orjson.dumps([{"section": "sports"}]), "batch-1"))[0] == 200
    other = orjson.dumps([{"article_id": "a", "section": "sports"}])
    status, _, _ = await post(client, other, "batch-1")
    assert status == 422
    assert await score(redis, client, "sports", "a") is None


async def test_each_write_token_has_keys_of_its_own(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    tokens = ("analytics-token-0123456789", "backfill-token-0123456789")
    client = await aiohttp_client(create_app(make_settings(write_tokens=tokens), clock=clock))
    for token, article_id in zip(tokens, ("from-analytics", "from-backfill"), strict=True):
        # Both senders number their batches from 1: neither's is a retry of the other's.
        response = await client.post(
            "/v1/events",
            json=[{"article_id": article_id, "section": "sports"}],
            headers={HEADER: "batch-1", "Authorization": f"Bearer {token}"},
        )
        assert response.status == 200
        assert REPLAYED_HEADER not in response.headers
        assert await score(redis, client, "sports", article_id) == 1.0


NDJSON = "application/x-ndjson"


async def post_as(
    client: Client, body: bytes, key: str, content_type: str
) -> tuple[int, bytes, CIMultiDictProxy[str]]:
    headers = {"Content-Type": content_type, HEADER: key}
    response = await client.post("/v1/events", data=body, headers=headers)
    return response.status, await response.read(), response.headers


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        # The review's: 224 bytes whose answer quotes orjson's error 112 times (16 KB).
        pytest.param(NDJSON, b"x\n" * 112, id="bad-lines"),
        pytest.param(NDJSON, b"x\n" * 10_000, id="many-bad-lines"),
        # Two codes taking turns: the worst case for the runs.
        pytest.param(NDJSON, b"x\n1\n" * 2_000, id="alternating"),
        pytest.param(
            JSON,
            orjson.dumps(
                [{"article_id": "good", "section": "sports"}]
                + [{"article_id": f"bad-{n}", "section": f"nowhere-{n}"} for n in range(2000)]
            ),
            id="unknown-sections",
        ),
    ],
)
async def test_an_answer_is_kept_in_less_than_its_batch_and_given_back_byte_for_byte(
    client: Client, redis: Redis, clock: FakeClock, content_type: str, body: bytes
) -> None:
    status, first, _ = await post_as(client, body, "batch-1", content_type)
    assert status == 200
    assert len(orjson.loads(first)["rejected"]) >= 112
    key = client.app[STORE].keys.idempotency(token_of("batch-1", body, content_type))
    kept = await redis.strlen(key)
    memory = await redis.memory_usage(key)
    print(f"{len(body)} bytes sent, {len(first)} answered: {kept} kept, {memory} in Redis")
    # At most a byte per event (each took two of the body, at least), and a few dozen more.
    assert kept <= len(body) // 2 + 200
    # The whole key, with Redis's own overhead: never more than the batch, beyond a constant.
    assert memory is not None
    assert memory <= len(body) + 300
    clock.now += 3600  # the messages come back as they were, whatever the time now
    status, again, headers = await post_as(client, body, "batch-1", content_type)
    assert (status, headers[REPLAYED_HEADER]) == (200, "true")
    assert again == first


async def test_a_retry_is_answered_as_its_batch_was_judged_at_the_time(
    client: Client, clock: FakeClock
) -> None:
    body = orjson.dumps(
        [
            {"article_id": "soon", "section": "sports", "ts": clock.now + 400},
            {"article_id": "bad", "section": "nowhere"},
        ]
    )
    status, first, _ = await post(client, body, "batch-1")
    assert status == 200
    assert [r["code"] for r in orjson.loads(first)["rejected"]] == ["future_ts", "unknown_section"]
    # That ts is no longer in the future now; the answer still says it was.
    clock.now += 200
    status, again, headers = await post(client, body, "batch-1")
    assert (status, headers[REPLAYED_HEADER], again) == (200, "true", first)


async def test_a_large_answer_with_bots_events_keeps_them_per_reason(client: Client) -> None:
    googlebot = CRAWLERS["googlebot"]
    events = [
        {"article_id": "good", "section": "sports"},
        {"article_id": "crawled", "section": "sports", "user_agent": googlebot},
    ] + [{"article_id": f"bad-{n}", "section": "nowhere"} for n in range(2000)]
    body = orjson.dumps(events)
    status, first, _ = await post(client, body, "big-bots")
    assert status == 200
    status, again, headers = await post(client, body, "big-bots")
    assert headers[REPLAYED_HEADER] == "true"
    assert again == first
    replayed = orjson.loads(again)
    assert replayed["excluded"] == {"crawler": 1}
    assert replayed["accepted"] == 1
    assert len(replayed["rejected"]) == 2000


async def test_a_retry_of_a_batch_with_bots_events_gets_the_first_answer(client: Client) -> None:
    googlebot = CRAWLERS["googlebot"]
    body = orjson.dumps(
        [
            {"article_id": "good", "section": "sports"},
            {"article_id": "good", "section": "sports", "user_agent": googlebot},
        ]
    )
    status, first, _ = await post(client, body, "bots-1")
    assert status == 200
    assert orjson.loads(first) == {"accepted": 1, "rejected": [], "excluded": {"crawler": 1}}
    status, again, headers = await post(client, body, "bots-1")
    assert headers[REPLAYED_HEADER] == "true"
    assert again == first
