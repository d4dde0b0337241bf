"""Middlewares: request metrics, and one place that turns errors into JSON."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import RankerError
from .responses import error_response
from .state import METRICS

log = logging.getLogger(__name__)

# Stable codes for the errors aiohttp raises itself (routing, body size, methods).
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request by its route template, so ids in paths never become label values."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[METRICS].http_request_duration.labels(
            route=_route(request), method=request.method, status=str(status)
        ).observe(time.perf_counter() - started)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render domain errors, aiohttp's HTTP errors and Redis failures as JSON errors."""
    try:
        return await handler(request)
    except RankerError as exc:
        return error_response(exc.status, exc.code, exc.message, retry_after=exc.retry_after)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_ERROR_CODES.get(exc.status, "http_error")
        response = error_response(exc.status, code, exc.reason)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except (RedisConnectionError, RedisTimeoutError) as exc:
        request.app[METRICS].redis_errors.labels(operation=_route(request)).inc()
        log.warning("Redis unavailable during %s %s: %s", request.method, request.path, exc)
        return error_response(
            503, "redis_unavailable", "Redis did not answer; try again shortly", retry_after=1
        )
    except RedisError:
        request.app[METRICS].redis_errors.labels(operation=_route(request)).inc()
        log.exception("Redis error during %s %s", request.method, request.path)
        return error_response(500, "redis_error", "Redis rejected a command")
    except Exception:
        log.exception("unhandled error during %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; it has been logged")


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
