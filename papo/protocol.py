"""The papo wire protocol: parse, validate and encode events. Pure, no I/O.

Two ways to speak share one set of events (:mod:`papo.events`):

* JSON (subprotocol ``papo.v1``): one JSON object per text frame, described
  in ``docs/protocol.md``. :func:`parse_client` turns a frame into a client
  event or raises :class:`ProtocolError`; server events encode with
  :meth:`Outgoing.payload`.
* Plain text (no subprotocol): lines typed by a person. Turning a line into
  a client event is :mod:`papo.commands`' job; :func:`~papo.plain.render_plain`
  turns a server event into the line a plain client sees.

An :class:`Outgoing` wraps one server event and encodes it at most once per
mode, so a message fanned out to a thousand peers is serialised once or twice,
not a thousand times.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from papo.devices import MAX_DEVICE_ID
from papo.errors import ProtocolError as ProtocolError  # noqa: PLC0414 (re-exported)
from papo.events import (
    DEFAULT_AUDIT,
    DEFAULT_HISTORY,
    DEFAULT_MAX_TEXT,
    MAX_AUDIT,
    MAX_CID_LENGTH,
    MAX_HISTORY,
    MAX_REASON,
    MAX_RESUME,
    MAX_RESUME_KEY,
    MAX_SECRET_LENGTH,
    MAX_TOPIC,
    Ack,
    AuditLog,
    Ban,
    BanIp,
    ChangePassword,
    ClientEvent,
    Conversation,
    Delete,
    Deleted,
    Deop,
    DeviceInfo,
    DeviceList,
    Devices,
    DirectState,
    Edit,
    Edited,
    Error,
    Gap,
    Hello,
    History,
    HistoryPage,
    Join,
    Kick,
    ListRooms,
    Logout,
    Member,
    MemberInfo,
    Message,
    Mode,
    ModerationEvent,
    Mute,
    Notice,
    Op,
    Part,
    Presence,
    Purge,
    Read,
    ReadAudit,
    ReadMarker,
    Register,
    Revoke,
    RoomInfo,
    RoomJoined,
    RoomList,
    RoomModeChanged,
    RoomParted,
    RoomState,
    RoomTopic,
    Say,
    ServerEvent,
    SetMode,
    SetTopic,
    Unban,
    UnbanIp,
    Unmute,
    UserInfo,
    Users,
    Welcome,
    Who,
)
from papo.i18n import DEFAULT_LANGUAGE, Text, match_language, render, t
from papo.moderation import MAX_DURATION, BadAddress, parse_network, parse_time
from papo.names import InvalidNameError, clean_name, clean_room
from papo.plain import plain_message, render_plain, visible
from papo.wsframe import text_frame

# Re-exported: most of papo speaks of events, the protocol and their rendering together.
__all__ = [
    "DEFAULT_HISTORY",
    "DEFAULT_MAX_TEXT",
    "MAX_CID_LENGTH",
    "MAX_HISTORY",
    "MAX_SECRET_LENGTH",
    "MAX_TOPIC",
    "Ack",
    "AuditLog",
    "Ban",
    "BanIp",
    "ChangePassword",
    "ClientEvent",
    "Conversation",
    "Delete",
    "Deleted",
    "Deop",
    "DeviceInfo",
    "DeviceList",
    "Devices",
    "DirectState",
    "Edit",
    "Edited",
    "Error",
    "Gap",
    "Hello",
    "History",
    "HistoryPage",
    "Join",
    "Kick",
    "ListRooms",
    "Logout",
    "Member",
    "MemberInfo",
    "Message",
    "Mode",
    "ModerationEvent",
    "Mute",
    "Notice",
    "Op",
    "Outgoing",
    "Part",
    "Presence",
    "ProtocolError",
    "Purge",
    "Read",
    "ReadAudit",
    "ReadMarker",
    "Register",
    "Revoke",
    "RoomInfo",
    "RoomJoined",
    "RoomList",
    "RoomModeChanged",
    "RoomParted",
    "RoomState",
    "RoomTopic",
    "Say",
    "ServerEvent",
    "SetMode",
    "SetTopic",
    "Unban",
    "UnbanIp",
    "Unmute",
    "UserInfo",
    "Users",
    "Welcome",
    "Who",
    "check_address",
    "check_name",
    "check_reason",
    "check_room",
    "check_text",
    "check_topic",
    "conversation_wire",
    "encode_json",
    "encode_moderation",
    "load_event",
    "parse_client",
    "plain_message",
    "render_plain",
    "short",
    "to_wire",
    "utc_timestamp",
    "visible",
]


#: Ids are SQLite integers (and Redis stream ids): nothing larger can exist.
MAX_ID = 2**63 - 1


def parse_client(raw: str | bytes, *, max_text: int = DEFAULT_MAX_TEXT) -> ClientEvent:
    """Parse one JSON frame from a client into a :data:`ClientEvent`.

    Raises :class:`ProtocolError` for anything else: malformed or hostile
    JSON, a value that is not an object, an unknown ``type``, missing or
    wrongly typed fields, empty text or text over ``max_text`` characters.
    Fields the protocol does not define (such as a client-supplied ``from``)
    are ignored.
    """
    data = load_event(raw)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_event", t("an event needs a string field 'type'"))
    if kind == "say":
        to = _optional_str(data, "to")
        room = _optional_str(data, "room")
        if to is not None and room is not None:
            raise ProtocolError("bad_field", t("'say' takes 'room' or 'to', not both"))
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
            raise ProtocolError("bad_field", t("the field 'limit' is 1 to {max}", max=MAX_HISTORY))
        return History(
            _conversation(data),
            before=_optional_id(data, "before"),
            limit=DEFAULT_HISTORY if limit is None else limit,
        )
    if kind == "read":
        message_id = _optional_id(data, "id")
        if message_id is None:
            raise ProtocolError("missing_field", t("'read' needs the field 'id'"))
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
            lang=_language(data),
            resume=_resume(data),
        )
    if kind == "who":
        return Who()
    if kind == "register":
        password = _secret(data, "password")
        if not password:
            raise ProtocolError("missing_field", t("'register' needs a non-empty 'password'"))
        return Register(password)
    if kind == "logout":
        everywhere = data.get("all", False)
        if not isinstance(everywhere, bool):
            raise ProtocolError("bad_field", t("the field 'all' must be true or false"))
        return Logout(all=everywhere)
    if kind == "devices":
        return Devices()
    if kind == "revoke":
        device = _required_str(data, "device")
        if not device or len(device) > MAX_DEVICE_ID:
            raise ProtocolError(
                "bad_field", t("the field 'device' has 1 to {max} characters", max=MAX_DEVICE_ID)
            )
        return Revoke(device)
    if kind == "password":
        old, new = _secret(data, "old"), _secret(data, "new")
        if not old or not new:
            raise ProtocolError(
                "missing_field", t("'password' needs a non-empty 'old' and 'new' password")
            )
        return ChangePassword(old, new)
    moderation = _parse_moderation(kind, data, max_text)
    if moderation is not None:
        return moderation
    raise ProtocolError("unknown_type", t("unknown event type {type}", type=repr(short(kind))))


def load_event(raw: str | bytes) -> dict[str, Any]:
    """The JSON object of one frame, or :class:`ProtocolError` (both directions use it)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # A 60 000-deep "[[[[..." raises RecursionError, not ValueError.
        raise ProtocolError("bad_json", t("not valid JSON: {reason}", reason=short(exc))) from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_event", t("an event must be a JSON object"))
    return data


