"""The HTTP client the commands share: one aiohttp session against a ranker, writes with a
bearer token, event batches gzipped and retried (with their ``Idempotency-Key``) while the
service asks for it."""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import orjson

RETRIED_STATUSES = frozenset({429, 502, 503, 504})
"""Answers a batch is sent again after: the service (or a proxy) asks to come back later."""

MAX_ATTEMPTS = 8
GZIP_ABOVE_BYTES = 8192
"""Batches larger than this are sent gzipped, as an analytics pipeline sends them."""


class CommandError(Exception):
    """What stops a command, said for the person who ran it."""


@dataclass
class EventsAnswer:
    """What ranker said of one batch."""

    accepted: int
    rejected: list[dict[str, Any]] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)


class RankerClient:
    """A session against the ranker at ``base_url``; use it as an async context manager."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RankerClient:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("RankerClient is used outside its async with block")
        return self._session

    async def post_events(
        self, events: list[dict[str, Any]], key: str | None = None
    ) -> EventsAnswer:
        """Send one batch; retried while ranker answers 429 or 503 (after its Retry-After)
        or cannot be reached, with the same ``Idempotency-Key`` so nothing counts twice.
        Raises :class:`CommandError` for an answer that retrying cannot change (a 4xx)."""
        body = orjson.dumps(events)
        headers = {"Content-Type": "application/json"}
        if len(body) > GZIP_ABOVE_BYTES:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        if key is not None:
            headers["Idempotency-Key"] = key
        for attempt in range(MAX_ATTEMPTS):
            wait = await self._try_post(body, headers)
            if isinstance(wait, EventsAnswer):
                return wait
            await asyncio.sleep(min(wait, 0.25 * 2**attempt, 30.0))
        raise CommandError(f"{self.base_url} did not take a batch after {MAX_ATTEMPTS} tries")

    async def _try_post(self, body: bytes, headers: dict[str, str]) -> EventsAnswer | float:
        """The answer, or how long to wait before the next try."""
        try:
            async with self.session.post(
                f"{self.base_url}/v1/events", data=body, headers=headers
            ) as response:
                answer = await response.read()
                if response.status == 200:
                    data = orjson.loads(answer)
                    return EventsAnswer(
                        data["accepted"], data.get("rejected", []), data.get("excluded", {})
                    )
                if response.status in RETRIED_STATUSES:
                    return float(response.headers.get("Retry-After", "1") or 1)
                raise CommandError(f"POST /v1/events: {response.status} {_error(answer)}")
        except (aiohttp.ClientConnectionError, TimeoutError):
            return 1.0

    async def put_article(self, article_id: str, metadata: dict[str, Any]) -> None:
        """Set an article's metadata, as a CMS does."""
        async with self.session.put(
            f"{self.base_url}/v1/articles/{article_id}", json=metadata
        ) as response:
            if response.status != 200:
                raise CommandError(
                    f"PUT /v1/articles/{article_id}: {response.status} "
                    f"{_error(await response.read())}"
                )

    async def get_json(self, path: str, etag: str | None = None) -> tuple[int, str | None, Any]:
        """GET ``path``: its status, ETag and JSON body (None for a 304)."""
        headers = {"If-None-Match": etag} if etag else {}
        try:
            async with self.session.get(self.base_url + path, headers=headers) as response:
                if response.status == 304:
                    return 304, etag, None
                body = await response.read()
                if response.status != 200:
                    raise CommandError(f"GET {path}: {response.status} {_error(body)}")
                return 200, response.headers.get("ETag"), orjson.loads(body)
        except aiohttp.ClientConnectionError as exc:
            raise CommandError(f"cannot reach {self.base_url}: {exc}") from None

    async def sections(self) -> list[str]:
        """The sections the service ranks (every ranking but the site-wide one)."""
        _, _, catalog = await self.get_json("/v1/rankings")
        return [r["name"] for r in catalog["rankings"] if r["name"] != "all"]


def _error(body: bytes) -> str:
    """The message of an error answer, or its first bytes."""
    try:
        error = orjson.loads(body)["error"]
        return f"{error['code']}: {error['message']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")
