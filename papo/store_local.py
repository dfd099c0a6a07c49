"""Presence, rooms, memberships and read markers for the embedded stores (SQLite and memory).

When one process is the whole chat, what several instances share through
Redis lives in this process. Who is online is what its sessions say
(:class:`LocalPresence`): a user's first session announces a join, the end
of the last one's grace period a leave. The table of who is in which room is
a :class:`~papo.membership.Memberships`: changes are applied there and, for
the SQLite store, written through to its tables by the ``_persist_*`` hooks,
which run *before* the change is applied and announced, so nothing is
announced that was not kept. Every change is announced through
:attr:`~papo.store.Store.on_room`, the same door the Redis store uses for
changes made on other instances.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from papo.events import UserInfo
from papo.membership import Memberships
from papo.message_log import MessageLog
from papo.store import (
    Announce,
    Deliver,
    DevicesEnded,
    RoomChanged,
    no_announcement,
    no_delivery,
    no_devices_ended,
    no_room_change,
)
from papo.store_records import (
    ConversationState,
    RoomChange,
    RoomRecord,
    RoomSummary,
    Stored,
    UserState,
)


class LocalPresence:
    """Presence when this process is the whole chat (the embedded stores)."""

    log: MessageLog

    def __init__(self) -> None:
        self._present: dict[str, tuple[str, int]] = {}
        self.on_message: Deliver = no_delivery
        self.on_presence: Announce = no_announcement
        self.on_room: RoomChanged = no_room_change
        self.on_devices: DevicesEnded = no_devices_ended

    def present(self, key: str, name: str, sessions: int) -> None:
        first = key not in self._present
        self._present[key] = (name, sessions)
        if first:
            self.on_presence("join", key, name)

    def absent(self, key: str, name: str) -> None:
        if self._present.pop(key, None) is not None:
            self.on_presence("leave", key, name)

    async def who(self) -> list[UserInfo]:
        return [UserInfo(name, n) for name, n in self._present.values() if n > 0]

    async def set_online(self, key: str, name: str, online: bool) -> None:
        """Kept nowhere by default (a memory store forgets everyone at a restart anyway)."""

    async def online_before(self) -> list[tuple[str, str]]:
        return []

    async def is_online(self, key: str) -> bool:
        # A user within the presence grace (no session, not yet announced as
        # gone) counts as online: they are most likely reconnecting.
        return key in self._present

    async def reach(self, message_id: int) -> bool:
        return message_id <= self.log.committed

    async def reach_conv(self, conv: str, message_id: int) -> bool:
        return message_id <= self.log.committed


class LocalRooms(LocalPresence):
    """The room half of the :class:`~papo.store.Store` interface, over :class:`Memberships`."""

    def __init__(self) -> None:
        super().__init__()
        self.memberships = Memberships()

    # -------------------------------------------------- hooks for the concrete store

    async def _persist_room(self, room: RoomRecord) -> None:
        """Keep a new room, or a room's new topic."""

    async def _persist_member(self, room_key: str, key: str, name: str, last_read: int) -> None:
        """Keep a new membership and its first read marker."""

    async def _persist_part(self, room_key: str, key: str) -> None:
        """Forget a membership and its read marker."""

    async def _persist_marker(self, key: str, conv: str, message_id: int) -> None:
        """Keep a read marker that moved forward."""

    async def _persist_forget(self, key: str) -> None:
        """Forget a guest."""

    async def _newest(self, conv: str) -> int:
        """The newest message id of a conversation (0 when it has none)."""
        raise NotImplementedError

    async def _unread(self, key: str, marks: dict[str, int]) -> dict[str, int]:
        """For each conversation, messages of others after the marker (up to UNREAD_CAP)."""
        raise NotImplementedError

    def _directs_of(self, messages: Collection[Stored]) -> None:
        """Record the direct conversations that ``messages`` open."""
        for m in messages:
            if m.to_key is not None and m.to is not None:
                self.memberships.add_direct(m.conv, (m.sender_key, m.sender), (m.to_key, m.to))

    # -------------------------------------------------- the interface

    async def user_state(self, key: str, name: str, default_room: RoomRecord) -> UserState:
        table = self.memberships
        if default_room.key not in table.rooms:
            await self.create_room(default_room)
        if not table.is_member(default_room.key, key):
            last = await self._newest(default_room.key)
            await self._persist_member(default_room.key, key, name, last)
            table.add_member(default_room.key, key, name)
            table.set_marker(key, default_room.key, last)
        rooms, direct = table.conversations(key, default_room.key)
        unread = await self._unread(key, {c.conv: c.last_read for c in rooms + direct})
        return UserState(
            [_with_unread(c, unread) for c in rooms], [_with_unread(c, unread) for c in direct]
        )

    async def get_room(self, key: str) -> RoomRecord | None:
        return self.memberships.rooms.get(key)

    async def create_room(self, room: RoomRecord) -> tuple[RoomRecord, bool]:
        kept = self.memberships.rooms.get(room.key)
        if kept is not None:
            return kept, False
        if not room.created:
            room = RoomRecord(room.key, room.name, room.topic, room.created_by, time.time())
        await self._persist_room(room)
        return self.memberships.add_room(room)

    async def add_member(
        self, room: RoomRecord, key: str, name: str, origin: int | None = None
    ) -> bool:
        table = self.memberships
        if table.is_member(room.key, key):
            return False
        last = await self._newest(room.key)
        await self._persist_member(room.key, key, name, last)
        if not table.add_member(room.key, key, name):
            return False  # a concurrent join won
        table.set_marker(key, room.key, last)
        self.on_room(RoomChange("join", room.key, room.name, key, name, "", last, origin))
        return True

    async def remove_member(
        self, room: RoomRecord, key: str, name: str, origin: int | None = None
    ) -> bool:
        if not self.memberships.is_member(room.key, key):
            return False
        await self._persist_part(room.key, key)
        if not self.memberships.remove_member(room.key, key):
            return False
        self.on_room(RoomChange("part", room.key, room.name, key, name, "", 0, origin))
        return True

    async def forget_guest(self, key: str) -> None:
        await self._persist_forget(key)
        self.memberships.forget(key)

    async def set_topic(self, room: RoomRecord, topic: str, key: str, name: str) -> None:
        updated = RoomRecord(room.key, room.name, topic, room.created_by, room.created)
        await self._persist_room(updated)
        self.memberships.set_topic(room.key, topic)
        self.on_room(RoomChange("topic", room.key, room.name, key, name, topic))

    async def set_read(
        self, key: str, name: str, conv: str, message_id: int, origin: int | None = None
    ) -> bool:
        if self.memberships.marker(key, conv) >= message_id:
            return False
        await self._persist_marker(key, conv, message_id)
        if not self.memberships.set_marker(key, conv, message_id):
            return False
        room = self.memberships.rooms.get(conv)
        peer = self.memberships.direct_peer(conv, key)
        self.on_room(
            RoomChange(
                "read",
                conv,
                room.name if room else "",
                key,
                name,
                peer[1] if room is None and peer is not None else "",
                message_id,
                origin,
            )
        )
        return True

    async def room_state(self, room: RoomRecord, key: str) -> ConversationState:
        marker = self.memberships.marker(key, room.key)
        unread = await self._unread(key, {room.key: marker})
        return ConversationState(room.key, room.name, room.topic, marker, unread.get(room.key, 0))

    async def members(self, room_key: str) -> list[tuple[str, str]]:
        members = self.memberships.members.get(room_key, {})
        return sorted(members.items(), key=lambda item: item[1].casefold())

    async def rooms(self) -> list[RoomSummary]:
        table = self.memberships
        out = []
        for key, room in table.rooms.items():
            members = table.members.get(key, {})
            online = sum(1 for k in members if self._present.get(k, ("", 0))[1] > 0)
            out.append(RoomSummary(room, len(members), online))
        return sorted(out, key=lambda s: s.room.name.casefold())

    async def direct_peer(self, conv: str, key: str) -> str | None:
        peer = self.memberships.direct_peer(conv, key)
        return None if peer is None else peer[1]


def _with_unread(state: ConversationState, unread: dict[str, int]) -> ConversationState:
    return ConversationState(
        state.conv,
        state.name,
        state.topic,
        state.last_read,
        unread.get(state.conv, 0),
        state.other_key,
    )
