"""``POST /v1/events``: page views in, parsed, checked and handed to the flusher; the batch's
answer kept for its ``Idempotency-Key``."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ranker.errors import (
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
from ranker.store import RankingStore

from .appkeys import ADMISSION, CLOCK, INGESTOR, METRICS, SETTINGS, STORE
from .auth import client_identity
from .preconditions import (
    check_declared_length,
    declared_size,
    read_body,
    require_redis,
)


async def post_events(request: web.Request) -> web.Response:
    """Count a batch of page views. A 200 means every accepted view is counted in Redis
    (applied to the scores at once, or while ingest is busy a little later: see
    ranker/ingest/applier.py).

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
