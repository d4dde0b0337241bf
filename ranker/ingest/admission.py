"""What the service lets in: budgets of request-body bytes in progress, in all and per client,
and a rate of events per client.

They refuse at once, before the work they guard is done. A body is held against its budget by
its declared length before a byte of it is read, and by what it has unpacked to as it is read
(a compressed or chunked body may grow past what it declared): so memory stays bounded however
much is offered, however it is encoded. A client past its share of a budget is refused while
other clients still get in, so one slow or greedy sender cannot take the budget from the rest.
A client past its rate is answered before its events are queued.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ranker.config import Settings
from ranker.errors import Overloaded, RateLimited
from ranker.metrics import Metrics

MAX_TRACKED_CLIENTS = 10_000
"""Clients whose rate is tracked at once; past it the least recently seen is forgotten (it
starts again with a full burst, which errs on the side of the client)."""

MAX_EDITORIAL_BODY_BYTES = 16 * 1024
"""Largest body of an editorial change. One is a small JSON object (an article id, an end
time, an editor's name and a reason of at most 500 characters, all escaped): 16 KiB is room
for the largest with every character escaped, and nothing an editor sends needs more."""

EDITORIAL_PENDING_BYTES = 64 * MAX_EDITORIAL_BODY_BYTES
"""Bytes of editorial bodies in progress at once: a budget of their own, so a flood of ingest
never refuses an editor pulling a story, and editorial requests cannot hold much memory."""


class BodyHold:
    """One request body's place in a :class:`BodyBudget`, grown as the body is read."""

    def __init__(self, budget: BodyBudget, client: str, consequence: str) -> None:
        self.budget = budget
        self.client = client
        self.consequence = consequence
        self.nbytes = 0

    def grow_to(self, nbytes: int) -> None:
        """Hold at least ``nbytes``; raise :class:`Overloaded` (holding what was held) when the
        budget or the client's share of it has no room for them."""
        if nbytes > self.nbytes:
            self.budget._take(self, nbytes - self.nbytes)


class BodyBudget:
    """Bytes of request bodies taken in and not yet answered: at most ``max_bytes`` in all, and
    ``client_max_bytes`` for any one client. A request alone in the budget, or the only one of
    its client, is always let in, so a body within the size limit is never refused for ever."""

    def __init__(
        self,
        max_bytes: int,
        client_max_bytes: int,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.client_max_bytes = client_max_bytes
        self._on_change = on_change
        self._pending = 0
        self._held: dict[str, int] = {}  # client -> bytes its requests hold; none: absent

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def held_by(self, client: str) -> int:
        """Bytes the requests of ``client`` hold now."""
        return self._held.get(client, 0)

    @contextmanager
    def hold(self, client: str, nbytes: int, consequence: str) -> Iterator[BodyHold]:
        """Hold ``nbytes`` for ``client`` while the request is worked on; the hold may grow.

        Raises :class:`Overloaded`, its message ending with ``consequence`` (what became of
        the request: "nothing was counted"), when the budget has no room.
        """
        hold = BodyHold(self, client, consequence)
        hold.grow_to(nbytes)
        try:
            yield hold
        finally:
            self._give_back(hold)

    def _take(self, hold: BodyHold, extra: int) -> None:
        pending, held = self._pending, self._held.get(hold.client, 0)
        if pending > hold.nbytes and pending + extra > self.max_bytes:
            raise Overloaded(
                f"{pending - hold.nbytes} bytes of request bodies are being worked on, and this "
                f"one would take them past {self.max_bytes}; {hold.consequence}"
            )
        if held > hold.nbytes and held + extra > self.client_max_bytes:
            raise Overloaded(
                f"this client's other requests in progress hold {held - hold.nbytes} bytes of "
                f"bodies, and this one would take them past the {self.client_max_bytes} one "
                f"client may hold; {hold.consequence}"
            )
        hold.nbytes += extra
        self._held[hold.client] = held + extra
        self._changed(pending + extra)

    def _give_back(self, hold: BodyHold) -> None:
        left = self._held[hold.client] - hold.nbytes
        if left:
            self._held[hold.client] = left
        else:
            del self._held[hold.client]
        self._changed(self._pending - hold.nbytes)
        hold.nbytes = 0

    def _changed(self, pending: int) -> None:
        self._pending = pending
        if self._on_change is not None:
            self._on_change(pending)


class Admission:
    """Admission control, one per app: the budget of write bodies (events and article
    metadata), the smaller one of editorial bodies, and ingest rates per client."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._rate = settings.client_events_per_s
        self._burst = float(settings.client_burst_events)
        self.writes = BodyBudget(
            settings.max_pending_bytes,
            settings.client_max_pending_bytes,
            metrics.pending_ingest_bytes.set,
        )
        self.edits = BodyBudget(EDITORIAL_PENDING_BYTES, EDITORIAL_PENDING_BYTES // 2)
        # client -> (events it may still send, when that was worked out); oldest seen first.
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def pending_bytes(self) -> int:
        """Bytes of write bodies in progress."""
        return self.writes.pending_bytes

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
