"""Where a client is in each conversation: what a reconnect's ``resume`` says.

A client keeps, per conversation (a room, or the direct conversation with one
user), the newest message id it passed on there, and resumes with all of them
(``hello.resume``) and the newest id anywhere (``resume_from``). The server
replays each conversation after its own position, conversation by
conversation, so once resumed a message is a duplicate when its id is at or
below *its conversation's* position; one with no position was replayed after
the ``resume_from`` that was sent. Used by :mod:`papo.client_session`.
"""

from __future__ import annotations

from papo.events import MAX_RESUME, Message
from papo.names import name_key, room_key


class Positions:
    """One position per conversation: key (``#sala``, ``@maria``) → (its name, newest id)."""

    def __init__(self) -> None:
        self.kept: dict[str, tuple[str, int]] = {}
        self.resumed_from = 0  # the resume_from of the last reconnect

    def resume(self) -> tuple[tuple[str, int], ...]:
        """``hello.resume``: the most recent :data:`~papo.events.MAX_RESUME` conversations
        (any other resumes from ``resume_from``)."""
        newest = sorted(self.kept.values(), key=lambda p: p[1], reverse=True)
        return tuple(newest[:MAX_RESUME])

    def seen_before(self, event: Message, me: str) -> bool:
        """Whether a resume's ``event`` was passed on already (``me``: our name)."""
        conv = conversation(event, me)
        kept = None if conv is None else self.kept.get(conv[0])
        return event.id <= (self.resumed_from if kept is None else kept[1])

    def see(self, event: Message, me: str) -> None:
        """``event`` was passed on: its conversation's position moves on."""
        conv = conversation(event, me)
        if conv is not None:
            known = self.kept.get(conv[0], ("", 0))[1]
            self.kept[conv[0]] = (conv[1], max(known, event.id))


def conversation(event: Message, me: str) -> tuple[str, str] | None:
    """``(key, name for resume)`` of a message's conversation, for the user named ``me``;
    None when it cannot be told (a deleted direct message to us does not say from whom)."""
    if event.room is not None:
        return room_key(event.room), event.room
    if event.to is None:
        return None
    mine = name_key(me)
    if event.sender and name_key(event.sender) == mine:
        peer = event.to
    elif name_key(event.to) == mine:
        peer = event.sender  # empty in a tombstone
    else:
        peer = event.to  # the tombstone of one we sent
    return None if not peer else ("@" + name_key(peer), "@" + peer)
