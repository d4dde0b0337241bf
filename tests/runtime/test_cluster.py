"""``ranker.runtime.cluster``: a real local Redis Cluster, up and joined, then gone."""

from __future__ import annotations

import socket
from pathlib import Path

import redis

from ranker.runtime.cluster import LocalCluster, cluster_port


def node_roles(url: str) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        # redis-py parses it: address -> the node's fields, its flags among them.
        nodes: dict[str, dict[str, str]] = client.execute_command(  # type: ignore[no-untyped-call]
            "CLUSTER NODES"
        )
    finally:
        client.close()
    return ["master" if "master" in node["flags"] else "replica" for node in nodes.values()]


def test_the_local_cluster_has_three_masters_three_replicas_and_every_slot(
    local_cluster: LocalCluster,
) -> None:
    roles = node_roles(local_cluster.urls[0])
    assert sorted(roles) == ["master"] * 3 + ["replica"] * 3
    for url in local_cluster.urls:
        client = redis.Redis.from_url(url)
        try:
            info = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
        finally:
            client.close()
        assert info["cluster_state"] == "ok"
        assert str(info["cluster_slots_ok"]) == "16384"


def test_once_joined_every_master_counts_its_replica_online(tmp_path: Path) -> None:
    # WAIT counts only the replicas a master sees online: a batch sent as soon as the cluster
    # is up, with RANKER_REDIS_WAIT_REPLICAS=1, must not wait for one still coming online.
    with LocalCluster(tmp_path, masters=3, replicas=1) as cluster:
        for url in cluster.urls:
            client = redis.Redis.from_url(url)
            try:
                replication = client.info("replication")
            finally:
                client.close()
            if replication["role"] == "master":
                assert replication["connected_slaves"] == 1
                assert replication["slave0"]["state"] == "online"
            else:
                assert replication["master_link_status"] == "up"


def test_a_cluster_stops_every_node_it_started(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, masters=3, replicas=0)
    cluster.start()
    ports = [node.port for node in cluster.nodes]
    cluster.stop()
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, port


def test_node_ports_leave_room_for_their_bus_ports() -> None:
    assert all(cluster_port() + 10_000 <= 65_535 for _ in range(20))


def test_a_clusters_nodes_never_share_a_port_nor_take_anothers_bus_port(tmp_path: Path) -> None:
    for _ in range(20):
        nodes = LocalCluster(tmp_path, masters=3, replicas=1).nodes
        ports = [node.port for node in nodes]
        listened = ports + [port + 10_000 for port in ports]
        assert len(set(listened)) == len(listened)


def test_a_node_whose_port_was_taken_meanwhile_starts_on_another(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, masters=3, replicas=0)
    taken = cluster.nodes[1].port
    with socket.socket() as squatter:  # another process binds it after the check
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        cluster.start()
        try:
            assert cluster.nodes[1].port != taken
            assert all(node.pid is not None for node in cluster.nodes)
        finally:
            cluster.stop()
