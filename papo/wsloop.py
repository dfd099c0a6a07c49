"""The timers every connection shares: the write :class:`Outbox` and the :class:`Keepalive`.

One of each per server instead of one per connection: an idle connection
costs no task and no timer (see :mod:`papo.wsconn`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol


class Flushable(Protocol):
    def flush(self) -> None: ...


class Pingable(Protocol):
    ping_at: float | None

    def ping(self, now: float) -> None: ...

    def ping_unanswered(self) -> None: ...


class Outbox:
    """Connections owed frames, written in the order they became owed, a slice at a time.

    Everything a connection is owed until its turn leaves in one
    ``transport.write``. On loopback and LAN most of a server's time goes to
    the kernel's per-write cost (5-8 µs here, whatever the size), so fewer,
    larger writes are the main lever, and the writes' order is the latency.

    The owed connections form one queue, written ``SLICE`` at a time; between
    slices the event loop gets a turn (reads, timers), and a message that
    arrives meanwhile is appended to the buffers of the connections still
    waiting, so it leaves with their current write instead of one pass later.
    When idle, a message leaves at the end of the current event-loop
    iteration. Under load, a connection's next write comes one pass of the
    queue after its last, so everything it was sent during that pass shares
    one write: the cost per message falls as load rises, and a message waits
    at most about one pass (uniformly less on average) instead of the rest of
    a flush plus a paced gap plus its place in the next flush.
    """

    #: Connections written before the event loop gets a turn (~0.5 ms of writes).
    SLICE = 64

    __slots__ = ("loop", "owed", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.owed: deque[Flushable] = deque()
        self.scheduled = False

    def owe(self, link: Flushable) -> None:
        self.owed.append(link)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the next slice of owed connections; come back for the rest."""
        owed = self.owed
        pop = owed.popleft
        try:
            for _ in range(min(self.SLICE, len(owed))):
                pop().flush()
        finally:  # even if a write raised: the rest must not wait forever
            if owed:
                self.loop.call_soon(self.flush)
            else:
                self.scheduled = False


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
