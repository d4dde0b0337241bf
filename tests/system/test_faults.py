"""Redis outages under load: a pause, then a crash and a restart from the append-only file.

Each test runs its own Redis (never the shared one) and stops, pauses or kills it. Scores are
exact counts here: the clock stands still, so every view is worth exactly 1.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from ranker.api.appkeys import METRICS, STORE
from ranker.app import create_app
from ranker.config import Settings
from ranker.lists.render import STALE_HEADER
from ranker.runtime.embedded import EmbeddedRedis, free_port
from ranker.store import watch as watch_module
from ranker.store.base import refuses_writes
from ranker.store.keys import Keys
from tests.conftest import AiohttpClient, Client, FakeClock, applied
from tests.support.http import send_until_acknowledged
from tests.support.proxy import ReplyLosingProxy

SECTIONS = ("sports", "world", "business")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    # fsync before every reply: what Redis acknowledged survives a SIGKILL.
    with EmbeddedRedis(tmp_path / "redis", persist=True, fsync="always") as server:
        yield server


@pytest.fixture
async def redis_client(private_redis: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(private_redis.url, decode_responses=True)
    yield client
    await client.aclose()


def fault_settings(server: EmbeddedRedis, **overrides: float) -> Settings:
    fields: dict[str, float] = {
        "redis_timeout_s": 0.5,
        "request_timeout_s": 3.0,
        "refresh_interval_s": 0.1,
    }
    fields.update(overrides)
    return Settings(redis_url=server.url, key_prefix="faults", sections=SECTIONS, **fields)  # type: ignore[arg-type]


@dataclass
class Load:
    """What the load saw: views acknowledged per article, and every answer's status."""

    acknowledged: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    retried_batches: int = 0
    reads: Counter[int] = field(default_factory=Counter)
    stale_reads: int = 0
    read_errors: list[str] = field(default_factory=list)


def batch(sender: str, number: int) -> list[dict[str, str]]:
    return [
        {"article_id": f"{sender}-a{(number + i) % 7}", "section": SECTIONS[(number + i) % 3]}
        for i in range(20)
    ]


async def keyed_sender(client: Client, name: str, load: Load, stop: asyncio.Event) -> None:
    """Sends batches with an Idempotency-Key, each retried with the same key until a 200."""
    number = 0
    while not stop.is_set():
        events = batch(name, number)
        tries = await send_until_acknowledged(client, events, f"{name}-{number}", load.statuses)
        load.retried_batches += tries > 1
        load.acknowledged.update(event["article_id"] for event in events)
        number += 1


async def unkeyed_sender(client: Client, load: Load, stop: asyncio.Event) -> None:
    """Sends batches without a key and never retries: at least once at best."""
    number = 0
    while not stop.is_set():
        events = batch("plain", number)
        load.sent.update(event["article_id"] for event in events)
        try:
            response = await client.post("/v1/events", json=events)
            await response.read()
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.05)
        else:
            if response.status == 200:
                load.acknowledged.update(event["article_id"] for event in events)
            else:
                await asyncio.sleep(0.05)
        number += 1


