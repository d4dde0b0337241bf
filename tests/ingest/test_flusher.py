"""Ingest end to end: group commit, coalescing, and the decayed sums it must produce."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest
from aiohttp import web
from redis.asyncio import Redis

from ranker.api.appkeys import INGESTOR, METRICS, STORE
from ranker.app import create_app
from ranker.config import Settings
from ranker.errors import IdempotencyKeyReused, Overloaded
from ranker.ingest.flusher import MAX_FLUSH_VIEWS, Ingestor
from ranker.ingest.idempotency import IdempotencyKey
from ranker.ingest.parse import View
from ranker.metrics import Metrics
from ranker.runtime.embedded import free_port
from ranker.store import RankingStore
from ranker.store.keys import Keys
from tests.conftest import AiohttpClient, Client, FakeClock, applied, refreshed
from tests.ingest.test_bots import BROWSERS, CRAWLERS, HEADLESS_BROWSERS
from tests.support.oracle import Oracle, assert_list_matches

# On the single node and on the local Redis Cluster (conftest.py)
pytestmark = pytest.mark.cluster_too

SECTIONS = ("national", "business", "sports", "entertainment", "world")
DAY = 86_400.0


def make_events(
    rng: random.Random, count: int, articles: int, start: float, end: float
) -> list[dict[str, Any]]:
    """Views with a skewed popularity over ``articles`` articles, each in one section."""
    sections = {f"art-{i}": SECTIONS[i % len(SECTIONS)] for i in range(articles)}
    ids = list(sections)
    popularity = [1.0 / (rank + 1) ** 0.8 for rank in range(articles)]
    events = []
    for article_id in rng.choices(ids, weights=popularity, k=count):
        event: dict[str, Any] = {
            "article_id": article_id,
            "section": sections[article_id],
            "ts": rng.uniform(start, end),
        }
        if rng.random() < 0.3:
            event["weight"] = rng.uniform(0.1, 5.0)
        events.append(event)
    return events


def batches(events: Sequence[dict[str, Any]], size: int) -> list[Sequence[dict[str, Any]]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def post(client: Client, batch: Sequence[dict[str, Any]]) -> None:
    response = await client.post("/v1/events", json=list(batch))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body == {"accepted": len(batch), "rejected": []}


async def check_all_lists(client: Client, oracle: Oracle, settings: Settings) -> None:
    await applied(client)
    await refreshed(client)
    for ranking in ("all", *SECTIONS):
        for limit in (10, 20):
            response = await client.get(f"/v1/rankings/{ranking}", params={"limit": str(limit)})
            assert response.status == 200
            assert_list_matches(oracle, ranking, limit, await response.json())


SHARDED_OR_NOT = pytest.mark.parametrize("site_shards", [1, 4], ids=["unsharded", "4-shards"])
"""The site-wide ranking kept in one set, and spread over four sub-rankings merged at read
(``RANKER_SITE_SHARDS``): the same exact sums either way."""


def oracle_settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    # One section with its own half-life, so per-section overrides are checked too.
    return make_settings(sections=SECTIONS, section_half_lives={"sports": 3600.0}, **overrides)


@SHARDED_OR_NOT
async def test_concurrent_shuffled_two_day_stream_matches_exact_sums(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    site_shards: int,
) -> None:
    # Pruning set as low as it goes: what remains to check is the decay arithmetic itself.
    settings = oracle_settings(make_settings, prune_below=1e-12, site_shards=site_shards)
    client = await aiohttp_client(create_app(settings, clock=clock))
    rng = random.Random(20261128)
    events = make_events(rng, 20_000, 400, clock.now - 2 * DAY, clock.now + 200)
    rng.shuffle(events)
    oracle = Oracle(settings.half_life_for)
    oracle.add(events)

    gate = asyncio.Semaphore(8)

    async def send(batch: Sequence[dict[str, Any]]) -> None:
        async with gate:
            await post(client, batch)

    await asyncio.gather(*(send(batch) for batch in batches(events, 400)))
    store = client.app[STORE]
    # Each sub-ranking holds its share of the site-wide ranking, and the ranking's own set none.
    sizes = [await redis.zcard(store.keys.scores(part)) for part in store.shards.parts("all")]
    assert all(sizes)
    assert sum(sizes) == len({event["article_id"] for event in events})
    if site_shards > 1:
        assert not await redis.exists(store.keys.scores("all"))

    for ranking in ("all", *SECTIONS):
        top = oracle.ranked(ranking, clock.now)[:20]
        assert top[-1][1] > 0.01, "the generated stream must give every list 20 live articles"
    await check_all_lists(client, oracle, settings)
    count = client.app[METRICS].registry.get_sample_value("ranker_flush_events_count")
    assert count is not None
    # Concurrent requests shared flushes (group commit) rather than one flush each.
    assert count < len(events) / 400


@SHARDED_OR_NOT
async def test_sequential_batches_match_exact_sums_with_default_pruning(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    site_shards: int,
) -> None:
    settings = oracle_settings(make_settings, site_shards=site_shards)
    assert settings.prune_below == 0.01
    client = await aiohttp_client(create_app(settings, clock=clock))
    rng = random.Random(7)
    events = make_events(rng, 20_000, 400, clock.now - 2 * DAY, clock.now + 200)
    rng.shuffle(events)
    oracle = Oracle(settings.half_life_for)
    for batch in batches(events, 500):
        await post(client, batch)  # one request at a time: one flush each, as the oracle models
        oracle.add(batch)
        oracle.prune(clock.now, settings.prune_below, batch)
    await check_all_lists(client, oracle, settings)


@SHARDED_OR_NOT
async def test_eight_hours_at_one_minute_half_life_rebases_and_stays_exact(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    key_prefix: str,
    site_shards: int,
) -> None:
    settings = make_settings(sections=SECTIONS, half_life_s=60.0, site_shards=site_shards)
    client = await aiohttp_client(create_app(settings, clock=clock))
    rng = random.Random(480)
    start = clock.now
    events = make_events(rng, 20_000, 300, start, start + 8 * 3600)
    events.sort(key=lambda event: event["ts"])
    oracle = Oracle(settings.half_life_for)
    for batch in batches(events, 100):
        # A live stream: the clock runs with the events, a little late ones arrive shuffled.
        clock.now = batch[-1]["ts"] + 1.0
        await post(client, random.Random(len(batch)).sample(list(batch), len(batch)))
        oracle.add(batch)
        oracle.prune(clock.now, settings.prune_below, batch)

    store = client.app[STORE]
    for part in store.shards.parts("all"):
        landmark = float(await redis.hget(store.keys.decay(part), "landmark") or "nan")
        # 480 half-lives passed: the landmark must have been moved forward past the rebase bound.
        assert landmark > start + 256 * 60, part
    await check_all_lists(client, oracle, settings)
    for ranking in (*store.shards.parts("all"), *SECTIONS):
        pairs = cast(
            "list[tuple[str, float]]",
            await redis.zrange(store.keys.scores(ranking), 0, -1, withscores=True),
        )
        assert pairs, ranking
        assert all(math.isfinite(score) and score > 0 for _, score in pairs)


async def test_events_are_refused_at_once_while_redis_is_down(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], clock: FakeClock
) -> None:
    # Nothing listens on this port: the first check finds Redis down.
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.5)
    client = await aiohttp_client(create_app(settings, clock=clock))
    await client.app[STORE].went_down.wait()
    response = await client.post("/v1/events", json=[{"article_id": "a", "section": "sports"}])
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    body = await response.json()
    assert body["error"]["code"] == "redis_unavailable"
    assert "nothing was counted" in body["error"]["message"]
    registry = client.app[METRICS].registry
    assert registry.get_sample_value("ranker_events_accepted_total", {"section": "sports"}) == 0
    labels = {"reason": "redis_unavailable"}
    assert registry.get_sample_value("ranker_event_batches_rejected_total", labels) == 1


async def test_shutdown_flushes_views_already_queued(
    make_settings: Callable[..., Settings], clock: FakeClock, redis: Redis
) -> None:
    settings = make_settings()
    app = create_app(settings, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    ingestor = app[INGESTOR]
    submitted = asyncio.ensure_future(ingestor.submit([("late", "sports", clock.now, 1.0)], {}))
    await asyncio.sleep(0)
    await runner.cleanup()
    await submitted
    score = await redis.zscore(app[STORE].keys.scores("sports"), "late")
    assert score is not None
    assert score > 0


def views(count: int, now: float, prefix: str = "v") -> list[View]:
    return [(f"{prefix}{i}", "sports", now, 1.0) for i in range(count)]


async def test_a_full_queue_refuses_at_once_and_counts_nothing(
    make_settings: Callable[..., Settings], clock: FakeClock, redis: Redis
) -> None:
    settings = make_settings(max_pending_events=1000)
    store = RankingStore(redis, settings)
    metrics = Metrics()
    ingestor = Ingestor(store, settings, metrics, clock)  # loop not started: nothing drains
    first = asyncio.ensure_future(ingestor.submit(views(1000, clock.now), {}))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await ingestor.submit(views(1, clock.now, prefix="late"), {})
    ingestor.start()
    await first
    await ingestor.close()
    assert await redis.zcard(store.keys.scores("sports")) == 1000
    assert await redis.zscore(store.keys.scores("sports"), "late0") is None


async def test_requests_sharing_a_key_in_one_flush_count_once_and_the_later_are_retries(
    make_settings: Callable[..., Settings], clock: FakeClock, redis: Redis
) -> None:
    settings = make_settings()
    store = RankingStore(redis, settings)
    metrics = Metrics()
    ingestor = Ingestor(store, settings, metrics, clock)  # not started: one flush takes all
    key = (IdempotencyKey("0f" * 16, "f" * 32), "f" * 32 + '{"accepted": 1}')
    tries = [asyncio.ensure_future(ingestor.submit(views(1, clock.now), {}, key)) for _ in range(3)]
    await asyncio.sleep(0)
    ingestor.start()
    assert await asyncio.gather(*tries) == [False, True, True]
    await ingestor.close()
    assert await redis.zscore(store.keys.scores("sports"), "v0") == 1.0
    registry = metrics.registry
    assert registry.get_sample_value("ranker_events_accepted_total", {"section": "sports"}) == 1
    labels = {"found": "flush"}
    assert registry.get_sample_value("ranker_event_batches_replayed_total", labels) == 2


async def test_in_one_flush_the_body_a_key_stands_for_is_counted_and_another_refused(
    make_settings: Callable[..., Settings], clock: FakeClock, redis: Redis
) -> None:
    settings = make_settings()
    store = RankingStore(redis, settings)
    metrics = Metrics()
    ingestor = Ingestor(store, settings, metrics, clock)  # not started: one flush takes all
    token, first, other = "0f" * 16, "a" * 32, "b" * 32
    # The key was kept for the first body by a flush whose views never reached Redis.
    assert await store.claim_keys({token: first}) == {token: first}
    tries = [
        asyncio.ensure_future(
            ingestor.submit(
                views(1, clock.now, prefix=name),
                {f"{name}0": (f"Title {name}", None)},
                (IdempotencyKey(token, body), body + '{"accepted": 1}'),
            )
        )
        for name, body in (("other", other), ("first", first), ("again", first))
    ]
    await asyncio.sleep(0)
    ingestor.start()
    outcomes = await asyncio.gather(*tries, return_exceptions=True)
    await ingestor.close()
    assert isinstance(outcomes[0], IdempotencyKeyReused)
    # The first body is sent, though another came first in the flush; its repeat is a retry.
    assert outcomes[1:] == [False, True]
    scores = store.keys.scores("sports")
    assert await redis.zscore(scores, "first0") == 1.0
    assert await redis.zscore(scores, "other0") is None
    # Nothing of the refused batch is taken, its title neither.
    assert await redis.exists(store.keys.article("other0")) == 0
    assert await redis.hget(store.keys.article("first0"), "title") == "Title first"


async def test_a_backlog_is_applied_in_bounded_flushes(
    make_settings: Callable[..., Settings], clock: FakeClock, redis: Redis
) -> None:
    settings = make_settings(max_set_size=100_000)
    store = RankingStore(redis, settings)
    metrics = Metrics()
    ingestor = Ingestor(store, settings, metrics, clock)
    backlog = [
        asyncio.ensure_future(ingestor.submit(views(10_000, clock.now, prefix=f"r{r}-"), {}))
        for r in range(5)
    ]
    await asyncio.sleep(0)
    ingestor.start()
    await asyncio.gather(*backlog)
    await ingestor.close()
    assert await redis.zcard(store.keys.scores("sports")) == 50_000
    registry = metrics.registry
    # Whole requests, at most MAX_FLUSH_VIEWS (25,000) a flush: 20,000 + 20,000 + 10,000.
    assert registry.get_sample_value("ranker_flush_events_count") == 3
    assert registry.get_sample_value("ranker_flush_events_sum") == 50_000
    assert (
        registry.get_sample_value("ranker_flush_events_bucket", {"le": str(float(MAX_FLUSH_VIEWS))})
        == 3
    )


async def test_a_request_cancelled_while_its_flush_fails_leaves_no_unretrieved_error(
    make_settings: Callable[..., Settings], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest's log capture would keep the flush error (and so the request) alive past the test.
    monkeypatch.setattr(logging.getLogger("ranker.ingest"), "propagate", False)
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        settings = make_settings(
            redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.5
        )
        app = create_app(settings, clock=clock)
        runner = web.AppRunner(app)
        await runner.setup()
        waiting = asyncio.ensure_future(app[INGESTOR].submit(views(1, clock.now), {}))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.wait([waiting])
        assert waiting.cancelled()
        await runner.cleanup()  # the flush fails against the dead port meanwhile
        del waiting
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert [c["message"] for c in reported] == []


async def test_a_stream_with_bots_mixed_in_ranks_as_if_they_were_absent(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    key_prefix: str,
    clock: FakeClock,
    redis: Redis,
) -> None:
    rng = random.Random(6)
    humans = make_events(rng, 3_000, 60, clock.now - 3600, clock.now)
    for event in humans[::7]:
        event["user_agent"] = rng.choice(list(BROWSERS.values()))
    bot_agents = [*CRAWLERS.values(), *HEADLESS_BROWSERS.values()]
    clean = await aiohttp_client(create_app(oracle_settings(make_settings), clock=clock))
    # The same Redis under a key prefix of its own, deleted here: the fixture deletes only its own.
    mixed_settings = oracle_settings(make_settings, key_prefix=f"{key_prefix}-bots")
    mixed = await aiohttp_client(create_app(mixed_settings, clock=clock))
    try:
        for batch in batches(humans, 300):
            await post(clean, batch)
            # The same human views in the same batches (so the same flushes), with bots' views
            # of the same articles, of one article only bots read, and with titles, between.
            with_bots: list[dict[str, Any]] = []
            for event in batch:
                with_bots.append(event)
                if rng.random() < 0.5:
                    bot_view = rng.choice([event, {"article_id": "bots-only", "section": "world"}])
                    ua = rng.choice(bot_agents)
                    with_bots.append({**bot_view, "user_agent": ua, "title": "Bot", "weight": 50})
            response = await mixed.post("/v1/events", json=with_bots)
            assert response.status == 200
            answer = await response.json()
            assert answer["accepted"] == len(batch)
            assert sum(answer["excluded"].values()) == len(with_bots) - len(batch)
        oracle = Oracle(mixed_settings.half_life_for)
        oracle.add(humans)
        await check_all_lists(mixed, oracle, mixed_settings)
        for ranking in ("all", *SECTIONS):
            path = f"/v1/rankings/{ranking}?limit=100"
            await refreshed(clean)
            await refreshed(mixed)
            expected = await (await clean.get(path)).json()
            served = await (await mixed.get(path)).json()
            assert served == expected, ranking
    finally:
        pattern = Keys(mixed_settings.key_prefix).pattern()
        keys = [key async for key in redis.scan_iter(match=pattern, count=1000)]
        if keys:
            await redis.delete(*keys)
