"""What the terminal client knows about the user's conversations. No I/O.

:class:`Conversations` is told each incoming event and answers what changed:
the current room (where typed lines go), unread counts per room and direct
conversation, and which ``read`` markers are due. :class:`ReadMarks` sends
those markers, at most one per conversation per interval; its clock and sleep
are injectable, so tests drive it without waiting.

This is the client's view. The server's side of the same ideas lives in
:mod:`papo.membership` (read markers) and :mod:`papo.conversation` (a room's
members); nothing here is shared with it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from papo.events import (
    Conversation,
    Deleted,
    Edited,
    Error,
    HistoryPage,
    Message,
    Read,
    ReadMarker,
    RoomJoined,
    RoomList,
    RoomParted,
    RoomTopic,
    ServerEvent,
    Welcome,
)
from papo.names import name_key, room_key

DEFAULT_ROOM = "#geral"
#: At most one ``read`` per conversation within this many seconds.
READ_INTERVAL = 1.0
#: How many shown messages are remembered (to re-print one that is edited or deleted).
REMEMBERED = 2000


class ReadDue(NamedTuple):
    """A ``read`` marker to send: ``conversation`` read up to ``message_id``.

    ``key`` names the conversation for :class:`ReadMarks` (a room key, or
    ``@`` and a name key).
    """

    conversation: Conversation
    key: str
    message_id: int


@dataclass(frozen=True, slots=True)
class Change:
    """What one incoming event changed that the client acts on."""

    moved: bool = False  # the current room changed
    due: tuple[ReadDue, ...] = ()  # read markers to send
    #: For ``edited`` and ``deleted``: the message as it is now, when it was shown here.
    about: Message | None = None
    #: A ``deleted`` of a message already shown as deleted (a resume's tombstone): no news.
    repeat: bool = False


@dataclass(slots=True)
class Unread:
    """Unread messages of one conversation.

    ``base`` is what the server counted (in ``welcome`` or ``room joined``) for
    messages up to id ``through``, ids unknown; ``ids`` are later messages of
    others seen here and not yet read.
    """

    base: int = 0
    through: int = 0
    ids: set[int] = field(default_factory=set)
    last_read: int = 0

    @property
    def count(self) -> int:
        return self.base + len(self.ids)

    def add(self, message_id: int) -> None:
        if message_id > self.through and message_id > self.last_read:
            self.ids.add(message_id)

    def read(self, upto: int) -> bool:
        """Everything up to ``upto`` is read; True when that is news."""
        if upto <= self.last_read:
            return False
        self.last_read = upto
        self.ids = {i for i in self.ids if i > upto}
        if upto >= self.through:
            self.base = 0
        return True

    def reset(self, base: int, through: int, last_read: int) -> None:
        self.base, self.through, self.ids = base, through, set()
        self.last_read = max(self.last_read, last_read)


@dataclass(slots=True)
class RoomView:
    """One of the user's rooms as this client sees it."""

    name: str
    topic: str = ""
    unread: Unread = field(default_factory=Unread)
    oldest: int | None = None  # the oldest message id seen in it (for /history)
    newest: int = 0  # the newest message id seen in it
    operators: set[str] = field(default_factory=set)  # name keys (admins included)
    own: set[int] = field(default_factory=set)  # ids of the user's messages in it, not deleted


@dataclass(slots=True)
class DirectView:
    """The user's direct conversation with ``name``, as this client sees it."""

    name: str
    unread: Unread = field(default_factory=Unread)
    newest: int = 0


