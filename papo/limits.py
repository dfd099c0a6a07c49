"""Limits that protect the server and other users from one client.

Pure bookkeeping driven by a monotonic clock passed in, so it can be tested
without sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class AttemptLimiter:
    """At most ``limit`` failed attempts per key within ``window`` seconds."""

    def __init__(
        self, limit: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        horizon = self.clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: it may try now)."""
        failures = self._recent(key)
        if self.limit <= 0 or failures is None or len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window - self.clock())

    def failed(self, key: str) -> None:
        self._failures.setdefault(key, deque()).append(self.clock())
        if len(self._failures) > 100_000:  # bound memory under a spray of names
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


class TokenBucket:
    """``rate`` events a second on average, bursts of up to ``burst``; rate 0: unlimited."""

    __slots__ = ("burst", "clock", "rate", "refused", "stamp", "tokens")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.stamp = clock()
        self.refused = 0  # refusals since the last accepted event

    def take(self) -> bool:
        """Spend one token; False (and one more refusal counted) when none is left."""
        if self.rate <= 0:
            return True
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused = 0
            return True
        self.refused += 1
        return False
