"""Who may call what: bearer tokens and the loopback default for writes, public reads, CORS."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestServer, make_mocked_request
from redis.asyncio import Redis

from ranker.api.auth import Access, WriteGuard, client_identity, is_loopback
from ranker.api.routes import ROUTES
from ranker.app import create_app
from ranker.config import Settings
from ranker.errors import Forbidden
from tests.conftest import AiohttpClient, Client, FakeClock, refreshed
from tests.support.http import assert_error, get_ranking, redis_keys
from tests.test_cli import serving

TOKEN = "test-write-token-0123456789abcdef"
OTHER_TOKEN = "rotated-write-token-9876543210zyx"
WRONG_TOKEN = "wrong-write-token-fedcba9876543210"
EVENT = orjson.dumps({"article_id": "a-1", "section": "sports"})
JSON = {"Content-Type": "application/json"}
ORIGIN = "https://www.news.example"
READ_PATHS = ("/v1/rankings/all", "/v1/rankings/all?limit=3", "/v1/articles/a-1")


def bearer(token: str) -> dict[str, str]:
    return {**JSON, "Authorization": f"Bearer {token}"}


@pytest.fixture
async def guarded(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    clock: FakeClock,
    redis: Redis,
) -> Client:
    """A client of an app with two write tokens configured."""
    settings = make_settings(write_tokens=(TOKEN, OTHER_TOKEN))
    return await aiohttp_client(create_app(settings, clock=clock))


async def cors_client(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], *origins: str
) -> Client:
    client = await aiohttp_client(create_app(make_settings(cors_origins=origins)))
    resp = await client.post("/v1/events", data=EVENT, headers=JSON)
    assert resp.status == 200
    await refreshed(client)
    return client


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(JSON, id="missing"),
        pytest.param(bearer(WRONG_TOKEN), id="wrong"),
        pytest.param(bearer(TOKEN[:-1]), id="prefix-of-a-token"),
        pytest.param(bearer(TOKEN + "0"), id="token-plus-one"),
        pytest.param({**JSON, "Authorization": TOKEN}, id="no-scheme"),
        pytest.param({**JSON, "Authorization": f"Basic {TOKEN}"}, id="basic-scheme"),
        pytest.param({**JSON, "Authorization": "Bearer "}, id="empty-token"),
        pytest.param({**JSON, "Authorization": f"Bearer {TOKEN},{OTHER_TOKEN}"}, id="both-at-once"),
    ],
)
async def test_a_write_without_a_valid_token_is_401_and_writes_nothing(
    guarded: Client, redis: Redis, key_prefix: str, headers: dict[str, str]
) -> None:
    resp = await guarded.post("/v1/events", data=EVENT, headers=headers)
    await assert_error(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="ranker"'
    resp = await guarded.put("/v1/articles/a-1", data=b'{"title": "T"}', headers=headers)
    await assert_error(resp, 401, "unauthorized")
    assert await redis_keys(redis, key_prefix) == set()


@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN])
async def test_every_configured_token_may_write(guarded: Client, token: str) -> None:
    resp = await guarded.post("/v1/events", data=EVENT, headers=bearer(token))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["accepted"] == 1
    resp = await guarded.put("/v1/articles/a-1", data=b'{"title": "T"}', headers=bearer(token))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["title"] == "T"


async def test_the_scheme_is_case_insensitive(guarded: Client) -> None:
    headers = {**JSON, "Authorization": f"bearer  {TOKEN}"}
    resp = await guarded.post("/v1/events", data=EVENT, headers=headers)
    assert resp.status == 200, await resp.text()


async def test_reads_stay_public_with_tokens_configured(guarded: Client) -> None:
    resp = await guarded.post("/v1/events", data=EVENT, headers=bearer(TOKEN))
    assert resp.status == 200
    await refreshed(guarded)
    items = (await get_ranking(guarded, "/v1/rankings/all"))["items"]
    assert [item["article_id"] for item in items] == ["a-1"]
    for path in ("/v1/articles/a-1", "/healthz", "/readyz", "/metrics"):
        resp = await guarded.get(path)
        assert resp.status == 200, path


def test_every_route_that_changes_anything_is_a_write_or_editorial_route() -> None:
    for route in ROUTES:
        if route.method not in ("GET", "HEAD"):
            assert route.access in (Access.WRITE, Access.EDIT, Access.WRITE_OR_EDIT), route
        if route.path.startswith("/v1/editorial"):
            # The audit log and the hides in force are the newsroom's, not the public's.
            assert route.access is Access.EDIT, route


# ---------------------------------------------------------------------------------------------
# No tokens: loopback only
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.254.3.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.2", False),
        ("10.0.0.1", False),
        ("::ffff:192.0.2.2", False),
        ("fd00::2", False),
        ("0.0.0.0", False),
        ("", False),
        ("localhost", False),
        (None, False),
    ],
)
def test_is_loopback(remote: str | None, loopback: bool) -> None:
    assert is_loopback(remote) is loopback


async def test_loopback_clients_may_write_when_no_token_is_configured(client: Client) -> None:
    resp = await client.post("/v1/events", data=EVENT, headers=JSON)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["accepted"] == 1


@pytest.mark.parametrize(
    "header",
    # X-Real-IP alone is what nginx's common `proxy_set_header X-Real-IP $remote_addr` sends.
    ["X-Forwarded-For", "Forwarded", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "Via"],
)
async def test_a_loopback_request_through_a_proxy_is_refused(
    client: Client, redis: Redis, key_prefix: str, header: str
) -> None:
    headers = {**JSON, header: "203.0.113.9"}
    resp = await client.post("/v1/events", data=EVENT, headers=headers)
    await assert_error(resp, 403, "forbidden")
    message = (await resp.json())["error"]["message"]
    assert "RANKER_WRITE_TOKENS" in message
    assert header in message
    assert await redis_keys(redis, key_prefix) == set()


def local_address() -> str | None:
    """An address of this host that is not loopback (where its default route leaves), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # UDP: sends nothing, only picks a route
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if is_loopback(address) else address


