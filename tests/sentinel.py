"""Redis Sentinel for tests: one master, one replica and three sentinels of the test's own.

Every process is Debian's ``redis-server`` (a sentinel is ``redis-server FILE
--sentinel``) on free ports, with its files in the test's temporary
directory. The sentinels declare a master down after 1 s without answers
(``down-after-milliseconds``), so a failover takes a few seconds.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import redis as redis_py

from tests.helpers import RedisServer, free_port

MASTER_NAME = "papo"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` (a blocking check) until true; fail saying ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)


def ask(port: int, *command: str) -> Any:
    """One command to the Redis (or sentinel) on ``port``; None when it does not answer."""
    client = redis_py.Redis(port=port, decode_responses=True, socket_timeout=5)
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]
    except redis_py.RedisError:
        return None
    finally:
        client.close()


class SentinelProcess:
    """One ``redis-server --sentinel`` watching the master named :data:`MASTER_NAME`."""

    def __init__(self, directory: Path, master_port: int) -> None:
        self.directory = directory
        self.port = free_port()
        self.master_port = master_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "sentinel.conf"  # the sentinel rewrites it as it learns
        config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.directory}\n"
            f"logfile {self.directory / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: ask(self.port, "PING") is True, "a sentinel answers", 20)
        return self

    def master(self) -> int | None:
        """The port of the master this sentinel names now."""
        reply = ask(self.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return int(reply[1]) if reply else None

    def knows(self, replicas: int, sentinels: int) -> bool:
        """It sees ``replicas`` healthy replicas and ``sentinels`` other sentinels."""
        found = ask(self.port, "SENTINEL", "replicas", MASTER_NAME) or []
        healthy = [r for r in found if "s_down" not in _fields(r).get("flags", "")]
        others = ask(self.port, "SENTINEL", "sentinels", MASTER_NAME) or []
        return len(healthy) >= replicas and len(others) >= sentinels

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        path = self.directory / "sentinel.log"
        return path.read_text() if path.exists() else ""


class SentinelSetup:
    """A master, its replica and three sentinels; ``url`` is papo's ``--redis``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.master = RedisServer(directory / "redis-a")
        self.replica = RedisServer(directory / "redis-b")
        self.replica.options = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.sentinels = [
            SentinelProcess(directory / f"sentinel-{i}", self.master.port) for i in range(3)
        ]

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{MASTER_NAME}"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, self.replica]

    def start(self) -> SentinelSetup:
        self.master.start()
        self.replica.start()
        wait_for(lambda: self.in_sync(self.replica), "the replica copies the master", 30)
        for sentinel in self.sentinels:
            sentinel.start()
        wait_for(
            lambda: all(s.knows(replicas=1, sentinels=2) for s in self.sentinels),
            "every sentinel knows the replica and the other sentinels",
            60,
        )
        return self

    def in_sync(self, server: RedisServer) -> bool:
        """``server`` is a replica whose link to its master is up."""
        info = _info(server.port)
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def current_master(self) -> RedisServer | None:
        """The server that every sentinel names as the master, once they agree."""
        named = {s.master() for s in self.sentinels}
        if len(named) != 1:
            return None
        port = named.pop()
        return next((r for r in self.servers if r.port == port), None)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop(signal.SIGKILL)

    def logs(self) -> str:
        """Every sentinel's and server's log, for a failing assertion."""
        parts = [f"--- sentinel {s.port}\n{s.log()[-3000:]}" for s in self.sentinels]
        parts += [f"--- redis {r.port}\n{r.log()[-3000:]}" for r in self.servers]
        return "\n".join(parts)


def _info(port: int) -> dict[str, str]:
    raw = ask(port, "INFO", "replication")
    return {str(k): str(v) for k, v in cast(dict[str, Any], raw or {}).items()}


def _fields(reply: object) -> dict[str, str]:
    """A SENTINEL replicas entry (a dict, or a flat name/value list) as a dict."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    items = cast(list[str], reply)
    return dict(zip(items[::2], items[1::2], strict=False))
