"""What every part of the store shares: the Redis clients, keys, settings and metrics, whether
Redis answers, the Lua scripts (registered once, here) and the :func:`observed` decorator that
times each operation and keeps that availability current.

Only the store modules issue commands to the service's Redis (``embedded`` just checks that a
server it started answers): the modules of this package, joined in
:class:`~ranker.store.RankingStore`."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import time
from collections.abc import Callable, Coroutine
from importlib.resources import files
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ranker.config import Settings
from ranker.metrics import Metrics

from .cluster import ScriptedCluster, open_cluster
from .keys import Keys
from .line import FlushLine
from .shards import Shards

Client = Redis | ScriptedCluster
"""A single node's client, or a cluster's (``RANKER_REDIS_CLUSTER``): the store uses only what
both have."""

Pipe = Pipeline | ClusterPipeline
"""A pipeline of either client."""


def script_client(pipe: Pipe) -> Redis:
    """``pipe`` as redis-py types the client a script is called with. A pipeline of either kind
    queues the script's EVALSHA (a cluster's: see ``ScriptedClusterPipeline.__await__``)."""
    return cast(Redis, pipe)


# The name its log lines have always carried (the module was ranker/store_base.py).
log = logging.getLogger("ranker.store_base")

# redis-py has no class of its own for MISCONF; a pipeline's error quotes the reply after
# "... caused error: (".
_MISCONF = re.compile(r"\bMISCONF ")


def refuses_writes(error: BaseException) -> bool:
    """Whether ``error`` is Redis saying it takes no writes now, though it answers reads: out
    of memory under ``maxmemory-policy noeviction`` (``OOM``), a read-only replica
    (``READONLY``), or a failed snapshot with ``stop-writes-on-bgsave-error`` (``MISCONF``)."""
    if isinstance(error, OutOfMemoryError | ReadOnlyError):
        return True
    return isinstance(error, ResponseError) and _MISCONF.search(str(error)) is not None


class PoolExhausted(MaxConnectionsError):
    """No connection to Redis came free within the wait: ranker's own back-pressure (too much
    work at once), not a sign that Redis is down. Still a ``ConnectionError``, so code that
    treats any failure to reach Redis as "nothing was sent" stays right."""


class WaitingPool(BlockingConnectionPool):
    """redis-py's blocking pool, which raises :class:`PoolExhausted` when a wait for a free
    connection runs out, where redis-py raises a plain ``ConnectionError`` (as for a refused
    connection): only a real failure to reach Redis may mark it down."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        try:
            connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs
            )
            return connection
        except RedisConnectionError as exc:
            # redis-py's pool raises ConnectionError("No connection available.") from the
            # timeout of its wait; a failure to connect is raised otherwise (tested).
            if type(exc) is RedisConnectionError and isinstance(exc.__cause__, TimeoutError):
                raise PoolExhausted(
                    f"no Redis connection came free within {self.timeout} s"
                ) from exc
            raise


ARTICLE_READ_SHARE = 4
"""Article reads get connections of their own, a quarter as many as the other reads and
writes (``RANKER_REDIS_MAX_CONNECTIONS``), at least one: a flood of them cannot take the
connections that list refreshes, ingest and editors need."""


