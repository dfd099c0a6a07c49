"""The terminal client: keyboard and incoming messages, concurrently, on one connection.

In a terminal it uses ``prompt_toolkit``: incoming lines print above the
input line without disturbing what is being typed. When stdin is not a
terminal (``echo oi | python client.py --name bot``) it reads plain lines and
prints plain lines, so it can be scripted; at the end of input it waits for
the server to acknowledge what it sent, then leaves.

Rooms: the prompt names the *current* room (``[#geral] >``), where typed lines
go. ``/join #sala`` makes ``#sala`` current once the server confirms it,
``/part`` leaves (back to the default room). Every room's messages are shown,
tagged with their room unless they are the default room's; the client counts
unread messages per conversation (for ``/rooms``) and tells the server what
was read in the current room, so the user's other devices clear their badges.
The current room lives here, not in :class:`~papo.session.ChatSession`, which
stays a protocol-level library.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import math
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.shortcuts import print_formatted_text

from papo.commands import (
    HELP,
    Command,
    Help,
    HistoryHere,
    Nick,
    PartRoom,
    Quit,
    TopicHere,
    parse_line,
)
from papo.names import name_key, room_key
from papo.protocol import (
    ClientEvent,
    Conversation,
    Error,
    Gap,
    Hello,
    History,
    HistoryPage,
    Join,
    ListRooms,
    Member,
    Message,
    Notice,
    Part,
    Presence,
    ProtocolError,
    Read,
    ReadMarker,
    RoomJoined,
    RoomList,
    RoomParted,
    RoomTopic,
    Say,
    ServerEvent,
    SetTopic,
    Users,
    Welcome,
    Who,
    check_name,
    visible,
)
from papo.session import ChatSession, ConnectError, JoinError

DEFAULT_URL = "ws://localhost:8765"
DEFAULT_ROOM = "#geral"
#: At most one ``read`` per conversation within this many seconds.
READ_INTERVAL = 1.0
#: How long a piped client waits for the answer to a request before reading on.
ANSWER_TIMEOUT = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="client.py",
        description="papo terminal chat client. Type to talk; /help lists commands; sair leaves.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--url", default=os.environ.get("PAPO_URL", DEFAULT_URL), help="server address (PAPO_URL)"
    )
    parser.add_argument("--name", default=os.environ.get("PAPO_NAME"), help="your name (PAPO_NAME)")
    parser.add_argument(
        "--password",
        default=os.environ.get("PAPO_PASSWORD"),
        help="password of a protected name (PAPO_PASSWORD; asked for when needed)",
    )
    return parser


# --------------------------------------------------------------------------
# What the client knows about the user's conversations (pure, no I/O)


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
class Room:
    """One of the user's rooms as this client sees it."""

    name: str
    topic: str = ""
    unread: Unread = field(default_factory=Unread)
    oldest: int | None = None  # the oldest message id seen in it (for /history)
    newest: int = 0  # the newest message id seen in it


