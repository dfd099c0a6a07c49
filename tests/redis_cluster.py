"""A real Redis Cluster of the test's own: 3 masters, one replica each, from Debian's redis-server.

Each node is its own ``redis-server`` process (``cluster-enabled yes``) on a
free port with its own directory; ``redis-cli --cluster create`` joins them
and gives every master a replica. Start-up waits on conditions (every node
says ``cluster_state:ok`` and knows 3 masters), with generous deadlines: on a
loaded machine it can take many seconds.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis as redis_py
from redis.exceptions import RedisError

from tests.helpers import free_port, redis_command

MASTERS = 3
NODE_TIMEOUT_MS = 3000  # a dead master is failed over after about this (plus an election)


def command(port: int, *words: str, timeout: float = 5.0) -> Any:
    """One command to one node (not to the cluster), its reply as redis-py parses it."""
    client = redis_py.Redis(port=port, socket_timeout=timeout, decode_responses=True)
    try:
        return client.execute_command(*words)  # type: ignore[no-untyped-call]
    finally:
        client.close()


class ClusterNode:
    """One ``redis-server`` of the cluster."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.bus_port = free_port()  # given, as port + 10000 may be taken or over 65535
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *redis_command(self.port, self.directory),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(self.bus_port),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # the other shards keep serving while one fails over (papo's advice too)
                "--cluster-require-full-coverage", "no",
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ping(self) -> bool:
        try:
            return bool(command(self.port, "PING", timeout=1.0))
        except (RedisError, OSError):
            return False

    def info(self, section: str) -> dict[str, Any]:
        return dict(command(self.port, "INFO", section))

    def cluster_info(self) -> dict[str, str]:
        reply = str(command(self.port, "CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in reply.split() if ":" in line)

    def role(self) -> str:
        return str(self.info("replication").get("role", ""))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text() if path.exists() else ""


class RedisClusterServers:
    """Six nodes: three masters with one replica each, made into one cluster."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [ClusterNode(directory / f"node{i}") for i in range(2 * MASTERS)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:MASTERS])
        return f"redis+cluster://{hosts}"

    def start(self, timeout: float = 120.0) -> RedisClusterServers:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            self._until(deadline, node.ping, f"node {node.port} did not start: {node.log()}")
        cli = shutil.which("redis-cli")
        assert cli is not None
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=max(10.0, deadline - time.monotonic()),
        )  # fmt: skip
        self._until(deadline, self.healthy, "the cluster did not become ok")
        return self

    def healthy(self) -> bool:
        """Every live node says ``cluster_state:ok``, there are 3 masters, each with a replica
        that has synced."""
        live = [n for n in self.nodes if n.alive()]
        try:
            if any(n.cluster_info().get("cluster_state") != "ok" for n in live):
                return False
            masters = [n for n in live if n.role() == "master"]
            if len(masters) != MASTERS:
                return False
            return all(int(m.info("replication").get("connected_slaves", 0)) >= 1
                       for m in masters) if len(live) == len(self.nodes) else True  # fmt: skip
        except (RedisError, OSError, ValueError):
            return False

    def masters(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive() and n.role() == "master"]

    def master_of(self, key: str) -> ClusterNode:
        """The master that serves ``key``'s slot now."""
        slot = self.keyslot(key)
        live = {n.port: n for n in self.nodes if n.alive()}
        for start, end, master, *_ in command(next(iter(live)), "CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return live[int(master[1])]
        raise AssertionError(f"no master serves slot {slot}")

    def keyslot(self, key: str) -> int:
        return int(
            command(next(n.port for n in self.nodes if n.alive()), "CLUSTER", "KEYSLOT", key)
        )

    def flush(self) -> None:
        """Empty every master (between tests sharing the cluster)."""
        for node in self.masters():
            command(node.port, "FLUSHALL")

    def wait_failover(self, timeout: float = 90.0) -> None:
        """Until a replica took over every slot of a killed master."""
        self._until(time.monotonic() + timeout, self.healthy, "no failover happened")

    def until_healthy(self, timeout: float = 90.0) -> None:
        """Until every node is well again (after a node was stopped for a moment)."""
        self._until(time.monotonic() + timeout, self.healthy, "the cluster is not well again")

    def rejoin(self, node: ClusterNode, timeout: float = 90.0) -> None:
        """Start a killed node again (it comes back as a replica) and wait until every
        master has a replica again."""
        node.start()
        self._until(time.monotonic() + timeout, self.healthy, "the node did not rejoin")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    @staticmethod
    def _until(deadline: float, condition: object, problem: str) -> None:
        assert callable(condition)
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise RuntimeError(problem)


def cluster_missing() -> str | None:
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install redis-server redis-tools)"
    return None
