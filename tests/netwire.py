"""A delay line between two network namespaces: the faulty wire of the network-fault tests.

Run as a process (``python tests/netwire.py NETNS OUTER INNER``, as root). It
opens a TUN device named OUTER in the namespace it starts in, and one named
INNER in the namespace NETNS, and copies every IP packet from one to the
other, each delayed by ``delay`` ± ``jitter`` milliseconds (uniformly, so
packets may overtake each other, as with ``tc netem``) and each dropped with
probability ``loss``. ``loss 1`` is a cut link: nothing passes.

Why not ``tc qdisc ... netem``: the kernel this project runs on is built
without ``sch_netem`` (``CONFIG_NET_SCH_NETEM`` is not set), and a TUN device
exists in every Linux kernel a container may get. The fault is the same at
the packets: the two ends' kernels see a slow, lossy, or dead link, and their
TCP stacks retransmit, back off and time out as over a real one.

The devices are bound to this process: when it ends (or is killed) they
disappear, and with them the link. It reads commands on stdin, one a line,
and answers each with one line on stdout:

``shape DELAY_MS JITTER_MS LOSS``  → ``ok``
``stats``                         → ``passed N dropped M``
end of input                       → the process ends

It prints ``ready`` once both devices exist.
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import itertools
import os
import random
import select
import struct
import sys
import threading
import time
from collections.abc import Iterator

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000


def open_tun(name: str) -> int:
    """A TUN device (IP packets, no extra header) named ``name``, bound to this process."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def enter_netns(name: str) -> None:
    """Move this (single-threaded) process into the named network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class Line:
    """Both directions of the wire, and how it treats packets now."""

    def __init__(self, outer: int, inner: int) -> None:
        self.ends = {outer: inner, inner: outer}
        self.shape = (0.0, 0.0, 0.0)  # delay s, jitter s, loss probability
        self.passed = 0
        self.dropped = 0
        self.rng = random.Random()

    def run(self) -> None:
        queue: list[tuple[float, int, int, bytes]] = []  # (due, order, to, packet)
        order = itertools.count()
        while True:
            timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
            readable, _, _ = select.select(list(self.ends), [], [], timeout)
            for fd in readable:
                self._take(fd, queue, order)
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _, _, to, packet = heapq.heappop(queue)
                try:
                    os.write(to, packet)
                    self.passed += 1
                except OSError:  # the device is down, or its queue full: lost, as on a wire
                    self.dropped += 1

    def _take(
        self, fd: int, queue: list[tuple[float, int, int, bytes]], order: Iterator[int]
    ) -> None:
        while True:
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                return
            delay, jitter, loss = self.shape
            if loss and self.rng.random() < loss:
                self.dropped += 1
                continue
            due = time.monotonic() + max(0.0, delay + self.rng.uniform(-jitter, jitter))
            heapq.heappush(queue, (due, next(order), self.ends[fd], packet))


def control(line: Line) -> None:
    """Apply the commands read on stdin; end the process when stdin ends (the test is gone)."""
    for command in sys.stdin:
        words = command.split()
        if words[:1] == ["shape"] and len(words) == 4:
            delay, jitter, loss = (float(w) for w in words[1:])
            line.shape = (delay / 1000, jitter / 1000, loss)
            print("ok", flush=True)
        elif words == ["stats"]:
            print(f"passed {line.passed} dropped {line.dropped}", flush=True)
        else:
            print(f"error: unknown command {command.strip()!r}", flush=True)
    os._exit(0)


def main(argv: list[str]) -> None:
    netns, outer_name, inner_name = argv
    outer = open_tun(outer_name)
    enter_netns(netns)  # before any thread starts: setns moves only the calling thread
    inner = open_tun(inner_name)
    line = Line(outer, inner)
    threading.Thread(target=control, args=(line,), daemon=True).start()
    print("ready", flush=True)
    line.run()


if __name__ == "__main__":
    main(sys.argv[1:])
