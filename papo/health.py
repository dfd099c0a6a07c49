"""Whether the store can write, as its last writes said: what ``/healthz`` reports.

A store's :class:`WriteHealth` hears every write that failed and the writes
that prove it works again (a batch of messages committed, or the small probe
write ``/healthz`` makes while writes fail). A read cannot tell: under SQLite's
WAL a read, and even taking the write lock, succeed on a full disk while every
``say`` gets ``store_unavailable``. So health is the outcome of real writes:
failing from the first write that failed until the first one that succeeded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

log = logging.getLogger(__name__)


class WriteHealth:
    """The outcome of a store's last writes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.failing_since: float | None = None
        self.failures = 0  # writes failed since the last that succeeded
        self.reason = ""

    def failed(self, reason: str) -> None:
        """A write failed (``reason`` says why, for the health check and the log)."""
        if self.failing_since is None:
            self.failing_since = self.clock()
            log.warning("store writes are failing: %s", reason)
        self.failures += 1
        self.reason = reason

    def succeeded(self) -> None:
        """A write succeeded: the store works."""
        if self.failing_since is not None:
            log.info("store writes succeed again after %d failures", self.failures)
        self.failing_since = None
        self.failures = 0
        self.reason = ""

    @property
    def problem(self) -> str | None:
        """Why the store is unhealthy, or None when its last write succeeded."""
        if self.failing_since is None:
            return None
        since = datetime.fromtimestamp(self.failing_since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"store writes failing since {since} ({self.failures} failed): {self.reason}"
