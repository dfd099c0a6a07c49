"""Acknowledged means replicated: how many replicas must confirm a write (``--redis-wait``).

Redis replicates asynchronously: a master that dies may take its last writes
with it, and the replica Sentinel promotes never had them. ``WAIT N timeout``
after a write blocks until N replicas confirm they received everything the
connection wrote so far. The Redis store uses it in two places:

- the writer: a batch of appends is acknowledged (and its senders told) only
  after ``WAIT`` confirms it; a ``WAIT`` that times out fails the batch with
  :class:`NotReplicated` (the sender gets ``store_unavailable`` saying the
  message was not confirmed and may still arrive: it is on the master, and
  is delivered once it reaches the replicas; its retry with the same ``cid``
  is deduplicated);
- the reader: after reading the streams it writes a marker and ``WAIT``\\s for
  it, in the same pipeline; a write made after a read reaches a replica only
  after everything the read saw, so what the read returned is delivered only
  once it is on N replicas. So no instance shows a message that a failover can
  take back, and no id a client saw can be handed out again.

:class:`ReplicaWait` decides N: the configured number, or (``--redis-wait``
not given) 1 when the master has replicas and 0 when it has none, as the
master's ``INFO replication`` says at start and at every heartbeat (so after
a failover too: the promoted replica may have none left). With
``--redis-wait 0`` nothing waits and nothing asks: no ``WAIT``, no
``INFO replication``, and the health check's probe is a plain ``SET``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from papo.store import StoreUnconfirmed

log = logging.getLogger("papo.store_redis")

WAIT_TIMEOUT_MS = 2_000  # how long a write waits for its replicas before it is refused


class NotReplicated(StoreUnconfirmed):
    """Fewer replicas than ``--redis-wait`` confirmed a write in time (it is on the master)."""


class ReplicaWait:
    """How many replicas must confirm each write: configured, or chosen from the master's."""

    def __init__(self, configured: int | None = None, timeout_ms: int = WAIT_TIMEOUT_MS) -> None:
        if configured is not None and configured < 0:
            raise ValueError(f"--redis-wait must be 0 or more, not {configured}")
        self.configured = configured
        self.timeout_ms = timeout_ms
        #: replicas each write waits for now (0: no WAIT at all)
        self.wanted = configured or 0
        self.replicas: int | None = None  # the master's connected replicas, when last asked

    @property
    def automatic(self) -> bool:
        return self.configured is None

    @property
    def asks(self) -> bool:
        """Whether the master's replicas are worth asking about: they choose N
        (automatic) or may be too few (configured N); not with ``--redis-wait 0``,
        which never waits for any."""
        return self.configured != 0

    def heard(self, info: Mapping[str, object]) -> None:
        """The master's ``INFO replication``: choose N (automatic), warn when too few."""
        replicas = _int(info.get("connected_slaves"))
        changed = replicas != self.replicas
        self.replicas = replicas
        if self.automatic:
            wanted = 1 if replicas > 0 else 0
            if wanted != self.wanted or changed:
                log.info(
                    "redis: the master has %d replica(s); acknowledging %s",
                    replicas,
                    "after WAIT 1 (one replica has it)" if wanted else "without WAIT",
                )
            self.wanted = wanted
        elif changed and replicas < self.wanted:
            log.warning(
                "redis: the master has %d replica(s) but --redis-wait is %d: "
                "every message is refused until enough replicas connect",
                replicas,
                self.wanted,
            )

    def command(self) -> tuple[str, int, int] | None:
        """The ``WAIT`` to send after a write, or None when none is wanted."""
        if not self.wanted:
            return None
        return ("WAIT", self.wanted, self.timeout_ms)

    def check(self, confirmed: object, wanted: int, what: str) -> None:
        """``WAIT wanted``'s reply: :class:`NotReplicated` when fewer confirmed."""
        got = _int(confirmed)
        if got < wanted:
            raise NotReplicated(
                f"{what}: {got} of {wanted} replica(s) confirmed it within "
                f"{self.timeout_ms / 1000:g} s (--redis-wait)"
            )


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
