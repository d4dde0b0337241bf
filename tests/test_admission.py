"""Admission control for ingest: the budget of body bytes in progress, and per-client rates.

The rate tests pass the time in by hand; the HTTP tests hold a request open by streaming its
body slowly, so the budget is held the way a slow client holds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from redis.asyncio import Redis

from ranker.admission import MAX_TRACKED_CLIENTS, Admission
from ranker.app import create_app
from ranker.config import Settings
from ranker.errors import Overloaded, RateLimited
from ranker.metrics import Metrics
from ranker.state import ADMISSION, STORE
from tests.conftest import AiohttpClient, Client, FakeClock

BUDGET = 4096
JSON = "application/json"


def budget_admission(metrics: Metrics | None = None) -> Admission:
    settings = Settings(max_body_bytes=BUDGET, max_pending_bytes=BUDGET)
    return Admission(settings, metrics if metrics is not None else Metrics())


def rate_admission(events_per_s: float = 10.0, burst: int = 100) -> Admission:
    settings = Settings(
        client_events_per_s=events_per_s, client_burst_events=burst, max_batch_events=burst
    )
    return Admission(settings, Metrics())


def test_one_request_alone_is_let_in_whatever_its_size() -> None:
    admission = budget_admission()
    with admission.reserve(10 * BUDGET):
        assert admission.pending_bytes == 10 * BUDGET
        with pytest.raises(Overloaded), admission.reserve(1):
            pass


def test_requests_are_let_in_up_to_the_budget_and_refused_past_it() -> None:
    admission = budget_admission()
    with admission.reserve(BUDGET - 100), admission.reserve(100):
        assert admission.pending_bytes == BUDGET
        with pytest.raises(Overloaded, match="nothing was counted"), admission.reserve(1):
            pass
        # A refusal takes nothing from the budget.
        assert admission.pending_bytes == BUDGET


def test_a_reservation_is_given_back_when_its_block_ends_also_on_an_exception() -> None:
    admission = budget_admission()
    with admission.reserve(BUDGET):
        pass
    assert admission.pending_bytes == 0
    with pytest.raises(ZeroDivisionError), admission.reserve(BUDGET):
        _ = 1 / 0
    assert admission.pending_bytes == 0
    with admission.reserve(BUDGET - 1), admission.reserve(1):
        assert admission.pending_bytes == BUDGET


def test_the_bytes_in_progress_are_a_gauge() -> None:
    metrics = Metrics()
    admission = budget_admission(metrics)

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("ranker_pending_ingest_bytes")

    assert gauge() == 0
    with admission.reserve(1000):
        assert gauge() == 1000
        with admission.reserve(24):
            assert gauge() == 1024
        assert gauge() == 1000
    assert gauge() == 0


@pytest.fixture
def spent() -> Admission:
    """10 events a second in bursts of 100, and client "c" has sent its burst at time 0."""
    admission = rate_admission(events_per_s=10, burst=100)
    admission.charge("c", 60, now=0.0)
    admission.charge("c", 40, now=0.0)
    return admission


def test_a_client_past_its_burst_is_limited(spent: Admission) -> None:
    with pytest.raises(RateLimited) as raised:
        spent.check_rate("c", now=0.0)
    assert raised.value.retry_after == 1
    with pytest.raises(RateLimited, match="Nothing was counted") as raised:
        spent.charge("c", 50, now=0.0)
    assert raised.value.retry_after == 5  # 50 events at 10 a second


def test_retry_after_is_long_enough_and_no_longer_than_needed(spent: Admission) -> None:
    with pytest.raises(RateLimited) as raised:
        spent.charge("c", 15, now=0.0)
    wait = raised.value.retry_after
    assert wait == 2
    with pytest.raises(RateLimited):
        spent.charge("c", 15, now=wait - 1)
    spent.charge("c", 15, now=wait)


def test_a_refused_charge_takes_nothing(spent: Admission) -> None:
    with pytest.raises(RateLimited):
        spent.charge("c", 50, now=3.0)
    spent.charge("c", 30, now=3.0)  # the 30 that 3 s brought back are all still there
    with pytest.raises(RateLimited):
        spent.charge("c", 1, now=3.0)


def test_the_allowance_refills_with_time_up_to_the_burst(spent: Admission) -> None:
    spent.charge("c", 25, now=2.5)
    # An hour idle brings back the burst, not 36,000 events.
    spent.charge("c", 100, now=3602.5)
    with pytest.raises(RateLimited):
        spent.check_rate("c", now=3602.5)


def test_clients_have_allowances_of_their_own(spent: Admission) -> None:
    spent.check_rate("d", now=0.0)
    spent.charge("d", 100, now=0.0)
    with pytest.raises(RateLimited):
        spent.check_rate("d", now=0.0)


def test_past_the_tracked_clients_the_least_recently_seen_is_forgotten() -> None:
    admission = rate_admission(events_per_s=10, burst=100)
    admission.charge("first", 100, now=0.0)
    admission.charge("second", 100, now=0.0)
    for n in range(MAX_TRACKED_CLIENTS - 2):
        admission.charge(f"other-{n}", 1, now=0.0)
    # At the bound, "first" is still tracked; seen again, "second" is now the least recent.
    with pytest.raises(RateLimited):
        admission.check_rate("first", now=0.0)
    admission.charge("one-more", 1, now=0.0)
    # Forgotten: a full burst again.
    admission.charge("second", 100, now=0.0)
    with pytest.raises(RateLimited):
        admission.check_rate("first", now=0.0)


def test_a_rate_of_zero_limits_nothing() -> None:
    admission = rate_admission(events_per_s=0)
    for _ in range(3):
        admission.check_rate("c", now=0.0)
        admission.charge("c", 10**9, now=0.0)


# HTTP


async def post(client: Client, events: list[dict[str, Any]]) -> tuple[int, Any, Any]:
    response = await client.post("/v1/events", json=events)
    return response.status, await response.json(), response.headers


async def score(client: Client, redis: Redis, article_id: str) -> float | None:
    return await redis.zscore(client.app[STORE].keys.scores("sports"), article_id)


def views(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"article_id": f"{prefix}{n}", "section": "sports"} for n in range(count)]


@pytest.fixture
def make_client(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> Callable[..., Any]:
    async def make(**overrides: Any) -> Client:
        return await aiohttp_client(create_app(make_settings(**overrides), clock=clock))

    return make


async def test_a_client_past_its_rate_gets_429_with_retry_after_and_nothing_counted(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    # An event every 1000 s: a stalled machine cannot hand one back within the test.
    client = await make_client(client_events_per_s=0.001, client_burst_events=5, max_batch_events=5)
    assert (await post(client, views("a", 3)))[0] == 200
    # Refused when its events are counted: two are left, three are sent.
    status, body, headers = await post(client, views("late", 3))
    assert status == 429
    assert body["error"]["code"] == "rate_limited"
    assert 900 <= int(headers["Retry-After"]) <= 1000
    assert await score(client, redis, "late0") is None
    assert (await post(client, views("b", 2)))[0] == 200
    # Refused before its body is read: none are left.
    status, body, headers = await post(client, views("later", 1))
    assert status == 429
    assert 900 <= int(headers["Retry-After"]) <= 1000
    assert await score(client, redis, "later0") is None


async def test_a_batch_over_max_batch_events_is_413_and_nothing_counted(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    client = await make_client(max_batch_events=3)
    status, body, _ = await post(client, views("a", 4))
    assert status == 413
    assert body["error"]["code"] == "too_many_events"
    assert await score(client, redis, "a0") is None
    assert (await post(client, views("a", 3)))[0] == 200


class SlowUpload:
    """A POST of one view whose chunked body sends its first byte, then waits to be let go:
    a request in progress, holding its share of the byte budget."""

    def __init__(self, client: Client, article_id: str) -> None:
        self._data = orjson.dumps([{"article_id": article_id, "section": "sports"}])
        self._release = asyncio.Event()
        self._response = asyncio.ensure_future(
            client.post("/v1/events", data=self._chunks(), headers={"Content-Type": JSON})
        )

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield self._data[:1]
        await self._release.wait()
        yield self._data[1:]

    async def finish(self) -> ClientResponse:
        """Send the rest of the body; the answer."""
        self._release.set()
        return await self._response


async def budget_held(client: Client, article_id: str) -> SlowUpload:
    """A slow upload, once it holds the whole budget: a body of unknown length holds the
    largest a body may be."""
    upload = SlowUpload(client, article_id)
    admission = client.app[ADMISSION]
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 20
    while admission.pending_bytes != BUDGET:
        assert loop.time() < give_up, "the upload never took the budget"
        await asyncio.sleep(0.01)
    return upload


async def test_a_request_past_the_byte_budget_gets_503_at_once_while_a_body_streams_in(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    client = await make_client(max_body_bytes=BUDGET, max_pending_bytes=BUDGET)
    upload = await budget_held(client, "slow")
    status, body, headers = await post(client, views("refused", 1))
    assert status == 503
    assert body["error"]["code"] == "overloaded"
    assert "nothing was counted" in body["error"]["message"]
    assert headers["Retry-After"] == "1"
    response = await upload.finish()
    assert response.status == 200
    assert await response.json() == {"accepted": 1, "rejected": []}
    assert client.app[ADMISSION].pending_bytes == 0
    assert (await post(client, views("after", 1)))[0] == 200
    assert await score(client, redis, "refused0") is None
    assert await score(client, redis, "slow") == 1.0


async def test_a_body_declared_too_large_is_413_even_while_the_budget_is_held(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    client = await make_client(max_body_bytes=BUDGET, max_pending_bytes=BUDGET)
    upload = await budget_held(client, "slow")
    # A retry would never help this one: it is told so, not to come back in a second.
    response = await client.post(
        "/v1/events", data=b" " * (BUDGET + 1), headers={"Content-Type": JSON}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"
    assert (await upload.finish()).status == 200