class Conversations:
    """The user's rooms and direct conversations, the current room, unread counts.

    Pure book-keeping: it is told what arrived and answers what to show and
    which ``read`` markers are due; it sends nothing itself.
    """

    def __init__(self, me: str = "") -> None:
        self.me = name_key(me)
        self.name = me
        self.default = DEFAULT_ROOM
        self.current = DEFAULT_ROOM
        self.rooms: dict[str, RoomView] = {room_key(DEFAULT_ROOM): RoomView(DEFAULT_ROOM)}
        self.direct: dict[str, DirectView] = {}
        self.pending_joins: set[str] = set()  # /join sent here, its answer not yet in
        self.admin = False  # a server admin (the welcome says so)
        #: The messages shown lately, by id: what an ``edited``/``deleted`` refers to.
        self.seen: OrderedDict[int, Message] = OrderedDict()

    # ---- what the server says

    def apply(self, event: ServerEvent) -> Change:
        """Take in one incoming event: whether the current room changed, the markers due."""
        moved = False
        if isinstance(event, Welcome):  # a reconnect: fresh unread counts
            before = self.current
            self.welcome(event)
            moved = before != self.current
        elif isinstance(event, Message):
            due = self.message(event)
            return Change(due=() if due is None else (due,))
        elif isinstance(event, RoomJoined):
            moved = self.joined(event)
        elif isinstance(event, RoomParted):
            moved = self.parted(event)
        elif isinstance(event, RoomTopic):
            self.topic(event)
        elif isinstance(event, ReadMarker):
            self.read_elsewhere(event)
        elif isinstance(event, HistoryPage):
            self.history(event)
            for shown in event.messages:
                self.remember(shown)
        elif isinstance(event, Edited):
            return Change(about=self.edited(event))
        elif isinstance(event, Deleted):
            already = self.seen.get(event.id)
            repeat = already is not None and already.deleted
            return Change(about=self.deleted(event), repeat=repeat)
        elif isinstance(event, RoomList):
            self.room_list(event)
        elif isinstance(event, Error) and event.cid is None:
            self.failed()
        if not moved:
            return Change()
        due = self.current_read()
        return Change(moved=True, due=() if due is None else (due,))

    def welcome(self, event: Welcome) -> None:
        """A (re)join: the user's rooms and direct conversations, with unread counts."""
        self.me = name_key(event.name)
        self.name = event.name  # as the server writes it
        self.admin = event.admin
        if event.rooms:
            self.default = event.rooms[0].room
        rooms: dict[str, RoomView] = {}
        for state in event.rooms or ():
            key = room_key(state.room)
            room = self.rooms.get(key) or RoomView(state.room)
            room.name, room.topic = state.room, state.topic
            room.unread.reset(state.unread, event.last_id, state.last_read)
            rooms[key] = room
        default_key = room_key(self.default)
        if default_key not in rooms:  # a server that does not list rooms (yet)
            rooms[default_key] = self.rooms.get(default_key) or RoomView(self.default)
        self.rooms = rooms
        for other in event.direct:
            direct = self.direct.setdefault(name_key(other.with_), DirectView(other.with_))
            direct.unread.reset(other.unread, event.last_id, other.last_read)
        if room_key(self.current) not in self.rooms:
            self.current = self.default
        else:
            self.current = self.rooms[room_key(self.current)].name

    def message(self, event: Message) -> ReadDue | None:
        """Count one incoming message; the read marker it makes due, if any."""
        mine = name_key(event.sender) == self.me
        self.remember(event)
        if event.deleted:  # a tombstone (no sender): it keeps a room's ids, nothing unread
            if event.to is None:
                room = self._room_of(event)
                room.oldest = event.id if room.oldest is None else min(room.oldest, event.id)
            return None
        if event.to is not None:
            other = event.to if mine else event.sender
            key = name_key(other)
            direct = self.direct.setdefault(key, DirectView(other))
            direct.newest = max(direct.newest, event.id)
            if not mine:
                direct.unread.add(event.id)
            return None
        room = self._room_of(event)
        if mine and not event.deleted:
            room.own.add(event.id)
        room.newest = max(room.newest, event.id)
        room.oldest = event.id if room.oldest is None else min(room.oldest, event.id)
        if self.is_current(room.name):
            return self._mark_read(room)
        if not mine:
            room.unread.add(event.id)
        return None

    def joined(self, event: RoomJoined) -> bool:
        """The user is in ``event.room``; True when it became the current room (our /join)."""
        key = room_key(event.room)
        room = self.rooms.setdefault(key, RoomView(event.room))
        room.name, room.topic = event.room, event.topic
        room.operators = {name_key(m.name) for m in event.members if m.op}
        room.unread.reset(event.unread, event.last_id, event.last_read)
        if key in self.pending_joins:
            self.pending_joins.discard(key)
            self.current = room.name
            room.unread.reset(0, event.last_id, event.last_read)
            return True
        return False

    def parted(self, event: RoomParted) -> bool:
        """The user left ``event.room``; True when it was the current room (back to default)."""
        key = room_key(event.room)
        self.pending_joins.discard(key)
        if key != room_key(self.default):
            self.rooms.pop(key, None)
        if self.is_current(event.room):
            self.current = self.default
            return True
        return False

    def topic(self, event: RoomTopic) -> None:
        room = self.rooms.get(room_key(event.room))
        if room is not None:
            room.topic = event.topic

    def history(self, page: HistoryPage) -> None:
        if page.conversation.room is None or not page.messages:
            return
        room = self.rooms.get(room_key(page.conversation.room))
        if room is not None:
            oldest = min(m.id for m in page.messages)
            room.oldest = oldest if room.oldest is None else min(room.oldest, oldest)

    def room_list(self, event: RoomList) -> None:
        """``/rooms`` names each room's operators (admins aside, who are known otherwise)."""
        for info in event.rooms:
            room = self.rooms.get(room_key(info.room))
            if room is not None:
                room.operators = {name_key(name) for name in info.operators}

    def remember(self, message: Message) -> None:
        """Keep ``message`` (the newest :data:`REMEMBERED`) for a later edit or deletion."""
        self.seen[message.id] = message
        self.seen.move_to_end(message.id)
        while len(self.seen) > REMEMBERED:
            self.seen.popitem(last=False)

    def edited(self, event: Edited) -> Message:
        """Message ``event.id`` reads ``event.text`` now; the message as it is now.

        A message not remembered is rebuilt from the event (its time: the edit's).
        """
        before = self.seen.get(event.id)
        if before is None:
            before = Message(
                event.id, event.sender, event.text, event.edited_ts, event.to, None, event.room
            )
        now = replace(before, text=event.text, edited_ts=event.edited_ts)
        self.seen[event.id] = now
        if name_key(event.sender) == self.me and event.to is None:
            self._room_named(event.room).own.add(event.id)
        return now

    def deleted(self, event: Deleted) -> Message | None:
        """Message ``event.id`` is gone: no longer the user's to edit; remembered as a
        tombstone (its sender and time kept), which it returns, if it was shown."""
        self.forget_own(event.id)
        unreads = [r.unread for r in self.rooms.values()] + [d.unread for d in self.direct.values()]
        for unread in unreads:
            unread.ids.discard(event.id)  # nothing left to read
        before = self.seen.get(event.id)
        if before is None:
            return None
        gone = replace(before, text="", deleted=True)
        self.seen[event.id] = gone
        return gone

    def forget_own(self, message_id: int) -> None:
        """Message ``message_id`` is no longer the user's to edit or delete (it is gone)."""
        for room in self.rooms.values():
            room.own.discard(message_id)

    def acked(
        self, message_id: int, room: str | None, to: str | None = None, text: str = "", ts: str = ""
    ) -> None:
        """The server stored the user's message as ``message_id`` (in ``room``; None: the
        default room), so ``/edit`` and ``/delete`` without an id mean it. The server does
        not echo it to the session that sent it: it is remembered here, ``text`` sent at
        ``ts``, so its edit or deletion shows like anyone's."""
        if text:
            self.remember(Message(message_id, self.name, text, ts, to, None, room))
        if to is None:
            self._room_named(room).own.add(message_id)

    def read_elsewhere(self, event: ReadMarker) -> None:
        """Another session of the user read a conversation up to ``event.id``."""
        unread = self._unread(event.conversation)
        if unread is not None:
            unread.read(event.id)

    def failed(self) -> None:
        """An error without ``cid``: a /join may have been refused; stop waiting for it."""
        self.pending_joins.clear()

    # ---- what the user does

    def join(self, room: str) -> None:
        self.pending_joins.add(room_key(room))

    def replied(self, to: str) -> ReadDue | None:
        """The user wrote to ``to`` privately: that conversation counts as read."""
        direct = self.direct.get(name_key(to))
        if direct is None or not direct.unread.read(direct.newest):
            return None
        return ReadDue(Conversation(with_=direct.name), "@" + name_key(to), direct.newest)

    def current_read(self) -> ReadDue | None:
        """The read marker of the current room (after switching to it), if one is due."""
        room = self.rooms.get(room_key(self.current))
        return None if room is None else self._mark_read(room)

    # ---- questions

    def is_current(self, room: str) -> bool:
        return room_key(room) == room_key(self.current)

    def last_own(self, room: str) -> int | None:
        """The id of the user's newest message (not deleted) in ``room``, if one is known."""
        known = self.rooms.get(room_key(room))
        return max(known.own) if known is not None and known.own else None

    def is_own(self, message_id: int) -> bool:
        return any(message_id in room.own for room in self.rooms.values())

    def role(self, room: str) -> str:
        """The user's role in ``room`` as far as this client knows it: ``"admin"`` (the
        welcome said so), ``"operator"`` (``room joined`` or ``/rooms`` marked them) or
        ``"member"``. The server decides; this only chooses what ``/help`` lists."""
        if self.admin:
            return "admin"
        known = self.rooms.get(room_key(room))
        return "operator" if known is not None and self.me in known.operators else "member"

    def is_default(self, room: str | None) -> bool:
        return room is None or room_key(room) == room_key(self.default)

    def oldest(self, room: str) -> int | None:
        known = self.rooms.get(room_key(room))
        return None if known is None else known.oldest

    def unread(self, room: str) -> int:
        known = self.rooms.get(room_key(room))
        return 0 if known is None else known.unread.count

    def unread_rooms(self) -> list[tuple[str, int]]:
        """The rooms other than the current one with unread messages, and how many."""
        return [
            (r.name, r.unread.count)
            for r in self.rooms.values()
            if r.unread.count and not self.is_current(r.name)
        ]

    def unread_direct(self) -> list[tuple[str, int]]:
        return [(d.name, d.unread.count) for d in self.direct.values() if d.unread.count]

    # ---- inside

    def _room_of(self, event: Message) -> RoomView:
        return self._room_named(event.room)

    def _room_named(self, room: str | None) -> RoomView:
        name = room or self.default
        return self.rooms.setdefault(room_key(name), RoomView(name))

    def _mark_read(self, room: RoomView) -> ReadDue | None:
        if not room.newest or not room.unread.read(room.newest):
            return None
        return ReadDue(Conversation(room=room.name), room_key(room.name), room.newest)

    def _unread(self, conversation: Conversation) -> Unread | None:
        if conversation.room is not None:
            room = self.rooms.get(room_key(conversation.room))
            return None if room is None else room.unread
        if conversation.with_ is None:
            return None
        key = name_key(conversation.with_)
        return self.direct.setdefault(key, DirectView(conversation.with_)).unread


