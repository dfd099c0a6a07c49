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


class SlidingWindow:
    """Events per key over the last ``window`` seconds: :meth:`hit` says when a key passed
    ``limit`` (0: never).

    What closes a flood: unlike a token bucket's run of refusals, which a
    client sending at ten times the rate resets with every token it gets back,
    the count of the last seconds keeps growing for as long as the flood goes
    on. Only the newest ``limit + 1`` stamps of a key are kept, and keys whose
    newest stamp left the window are swept out as the table grows.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._stamps: dict[str, deque[float]] = {}
        self._sweep_at = min(1024, max_keys)

    def hit(self, key: str) -> bool:
        """Count one event of ``key`` now; True when more than ``limit`` fell in the window."""
        if self.limit <= 0:
            return False
        now = self.clock()
        stamps = self._stamps.get(key)
        if stamps is None:
            if len(self._stamps) >= self._sweep_at:
                self._sweep(now)
            stamps = self._stamps[key] = deque(maxlen=self.limit + 1)
        stamps.append(now)
        return len(stamps) > self.limit and stamps[0] > now - self.window

    def count(self, key: str) -> int:
        """How many events of ``key`` fell in the window (at most ``limit + 1``)."""
        stamps = self._stamps.get(key)
        if stamps is None:
            return 0
        horizon = self.clock() - self.window
        return sum(1 for stamp in stamps if stamp > horizon)

    def _sweep(self, now: float) -> None:
        horizon = now - self.window
        for key in [k for k, stamps in self._stamps.items() if stamps[-1] <= horizon]:
            del self._stamps[key]
        while len(self._stamps) >= self.max_keys:  # bound memory under a spray of keys
            self._stamps.pop(next(iter(self._stamps)))
        self._sweep_at = min(self.max_keys, max(1024, 2 * len(self._stamps)))
