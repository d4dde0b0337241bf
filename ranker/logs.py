"""Logging: one JSON object per line, with the request id of the request being served.

The id is the request's ``X-Request-ID`` when it sends a sane one, else one made up; it is
worked out only when something is logged, so a request that logs nothing pays for one
context-variable set.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from ranker.config import Settings

CURRENT_REQUEST: ContextVar[web.BaseRequest | None] = ContextVar("ranker_request", default=None)
"""The request the running task serves; set by the route wrapper."""

REQUEST_ID = web.RequestKey("request_id", str)
"""Per request: its id, once something needed it (see logs.request_id)."""
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def request_id(request: web.BaseRequest) -> str:
    """The request's id: its own ``X-Request-ID`` if sane, else one made once and kept."""
    known = request.get(REQUEST_ID)
    if known is None:
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        known = sent if _SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        request[REQUEST_ID] = known
    return known


class JsonFormatter(logging.Formatter):
    """Each record as one line of JSON: time, level, logger, message, pid, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request = CURRENT_REQUEST.get()
        if request is not None:
            entry["request_id"] = request_id(request)
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class AccessLogger(AbstractAccessLogger):
    """One line per request, with RANKER_ACCESS_LOG on: method, path, status, duration."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "remote": request.remote,
                "request_id": request_id(request),
            },
        )


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse at ERROR, with a traceback whose message quotes
    the offending bytes: a header line, perhaps an ``Authorization`` with its token. Such
    requests come from the internet all day and are answered 400 already; keep one WARNING
    line that names the error, not what was sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "malformed HTTP request refused with %d (%s)"
            record.args = (exc.code, type(exc).__name__)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(settings: Settings) -> None:
    """Send log records at ``settings.log_level`` and above to stderr, as JSON lines or, with
    ``RANKER_LOG_FORMAT=text``, as plain text for a person at a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
        )
    handler.addFilter(MalformedRequestFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


def access_log_options(settings: Settings) -> dict[str, Any]:
    """``web.run_app`` keywords: no access log (the default), or one JSON line per request."""
    if not settings.access_log:
        return {"access_log": None}
    return {"access_log": logging.getLogger("ranker.access"), "access_log_class": AccessLogger}