async def poller(client: Client, load: Load, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for path in ("/v1/rankings/all", "/v1/rankings/sports?limit=5"):
            try:
                response = await client.get(path)
                await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.read_errors.append(repr(exc))
                continue
            load.reads[response.status] += 1
            load.stale_reads += response.headers.get(STALE_HEADER) == "true"
        await asyncio.sleep(0.01)


async def ready(client: Client) -> bool:
    """Whether /readyz says Redis answers now. Once Redis has answered, the replica stays
    ready through an outage (it serves its last good lists); the body says what Redis does."""
    response = await client.get("/readyz")
    body = await response.json()
    return response.status == 200 and body["redis"] == "up"


async def seconds_until_ready(client: Client, limit: float) -> float:
    started = time.monotonic()
    while not await ready(client):
        if time.monotonic() - started > limit:
            return float("inf")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_pause_and_a_crash_of_redis_lose_nothing_acknowledged_and_count_retries_once(
    aiohttp_client: AiohttpClient, private_redis: EmbeddedRedis, redis_client: Redis
) -> None:
    clock = FakeClock()
    client = await aiohttp_client(create_app(fault_settings(private_redis), clock=clock))
    assert (await client.get("/v1/rankings/all")).status == 200  # lists cached before the fault
    load, stop = Load(), asyncio.Event()
    tasks = [
        *(asyncio.create_task(keyed_sender(client, f"k{n}", load, stop)) for n in range(4)),
        asyncio.create_task(unkeyed_sender(client, load, stop)),
        asyncio.create_task(poller(client, load, stop)),
    ]
    await asyncio.sleep(1.0)
    assert private_redis.pid is not None

    os.kill(private_redis.pid, signal.SIGSTOP)
    await asyncio.sleep(0.8)
    ready_while_paused = await ready(client)
    await asyncio.sleep(4.2)
    os.kill(private_redis.pid, signal.SIGCONT)
    ready_after_pause = await seconds_until_ready(client, limit=10)
    await asyncio.sleep(1.0)

    private_redis.kill()
    await asyncio.sleep(0.5)
    ready_while_down = await ready(client)
    await asyncio.sleep(1.0)
    private_redis.start()  # returns once it answers, its append-only file loaded
    ready_after_restart = await seconds_until_ready(client, limit=10)
    await asyncio.sleep(1.0)

    stop.set()
    async with asyncio.timeout(30):
        await asyncio.gather(*tasks)

    print(
        f"ready {ready_after_pause:.3f} s after SIGCONT, {ready_after_restart:.3f} s after the "
        f"restart; answers {dict(load.statuses)}; reads {dict(load.reads)}, "
        f"{load.stale_reads} stale; {load.retried_batches} batches retried"
    )
    assert not ready_while_paused
    assert not ready_while_down
    # The bound the issue sets; by design it is about half a second (the reconnect backoff).
    assert ready_after_pause <= 2.0
    assert ready_after_restart <= 2.0
    # Both outages made senders retry, and answers said so with 503s, never a 500.
    assert load.retried_batches > 0
    assert load.statuses[503] > 0
    assert set(load.statuses) <= {200, 503, 0}
    # Reads answered throughout, from memory while Redis could not be read, marked stale.
    assert load.read_errors == []
    assert set(load.reads) == {200}
    assert load.stale_reads > 0

    keys = Keys("faults")
    # Counted is kept in Redis, not yet applied: the last flushes may still wait there for a
    # sweep (queued while ingest was busy, or left by a sweep the crash failed, which is tried
    # again a second later). Within seconds, every one of them is applied.
    async with asyncio.timeout(10):
        await applied(client)
    stored = await redis_client.zrange(keys.scores("all"), 0, -1, withscores=True)
    scores = dict(cast(list[tuple[str, float]], stored))
    keyed = {article: count for article, count in load.acknowledged.items() if article[0] == "k"}
    assert keyed
    # Every keyed batch was acknowledged in the end (it was retried until it was): each view
    # counted exactly once, whatever became of its tries.
    assert {article: scores.get(article) for article in keyed} == keyed
    # Without a key: nothing acknowledged is lost, nothing is counted more often than sent.
    for article, sent in load.sent.items():
        assert load.acknowledged[article] <= scores.get(article, 0) <= sent


@pytest.fixture
async def proxy(private_redis: EmbeddedRedis) -> AsyncIterator[ReplyLosingProxy]:
    proxy = ReplyLosingProxy(private_redis.port)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def proxied(
    aiohttp_client: AiohttpClient, private_redis: EmbeddedRedis, proxy: ReplyLosingProxy
) -> Client:
    """A client of an app that reaches its Redis through the proxy, ready."""
    settings = replace(fault_settings(private_redis), redis_url=proxy.url)
    client = await aiohttp_client(create_app(settings, clock=FakeClock()))
    assert await ready(client)
    return client


async def test_a_flush_whose_answer_is_lost_is_503_and_its_views_may_be_counted(
    proxied: Client, proxy: ReplyLosingProxy, redis_client: Redis
) -> None:
    client = proxied
    proxy.lose_script_replies = True
    first = await client.post("/v1/events", json={"article_id": "late", "section": "sports"})
    body = await first.json()
    assert first.status == 503
    assert first.headers["Retry-After"] == "1"
    # Redis counted the views; only its answer was lost. The 503 cannot say "not counted".
    assert "may still have been counted" in body["error"]["message"]
    assert "Idempotency-Key" in body["error"]["message"]
    assert await redis_client.zscore(Keys("faults").scores("sports"), "late") == 1.0


async def test_a_retry_with_its_key_after_a_lost_answer_counts_nothing_more(
    proxied: Client, proxy: ReplyLosingProxy, redis_client: Redis
) -> None:
    client = proxied
    events = [{"article_id": "late", "section": "sports"}, {"article_id": "late", "section": "x"}]
    headers = {"Idempotency-Key": "batch-1"}
    proxy.lose_script_replies = True
    first = await client.post("/v1/events", json=events, headers=headers)
    assert first.status == 503
    proxy.lose_script_replies = False
    await seconds_until_ready(client, limit=10)
    retry = await client.post("/v1/events", json=events, headers=headers)
    assert retry.status == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    answer = await retry.json()
    assert answer["accepted"] == 1
    assert [rejection["index"] for rejection in answer["rejected"]] == [1]
    keys = Keys("faults")
    assert await redis_client.zscore(keys.scores("sports"), "late") == 1.0
    assert await redis_client.zscore(keys.scores("all"), "late") == 1.0
    # And the answer is kept now: a third try is answered from it, as the second was.
    again = await client.post("/v1/events", json=events, headers=headers)
    assert await again.json() == answer
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await redis_client.zscore(keys.scores("all"), "late") == 1.0


async def test_a_keyed_retry_after_its_marks_were_set_and_the_answer_lost_counts_once(
    proxied: Client, proxy: ReplyLosingProxy, redis_client: Redis
) -> None:
    client = proxied
    events = [{"article_id": "read", "section": "sports", "visitor_id": "reader-1"}] * 2
    headers = {"Idempotency-Key": "batch-1"}
    proxy.lose_script_replies = True
    # The reader dedup step's marks are set, and its answer never arrives.
    first = await client.post("/v1/events", json=events, headers=headers)
    assert first.status == 503
    assert "nothing was counted" in (await first.json())["error"]["message"]
    assert [key async for key in redis_client.scan_iter(match="faults:{v:*}:seen:*")]
    proxy.lose_script_replies = False
    await seconds_until_ready(client, limit=10)
    retry = await client.post("/v1/events", json=events, headers=headers)
    assert retry.status == 200
    assert await retry.json() == {
        "accepted": 1,
        "rejected": [],
        "excluded": {"duplicate_reader": 1},
    }
    assert await redis_client.zscore(Keys("faults").scores("sports"), "read") == 1.0


async def test_two_flushes_cut_off_in_flight_are_503_and_their_retries_count_once(
    proxied: Client, proxy: ReplyLosingProxy, redis_client: Redis
) -> None:
    # The second flush is written on the flush line while Redis has not answered the first;
    # then the connection is cut with both in flight. Neither can say what was counted, and
    # each retried with its key is counted exactly once.
    client = proxied
    assert client.app[STORE].flushes_at_once == 2
    proxy.losing_pattern = INCREMENT_SHA.encode()
    proxy.lose_script_replies = True
    batches = {
        key: [{"article_id": article, "section": "sports"}]
        for key, article in (("first", "a"), ("second", "b"))
    }

    async def post(key: str) -> aiohttp.ClientResponse:
        return await client.post("/v1/events", json=batches[key], headers={"Idempotency-Key": key})

    first = asyncio.create_task(post("first"))
    await eventually(lambda: at_least(proxy, 2))  # sports and all: the first flush is written
    second = asyncio.create_task(post("second"))
    await eventually(lambda: at_least(proxy, 4))  # and the second, behind it
    await proxy.cut()
    for answer in await asyncio.gather(first, second):
        assert answer.status == 503
        assert "may still have been counted" in (await answer.json())["error"]["message"]
    proxy.lose_script_replies = False
    await seconds_until_ready(client, limit=10)
    for key in batches:
        retry = await post(key)
        assert retry.status == 200, await retry.text()
        # Redis had applied both before the cut: the retries are found counted.
        assert retry.headers["Idempotent-Replayed"] == "true"
    # The second flush was sent behind the first, so it queued its amounts: applied once
    # ingest paused (ranker/ingest/applier.py), its retry found counted all the same.
    await applied(client)
    keys = Keys("faults")
    for ranking in ("sports", "all"):
        assert await redis_client.zscore(keys.scores(ranking), "a") == 1.0
        assert await redis_client.zscore(keys.scores(ranking), "b") == 1.0


INCREMENT_SHA = hashlib.sha1(
    files("ranker.store").joinpath("lua", "increment.lua").read_bytes()
).hexdigest()


async def at_least(proxy: ReplyLosingProxy, calls: int) -> bool:
    return proxy.lost_calls >= calls


async def test_a_request_waiting_on_a_stalled_redis_ends_at_the_request_timeout(
    aiohttp_client: AiohttpClient, private_redis: EmbeddedRedis
) -> None:
    settings = fault_settings(private_redis, redis_timeout_s=30.0, request_timeout_s=0.3)
    client = await aiohttp_client(create_app(settings, clock=FakeClock()))
    assert await ready(client)
    assert private_redis.pid is not None
    os.kill(private_redis.pid, signal.SIGSTOP)
    try:
        events = await client.post("/v1/events", json={"article_id": "a", "section": "world"})
        events_body = await events.json()
        article = await client.get("/v1/articles/a")
        article_body = await article.json()
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
    assert events.status == 503
    assert events_body["error"]["code"] == "timeout"
    assert "may still be counted" in events_body["error"]["message"]
    assert article.status == 503
    assert article_body["error"]["code"] == "timeout"


async def test_a_flush_that_cannot_reach_redis_says_nothing_was_counted(
    aiohttp_client: AiohttpClient, private_redis: EmbeddedRedis
) -> None:
    client = await aiohttp_client(create_app(fault_settings(private_redis), clock=FakeClock()))
    assert await ready(client)
    # Killed between two checks: ingest still takes the batch, and the flush's first step,
    # proving its connection, finds Redis gone before anything is sent.
    private_redis.kill()
    response = await client.post("/v1/events", json={"article_id": "a", "section": "sports"})
    body = await response.json()
    assert response.status == 503
    assert body["error"]["code"] == "redis_unavailable"
    assert "nothing was counted" in body["error"]["message"]


async def test_article_reads_and_writes_are_refused_at_once_while_redis_is_known_down(
    aiohttp_client: AiohttpClient, private_redis: EmbeddedRedis
) -> None:
    client = await aiohttp_client(create_app(fault_settings(private_redis), clock=FakeClock()))
    assert await ready(client)
    private_redis.kill()
    with pytest.raises(RedisConnectionError):
        await client.app[STORE].ping()  # how any command finds Redis down
    registry = client.app[METRICS].registry

    def article_commands() -> float:
        return sum(
            registry.get_sample_value(
                "ranker_redis_command_duration_seconds_count", {"operation": operation}
            )
            or 0.0
            for operation in ("article_get", "article_put")
        ) + (
            registry.get_sample_value(
                "ranker_redis_errors_total", {"operation": "/v1/articles/{article_id}"}
            )
            or 0.0
        )

    read = await client.get("/v1/articles/a")
    write = await client.put("/v1/articles/a", json={"title": "Never written"})
    for response, consequence in ((read, "try again shortly"), (write, "nothing was changed")):
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        body = await response.json()
        assert body["error"]["code"] == "redis_unavailable"
        assert consequence in body["error"]["message"]
    assert article_commands() == 0  # neither waited on a command to find out


async def test_after_a_lost_answer_another_body_with_the_key_is_refused_and_the_retry_answered(
    proxied: Client, proxy: ReplyLosingProxy, redis_client: Redis
) -> None:
    client = proxied
    keys = Keys("faults")
    first = [{"article_id": "first", "section": "sports"}, {"article_id": "x", "section": "x"}]
    other = [{"article_id": "other", "section": "sports", "weight": 1000}]
    headers = {"Idempotency-Key": "batch-1"}
    # Redis counts the first body; its answer never arrives, so none is kept.
    proxy.lose_script_replies = True
    response = await client.post("/v1/events", json=first, headers=headers)
    assert response.status == 503
    proxy.lose_script_replies = False
    await seconds_until_ready(client, limit=10)
    assert await redis_client.zscore(keys.scores("sports"), "first") == 1.0
    # Another body with that key is no retry of it: refused, and none of it counted.
    for _ in range(2):
        response = await client.post("/v1/events", json=other, headers=headers)
        assert response.status == 422
        assert "Idempotent-Replayed" not in response.headers
        assert (await response.json())["error"]["code"] == "idempotency_key_reused"
    for ranking in ("sports", "all"):
        assert await redis_client.zscore(keys.scores(ranking), "other") is None
    # The true retry is answered as the first try would have been, and counts nothing more.
    for _ in range(2):
        retry = await client.post("/v1/events", json=first, headers=headers)
        assert retry.status == 200
        assert retry.headers["Idempotent-Replayed"] == "true"
        answer = await retry.json()
        assert answer["accepted"] == 1
        assert [(r["index"], r["code"]) for r in answer["rejected"]] == [(1, "unknown_section")]
    for ranking in ("sports", "all"):
        assert await redis_client.zscore(keys.scores(ranking), "first") == 1.0


async def eventually(predicate: Callable[[], Awaitable[bool]], limit: float = 10.0) -> None:
    give_up = time.monotonic() + limit
    while not await predicate():
        assert time.monotonic() < give_up, "never happened"
        await asyncio.sleep(0.02)


def gauge(client: Client, name: str) -> float | None:
    return client.app[METRICS].registry.get_sample_value(name)


async def redis_state(client: Client) -> str:
    response = await client.get("/readyz")
    assert response.status == 200  # ready throughout: lists are still served
    body: dict[str, str] = await response.json()
    return body["redis"]


async def test_writes_a_full_redis_refuses_are_503_and_readiness_and_metrics_say_so(
    aiohttp_client: AiohttpClient, private_redis: EmbeddedRedis, redis_client: Redis
) -> None:
    client = await aiohttp_client(create_app(fault_settings(private_redis), clock=FakeClock()))
    assert (await client.put("/v1/articles/a", json={"title": "Before"})).status == 200
    assert gauge(client, "ranker_redis_writable") == 1
    await redis_client.config_set("maxmemory-policy", "noeviction")
    await redis_client.config_set("maxmemory", "1")  # every write is over it now
    try:
        writes = [
            await client.put("/v1/articles/a", json={"title": "After"}),
            await client.put("/v1/editorial/hides/a", json={"editor": "Ed"}),
            await client.put("/v1/editorial/pins/all/1", json={"article_id": "a"}),
        ]
        for response in writes:
            assert response.status == 503
            assert response.headers["Retry-After"] == "5"
            assert (await response.json())["error"]["code"] == "redis_refuses_writes"
        assert gauge(client, "ranker_redis_writable") == 0
        assert gauge(client, "ranker_redis_up") == 1  # it answers: not an outage
        assert await redis_state(client) == "refuses_writes"
        article = await client.get("/v1/articles/a")  # reads still work
        assert article.status == 200
        assert (await article.json())["title"] == "Before"
    finally:
        await redis_client.config_set("maxmemory", "0")

    async def writable() -> bool:
        return await redis_state(client) == "up"

    await eventually(writable)  # the background check finds it within a second or so
    assert gauge(client, "ranker_redis_writable") == 1
    assert (await client.put("/v1/articles/a", json={"title": "After"})).status == 200


async def test_a_read_only_replica_is_found_refusing_writes_without_any_traffic(
    aiohttp_client: AiohttpClient,
    private_redis: EmbeddedRedis,
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_module, "REDIS_CHECK_INTERVAL_S", 0.1)
    client = await aiohttp_client(create_app(fault_settings(private_redis), clock=FakeClock()))

    async def written() -> bool:
        return gauge(client, "ranker_redis_writable") == 1

    async def refused() -> bool:
        return gauge(client, "ranker_redis_writable") == 0

    await eventually(written)
    # A replica of a primary that is not there: it answers reads, and refuses every write.
    await redis_client.replicaof("127.0.0.1", free_port())
    try:
        await eventually(refused)
        assert await redis_state(client) == "refuses_writes"
        response = await client.put("/v1/articles/b", json={"title": "T"})
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "redis_refuses_writes"
    finally:
        await redis_client.replicaof("NO", "ONE")
    await eventually(written)
    assert await redis_state(client) == "up"


def test_what_counts_as_redis_refusing_writes() -> None:
    assert refuses_writes(OutOfMemoryError("command not allowed when used memory > 'maxmemory'"))
    assert refuses_writes(ReadOnlyError("You can't write against a read only replica."))
    misconf = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable"
    assert refuses_writes(ResponseError(misconf))
    # As a pipeline reports it.
    assert refuses_writes(
        ResponseError(f"Command # 1 (SET k v) of pipeline caused error: {misconf}")
    )
    assert not refuses_writes(ResponseError("ERR wrong number of arguments for 'set' command"))
    assert not refuses_writes(RedisConnectionError("Connection refused"))


async def test_an_article_read_after_redis_lost_its_scripts_loads_them_again(
    aiohttp_client: AiohttpClient, private_redis: EmbeddedRedis, redis_client: Redis
) -> None:
    # A private server: SCRIPT FLUSH would take every test's scripts on a shared one.
    client = await aiohttp_client(create_app(fault_settings(private_redis), clock=FakeClock()))
    assert (
        await client.post("/v1/events", json={"article_id": "a", "section": "world"})
    ).status == 200
    assert (await client.get("/v1/articles/a")).status == 200
    await redis_client.script_flush()  # as after a restart without persistence of scripts
    response = await client.get("/v1/articles/a")
    assert response.status == 200
    assert (await response.json())["scores"] == {"all": 1.0, "world": 1.0}
