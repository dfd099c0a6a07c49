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
* A per-conversation resume (``resume``) replays each of the user's
  conversations after its own position (``resume[conv]``, else
  ``resume_from``, else only its recent context), each in its own id order:
  pages of that conversation from the store (:meth:`Store.since`) while the
  ring does not cover it, then the ring's tail of it. Names that are not the
  user's conversations are never read. The last pass reads every
  conversation's tail from the ring without an await, then goes live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from papo.directory import Session
from papo.i18n import t, tn
from papo.names import DIRECT_PREFIX, direct_key, name_key, room_key
from papo.outgoing import Outgoing
from papo.protocol import Error, Gap, Notice
from papo.store import Store
from papo.store_records import Stored

if TYPE_CHECKING:
    from papo.accounts import Identity

RECENT_CONTEXT = 50
REPLAY_CHUNK = 500

#: Makes a session live: called with no await after the last ring read.
GoLive = Callable[[], None]
#: The user's direct conversations as the store has them now: key → the other user's name.
Directs = Callable[[], Awaitable[dict[str, str]]]


def fold_resume(resume: tuple[tuple[str, int], ...], key: str) -> dict[str, int]:
    """``hello.resume`` as conversation keys of the user ``key``: ``#Sala`` → ``#sala``,
    ``@Maria`` → the direct conversation with maria. Two spellings of one
    conversation count as the newer position."""
    out: dict[str, int] = {}
    for name, position in resume:
        if name.startswith(DIRECT_PREFIX):
            conv = direct_key(key, name_key(name[1:]))
        else:
            conv = room_key(name)
        out[conv] = max(out.get(conv, 0), position)
    return out


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

    async def resume_each(
        self,
        session: Session,
        identity: Identity,
        rooms: set[str],
        names: dict[str, str],
        go_live: GoLive,
        *,
        positions: dict[str, int],
        fallback: int | None,
        began: int,
        directs_now: Directs,
    ) -> None:
        """Replay each of the user's conversations after its own position, then go live.

        ``rooms`` is the live set of the user's rooms (a part meanwhile
        counts); ``names`` maps each conversation the welcome listed (rooms,
        and direct ones to the other user's name) to its name, for gaps.
        ``positions`` are folded (:func:`fold_resume`); ``fallback`` is
        ``resume_from``. ``began`` is the newest id before the user's
        conversations were read: a direct conversation that someone opened
        since is found in the ring (or, when the ring moved on, through
        ``directs_now``) and replayed whole.
        """
        log_ = self.store.log
        key = identity.key
        directs = {conv for conv in names if conv.startswith(DIRECT_PREFIX)}
        mine = rooms | directs
        positions = {conv: p for conv, p in positions.items() if conv in mine}
        fallback, positions = await self._not_beyond(session, fallback, positions)
        cursors = self._starts(
            session, key, sorted(mine), names, positions=positions, fallback=fallback
        )
        scanned = began  # direct conversations opened after this were looked for
        opened_from = began if log_.ordered else 0  # (a cluster's new ids may be below it)
        while True:
            waited = more = False
            found = log_.directs_after(key, scanned)
            if found is not None:
                opened, scanned = found
            else:
                mark = log_.committed
                opened = set(await directs_now())
                waited = True
                scanned = mark
            for conv in opened - directs:
                directs.add(conv)
                cursors[conv] = opened_from
            for conv in sorted(cursors):
                if conv not in rooms and conv not in directs:
                    continue  # parted meanwhile
                cursor = cursors[conv]
                if log_.covers_conv(conv, cursor):
                    batch = log_.since_conv(conv, cursor, REPLAY_CHUNK)
                    more = more or len(batch) == REPLAY_CHUNK
                else:
                    mark = log_.complete_to(conv)
                    batch = await self.store.since(conv, cursor, REPLAY_CHUNK)
                    waited = True
                    if self._gone(session):
                        return
                    if len(batch) < REPLAY_CHUNK:  # all of it up to `mark` was there
                        cursors[conv] = max(cursor, mark)
                    if conv not in rooms and conv not in directs:
                        continue
                for message in batch:
                    if message.id > cursor:
                        self._send_replay(session, message, key)
                        cursors[conv] = max(cursors[conv], message.id)
            if not waited and not more:
                break  # nothing awaited since the first ring read of this pass
            await session.link.drain()
            if self._gone(session):
                return
        go_live()

    def _starts(
        self,
        session: Session,
        key: str,
        convs: list[str],
        names: dict[str, str],
        *,
        positions: dict[str, int],
        fallback: int | None,
    ) -> dict[str, int]:
        """Where each conversation's replay starts; its gap, or its recent context
        (when it has no position) is sent on the way."""
        log_ = self.store.log
        cursors: dict[str, int] = {}
        fresh: list[str] = []
        loose: list[str] = []
        for conv in convs:
            position = positions.get(conv, fallback if log_.ordered else None)
            if position is None:
                (fresh if fallback is None else loose).append(conv)
                continue
            cursors[conv] = position
        if loose:  # (a Redis Cluster) resume_from is no position in a conversation not named
            # there: replay from it or from before what the ring holds of the conversation,
            # whichever is older. The client has seen nothing of it (it names every one
            # it knows), so nothing repeats, and nothing below resume_from that reaches
            # this instance late is skipped.
            assert fallback is not None
            for conv, context in log_.recent_in(loose, RECENT_CONTEXT).items():
                held = context[0].id - 1 if context else log_.complete_to(conv)
                cursors[conv] = min(fallback, held)
        for conv, position in cursors.items():
            oldest = log_.gap_before((conv,))
            if oldest and position < oldest - 1:
                where = names.get(conv, conv)
                direct = conv.startswith(DIRECT_PREFIX)
                gap = Gap(position, oldest, None if direct else where, where if direct else None)
                self._send_event(session, gap)
        marks = {conv: log_.complete_to(conv) for conv in fresh}
        for conv, context in log_.recent_in(fresh, RECENT_CONTEXT).items():
            for message in context:
                self._send_replay(session, message, key)
            cursors[conv] = max(marks[conv], context[-1].id if context else 0)
        return cursors

    async def _not_beyond(
        self, session: Session, fallback: int | None, positions: dict[str, int]
    ) -> tuple[int | None, dict[str, int]]:
        """Positions newer than what came through here (a store that lost messages, a
        client's bug) become the newest, with a ``bad_resume`` error saying so.

        A position may be newer only because this instance has not read yet what
        the client saw through another one: each such conversation is waited for
        a little (:meth:`Store.reach_conv`), or what comes later would repeat.
        """
        log_ = self.store.log
        late = [(conv, p) for conv, p in positions.items() if p > log_.complete_to(conv)]
        checks = [self.store.reach_conv(conv, p) for conv, p in late]
        if fallback is not None and fallback > log_.committed and log_.ordered:
            checks.append(self.store.reach(fallback))  # (else it is no position: see _starts)
        reached = await asyncio.gather(*checks)
        if all(reached):
            return fallback, positions
        beyond = {conv: p for (conv, p), ok in zip(late, reached, strict=False) if not ok}
        if len(reached) > len(late) and not reached[-1]:
            assert fallback is not None
            text = t(
                "resume_from {after} is newer than the newest message ({newest}); "
                "resuming from there",
                after=fallback,
                newest=log_.committed,
            )
            fallback = min(fallback, log_.committed)
        else:
            text = t(
                "a 'resume' position ({after}) is newer than the newest message ({newest}); "
                "resuming from there",
                after=max(beyond.values()),
                newest=log_.committed,
            )
        self._send_event(session, Error("bad_resume", text))
        kept = {
            conv: min(p, log_.complete_to(conv)) if conv in beyond else p
            for conv, p in positions.items()
        }
        return fallback, kept

    @staticmethod
    def _send(session: Session, message: Stored) -> None:
        session.link.write(Outgoing(message.event()))

    @staticmethod
    def _send_replay(session: Session, message: Stored, key: str) -> None:
        session.link.write(Outgoing(message.replayed_to(key)))

    @staticmethod
    def _send_event(session: Session, event: Error | Gap) -> None:
        session.link.write(Outgoing(event))
