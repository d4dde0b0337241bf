"""A private cluster's nodes by the role they play for a key: the master serving its slot, or
that master's replica, to pause, kill or restart (never the session cluster's)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ranker.runtime.cluster import LocalCluster
from ranker.runtime.embedded import EmbeddedRedis
from ranker.store.cluster import open_cluster


async def serving(cluster: LocalCluster, key: str, *, replica: bool = False) -> EmbeddedRedis:
    """The node serving ``key``'s slot now (its master, or with ``replica`` a replica of it),
    as the cluster tells a fresh client."""
    # Seeded by the nodes that run: a client gives up on a seed that refuses it.
    running = tuple(server.url for server in cluster.nodes if server.pid is not None)
    client = open_cluster(running, decode_responses=True)
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


async def says_ok(server: EmbeddedRedis) -> bool:
    """Whether ``server`` answers and says the cluster is ok (every slot served)."""
    client = Redis(port=server.port, socket_timeout=1, decode_responses=True)
    try:
        info = await client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    except RedisError:
        return False
    finally:
        await client.aclose()
    return bool(info.get("cluster_state") == "ok")


async def in_sync_replica(server: EmbeddedRedis) -> bool:
    """Whether ``server`` is a replica holding its master's data."""
    client = Redis(port=server.port, socket_timeout=1, decode_responses=True)
    try:
        replication = await client.info("replication")
    except RedisError:
        return False
    finally:
        await client.aclose()
    return bool(replication["role"] == "slave" and replication["master_link_status"] == "up")
