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

from papo.names import InvalidNameError, clean_name
from papo.wsframe import text_frame

Mode = Literal["json", "plain"]

DEFAULT_MAX_TEXT = 4096
MAX_CID_LENGTH = 64
MAX_SECRET_LENGTH = 1024


class ProtocolError(ValueError):
    """A client event that cannot be accepted, with a stable machine code.

    ``code`` is one of the codes listed in ``docs/protocol.md``; ``message``
    is a sentence for people.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
    """Send ``text`` to everyone, or privately to the user ``to``."""

    text: str
    to: str | None = None
    cid: str | None = None


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


ClientEvent = Hello | Say | Who | Register | Logout


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
        return Say(
            text=check_text(_required_str(data, "text"), max_text),
            to=None if to is None else check_name(to),
            cid=_cid(data),
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
class Welcome:
    """The join succeeded: you are ``name``; ``token`` joins again without a password."""

    name: str
    token: str | None = None
    last_id: int = 0
    protected: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message. ``to`` is set when it is private.

    ``cid`` is set only when a message is replayed to its own sender (after a
    resume): it lets the sender recognise a message whose ``ack`` it missed.
    """

    id: int
    sender: str
    text: str
    ts: str
    to: str | None = None
    cid: str | None = None


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


ServerEvent = Welcome | Message | Presence | Users | Ack | Error | Gap | Notice


def to_wire(event: ServerEvent) -> dict[str, Any]:
    """The JSON object of a server event (see docs/protocol.md)."""
    if isinstance(event, Message):
        wire: dict[str, Any] = {
            "type": "message",
            "id": event.id,
            "from": event.sender,
            "text": event.text,
            "ts": event.ts,
        }
        if event.to is not None:
            wire["to"] = event.to
        if event.cid is not None:
            wire["cid"] = event.cid
        return wire
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
        text = visible(event.text)
        if event.to is None:
            return f"{visible(event.sender)}: {text}"
        return f"{visible(event.sender)} → {visible(event.to)} (private): {text}"
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
    return None  # acks are for JSON clients


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
            return Message(
                id=int(data["id"]),
                sender=str(data["from"]),
                text=str(data["text"]),
                ts=str(data["ts"]),
                to=None if data.get("to") is None else str(data["to"]),
                cid=None if data.get("cid") is None else str(data["cid"]),
            )
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
            )
        if kind == "users":
            return Users(tuple(UserInfo(str(u["name"]), int(u["sessions"])) for u in data["users"]))
        if kind == "notice":
            return Notice(str(data["text"]))
        if kind == "gap":
            return Gap(int(data["after"]), int(data["oldest"]))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError("bad_event", f"malformed {data.get('type')!r} event: {exc}") from None
    raise ProtocolError("unknown_type", f"unknown event type {_short(data.get('type'))!r}")


def encode_client(event: ClientEvent) -> str:
    """The JSON frame of a client event (the clients' side)."""
    wire: dict[str, Any]
    if isinstance(event, Say):
        wire = {"type": "say", "text": event.text}
        if event.to is not None:
            wire["to"] = event.to
        if event.cid is not None:
            wire["cid"] = event.cid
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
