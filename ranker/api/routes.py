"""The URL table, and the one boundary every request passes: timing, and errors as JSON.

Each handler is wrapped once, here, instead of going through an aiohttp middleware. aiohttp's
middleware chain (a partial per layer plus the layer it adds to track the current app) costs
about 14,000 instructions a request, measured with callgrind: 6% of serving a cached list. A
wrapper costs a coroutine call, and knows its route template without asking the router.
Unknown paths and methods get routes of their own, so they pass the same boundary and get the
same JSON errors. The table also says who may call each route (``auth.Access``): write handlers
are registered behind the write check, editorial ones behind the editor check, read routes with
the CORS policy.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import NamedTuple

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ranker.api import articles, editorial, events, ops, rankings
from ranker.errors import NotFound, Overloaded, RankerError, RedisRefusesWrites, RequestTimeout
from ranker.logs import CURRENT_REQUEST, REQUEST_ID_HEADER, request_id
from ranker.metrics import RequestLatency
from ranker.store.base import refuses_writes

from .appkeys import METRICS, SETTINGS
from .auth import Access, EditorGuard, WriteGuard
from .cors import CorsPolicy
from .responses import error_response

# The name its log lines have always carried (the module was ranker/routes.py).
log = logging.getLogger("ranker.routes")

UNMATCHED = "unmatched"
"""The route label of requests for paths the service does not have."""

# Stable codes for the errors aiohttp raises itself (body size, malformed requests).
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

FastPath = Callable[[web.Request], web.StreamResponse | None]
"""Answers a request without awaiting anything when it can (a cache hit), else None."""

CLIENT_CLOSED_REQUEST = 499
"""The status recorded (as nginx does) for a request whose client left before it was answered."""

RANKING_ROUTE = "/v1/rankings/{section}"
RANKING_HTML_ROUTE = "/v1/rankings/{section}.html"
EVENTS_ROUTE = "/v1/events"


class Route(NamedTuple):
    """One entry of the URL table: who may call a method on a path, and what answers it."""

    method: str
    path: str
    access: Access
    handler: Handler
    fast: FastPath | None = None


ROUTES: tuple[Route, ...] = (
    Route("POST", EVENTS_ROUTE, Access.WRITE, events.post_events),
    Route("GET", "/v1/rankings", Access.READ, rankings.list_rankings),
    # Before the JSON list's route, which would take "all.html" for a ranking's name.
    Route(
        "GET", RANKING_HTML_ROUTE, Access.READ, rankings.get_ranking_html, rankings.cached_ranking
    ),
    Route("GET", RANKING_ROUTE, Access.READ, rankings.get_ranking, rankings.cached_ranking),
    Route("GET", "/v1/articles/{article_id}", Access.READ, articles.get_article),
    Route("PUT", "/v1/articles/{article_id}", Access.WRITE_OR_EDIT, articles.put_article),
    Route("GET", "/v1/editorial", Access.EDIT, editorial.get_editorial),
    Route("GET", "/v1/editorial/audit", Access.EDIT, editorial.get_audit),
    Route("PUT", "/v1/editorial/hides/{article_id}", Access.EDIT, editorial.put_hide),
    Route("DELETE", "/v1/editorial/hides/{article_id}", Access.EDIT, editorial.delete_hide),
    Route("PUT", "/v1/editorial/pins/{section}/{slot}", Access.EDIT, editorial.put_pin),
    Route("DELETE", "/v1/editorial/pins/{section}/{slot}", Access.EDIT, editorial.delete_pin),
    Route("GET", "/healthz", Access.OPS, ops.healthz),
    Route("GET", "/readyz", Access.OPS, ops.readyz),
    Route("GET", "/metrics", Access.OPS, ops.metrics),
    Route("GET", "/openapi.json", Access.READ, ops.openapi),
)


def add_routes(app: web.Application, pages: Iterable[tuple[str, Handler]] = ()) -> None:
    """Register every route, each behind :func:`observed`; writes behind the write check.
    ``pages`` are (path, handler) of ``GET`` routes outside the API (the site's), timed and
    with JSON errors like the rest, open to anyone, and registered before the catch-all 404."""
    settings = app[SETTINGS]
    latency = app[METRICS].http_request_duration
    timeout = settings.request_timeout_s
    guard = WriteGuard(settings.write_tokens)
    editors = EditorGuard(settings.editor_tokens)
    cors = CorsPolicy.from_settings(settings)
    methods: dict[str, tuple[str, list[str]]] = {}  # path -> (its route label, its methods)
    read_paths: set[str] = set()

    def add(route: Route, path: str, label: str, handler: Handler) -> None:
        route_cors = None
        if route.access is Access.WRITE:
            handler = guard.writers_only(handler)
        elif route.access is Access.EDIT:
            handler = editors.editors_only(handler)
        elif route.access is Access.WRITE_OR_EDIT:
            handler = editors.writers_or_editors(guard, handler)
        elif route.access is Access.READ:
            route_cors = cors
            read_paths.add(path)
        resource = app.router.add_resource(path)
        wrapped = observed(label, handler, latency, route.fast, route_cors, timeout)
        resource.add_route(route.method, wrapped)
        if route.method == "GET":
            resource.add_route("HEAD", wrapped)
        methods.setdefault(path, (label, []))[1].append(route.method)

    # Each configured ranking also gets a static route: aiohttp finds those with a dict lookup,
    # while the dynamic route costs a regex match and a match dict per request, a few percent
    # of a cached poll. The dynamic route stays for the names that are not rankings (404).
    (ranking,) = (route for route in ROUTES if route.path == RANKING_ROUTE)
    (fragment,) = (route for route in ROUTES if route.path == RANKING_HTML_ROUTE)
    for name in settings.rankings:
        path = rankings.ranking_path(name)
        add(ranking, path, RANKING_ROUTE, functools.partial(rankings.get_ranking, section=name))
        get_html = functools.partial(rankings.get_ranking_html, section=name)
        add(fragment, path + rankings.HTML_SUFFIX, RANKING_HTML_ROUTE, get_html)
    for route in ROUTES:
        add(route, route.path, route.path, route.handler)
    for path, (label, allowed) in methods.items():
        # Preflights and any other method on a known path: last, so the methods above match
        # first.
        resource = app.router.add_resource(path)
        if cors is not None and path in read_paths:
            allowed.append("OPTIONS")
            preflight = cors.preflight(_allow_header(allowed))
            resource.add_route("OPTIONS", observed(label, preflight, latency))
        resource.add_route("*", observed(label, _method_not_allowed(allowed), latency))
    for path, handler in pages:
        resource = app.router.add_resource(path)
        wrapped = observed(path, handler, latency, timeout=timeout)
        resource.add_route("GET", wrapped)
        resource.add_route("HEAD", wrapped)
        resource.add_route("*", observed(path, _method_not_allowed(["GET", "HEAD"]), latency))
    app.router.add_route("*", "/{path:.*}", observed(UNMATCHED, _not_found, latency))


def observed(
    route: str,
    handler: Handler,
    latency: RequestLatency,
    fast: FastPath | None = None,
    cors: CorsPolicy | None = None,
    timeout: float | None = None,
) -> Handler:
    """``handler`` timed under ``route``, with every error it raises rendered as JSON, and
    answered with a 503 when it takes longer than ``timeout`` seconds.

    ``fast``, when given, is tried first; ``handler`` runs only when it answers None. A cached
    list so costs one coroutine, not two. ``cors``, given for read routes when origins are
    allowed, adds its headers to every answer, errors included.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        started = perf_counter()
        try:
            response = None if fast is None else fast(request)
            if response is None:
                response = await _within_deadline(handler, request, route, timeout)
        except RankerError as exc:
            CURRENT_REQUEST.set(request)
            response = error_response(
                exc.status, exc.code, exc.message, retry_after=exc.retry_after
            )
            response.headers.update(exc.headers)
        except web.HTTPException as exc:
            CURRENT_REQUEST.set(request)
            if exc.status < 400:  # a redirect: aiohttp sends it on its own
                latency.observe(route, request.method, exc.status, perf_counter() - started)
                raise
            response = error_response(
                exc.status, HTTP_ERROR_CODES.get(exc.status, "http_error"), exc.reason
            )
        except RedisError as exc:
            response = _redis_error_response(request, route, exc)
        except asyncio.CancelledError:
            # The client left first; counted as nginx does.
            latency.observe(route, request.method, CLIENT_CLOSED_REQUEST, perf_counter() - started)
            raise
        except ConnectionError as exc:
            response = _client_closed_response(request, exc)
        except Exception:
            CURRENT_REQUEST.set(request)
            log.exception("unhandled error during %s %s", request.method, request.path)
            response = error_response(500, "internal_error", "internal error; it has been logged")
        if cors is not None:
            cors.apply(request, response)
        if response.status >= 400:
            # What a client quotes when it reports a failure; the same id is in our logs.
            response.headers[REQUEST_ID_HEADER] = request_id(request)
        latency.observe(route, request.method, response.status, perf_counter() - started)
        return response

    return handle


def _timed_out_message(route: str, timeout: float | None) -> str:
    message = f"the request did not finish within {timeout} s"
    if route == EVENTS_ROUTE:
        # The flush it waited for may yet be applied.
        message += (
            "; its events may still be counted: retry with the same Idempotency-Key to have "
            "them counted exactly once"
        )
    return message


def _allow_header(allowed: Iterable[str]) -> str:
    names = set(allowed)
    return ", ".join(sorted({*names, *(("HEAD",) if "GET" in names else ())}))


def _method_not_allowed(allowed: Iterable[str]) -> Handler:
    allow = _allow_header(allowed)

    async def method_not_allowed(request: web.Request) -> web.StreamResponse:
        response = error_response(
            405, "method_not_allowed", f"{request.method} is not allowed here; use {allow}"
        )
        response.headers["Allow"] = allow
        return response

    return method_not_allowed


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise NotFound(f"no such path: {request.path[:200]}")


def _redis_error_response(request: web.Request, route: str, exc: RedisError) -> web.Response:
    """The answer to a request that Redis failed: too much of ranker's own work at once (503
    overloaded), Redis unreachable (503), Redis refusing writes (503), or an error (500)."""
    if isinstance(exc, MaxConnectionsError):  # PoolExhausted, or a cluster node's pool full
        # Ranker's own back-pressure, not a Redis error: Redis may be fine.
        log.debug("no Redis connection for %s %s: %s", request.method, request.path, exc)
        overloaded = Overloaded("too many requests are waiting for Redis; try again shortly")
        return error_response(overloaded.status, overloaded.code, overloaded.message, retry_after=1)
    request.app[METRICS].redis_errors.labels(operation=route).inc()
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        log.warning("Redis unavailable during %s %s: %s", request.method, request.path, exc)
        return error_response(
            503, "redis_unavailable", "Redis did not answer; try again shortly", retry_after=1
        )
    if refuses_writes(exc):
        # Redis's state, not a bug: a 503 the client may retry, and no log line per
        # request (the store logs when Redis starts refusing, and when it stops).
        refused = RedisRefusesWrites(
            "Redis refuses writes (out of memory, or a read-only replica); try again later"
        )
        return error_response(
            refused.status, refused.code, refused.message, retry_after=refused.retry_after
        )
    log.exception("Redis error during %s %s", request.method, request.path)
    return error_response(500, "redis_error", "Redis rejected a command")


def _client_closed_response(request: web.Request, exc: ConnectionError) -> web.Response:
    """The client closed its connection while its body was read (a sender's timeout, a flaky
    link): its doing, not the service's, so no 5xx to feed the error-ratio alert and no
    traceback. Nobody reads this answer; the access log and the latency metric do."""
    CURRENT_REQUEST.set(request)
    log.info("client closed the connection during %s %s: %s", request.method, request.path, exc)
    return error_response(
        CLIENT_CLOSED_REQUEST,
        "client_closed_request",
        "the client closed the connection before its request was read",
    )


async def _within_deadline(
    handler: Handler, request: web.Request, route: str, deadline_s: float | None
) -> web.StreamResponse:
    """The handler's answer, or :class:`RequestTimeout` once it has taken ``deadline_s``."""
    # For the request id in anything logged from here on. The fast path logs nothing, and
    # skips even this; an error it raises is logged by the caller.
    CURRENT_REQUEST.set(request)
    async with asyncio.timeout(deadline_s) as deadline:
        try:
            return await handler(request)
        except asyncio.CancelledError:
            if deadline.expired():
                raise RequestTimeout(_timed_out_message(route, deadline_s)) from None
            raise
