"""Domain errors. Each carries an HTTP status and a stable machine-readable code."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar


class RankerError(Exception):
    """Base of every error the API reports as ``{"error": {"code": ..., "message": ...}}``."""

    status = 500
    code = "internal_error"
    retry_after: int | None = None
    """Seconds a client should wait before trying again, sent as ``Retry-After``."""
    headers: ClassVar[Mapping[str, str]] = MappingProxyType({})
    """Further response headers the error is sent with."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RankerError):
    status = 400
    code = "bad_request"


class InvalidJson(BadRequest):
    code = "invalid_json"


class InvalidBody(BadRequest):
    code = "invalid_body"


class InvalidLimit(BadRequest):
    code = "invalid_limit"


class InvalidQuery(BadRequest):
    """A list's ``require`` or ``exclude`` is malformed."""

    code = "invalid_query"


class UnknownWindow(BadRequest):
    """A ``window`` that is not configured: the message names the ones that are."""

    code = "unknown_window"


class InvalidArticleId(BadRequest):
    code = "invalid_article_id"


class InvalidArticle(BadRequest):
    code = "invalid_article"


class UnsupportedMediaType(RankerError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(RankerError):
    status = 413
    code = "payload_too_large"


class Unauthorized(RankerError):
    """A write without a valid bearer token, where tokens are configured."""

    status = 401
    code = "unauthorized"
    headers = MappingProxyType({"WWW-Authenticate": 'Bearer realm="ranker"'})


class Forbidden(RankerError):
    """A write from a client that may not write: no tokens are configured and it is not local."""

    status = 403
    code = "forbidden"


class EditorRequired(Forbidden):
    """An editorial change (an article's ``hidden``) sent through a write route by a client that
    is no editor: a write token is no editor token."""

    code = "editor_required"


class NotFound(RankerError):
    status = 404
    code = "not_found"


class UnknownSection(NotFound):
    code = "unknown_section"


class ArticleNotFound(NotFound):
    code = "article_not_found"


class NotHidden(NotFound):
    """An unhide for an article that is not hidden (or whose hide has ended)."""

    code = "not_hidden"


class PinNotFound(NotFound):
    """An unpin of a slot no article is pinned to (or whose pin has ended)."""

    code = "pin_not_found"


class InvalidEditorialChange(BadRequest):
    code = "invalid_editorial_change"


class StoreUnavailable(RankerError):
    """Redis did not answer; for an ingest request, nothing of it was acknowledged."""

    status = 503
    code = "redis_unavailable"
    retry_after = 1


class RedisRefusesWrites(RankerError):
    """Redis answers, but takes no writes: out of memory (``noeviction``), a read-only
    replica, or a failed snapshot. It lasts until someone fixes Redis: minutes, not a second."""

    status = 503
    code = "redis_refuses_writes"
    retry_after = 5


class NotReady(RankerError):
    """Redis has not answered since the process started: it cannot serve yet."""

    status = 503
    code = "redis_not_reached"
    retry_after = 1


class FlushFailed(StoreUnavailable):
    """Redis did not acknowledge a flush: its views may or may not have been applied."""


class ReplicationUnconfirmed(FlushFailed):
    """Redis applied a flush but ``WAIT`` did not see it reach ``RANKER_REDIS_WAIT_REPLICAS``
    replicas in time: counted on the primary, and lost with it if it fails now."""

    code = "redis_replication_unconfirmed"


class RequestTimeout(RankerError):
    """The request did not finish within ``request_timeout_s``."""

    status = 503
    code = "timeout"
    retry_after = 1


class Overloaded(RankerError):
    """Too much is waiting: ingest to be applied (refused before queueing), or requests for a
    Redis connection (no connection came free in time; nothing was sent)."""

    status = 503
    code = "overloaded"
    retry_after = 1


class RateLimited(RankerError):
    """This client sent more events than its limit allows; nothing of the request was counted."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyEvents(PayloadTooLarge):
    code = "too_many_events"


class InvalidIdempotencyKey(BadRequest):
    code = "invalid_idempotency_key"


class IdempotencyKeyReused(RankerError):
    """The key was used before for a different body."""

    status = 422
    code = "idempotency_key_reused"
