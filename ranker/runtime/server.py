"""The HTTP server ranker serves its app with: aiohttp's, with what aiohttp's lacks in front of
clients that cannot be trusted.

- A deadline for a request's headers (``RANKER_HEADER_TIMEOUT_S``), from the first byte of the
  request: aiohttp has none, so a client that sends half a header line and then a byte now
  and then held its connection (and a file descriptor) for ever.
- A cap on open connections (``RANKER_MAX_CONNECTIONS``), within the open-files limit (which
  ranker/runtime/process.py raises to what the system allows): past the limit ``accept()``
  fails, and the event loop stops accepting anyone for a second at a time, so a crowd of idle
  connections made every new client time out. At the cap, the connection that has waited
  longest for a request (idle, or its headers still coming) is closed to make room, as nginx
  reuses idle keep-alive connections; a connection with a request in progress is never closed
  for it.
- Malformed requests answered as JSON that quotes nothing of the request: aiohttp's plain-text
  ``400`` echoes the offending line, an ``Authorization`` header with its token included.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from aiohttp import http_exceptions, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from ranker.api.responses import error_response
from ranker.config import Settings

# The name its log lines have always carried (the module was ranker/server.py).
log = logging.getLogger("ranker.server")

KEEPALIVE_TIMEOUT_S = 75.0
"""How long a connection may sit idle between requests (aiohttp's ``run_app`` default)."""

READ_BUFFER_BYTES = 64 * 1024
"""What aiohttp reads ahead of a handler per connection, and unpacks a compressed body by at a
time: a connection holds at most about three times this of a body no handler has read yet
(aiohttp's default, 256 KiB, let 1,000 stalled 1 KB gzip uploads take 750 MB), and a body is
read in pieces of at most this size."""

BACKLOG = 128
"""Connections the kernel queues for accept(); the event loop accepts up to this many at once,
before a connection closed at the cap gives its file back."""

RESERVED_FILES = 64 + BACKLOG
"""Open files kept for anything but client connections (Redis connections are added to it):
one accept() batch, the listening socket, logs, the metrics directory, the embedded server's
pipes."""

# What a malformed request is told: the kind of fault, never a byte of what it sent.
MALFORMED: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "a request line or header is too long (8190 bytes at most)"),
    (http_exceptions.BadHttpMethod, "the request method is not valid"),
    (http_exceptions.BadStatusLine, "the request line is not valid HTTP/1.1"),
    (http_exceptions.InvalidHeader, "a header is malformed"),
    (http_exceptions.InvalidURLError, "the request target is not a valid URL"),
    (http_exceptions.TransferEncodingError, "the body's chunked framing is broken"),
    (http_exceptions.ContentLengthError, "the body's length does not match its Content-Length"),
)


