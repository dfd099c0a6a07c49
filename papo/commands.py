"""What people type: ``/msg joao oi``, ``/who``, ``sair`` → events. Pure, no I/O.

Shared by the server's plain-text mode and the terminal client, so both
understand exactly the same commands. A line that is not a command is a
public message; ``//text`` sends ``/text`` literally.
"""

from __future__ import annotations

from dataclasses import dataclass

from papo.i18n import Text, t
from papo.protocol import (
    DEFAULT_MAX_TEXT,
    MAX_HISTORY,
    ChangePassword,
    ClientEvent,
    Devices,
    Join,
    ListRooms,
    Logout,
    ProtocolError,
    Register,
    Revoke,
    Say,
    Who,
    check_name,
    check_room,
    check_text,
    check_topic,
    visible,
)

QUIT_WORDS = frozenset({"sair", "/quit", "/exit", "/sair"})

#: Every spelling of a command (English and Portuguese work in every language) → its name.
ALIASES = {
    "/msg": "msg", "/m": "msg", "/w": "msg", "/privado": "msg",
    "/who": "who", "/quem": "who",
    "/help": "help", "/ajuda": "help",
    "/nick": "nick", "/nome": "nick",
    "/register": "register", "/registrar": "register",
    "/logout": "logout",
    "/devices": "devices", "/dispositivos": "devices",
    "/revoke": "revoke", "/revogar": "revoke",
    "/password": "password", "/senha": "password",
    "/join": "join", "/entrar": "join",
    "/part": "part", "/leave": "part", "/deixar": "part",
    "/rooms": "rooms", "/salas": "rooms",
    "/topic": "topic", "/topico": "topic", "/tópico": "topic",
    "/history": "history", "/historico": "history", "/histórico": "history",
}  # fmt: skip

HELP = t(
    "commands: /msg or /privado NAME TEXT (private message) · /who or /quem (who is online) · "
    "/join or /entrar #ROOM (join or create a room; your lines go there) · "
    "/part or /deixar [#ROOM] (leave it) · /rooms or /salas (list rooms) · "
    "/topic TEXT (set this room's topic) · /history [N] (older messages) · "
    "/nick or /nome NAME [PASSWORD] (choose your name) · /register PASSWORD (protect your name) · "
    "/password or /senha OLD NEW (change it; your other devices are logged out) · "
    "/devices or /dispositivos (where you are logged in) · /revoke or /revogar ID (log one out) · "
    "/logout [all] (log this device, or all of them, out) · "
    "/help or /ajuda · sair or /quit (leave). Anything else is said in the current "
    "room; start a line with // to say something that begins with /."
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
    command = ALIASES.get(word.casefold())
    rest = rest.strip()
    if command is None:
        raise ProtocolError(
            "unknown_command",
            t("unknown command {command}; /help lists the commands", command=visible(word[:40])),
        )
    return _command(command, word.casefold(), rest, max_text)


def _usage(usage: Text) -> ProtocolError:
    return ProtocolError("usage", t("usage: {usage}", usage=usage))


def _command(command: str, word: str, rest: str, max_text: int) -> Command:
    if command == "msg":
        name, _, text = rest.partition(" ")
        if not name or not text.strip():
            raise _usage(t("{command} NAME TEXT", command=word))
        return Say(check_text(text.strip(), max_text), to=check_name(name))
    if command == "who":
        return Who()
    if command == "help":
        return Help()
    if command == "nick":
        parts = rest.split()
        if not 1 <= len(parts) <= 2:
            raise _usage(t("{command} NAME [PASSWORD]", command=word))
        return Nick(check_name(parts[0]), parts[1] if len(parts) == 2 else None)
    if command == "register":
        if not rest or " " in rest:
            raise _usage(t("{command} PASSWORD (one word)", command=word))
        return Register(rest)
    if command == "logout":
        if rest.casefold() not in ("", "all", "todos"):
            raise _usage(t("{command} [all]", command=word))
        return Logout(all=bool(rest))
    if command == "devices":
        return Devices()
    if command == "revoke":
        if not rest or " " in rest:
            raise _usage(t("{command} ID (an id from /devices)", command=word))
        return Revoke(rest)
    if command == "password":
        parts = rest.split()
        if len(parts) != 2:
            raise _usage(t("{command} OLD NEW", command=word))
        return ChangePassword(parts[0], parts[1])
    if command == "join":
        if not rest or " " in rest:
            raise _usage(t("{command} #ROOM", command=word))
        return Join(check_room(rest))
    if command == "part":
        if " " in rest:
            raise _usage(t("{command} [#ROOM]", command=word))
        return PartRoom(check_room(rest) if rest else None)
    if command == "rooms":
        return ListRooms()
    if command == "topic":
        return TopicHere(check_topic(rest))
    assert command == "history"
    if not rest:
        return HistoryHere()
    if not rest.isdigit() or not 1 <= int(rest) <= MAX_HISTORY:
        raise _usage(t("{command} [N] (N from 1 to {max})", command=word, max=MAX_HISTORY))
    return HistoryHere(int(rest))