def article_connections(settings: Settings) -> int:
    """How many connections article reads have, and so how many run at once."""
    return max(1, settings.redis_max_connections // ARTICLE_READ_SHARE)


def _lua(name: str) -> str:
    return files("ranker.store").joinpath("lua", name).read_text(encoding="utf-8")


_INCREMENT = _lua("increment.lua")
_TOP = _lua("top.lua")
_SCORE = _lua("score.lua")
_SEEN = _lua("seen.lua")
_PIN = _lua("pin.lua")
_KEEP = _lua("keep.lua")
_METADATA = _lua("metadata.lua")


def open_client(settings: Settings, max_connections: int, retry: Retry) -> Client:
    """A client with a pool of its own, of at most ``max_connections`` connections (in cluster
    mode, to each node)."""
    assert settings.redis_url is not None  # checked in create_app
    if settings.redis_cluster:
        # redis-py's cluster pools do not wait for a free connection: past the cap a command
        # fails at once with MaxConnectionsError, which is no sign of an outage either.
        return open_cluster(
            settings.redis_urls,
            max_connections=max_connections,
            decode_responses=True,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            retry=retry,
        )
    pool = WaitingPool.from_url(
        settings.redis_url,
        # Past the cap a request waits for a connection (up to the timeout) instead of failing;
        # after it, it fails with PoolExhausted, which is no sign of a Redis outage.
        max_connections=max_connections,
        timeout=settings.redis_timeout_s,
        decode_responses=True,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=retry,
    )
    return Redis.from_pool(pool)


class StoreBase:
    """The state every part of :class:`~ranker.store.RankingStore` works with."""

    def __init__(
        self,
        redis: Client,
        settings: Settings,
        *,
        flush_redis: Client | None = None,
        article_redis: Client | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        self.available = True
        """False from a command that could not reach Redis (refused, cut or timed out) until
        the next that could: work that needs Redis is refused at once meanwhile."""
        self.reached = False
        """True once Redis has answered a command since the process started: until then the
        process is not ready (its Redis URL may be wrong), whatever it says later."""
        self.writable = True
        """False from a write Redis refused (see :func:`refuses_writes`) until the background
        write check finds it takes writes again."""
        self.went_down = asyncio.Event()
        """Set when a command finds Redis unreachable, or refusing writes, for the check that
        finds it back."""
        self.outage_listeners: list[Callable[[], None]] = []
        """Called when a command first finds Redis unreachable after it answered."""
        self._redis = redis
        self._flush_redis = flush_redis if flush_redis is not None else redis
        self._article_redis = article_redis if article_redis is not None else redis
        # As many article reads at once as they have connections: the others wait their turn
        # (and are refused once the wait is over) without holding a connection.
        self._article_slots = asyncio.Semaphore(article_connections(settings))
        # Article id -> its read that has not been sent yet: one that comes meanwhile shares it.
        self._unsent_article_reads: dict[str, asyncio.Future[Any]] = {}
        self._settings = settings
        self.keys = Keys(settings.key_prefix)
        self.shards = Shards(settings.site_shards)
        self._increment = self._flush_redis.register_script(_INCREMENT)
        self._keep_answer = self._flush_redis.register_script(_KEEP)
        self._top = redis.register_script(_TOP)
        self._score = redis.register_script(_SCORE)
        self._seen = redis.register_script(_SEEN)
        self._pin = redis.register_script(_PIN)
        self._event_metadata = self._flush_redis.register_script(_METADATA)
        self._flush_proven_at = -math.inf
        self._line = (
            None if isinstance(self._flush_redis, ScriptedCluster) else FlushLine(self._flush_redis)
        )
        """On a single Redis, the flush client's one connection, on which flushes are sent back
        to back (see ranker/store/line.py); on a cluster, flushes go one at a time."""

    @property
    def flushes_at_once(self) -> int:
        """How many flushes may be in flight at once: two on the flush line (the next one is
        written while Redis applies the one before), one on a cluster."""
        return 1 if self._line is None else 2

    def writes_refused(self, error: BaseException) -> None:
        """Redis refused a write: say so, once, and have the background check look again (then
        every second until Redis takes writes, not once per refused write)."""
        if self.writable:
            log.warning("Redis refuses writes: %s", error)
            self.went_down.set()
        self.writable = False
        self.metrics.redis_writable.set(0)

    def writes_taken(self) -> None:
        """Redis took a write."""
        if not self.writable:
            log.info("Redis takes writes again")
        self.writable = True
        self.metrics.redis_writable.set(1)


S = TypeVar("S", bound=StoreBase)
P = ParamSpec("P")
T = TypeVar("T")


def observed(
    operation: str,
) -> Callable[
    [Callable[Concatenate[S, P], Coroutine[Any, Any, T]]],
    Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
]:
    """Time a store method as one Redis operation, and keep ``ranker_redis_up`` current."""

    def decorate(
        method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
        async def timed(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            metrics = self.metrics
            started = time.perf_counter()
            try:
                result = await method(self, *args, **kwargs)
            except MaxConnectionsError:
                # PoolExhausted, or a cluster node's pool full: too much of ranker's own work at
                # once, Redis may well be fine.
                raise
            except (RedisConnectionError, RedisTimeoutError):
                if self.available:
                    self.available = False
                    for listener in self.outage_listeners:
                        listener()
                self.went_down.set()
                metrics.redis_up.set(0)
                raise
            except ResponseError as exc:
                if refuses_writes(exc):
                    self.writes_refused(exc)
                raise
            self.available = self.reached = True
            metrics.redis_up.set(1)
            metrics.redis_command_duration.labels(operation).observe(time.perf_counter() - started)
            return result

        functools.update_wrapper(timed, method)
        return timed

    return decorate
