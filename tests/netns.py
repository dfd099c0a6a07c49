"""A network namespace of the test's own, joined to the test's by faulty wires.

:class:`Namespace` creates one (``papo-nf-<pid>-<n>``: other sessions may
run tests on the same machine at the same time). Each :class:`FaultyLink`
into it is the delay line of :mod:`tests.netwire` between a TUN device in the
test's namespace and one in the new namespace, both ends with private
addresses (``10.128.0.0/9``, picked from the pid). :meth:`FaultyLink.shape`
delays, jitters and drops packets; ``shape(loss=1.0)`` cuts the link. Two
links give two papo instances separate paths to one Redis, so one of them can
be cut off alone. :class:`NamespacedRedis` is a real ``redis-server`` inside
the namespace, listening on the far ends of the links only.

:meth:`Namespace.close` undoes everything (each wire's process ends, its
devices go with it; the namespace's processes are killed, the namespace
deleted) and is safe to call twice or after a failed start.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, RedisServer

PREFIX = "papo-nf-"
BASE = ipaddress.IPv4Address("10.128.0.0")  # a /9 of private addresses, in /30 blocks
BLOCKS = 2**21
_created = itertools.count()


def netns_missing() -> str | None:
    """Why the network-fault tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the tests as root, as CI does)"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed (apt-get install iproute2)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: the kernel or container has no TUN devices"
    return None


def run(*argv: str) -> str:
    """A command that must succeed; its output."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def remove_namespace(name: str) -> None:
    """Kill what runs in namespace ``name`` (processes this test started there) and delete it."""
    pids = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def remove_orphans() -> None:
    """Namespaces of earlier test runs whose process is gone (killed before cleaning up)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in listed.stdout.splitlines():
        match = re.match(rf"{PREFIX}(\d+)-\d+\b", line)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            remove_namespace(match.group(0))
        except PermissionError:
            pass  # alive (another user's)


class Namespace:
    """A network namespace of the test's own, and the faulty links into it."""

    def __init__(self) -> None:
        self.serial = next(_created)
        self.name = f"{PREFIX}{os.getpid()}-{self.serial}"
        self.links: list[FaultyLink] = []
        self._made = False

    def open(self) -> Namespace:
        remove_orphans()
        run("ip", "netns", "add", self.name)
        self._made = True
        try:
            run(*self.exec_prefix(), "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def exec_prefix(self) -> list[str]:
        """What runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def link(self) -> FaultyLink:
        """One more link from the test's namespace into this one (its own addresses)."""
        link = FaultyLink(self, len(self.links))
        self.links.append(link)
        return link.open()

    def close(self) -> None:
        """End every link and everything running inside, and delete the namespace."""
        for link in self.links:
            link.close()
        if self._made:
            remove_namespace(self.name)
            self._made = False


class FaultyLink:
    """One delay line into a :class:`Namespace`; see the module docstring."""

    def __init__(self, namespace: Namespace, index: int) -> None:
        pid = os.getpid()
        self.namespace = namespace
        tag = f"{pid}x{namespace.serial}x{index}"
        self.outer_dev = f"nfo{tag}"[:15]
        self.inner_dev = f"nfi{tag}"[:15]
        block = BASE + 4 * ((pid * 64 + namespace.serial * 8 + index) % BLOCKS)
        self.outer_address = str(block + 1)  # this end, in the test's namespace
        self.address = str(block + 2)  # the far end, in the namespace
        self.wire: subprocess.Popen[str] | None = None

    def open(self) -> FaultyLink:
        try:
            line = [str(ROOT / "tests" / "netwire.py"), self.namespace.name]
            self.wire = subprocess.Popen(
                [sys.executable, *line, self.outer_dev, self.inner_dev],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            if self._answer(10.0) != "ready":
                raise RuntimeError("the delay line did not start")
            run(
                "ip", "addr", "add", self.outer_address, "peer", self.address, "dev", self.outer_dev
            )
            run("ip", "link", "set", self.outer_dev, "up")
            inside = self.namespace.exec_prefix()
            run(
                *inside, "ip", "addr", "add", self.address, "peer", self.outer_address,
                "dev", self.inner_dev,
            )  # fmt: skip
            run(*inside, "ip", "link", "set", self.inner_dev, "up")
        except BaseException:
            self.close()
            raise
        return self

    def shape(self, delay_ms: float = 0, jitter_ms: float = 0, loss: float = 0) -> None:
        """Delay each packet by ``delay_ms`` ± ``jitter_ms`` and drop it with ``loss``;
        all zero heals the link, ``loss=1`` cuts it."""
        assert 0 <= loss <= 1 and 0 <= jitter_ms <= delay_ms
        self._ask(f"shape {delay_ms} {jitter_ms} {loss}", "ok")

    def stats(self) -> tuple[int, int]:
        """Packets passed and dropped so far."""
        words = self._ask("stats", "passed").split()
        return int(words[1]), int(words[3])

    def _ask(self, command: str, expected: str) -> str:
        assert self.wire is not None and self.wire.stdin is not None
        self.wire.stdin.write(command + "\n")
        self.wire.stdin.flush()
        answer = self._answer(10.0)
        if not answer.startswith(expected):
            raise RuntimeError(f"the delay line answered {answer!r} to {command!r}")
        return answer

    def _answer(self, timeout: float) -> str:
        assert self.wire is not None and self.wire.stdout is not None
        ready, _, _ = select.select([self.wire.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError("the delay line did not answer")
        return self.wire.stdout.readline().strip()

    def close(self) -> None:
        """End the delay line: its devices, and so the link, go with it."""
        if self.wire is not None:
            if self.wire.poll() is None:
                self.wire.kill()
            self.wire.wait(10)
            for pipe in (self.wire.stdin, self.wire.stdout):
                if pipe is not None:
                    pipe.close()
            self.wire = None


class NamespacedRedis(RedisServer):
    """A real ``redis-server`` inside ``namespace``, on the far end of every link into it.

    ``url`` is the first link's; :meth:`url_via` another's.
    """

    def __init__(self, directory: Path, namespace: Namespace) -> None:
        super().__init__(directory)
        self.host = namespace.links[0].address
        self.port = 6379  # the namespace is the test's own: no other server is in it
        self.wrapper = namespace.exec_prefix()
        # Its clients come from other addresses than its own, not loopback, so
        # Redis's protected mode (no password) would refuse them.
        self.options = ["--protected-mode", "no"]
        self.options += ["--bind", *(link.address for link in namespace.links)]

    def url_via(self, link: FaultyLink) -> str:
        return f"redis://{link.address}:{self.port}/0"
