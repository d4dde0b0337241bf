"""Change notices between replicas: after a flush (or an editorial change), the replica that
made it publishes which rankings changed, and every other replica refreshes those lists at
once instead of at its next timed refresh, up to a refresh interval later.

Redis pub/sub, not keyspace notifications: those need a server setting (``notify-keyspace-events``)
a managed Redis may not let us set, fire once per key written (several a ranking and flush),
and would carry key names the replicas would have to map back to rankings. A notice is one
small message a flush, naming the rankings, sent by the one replica that knows them.

Best effort by design: a notice lost (Redis down, the subscription broken) costs freshness
only, never a view, as every replica still refreshes every list at its timed interval. The
subscription is re-made with a backoff; once it is, the lists still marked stale (an outage
broke it, most often) are refreshed at once, the others at their next timed refresh.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Iterable

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ranker.metrics import Metrics

from .base import Client

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
"""A subscription with nothing to read for this long is PINGed: one that died without its
socket closing (a node gone from the network) is found within about this long."""

RESUBSCRIBE_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Waits between attempts to subscribe again after a broken subscription, the last repeated."""

OnChanged = Callable[[list[str]], None]
"""What hears a notice: the rankings another replica changed (None of ours)."""


class ChangeNotices:
    """This replica's side of the notices: :meth:`publish` tells the others, :meth:`listen`
    hears them (run it as a task for as long as the replica runs)."""

    def __init__(
        self,
        publisher: Client,
        subscriber: Client,
        channel: str,
        rankings: Collection[str],
        metrics: Metrics,
    ) -> None:
        self._publisher = publisher
        self._subscriber = subscriber
        self._channel = channel
        self._rankings = frozenset(rankings)
        self._metrics = metrics
        self.origin = secrets.token_hex(8)
        """This replica's id in its notices: it does not act on its own."""
        self._pending: set[str] = set()
        self._sending: asyncio.Task[None] | None = None

    def publish(self, rankings: Iterable[str]) -> None:
        """Tell the other replicas these rankings changed. Never waits: with a notice in
        flight, the rankings changed meanwhile go in one notice after it, so a flood of flushes
        is at most one notice in flight and one waiting."""
        self._pending.update(rankings)
        if self._pending and (self._sending is None or self._sending.done()):
            self._sending = asyncio.create_task(self._send(), name="ranker-notice")

    async def _send(self) -> None:
        while self._pending:
            rankings, self._pending = self._pending, set()
            message = f"{self.origin} {','.join(sorted(rankings))}"
            try:
                await self._publisher.publish(self._channel, message)
            except RedisError as exc:
                # The others refresh on their timers; the flush itself was counted.
                self._metrics.redis_errors.labels(operation="notice").inc()
                log.debug("a change notice was not sent: %s", exc)
                return
            self._metrics.change_notices.labels(direction="sent").inc()

    async def close(self) -> None:
        """Wait for the notice in flight, if any (a last flush's notice still goes out)."""
        if self._sending is not None:
            await asyncio.gather(self._sending, return_exceptions=True)

    async def listen(self, on_changed: OnChanged, on_resubscribed: Callable[[], None]) -> None:
        """Hear the other replicas' notices until cancelled: ``on_changed`` with the rankings
        of each, ``on_resubscribed`` after a broken subscription is made again."""
        failures = 0
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._metrics.change_subscription_up.set(1)
                if failures:
                    log.info("change notices: subscribed again")
                    on_resubscribed()
                failures = 0
                await self._read(pubsub, on_changed)
            except RedisError as exc:
                self._metrics.change_subscription_up.set(0)
                self._metrics.redis_errors.labels(operation="notice").inc()
                if not failures:
                    log.warning(
                        "change notices: subscription lost, lists refresh on their timers: %s", exc
                    )
                await asyncio.sleep(
                    RESUBSCRIBE_BACKOFF_S[min(failures, len(RESUBSCRIBE_BACKOFF_S) - 1)]
                )
                failures += 1
            finally:
                # Typed in some redis-py releases and not in others: called through a variable
                # of a declared type, mypy accepts both.
                close: Callable[[], Awaitable[None]] = pubsub.aclose
                await close()

    async def _read(self, pubsub: PubSub, on_changed: OnChanged) -> None:
        loop = asyncio.get_running_loop()
        pinged = False  # a PING is out, and nothing has come back since
        while True:
            started = loop.time()
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=HEARTBEAT_S)
            if message is None:
                if loop.time() - started < HEARTBEAT_S:
                    pinged = False  # a reply it keeps to itself came in: the PONG
                elif pinged:
                    raise RedisConnectionError("no answer to a PING on the subscription")
                else:
                    await pubsub.ping()
                    pinged = True
                continue
            pinged = False
            if message.get("type") != "message":
                continue
            rankings = self._parse(message["data"])
            if rankings:
                self._metrics.change_notices.labels(direction="received").inc()
                on_changed(rankings)

    def _parse(self, data: object) -> list[str]:
        """The known rankings a notice names; none for our own notices or a malformed one."""
        if not isinstance(data, str):
            return []
        origin, _, names = data.partition(" ")
        if origin == self.origin:
            return []
        return [name for name in names.split(",") if name in self._rankings]
