"""Connections and users as the hub sees them: :class:`Link`, :class:`Session`, :class:`User`.

A :class:`Session` is one live connection (the server's side; the terminal
client's session is :class:`papo.client_session.ChatSession`). A :class:`User` is a
name with one or more sessions and the rooms it is a member of. Nothing here
does I/O: the transport provides the :class:`Link`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from papo.limits import TokenBucket
from papo.outgoing import Outgoing, OutgoingRun
from papo.protocol import Mode
from papo.store_records import Stored

GUEST_PREFIX = "guest-"


class Link(Protocol):
    """What the hub needs of one connection; the transport provides it."""

    mode: Mode
    address: str
    #: The language its notices and errors are written in (``en``, ``pt-BR``).
    lang: str

    def write(self, out: Outgoing) -> None:
        """Queue ``out`` for this peer without waiting; never raises."""

    def write_run(self, run: OutgoingRun) -> None:
        """Queue every event of ``run``, in order, as :meth:`write` would; never raises."""

    async def drain(self) -> None:
        """Wait until this peer's pending output is low again; never raises."""

    def close(self, code: int, reason: str) -> None:
        """Start closing this connection with ``code``; never raises."""

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or closed."""


class Session:
    """One live connection, joined to a user or not yet.

    ``room`` is the connection's current room (a room's display name, None:
    the default room): plain-text lines go there. ``history_before`` remembers,
    per conversation, the oldest id a plain ``/history`` showed, so the next
    one pages further back.
    """

    __slots__ = ("device", "history_before", "id", "link", "opened", "room", "token", "user")

    def __init__(self, session_id: int, link: Link) -> None:
        self.id = session_id
        self.link = link
        self.user: User | None = None
        self.token: str | None = None
        self.device: str | None = None  # the device (token family) it joined on
        self.opened = time.monotonic()
        self.room: str | None = None
        self.history_before: dict[str, int] = {}


#: Live messages of a room a user just joined, with their origin session, waiting
#: until the room's recent history has been sent (see :class:`User`).
Pending = list[tuple[Stored, int | None]]


class User:
    """A name with one or more sessions (devices, tabs), and its rooms.

    ``rooms`` holds the keys of the rooms the user is a member of (kept
    current by the store's room changes). ``pending`` holds, for a room the
    user just joined, the live messages that arrived while its recent history
    was being read: they are written after that history, so nothing arrives
    twice or out of order.
    """

    __slots__ = (
        "bucket",
        "guest",
        "key",
        "leave_timer",
        "name",
        "pending",
        "rooms",
        "sessions",
    )

    def __init__(self, key: str, name: str, bucket: TokenBucket, *, guest: bool) -> None:
        self.key = key
        self.name = name
        self.guest = guest
        self.bucket = bucket
        self.sessions: dict[int, Session] = {}
        self.leave_timer: asyncio.TimerHandle | None = None
        self.rooms: set[str] = set()
        self.pending: dict[str, Pending] = {}


def is_guest(key: str) -> bool:
    return key.startswith(GUEST_PREFIX)


@dataclass(slots=True)
class HubStats:
    connections_total: int = 0
    connections_peak: int = 0
    received: int = 0
    stored: int = 0
    deliveries: int = 0
    rate_limited: int = 0
    flood_closes: int = 0
