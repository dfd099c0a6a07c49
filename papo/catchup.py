"""Catching a session up before it goes live: the recent context of a fresh join, or a resume.

Both end in the same way: the last part comes from the store's in-memory
ring, and the session becomes a recipient in the same event-loop step as that
read, so no message can fall between what was replayed and what arrives live.

* A fresh join gets the last messages of the user's conversations (50), and
  before them the direct messages sent to the user while away, however many
  room messages followed them (they are read from the direct conversations
  alone, not picked out of a page of everything).
* A resume (``resume_from``) replays every message after that id in the
  user's rooms and direct conversations, in id order: older pages from the
  store with flow control in between, then the ring's tail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from papo.directory import Session
from papo.i18n import t, tn
from papo.protocol import Error, Gap, Notice, Outgoing
from papo.store import Store, Stored

if TYPE_CHECKING:
    from papo.accounts import Identity

RECENT_CONTEXT = 50
REPLAY_CHUNK = 500

#: Makes a session live: called with no await after the last ring read.
GoLive = Callable[[], None]


class CatchUp:
    """Replays what a joining session should see, then calls ``go_live``."""

    def __init__(self, store: Store, pool: dict[int, Session]) -> None:
        self.store = store
        self.pool = pool

    def _gone(self, session: Session) -> bool:
        return session.id not in self.pool or session.link.closed

    async def recent(
        self,
        session: Session,
        identity: Identity,
        rooms: set[str],
        directs: set[str],
        go_live: GoLive,
    ) -> None:
        """A fresh join: the direct messages missed while away, the recent context, live."""
        log_ = self.store.log
        key = identity.key
        context = log_.recent(key, rooms, RECENT_CONTEXT)
        first = context[0].id if context else log_.committed + 1
        if 0 < identity.last_seen < first - 1 and directs:
            cursor = identity.last_seen
            while True:
                page = await self.store.page(key, directs, cursor, REPLAY_CHUNK)
                if self._gone(session):
                    return
                missed = [m for m in page.messages if m.id < first]
                for message in missed:
                    self._send(session, message)
                cursor = max(cursor, *(m.id for m in missed)) if missed else cursor
                if len(page.messages) < REPLAY_CHUNK or len(missed) < len(page.messages):
                    break
            context = log_.recent(key, rooms, RECENT_CONTEXT)  # may have moved meanwhile
            context = [m for m in context if m.id > cursor]
        self.shown(session, context)
        for message in context:
            self._send(session, message)
        go_live()

    @staticmethod
    def shown(session: Session, context: list[Stored]) -> None:
        """``context`` is about to be shown to a fresh session: mark it off for people.

        A plain-text connection gets a line saying these are the last messages
        (so a script's first lines tell history from what is said now), and
        its ``/history`` pages back from the oldest message it was shown.
        """
        if session.link.mode == "plain" and context:
            header = tn("— last message —", "— last {n} messages —", len(context))
            session.link.write(Outgoing(Notice(header)))
            for message in reversed(context):
                session.history_before[message.conv] = message.id

    async def resume(
        self,
        session: Session,
        identity: Identity,
        rooms: set[str],
        directs: set[str],
        go_live: GoLive,
        *,
        after: int,
    ) -> None:
        """Replay every message of the user's conversations after ``after``, then go live."""
        log_ = self.store.log
        key = identity.key
        if after > log_.committed and not await self.store.reach(after):
            self._send_event(
                session,
                Error(
                    "bad_resume",
                    t(
                        "resume_from {after} is newer than the newest message ({newest}); "
                        "resuming from there",
                        after=after,
                        newest=log_.committed,
                    ),
                ),
            )
            after = log_.committed
        oldest = log_.gap_before(rooms | directs)
        if oldest and after < oldest - 1:
            self._send_event(session, Gap(after, oldest))
        cursor = after
        while True:
            if log_.covers(cursor, rooms | directs):
                batch, cursor = log_.since(key, rooms, cursor, REPLAY_CHUNK)
                for message in batch:
                    self._send_replay(session, message, key)
                if cursor >= log_.committed:
                    break  # no await since `since`: nothing new can be missed
            else:
                page = await self.store.page(key, rooms | directs, cursor, REPLAY_CHUNK)
                for message in page.messages:  # `rooms` is live: a part meanwhile counts
                    if message.id > cursor and message.visible_to(key, rooms):
                        self._send_replay(session, message, key)
                cursor = max(cursor, page.scanned_to)
            await session.link.drain()
            if self._gone(session):
                return
        go_live()

    @staticmethod
    def _send(session: Session, message: Stored) -> None:
        session.link.write(Outgoing(message.event()))

    @staticmethod
    def _send_replay(session: Session, message: Stored, key: str) -> None:
        session.link.write(Outgoing(message.replayed_to(key)))

    @staticmethod
    def _send_event(session: Session, event: Error | Gap) -> None:
        session.link.write(Outgoing(event))
