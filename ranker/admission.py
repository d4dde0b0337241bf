"""What ingest lets in: a budget of body bytes in progress, and a rate of events per client.

Both refuse at once, before the work they guard is done: a request past the byte budget is
answered before its body is read, so memory stays bounded however much is offered, and a
client past its rate is answered before its events are queued.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from .config import Settings
from .errors import Overloaded, RateLimited
from .metrics import Metrics

MAX_TRACKED_CLIENTS = 10_000
"""Clients whose rate is tracked at once; past it the least recently seen is forgotten (it
starts again with a full burst, which errs on the side of the client)."""


class Admission:
    """Admission control for ingest requests, one per app."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._max_bytes = settings.max_pending_bytes
        self._rate = settings.client_events_per_s
        self._burst = float(settings.client_burst_events)
        self._metrics = metrics
        self._pending_bytes = 0
        # client -> (events it may still send, when that was worked out); oldest seen first.
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` of the budget while the request is worked on.

        Raises :class:`Overloaded` when that would pass ``max_pending_bytes``; one request
        alone is always let in, so a body within the size limit is never refused for ever.
        """
        if self._pending_bytes and self._pending_bytes + nbytes > self._max_bytes:
            raise Overloaded(
                f"{self._pending_bytes} bytes of ingest are being worked on, and this request "
                f"would take them past {self._max_bytes}; nothing was counted"
            )
        self._pending_bytes += nbytes
        self._metrics.pending_ingest_bytes.set(self._pending_bytes)
        try:
            yield
        finally:
            self._pending_bytes -= nbytes
            self._metrics.pending_ingest_bytes.set(self._pending_bytes)

    def check_rate(self, client: str, now: float) -> None:
        """Refuse a client that has no events left to send, before its body is read."""
        if self._rate and self._tokens(client, now) < 1:
            raise self._limited(client, 1, now)

    def charge(self, client: str, events: int, now: float) -> None:
        """Take ``events`` from the client's allowance, or raise :class:`RateLimited` (and take
        nothing) when it has fewer left."""
        if not self._rate:
            return
        tokens = self._tokens(client, now)
        if tokens < events:
            raise self._limited(client, events, now)
        self._buckets[client] = (tokens - events, now)

    def _tokens(self, client: str, now: float) -> float:
        buckets = self._buckets
        found = buckets.pop(client, None)
        if found is None:
            tokens = self._burst
            if len(buckets) >= MAX_TRACKED_CLIENTS:
                del buckets[next(iter(buckets))]
        else:
            left, at = found
            tokens = min(self._burst, left + max(0.0, now - at) * self._rate)
        buckets[client] = (tokens, now)  # re-inserted: the most recently seen is last
        return tokens

    def _limited(self, client: str, events: int, now: float) -> RateLimited:
        tokens = self._tokens(client, now)
        wait = math.ceil((events - tokens) / self._rate)
        return RateLimited(
            f"this client may send {self._rate:g} events a second (bursts of "
            f"{self._burst:.0f}); {events} more fit in {wait} s. Nothing was counted",
            retry_after=max(1, wait),
        )
