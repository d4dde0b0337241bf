"""Admission control for ingest: the budget of body bytes in progress, and per-client rates.

The rate tests pass the time in by hand; the HTTP tests hold a request open by streaming its
body slowly, so the budget is held the way a slow client holds it.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from ranker.api.appkeys import ADMISSION, STORE
from ranker.app import create_app
from ranker.config import Settings
from ranker.errors import Overloaded, RateLimited
from ranker.ingest.admission import (
    MAX_EDITORIAL_BODY_BYTES,
    MAX_TRACKED_CLIENTS,
    Admission,
    BodyBudget,
)
from ranker.metrics import Metrics
from tests.conftest import AiohttpClient, Client, FakeClock

BUDGET = 4096
JSON = "application/json"


def budget(client_max_bytes: int = BUDGET, metrics: Metrics | None = None) -> BodyBudget:
    settings = Settings(
        max_body_bytes=BUDGET, max_pending_bytes=BUDGET, client_max_pending_bytes=client_max_bytes
    )
    return Admission(settings, metrics if metrics is not None else Metrics()).writes


def rate_admission(events_per_s: float = 10.0, burst: int = 100) -> Admission:
    settings = Settings(
        client_events_per_s=events_per_s, client_burst_events=burst, max_batch_events=burst
    )
    return Admission(settings, Metrics())


COUNTED = "nothing was counted"


def test_one_request_alone_is_let_in_whatever_its_size() -> None:
    bodies = budget()
    with bodies.hold("c", 10 * BUDGET, COUNTED):
        assert bodies.pending_bytes == 10 * BUDGET
        with pytest.raises(Overloaded), bodies.hold("d", 1, COUNTED):
            pass


def test_requests_are_let_in_up_to_the_budget_and_refused_past_it() -> None:
    bodies = budget()
    with bodies.hold("c", BUDGET - 100, COUNTED), bodies.hold("d", 100, COUNTED):
        assert bodies.pending_bytes == BUDGET
        with pytest.raises(Overloaded, match="nothing was counted"), bodies.hold("e", 1, COUNTED):
            pass
        # A refusal takes nothing from the budget.
        assert bodies.pending_bytes == BUDGET


def test_a_reservation_is_given_back_when_its_block_ends_also_on_an_exception() -> None:
    bodies = budget()
    with bodies.hold("c", BUDGET, COUNTED):
        pass
    assert bodies.pending_bytes == 0
    with pytest.raises(ZeroDivisionError), bodies.hold("c", BUDGET, COUNTED):
        _ = 1 / 0
    assert bodies.pending_bytes == 0
    assert bodies.held_by("c") == 0
    with bodies.hold("c", BUDGET - 1, COUNTED), bodies.hold("d", 1, COUNTED):
        assert bodies.pending_bytes == BUDGET


def test_a_hold_grows_with_what_its_body_unpacks_to_until_the_budget_is_spent() -> None:
    bodies = budget()
    with bodies.hold("c", 100, COUNTED) as growing, bodies.hold("d", 100, COUNTED):
        growing.grow_to(BUDGET - 100)
        assert bodies.pending_bytes == BUDGET
        assert bodies.held_by("c") == BUDGET - 100
        with (
            pytest.raises(Overloaded, match="nothing was changed"),
            bodies.hold("e", 1, "nothing was changed"),
        ):
            pass
        # Past the budget: refused, and what it held it still holds until its block ends.
        with pytest.raises(Overloaded):
            growing.grow_to(BUDGET)
        assert bodies.pending_bytes == BUDGET
        growing.grow_to(50)  # it never shrinks
        assert growing.nbytes == BUDGET - 100
    assert bodies.pending_bytes == 0


def test_a_client_holds_no_more_than_its_share_while_others_are_let_in() -> None:
    bodies = budget(client_max_bytes=BUDGET // 4)
    with bodies.hold("hog", BUDGET // 4, COUNTED):
        with pytest.raises(Overloaded, match="one client may hold"), bodies.hold("hog", 1, COUNTED):
            pass
        with bodies.hold("other", BUDGET // 2, COUNTED):
            assert bodies.held_by("other") == BUDGET // 2
        assert bodies.held_by("hog") == BUDGET // 4
    # A client's request alone is let in past the share, as one alone is past the budget.
    with bodies.hold("hog", BUDGET // 2, COUNTED) as alone:
        alone.grow_to(BUDGET // 2 + 1)
        with pytest.raises(Overloaded, match="one client may hold"), bodies.hold("hog", 1, COUNTED):
            pass


def test_the_bytes_in_progress_are_a_gauge() -> None:
    metrics = Metrics()
    bodies = budget(metrics=metrics)

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("ranker_pending_ingest_bytes")

    assert gauge() == 0
    with bodies.hold("c", 1000, COUNTED) as hold:
        assert gauge() == 1000
        with bodies.hold("d", 24, COUNTED):
            assert gauge() == 1024
        assert gauge() == 1000
        hold.grow_to(2000)
        assert gauge() == 2000
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


class Upload:
    """A request sent over a socket of its own, all of it but its last ``held_back`` bytes: a
    request in progress, holding its body's share of the budget until :meth:`finish`."""

    def __init__(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader, rest: bytes):
        self._writer, self._reader, self._rest = writer, reader, rest

    @classmethod
    async def start(
        cls,
        client: Client,
        body: bytes,
        *,
        path: str = "/v1/events",
        method: str = "POST",
        headers: dict[str, str] | None = None,
        held_back: int = 1,
        chunked: bool = False,
    ) -> Upload:
        lines = [f"{method} {path} HTTP/1.1", "Host: ranker", f"Content-Type: {JSON}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
            sent, rest = f"{len(body):x}\r\n".encode() + body, b"\r\n0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(body)}")
            sent, rest = body[: len(body) - held_back], body[len(body) - held_back :]
        assert client.server.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + sent)
        await writer.drain()
        return cls(writer, reader, rest)

    async def finish(self) -> tuple[int, Any]:
        """Send the rest; the answer's status and JSON body."""
        self._writer.write(self._rest)
        await self._writer.drain()
        return await self.answer()

    async def answer(self) -> tuple[int, Any]:
        """The answer, once it comes; the connection is closed after it."""
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await self._reader.readexactly(length)
        self.close()
        return status, orjson.loads(body)

    def close(self) -> None:
        self._writer.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 20
    while not condition():
        assert loop.time() < give_up, f"never: {what}"
        await asyncio.sleep(0.01)


