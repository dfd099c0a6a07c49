"""The papo wire protocol: parse, validate and encode events. Pure, no I/O.

Two ways to speak share one set of events:

* JSON (subprotocol ``papo.v1``): one JSON object per text frame, described
  in ``docs/protocol.md``. :func:`parse_client` turns a frame into a client
  event or raises :class:`ProtocolError`; server events encode with
  :meth:`Outgoing.payload`.
* Plain text (no subprotocol): lines typed by a person. Turning a line into
  a client event is :mod:`papo.commands`' job; :func:`render_plain` turns a
  server event into the line a plain client sees.

An :class:`Outgoing` wraps one server event and encodes it at most once per
mode, so a message fanned out to a thousand peers is serialised once or twice,
not a thousand times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from papo.errors import ProtocolError as ProtocolError  # noqa: PLC0414 (re-exported)
from papo.names import InvalidNameError, clean_name, clean_room
from papo.wsframe import text_frame

Mode = Literal["json", "plain"]

DEFAULT_MAX_TEXT = 4096
MAX_CID_LENGTH = 64
MAX_SECRET_LENGTH = 1024


MAX_TOPIC = 300
DEFAULT_HISTORY = 50
MAX_HISTORY = 200


# --------------------------------------------------------------------------
# Client events


@dataclass(frozen=True, slots=True)
class Hello:
    """Join as ``name``, with a password or a token when the name needs one."""

    name: str
    password: str | None = None
    token: str | None = None
    resume_from: int | None = None


@dataclass(frozen=True, slots=True)
class Say:
    """Send ``text`` to a room (``room``; None: the default room), or privately to ``to``."""

    text: str
    to: str | None = None
    cid: str | None = None
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """Join the room ``room`` (created when nobody has yet)."""

    room: str


@dataclass(frozen=True, slots=True)
class Part:
    """Leave the room ``room``."""

    room: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """Which conversation a request is about: a ``room``, or the direct messages ``with`` a user."""

    room: str | None = None
    with_: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    """Up to ``limit`` messages of one conversation older than id ``before`` (None: newest)."""

    conversation: Conversation
    before: int | None = None
    limit: int = DEFAULT_HISTORY


@dataclass(frozen=True, slots=True)
class Read:
    """Everything up to id ``id`` in one conversation has been read."""

    conversation: Conversation
    id: int


@dataclass(frozen=True, slots=True)
class ListRooms:
    """Ask for the list of rooms."""


@dataclass(frozen=True, slots=True)
class SetTopic:
    """Set the topic of ``room`` (empty text clears it)."""

    room: str
    text: str


@dataclass(frozen=True, slots=True)
class Who:
    """Ask for the list of online users."""


@dataclass(frozen=True, slots=True)
class Register:
    """Protect the current name with ``password``."""

    password: str


@dataclass(frozen=True, slots=True)
class Logout:
    """Revoke the session token and leave."""


ClientEvent = (
    Hello | Say | Who | Register | Logout | Join | Part | History | Read | ListRooms | SetTopic
)


def parse_client(raw: str | bytes, *, max_text: int = DEFAULT_MAX_TEXT) -> ClientEvent:
    """Parse one JSON frame from a client into a :data:`ClientEvent`.

    Raises :class:`ProtocolError` for anything else: malformed or hostile
    JSON, a value that is not an object, an unknown ``type``, missing or
    wrongly typed fields, empty text or text over ``max_text`` characters.
    Fields the protocol does not define (such as a client-supplied ``from``)
    are ignored.
    """
    data = _load_event(raw)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_event", "an event needs a string field 'type'")
    if kind == "say":
        to = _optional_str(data, "to")
        room = _optional_str(data, "room")
        if to is not None and room is not None:
            raise ProtocolError("bad_field", "'say' takes 'room' or 'to', not both")
        return Say(
            text=check_text(_required_str(data, "text"), max_text),
            to=None if to is None else check_name(to),
            cid=_cid(data),
            room=None if room is None else check_room(room),
        )
    if kind == "join":
        return Join(check_room(_required_str(data, "room")))
    if kind == "part":
        return Part(check_room(_required_str(data, "room")))
    if kind == "history":
        limit = _optional_id(data, "limit")
        if limit is not None and not 1 <= limit <= MAX_HISTORY:
            raise ProtocolError("bad_field", f"the field 'limit' is 1 to {MAX_HISTORY}")
        return History(
            _conversation(data),
            before=_optional_id(data, "before"),
            limit=DEFAULT_HISTORY if limit is None else limit,
        )
    if kind == "read":
        message_id = _optional_id(data, "id")
        if message_id is None:
            raise ProtocolError("missing_field", "'read' needs the field 'id'")
        return Read(_conversation(data), message_id)
    if kind == "rooms":
        return ListRooms()
    if kind == "topic":
        return SetTopic(
            check_room(_required_str(data, "room")), check_topic(_required_str(data, "text"))
        )
    if kind == "hello":
        return Hello(
            name=check_name(_required_str(data, "name")),
            password=_secret(data, "password"),
            token=_secret(data, "token"),
            resume_from=_optional_id(data, "resume_from"),
        )
    if kind == "who":
        return Who()
    if kind == "register":
        password = _secret(data, "password")
        if not password:
            raise ProtocolError("missing_field", "'register' needs a non-empty 'password'")
        return Register(password)
    if kind == "logout":
        return Logout()
    raise ProtocolError("unknown_type", f"unknown event type {_short(kind)!r}")


def _load_event(raw: str | bytes) -> dict[str, Any]:
    """The JSON object of one frame, or :class:`ProtocolError` (both directions use it)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # A 60 000-deep "[[[[..." raises RecursionError, not ValueError.
        raise ProtocolError("bad_json", f"not valid JSON: {_short(exc)}") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_event", "an event must be a JSON object")
    return data


