"""Cluster mode (``RANKER_REDIS_CLUSTER=true``): redis-py's asyncio ``RedisCluster``, with what
ranker's pipelines need from it that it does not do by itself: script calls in a pipeline.

Every script ranker runs touches the keys of one hash slot, and the client splits every
pipeline (``transaction=False``) into one per node, so nothing else changes in the store."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, ClusterPubSub, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterError,
    RedisClusterException,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class ScriptedClusterPipeline(ClusterPipeline):
    """A cluster pipeline that takes script calls (EVALSHA) and makes sure every master holds
    the scripts they name before it sends them, as redis-py's single-node pipeline does.
    Otherwise a master that lost its scripts (restarted, or a replica just promoted: Redis 7
    neither persists nor replicates SCRIPT LOAD) would refuse some of a flush's calls while the
    others were applied, and the flush could be neither retried (it would count twice) nor
    dropped."""

    cluster_client: ScriptedCluster
    check_scripts = True
    """Whether :meth:`execute` first makes sure every master holds the scripts it calls (a
    round trip to every master). A pipeline of reads may do without: a master that lost a
    script refuses that call only, which changes nothing, and the caller loads it and reads
    again."""

    def __await__(self) -> Generator[Any, None, ScriptedClusterPipeline]:
        # redis-py's Script.__call__ awaits what ``pipe.evalsha`` returns: the pipeline itself,
        # whose own __await__ starts it afresh, dropping every command queued so far.
        return self._itself().__await__()

    async def _itself(self) -> ScriptedClusterPipeline:
        return self

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> ScriptedClusterPipeline:
        """Queue a script call. redis-py blocks EVALSHA in cluster pipelines, as it cannot load
        a missing script there; :meth:`execute` does that first."""
        self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
        return self

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        queue = self._execution_strategy._command_queue  # type: ignore[attr-defined]
        shas = list(dict.fromkeys(str(cmd.args[1]) for cmd in queue if cmd.args[0] == "EVALSHA"))
        with cluster_outages():
            if shas and self.check_scripts:
                await self.cluster_client.load_scripts(shas)
            return await super().execute(raise_on_error, allow_redirections)


class ClusterUnreachable(RedisConnectionError):
    """No node of the cluster answered: an outage, as a single node that does not answer is
    (redis-py raises a RedisClusterException, which is no ConnectionError, nor a RedisError)."""


class ClusterUnavailable(ClusterUnreachable):
    """The cluster answers, but cannot serve a slot now: down (``CLUSTERDOWN``, a master
    failed and no replica took over yet), ``MASTERDOWN``, ``TRYAGAIN`` (a slot migrating), or
    no node known for the slot. As for a node that does not answer, the work is refused
    (503, ``Retry-After``) until the cluster is whole again, which a failover makes it within
    seconds; and a pipeline that failed so may have been applied in part, as one cut off."""


# What redis-py raises, out of its own retries, while the cluster cannot serve a slot
# (ClusterError: CLUSTERDOWN, MASTERDOWN, and the redirections' limit reached).
_OUTAGES = (ClusterError, TryAgainError, SlotNotCoveredError)


@contextmanager
def cluster_outages() -> Iterator[None]:
    """Raise a cluster that cannot serve (:data:`_OUTAGES`) or that no node of answers
    (``RedisClusterUnreachableError``, no RedisError) as :class:`ClusterUnavailable` or
    :class:`ClusterUnreachable`: a ``ConnectionError``, which the store counts as Redis
    unavailable, and the routes answer with 503."""
    try:
        yield
    except ClusterUnreachable:
        raise
    except RedisClusterUnreachableError as exc:
        raise ClusterUnreachable(str(exc)) from exc
    except _OUTAGES as exc:
        raise ClusterUnavailable(f"{type(exc).__name__}: {exc}") from exc


class DiscoveringPubSub(ClusterPubSub):
    """A cluster subscription that learns the cluster's slots before its first command: redis-py
    picks the node by the channel's slot, and fails with a KeyError (no RedisError, so no
    retry) while the client has not asked the cluster for them yet."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self.cluster._initialize:
            await self.cluster.initialize()
        return await super().execute_command(*args, **kwargs)


