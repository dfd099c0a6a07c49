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
The current room lives here, not in :class:`~papo.client_session.ChatSession`, which
stays a protocol-level library.

This module is the wiring: options, joining, the screen and the prompt loop.
What the client knows (current room, unread counts, read markers) is
:mod:`papo.client_state`; how events become lines is :mod:`papo.client_format`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.shortcuts import print_formatted_text

from papo.client_format import (
    format_event,
    format_history,
    format_prompt,
    format_rooms,
    format_unread,
)
from papo.client_session import ChatSession, ConnectError, JoinError
from papo.client_state import Conversations, ReadMarks
from papo.commands import (
    HELP,
    Command,
    Help,
    HistoryHere,
    Nick,
    PartRoom,
    Quit,
    RoomCommand,
    TopicHere,
    parse_line,
)
from papo.protocol import (
    ClientEvent,
    Conversation,
    Error,
    Hello,
    History,
    HistoryPage,
    Join,
    ListRooms,
    Part,
    ProtocolError,
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

DEFAULT_URL = "ws://localhost:8765"
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
# The screen


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
            code, message = exc.code, str(exc.message)
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
        return format_prompt(self.state)

    def show_unread(self) -> None:
        """After joining: the rooms and people with unread messages, if any."""
        line = format_unread(self.state)
        if line is not None:
            self.screen.show(*line)

    # ---- incoming

    async def receive(self) -> None:
        async for event in self.session.events():
            self.handle(event)
            if self._awaiting is not None and isinstance(event, (self._awaiting, Error)):
                self._answered.set()

    def handle(self, event: ServerEvent) -> None:
        state = self.state
        change = state.apply(event)
        if isinstance(event, RoomList):
            for line in format_rooms(event, state):
                self.screen.show(*line)
        elif isinstance(event, HistoryPage):
            for line in format_history(event, state):
                self.screen.show(*line)
        else:
            shown = format_event(event, state)
            if shown is not None:
                self.screen.show(*shown)
        if isinstance(event, RoomParted) and change.moved:
            self.screen.show("notice", f"* back in {visible(state.current)}")
        for due in change.due:
            self.reads.mark(*due)
        if change.moved and self.prompt is not None:
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
        elif isinstance(command, RoomCommand):  # /kick, /mute, /edit ...: about this room
            event = command.at(state.current)
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