@pytest.fixture
def non_loopback() -> str:
    address = local_address()
    if address is None:
        pytest.skip("this host has no address but loopback")
    return address


async def test_a_client_elsewhere_is_refused_until_tokens_are_set(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    redis: Redis,
    key_prefix: str,
    non_loopback: str,
) -> None:
    # A real connection from a non-loopback address: the server listens on the host's own
    # address, so the client's source address is that address too.
    open_app = create_app(make_settings())
    client = await aiohttp_client(TestServer(open_app, host=non_loopback))
    resp = await client.post("/v1/events", data=EVENT, headers=JSON)
    await assert_error(resp, 403, "forbidden")
    assert "RANKER_WRITE_TOKENS" in (await resp.json())["error"]["message"]
    resp = await client.put("/v1/articles/a-1", data=b'{"title": "T"}', headers=JSON)
    await assert_error(resp, 403, "forbidden")
    assert await redis_keys(redis, key_prefix) == set()
    assert (await client.get("/v1/rankings/all")).status == 200

    token_app = create_app(make_settings(write_tokens=(TOKEN,)))
    client = await aiohttp_client(TestServer(token_app, host=non_loopback))
    resp = await client.post("/v1/events", data=EVENT, headers=bearer(TOKEN))
    assert resp.status == 200, await resp.text()


def test_a_request_with_no_peer_address_is_not_local() -> None:
    transport = mock.Mock()
    transport.get_extra_info.return_value = None
    request = make_mocked_request("POST", "/v1/events", transport=transport)
    assert request.remote is None
    with pytest.raises(Forbidden):
        WriteGuard(()).check(request)


# ---------------------------------------------------------------------------------------------
# Tokens stay secret
# ---------------------------------------------------------------------------------------------


def test_the_guard_shows_no_token() -> None:
    guard = WriteGuard((TOKEN, OTHER_TOKEN))
    assert TOKEN not in repr(guard)
    assert TOKEN not in str(vars(guard))