class ReadMarks:
    """Sends ``read`` markers: at most one per conversation every ``interval`` seconds.

    A marker due while one was sent recently waits, and only the newest id
    goes out; an id not above what was sent is dropped. ``clock`` and
    ``sleep`` are the event loop's by default (monotonic seconds).
    """

    def __init__(
        self,
        send: Callable[[Read], Awaitable[bool]],
        interval: float = READ_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._send = send
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._sent: dict[str, int] = {}
        self._pending: dict[str, tuple[Conversation, int]] = {}
        self._last: dict[str, float] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def mark(self, conversation: Conversation, key: str, message_id: int) -> None:
        pending = self._pending.get(key)
        if message_id <= self._sent.get(key, 0) or (pending and message_id <= pending[1]):
            return
        self._pending[key] = (conversation, message_id)
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._flush(key))

    async def _flush(self, key: str) -> None:
        try:
            while key in self._pending:
                wait = self._last.get(key, -math.inf) + self.interval - self._clock()
                if wait > 0:
                    await self._sleep(wait)
                conversation, message_id = self._pending.pop(key)
                self._last[key] = self._clock()
                if await self._send(Read(conversation, message_id)):
                    self._sent[key] = max(self._sent.get(key, 0), message_id)
        finally:
            del self._tasks[key]

    def cancel(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
