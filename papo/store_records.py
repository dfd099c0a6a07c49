"""What the stores keep and hand back, as values: messages, accounts, rooms. Pure, no I/O.

Every store (:class:`~papo.store.Store`: SQLite, memory, Redis, Redis
Cluster) speaks in these records, so the hub and the rest of papo never see
a row, a hash or a stream entry. :class:`Stored` is a message as kept, with
who may see it; the hub turns it into the events its readers receive
(:meth:`Stored.event`). It is built once per message, on the hot path (hence
:func:`~papo.frozen.quick_init`). The others describe accounts, rooms, a
user's conversations at join time, changes to announce (:class:`RoomChange`)
and a page of history (:class:`Page`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from papo.events import Deleted, Edited, Message
from papo.frozen import quick_init

if TYPE_CHECKING:
    from collections.abc import Collection


@dataclass(frozen=True, slots=True)
class Account:
    """A name that someone has used. ``password_hash`` is None for open names."""

    key: str
    name: str
    password_hash: bytes | None = None
    created: float = 0.0
    last_seen: int = 0  # the newest message id when the user last left

    @property
    def protected(self) -> bool:
        return self.password_hash is not None


@quick_init  # built once per message
@dataclass(frozen=True, slots=True)
class Stored:
    """A message as kept: the event plus who may see it.

    ``conv`` is its conversation's key: the room's key (``#geral``) for a room
    message, with ``room`` its display name; for a direct message (``to`` set)
    the two users' :func:`~papo.names.direct_key`. ``home`` marks the default
    room (plain-text clients see its lines untagged); it is not stored.

    Edits and deletions are entries of the conversation too, with ids of
    their own (so a resume replays them in order): ``kind`` is ``edit`` (the
    message ``target`` now reads ``text``) or ``delete`` (``by`` deleted
    ``target``); a message is ``kind`` ``""``. A message's ``edited_ts`` says
    when it was last edited (its ``text`` is the latest); a deleted message
    is a tombstone: ``by`` set and ``text`` empty. Entries and tombstones keep
    the sender and recipient of their message, so they reach exactly those
    who could see it.
    """

    id: int
    sender: str
    sender_key: str
    text: str
    ts: str
    to: str | None = None
    to_key: str | None = None
    cid: str | None = None
    room: str | None = None
    conv: str = ""
    home: bool = False
    kind: str = ""
    target: int = 0
    edited_ts: str | None = None
    by: str | None = None

    @property
    def is_message(self) -> bool:
        """A message (kept or deleted), not an edit or deletion entry."""
        return not self.kind

    @property
    def deleted(self) -> bool:
        """A deleted message's tombstone."""
        return not self.kind and self.by is not None

    def with_id(self, message_id: int) -> Stored:
        """The same message under the id the store gave it.

        Once per message, so every field is written out (``dataclasses.replace``
        looks them up each time, which costs as much again).
        """
        return Stored(
            message_id, self.sender, self.sender_key, self.text, self.ts, self.to, self.to_key,
            self.cid, self.room, self.conv, self.home, self.kind, self.target, self.edited_ts,
            self.by,
        )  # fmt: skip

    def visible_to(self, key: str, rooms: Collection[str]) -> bool:
        """Whether the user ``key``, a member of ``rooms`` (keys), may see this message."""
        if self.to_key is None:
            return self.conv in rooms
        return key in (self.to_key, self.sender_key)

    def event(self) -> Message | Edited | Deleted:
        """What its readers receive: a message (or tombstone), ``edited`` or ``deleted``."""
        if self.kind == "edit":
            edited_ts = self.edited_ts or self.ts
            return Edited(
                self.target, self.text, edited_ts, self.sender, self.room, self.to, self.home
            )
        if self.kind == "delete":
            return Deleted(self.target, self.by or "", self.room, self.to, self.home)
        return self.message()

    def message(self, cid: str | None = None) -> Message:
        """The message event (a tombstone once deleted); ``kind`` must be a message's."""
        if self.by is not None:
            return Message(
                self.id, "", "", self.ts, self.to, None, self.room, self.home, None, True
            )
        return Message(
            self.id, self.sender, self.text, self.ts, self.to, cid, self.room, self.home,
            self.edited_ts,
        )  # fmt: skip

    def replayed_to(self, key: str) -> Message | Edited | Deleted:
        """The event for a replay to ``key``: with the ``cid`` when ``key`` sent it."""
        if self.kind or self.by is not None:
            return self.event()
        return self.message(self.cid if key == self.sender_key else None)


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """A room as kept: its key, the name as first written, topic, creator."""

    key: str
    name: str
    topic: str = ""
    created_by: str = ""
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room with how many members it has and how many of them are online."""

    room: RoomRecord
    members: int
    online: int


@dataclass(frozen=True, slots=True)
class ConversationState:
    """One of a user's conversations at join time: for ``welcome`` and for routing.

    ``name`` is the room's name (``#sala``) or, for direct messages, the other
    user's name; ``other_key`` is that user's key (None for a room).
    """

    conv: str
    name: str
    topic: str = ""
    last_read: int = 0
    unread: int = 0
    other_key: str | None = None


@dataclass(frozen=True, slots=True)
class UserState:
    """A user's rooms (the default room first) and direct conversations."""

    rooms: list[ConversationState]
    direct: list[ConversationState]


@dataclass(frozen=True, slots=True)
class RoomChange:
    """A change the hub must hear about, wherever it happened (this instance or another).

    ``join``/``part``: ``user`` joined or left room ``conv`` (``message_id``:
    the read marker given at join); ``topic``: ``user`` set the topic of
    ``conv`` to ``topic``; ``read``: ``user`` read conversation ``conv`` up
    to ``message_id`` (for a direct conversation ``room`` is empty and
    ``topic`` holds the other user's name). ``origin`` is the session it
    came from on this instance, when it did.
    """

    kind: Literal["join", "part", "topic", "read"]
    conv: str
    room: str
    user_key: str
    user_name: str
    topic: str = ""
    message_id: int = 0
    origin: int | None = None


#: Unread counts stop here: a badge says "1000+", and counting costs no more.
UNREAD_CAP = 1000


@dataclass(frozen=True, slots=True)
class Page:
    """Messages visible to one user after some id, and how far the scan went."""

    messages: list[Stored]
    scanned_to: int  # every id up to here was looked at
    oldest: int  # the oldest id still kept (0 when nothing is)
