"""Where a client is in each conversation: what a reconnect's ``resume`` says.

A client keeps, per conversation (a room, or the direct conversation with one
user), the newest message id it passed on there, and resumes with all of them
(``hello.resume``) and the newest id anywhere (``resume_from``). The server
replays each conversation after its own position, conversation by
conversation, so once resumed a message is a duplicate when its id is at or
below *its conversation's* position; one with no position was replayed after
the ``resume_from`` that was sent. Used by :mod:`papo.client_session`.

``resume_from`` is not simply the newest id seen: a replay that a drop cut
short may have reached id 150 in one conversation and not yet started
another, and a conversation the client never heard of (a direct one opened
while it was away) would then be resumed after 150, past what it missed.
So every conversation the client knows (the welcome lists them) is named in
``resume``, and ``resume_from`` is the *floor*: an id up to which every
conversation is complete. It follows the newest id seen only while the
connection is known to be live: the answer to a request sent after the
``hello`` comes after the whole replay (a connection's requests are handled
in order), so that answer proves it.
"""

from __future__ import annotations

from papo.events import MAX_RESUME, Message
from papo.names import name_key, room_key


class Positions:
    """One position per conversation: key (``#sala``, ``@maria``) → (its name, newest id)."""

    def __init__(self) -> None:
        self.kept: dict[str, tuple[str, int]] = {}
        self.resumed_from = 0  # the resume_from of the last reconnect
        self.floor = 0  # every conversation is complete up to here: the next resume_from
        self.proven = False  # this connection is past its replay: the floor follows what comes

    def listed(self, convs: list[tuple[str, str]], at: int) -> None:
        """``convs`` (key, name) are the user's: one without a position gets ``at`` (the
        server resumed it from there, or a fresh join showed it as of there)."""
        for key, name in convs:
            if key not in self.kept:
                self.kept[key] = (name, at)

    def live(self, newest: int) -> None:
        """The connection is past its replay: complete up to ``newest``, the newest seen."""
        self.proven = True
        self.floor = max(self.floor, newest)

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
        if self.proven:  # live: delivered in order, so nothing below it is missing
            self.floor = max(self.floor, event.id)


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