@dataclass(slots=True)
class Direct:
    """The user's direct conversation with ``name``."""

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
        self.default = DEFAULT_ROOM
        self.current = DEFAULT_ROOM
        self.rooms: dict[str, Room] = {room_key(DEFAULT_ROOM): Room(DEFAULT_ROOM)}
        self.direct: dict[str, Direct] = {}
        self.pending_joins: set[str] = set()  # /join sent here, its answer not yet in

    # ---- what the server says

    def welcome(self, event: Welcome) -> None:
        """A (re)join: the user's rooms and direct conversations, with unread counts."""
        self.me = name_key(event.name)
        if event.rooms:
            self.default = event.rooms[0].room
        rooms: dict[str, Room] = {}
        for state in event.rooms or ():
            key = room_key(state.room)
            room = self.rooms.get(key) or Room(state.room)
            room.name, room.topic = state.room, state.topic
            room.unread.reset(state.unread, event.last_id, state.last_read)
            rooms[key] = room
        default_key = room_key(self.default)
        if default_key not in rooms:  # a server that does not list rooms (yet)
            rooms[default_key] = self.rooms.get(default_key) or Room(self.default)
        self.rooms = rooms
        for other in event.direct:
            direct = self.direct.setdefault(name_key(other.with_), Direct(other.with_))
            direct.unread.reset(other.unread, event.last_id, other.last_read)
        if room_key(self.current) not in self.rooms:
            self.current = self.default
        else:
            self.current = self.rooms[room_key(self.current)].name

    def message(self, event: Message) -> tuple[Conversation, str, int] | None:
        """Count one incoming message; the read marker it makes due, if any."""
        mine = name_key(event.sender) == self.me
        if event.to is not None:
            other = event.to if mine else event.sender
            key = name_key(other)
            direct = self.direct.setdefault(key, Direct(other))
            direct.newest = max(direct.newest, event.id)
            if not mine:
                direct.unread.add(event.id)
            return None
        room = self._room_of(event)
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
        room = self.rooms.setdefault(key, Room(event.room))
        room.name, room.topic = event.room, event.topic
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

    def replied(self, to: str) -> tuple[Conversation, str, int] | None:
        """The user wrote to ``to`` privately: that conversation counts as read."""
        direct = self.direct.get(name_key(to))
        if direct is None or not direct.unread.read(direct.newest):
            return None
        return Conversation(with_=direct.name), "@" + name_key(to), direct.newest

    def current_read(self) -> tuple[Conversation, str, int] | None:
        """The read marker of the current room (after switching to it), if one is due."""
        room = self.rooms.get(room_key(self.current))
        return None if room is None else self._mark_read(room)

    # ---- questions

    def is_current(self, room: str) -> bool:
        return room_key(room) == room_key(self.current)

    def is_default(self, room: str | None) -> bool:
        return room is None or room_key(room) == room_key(self.default)

    def oldest(self, room: str) -> int | None:
        known = self.rooms.get(room_key(room))
        return None if known is None else known.oldest

    def unread(self, room: str) -> int:
        known = self.rooms.get(room_key(room))
        return 0 if known is None else known.unread.count

    def unread_direct(self) -> list[tuple[str, int]]:
        return [(d.name, d.unread.count) for d in self.direct.values() if d.unread.count]

    # ---- inside

    def _room_of(self, event: Message) -> Room:
        name = event.room or self.default
        return self.rooms.setdefault(room_key(name), Room(name))

    def _mark_read(self, room: Room) -> tuple[Conversation, str, int] | None:
        if not room.newest or not room.unread.read(room.newest):
            return None
        return Conversation(room=room.name), room_key(room.name), room.newest

    def _unread(self, conversation: Conversation) -> Unread | None:
        if conversation.room is not None:
            room = self.rooms.get(room_key(conversation.room))
            return None if room is None else room.unread
        if conversation.with_ is None:
            return None
        key = name_key(conversation.with_)
        return self.direct.setdefault(key, Direct(conversation.with_)).unread