class ScriptedCluster(RedisCluster):
    """``RedisCluster`` whose pipelines are :class:`ScriptedClusterPipeline`, and which keeps
    the text of every script registered with it, to load it wherever it is missing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scripts: dict[str, str] = {}

    async def initialize(self, *args: Any, **kwargs: Any) -> ScriptedCluster:
        try:
            with cluster_outages():
                await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            if isinstance(exc.__cause__, RedisConnectionError | RedisTimeoutError | OSError):
                raise ClusterUnreachable(str(exc)) from exc
            # The nodes answered but do not make a whole cluster yet (not joined: "All slots
            # are not covered"), or no more: an outage until they do, as the next command
            # asks them again (redis-py initializes again after a failed attempt).
            raise ClusterUnavailable(f"the cluster cannot serve: {exc}") from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with cluster_outages():
            return await super().execute_command(*args, **kwargs)

    def register_script(self, script: str | bytes) -> AsyncScript:  # type: ignore[override]
        registered = AsyncScript(self, script)
        self.scripts[registered.sha] = script.decode() if isinstance(script, bytes) else script
        return registered

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ScriptedClusterPipeline:
        assert not shard_hint
        # mypy takes ClusterPipeline for abstract (an attribute its base declares); redis-py
        # makes its own the same way.
        return ScriptedClusterPipeline(self, transaction)  # type: ignore[abstract]

    def pubsub(  # type: ignore[override]
        self, node: ClusterNode | None = None, **kwargs: Any
    ) -> DiscoveringPubSub:
        return DiscoveringPubSub(self, node=node, **kwargs)

    async def load_scripts(self, shas: list[str]) -> None:
        """Load on every master each of these scripts that some master lacks."""
        # SCRIPT EXISTS and SCRIPT LOAD go to every master; redis-py answers, per sha, whether
        # all of them hold it.
        held = await self.script_exists(*shas)
        for sha, everywhere in zip(shas, held, strict=True):
            if not everywhere and sha in self.scripts:
                await self.script_load(self.scripts[sha])


async def wait_on_masters(
    cluster: ScriptedCluster, keys: Iterable[str], replicas: int, timeout_ms: int
) -> int:
    """``WAIT replicas timeout_ms`` on the master of each of ``keys``' slots, all at once;
    the fewest replicas any of them reached. Each goes over the client's connection to that
    master, so a client of one connection per node waits for all the writes it sent there."""
    with cluster_outages():
        masters = {node.name: node for node in map(cluster.get_node_from_key, keys) if node}
    if not masters:
        return replicas
    # Every WAIT settles before an error is raised: one still running would hold its
    # master's only connection when the next flush wants it.
    replies = await asyncio.gather(
        *(
            cluster.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
            for node in masters.values()
        ),
        return_exceptions=True,
    )
    reached = replicas
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
        reached = min(reached, int(reply))
    return reached


def open_cluster(urls: tuple[str, ...], **options: Any) -> ScriptedCluster:
    """A cluster client that learns the cluster from the first of ``urls`` that answers: the
    first URL gives the connection options (credentials, TLS), the others their address only.
    Once connected, the client takes the nodes and slots from the cluster itself, so a seed
    that is down later does not matter either."""
    others = [ClusterNode(_host(url), _port(url)) for url in urls[1:]]
    cluster = ScriptedCluster.from_url(urls[0], startup_nodes=others, **options)
    assert isinstance(cluster, ScriptedCluster)
    return cluster


def _host(url: str) -> str:
    return urlsplit(url).hostname or "localhost"


def _port(url: str) -> int:
    return urlsplit(url).port or 6379
