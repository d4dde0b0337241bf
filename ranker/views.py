"""HTTP handlers for ingest, article metadata and operations (the lists are `rankings`, the
editorial controls `editorial`). Each reads what it needs from typed app state and delegates."""

from __future__ import annotations

import logging
import time
from collections import Counter
from importlib.resources import files
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .articles import check_article_id, parse_article_update
from .auth import client_identity
from .dedup import DUPLICATE_READER, batch_token, count_once
from .editorial import cms_hide
from .errors import (
    ArticleNotFound,
    RankerError,
    StoreUnavailable,
)
from .events import parse_events_yielding
from .idempotency import HEADER, REPLAYED_HEADER, idempotency_key
from .preconditions import check_declared_length, read_body, require_redis
from .responses import json_response
from .state import ADMISSION, CACHE, CLOCK, INGESTOR, METRICS, METRICS_DIR, SETTINGS, STORE
from .store import Article, RankingStore
from .worker_metrics import merged_exposition

log = logging.getLogger(__name__)

OPENAPI_DOCUMENT = files("ranker").joinpath("openapi.json").read_bytes()
"""The OpenAPI description of the API, shipped in the package and served as it is."""


async def post_events(request: web.Request) -> web.Response:
    """Count a batch of page views. A 200 means every accepted view is applied in Redis.

    With an ``Idempotency-Key``, a retry of a batch already counted is answered as the first
    time and counted no more; without one, a retry after a failure may count views twice.
    """
    app = request.app
    settings, metrics, admission = app[SETTINGS], app[METRICS], app[ADMISSION]
    tokens_configured = bool(settings.write_tokens)
    client = client_identity(request, tokens_configured=tokens_configured)
    try:
        admission.check_rate(client, time.monotonic())
        # Refused before the body is read: Redis is down, and waiting would not help.
        require_redis(request, "nothing was counted")
        # Too large is said first: unlike a full budget, it is no reason to come back soon.
        check_declared_length(request, settings.max_body_bytes)
        app[INGESTOR].check_room()
        with admission.reserve(request.content_length or settings.max_body_bytes):
            body = await read_body(request, settings.max_body_bytes)
            key = idempotency_key(
                request.headers.get(HEADER),
                request.content_type,
                body,
                # Each write token's keys are its own; with none, there is one writer.
                writer=client if tokens_configured else "",
            )
            if key is not None:
                record = await _first_answer(app[STORE], key.token)
                if record is not None:
                    first_answer = key.replay(record)
                    metrics.batches_replayed.labels(found="answer").inc()
                    return _events_response(first_answer, replayed=True)
            parsed = await parse_events_yielding(
                body,
                request.content_type,
                request.charset,
                now=app[CLOCK](),
                sections=settings.section_set,
                max_events=settings.max_batch_events,
            )
            excluded = Counter(exclusion.reason for exclusion in parsed.excluded)
            events = len(parsed.views) + len(parsed.rejected) + len(parsed.excluded)
            admission.charge(client, events, time.monotonic())
            views = parsed.views
            if parsed.visitors and settings.dedup_window_s:
                # After every check that could refuse the batch: marks set for a refused
                # batch would leave its resent views out.
                token = batch_token(None if key is None else key.token)
                views, repeats = await count_once(app[STORE], views, parsed.visitors, token)
                if repeats:
                    excluded[DUPLICATE_READER] = repeats
            answer: dict[str, Any] = {
                "accepted": len(views),
                "rejected": [
                    {"index": r.index, "code": r.code, "message": r.message}
                    for r in parsed.rejected
                ],
            }
            if excluded:
                # Only when a bot's events or a reader's repeats were left out.
                answer["excluded"] = dict(sorted(excluded.items()))
            kept = None if key is None else (key.token, key.record(answer))
            replayed = await app[INGESTOR].submit(views, parsed.metadata, kept)
            if replayed and key is not None:
                # A retry that came before its first try's answer was kept, or in the same
                # flush: answered as the first try was (its answer is kept by now), or
                # refused if that one sent another body.
                try:
                    record = await app[STORE].idempotency_record(key.token)
                except (RedisConnectionError, RedisTimeoutError):
                    record = None  # the views are applied: this request's own answer is true
                if record is not None:
                    return _events_response(key.replay(record), replayed=True)
    except RankerError as exc:
        metrics.batches_rejected.labels(reason=exc.code).inc()
        raise
    for reason, count in Counter(rejection.code for rejection in parsed.rejected).items():
        metrics.events_rejected.labels(reason=reason).inc(count)
    for reason, count in excluded.items():
        metrics.events_excluded.labels(reason=reason).inc(count)
    return _events_response(orjson.dumps(answer), replayed=replayed)


async def _first_answer(store: RankingStore, token: str) -> str | None:
    try:
        return await store.idempotency_record(token)
    except (RedisConnectionError, RedisTimeoutError):
        raise StoreUnavailable("Redis did not answer; nothing was counted") from None


def _events_response(body: bytes, *, replayed: bool) -> web.Response:
    response = web.Response(body=body, content_type="application/json")
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


async def get_article(request: web.Request) -> web.Response:
    """An article's metadata and its current score in every ranking that holds it."""
    app = request.app
    article_id = check_article_id(request.match_info["article_id"])
    require_redis(request, "try again shortly")
    article = await app[STORE].get_article(article_id, app[CLOCK]())
    if article is None:
        raise ArticleNotFound(f"no metadata or views for article {article_id!r}")
    return json_response(article)


async def put_article(request: web.Request) -> web.Response:
    """Set article metadata: the fields sent are set (null clears one), the others are kept."""
    app = request.app
    settings = app[SETTINGS]
    article_id = check_article_id(request.match_info["article_id"])
    require_redis(request, "nothing was changed")
    body = await read_body(request, settings.max_body_bytes)
    changes = parse_article_update(
        body, request.content_type, request.charset, settings.sections, now=app[CLOCK]()
    )
    store = app[STORE]
    now = app[CLOCK]()
    # The CMS's hide is an editorial change like any other; null unhides, as false does.
    hidden_changed = "hidden" in changes and await cms_hide(
        request, article_id, bool(changes.pop("hidden")), now
    )
    if changes:
        await store.put_article(article_id, changes)
    if hidden_changed or changes.keys() & {"title", "url", "section", "published_at"}:
        # The editor who hid, retitled, moved or re-dated a story sees it in this replica's lists
        # at once (a move or a date can change which articles fill a short list);
        # other replicas within one refresh interval. The change is made by now: a failed
        # refresh must not report it failed (the next one picks it up).
        try:
            await app[CACHE].refresh()
        except RedisError as exc:
            log.warning("lists not refreshed after an article update: %s", exc)
    article = await store.get_article(article_id, now)
    # Clearing every field of an article with no views leaves nothing stored: say so plainly.
    return json_response(article or Article.blank(article_id))


async def healthz(request: web.Request) -> web.Response:
    """The process is alive; says nothing of Redis."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: Redis answers. 503 at once while Redis is known to be down (the
    background check finds it back within a second of its return)."""
    require_redis(request, "not ready")
    await request.app[STORE].ping()
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; with several workers, all of theirs merged."""
    app = request.app
    registry = app[METRICS].registry
    if METRICS_DIR in app:
        body = merged_exposition(registry, app[METRICS_DIR])
    else:
        body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API."""
    return web.Response(body=OPENAPI_DOCUMENT, content_type="application/json")
