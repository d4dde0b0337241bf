"""Operations: liveness, readiness, Prometheus metrics and the OpenAPI description."""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from ranker.errors import NotReady
from ranker.runtime.worker_metrics import merged_exposition

from .appkeys import METRICS, METRICS_DIR, STORE
from .responses import json_response

OPENAPI_DOCUMENT = files("ranker.api").joinpath("openapi.json").read_bytes()
"""The OpenAPI description of the API, shipped in the package and served as it is."""


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
