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

from ranker.articles import check_article_id, parse_article_update
from ranker.auth import client_identity
from ranker.config import Settings
from ranker.editorial import cms_editor, cms_hide
from ranker.errors import (
    ArticleNotFound,
    NotReady,
    RankerError,
    StoreUnavailable,
)
from ranker.ingest.dedup import DUPLICATE_READER, batch_token, count_once
from ranker.ingest.idempotency import (
    HEADER,
    REPLAYED_HEADER,
    idempotency_key,
    replayed_answer,
)
from ranker.ingest.parse import ParsedEvents, Rejection, parse_events_yielding
from ranker.preconditions import check_declared_length, declared_size, read_body, require_redis
from ranker.responses import json_response
from ranker.state import ADMISSION, CACHE, CLOCK, INGESTOR, METRICS, METRICS_DIR, SETTINGS, STORE
from ranker.store import Article, RankingStore
from ranker.worker_metrics import merged_exposition

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
        with admission.writes.hold(client, declared_size(request), "nothing was counted") as hold:
            body = await read_body(request, settings.max_body_bytes, hold)
            key = idempotency_key(
                request.headers.get(HEADER),
                request.content_type,
                body,
                # Each write token's keys are its own; with none, there is one writer.
                writer=client if tokens_configured else "",
            )

            async def reparse(parsed_at: float) -> list[Rejection]:
                # A retry's body is the first's, taken then: its size is not checked again.
                again = await parse_events_yielding(
                    body, request.content_type, None, now=parsed_at, sections=settings.section_set
                )
                admission.charge(client, _events(again), time.monotonic())
                return again.rejected

            if key is not None:
                claimed, record = await _first_answer(app[STORE], key.token)
                key.check(claimed)
                if record is not None:
                    first_answer = await replayed_answer(record, reparse)
                    metrics.batches_replayed.labels(found="answer").inc()
                    return _events_response(first_answer, replayed=True)
            parsed_at = app[CLOCK]()
            parsed = await parse_events_yielding(
                body,
                request.content_type,
                request.charset,
                now=parsed_at,
                sections=settings.section_set,
                max_events=settings.max_batch_events,
            )
            excluded = Counter(exclusion.reason for exclusion in parsed.excluded)
            admission.charge(client, _events(parsed), time.monotonic())
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
            kept = None if key is None else (key, key.record(answer, parsed_at))
            replayed = await app[INGESTOR].submit(views, parsed.metadata, kept)
            if replayed and key is not None:
                # A retry that came before its first try's answer was kept, or in the same
                # flush: answered as the first try was (its answer is kept by now; the key
                # was first sent with this body, or the flush would have refused it).
                try:
                    _, record = await app[STORE].idempotency_record(key.token)
                except (RedisConnectionError, RedisTimeoutError):
                    record = None  # the views are applied: this request's own answer is true
                if record is not None:
                    return _events_response(await replayed_answer(record, reparse), replayed=True)
    except RankerError as exc:
        metrics.batches_rejected.labels(reason=exc.code).inc()
        raise
    for reason, count in Counter(rejection.code for rejection in parsed.rejected).items():
        metrics.events_rejected.labels(reason=reason).inc(count)
    for reason, count in excluded.items():
        metrics.events_excluded.labels(reason=reason).inc(count)
    return _events_response(orjson.dumps(answer), replayed=replayed)


def _events(parsed: ParsedEvents) -> int:
    return len(parsed.views) + len(parsed.rejected) + len(parsed.excluded)


async def _first_answer(store: RankingStore, token: str) -> tuple[str | None, str | None]:
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
    """Set article metadata: the fields sent are set (null clears one), the others are kept.
    ``hidden`` true or false hides or unhides, for editors only; null leaves it as it is."""
    app = request.app
    settings = app[SETTINGS]
    article_id = check_article_id(request.match_info["article_id"])
    require_redis(request, "nothing was changed")
    changes = await _read_article_update(request, settings)
    store = app[STORE]
    now = app[CLOCK]()
    # The CMS's hide is an editorial change like any other, refused before anything is written.
    # Null is no change: a CMS that sends every field with each update ends no editor's hide.
    hidden = changes.pop("hidden", None)
    editor = None if hidden is None else cms_editor(request)
    if changes:
        await store.put_article(article_id, changes)
    # After the metadata: an article this update makes known may be hidden in the same step.
    hidden_changed = editor is not None and await cms_hide(
        request, article_id, bool(hidden), editor, now
    )
    if hidden_changed or changes.keys() & {"title", "url", "section", "published_at"}:
        # The editor who hid, retitled, moved or re-dated a story sees it in this replica's lists
        # at once (a move or a date can change which articles fill a short list);
        # other replicas within one refresh interval. The change is made by now: a failed
        # refresh must not report it failed (the next one picks it up).
        # A new title or URL shows only in the lists that list the article: only those are
        # read again, not every list kept.
        retitled = None if hidden_changed or changes.keys() - {"title", "url"} else article_id
        try:
            await app[CACHE].refresh(listing=retitled)
        except RedisError as exc:
            log.warning("lists not refreshed after an article update: %s", exc)
    article = await store.get_article(article_id, now)
    # Clearing every field of an article with no views leaves nothing stored: say so plainly.
    return json_response(article or Article.blank(article_id))


async def _read_article_update(request: web.Request, settings: Settings) -> dict[str, Any]:
    """The changes a PUT asks for. Its body counts against the write budget, as events' do,
    while it is read and parsed; the changes parsed from it are small."""
    app = request.app
    client = client_identity(request, tokens_configured=bool(settings.write_tokens))
    budget = app[ADMISSION].writes
    with budget.hold(client, declared_size(request), "nothing was changed") as hold:
        body = await read_body(request, settings.max_body_bytes, hold)
        return parse_article_update(
            body, request.content_type, request.charset, settings.sections, now=app[CLOCK]()
        )


async def healthz(request: web.Request) -> web.Response:
    """The process is alive; says nothing of Redis."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready once Redis has answered since the process started (503 ``redis_not_reached``
    before: a wrong ``RANKER_REDIS_URL`` keeps a new replica out of service), and from then on
    for as long as the process runs: through a later Redis outage it serves its last good lists
    (marked stale), as every replica does, so none goes unready then. ``redis`` says what
    Redis is doing now: ``up``, ``unavailable``, or ``refuses_writes`` (it answers reads; the
    replica stays ready and serves lists, while writes are refused)."""
    store = request.app[STORE]
    if not store.reached:
        # Asked, not only read from the background check: ready as soon as Redis answers.
        try:
            await store.ping()
        except RedisError as exc:
            raise NotReady(
                f"Redis has not answered since ranker started ({type(exc).__name__}); check "
                "RANKER_REDIS_URL and the logs"
            ) from None
    if not store.available:
        redis = "unavailable"
    elif not store.writable:
        redis = "refuses_writes"  # ready all the same: lists are still served
    else:
        redis = "up"
    return json_response({"status": "ready", "redis": redis})


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