class ReadMarks:
    """Sends ``read`` markers: at most one per conversation every ``interval`` seconds.

    A marker due while one was sent recently waits, and only the newest id
    goes out; an id not above what was sent is dropped.
    """

    def __init__(
        self, send: Callable[[Read], Awaitable[bool]], interval: float = READ_INTERVAL
    ) -> None:
        self._send = send
        self.interval = interval
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
        loop = asyncio.get_running_loop()
        try:
            while key in self._pending:
                wait = self._last.get(key, -math.inf) + self.interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                conversation, message_id = self._pending.pop(key)
                self._last[key] = loop.time()
                if await self._send(Read(conversation, message_id)):
                    self._sent[key] = max(self._sent.get(key, 0), message_id)
        finally:
            del self._tasks[key]

    def cancel(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()


# --------------------------------------------------------------------------
# Lines on the screen


def format_message(event: Message, home: bool = True) -> tuple[str, str]:
    """(style, line) of a chat message; ``home`` (the default room's) lines carry no room tag."""
    when = _local_time(event.ts)
    text = visible(event.text)
    if event.to is not None:
        return (
            "private",
            f"[{when}] {visible(event.sender)} → {visible(event.to)} (private): {text}",
        )
    if home or event.room is None:
        return ("", f"[{when}] {visible(event.sender)}: {text}")
    return ("", f"[{when}] [{visible(event.room)}] {visible(event.sender)}: {text}")


def format_event(event: ServerEvent, state: Conversations | None = None) -> tuple[str, str] | None:
    """(style, line) for an incoming event; None for events not shown (or shown otherwise)."""
    if isinstance(event, Message):
        return format_message(event, state is None or state.is_default(event.room))
    if isinstance(event, Presence):
        verb = "joined" if event.event == "join" else "left"
        return ("notice", f"* {visible(event.name)} {verb}")
    if isinstance(event, Users):
        names = ", ".join(
            visible(u.name) + ("" if u.sessions == 1 else f" ({u.sessions} sessions)")
            for u in event.users
        )
        return ("notice", f"* online ({len(event.users)}): {names}")
    if isinstance(event, Error):
        return ("error", f"* error: {visible(event.message)}")
    if isinstance(event, Notice):
        return ("notice", f"* {visible(event.text)}")
    if isinstance(event, Gap):
        return ("notice", f"* older messages (up to {event.oldest - 1}) are no longer kept")
    if isinstance(event, RoomJoined):
        topic = f" (topic: {visible(event.topic)})" if event.topic else ""
        online = sum(1 for m in event.members if m.online)
        return (
            "notice",
            f"* you are in {visible(event.room)}{topic}: {_count(len(event.members), 'member')}, "
            f"{online} online",
        )
    if isinstance(event, RoomParted):
        return ("notice", f"* you left {visible(event.room)}")
    if isinstance(event, RoomTopic):
        if not event.topic:
            return ("notice", f"* {visible(event.by)} cleared the topic of {visible(event.room)}")
        return (
            "notice",
            f"* {visible(event.by)} set the topic of {visible(event.room)}: {visible(event.topic)}",
        )
    if isinstance(event, Member):
        verb = "joined" if event.event == "join" else "left"
        return ("notice", f"* {visible(event.name)} {verb} {visible(event.room)}")
    return None  # welcome, read markers; room lists and history pages take several lines


def format_rooms(event: RoomList, state: Conversations) -> list[tuple[str, str]]:
    """The lines of ``/rooms``: every room, ``*`` marking the user's, with unread counts."""
    if not event.rooms:
        return [("notice", "* no rooms yet: /join #name creates one")]
    lines = [("notice", f"* rooms ({len(event.rooms)}; * = yours):")]
    for info in event.rooms:
        parts = [f"{_count(info.members, 'member')}, {info.online} online"]
        if info.topic:
            parts.append(f"topic: {visible(info.topic)}")
        if info.joined and (unread := state.unread(info.room)):
            parts.append(f"{unread} unread")
        if state.is_current(info.room):
            parts.append("you are here")
        mark = "*" if info.joined else " "
        lines.append(("notice", f"  {mark} {visible(info.room)} — {' · '.join(parts)}"))
    direct = state.unread_direct()
    if direct:
        listed = ", ".join(f"{visible(name)} ({count} unread)" for name, count in direct)
        lines.append(("notice", f"* private: {listed}"))
    return lines


def format_history(page: HistoryPage, state: Conversations) -> list[tuple[str, str]]:
    """A ``history`` page: a header line, then its messages, oldest first."""
    where = visible(page.conversation.room or page.conversation.with_ or "?")
    if not page.messages:
        return [("notice", f"* no older messages in {where}")]
    more = "; /history again for older ones" if page.more else "; nothing older"
    lines = [("notice", f"* history of {where}: {_count(len(page.messages), 'message')}{more}")]
    home = state.is_default(page.conversation.room) and page.conversation.room is not None
    lines.extend(format_message(m, home) for m in page.messages)
    lines.append(("notice", f"* end of history of {where}"))
    return lines


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _local_time(ts: str) -> str:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone().strftime("%H:%M")
    except ValueError:
        return "--:--"


STYLES = {"notice": "ansibrightblack", "error": "ansired", "private": "ansimagenta", "": ""}


class Screen:
    """Where lines go: styled above the prompt in a terminal, plain when piped."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def show(self, style: str, line: str) -> None:
        if self.interactive:
            print_formatted_text(FormattedText([(STYLES.get(style, ""), line)]))
        else:
            print(line, flush=True)

    def fail(self, line: str) -> None:
        print(f"papo: {line}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The client


async def run(url: str, name: str | None, password: str | None, interactive: bool) -> int:
    """Connect, join and chat until the user leaves; returns the exit status."""
    screen = Screen(interactive)
    session = ChatSession(url, status=lambda text: screen.show("notice", f"* {text}"))
    try:
        await session.connect()
    except ConnectError as exc:
        screen.fail(str(exc))
        return 2
    client: Client | None = None
    try:
        joined = await _join(session, screen, name, password, interactive)
        if joined is None:
            return 1
        client = Client(session, screen, interactive)
        assert session.joined is not None
        client.state.welcome(
            Welcome(
                session.joined.name,
                session.joined.token,
                session.joined.last_id,
                rooms=session.joined.rooms,
                direct=session.joined.direct,
            )
        )
        screen.show("notice", f"* you are {joined}. /help lists commands, sair leaves.")
        client.show_unread()
        receiver = asyncio.create_task(client.receive())
        typer = asyncio.create_task(client.type())
        done, _ = await asyncio.wait({receiver, typer}, return_when=asyncio.FIRST_COMPLETED)
        if receiver in done:
            typer.cancel()
            code = session.close_code
            if session.closing or code == 1000:
                screen.show("notice", "* disconnected")
                return 0
            screen.fail(f"the server closed the connection (code {code})")
            return 1
        if not interactive and not await session.wait_acked(10.0):
            screen.fail(f"{len(session.unacked)} message(s) not acknowledged by the server")
            receiver.cancel()
            return 1
        receiver.cancel()
        return 0
    finally:
        if client is not None:
            client.reads.cancel()
        await session.close()


async def _join(
    session: ChatSession, screen: Screen, name: str | None, password: str | None, interactive: bool
) -> str | None:
    asked_name = name is None
    while True:
        if name is None:
            if not interactive:
                screen.fail("no name given: use --name NAME")
                return None
            name = await _ask("your name: ")
            if name is None:
                return None
        try:
            joined = await session.join(Hello(check_name(name), password=password))
            return joined.name
        except (ProtocolError, JoinError) as exc:
            code, message = exc.code, exc.message
        if code in ("auth_required", "bad_password") and interactive:
            screen.show("error", f"* {message}")
            password = await _ask("password: ", secret=True)
            if password is None:
                return None
            continue
        if code == "bad_name" and interactive and asked_name:
            screen.show("error", f"* {message}")
            name = None
            continue
        screen.fail(message)
        return None


async def _ask(prompt: str, *, secret: bool = False) -> str | None:
    if not sys.stdin.isatty():
        line = await asyncio.to_thread(sys.stdin.readline)
        return line.strip() or None
    try:
        if secret:
            return await asyncio.to_thread(getpass.getpass, prompt)
        answer: str = await PromptSession[str]().prompt_async(prompt)
        return answer.strip() or None
    except (EOFError, KeyboardInterrupt):
        return None


#: For a piped client: the event that answers each request (an ``error`` answers any).
ANSWERS: dict[type[ClientEvent], type[ServerEvent]] = {
    Join: RoomJoined,
    Part: RoomParted,
    ListRooms: RoomList,
    History: HistoryPage,
    SetTopic: RoomTopic,
    Who: Users,
}


class Client:
    """One terminal client: what arrives is shown, what is typed is sent."""

    def __init__(self, session: ChatSession, screen: Screen, interactive: bool) -> None:
        self.session = session
        self.screen = screen
        self.interactive = interactive
        self.state = Conversations()
        self.reads = ReadMarks(session.send)
        self.prompt: PromptSession[str] | None = PromptSession() if interactive else None
        self._awaiting: type[ServerEvent] | None = None
        self._answered = asyncio.Event()

    def prompt_text(self) -> str:
        return f"[{visible(self.state.current)}] > "

    def show_unread(self) -> None:
        """After joining: the rooms and people with unread messages, if any."""
        rooms = [
            f"{visible(r.name)} ({r.unread.count})"
            for r in self.state.rooms.values()
            if r.unread.count and not self.state.is_current(r.name)
        ]
        rooms += [f"{visible(n)} ({c}, private)" for n, c in self.state.unread_direct()]
        if rooms:
            self.screen.show("notice", f"* unread: {', '.join(rooms)}")

    # ---- incoming

    async def receive(self) -> None:
        async for event in self.session.events():
            self.handle(event)
            if self._awaiting is not None and isinstance(event, (self._awaiting, Error)):
                self._answered.set()

    def handle(self, event: ServerEvent) -> None:
        state = self.state
        moved = False  # the current room changed
        if isinstance(event, Welcome):  # a reconnect: fresh unread counts
            before = state.current
            state.welcome(event)
            moved = before != state.current
        elif isinstance(event, Message):
            due = state.message(event)
            if due is not None:
                self.reads.mark(*due)
        elif isinstance(event, RoomJoined):
            moved = state.joined(event)
        elif isinstance(event, RoomParted):
            moved = state.parted(event)
        elif isinstance(event, RoomTopic):
            state.topic(event)
        elif isinstance(event, ReadMarker):
            state.read_elsewhere(event)
        elif isinstance(event, Error) and event.cid is None:
            state.failed()
        if isinstance(event, RoomList):
            for line in format_rooms(event, state):
                self.screen.show(*line)
        elif isinstance(event, HistoryPage):
            state.history(event)
            for line in format_history(event, state):
                self.screen.show(*line)
        else:
            shown = format_event(event, state)
            if shown is not None:
                self.screen.show(*shown)
        if isinstance(event, RoomParted) and moved:
            self.screen.show("notice", f"* back in {visible(state.current)}")
        if moved:
            due = state.current_read()
            if due is not None:
                self.reads.mark(*due)
            if self.prompt is not None:
                self.prompt.app.invalidate()

    # ---- typed

    async def type(self) -> None:
        while True:
            if self.prompt is not None:
                try:
                    line = await self.prompt.prompt_async(self.prompt_text)
                except (EOFError, KeyboardInterrupt):
                    return
            else:
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    return
            if not line.strip():
                continue
            try:
                command = parse_line(line)
            except ProtocolError as exc:
                self.screen.show("error", f"* {exc.message}")
                continue
            if isinstance(command, Quit):
                return
            await self.command(command)

    async def command(self, command: Command) -> None:
        state = self.state
        event: ClientEvent
        if isinstance(command, Quit):
            return  # the caller leaves
        if isinstance(command, Help):
            self.screen.show("notice", f"* {HELP}")
            return
        if isinstance(command, Nick):
            self.screen.show(
                "notice", "* to change your name, leave and start again with --name NAME"
            )
            return
        if isinstance(command, Say):
            if command.to is not None:
                due = state.replied(command.to)
                if due is not None:
                    self.reads.mark(*due)
                await self.session.say(command.text, to=command.to)
            else:
                room = None if state.is_default(state.current) else state.current
                await self.session.say(command.text, room=room)  # kept until acknowledged
            return
        if isinstance(command, PartRoom):
            room = command.room or state.current
            if state.is_default(room):
                self.screen.show(
                    "error", f"* {visible(state.default)} is everyone's room: it cannot be left"
                )
                return
            event = Part(room)
        elif isinstance(command, TopicHere):
            event = SetTopic(state.current, command.text)
        elif isinstance(command, HistoryHere):
            room = state.current
            event = History(Conversation(room=room), before=state.oldest(room), limit=command.limit)
        elif isinstance(command, Join):
            state.join(command.room)
            event = command
        else:
            event = command
        await self.request(event)

    async def request(self, event: ClientEvent) -> None:
        """Send ``event``; a piped client waits for its answer, so the next line sees it."""
        answer = ANSWERS.get(type(event))
        wait = answer is not None and not self.interactive
        if wait:
            self._awaiting = answer
            self._answered.clear()
        try:
            if not await self.session.send(event):
                self.screen.show("error", "* not connected right now; try again in a moment")
                return
            if wait:
                try:
                    async with asyncio.timeout(ANSWER_TIMEOUT):
                        await self._answered.wait()
                except TimeoutError:
                    self.screen.show("error", "* no answer from the server")
        finally:
            self._awaiting = None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()

    async def go() -> int:
        if interactive:
            with patch_stdout(raw=True):
                return await run(args.url, args.name, args.password, True)
        return await run(args.url, args.name, args.password, False)

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        return 0
