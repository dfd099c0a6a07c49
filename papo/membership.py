"""Who is in which room, how far each user has read, who wrote to whom. Pure, no I/O.

The embedded stores keep this whole table in memory (the SQLite store loads
it at start and writes every change through to its tables), so routing and
``welcome`` never wait on the disk for it. Every method that changes
something says whether it did, so the store persists and announces only real
changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from papo.store_records import ConversationState, RoomRecord


@dataclass(slots=True)
class Memberships:
    """Rooms, their members, read markers and direct conversations, in dictionaries."""

    rooms: dict[str, RoomRecord] = field(default_factory=dict)
    #: room key → {user key: user name}
    members: dict[str, dict[str, str]] = field(default_factory=dict)
    #: user key → room keys
    joined: dict[str, set[str]] = field(default_factory=dict)
    #: user key → {conversation key: newest id read}
    markers: dict[str, dict[str, int]] = field(default_factory=dict)
    #: user key → {direct conversation key: (other user's key, their name)}
    directs: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

    def add_room(self, room: RoomRecord) -> tuple[RoomRecord, bool]:
        """Create ``room`` unless a room with its key exists; (the room kept, created)."""
        kept = self.rooms.get(room.key)
        if kept is not None:
            return kept, False
        self.rooms[room.key] = room
        self.members.setdefault(room.key, {})
        return room, True

    def set_topic(self, key: str, topic: str) -> RoomRecord:
        room = self.rooms[key] = replace(self.rooms[key], topic=topic)
        return room

    def is_member(self, room_key: str, user_key: str) -> bool:
        return user_key in self.members.get(room_key, ())

    def add_member(self, room_key: str, user_key: str, name: str) -> bool:
        members = self.members.setdefault(room_key, {})
        if user_key in members:
            return False
        members[user_key] = name
        self.joined.setdefault(user_key, set()).add(room_key)
        return True

    def remove_member(self, room_key: str, user_key: str) -> bool:
        members = self.members.get(room_key, {})
        if members.pop(user_key, None) is None:
            return False
        rooms = self.joined.get(user_key)
        if rooms is not None:
            rooms.discard(room_key)
            if not rooms:
                del self.joined[user_key]
        self.markers.get(user_key, {}).pop(room_key, None)
        return True

    def forget(self, user_key: str) -> None:
        """Everything about a user (a guest whose last session ended)."""
        for room_key in self.joined.pop(user_key, set()):
            self.members.get(room_key, {}).pop(user_key, None)
        self.markers.pop(user_key, None)
        for conv, (other, _) in self.directs.pop(user_key, {}).items():
            self.directs.get(other, {}).pop(conv, None)

    def marker(self, user_key: str, conv: str) -> int:
        return self.markers.get(user_key, {}).get(conv, 0)

    def set_marker(self, user_key: str, conv: str, message_id: int) -> bool:
        """Move a read marker forward; False when it already was there or further."""
        markers = self.markers.setdefault(user_key, {})
        if markers.get(conv, -1) >= message_id:
            return False
        markers[conv] = message_id
        return True

    def add_direct(self, conv: str, a: tuple[str, str], b: tuple[str, str]) -> bool:
        """Record that users ``a`` and ``b`` (key, name) have a direct conversation."""
        if conv in self.directs.get(a[0], {}):
            return False
        self.directs.setdefault(a[0], {})[conv] = b
        self.directs.setdefault(b[0], {})[conv] = a
        return True

    def direct_peer(self, conv: str, user_key: str) -> tuple[str, str] | None:
        return self.directs.get(user_key, {}).get(conv)

    def conversations(
        self, user_key: str, default_room: str
    ) -> tuple[list[ConversationState], list[ConversationState]]:
        """A user's rooms (the default room first, then by name) and direct conversations,
        with read markers; unread counts are the store's to fill in."""
        markers = self.markers.get(user_key, {})
        keys = sorted(
            self.joined.get(user_key, ()),
            key=lambda k: (
                k != default_room,
                self.rooms[k].name.casefold() if k in self.rooms else k,
            ),
        )
        rooms = [
            ConversationState(k, self.rooms[k].name, self.rooms[k].topic, markers.get(k, 0))
            for k in keys
            if k in self.rooms
        ]
        direct = [
            ConversationState(conv, name, "", markers.get(conv, 0), 0, other)
            for conv, (other, name) in sorted(
                self.directs.get(user_key, {}).items(), key=lambda item: item[1][1].casefold()
            )
        ]
        return rooms, direct