def check_text(text: str, max_text: int) -> str:
    """Validate a message body: not blank, at most ``max_text`` characters."""
    if not text.strip():
        raise ProtocolError("empty_text", t("a message cannot be empty"))
    if len(text) > max_text:
        raise ProtocolError(
            "text_too_long",
            t(
                "a message has at most {max} characters (got {length})",
                max=max_text,
                length=len(text),
            ),
        )
    return text


def check_name(raw: str) -> str:
    """Validate a user name, as :func:`papo.names.clean_name` does."""
    try:
        return clean_name(raw)
    except InvalidNameError as exc:
        raise ProtocolError("bad_name", t("bad name: {reason}", reason=exc.reason)) from None


def check_room(raw: str) -> str:
    """Validate a room name (``#sala``; the ``#`` may be left out) as ``#`` + a valid name."""
    try:
        return clean_room(raw)
    except InvalidNameError as exc:
        raise ProtocolError("bad_name", t("bad room name: {reason}", reason=exc.reason)) from None


def check_topic(text: str) -> str:
    """A room topic: one line of at most ``MAX_TOPIC`` characters (blank clears it)."""
    return _one_line(text, MAX_TOPIC, t("a topic has at most {max} characters", max=MAX_TOPIC))


def check_reason(text: str) -> str:
    """Why a moderator did something: one line of at most ``MAX_REASON`` characters."""
    return _one_line(text, MAX_REASON, t("a reason has at most {max} characters", max=MAX_REASON))


