"""The timers every connection shares: the write :class:`Outbox` and the :class:`Keepalive`.

One of each per server instead of one per connection: an idle connection
costs no task and no timer (see :mod:`papo.wsconn`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Flushable(Protocol):
    def flush(self) -> None: ...


class Pingable(Protocol):
    ping_at: float | None

    def ping(self, now: float) -> None: ...

    def ping_unanswered(self) -> None: ...


class Outbox:
    """Connections owed frames, flushed together: one write per connection per flush.

    Everything a connection is owed until the next flush leaves in one
    ``transport.write``. On loopback and LAN most of a server's time goes to
    the kernel's per-write cost, so fewer, larger writes are the main lever.

    Flushing is self-clocking: when idle, frames leave at the end of the
    current event-loop iteration; when the last flush took T seconds (the
    server is write-bound), the next waits until T has passed since it ended
    (at most ``MAX_DELAY``), so messages arriving meanwhile share the writes.
    Latency stays near one flush time while the cost per message falls as
    load rises.
    """

    MAX_DELAY = 0.02

    __slots__ = ("dirty", "loop", "next_at", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[Flushable] = []
        self.scheduled = False
        self.next_at = 0.0

    def owe(self, link: Flushable) -> None:
        self.dirty.append(link)
        if not self.scheduled:
            self.scheduled = True
            wait = self.next_at - time.monotonic()
            if wait > 0:
                self.loop.call_later(wait, self.flush)
            else:
                self.loop.call_soon(self.flush)

    def flush(self) -> None:
        started = time.monotonic()
        self.scheduled = False
        dirty, self.dirty = self.dirty, []
        for link in dirty:
            link.flush()
        ended = time.monotonic()
        self.next_at = ended + min(ended - started, self.MAX_DELAY)


class Keepalive:
    """Pings every open connection each ``interval``; closes those silent ``timeout`` after.

    The connections are spread over ``SLOTS`` groups and one timer visits a
    group every ``interval / SLOTS`` seconds, so the pings of 10 000
    connections do not all leave in one event-loop step. A connection joins the
    group visited last, so its first ping comes about ``interval`` after it
    opened, as with the library's keepalive. A ping unanswered for
    ``timeout`` closes its connection with 1011 ("keepalive ping timeout"), as
    the library's own keepalive does; the check runs at every tick, so the
    timeout is honoured to within one tick.
    """

    SLOTS = 20

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float | None, timeout: float | None
    ) -> None:
        self.loop = loop
        self.interval = interval
        self.timeout = timeout
        self.groups: list[set[Pingable]] = [set() for _ in range(self.SLOTS)]
        self.waiting: set[Pingable] = set()  # a ping sent and not answered yet
        self._tick = 0  # the group the next tick visits
        self._timer: asyncio.TimerHandle | None = None

    def add(self, conn: Pingable) -> None:
        if not self.interval:
            return
        # The group visited last: its next visit is (almost) a whole interval away.
        self.groups[self._tick - 1].add(conn)
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval / self.SLOTS, self._visit)

    def remove(self, conn: Pingable) -> None:
        for group in self.groups:
            group.discard(conn)
        self.waiting.discard(conn)

    def answered(self, conn: Pingable) -> None:
        self.waiting.discard(conn)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _visit(self) -> None:
        assert self.interval
        now = self.loop.time()
        if self.timeout and self.waiting:
            late = [
                c for c in self.waiting if c.ping_at is not None and now - c.ping_at >= self.timeout
            ]
            for conn in late:
                self.waiting.discard(conn)
                conn.ping_unanswered()
        group = self.groups[self._tick]
        self._tick = (self._tick + 1) % self.SLOTS
        for conn in group:
            if conn.ping_at is None:
                conn.ping(now)
                if self.timeout:
                    self.waiting.add(conn)
        self._timer = self.loop.call_later(self.interval / self.SLOTS, self._visit)
