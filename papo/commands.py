"""What people type: ``/msg joao oi``, ``/who``, ``sair`` → events. Pure, no I/O.

Shared by the server's plain-text mode and the terminal client, so both
understand exactly the same commands. A line that is not a command is a
public message; ``//text`` sends ``/text`` literally.
"""

from __future__ import annotations

from dataclasses import dataclass

from papo.events import DEFAULT_AUDIT, MAX_AUDIT
from papo.i18n import Text, t
from papo.moderation import BadDuration, parse_duration
from papo.protocol import (
    DEFAULT_MAX_TEXT,
    MAX_HISTORY,
    Ban,
    BanIp,
    ChangePassword,
    ClientEvent,
    Delete,
    Deop,
    Devices,
    Edit,
    Join,
    Kick,
    ListRooms,
    Logout,
    Mute,
    Op,
    ProtocolError,
    Purge,
    ReadAudit,
    Register,
    Revoke,
    Say,
    SetMode,
    Unban,
    UnbanIp,
    Unmute,
    Who,
    visible,
)
from papo.protocol_parse import (
    MAX_ID,
    check_address,
    check_name,
    check_reason,
    check_room,
    check_text,
    check_topic,
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
    "/edit": "edit", "/editar": "edit",
    "/delete": "delete", "/apagar": "delete",
    "/kick": "kick", "/expulsar": "kick",
    "/mute": "mute", "/silenciar": "mute",
    "/unmute": "unmute", "/dessilenciar": "unmute",
    "/ban": "ban", "/banir": "ban",
    "/unban": "unban", "/desbanir": "unban",
    "/ban-ip": "ban-ip", "/banir-ip": "ban-ip",
    "/unban-ip": "unban-ip", "/desbanir-ip": "unban-ip",
    "/purge": "purge", "/limpar": "purge",
    "/op": "op",
    "/deop": "deop",
    "/mode": "mode", "/modo": "mode",
    "/audit": "audit", "/auditoria": "audit",
}  # fmt: skip

