"""A private cluster's nodes by the role they play for a key: the master serving its slot, or
that master's replica, to pause, kill or restart (never the session cluster's)."""

from __future__ import annotations

from redis.asyncio import Redis

from ranker.runtime.cluster import LocalCluster
from ranker.runtime.embedded import EmbeddedRedis
from ranker.store.cluster import open_cluster


async def serving(cluster: LocalCluster, key: str, *, replica: bool = False) -> EmbeddedRedis:
    """The node serving ``key``'s slot now (its master, or with ``replica`` a replica of it),
    as the cluster tells a fresh client."""
    client = open_cluster(tuple(cluster.urls), decode_responses=True)
    try:
        await client.initialize()
        node = client.get_node_from_key(key)
    finally:
        await client.aclose()
    assert node is not None
    port = int(node.port)
    if replica:
        master = Redis(port=port, decode_responses=True)
        try:
            # redis-py reads "slave0:ip=...,port=...,state=online,..." as a dict.
            port = int((await master.info("replication"))["slave0"]["port"])
        finally:
            await master.aclose()
    return next(server for server in cluster.nodes if server.port == port)
