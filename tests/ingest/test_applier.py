"""Flushes sent while another is in flight, or while what earlier ones queued waits, are counted
at once, queued in Redis, and applied together: every ``apply_interval_s`` while ingest is
busy, at once when it pauses, a ranking at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from ranker.config import Settings
from ranker.ingest import flusher
from ranker.ingest.applier import QueuedFlushes
from ranker.ingest.flusher import Ingestor
from ranker.ingest.parse import View
from ranker.ingest.plan import FlushPlan
from ranker.metrics import Metrics
from ranker.store import RankingStore
from tests.conftest import FakeClock
from tests.support.waiting import eventually


def views(count: int, now: float, prefix: str) -> list[View]:
    return [(f"{prefix}{i}", "sports", now, 1.0) for i in range(count)]


class HeldStore:
    """``store`` with its first flush held until ``release`` is set, and the ``queue`` of every
    flush recorded."""

    def __init__(self, store: RankingStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self.release = asyncio.Event(), asyncio.Event()
        self.queued: list[bool] = []
        real_apply = store.apply

        async def apply(plan: FlushPlan, now: float, *, queue: bool = False) -> frozenset[str]:
            self.queued.append(queue)
            if len(self.queued) == 1:
                self.entered.set()
                await self.release.wait()
            return await real_apply(plan, now, queue=queue)

        monkeypatch.setattr(store, "apply", apply)


async def two_flushes(ingestor: Ingestor, held: HeldStore, now: float) -> None:
    """The first flush held in flight, the second sent behind it, then both let go."""
    first = asyncio.ensure_future(ingestor.submit(views(3, now, "first"), {}))
    await held.entered.wait()
    second = asyncio.ensure_future(ingestor.submit(views(2, now, "second"), {}))

    async def second_sent() -> bool:
        return len(held.queued) == 2

    await eventually(second_sent)
    held.release.set()
    await asyncio.gather(first, second)


async def test_a_flush_sent_behind_another_is_counted_queued_then_applied_when_ingest_pauses(
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(apply_interval_s=10.0)  # the pause, not the interval, applies
    store = RankingStore(redis, settings)
    held = HeldStore(store, monkeypatch)
    changed: list[str] = []
    ingestor = Ingestor(store, settings, Metrics(), clock, on_applied=changed.extend)
    ingestor.start()
    await two_flushes(ingestor, held, clock.now)
    assert held.queued == [False, True]  # alone, it applies; behind another, it queues
    await ingestor.applied()
    assert await redis.llen(store.keys.queued("sports")) == 0
    stored = await redis.zrange(store.keys.scores("sports"), 0, -1, withscores=True)
    assert sorted(stored) == [(f"first{i}", 1.0) for i in range(3)] + [
        (f"second{i}", 1.0) for i in range(2)
    ]
    # The lists are told of both flushes' rankings: the first's as it applied, the second's
    # once the sweep did.
    assert sorted(changed) == ["all", "all", "sports", "sports"]
    await ingestor.close()


async def test_ingest_counts_as_paused_only_once_no_request_has_come_for_a_while(
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under load nothing is queued or in flight for a moment between every few flushes, while
    # the senders read their answers: a pass in each would apply a few flushes at a time.
    monkeypatch.setattr(flusher, "PAUSE_S", 0.5)
    settings = make_settings(apply_interval_s=10.0)
    store = RankingStore(redis, settings)
    held = HeldStore(store, monkeypatch)
    real_apply_queued = store.apply_queued
    swept_at: list[float] = []

    async def apply_queued(ranking: str, now: float) -> None:
        swept_at.append(time.monotonic())
        await real_apply_queued(ranking, now)

    monkeypatch.setattr(store, "apply_queued", apply_queued)
    ingestor = Ingestor(store, settings, Metrics(), clock)
    ingestor.start()
    before_requests = time.monotonic()
    await two_flushes(ingestor, held, clock.now)
    assert held.queued == [False, True]
    await ingestor.applied()
    assert await redis.zcard(store.keys.scores("sports")) == 5
    assert swept_at
    assert min(swept_at) >= before_requests + 0.5
    await ingestor.close()


async def test_with_an_apply_interval_of_zero_every_flush_applies(
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(apply_interval_s=0.0)
    store = RankingStore(redis, settings)
    held = HeldStore(store, monkeypatch)
    ingestor = Ingestor(store, settings, Metrics(), clock)
    ingestor.start()
    await two_flushes(ingestor, held, clock.now)
    assert held.queued == [False, False]
    assert await redis.zcard(store.keys.scores("sports")) == 5
    assert not await redis.exists(store.keys.queued("sports"))
    await ingestor.close()


async def queue_one(store: RankingStore, queued: QueuedFlushes, now: float) -> None:
    """A flush queued in "sports" and "all", as the flusher would have sent it."""
    plan = FlushPlan(now, {"sports": {"a": 1.0}, "all": {"a": 1.0}})
    await store.apply(plan, now, queue=True)
    queued.answered(plan.rankings(), queued=True, applied_from=None)


async def test_while_ingest_stays_busy_what_is_queued_is_applied_every_interval(
    make_settings: Callable[..., Settings], clock: FakeClock, redis: Redis
) -> None:
    settings = make_settings(apply_interval_s=0.05)
    store = RankingStore(redis, settings)
    changed: list[str] = []
    queued = QueuedFlushes(store, settings, Metrics(), clock, changed.extend, lambda: None)
    queued.start()
    for _ in range(3):
        await queue_one(store, queued, clock.now)

        async def applied() -> bool:
            return await redis.zscore(store.keys.scores("all"), "a") is not None

        await eventually(applied)  # no pause: the interval applies it
        assert not queued.waiting
        await redis.delete(store.keys.scores("all"))
    assert sorted(changed) == ["all"] * 3 + ["sports"] * 3
    await queued.close()


async def test_a_failed_apply_is_tried_again_and_the_views_stay_counted_meanwhile(
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(apply_interval_s=0.05)
    store = RankingStore(redis, settings)
    metrics = Metrics()
    queued = QueuedFlushes(store, settings, metrics, clock, None, lambda: None)
    real_apply_queued = store.apply_queued
    tries: list[str] = []

    async def flaky(ranking: str, now: float) -> None:
        tries.append(ranking)
        if len(tries) == 1:
            raise RedisConnectionError("down for a moment")
        await real_apply_queued(ranking, now)

    monkeypatch.setattr(store, "apply_queued", flaky)
    await queue_one(store, queued, clock.now)
    await queued.sweep()
    assert queued.waiting
    assert not queued.due  # failed just now: not tried again at once
    assert await redis.llen(store.keys.queued("sports")) == 1  # counted, kept in Redis
    errors = metrics.registry.get_sample_value("ranker_redis_errors_total", {"operation": "flush"})
    assert errors == 1
    queued.start()
    await queue_one(store, queued, clock.now)  # ingest goes on; a second later, a new try

    async def applied() -> bool:
        return not queued.waiting

    await eventually(applied)
    assert await redis.zscore(store.keys.scores("sports"), "a") == 2.0
    assert await redis.zscore(store.keys.scores("all"), "a") == 2.0
    await queued.close()


async def test_while_what_this_process_queued_waits_a_flush_sent_alone_queues_too(
    make_settings: Callable[..., Settings], clock: FakeClock, redis: Redis
) -> None:
    # Only sweeps apply while ingest is busy: a flush that applied would add every queued
    # flush's sums to its own, in one long script call.
    settings = make_settings(apply_interval_s=10.0)
    store = RankingStore(redis, settings)
    queued = QueuedFlushes(store, settings, Metrics(), clock, None, lambda: None)
    assert not queued.queues(behind_another=False)
    assert queued.queues(behind_another=True)
    await queue_one(store, queued, clock.now)
    assert queued.queues(behind_another=False)
    await queued.sweep()
    assert not queued.waiting
    assert not queued.queues(behind_another=False)


async def test_a_sweep_applies_a_ranking_at_a_time_the_site_wide_one_last(
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(apply_interval_s=10.0)
    store = RankingStore(redis, settings)
    changed: list[str] = []
    queued = QueuedFlushes(store, settings, Metrics(), clock, changed.extend, lambda: None)
    real_apply_queued = store.apply_queued
    calls: list[str] = []

    async def recorded(ranking: str, now: float) -> None:
        calls.append(ranking)
        await real_apply_queued(ranking, now)

    monkeypatch.setattr(store, "apply_queued", recorded)
    plan = FlushPlan(clock.now, {"all": {"a": 2.0}, "sports": {"a": 1.0}, "world": {"b": 1.0}})
    await store.apply(plan, clock.now, queue=True)
    queued.answered(plan.rankings(), queued=True, applied_from=None)
    await queued.sweep()
    assert calls[-1] == "all"
    assert sorted(calls) == ["all", "sports", "world"]
    assert changed == calls  # each told as soon as it is applied
    assert await redis.zscore(store.keys.scores("all"), "a") == 2.0
    assert await redis.zscore(store.keys.scores("world"), "b") == 1.0