def _post(url: str, token: str | None) -> int:
    headers = JSON if token is None else bearer(token)
    request = urllib.request.Request(url, data=EVENT, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
            body = response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    assert TOKEN.encode() not in body
    assert WRONG_TOKEN.encode() not in body
    return status


def test_tokens_are_never_logged(
    tmp_path: Path, redis_url: str, key_prefix: str, redis: Redis
) -> None:
    output: list[str] = []
    with serving(
        tmp_path / "data",
        output,
        RANKER_REDIS_URL=redis_url,
        RANKER_KEY_PREFIX=key_prefix,
        RANKER_WRITE_TOKENS=f"{TOKEN},{OTHER_TOKEN}",
        RANKER_ACCESS_LOG="true",
        RANKER_LOG_LEVEL="DEBUG",
    ) as base:
        assert _post(f"{base}/v1/events", WRONG_TOKEN) == 401
        assert _post(f"{base}/v1/events", None) == 401
        assert _post(f"{base}/v1/events", TOKEN) == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
    (log,) = output
    # The requests were logged (so the test looks at the lines a token could be in) ...
    assert log.count('"POST /v1/events 401"') == 2
    assert log.count('"POST /v1/events 200"') == 1
    # ... and no token is in them, nor in the metrics.
    for secret in (TOKEN, OTHER_TOKEN, WRONG_TOKEN):
        assert secret not in log
        assert secret not in metrics


# ---------------------------------------------------------------------------------------------
# CORS
# ---------------------------------------------------------------------------------------------


def vary(response: ClientResponse) -> list[str]:
    """What an answer varies by, over all its Vary headers (lists also vary by
    Accept-Encoding, whatever CORS adds)."""
    return [
        name.strip() for value in response.headers.getall("Vary", []) for name in value.split(",")
    ]


async def test_no_cors_headers_unless_origins_are_configured(client: Client) -> None:
    resp = await client.get("/v1/rankings/all", headers={"Origin": ORIGIN})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Origin" not in vary(resp)
    resp = await client.options("/v1/rankings/all", headers={"Origin": ORIGIN})
    await assert_error(resp, 405, "method_not_allowed")


async def test_an_allowed_origin_may_read(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], redis: Redis
) -> None:
    client = await cors_client(aiohttp_client, make_settings, "https://other.example", ORIGIN)
    for path in (*READ_PATHS, "/v1/rankings/all"):  # the last one from the cache's fast path
        for method in ("GET", "HEAD"):
            resp = await client.request(method, path, headers={"Origin": ORIGIN})
            assert resp.status == 200, (method, path)
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN, (method, path)
            assert "Origin" in vary(resp), (method, path)
            assert "ETag" in resp.headers["Access-Control-Expose-Headers"]
    etag = resp.headers["ETag"]
    resp = await client.get("/v1/rankings/all", headers={"Origin": ORIGIN, "If-None-Match": etag})
    assert resp.status == 304
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    resp = await client.get("/v1/rankings/weather", headers={"Origin": ORIGIN})
    await assert_error(resp, 404, "unknown_section")
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_other_origins_get_no_allow_origin_but_vary(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], redis: Redis
) -> None:
    client = await cors_client(aiohttp_client, make_settings, ORIGIN)
    for origin in ("https://evil.example", "null", ORIGIN + ".evil.example", None):
        headers = {} if origin is None else {"Origin": origin}
        for path in READ_PATHS:
            resp = await client.get(path, headers=headers)
            assert resp.status == 200
            assert "Access-Control-Allow-Origin" not in resp.headers, (origin, path)
            # A shared cache must not hand this answer to a browser from ORIGIN.
            assert "Origin" in vary(resp), (origin, path)


async def test_any_origin(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], redis: Redis
) -> None:
    client = await cors_client(aiohttp_client, make_settings, "*")
    for headers in ({"Origin": "https://anywhere.example"}, {}):
        for path in READ_PATHS:
            resp = await client.get(path, headers=headers)
            assert resp.headers["Access-Control-Allow-Origin"] == "*", (headers, path)
            assert "Origin" not in vary(resp)


async def test_writes_and_ops_routes_get_no_cors(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], redis: Redis
) -> None:
    client = await cors_client(aiohttp_client, make_settings, ORIGIN)
    origin = {"Origin": ORIGIN}
    resp = await client.post("/v1/events", data=EVENT, headers={**JSON, **origin})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.put("/v1/articles/a-1", data=b'{"title": "T"}', headers={**JSON, **origin})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    for path in ("/healthz", "/readyz", "/metrics"):
        resp = await client.get(path, headers=origin)
        assert "Access-Control-Allow-Origin" not in resp.headers, path
    resp = await client.options("/v1/events", headers=origin)
    await assert_error(resp, 405, "method_not_allowed")


async def test_preflight_on_read_paths(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], redis: Redis
) -> None:
    client = await cors_client(aiohttp_client, make_settings, ORIGIN)
    asks = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match",
    }
    for path in ("/v1/rankings/all", "/v1/rankings/sports", "/v1/articles/a-1"):
        resp = await client.options(path, headers=asks)
        assert resp.status == 204, path
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert resp.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
        assert resp.headers["Access-Control-Allow-Headers"] == "If-None-Match"
        assert int(resp.headers["Access-Control-Max-Age"]) > 0
        assert resp.headers["Vary"] == "Origin"
    # A browser asking to PUT metadata, or a page from another origin, is told nothing.
    refused = [
        ("/v1/articles/a-1", {**asks, "Access-Control-Request-Method": "PUT"}),
        ("/v1/rankings/all", {**asks, "Origin": "https://evil.example"}),
    ]
    for path, headers in refused:
        resp = await client.options(path, headers=headers)
        assert resp.status == 204
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert "Access-Control-Allow-Methods" not in resp.headers
    resp = await client.delete("/v1/rankings/all")
    await assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_one_token_is_one_client_however_its_header_is_spelled() -> None:
    spellings = ["Bearer secret-token-0123456789", "bearer  secret-token-0123456789 "]
    identities = {
        client_identity(
            make_mocked_request("POST", "/v1/events", headers={"Authorization": h}),
            tokens_configured=True,
        )
        for h in spellings
    }
    assert len(identities) == 1
    (identity,) = identities
    assert "secret-token" not in identity
    other = make_mocked_request(
        "POST", "/v1/events", headers={"Authorization": "Bearer other-token-0123456789"}
    )
    assert client_identity(other, tokens_configured=True) != identity
    # With no tokens, the header counts for nothing: the address is the client.
    assert client_identity(other, tokens_configured=False).startswith("address:")