def check_text(text: str, max_text: int) -> str:
    """Validate a message body: not blank, at most ``max_text`` characters."""
    if not text.strip():
        raise ProtocolError("empty_text", "a message cannot be empty")
    if len(text) > max_text:
        raise ProtocolError(
            "text_too_long", f"a message has at most {max_text} characters (got {len(text)})"
        )
    return text


def check_name(raw: str) -> str:
    """Validate a user name, as :func:`papo.names.clean_name` does."""
    try:
        return clean_name(raw)
    except InvalidNameError as exc:
        raise ProtocolError("bad_name", f"bad name: {exc}") from None


def check_room(raw: str) -> str:
    """Validate a room name (``#sala``; the ``#`` may be left out) as ``#`` + a valid name."""
    try:
        return clean_room(raw)
    except InvalidNameError as exc:
        raise ProtocolError("bad_name", f"bad room name: {exc}") from None


def check_topic(text: str) -> str:
    """A room topic: one line of at most ``MAX_TOPIC`` characters (blank clears it)."""
    text = " ".join(text.split())
    if len(text) > MAX_TOPIC:
        raise ProtocolError("text_too_long", f"a topic has at most {MAX_TOPIC} characters")
    return text


def _conversation(data: dict[str, Any]) -> Conversation:
    room = _optional_str(data, "room")
    with_ = _optional_str(data, "with")
    if (room is None) == (with_ is None):
        raise ProtocolError(
            "bad_field" if room is not None else "missing_field",
            f"'{data['type']}' needs either 'room' or 'with' (a user's name)",
        )
    if room is not None:
        return Conversation(room=check_room(room))
    assert with_ is not None
    return Conversation(with_=check_name(with_))


def _required_str(data: dict[str, Any], key: str) -> str:
    if key not in data:
        raise ProtocolError("missing_field", f"'{data['type']}' needs the field '{key}'")
    value = data[key]
    if not isinstance(value, str):
        raise ProtocolError("bad_field", f"the field '{key}' must be a string")
    return value


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    if data.get(key) is None:
        return None
    return _required_str(data, key)


def _secret(data: dict[str, Any], key: str) -> str | None:
    value = _optional_str(data, key)
    if value is not None and len(value) > MAX_SECRET_LENGTH:
        raise ProtocolError("bad_field", f"the field '{key}' is too long")
    return value


def _cid(data: dict[str, Any]) -> str | None:
    value = data.get("cid")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProtocolError("bad_field", "the field 'cid' must be a string or an integer")
    cid = str(value)
    if not cid or len(cid) > MAX_CID_LENGTH:
        raise ProtocolError("bad_field", f"the field 'cid' has 1 to {MAX_CID_LENGTH} characters")
    return cid