def _one_line(text: str, most: int, too_long: Text) -> str:
    """``text`` with its whitespace made single spaces; ``too_long`` past ``most`` characters."""
    text = " ".join(text.split())
    if len(text) > most:
        raise ProtocolError("text_too_long", too_long)
    return text


def check_address(raw: str) -> str:
    """An IP address or CIDR block, normalised (``203.0.113.9/24`` → ``203.0.113.0/24``)."""
    try:
        return str(parse_network(raw))
    except BadAddress:
        raise ProtocolError(
            "bad_field",
            t("not an IP address or CIDR block: {address}", address=short(raw, 60)),
        ) from None


def _parse_moderation(kind: str, data: dict[str, Any], max_text: int) -> ModerationEvent | None:
    """The moderation and message-lifecycle events (None: ``kind`` is none of them)."""
    if kind == "edit":
        return Edit(_required_id(data, "id"), check_text(_required_str(data, "text"), max_text))
    if kind == "delete":
        return Delete(_required_id(data, "id"))
    if kind in ("kick", "mute", "unmute", "op", "deop"):
        room = check_room(_required_str(data, "room"))
        name = check_name(_required_str(data, "name"))
        if kind == "kick":
            return Kick(room, name, _reason(data))
        if kind == "mute":
            seconds = _seconds(data)
            if seconds is None:
                raise ProtocolError("missing_field", t("'mute' needs the field 'seconds'"))
            return Mute(room, name, seconds, _reason(data))
        if kind == "unmute":
            return Unmute(room, name)
        return Op(room, name) if kind == "op" else Deop(room, name)
    if kind == "ban":
        return Ban(check_name(_required_str(data, "name")), _seconds(data), _reason(data))
    if kind == "unban":
        return Unban(check_name(_required_str(data, "name")))
    if kind == "ban_ip":
        return BanIp(check_address(_required_str(data, "address")), _seconds(data), _reason(data))
    if kind == "unban_ip":
        return UnbanIp(check_address(_required_str(data, "address")))
    if kind == "purge":
        return _parse_purge(data)
    if kind == "mode":
        moderated = _optional_bool(data, "moderated")
        locked = _optional_bool(data, "topic_locked")
        if moderated is None and locked is None:
            raise ProtocolError(
                "missing_field", t("'mode' needs 'moderated' or 'topic_locked' (true or false)")
            )
        return SetMode(check_room(_required_str(data, "room")), moderated, locked)
    if kind == "audit":
        limit = _optional_id(data, "limit")
        if limit is not None and not 1 <= limit <= MAX_AUDIT:
            raise ProtocolError("bad_field", t("the field 'limit' is 1 to {max}", max=MAX_AUDIT))
        return ReadAudit(DEFAULT_AUDIT if limit is None else limit)
    return None


