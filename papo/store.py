"""What the hub shares beyond itself: history, ids, accounts, presence, fan-out.

The hub talks to a :class:`Store` and never knows which implementation it has:
:class:`papo.store_sqlite.SqliteStore` (embedded and durable, the default),
:class:`papo.store_memory.MemoryStore` (``--memory``, a throwaway run) or
:class:`papo.store_redis.RedisStore` (``--redis``, several instances).

Every stored message comes back to the hub through one door, in id order:
:attr:`Store.on_message`. A single process calls it right after the commit;
with Redis each instance calls it for every message it reads from the streams
it follows (its users' rooms, the default room, the direct messages), its own
and the other instances'. So there is one delivery path, and a message sent
on one instance reaches the sessions of every instance. Membership, topic and
read-marker changes take the same way (:attr:`Store.on_room`).
Presence goes the same way: the hub reports how many sessions each user has
here, and the store says (:attr:`Store.on_presence`) when a user joined or
left the whole chat.

The store speaks in records (:class:`~papo.store_records.Stored`, accounts,
rooms, a user's conversations), defined in :mod:`papo.store_records`. Each
store keeps a :class:`~papo.message_log.MessageLog` in memory
(:mod:`papo.message_log`): ids, the ring of recently committed messages, the
``cid`` index; ring reads are synchronous, so the hub can replay and make a
session live in one event-loop step. Both are re-exported here.

This module is the interface (:class:`Store`, :class:`Enqueues`, the
callbacks, the errors); what the embedded stores share, presence included,
is :mod:`papo.store_local`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from papo.i18n import Text, t
from papo.message_log import DEFAULT_RETENTION, RING_SIZE, MessageLog
from papo.protocol import UserInfo
from papo.store_records import (
    UNREAD_CAP,
    Account,
    ConversationState,
    Page,
    RoomChange,
    RoomRecord,
    RoomSummary,
    Stored,
    UserState,
)

if TYPE_CHECKING:
    from collections.abc import Collection

    from papo.devices import Device


# Re-exported: most of papo speaks of the store, its records and its log together.
__all__ = [
    "DEFAULT_RETENTION",
    "RING_SIZE",
    "UNREAD_CAP",
    "Account",
    "Announce",
    "ConversationState",
    "Deliver",
    "DevicesEnded",
    "Enqueues",
    "MessageLog",
    "Page",
    "RoomChange",
    "RoomChanged",
    "RoomRecord",
    "RoomSummary",
    "Store",
    "StoreError",
    "StoreUnconfirmed",
    "Stored",
    "UserState",
    "no_announcement",
    "no_delivery",
    "no_devices_ended",
    "no_room_change",
]


class StoreError(RuntimeError):
    """The store cannot do what was asked (disk full, file not writable, ...)."""

    def refusal(self, *, resendable: bool) -> Text:
        """What the client is told (``store_unavailable``): here, that nothing was stored.

        ``resendable``: the request carries a ``cid`` (sent again, it is stored once).
        """
        return t("the server cannot store this now; nothing was sent, try again")


class StoreUnconfirmed(StoreError):
    """A write that may have been made, though the store cannot confirm it.

    Raised instead of :class:`StoreError` when the write reached the store but
    its confirmation did not come: Redis replicas that did not confirm it in
    time (:class:`papo.redis_wait.NotReplicated`), a Redis command sent but not
    answered. The message may still be delivered; the same message sent again
    with the same ``cid`` is stored once (see :meth:`Store.append`).
    """

    def refusal(self, *, resendable: bool) -> Text:
        if resendable:
            return t(
                "the server could not confirm this message in time; it may still "
                "arrive, and sending it again will not send it twice"
            )
        return t(
            "the server could not confirm this in time; it may still take effect, "
            "so check before you send it again"
        )


#: Called with stored messages, in id order, each with the local session it came
#: from (None when it came from elsewhere): the hub delivers them. One call
#: carries what one commit (or one read of the shared log) made visible, so
#: that a run of messages to the same room is fanned out in one pass.
Deliver = Callable[[Sequence[tuple[Stored, "int | None"]]], None]
#: Called when a user joined the chat (first session anywhere) or left it (last
#: session anywhere, after the grace period): ``(event, key, name)``.
Announce = Callable[[Literal["join", "leave"], str, str], None]
#: Called with every membership, topic and read-marker change, once stored.
RoomChanged = Callable[[RoomChange], None]
#: Called when devices of a user ended (logout, revoke, a password change), on every
#: instance: ``(user key, the device ids or None for all of them, a device kept)``.
DevicesEnded = Callable[[str, "frozenset[str] | None", "str | None"], None]


class Store(Protocol):
    """Persistence and sharing behind the hub. Coroutines may raise :class:`StoreError`."""

    log: MessageLog
    on_message: Deliver
    on_presence: Announce
    on_room: RoomChanged
    on_devices: DevicesEnded

    async def open(self) -> None:
        """Prepare the store (create files and tables, load the recent history)."""

    async def close(self) -> None:
        """Flush and release everything."""

    async def secret(self) -> bytes:
        """The server's signing secret, created once and kept."""

    async def get_account(self, key: str) -> Account | None:
        """The account for a name key, or None when the name was never used."""

    async def save_account(self, account: Account) -> None:
        """Create or replace an account."""

    async def set_aside_account(self, key: str) -> Account | None:
        """The account once keyed ``key`` (the rule of before) that lost its name to an older
        one when accents stopped counting, or None."""

    async def set_last_seen(self, key: str, message_id: int) -> None:
        """Remember the newest message id when a user's last session closed."""

    async def revoke_token(self, token_id: str, expires: float) -> None:
        """Mark a token as revoked until it would have expired anyway."""

    async def is_revoked(self, token_id: str) -> bool:
        """Whether a token was revoked."""

    # ------------------------------------------------------------ devices (papo.devices)

    async def devices(self, key: str) -> list[Device]:
        """The devices (token families) of the user ``key`` whose tokens have not expired."""

    async def add_device(self, device: Device) -> None:
        """Keep a new device; the user's expired ones and the least recently seen
        beyond :data:`~papo.devices.MAX_DEVICES` are dropped."""

    async def refresh_device(
        self, key: str, device_id: str, gen: int, *, now: float, address: str, ttl: float
    ) -> Device | None:
        """Atomically apply :meth:`~papo.devices.Device.refreshed` to a device of ``key``
        and keep the result; None (and nothing changed) when it is unknown or refuses."""

    async def end_devices(
        self, key: str, ids: Collection[str] | None = None, *, keep: str | None = None
    ) -> list[str]:
        """Remove devices of ``key``: ``ids``, or every one but ``keep``; the ids removed.

        :attr:`on_devices` hears it on every instance (here before this returns),
        so the sessions that joined with those devices end everywhere.
        """

    async def append(self, message: Stored, origin: int | None = None) -> tuple[Stored, bool]:
        """Store ``message`` (its ``id`` is ignored); ``(stored, new)``.

        Returns once the message is committed and has gone through
        :attr:`on_message` (with ``origin``, the sending session's id), so
        whatever is answered to the sender comes after every earlier message
        was delivered here. When the same sender already sent the same
        ``cid``, nothing is stored again and the earlier message comes back
        with ``new`` False: also after a :class:`StoreUnconfirmed` for it,
        whether or not that first write took effect.
        """

    async def page(self, key: str, convs: Collection[str], after: int, limit: int) -> Page:
        """Up to ``limit`` messages with ids over ``after``, oldest first, in the
        conversations ``convs`` (room keys and direct keys) of the user ``key``."""

    async def history(self, conv: str, before: int | None, limit: int) -> tuple[list[Stored], bool]:
        """Up to ``limit`` messages of ``conv`` older than ``before`` (None: the newest),
        oldest first, and whether older ones exist."""

    async def since(self, conv: str, after: int, limit: int) -> list[Stored]:
        """Up to ``limit`` entries of the conversation ``conv`` (messages, edit and
        deletion entries) with ids over ``after``, in id order, durable ones only.

        A per-conversation resume reads it (:mod:`papo.catchup`): every entry of
        ``conv`` up to :meth:`MessageLog.complete_to` read before the call is in
        the answer, or beyond its ``limit``.
        """

    # ------------------------------------------------------------ rooms

    async def user_state(self, key: str, name: str, default_room: RoomRecord) -> UserState:
        """The rooms and direct conversations of ``key``, with read markers and unread counts.

        A user who is not yet in ``default_room`` is made a member (silently:
        everyone is in it).
        """

    async def get_room(self, key: str) -> RoomRecord | None:
        """The room with key ``key``, or None when nobody created it."""

    async def create_room(self, room: RoomRecord) -> tuple[RoomRecord, bool]:
        """Create ``room`` unless it exists; ``(the room as kept, created)``."""

    async def add_member(
        self, room: RoomRecord, key: str, name: str, origin: int | None = None
    ) -> bool:
        """Make ``key`` a member of ``room`` (its read marker at the room's newest message).

        False when it already was; otherwise :attr:`on_room` hears a ``join``.
        """

    async def remove_member(
        self, room: RoomRecord, key: str, name: str, origin: int | None = None
    ) -> bool:
        """End ``key``'s membership of ``room``; :attr:`on_room` hears a ``part``."""

    async def forget_guest(self, key: str) -> None:
        """Drop every membership and read marker of a guest whose last session ended."""

    async def set_topic(self, room: RoomRecord, topic: str, key: str, name: str) -> None:
        """Set ``room``'s topic; :attr:`on_room` hears a ``topic``."""

    async def set_read(
        self, key: str, name: str, conv: str, message_id: int, origin: int | None = None
    ) -> bool:
        """Move ``key``'s read marker of ``conv`` forward to ``message_id``.

        False when it was already there or further; otherwise :attr:`on_room`
        hears a ``read``.
        """

    async def room_state(self, room: RoomRecord, key: str) -> ConversationState:
        """``key``'s read marker and unread count in ``room`` (for ``room joined``)."""

    async def members(self, room_key: str) -> list[tuple[str, str]]:
        """The members of a room: ``(key, name)``, by name."""

    async def rooms(self) -> list[RoomSummary]:
        """Every room with its member and online counts."""

    async def direct_peer(self, conv: str, key: str) -> str | None:
        """The display name of the other user of a direct conversation of ``key``,
        or None when they never exchanged a message."""

    async def ping(self) -> None:
        """Raise :class:`StoreError` when the store is unusable (health check)."""

    def present(self, key: str, name: str, sessions: int) -> None:
        """This process now has ``sessions`` live sessions of a user (0: in its grace period).

        The first report of a user not present anywhere else announces a join.
        """

    def absent(self, key: str, name: str) -> None:
        """This process has no session of a user any more (its grace period is over).

        When no other process has one either, a leave is announced.
        """

    async def who(self) -> list[UserInfo]:
        """Every user with a live session anywhere, with the number of sessions."""

    async def set_online(self, key: str, name: str, online: bool) -> None:
        """Remember that a user came online or was announced as gone, across restarts."""

    async def online_before(self) -> list[tuple[str, str]]:
        """The users ``(key, name)`` online when this store was last used (a restart's)."""

    async def is_online(self, key: str) -> bool:
        """Whether a user is online anywhere: a live session, or within the presence grace."""

    async def reach(self, message_id: int) -> bool:
        """Whether every message up to ``message_id`` has come through here.

        With several instances a client may resume here from an id it saw on
        another instance a moment before this one read it: wait a little.
        """

    async def reach_conv(self, conv: str, message_id: int) -> bool:
        """Whether every entry of ``conv`` up to ``message_id`` has come through here
        (waiting a little, as :meth:`reach`): a per-conversation resume asks before
        replaying, or what this instance reads later would repeat what the client has."""


