"""Helpers for tests that talk to the app over HTTP: posting events, reading lists and articles,
checking JSON errors."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import ClientResponse
from redis.asyncio import Redis

from ranker.config import Settings
from ranker.store.keys import Keys
from tests.conftest import Client, refreshed

JSON = "application/json"
NDJSON = "application/x-ndjson"
GOOD = orjson.dumps({"article_id": "good-1", "section": "sports"})
KOREAN_TITLE = "북한, 동해상으로 탄도미사일 발사… 합참 “추가 도발 경계”"


def bad(**fields: Any) -> bytes:
    """An event for article ``bad-1`` in ``national``; a field given as ``...`` is left out."""
    base: dict[str, Any] = {"article_id": "bad-1", "section": "national", **fields}
    return orjson.dumps({name: value for name, value in base.items() if value is not ...})


def mixed(bad_event: bytes) -> bytes:
    """A JSON array of the good event (index 0) and a bad one (index 1)."""
    return b"[" + GOOD + b"," + bad_event + b"]"


UNSUPPORTED = "unsupported_media_type"


async def _chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def post_events(
    client: Client, body: bytes, ct: str | None = JSON, chunked: bool = False
) -> ClientResponse:
    """POST a raw body; ``ct=None`` sends no Content-Type; ``chunked`` sends no Content-Length."""
    headers = {} if ct is None else {"Content-Type": ct}
    skip = ("Content-Type",) if ct is None else ()
    # BytesIO, not bytes: aiohttp warns about large raw bytes bodies. Its size is known, so it
    # still goes with a Content-Length.
    data = _chunks(body) if chunked else io.BytesIO(body)
    resp = await client.post("/v1/events", data=data, headers=headers, skip_auto_headers=skip)
    sent = resp.request_info.headers
    assert ("Content-Length" in sent, sent.get("Transfer-Encoding")) == (
        (False, "chunked") if chunked else (True, None)
    )
    return resp


async def ingest(client: Client, *events: dict[str, Any]) -> None:
    resp = await client.post("/v1/events", json=list(events))
    assert resp.status == 200
    assert await resp.json() == {"accepted": len(events), "rejected": []}


async def get_json(client: Client, path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def get_ranking(client: Client, path: str) -> Any:
    """A ranking as of now: the cache is brought up to date first, as its refresh would."""
    await refreshed(client)
    return await get_json(client, path)


async def assert_error(resp: ClientResponse, status: int, code: str) -> None:
    assert resp.status == status, await resp.text()
    assert resp.content_type == JSON
    body = await resp.json()
    message = body["error"]["message"]
    assert body == {"error": {"code": code, "message": message}}
    assert isinstance(message, str)
    assert message


async def all_lists(client: Client, settings: Settings) -> dict[str, list[dict[str, Any]]]:
    return {
        ranking: (await get_ranking(client, f"/v1/rankings/{ranking}?limit=100"))["items"]
        for ranking in settings.rankings
    }


def item(rank: int, article_id: str, score: float, **meta: Any) -> dict[str, Any]:
    """A list item as the JSON gives it: ``meta`` overrides the defaults (no metadata; the
    headline is the title, as these tests' titles carry no label)."""
    fields: dict[str, Any] = {"rank": rank, "article_id": article_id, "score": score}
    # Every list in these tests is from an interval with none recorded before it: all new.
    defaults = {
        "title": None,
        "label": None,
        "url": None,
        "section": None,
        "published_at": None,
        "movement": "new",
        "previous_rank": None,
    }
    derived = {"headline": meta.get("title")}
    return fields | defaults | derived | meta | {"fill": False, "pinned": False}


async def redis_keys(redis: Redis, key_prefix: str) -> set[str]:
    return {key async for key in redis.scan_iter(match=Keys(key_prefix).pattern())}


async def send_until_acknowledged(
    client: Client, events: list[dict[str, Any]], key: str, statuses: Counter[int]
) -> int:
    """POST a batch with its Idempotency-Key until it is answered 200, counting each answer's
    status in ``statuses`` (0: no answer); how many tries it took."""
    tries = 0
    while True:
        tries += 1
        try:
            response = await client.post(
                "/v1/events", json=events, headers={"Idempotency-Key": key}
            )
            await response.read()
            statuses[response.status] += 1
        except (aiohttp.ClientError, TimeoutError):
            statuses[0] += 1
        else:
            if response.status == 200:
                return tries
        await asyncio.sleep(0.05)  # Retry-After says 1 s; the tests have no time for that
