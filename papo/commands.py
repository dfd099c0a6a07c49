"""What people type: ``/msg joao oi``, ``/who``, ``sair`` → events. Pure, no I/O.

Shared by the server's plain-text mode and the terminal client, so both
understand exactly the same commands. A line that is not a command is a
public message; ``//text`` sends ``/text`` literally.
"""

from __future__ import annotations

from dataclasses import dataclass

from papo.protocol import (
    DEFAULT_MAX_TEXT,
    MAX_HISTORY,
    ClientEvent,
    Join,
    ListRooms,
    Logout,
    ProtocolError,
    Register,
    Say,
    Who,
    check_name,
    check_room,
    check_text,
    check_topic,
)

QUIT_WORDS = frozenset({"sair", "/quit", "/exit", "/sair"})

HELP = (
    "commands: /msg NAME TEXT (private message) · /who (who is online) · "
    "/join #ROOM (join or create a room; your lines go there) · /part [#ROOM] (leave it) · "
    "/rooms (list rooms) · /topic TEXT (set this room's topic) · /history [N] (older messages) · "
    "/nick NAME [PASSWORD] (choose your name) · /register PASSWORD (protect your name) · "
    "/logout · /help · sair or /quit (leave). Anything else is said in the current room; "
    "start a line with // to say something that begins with /."
)
HISTORY_LINES = 20


@dataclass(frozen=True, slots=True)
class Quit:
    """Leave the chat (``sair``, ``/quit``)."""


@dataclass(frozen=True, slots=True)
class Help:
    """Show the commands."""


@dataclass(frozen=True, slots=True)
class Nick:
    """Take the name ``name``, with ``password`` when it is protected."""

    name: str
    password: str | None = None


@dataclass(frozen=True, slots=True)
class PartRoom:
    """Leave ``room``, or the current room when None."""

    room: str | None = None


@dataclass(frozen=True, slots=True)
class TopicHere:
    """Set the current room's topic."""

    text: str


@dataclass(frozen=True, slots=True)
class HistoryHere:
    """Show up to ``limit`` messages of the current room older than what was shown."""

    limit: int = HISTORY_LINES


Command = ClientEvent | Quit | Help | Nick | PartRoom | TopicHere | HistoryHere


def parse_line(line: str, *, max_text: int = DEFAULT_MAX_TEXT) -> Command:
    """Turn one typed line into a :data:`Command`, or raise :class:`ProtocolError`."""
    stripped = line.strip()
    if stripped.casefold() in QUIT_WORDS:
        return Quit()
    if not stripped.startswith("/") or stripped.startswith("//"):
        text = line.rstrip("\r\n")
        if stripped.startswith("//"):
            text = text.lstrip()[1:]
        return Say(check_text(text, max_text))
    word, _, rest = stripped.partition(" ")
    word = word.casefold()
    rest = rest.strip()
    if word in ("/msg", "/m", "/w"):
        name, _, text = rest.partition(" ")
        if not name or not text.strip():
            raise ProtocolError("usage", "usage: /msg NAME TEXT")
        return Say(check_text(text.strip(), max_text), to=check_name(name))
    if word == "/who":
        return Who()
    if word == "/help":
        return Help()
    if word == "/nick":
        parts = rest.split()
        if not 1 <= len(parts) <= 2:
            raise ProtocolError("usage", "usage: /nick NAME [PASSWORD]")
        return Nick(check_name(parts[0]), parts[1] if len(parts) == 2 else None)
    if word == "/register":
        if not rest or " " in rest:
            raise ProtocolError("usage", "usage: /register PASSWORD (one word)")
        return Register(rest)
    if word == "/logout":
        return Logout()
    if word == "/join":
        if not rest or " " in rest:
            raise ProtocolError("usage", "usage: /join #ROOM")
        return Join(check_room(rest))
    if word in ("/part", "/leave"):
        if " " in rest:
            raise ProtocolError("usage", "usage: /part [#ROOM]")
        return PartRoom(check_room(rest) if rest else None)
    if word == "/rooms":
        return ListRooms()
    if word == "/topic":
        return TopicHere(check_topic(rest))
    if word == "/history":
        if not rest:
            return HistoryHere()
        if not rest.isdigit() or not 1 <= int(rest) <= MAX_HISTORY:
            raise ProtocolError("usage", f"usage: /history [N] (N from 1 to {MAX_HISTORY})")
        return HistoryHere(int(rest))
    raise ProtocolError("unknown_command", f"unknown command {word}; /help lists the commands")