@runtime_checkable
class Enqueues(Protocol):
    """A store that can queue a new message without a coroutine (the embedded ones).

    The hub's fast path for room messages (:meth:`papo.hub.Hub.handle_now`)
    uses it; with any other store a message takes :meth:`Store.append`.
    """

    def enqueue(
        self, make: Callable[[int], Stored], origin: int | None = None
    ) -> asyncio.Future[Stored]:
        """Store the message ``make`` builds (at once) with the id it is given, as
        :meth:`Store.append` does, its ``cid`` known to be new (:meth:`MessageLog.duplicate`
        said None just before): the future is done once it is committed and has gone
        through :attr:`Store.on_message`.

        The message is built once, under its id (``append`` copies it).
        """


def no_delivery(batch: Sequence[tuple[Stored, int | None]]) -> None:
    """The :attr:`Store.on_message` of a store no hub is using yet."""


def no_announcement(event: Literal["join", "leave"], key: str, name: str) -> None:
    """The :attr:`Store.on_presence` of a store no hub is using yet."""


def no_room_change(change: RoomChange) -> None:
    """The :attr:`Store.on_room` of a store no hub is using yet."""


def no_devices_ended(key: str, ids: frozenset[str] | None, keep: str | None) -> None:
    """The :attr:`Store.on_devices` of a store no hub is using yet."""
