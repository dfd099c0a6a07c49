"""A room as the hub routes it: its name, topic and the members that have sessions here.

A :class:`Room` exists in a hub while at least one of its members has a
session (or a grace period) on this instance; the store knows every member.
Its fan-out writes one encoded :class:`~papo.outgoing.Outgoing` (or, for
several messages committed together, one :class:`~papo.outgoing.OutgoingRun`)
to every session of every local member, so a message to a 10-member room costs work
for those members only, whatever the number of connections on the server.
The default room (``home``) is everyone's: the hub fans out its messages to
every live session without a member list.
"""

from __future__ import annotations

from collections.abc import Sequence

from papo.directory import Session, User
from papo.outgoing import Outgoing, OutgoingRun
from papo.store_records import Stored


def write_each(sessions: dict[int, Session], out: Outgoing, origin: int | None = None) -> int:
    """Write ``out`` to every session of ``sessions`` (id → session) but ``origin``; how many."""
    count = 0
    for session_id, session in sessions.items():
        if session_id != origin:
            session.link.write(out)
            count += 1
    return count


def write_run_each(
    sessions: dict[int, Session],
    run: OutgoingRun,
    origins: Sequence[int | None],
    senders: set[int | None] | None = None,
) -> int:
    """Write ``run`` to every session of ``sessions``; how many events were written.

    ``origins`` holds, for each event of the run, the session it came from (or
    None): a session never gets its own messages back, so an origin (one of
    ``senders``, the set of ``origins``, computed here unless given) gets the
    run's other events one by one, and everyone else the whole run at once.
    """
    if senders is None:
        senders = set(origins)
    size = len(run.outs)
    count = 0
    for session_id, session in sessions.items():
        if session_id in senders:
            for out, origin in zip(run.outs, origins, strict=True):
                if origin != session_id:
                    session.link.write(out)
                    count += 1
        else:
            session.link.write_run(run)
            count += size
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
        key = self.key
        count = 0
        for user in self.members.values():  # write_each's loop, inlined: once per recipient
            if user.pending:
                pending = user.pending.get(key)
                if pending is not None:
                    pending.append((stored, origin))
                    continue
            for session_id, session in user.sessions.items():
                if session_id != origin:
                    session.link.write(out)
                    count += 1
        return count

    def deliver_run(self, items: Sequence[tuple[Stored, int | None]], run: OutgoingRun) -> int:
        """:meth:`deliver` for a run of messages to this room (``run`` encodes ``items``)."""
        origins = [origin for _, origin in items]
        senders = set(origins)
        count = 0
        for user in self.members.values():
            pending = user.pending.get(self.key) if user.pending else None
            if pending is not None:
                pending.extend(items)
                continue
            count += write_run_each(user.sessions, run, origins, senders)
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
