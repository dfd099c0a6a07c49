"""The terminal client's prompt loop: what arrives is shown, what is typed is sent.

:class:`Client` runs two tasks on one joined connection, one reading the
server's events, one reading typed lines (from ``prompt_toolkit`` in a
terminal, from stdin when piped), until either side ends. A piped client
waits for the answer to each request before reading the next line, so a
script sees every answer in order; at the end of input it waits for the
server to acknowledge what it sent, then leaves.

Rooms: the prompt names the *current* room (``[#geral] >``), where typed lines
go. ``/join #sala`` makes ``#sala`` current once the server confirms it,
``/part`` leaves (back to the default room). Every room's messages are shown,
tagged with their room unless they are the default room's; the client counts
unread messages per conversation (for ``/rooms``) and tells the server what
was read in the current room, so the user's other devices clear their badges.
The current room lives here, not in :class:`~papo.client_session.ChatSession`, which
stays a protocol-level library.

The messages replayed on joining are set off from live ones (see
:class:`~papo.client_format.Transcript`). To know when a replay is over
whatever the traffic, the client sends a ``who`` right after it joins (and
after each ``room joined``): the server answers a connection's requests in
order, so that answer comes after the replay. It is not shown.

Moderation (issue 12): ``/edit TEXT`` and ``/delete`` mean the user's newest
message in the current room, known from the server's acks (cid → id) since
the server does not echo a message to the session that sent it; ``/edit ID
TEXT`` edits message ``ID`` when it is one of the user's. ``/help`` lists what
the user's role allows: admin from ``welcome``, operator from the room's
members in ``room joined`` and, asked afresh at each ``/help``, the
operators of ``rooms``. A kick, a mute or a ban reads who, why and until when
(local time); a ban's 1008 close ends the client with its reason.

What the client knows (current room, unread counts, read markers) is
:mod:`papo.client_state`; how events become lines is :mod:`papo.client_format`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from datetime import UTC, datetime

from prompt_toolkit import PromptSession

from papo.client_format import Transcript, format_help, format_message, format_prompt, format_unread
from papo.client_resend import RESEND_WINDOW
from papo.client_screen import Screen
from papo.client_session import ChatSession
from papo.client_state import Conversations, ReadMarks
from papo.commands import (
    Command,
    DeleteHere,
    EditHere,
    Help,
    HistoryHere,
    Nick,
    PartRoom,
    Quit,
    RoomCommand,
    TopicHere,
    parse_line,
)
from papo.i18n import t, tn
from papo.protocol import (
    ClientEvent,
    Conversation,
    Delete,
    Edit,
    Error,
    History,
    HistoryPage,
    Join,
    ListRooms,
    Message,
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
    visible,
)

log = logging.getLogger(__name__)

#: How long a piped client waits for the answer to a request before reading on.
ANSWER_TIMEOUT = 10.0
#: How long a piped client waits for the acks of what it sent before it exits.
ACK_WAIT = 10.0

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
        self.lang = screen.lang
        self.interactive = interactive
        self.state = Conversations()
        self.transcript = Transcript(self.lang)
        self.reads = ReadMarks(session.send)
        self.prompt: PromptSession[str] | None = PromptSession() if interactive else None
        session.on_ack = self.acked
        self._awaiting: type[ServerEvent] | None = None
        self._answered = asyncio.Event()
        # The ``who`` requests on their way, oldest first: True for a replay's end mark.
        self._whos: deque[bool] = deque()
        # The ``rooms`` requests on their way, oldest first: True for /help's (not shown).
        self._lists: deque[bool] = deque()

    def acked(self, message_id: int, say: Say, to: str | None) -> None:
        """One of our messages is stored as ``message_id``: ours to ``/edit`` and ``/delete``.

        A private one is shown once stored, as ``private to João: …`` with the
        name as the server spells it (the line typed said ``/msg joao …``).
        """
        sent = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self.state.acked(message_id, say.room, say.to, say.text, sent)
        joined = self.session.joined
        if say.to is not None and joined is not None:
            mine = Message(message_id, joined.name, say.text, sent, to=to or say.to)
            self.screen.show(*format_message(mine, lang=self.lang, me=self.state.me))

    def prompt_text(self) -> str:
        return format_prompt(self.state)

    def show_unread(self) -> None:
        """After joining: the rooms and people with unread messages, if any."""
        line = format_unread(self.state, lang=self.lang)
        if line is not None:
            self.screen.show(*line)

    async def chat(self) -> int:
        """Show what arrives and send what is typed until either side ends; the exit status."""
        session, screen = self.session, self.screen
        receiver = asyncio.create_task(self.receive())
        typer = asyncio.create_task(self.type())
        try:
            done, _ = await asyncio.wait({receiver, typer}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:  # the conversation ended from the server's side
                # The prompt goes first: a line printed while it runs waits for the next
                # redraw, and there would be none (the last words would be lost).
                typer.cancel()
                await asyncio.gather(typer, return_exceptions=True)
                code = session.close_code
                if session.closing or code == 1000:
                    screen.say(t("disconnected"))
                    return 0
                if code == 1008 and session.close_reason:  # banned, or flooding: why
                    log.info("closed by the server: code 1008 (%s)", session.close_reason)
                    screen.fail(
                        t(
                            "the server closed the connection: {reason}",
                            reason=visible(session.close_reason),
                        )
                    )
                    return 1
                if session.gave_up is None:  # (else the session said why already)
                    log.info("closed by the server: code %s", code)
                    screen.fail(t("the server closed the connection"))
                return 1
            if not self.interactive and not await self._acked(session):
                count = len(session.unacked)
                screen.fail(
                    tn(
                        "{n} message was not acknowledged by the server",
                        "{n} messages were not acknowledged by the server",
                        count,
                    )
                )
                return 1
            screen.goodbye()
            return 0
        finally:
            for task in (receiver, typer):
                task.cancel()

    # ---- incoming

    @staticmethod
    async def _acked(session: ChatSession) -> bool:
        """Whether every message sent got its ack before a piped client exits.

        Ten seconds, or as long as a refused message may still be re-sent
        (:data:`papo.client_resend.RESEND_WINDOW`) while one is.
        """
        if await session.wait_acked(ACK_WAIT):
            return True
        return bool(session.resends.retrying) and await session.wait_acked(RESEND_WINDOW)

    async def receive(self) -> None:
        async for event in self.session.events():
            if isinstance(event, Users) and self._whos and self._whos.popleft():
                self.screen.lines(self.transcript.now())  # a replay's end mark: not shown
                continue
            if isinstance(event, Welcome):  # a reconnect: earlier requests are not answered
                self._whos.clear()
                self._lists.clear()
            if isinstance(event, RoomList) and self._lists and self._lists.popleft():
                self.state.apply(event)  # the rooms' operators, fresh: then /help
                self.show_help()
                if self._awaiting is RoomList:
                    self._answered.set()
                continue
            self.handle(event)
            if self._awaiting is not None and isinstance(event, (self._awaiting, Error)):
                self._answered.set()
            if isinstance(event, RoomJoined):  # the room's last messages follow it
                await self.mark_replay()

    def handle(self, event: ServerEvent) -> None:
        state = self.state
        change = state.apply(event)
        self.screen.lines(self.transcript.lines(event, state, change))
        if isinstance(event, RoomParted) and change.moved:
            self.screen.say(t("back in {room}", room=visible(state.current)))
        for due in change.due:
            self.reads.mark(*due)
        if change.moved and self.prompt is not None:
            self.prompt.app.invalidate()

    async def mark_replay(self) -> None:
        """Ask the server something whose answer comes after the replay now under way."""
        self._whos.append(True)
        if not await self.session.send(Who()):
            self._whos.pop()

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
                self.screen.say(exc.message, "error")
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
            if state.admin:  # everything: nothing to ask
                self.show_help()
            else:  # an /op since joining shows in the room list's operators
                await self.request(ListRooms(), quiet=True)
            return
        if isinstance(command, Nick):
            self.screen.say(t("to change your name, leave and start again with --name NAME"))
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
                self.screen.say(
                    t("{room} is everyone's room: it cannot be left", room=visible(state.default)),
                    "error",
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
        elif isinstance(command, EditHere | DeleteHere):
            lifecycle = await self.lifecycle(command)
            if lifecycle is None:
                return
            event = lifecycle
        elif isinstance(command, RoomCommand):  # /kick, /mute, /op ...: about this room
            event = command.at(state.current)
        else:
            event = command
        await self.request(event)

    async def lifecycle(self, command: EditHere | DeleteHere) -> Edit | Delete | None:
        """``/edit`` and ``/delete`` as the wire has them: with the message's id.

        Without an id they mean the user's newest message in the current room
        that this client knows of (from acks: cid → id, and from the user's
        messages shown here). ``/edit ID TEXT`` edits message ``ID`` when it is
        one of the user's own known here; otherwise the number is the text's.
        None (and an error line) when there is no such message. A message typed
        just before, not yet acknowledged, is waited for: it is the last one.
        """
        state = self.state
        if any(say.to is None for say in self.session.unacked.values()):
            await self.session.wait_acked(ANSWER_TIMEOUT)
        if isinstance(command, DeleteHere) and command.id is not None:
            state.forget_own(command.id)
            return Delete(command.id)
        if isinstance(command, EditHere):
            first, _, rest = command.text.partition(" ")
            if first.isdigit() and rest.strip() and state.is_own(int(first)):
                return Edit(int(first), rest.strip())
        last = state.last_own(state.current)
        if last is None:
            self.screen.say(
                t("you have no message in {room} that this client knows of; give its id",
                  room=visible(state.current)),
                "error",
            )  # fmt: skip
            return None
        if isinstance(command, EditHere):
            return Edit(last, command.text)
        state.forget_own(last)  # a /delete right after this one means the one before
        return Delete(last)

    def show_help(self) -> None:
        """``/help``: what the user's role in the current room allows."""
        self.screen.lines(format_help(self.lang, self.state.role(self.state.current)))

    async def request(self, event: ClientEvent, *, quiet: bool = False) -> None:
        """Send ``event``; a piped client waits for its answer, so the next line sees it.

        ``quiet``: a ``rooms`` request of /help's, whose answer refreshes who operates
        which room and is not shown; offline, /help shows what the client knows.
        """
        answer = ANSWERS.get(type(event))
        wait = answer is not None and not self.interactive
        if wait:
            self._awaiting = answer
            self._answered.clear()
        who = isinstance(event, Who)
        if who:
            self._whos.append(False)
        lists = isinstance(event, ListRooms)
        if lists:
            self._lists.append(quiet)
        try:
            if not await self.session.send(event):
                if who:
                    self._whos.pop()
                if lists:
                    self._lists.pop()
                if quiet:
                    self.show_help()
                    return
                self.screen.say(t("not connected right now; try again in a moment"), "error")
                return
            if wait:
                try:
                    async with asyncio.timeout(ANSWER_TIMEOUT):
                        await self._answered.wait()
                except TimeoutError:
                    self.screen.say(t("no answer from the server"), "error")
        finally:
            self._awaiting = None
