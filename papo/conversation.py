"""A room as the hub routes it: its name, topic and the members that have sessions here.

A :class:`Room` exists in a hub while at least one of its members has a
session (or a grace period) on this instance; the store knows every member.
Its fan-out writes one encoded :class:`~papo.protocol.Outgoing` to every
session of every local member, so a message to a 10-member room costs work
for those members only, whatever the number of connections on the server.
The default room (``home``) is everyone's: the hub fans out its messages to
every live session without a member list.
"""

from __future__ import annotations

from papo.directory import Session, User
from papo.protocol import Outgoing
from papo.store import Stored


def write_each(sessions: dict[int, Session], out: Outgoing, origin: int | None = None) -> int:
    """Write ``out`` to every session of ``sessions`` (id → session) but ``origin``; how many."""
    count = 0
    for session_id, session in sessions.items():
        if session_id != origin:
            session.link.write(out)
            count += 1
    return count


class Room:
    """A room's local members and what it looks like (name as first written, topic)."""

    __slots__ = ("home", "key", "members", "name", "topic")

    def __init__(self, key: str, name: str, topic: str = "", *, home: bool = False) -> None:
        self.key = key
        self.name = name
        self.topic = topic
        self.home = home
        self.members: dict[str, User] = {}

    def deliver(self, stored: Stored, out: Outgoing, origin: int | None) -> int:
        """Write ``out`` (``stored``, encoded once) to every member session but ``origin``.

        A member who just joined and is still being sent the room's recent
        history gets the message queued after it instead. Returns the number
        of sessions written to.
        """
        count = 0
        for user in self.members.values():
            pending = user.pending.get(self.key) if user.pending else None
            if pending is not None:
                pending.append((stored, origin))
                continue
            count += write_each(user.sessions, out, origin)
        return count

    def notify(self, out: Outgoing, *, skip: str | None = None) -> int:
        """Write a room event to every member session, but those of the user ``skip``."""
        count = 0
        for key, user in self.members.items():
            if key != skip:
                for session in user.sessions.values():
                    session.link.write(out)
                    count += 1
        return count