HELP = t(
    "commands: /msg or /privado NAME TEXT (private message) · /who or /quem (who is online) · "
    "/join or /entrar #ROOM (join or create a room; your lines go there) · "
    "/part or /deixar [#ROOM] (leave it) · /rooms or /salas (list rooms) · "
    "/topic or /topico TEXT (set this room's topic) · /history or /historico [N] (older messages) · "
    "/nick or /nome NAME [PASSWORD] (choose your name) · "
    "/register or /registrar PASSWORD (protect your name) · "
    "/password or /senha OLD NEW (change it; your other devices are logged out) · "
    "/devices or /dispositivos (where you are logged in) · /revoke or /revogar ID (log one out) · "
    "/logout [all] (log this device, or all of them, out) · "
    "/help or /ajuda · sair or /quit (leave). Anything else is said in the current "
    "room; start a line with // to say something that begins with /."
)
#: Everyone's: editing and deleting your own messages.
LIFECYCLE_HELP = t(
    "your messages: /edit or /editar TEXT (replaces your last message here, within 15 minutes) · "
    "/delete or /apagar [ID] (deletes it; by default your last one here)"
)
#: What operators (in their rooms) and admins may also type; /help shows it to them.
MODERATION_HELP = t(
    "operators: /delete ID (anyone's message) · /kick NAME [REASON] · "
    "/mute NAME 10m [REASON] · /unmute NAME · /op NAME · /deop NAME · "
    "/mode +m or -m (read-only room) · /mode +t or -t (topic lock)"
)
ADMIN_HELP = t(
    "admins: /ban NAME [DURATION] [REASON] · /unban NAME · /ban-ip ADDRESS|CIDR [DURATION] · "
    "/unban-ip ADDRESS|CIDR · /purge NAME [SINCE, e.g. 1h] (ban and delete their messages) · "
    "/audit [N]. Durations: 30s, 10m, 2h, 1d, 1w"
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


class RoomCommand:
    """A command about the current room (plain text): :meth:`at` names the room.

    The parser does not know which room a line is typed in; the plain-text
    transport (or the terminal client) does, and calls ``at`` with it.
    """

    __slots__ = ()

    def at(self, room: str) -> ClientEvent:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class EditHere(RoomCommand):
    """Replace the text of your newest message in the current room."""

    text: str

    def at(self, room: str) -> Edit:
        return Edit(None, self.text, room)


@dataclass(frozen=True, slots=True)
class DeleteHere(RoomCommand):
    """Delete message ``id``, or (None) your newest message in the current room."""

    id: int | None = None

    def at(self, room: str) -> Delete:
        return Delete(self.id, room)


@dataclass(frozen=True, slots=True)
class KickHere(RoomCommand):
    name: str
    reason: str = ""

    def at(self, room: str) -> Kick:
        return Kick(room, self.name, self.reason)


@dataclass(frozen=True, slots=True)
class MuteHere(RoomCommand):
    name: str
    seconds: int
    reason: str = ""

    def at(self, room: str) -> Mute:
        return Mute(room, self.name, self.seconds, self.reason)


@dataclass(frozen=True, slots=True)
class UnmuteHere(RoomCommand):
    name: str

    def at(self, room: str) -> Unmute:
        return Unmute(room, self.name)


@dataclass(frozen=True, slots=True)
class OpHere(RoomCommand):
    name: str

    def at(self, room: str) -> Op:
        return Op(room, self.name)


@dataclass(frozen=True, slots=True)
class DeopHere(RoomCommand):
    name: str

    def at(self, room: str) -> Deop:
        return Deop(room, self.name)


@dataclass(frozen=True, slots=True)
class ModeHere(RoomCommand):
    """``/mode +m`` (read-only), ``-m``, ``+t`` (topic lock), ``-t``, or both (``+mt``)."""

    moderated: bool | None = None
    topic_locked: bool | None = None

    def at(self, room: str) -> SetMode:
        return SetMode(room, self.moderated, self.topic_locked)


Command = (
    ClientEvent
    | Quit
    | Help
    | Nick
    | PartRoom
    | TopicHere
    | HistoryHere
    | EditHere
    | DeleteHere
    | KickHere
    | MuteHere
    | UnmuteHere
    | OpHere
    | DeopHere
    | ModeHere
)


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
    if command in _MODERATION:
        return _moderation(command, word.casefold(), rest, max_text)
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


_MODERATION = frozenset(
    {
        "edit", "delete", "kick", "mute", "unmute", "ban", "unban", "ban-ip", "unban-ip",
        "purge", "op", "deop", "mode", "audit",
    }
)  # fmt: skip


def _moderation(command: str, word: str, rest: str, max_text: int) -> Command:
    """The moderation and message-lifecycle commands (what each role may: papo.moderation)."""
    if command == "edit":
        if not rest:
            raise _usage(t("{command} TEXT (replaces your last message here)", command=word))
        return EditHere(check_text(rest, max_text))
    if command == "delete":
        if not rest:
            return DeleteHere()
        if not rest.isdigit() or int(rest) > MAX_ID:
            raise _usage(t("{command} [ID] (default: your last message here)", command=word))
        return DeleteHere(int(rest))
    if command == "mode":
        return _mode(word, rest)
    if command == "audit":
        if not rest:
            return ReadAudit(DEFAULT_AUDIT)
        if not rest.isdigit() or not 1 <= int(rest) <= MAX_AUDIT:
            raise _usage(t("{command} [N] (N from 1 to {max})", command=word, max=MAX_AUDIT))
        return ReadAudit(int(rest))
    target, _, more = rest.partition(" ")
    more = more.strip()
    if not target:
        raise _usage(_moderation_usage(command, word))
    if command in ("ban-ip", "unban-ip"):
        address = check_address(target)
        if command == "unban-ip":
            return UnbanIp(address)
        seconds, reason = _duration_and_reason(more, required=False)
        return BanIp(address, seconds, check_reason(reason))
    name = check_name(target)
    if command in ("unmute", "unban", "op", "deop"):
        if more:
            raise _usage(_moderation_usage(command, word))
        if command == "unban":
            return Unban(name)
        if command == "unmute":
            return UnmuteHere(name)
        return OpHere(name) if command == "op" else DeopHere(name)
    if command == "kick":
        return KickHere(name, check_reason(more))
    if command == "mute" and not more:
        raise _usage(_moderation_usage(command, word))
    seconds, reason = _duration_and_reason(more, required=command == "mute")
    if command == "mute":
        assert seconds is not None
        return MuteHere(name, seconds, check_reason(reason))
    if command == "ban":
        return Ban(name, seconds, check_reason(reason))
    assert command == "purge"
    return Purge(name, seconds=seconds, reason=check_reason(reason))


def _moderation_usage(command: str, word: str) -> Text:
    usages = {
        "kick": t("{command} NAME [REASON]", command=word),
        "mute": t("{command} NAME DURATION [REASON] (durations: 30s, 10m, 2h, 1d)", command=word),
        "unmute": t("{command} NAME", command=word),
        "ban": t("{command} NAME [DURATION] [REASON]", command=word),
        "unban": t("{command} NAME", command=word),
        "ban-ip": t("{command} ADDRESS|CIDR [DURATION] [REASON]", command=word),
        "unban-ip": t("{command} ADDRESS|CIDR", command=word),
        "purge": t(
            "{command} NAME [SINCE] (e.g. 1h: their messages of the last hour)", command=word
        ),
        "op": t("{command} NAME", command=word),
        "deop": t("{command} NAME", command=word),
    }
    return usages[command]


def _duration_and_reason(rest: str, *, required: bool) -> tuple[int | None, str]:
    """A leading duration (``10m``) and the reason after it; without one, all is the reason."""
    first, _, after = rest.partition(" ")
    try:
        return parse_duration(first), after.strip()
    except BadDuration:
        if required:
            raise ProtocolError(
                "usage",
                t("{text} is not a duration; write 30s, 10m, 2h or 1d", text=visible(first[:20])),
            ) from None
    return None, rest


def _mode(word: str, rest: str) -> ModeHere:
    """``+m``/``-m`` (read-only), ``+t``/``-t`` (topic lock), combined as ``+mt`` or ``-m +t``."""
    moderated: bool | None = None
    locked: bool | None = None
    sign: bool | None = None
    for char in rest.replace(" ", ""):
        if char in "+-":
            sign = char == "+"
        elif char in "mt" and sign is not None:
            if char == "m":
                moderated = sign
            else:
                locked = sign
        else:
            sign = None
            break
    if sign is None or (moderated is None and locked is None):
        raise _usage(t("{command} +m or -m (read-only room), +t or -t (topic lock)", command=word))
    return ModeHere(moderated, locked)