def _parse_purge(data: dict[str, Any]) -> Purge:
    since = _optional_str(data, "since")
    seconds = _seconds(data)
    if since is not None and seconds is not None:
        raise ProtocolError("bad_field", t("'purge' takes 'since' or 'seconds', not both"))
    if since is not None:
        try:
            parse_time(since)
        except ValueError:
            raise ProtocolError(
                "bad_field",
                t("the field 'since' must be an ISO 8601 time like 2026-11-22T21:40:00Z"),
            ) from None
    return Purge(check_name(_required_str(data, "name")), since, seconds, _reason(data))


def _reason(data: dict[str, Any]) -> str:
    reason = _optional_str(data, "reason")
    return "" if reason is None else check_reason(reason)


def _seconds(data: dict[str, Any]) -> int | None:
    value = _optional_id(data, "seconds")
    if value is not None and not 1 <= value <= MAX_DURATION:
        raise ProtocolError("bad_field", t("the field 'seconds' is 1 to {max}", max=MAX_DURATION))
    return value


def _required_id(data: dict[str, Any], key: str) -> int:
    value = _optional_id(data, key)
    if value is None:
        raise ProtocolError(
            "missing_field", t("'{type}' needs the field '{field}'", type=data["type"], field=key)
        )
    return value


def _optional_bool(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ProtocolError("bad_field", t("the field '{field}' must be true or false", field=key))


def encode_moderation(event: ModerationEvent) -> dict[str, Any]:
    """The JSON object of a moderation or lifecycle client event (the clients' side)."""
    wire: dict[str, Any]
    if isinstance(event, Edit):
        wire = {"type": "edit", "id": event.id, "text": event.text}
    elif isinstance(event, Delete):
        wire = {"type": "delete", "id": event.id}
    elif isinstance(event, Kick):
        wire = {"type": "kick", "room": event.room, "name": event.name, "reason": event.reason}
    elif isinstance(event, Mute):
        wire = {
            "type": "mute",
            "room": event.room,
            "name": event.name,
            "seconds": event.seconds,
            "reason": event.reason,
        }
    elif isinstance(event, Unmute | Op | Deop):
        kind = {Unmute: "unmute", Op: "op", Deop: "deop"}[type(event)]
        wire = {"type": kind, "room": event.room, "name": event.name}
    elif isinstance(event, Ban):
        wire = {"type": "ban", "name": event.name, "seconds": event.seconds, "reason": event.reason}
    elif isinstance(event, Unban):
        wire = {"type": "unban", "name": event.name}
    elif isinstance(event, BanIp):
        wire = {"type": "ban_ip", "address": event.address, "seconds": event.seconds}
        wire["reason"] = event.reason
    elif isinstance(event, UnbanIp):
        wire = {"type": "unban_ip", "address": event.address}
    elif isinstance(event, Purge):
        wire = {"type": "purge", "name": event.name, "since": event.since}
        wire |= {"seconds": event.seconds, "reason": event.reason}
    elif isinstance(event, SetMode):
        wire = {"type": "mode", "room": event.room}
        wire |= {"moderated": event.moderated, "topic_locked": event.topic_locked}
    else:
        wire = {"type": "audit", "limit": event.limit}
    return {key: value for key, value in wire.items() if value is not None}


def _conversation(data: dict[str, Any]) -> Conversation:
    room = _optional_str(data, "room")
    with_ = _optional_str(data, "with")
    if (room is None) == (with_ is None):
        raise ProtocolError(
            "bad_field" if room is not None else "missing_field",
            t("'{type}' needs either 'room' or 'with' (a user's name)", type=data["type"]),
        )
    if room is not None:
        return Conversation(room=check_room(room))
    assert with_ is not None
    return Conversation(with_=check_name(with_))


def _required_str(data: dict[str, Any], key: str) -> str:
    if key not in data:
        raise ProtocolError(
            "missing_field", t("'{type}' needs the field '{field}'", type=data["type"], field=key)
        )
    value = data[key]
    if not isinstance(value, str):
        raise ProtocolError("bad_field", t("the field '{field}' must be a string", field=key))
    return value


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    if data.get(key) is None:
        return None
    return _required_str(data, key)


def _secret(data: dict[str, Any], key: str) -> str | None:
    value = _optional_str(data, key)
    if value is not None and len(value) > MAX_SECRET_LENGTH:
        raise ProtocolError("bad_field", t("the field '{field}' is too long", field=key))
    return value


def _language(data: dict[str, Any]) -> str | None:
    """``hello``'s ``lang``: a language papo speaks, or None (any other tag is no error)."""
    tag = _optional_str(data, "lang")
    return None if tag is None else match_language(short(tag, 35))


def _resume(data: dict[str, Any]) -> tuple[tuple[str, int], ...] | None:
    """``hello``'s ``resume``: ``{"#sala": 120, "@maria": 7}``, each conversation's position.

    Names are not checked here: one that is not a conversation of the user
    (or not a name at all) is ignored by the server, as the protocol says.
    """
    value = data.get("resume")
    if value is None:
        return None
    shape = t(
        "the field 'resume' must map at most {max} conversations ('#room' or '@name') "
        "to message ids",
        max=MAX_RESUME,
    )
    if not isinstance(value, dict) or len(value) > MAX_RESUME:
        raise ProtocolError("bad_field", shape)
    out: list[tuple[str, int]] = []
    for conv, position in value.items():
        if not 2 <= len(conv) <= MAX_RESUME_KEY or conv[0] not in "#@":
            raise ProtocolError(
                "bad_field",
                t(
                    "'resume' names conversations as '#room' or '@name' "
                    "(at most {max} characters), not {name}",
                    max=MAX_RESUME_KEY,
                    name=repr(short(conv)),
                ),
            )
        if isinstance(position, bool) or not isinstance(position, int):
            raise ProtocolError("bad_field", shape)
        if not 0 <= position <= MAX_ID:
            raise ProtocolError("bad_field", shape)
        out.append((conv, position))
    return tuple(out)


def _cid(data: dict[str, Any]) -> str | None:
    value = data.get("cid")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProtocolError("bad_field", t("the field 'cid' must be a string or an integer"))
    cid = str(value)
    if not cid or len(cid) > MAX_CID_LENGTH:
        raise ProtocolError(
            "bad_field", t("the field 'cid' has 1 to {max} characters", max=MAX_CID_LENGTH)
        )
    return cid


def _optional_id(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise ProtocolError(
            "bad_field",
            t("the field '{field}' must be an integer from 0 to {max}", field=key, max=MAX_ID),
        )
    return value


def short(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def conversation_wire(conversation: Conversation) -> dict[str, Any]:
    if conversation.room is not None:
        return {"room": conversation.room}
    return {"with": conversation.with_}


def _message_wire(event: Message) -> dict[str, Any]:
    if event.deleted:  # a tombstone keeps the ids continuous, and nothing else
        tombstone = {"type": "message", "id": event.id, "ts": event.ts, "deleted": True}
        return tombstone | _where(event.room, event.to)
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
    if event.edited_ts is not None:
        wire["edited_ts"] = event.edited_ts
    return wire


def _where(room: str | None, to: str | None) -> dict[str, Any]:
    """A room's key ``room``, or a direct message's ``to``: which conversation it is in."""
    if room is not None:
        return {"room": room}
    return {} if to is None else {"to": to}


def _member_wire(member: MemberInfo) -> dict[str, Any]:
    wire: dict[str, Any] = {"name": member.name, "online": member.online}
    if member.op:
        wire["op"] = True
    return wire


def _moderation_wire(event: Edited | Deleted | RoomModeChanged | AuditLog) -> dict[str, Any]:
    if isinstance(event, Edited):
        wire: dict[str, Any] = {"type": "edited", "id": event.id, "text": event.text}
        wire |= {"edited_ts": event.edited_ts, "from": event.sender}
        return wire | _where(event.room, event.to)
    if isinstance(event, Deleted):
        return {"type": "deleted", "id": event.id, "by": event.by} | _where(event.room, event.to)
    if isinstance(event, RoomModeChanged):
        return {
            "type": "room",
            "event": "mode",
            "room": event.room,
            "moderated": event.moderated,
            "topic_locked": event.topic_locked,
            "by": event.by,
        }
    return {
        "type": "audit",
        "entries": [
            {
                "ts": e.ts,
                "by": e.by,
                "action": e.action,
                "target": e.target,
                "reason": e.reason,
                **({"room": e.room} if e.room else {}),
            }
            for e in event.entries
        ],
    }


def to_wire(event: ServerEvent, lang: str = DEFAULT_LANGUAGE) -> dict[str, Any]:
    """The JSON object of a server event (see docs/protocol.md); its texts in ``lang``."""
    if isinstance(event, Message):
        return _message_wire(event)
    if isinstance(event, Presence):
        return {"type": "presence", "event": event.event, "name": event.name}
    if isinstance(event, Ack):
        if event.to is not None:
            return {"type": "ack", "id": event.id, "cid": event.cid, "to": event.to}
        return {"type": "ack", "id": event.id, "cid": event.cid}
    if isinstance(event, Error):
        wire = {"type": "error", "code": event.code, "message": render(event.message, lang)}
        if event.cid is not None:
            wire["cid"] = event.cid
        if event.until is not None:
            wire["until"] = event.until
        return wire
    if isinstance(event, Edited | Deleted | RoomModeChanged | AuditLog):
        return _moderation_wire(event)
    if isinstance(event, Welcome):
        welcome: dict[str, Any] = {
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
        if event.admin:  # only when true: what a member's welcome looks like does not change
            welcome["admin"] = True
        return welcome
    if isinstance(event, RoomJoined):
        joined = {
            "type": "room",
            "event": "joined",
            "room": event.room,
            "topic": event.topic,
            "members": [_member_wire(m) for m in event.members],
            "last_id": event.last_id,
            "unread": event.unread,
            "last_read": event.last_read,
        }
        if event.moderated:
            joined["moderated"] = True
        if event.topic_locked:
            joined["topic_locked"] = True
        return joined
    if isinstance(event, RoomParted):
        parted: dict[str, Any] = {"type": "room", "event": "parted", "room": event.room}
        if event.by is not None:
            parted |= {"by": event.by, "reason": event.reason}
        return parted
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
            **conversation_wire(event.conversation),
            "messages": [_message_wire(m) for m in event.messages],
            "more": event.more,
        }
    if isinstance(event, ReadMarker):
        return {"type": "read", **conversation_wire(event.conversation), "id": event.id}
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
                    "operators": list(r.operators),
                }
                for r in event.rooms
            ],
        }
    if isinstance(event, Gap):
        gap: dict[str, Any] = {"type": "gap", "after": event.after, "oldest": event.oldest}
        if event.room is not None:
            gap["room"] = event.room
        elif event.with_ is not None:
            gap["with"] = event.with_
        return gap
    if isinstance(event, Users):
        return {
            "type": "users",
            "users": [{"name": u.name, "sessions": u.sessions} for u in event.users],
        }
    if isinstance(event, DeviceList):
        return {
            "type": "devices",
            "devices": [
                {
                    "id": d.id,
                    "first_seen": d.first_seen,
                    "last_seen": d.last_seen,
                    "address": d.address,
                    "current": d.current,
                }
                for d in event.devices
            ],
        }
    return {"type": "notice", "text": render(event.text, lang)}


