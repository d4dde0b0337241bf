"""The app as assembled: resources it owns and how they behave under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from ranker.api.appkeys import METRICS, REDIS, SETTINGS, STORE
from ranker.app import create_app
from ranker.config import Settings
from ranker.ingest.plan import FlushPlan
from ranker.lists.render import STALE_HEADER
from ranker.runtime.embedded import EmbeddedRedis, free_port
from ranker.store import writes as writes_module
from tests.conftest import AiohttpClient, Client, FakeClock


def test_create_app_does_no_io_and_needs_a_redis_url(
    make_settings: Callable[..., Settings],
) -> None:
    # Nothing listens at this URL; building the app must not notice.
    app = create_app(make_settings(redis_url="redis://127.0.0.1:1/0"))
    assert app[SETTINGS].redis_url == "redis://127.0.0.1:1/0"
    assert REDIS not in app
    with pytest.raises(ValueError, match="redis_url"):
        create_app(Settings())


def test_two_apps_keep_their_metrics_apart(make_settings: Callable[..., Settings]) -> None:
    first, second = create_app(make_settings()), create_app(make_settings())
    first[METRICS].events_accepted.labels(section="sports").inc()
    assert (
        second[METRICS].registry.get_sample_value(
            "ranker_events_accepted_total", {"section": "sports"}
        )
        == 0
    )


async def test_more_concurrent_requests_than_redis_connections_all_succeed(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> None:
    # Four connections for 300 concurrent readers and 20 writers: they wait their turn for a
    # connection rather than failing with 503.
    settings = make_settings(redis_max_connections=4)
    client = await aiohttp_client(
        create_app(settings, clock=clock), connector=aiohttp.TCPConnector(limit=0)
    )

    async def read() -> int:
        async with client.get("/v1/rankings/sports") as response:
            return response.status

    async def write(i: int) -> int:
        event = {"article_id": f"a{i}", "section": "sports"}
        async with client.post("/v1/events", json=[event]) as response:
            return response.status

    statuses = await asyncio.gather(*(read() for _ in range(300)), *(write(i) for i in range(20)))
    assert set(statuses) == {200}
    assert len((await client.app[STORE].top("sports", 100, clock.now)).items) == 20


async def test_pooled_connections_recover_after_redis_restarts(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A private server: this test stops and restarts it.
    first = EmbeddedRedis(tmp_path / "a", persist=False)
    first.start()
    port = first.port
    settings = make_settings(redis_url=first.url, redis_max_connections=8)
    client = await aiohttp_client(
        create_app(settings, clock=clock), connector=aiohttp.TCPConnector(limit=0)
    )

    async def burst() -> set[int]:
        async def read() -> int:
            async with client.get("/v1/rankings/sports") as response:
                return response.status

        return set(await asyncio.gather(*(read() for _ in range(40))))

    async def post() -> int:
        event = {"article_id": "a", "section": "sports"}
        async with client.post("/v1/events", json=event) as response:
            return response.status

    assert await burst() == {200}  # every pooled connection is now open
    assert await post() == 200
    first.stop()
    # As if Redis took longer than that to come back: the next flush checks its connection.
    monkeypatch.setattr(writes_module, "FLUSH_IDLE_CHECK_S", 0.0)
    with EmbeddedRedis(tmp_path / "b", persist=False, port=port):
        # Every pooled connection was closed by the old server; none may cost a request.
        assert await burst() == {200}
        assert await post() == 200
        assert await post() == 200


async def test_shutdown_stops_accepting_finishes_in_flight_requests_then_flushes(
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What SIGTERM sets off in `ranker serve`: aiohttp's runner cleanup.
    app = create_app(make_settings(), clock=clock)
    runner = web.AppRunner(app, shutdown_timeout=30)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    store = app[STORE]
    real_apply = store.apply
    entered, release = asyncio.Event(), asyncio.Event()

    async def held_apply(plan: FlushPlan, now: float, *, queue: bool = False) -> None:
        # Holds the first flush until the test lets it go: a request is in flight meanwhile.
        entered.set()
        await release.wait()
        await real_apply(plan, now, queue=queue)

    monkeypatch.setattr(store, "apply", held_apply)
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.ensure_future(
            session.post(
                f"http://127.0.0.1:{port}/v1/events",
                json=[{"article_id": "in-flight", "section": "sports"}],
            )
        )
        await entered.wait()
        stopping = asyncio.ensure_future(runner.cleanup())
        give_up = asyncio.get_running_loop().time() + 30
        while True:  # the listener closes first: new connections are refused
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionError:  # refused, or reset while the listener closes
                break
            writer.close()
            assert asyncio.get_running_loop().time() < give_up, "still accepting connections"
            await asyncio.sleep(0.01)
        assert not in_flight.done()
        release.set()
        response = await in_flight
        assert response.status == 200
        assert await response.json() == {"accepted": 1, "rejected": []}
        await stopping
    assert await redis.zscore(store.keys.scores("sports"), "in-flight") is not None


def redis_version_known(client: Client) -> bool:
    return any(
        sample.labels["redis_version"] != "unknown"
        for family in client.app[METRICS].registry.collect()
        if family.name == "ranker_build_info"
        for sample in family.samples
    )


@pytest.mark.parametrize(("policy", "warned"), [("volatile-lru", True), ("noeviction", False)])
async def test_a_redis_that_may_evict_keys_is_warned_of_at_start(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    policy: str,
    warned: bool,
) -> None:
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        admin = Redis.from_url(server.url)
        await admin.config_set("maxmemory-policy", policy)
        await admin.aclose()
        client = await aiohttp_client(create_app(Settings(redis_url=server.url)))
        # The policy is read right after the version, once Redis first answers.
        for _ in range(1000):
            if redis_version_known(client):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("maxmemory-policy" in m for m in messages) == warned
        await client.close()


async def test_a_replica_is_not_ready_until_redis_first_answers_and_stays_ready_after(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A Redis URL at which nothing listens yet, as after a typo in the ConfigMap.
    port = free_port()
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_s=0.5, refresh_interval_s=0.1
    )
    client = await aiohttp_client(create_app(settings, clock=FakeClock()))
    assert (await client.get("/healthz")).status == 200  # alive all the same
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert body["error"]["code"] == "redis_not_reached"
    assert "RANKER_REDIS_URL" in body["error"]["message"]
    assert any(f"127.0.0.1:{port}" in r.getMessage() for r in caplog.records)  # logged why

    server = EmbeddedRedis(tmp_path / "redis", persist=False, port=port)
    server.start()
    try:
        response = await client.get("/readyz")
        assert response.status == 200
        assert await response.json() == {"status": "ready", "redis": "up"}
        assert (await client.get("/v1/rankings/all")).status == 200
    finally:
        server.stop()
    # A later outage: still ready, serving the last good lists (marked stale), and saying so.
    with pytest.raises(RedisConnectionError):
        await client.app[STORE].ping()
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready", "redis": "unavailable"}
    ranking = await client.get("/v1/rankings/all")
    assert ranking.status == 200
    assert ranking.headers[STALE_HEADER] == "true"