def padded(article_id: str, size: int) -> bytes:
    """A batch of one view, padded with spaces to ``size`` bytes."""
    data = orjson.dumps([{"article_id": article_id, "section": "sports"}])
    return data[:-1] + b" " * (size - len(data)) + b"]"


async def budget_held(client: Client, article_id: str) -> Upload:
    """An upload, once it holds the whole budget: a body of the budget's size, declared."""
    upload = await Upload.start(client, padded(article_id, BUDGET))
    await until(lambda: client.app[ADMISSION].pending_bytes == BUDGET, "the budget was taken")
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
    assert await upload.finish() == (200, {"accepted": 1, "rejected": []})
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
    assert (await upload.finish())[0] == 200


# Compressed bodies, article and editorial bodies, and one client's share


def gzipped(raw: bytes) -> bytes:
    return gzip.compress(raw, 9)


async def test_a_compressed_body_holds_the_budget_for_what_it_unpacks_to(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    size = 64 * 1024
    client = await make_client(max_body_bytes=size, max_pending_bytes=size)
    body = gzipped(padded("gz", size))
    assert len(body) < 1024
    # All but the gzip trailer: every byte of the batch is unpacked, the body is not complete.
    upload = await Upload.start(client, body, headers={"Content-Encoding": "gzip"}, held_back=8)
    await until(lambda: client.app[ADMISSION].pending_bytes == size, "it was unpacked")
    status, answer, _ = await post(client, views("refused", 1))
    assert (status, answer["error"]["code"]) == (503, "overloaded")
    assert await upload.finish() == (200, {"accepted": 1, "rejected": []})
    assert client.app[ADMISSION].pending_bytes == 0
    assert await score(client, redis, "gz") == 1.0
    assert await score(client, redis, "refused0") is None


async def test_a_compressed_body_that_unpacks_past_the_limit_is_413(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    client = await make_client(max_body_bytes=64 * 1024)
    bomb = gzipped(padded("bomb", 1024 * 1024))
    response = await client.post(
        "/v1/events", data=bomb, headers={"Content-Type": JSON, "Content-Encoding": "gzip"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"
    assert client.app[ADMISSION].pending_bytes == 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_gzip_and_deflate_bodies_are_counted(
    make_client: Callable[..., Any], redis: Redis, encoding: str
) -> None:
    client = await make_client()
    raw = orjson.dumps(views("z", 3))
    body = gzipped(raw) if encoding == "gzip" else zlib.compress(raw)
    response = await client.post(
        "/v1/events", data=body, headers={"Content-Type": JSON, "Content-Encoding": encoding}
    )
    assert (response.status, await response.json()) == (200, {"accepted": 3, "rejected": []})


async def test_another_content_encoding_is_415_and_a_broken_one_is_400(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    client = await make_client()
    raw = orjson.dumps(views("e", 1))
    response = await client.post(
        "/v1/events", data=raw, headers={"Content-Type": JSON, "Content-Encoding": "compress"}
    )
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_media_type"
    broken = b"\x1f\x8b" + b"\x00" * 40  # gzip's magic, then no known compression method
    response = await client.post(
        "/v1/events", data=broken, headers={"Content-Type": JSON, "Content-Encoding": "gzip"}
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"
    assert await score(client, redis, "e0") is None


async def test_stalled_chunked_uploads_hold_only_what_they_sent(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    # The review's reproduction: uploads of unknown length that send one chunk and stall.
    client = await make_client(max_body_bytes=BUDGET, max_pending_bytes=4 * BUDGET)
    stalled = [await Upload.start(client, b"[", chunked=True) for _ in range(16)]
    try:
        await until(lambda: client.app[ADMISSION].pending_bytes >= 16, "the uploads started")
        for n in range(5):
            assert (await post(client, views(f"legit{n}-", 1)))[0] == 200
    finally:
        for upload in stalled:
            upload.close()
    assert await score(client, redis, "legit4-0") == 1.0


HOG = "hog-token-0123456789abcdef"
OTHER = "other-token-0123456789abcdef"


async def test_one_client_cannot_hold_more_than_its_share_of_the_budget(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    client = await make_client(
        max_body_bytes=BUDGET,
        max_pending_bytes=4 * BUDGET,
        client_max_pending_bytes=2 * BUDGET,
        write_tokens=(HOG, OTHER),
    )

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    hogging = [
        await Upload.start(client, padded(f"hog{n}", BUDGET), headers=bearer(HOG)) for n in range(2)
    ]
    await until(lambda: client.app[ADMISSION].pending_bytes == 2 * BUDGET, "the hog held")
    refused = await Upload.start(client, padded("hog2", BUDGET), headers=bearer(HOG))
    status, answer = await refused.answer()
    assert (status, answer["error"]["code"]) == (503, "overloaded")
    assert "one client may hold" in answer["error"]["message"]
    # Another client still gets the rest of the budget, all of it.
    others = [
        await Upload.start(client, padded(f"other{n}", BUDGET), headers=bearer(OTHER))
        for n in range(2)
    ]
    for upload in others + hogging:
        assert (await upload.finish())[0] == 200
    assert await score(client, redis, "other1") == 1.0
    assert await score(client, redis, "hog2") is None


async def test_an_article_body_counts_against_the_write_budget(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    client = await make_client(max_body_bytes=BUDGET, max_pending_bytes=BUDGET)
    article = b'{"title": "Held"' + b" " * (BUDGET - 17) + b"}"
    assert len(article) == BUDGET
    upload = await Upload.start(client, article, path="/v1/articles/held", method="PUT")
    await until(lambda: client.app[ADMISSION].pending_bytes == BUDGET, "the PUT held its body")
    status, answer, _ = await post(client, views("refused", 1))
    assert (status, answer["error"]["code"]) == (503, "overloaded")
    events = await budget_held_after(upload, client)
    response = await client.put("/v1/articles/late", json={"title": "Late"})
    assert response.status == 503
    body = await response.json()
    assert body["error"]["code"] == "overloaded"
    assert "nothing was changed" in body["error"]["message"]
    assert (await events.finish())[0] == 200


async def budget_held_after(upload: Upload, client: Client) -> Upload:
    """Finish ``upload`` (a 200), then hold the budget with an upload of events."""
    assert (await upload.finish())[0] == 200
    return await budget_held(client, "events")


async def test_an_editorial_body_has_a_small_limit_and_a_budget_of_its_own(
    make_client: Callable[..., Any], redis: Redis
) -> None:
    client = await make_client(max_body_bytes=BUDGET * 16, max_pending_bytes=BUDGET * 16)
    await client.put("/v1/articles/story", json={"title": "A story"})
    large = b'{"reason": "x"' + b" " * (MAX_EDITORIAL_BODY_BYTES) + b"}"
    response = await client.put(
        "/v1/editorial/hides/story", data=large, headers={"Content-Type": JSON}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"
    # An ingest flood that holds the write budget does not stand in an editor's way.
    upload = await Upload.start(client, padded("flood", BUDGET * 16))
    await until(lambda: client.app[ADMISSION].pending_bytes == BUDGET * 16, "the budget was held")
    response = await client.put("/v1/editorial/hides/story", json={"reason": "legal"})
    assert response.status == 200
    assert (await upload.finish())[0] == 200