def encode_json(event: ServerEvent, lang: str = DEFAULT_LANGUAGE) -> bytes:
    """The UTF-8 JSON payload of a server event, its texts in ``lang``."""
    return json.dumps(to_wire(event, lang), ensure_ascii=False, separators=(",", ":")).encode()


def utc_timestamp(now: datetime | None = None) -> str:
    """An ISO 8601 UTC timestamp with milliseconds, e.g. ``2026-11-22T21:40:00.123Z``.

    Every message is stamped: the current second's text is formatted once a
    second (``strftime`` costs more than the rest of the stamp), the
    milliseconds' text is looked up.
    """
    if now is not None:
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + _MILLIS[now.microsecond // 1000]
    second, milli = divmod(time.time_ns() // 1_000_000, 1000)
    last = _last_second
    if second != last.number:
        last.number = second
        last.text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
    return last.text + _MILLIS[milli]


class _Second:
    """The second :func:`utc_timestamp` formatted last, and its text."""

    __slots__ = ("number", "text")

    def __init__(self) -> None:
        self.number = -1
        self.text = ""


_MILLIS = tuple(f"{milli:03d}Z" for milli in range(1000))
_last_second = _Second()


class _Kept(enum.Enum):
    NOT_YET = 0


#: What :class:`Outgoing` has not encoded yet (None is "nothing to send").
_NOT_YET: Final = _Kept.NOT_YET


@dataclass(slots=True)
class Outgoing:
    """One server event, encoded at most once per mode and language, framed at most once.

    The fan-out builds one ``Outgoing`` per event and hands it to every
    recipient; each recipient takes the payload or frame of its own mode and
    language. A chat message reads the same in every language (in JSON, and a
    public line in plain text), so it is encoded once per mode whatever the
    languages of its readers.
    """

    event: ServerEvent
    _payload: dict[str, bytes | None] = field(default_factory=dict)
    #: The frames built so far (None: nothing to send), under the mode alone for what
    #: reads the same in every language: the fan-out looks a chat message's up there.
    frames: dict[str, bytes | None] = field(default_factory=dict)

    def _key(self, mode: Mode, lang: str) -> str:
        event = self.event
        if isinstance(event, Message) and (
            mode == "json" or (event.to is None and event.edited_ts is None and not event.deleted)
        ):
            return mode
        if mode == "json" and not isinstance(event, (Error, Notice)):
            return mode
        return f"{mode}:{lang}"

    def payload(self, mode: Mode, lang: str = DEFAULT_LANGUAGE) -> bytes | None:
        """The text frame payload for a client in ``mode`` reading ``lang``, or None for nothing."""
        # What reads the same in every language is kept under the mode alone. (Lookups,
        # not try/except: the first recipient of every event would raise KeyError twice.)
        kept = self._payload.get(mode, _NOT_YET)
        if kept is not _NOT_YET:
            return kept
        key = self._key(mode, lang)
        kept = self._payload.get(key, _NOT_YET)
        if kept is not _NOT_YET:
            return kept
        if mode == "json":
            data: bytes | None = encode_json(self.event, lang)
        else:
            line = render_plain(self.event, lang)
            data = None if line is None else line.encode()
        self._payload[key] = data
        return data

    def frame(self, mode: Mode, lang: str = DEFAULT_LANGUAGE) -> bytes | None:
        """The whole unmasked WebSocket text frame for ``mode`` and ``lang``, or None.

        The fan-out's hot path: a chat message's frame is one dictionary lookup.
        """
        kept = self.frames.get(mode, _NOT_YET)
        if kept is not _NOT_YET:
            return kept
        key = self._key(mode, lang)
        kept = self.frames.get(key, _NOT_YET)
        if kept is not _NOT_YET:
            return kept
        payload = self.payload(mode, lang)
        built = None if payload is None else text_frame(payload)
        self.frames[key] = built
        return built


class OutgoingRun:
    """Several events for the same recipients, in order: each encoded once, all framed once.

    A run of messages to one room (one commit's worth, under load) is handed
    to every recipient as one object; a recipient takes the frames of its mode
    and language joined into one ``bytes``, built at most once per mode and
    language for the whole run. So fanning out k messages to n sessions costs
    n buffer appends, not k times n.
    """

    __slots__ = ("_joined", "outs")

    def __init__(self, outs: list[Outgoing]) -> None:
        self.outs = outs
        self._joined: dict[tuple[Mode, str], bytes] = {}

    def joined(self, mode: Mode, lang: str = DEFAULT_LANGUAGE) -> bytes:
        """Every event's whole frame for ``mode`` and ``lang``, back to back (maybe empty)."""
        key = (mode, lang)
        try:
            return self._joined[key]
        except KeyError:
            pass
        frames = [out.frame(mode, lang) for out in self.outs]
        data = b"".join(frame for frame in frames if frame is not None)
        self._joined[key] = data
        return data