def _optional_id(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError("bad_field", f"the field '{key}' must be a non-negative integer")
    return value


def _short(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------
# Server events


@dataclass(frozen=True, slots=True)
class RoomState:
    """One of the user's rooms as ``welcome`` lists it."""

    room: str
    topic: str = ""
    unread: int = 0
    last_read: int = 0


@dataclass(frozen=True, slots=True)
class DirectState:
    """One of the user's direct conversations as ``welcome`` lists it."""

    with_: str
    unread: int = 0
    last_read: int = 0


@dataclass(frozen=True, slots=True)
class Welcome:
    """The join succeeded: you are ``name``; ``token`` joins again without a password."""

    name: str
    token: str | None = None
    last_id: int = 0
    protected: bool = False
    rooms: tuple[RoomState, ...] = ()
    direct: tuple[DirectState, ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message: in ``room``, or private when ``to`` is set.

    ``cid`` is set only when a message is replayed to its own sender (after a
    resume): it lets the sender recognise a message whose ``ack`` it missed.
    ``home`` marks the default room, whose lines plain-text clients see
    without a room tag (as before rooms existed).
    """

    id: int
    sender: str
    text: str
    ts: str
    to: str | None = None
    cid: str | None = None
    room: str | None = None
    home: bool = False


@dataclass(frozen=True, slots=True)
class MemberInfo:
    name: str
    online: bool


@dataclass(frozen=True, slots=True)
class RoomJoined:
    """The user is now in ``room`` (sent to all of the user's sessions)."""

    room: str
    topic: str
    members: tuple[MemberInfo, ...]
    last_id: int
    unread: int
    last_read: int = 0


@dataclass(frozen=True, slots=True)
class RoomParted:
    """The user left ``room`` (sent to all of the user's sessions)."""

    room: str


@dataclass(frozen=True, slots=True)
class RoomTopic:
    """``by`` set the topic of ``room`` (sent to its members)."""

    room: str
    topic: str
    by: str


@dataclass(frozen=True, slots=True)
class Member:
    """Another user joined or left a room you are in."""

    event: Literal["join", "part"]
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """An answer to ``history``: ``messages`` oldest first; ``more`` when older ones exist."""

    conversation: Conversation
    messages: tuple[Message, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class ReadMarker:
    """The user has read ``conversation`` up to ``id`` (on another session)."""

    conversation: Conversation
    id: int


@dataclass(frozen=True, slots=True)
class RoomInfo:
    room: str
    members: int
    online: int
    topic: str
    joined: bool


@dataclass(frozen=True, slots=True)
class RoomList:
    """An answer to ``rooms``."""

    rooms: tuple[RoomInfo, ...]


@dataclass(frozen=True, slots=True)
class Presence:
    """A user came online (``join``: first session) or went away (``leave``: last one)."""

    event: Literal["join", "leave"]
    name: str


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    sessions: int


@dataclass(frozen=True, slots=True)
class Users:
    """The online users, with how many sessions each has."""

    users: tuple[UserInfo, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """Your message ``cid`` was accepted and stored as ``id``."""

    id: int
    cid: str | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """Something you sent could not be done; the connection stays open.

    ``cid`` repeats the client id of the ``say`` that failed, if it had one.
    """

    code: str
    message: str
    cid: str | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages after ``after`` and before ``oldest`` are no longer kept (retention)."""

    after: int
    oldest: int


@dataclass(frozen=True, slots=True)
class Notice:
    """Information for people (greetings, help, confirmations)."""

    text: str


ServerEvent = (
    Welcome
    | Message
    | Presence
    | Users
    | Ack
    | Error
    | Gap
    | Notice
    | RoomJoined
    | RoomParted
    | RoomTopic
    | Member
    | HistoryPage
    | ReadMarker
    | RoomList
)


def _conversation_wire(conversation: Conversation) -> dict[str, Any]:
    if conversation.room is not None:
        return {"room": conversation.room}
    return {"with": conversation.with_}


def _message_wire(event: Message) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "type": "message",
        "id": event.id,
        "from": event.sender,
        "text": event.text,
        "ts": event.ts,
    }
    if event.to is not None:
        wire["to"] = event.to
    if event.room is not None:
        wire["room"] = event.room
    if event.cid is not None:
        wire["cid"] = event.cid
    return wire


def to_wire(event: ServerEvent) -> dict[str, Any]:
    """The JSON object of a server event (see docs/protocol.md)."""
    if isinstance(event, Message):
        return _message_wire(event)
    if isinstance(event, Presence):
        return {"type": "presence", "event": event.event, "name": event.name}
    if isinstance(event, Ack):
        return {"type": "ack", "id": event.id, "cid": event.cid}
    if isinstance(event, Error):
        wire = {"type": "error", "code": event.code, "message": event.message}
        if event.cid is not None:
            wire["cid"] = event.cid
        return wire
    if isinstance(event, Welcome):
        return {
            "type": "welcome",
            "name": event.name,
            "token": event.token,
            "last_id": event.last_id,
            "protected": event.protected,
            "rooms": [
                {"room": r.room, "topic": r.topic, "unread": r.unread, "last_read": r.last_read}
                for r in event.rooms
            ],
            "direct": [
                {"with": d.with_, "unread": d.unread, "last_read": d.last_read}
                for d in event.direct
            ],
        }
    if isinstance(event, RoomJoined):
        return {
            "type": "room",
            "event": "joined",
            "room": event.room,
            "topic": event.topic,
            "members": [{"name": m.name, "online": m.online} for m in event.members],
            "last_id": event.last_id,
            "unread": event.unread,
            "last_read": event.last_read,
        }
    if isinstance(event, RoomParted):
        return {"type": "room", "event": "parted", "room": event.room}
    if isinstance(event, RoomTopic):
        return {
            "type": "room",
            "event": "topic",
            "room": event.room,
            "topic": event.topic,
            "by": event.by,
        }
    if isinstance(event, Member):
        return {"type": "member", "event": event.event, "room": event.room, "name": event.name}
    if isinstance(event, HistoryPage):
        return {
            "type": "history",
            **_conversation_wire(event.conversation),
            "messages": [_message_wire(m) for m in event.messages],
            "more": event.more,
        }
    if isinstance(event, ReadMarker):
        return {"type": "read", **_conversation_wire(event.conversation), "id": event.id}
    if isinstance(event, RoomList):
        return {
            "type": "rooms",
            "rooms": [
                {
                    "room": r.room,
                    "members": r.members,
                    "online": r.online,
                    "topic": r.topic,
                    "joined": r.joined,
                }
                for r in event.rooms
            ],
        }
    if isinstance(event, Gap):
        return {"type": "gap", "after": event.after, "oldest": event.oldest}
    if isinstance(event, Users):
        return {
            "type": "users",
            "users": [{"name": u.name, "sessions": u.sessions} for u in event.users],
        }
    return {"type": "notice", "text": event.text}


def encode_json(event: ServerEvent) -> bytes:
    """The UTF-8 JSON payload of a server event."""
    return json.dumps(to_wire(event), ensure_ascii=False, separators=(",", ":")).encode()


def render_plain(event: ServerEvent) -> str | None:
    """The line a plain-text client sees for ``event``, or None for none.

    Control characters are made visible (``\\n`` becomes ``⏎`` and the like)
    in everything that may carry someone's input, so one event is one line
    and nobody can forge a notice or drive the reader's terminal.
    """
    if isinstance(event, Message):
        return plain_message(event)
    if isinstance(event, Presence):
        return f"* {visible(event.name)} {'joined' if event.event == 'join' else 'left'}"
    if isinstance(event, Error):
        return f"* error: {visible(event.message)}"
    if isinstance(event, Notice):
        return f"* {visible(event.text)}"
    if isinstance(event, Welcome):
        return f"* you are {visible(event.name)}"
    if isinstance(event, Gap):
        return f"* messages {event.after + 1}-{event.oldest - 1} are no longer kept"
    if isinstance(event, Users):
        listed = ", ".join(
            visible(u.name) if u.sessions == 1 else f"{visible(u.name)} ({u.sessions} sessions)"
            for u in event.users
        )
        return f"* online ({len(event.users)}): {listed}"
    return _render_rooms(event)


def plain_message(event: Message) -> str:
    """One chat line: ``NAME: text`` in the default room, ``[#sala] NAME: text`` elsewhere."""
    text = visible(event.text)
    if event.to is not None:
        return f"{visible(event.sender)} → {visible(event.to)} (private): {text}"
    if event.room is None or event.home:
        return f"{visible(event.sender)}: {text}"
    return f"[{visible(event.room)}] {visible(event.sender)}: {text}"


def _render_rooms(event: ServerEvent) -> str | None:
    if isinstance(event, RoomJoined):
        topic = f" (topic: {visible(event.topic)})" if event.topic else ""
        online = sum(1 for m in event.members if m.online)
        return (
            f"* you are in {visible(event.room)}{topic}: {len(event.members)} members, "
            f"{online} online"
        )
    if isinstance(event, RoomParted):
        return f"* you left {visible(event.room)}"
    if isinstance(event, RoomTopic):
        if not event.topic:
            return f"* {visible(event.by)} cleared the topic of {visible(event.room)}"
        return (
            f"* {visible(event.by)} set the topic of {visible(event.room)}: {visible(event.topic)}"
        )
    if isinstance(event, Member):
        verb = "joined" if event.event == "join" else "left"
        return f"* {visible(event.name)} {verb} {visible(event.room)}"
    if isinstance(event, RoomList):
        if not event.rooms:
            return "* no rooms yet: /join #name creates one"
        listed = "; ".join(
            f"{visible(r.room)}{' (you)' if r.joined else ''}: {r.members} members, "
            f"{r.online} online{' — ' + visible(r.topic) if r.topic else ''}"
            for r in event.rooms
        )
        return f"* rooms ({len(event.rooms)}): {listed}"
    return None  # acks, read markers and history pages (sent line by line) are for JSON clients


def visible(text: str) -> str:
    """``text`` with control characters replaced by visible stand-ins."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable() or char == " ":
            out.append(char)
        elif char == "\n":
            out.append("⏎")
        elif char == "\t":
            out.append("    ")
        else:
            out.append("\N{REPLACEMENT CHARACTER}")
    return "".join(out)


def utc_timestamp(now: datetime | None = None) -> str:
    """An ISO 8601 UTC timestamp with milliseconds, e.g. ``2026-11-22T21:40:00.123Z``."""
    moment = now or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Outgoing:
    """One server event, encoded at most once per mode and framed at most once.

    The fan-out builds one ``Outgoing`` per event and hands it to every
    recipient; each recipient takes the payload or frame of its own mode.
    """

    event: ServerEvent
    _payload: dict[str, bytes | None] = field(default_factory=dict)
    _frame: dict[str, bytes | None] = field(default_factory=dict)

    def payload(self, mode: Mode) -> bytes | None:
        """The text frame payload for a client in ``mode``, or None to send nothing."""
        try:
            return self._payload[mode]
        except KeyError:
            pass
        if mode == "json":
            data: bytes | None = encode_json(self.event)
        else:
            line = render_plain(self.event)
            data = None if line is None else line.encode()
        self._payload[mode] = data
        return data

    def frame(self, mode: Mode) -> bytes | None:
        """The whole unmasked WebSocket text frame for ``mode``, or None."""
        try:
            return self._frame[mode]
        except KeyError:
            pass
        payload = self.payload(mode)
        built = None if payload is None else text_frame(payload)
        self._frame[mode] = built
        return built


# --------------------------------------------------------------------------
# Server events as a client reads them


def parse_server(raw: str | bytes) -> ServerEvent:
    """Parse a server event (the clients' side). Raises :class:`ProtocolError`."""
    data = _load_event(raw)
    try:
        kind = data["type"]
        if kind == "message":
            return _parse_message(data)
        if kind == "presence":
            event = data["event"]
            if event not in ("join", "leave"):
                raise ProtocolError("bad_field", f"unknown presence event {event!r}")
            return Presence(event=event, name=str(data["name"]))
        if kind == "ack":
            cid = data.get("cid")
            return Ack(id=int(data["id"]), cid=None if cid is None else str(cid))
        if kind == "error":
            cid = data.get("cid")
            return Error(str(data["code"]), str(data["message"]), None if cid is None else str(cid))
        if kind == "welcome":
            token = data.get("token")
            return Welcome(
                name=str(data["name"]),
                token=None if token is None else str(token),
                last_id=int(data.get("last_id", 0)),
                protected=bool(data.get("protected", False)),
                rooms=tuple(
                    RoomState(
                        str(r["room"]),
                        str(r.get("topic", "")),
                        int(r.get("unread", 0)),
                        int(r.get("last_read", 0)),
                    )
                    for r in data.get("rooms", ())
                ),
                direct=tuple(
                    DirectState(str(d["with"]), int(d.get("unread", 0)), int(d.get("last_read", 0)))
                    for d in data.get("direct", ())
                ),
            )
        if kind == "users":
            return Users(tuple(UserInfo(str(u["name"]), int(u["sessions"])) for u in data["users"]))
        if kind == "notice":
            return Notice(str(data["text"]))
        if kind == "gap":
            return Gap(int(data["after"]), int(data["oldest"]))
        if kind in ("room", "member", "history", "read", "rooms"):
            return _parse_room_event(kind, data)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError("bad_event", f"malformed {data.get('type')!r} event: {exc}") from None
    raise ProtocolError("unknown_type", f"unknown event type {_short(data.get('type'))!r}")


def _parse_message(data: dict[str, Any]) -> Message:
    return Message(
        id=int(data["id"]),
        sender=str(data["from"]),
        text=str(data["text"]),
        ts=str(data["ts"]),
        to=None if data.get("to") is None else str(data["to"]),
        cid=None if data.get("cid") is None else str(data["cid"]),
        room=None if data.get("room") is None else str(data["room"]),
    )


def _parse_conversation(data: dict[str, Any]) -> Conversation:
    if data.get("room") is not None:
        return Conversation(room=str(data["room"]))
    return Conversation(with_=str(data["with"]))


def _parse_room_event(kind: str, data: dict[str, Any]) -> ServerEvent:
    if kind == "room":
        event = data["event"]
        if event == "joined":
            return RoomJoined(
                str(data["room"]),
                str(data.get("topic", "")),
                tuple(MemberInfo(str(m["name"]), bool(m["online"])) for m in data["members"]),
                int(data["last_id"]),
                int(data["unread"]),
                int(data.get("last_read", 0)),
            )
        if event == "parted":
            return RoomParted(str(data["room"]))
        if event == "topic":
            return RoomTopic(str(data["room"]), str(data["topic"]), str(data["by"]))
        raise ProtocolError("bad_field", f"unknown room event {_short(event)!r}")
    if kind == "member":
        event = data["event"]
        if event not in ("join", "part"):
            raise ProtocolError("bad_field", f"unknown member event {_short(event)!r}")
        return Member(event, str(data["room"]), str(data["name"]))
    if kind == "history":
        return HistoryPage(
            _parse_conversation(data),
            tuple(_parse_message(m) for m in data["messages"]),
            bool(data["more"]),
        )
    if kind == "read":
        return ReadMarker(_parse_conversation(data), int(data["id"]))
    return RoomList(
        tuple(
            RoomInfo(
                str(r["room"]),
                int(r["members"]),
                int(r["online"]),
                str(r.get("topic", "")),
                bool(r["joined"]),
            )
            for r in data["rooms"]
        )
    )


def encode_client(event: ClientEvent) -> str:
    """The JSON frame of a client event (the clients' side)."""
    wire: dict[str, Any]
    if isinstance(event, Say):
        wire = {"type": "say", "text": event.text}
        if event.to is not None:
            wire["to"] = event.to
        if event.room is not None:
            wire["room"] = event.room
        if event.cid is not None:
            wire["cid"] = event.cid
    elif isinstance(event, Join | Part):
        wire = {"type": "join" if isinstance(event, Join) else "part", "room": event.room}
    elif isinstance(event, History):
        wire = {"type": "history", **_conversation_wire(event.conversation), "limit": event.limit}
        if event.before is not None:
            wire["before"] = event.before
    elif isinstance(event, Read):
        wire = {"type": "read", **_conversation_wire(event.conversation), "id": event.id}
    elif isinstance(event, ListRooms):
        wire = {"type": "rooms"}
    elif isinstance(event, SetTopic):
        wire = {"type": "topic", "room": event.room, "text": event.text}
    elif isinstance(event, Hello):
        wire = {"type": "hello", "name": event.name}
        for key in ("password", "token", "resume_from"):
            value = getattr(event, key)
            if value is not None:
                wire[key] = value
    elif isinstance(event, Register):
        wire = {"type": "register", "password": event.password}
    elif isinstance(event, Who):
        wire = {"type": "who"}
    else:
        wire = {"type": "logout"}
    return json.dumps(wire, ensure_ascii=False, separators=(",", ":"))