class RequestHandler(web.RequestHandler):
    """One client connection: aiohttp's, with a header deadline and a JSON ``400``."""

    def __init__(self, manager: Server, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server = manager
        self._header_timeout_s = header_timeout_s
        self._header_deadline: asyncio.TimerHandle | None = None
        self._between_requests = True
        self._last_body: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_deadline()
        self._server.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The first byte of a request starts its header deadline. Bytes between requests that
        # are the rest of the last one's body (read and dropped after its answer) are not one.
        if (
            data
            and self._between_requests
            and self._header_deadline is None
            and (self._last_body is None or self._last_body.is_eof())
        ):
            self._header_deadline = asyncio.get_running_loop().call_later(
                self._header_timeout_s, self._headers_too_slow
            )
        super().data_received(data)

    def request_started(self, payload: StreamReader) -> None:
        """Its headers are in: the deadline is met, and the connection is busy."""
        self._cancel_header_deadline()
        self._between_requests = False
        self._last_body = payload
        self._server.busy(self)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            answered = await super().finish_response(request, resp, start_time)
        finally:
            self._between_requests = True
            self._server.idle(self)
        return answered

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request aiohttp could not parse or serve, as JSON that quotes none
        of it (aiohttp's own puts the offending line, header value and all, in its text)."""
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was being sent; the connection is closed")
        if status >= 500:
            log.error("error serving a request from %s", request.remote, exc_info=exc)
            response = error_response(
                status, "internal_error", "internal error; it has been logged"
            )
        else:
            # Not the message, nor a traceback: they hold the request's bytes. One line, as
            # logs.MalformedRequestFilter makes of aiohttp's own.
            log.warning("malformed HTTP request refused with %d (%s)", status, type(exc).__name__)
            response = error_response(status, "bad_request", _malformed(exc))
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp's ERROR with a traceback, but not for a broken body met again while its rest
        is dropped after the answer (the handler has answered it ``400`` already)."""
        if isinstance(kwargs.get("exc_info"), web.RequestPayloadError):
            log.debug("dropped the rest of a broken request body")
            return
        super().log_exception(*args, **kwargs)

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._between_requests:
            log.debug("closed a connection whose request headers did not arrive in time")
            self.force_close()

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None


def _malformed(exc: BaseException | None) -> str:
    for kind, message in MALFORMED:
        if isinstance(exc, kind):
            return message
    return "the request is not valid HTTP/1.1"


class Server(web.Server):
    """aiohttp's low-level server, making :class:`RequestHandler` connections and keeping at
    most ``max_connections`` of them open."""

    def __init__(
        self,
        handler: Any,
        *,
        request_factory: Any,
        max_connections: int,
        header_timeout_s: float,
        loop: asyncio.AbstractEventLoop,
        handler_cancellation: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            handler,
            request_factory=self._started,
            handler_cancellation=handler_cancellation,
            loop=loop,
            **kwargs,
        )
        self._app_request_factory = request_factory
        self._handler_kwargs = {"loop": loop, "header_timeout_s": header_timeout_s, **kwargs}
        self.max_connections = max_connections
        self._open: set[RequestHandler] = set()
        # Connections waiting for a request (idle, or its headers still coming), the one that
        # has waited longest first: the ones to close at the cap.
        self._waiting: dict[RequestHandler, None] = {}

    def __call__(self) -> RequestHandler:
        return RequestHandler(self, **self._handler_kwargs)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def opened(self, handler: RequestHandler) -> None:
        self._open.add(handler)
        self._waiting[handler] = None
        if len(self._open) > self.max_connections:
            # The longest waiting: an idle keep-alive, or a request whose headers are slow. If
            # all others are busy, that is the new one itself.
            oldest = next(iter(self._waiting))
            log.debug("%d connections are open: closing one waiting for a request", len(self._open))
            # Forgotten now, not when its close completes (the next turn of the loop): the
            # connections accepted in this turn must each close another.
            self.closed(oldest)
            oldest.force_close()

    def closed(self, handler: RequestHandler) -> None:
        self._open.discard(handler)
        self._waiting.pop(handler, None)

    def busy(self, handler: RequestHandler) -> None:
        self._waiting.pop(handler, None)

    def idle(self, handler: RequestHandler) -> None:
        if handler in self._open:
            self._waiting.pop(handler, None)
            self._waiting[handler] = None  # to the end: it has waited least

    def _started(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        if isinstance(protocol, RequestHandler):
            protocol.request_started(payload)
        request: web.BaseRequest = self._app_request_factory(
            message, payload, protocol, writer, task
        )
        return request


class Runner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose server is :class:`Server`."""

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT_S)
        kwargs.setdefault("read_bufsize", READ_BUFFER_BYTES)
        super().__init__(app, **kwargs)
        self._settings = settings
        self._max_connections = connection_cap(settings)
        self._server_kwargs = {
            name: kwargs[name]
            for name in ("access_log", "access_log_class", "keepalive_timeout", "read_bufsize")
            if name in kwargs
        }

    async def _make_server(self) -> web.Server:
        # The app's own server is made for its handler and request factory (and to start the
        # app); this one takes them over.
        made = await super()._make_server()
        return Server(
            made.request_handler,
            request_factory=made.request_factory,
            max_connections=self._max_connections,
            header_timeout_s=self._settings.header_timeout_s,
            loop=asyncio.get_running_loop(),
            handler_cancellation=made.handler_cancellation,
            **self._server_kwargs,
        )


def connection_cap(settings: Settings) -> int:
    """``RANKER_MAX_CONNECTIONS``, or fewer when the open-files limit leaves less room."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if files == resource.RLIM_INFINITY:
        return settings.max_connections
    room = files - RESERVED_FILES - settings.redis_max_connections - 1
    if room >= settings.max_connections:
        return settings.max_connections
    cap = max(1, room)
    log.warning(
        "RANKER_MAX_CONNECTIONS is %d, but the open-files limit (%d) leaves room for %d client "
        "connections: keeping at most %d open (raise the limit: ulimit -n, or the container's "
        "nofile)",
        settings.max_connections,
        files,
        cap,
        cap,
    )
    return cap


async def start(
    app: web.Application,
    settings: Settings,
    *,
    host: str,
    port: int,
    reuse_port: bool = False,
    handle_signals: bool = False,
    **kwargs: Any,
) -> web.AppRunner:
    """Start serving ``app`` on ``host:port``: the app's start-up has run, and connections are
    taken. ``runner.cleanup()`` stops it."""
    runner = Runner(app, settings, handle_signals=handle_signals, **kwargs)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=BACKLOG, reuse_port=reuse_port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
