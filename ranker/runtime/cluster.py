"""A real Redis Cluster on this machine, for tests, benchmarks and newcomers: masters and
their replicas started from ``redis-server``/``valkey-server`` with ``--cluster-enabled yes``
on free loopback ports, joined by ``redis-cli --cluster create``, and stopped together."""

from __future__ import annotations

import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Container
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from .embedded import EmbeddedRedis, EmbeddedServerError, find_server_binary

CLUSTER_NODE_TIMEOUT_MS = 2000
"""How long a master may be unreachable before the cluster fails it over to a replica."""


def cluster_port(exclude: Container[int] = ()) -> int:
    """A free loopback port whose cluster bus port (10,000 higher) is free too: at most 55,535,
    below the ephemeral range a free port is usually taken from. Neither may be in
    ``exclude`` (the ports other nodes of the same cluster will listen on, not yet started)."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20_000, 45_000)
        if port in exclude or port + 10_000 in exclude:
            continue
        if _is_free(port) and _is_free(port + 10_000):
            return port
    raise EmbeddedServerError("no free port pair for a cluster node")


def _distinct_ports(count: int) -> list[int]:
    """``count`` cluster ports, none another's, nor another's bus port."""
    taken: set[int] = set()
    ports = []
    for _ in range(count):
        port = cluster_port(exclude=taken)
        taken |= {port, port + 10_000}
        ports.append(port)
    return ports


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def find_cli(server_binary: str) -> str:
    """``valkey-cli`` or ``redis-cli``: beside the server first, then on PATH."""
    beside = Path(server_binary).with_name(Path(server_binary).name.replace("-server", "-cli"))
    if beside.is_file():
        return str(beside)
    for name in ("valkey-cli", "redis-cli"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise EmbeddedServerError(
        "no redis-cli or valkey-cli found to join the cluster (apt-get install redis-tools)"
    )


class LocalCluster:
    """``masters`` masters with ``replicas`` replicas each, data under ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        binary: str | None = None,
    ) -> None:
        self.binary = find_server_binary(binary or shutil.which("redis-server"))
        self.cli = find_cli(self.binary)
        self.masters = masters
        self.replicas = replicas
        self.nodes = [
            EmbeddedRedis(
                data_dir / f"node-{n}",
                binary=self.binary,
                persist=False,
                port=port,
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(CLUSTER_NODE_TIMEOUT_MS),
                    # A replica (a new one, or a failed master back) syncs at once, not after
                    # the 5 s Redis waits by default for more replicas to share the transfer.
                    "--repl-diskless-sync-delay",
                    "0",
                ),
            )
            for n, port in enumerate(_distinct_ports(masters * (1 + replicas)))
        ]

    @property
    def urls(self) -> list[str]:
        """Every node's URL; any one of them is a seed for a cluster client."""
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, join them, and wait until every node says the cluster is ok."""
        self.start_nodes()
        self.join(timeout)

    def start_nodes(self) -> None:
        """Start every node, not joined yet: each a cluster of its own with no slots."""
        try:
            for node in self.nodes:
                # A cluster's layout from an earlier run names other ports: start afresh.
                (node.data_dir / "nodes.conf").unlink(missing_ok=True)
                self._start_node(node)
        except BaseException:
            self.stop()
            raise

    def _start_node(self, node: EmbeddedRedis) -> None:
        """Start a node not joined yet; if another process took its port (or its bus port)
        between the check and the bind, on other free ones."""
        for attempt in range(3):
            try:
                node.start()
                return
            except EmbeddedServerError:
                if attempt == 2 or (_is_free(node.port) and _is_free(node.port + 10_000)):
                    raise
                others = {p for n in self.nodes if n is not node for p in (n.port, n.port + 10_000)}
                node.port = cluster_port(exclude=others)

    def join(self, timeout: float = 30.0) -> None:
        """Join the started nodes into one cluster, and wait until every node says it is ok."""
        try:
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            # --cluster-yes takes the layout redis-cli proposes: each replica on another master.
            joined = subprocess.run(  # noqa: S603 - a fixed argv, no shell
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if joined.returncode != 0:
                raise EmbeddedServerError(f"joining the cluster failed: {joined.stdout[-500:]}")
            self._wait_until_ok(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(self._is_ok(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"the cluster was not ok within {timeout:g} s")
            time.sleep(0.1)

    def _is_ok(self, node: EmbeddedRedis) -> bool:
        """The node says the cluster is ok, every slot served, knows every replica as one (a
        replica shows as a master to the others until gossip tells them otherwise), and, a
        replica, is in sync with its master."""
        client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=1)
        try:
            info = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
            nodes = client.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
            replication = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        replicas = sum("slave" in known["flags"] for known in nodes.values())
        slots = str(info.get("cluster_state") == "ok" and info.get("cluster_slots_ok"))
        return bool(
            slots == "16384"
            and replicas == len(self.nodes) - self.masters
            and self._synced(replication)
        )

    def _synced(self, replication: dict[str, Any]) -> bool:
        """A replica holds its master's data, and a master counts each of its replicas online:
        WAIT counts only those, and a replica's link is up before its master counts it (a batch
        sent in between waited for a replica that had not acknowledged yet)."""
        if replication.get("role") == "slave":
            return replication.get("master_link_status") == "up"
        online = [
            value
            for key, value in replication.items()
            if re.fullmatch(r"slave\d+", key) and value.get("state") == "online"
        ]
        return len(online) == self.replicas

    def stop(self) -> None:
        """Stop every node that runs (each a SIGTERM, a SIGKILL if it hangs)."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_dev_cluster(data_dir: Path) -> int:
    """``ranker dev-cluster``: a local cluster until SIGINT or SIGTERM; its exit status."""
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    try:
        cluster = LocalCluster(data_dir.resolve())
        cluster.start()
    except EmbeddedServerError as exc:
        print(f"ranker dev-cluster: {exc}", file=sys.stderr)
        return 1
    try:
        print("cluster ok: " + " ".join(cluster.urls), flush=True)
        print(
            "ranker on it: RANKER_REDIS_CLUSTER=true RANKER_REDIS_URL=" + ",".join(cluster.urls),
            flush=True,
        )
        print("Ctrl-C stops every node", flush=True)
        stopped.wait()
    finally:
        cluster.stop()
    return 0
