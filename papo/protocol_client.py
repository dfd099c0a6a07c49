"""The client side of the wire: read server events, write client events. Pure, no I/O.

Used by the terminal client's session (:mod:`papo.client_session`) and the tests.
"""

from __future__ import annotations

import json
from typing import Any

from papo.errors import ProtocolError
from papo.events import (
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
    ModerationEvent,
    Mute,
    Notice,
    Op,
    Part,
    Presence,
    Purge,
    Read,
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
from papo.moderation import AuditEntry
from papo.protocol_encode import conversation_wire
from papo.protocol_parse import load_event, short


def parse_server(raw: str | bytes) -> ServerEvent:
    """Parse a server event (the clients' side). Raises :class:`ProtocolError`."""
    data = load_event(raw)
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
            cid, to = data.get("cid"), data.get("to")
            return Ack(
                id=int(data["id"]),
                cid=None if cid is None else str(cid),
                to=None if to is None else str(to),
            )
        if kind == "error":
            cid, until = data.get("cid"), data.get("until")
            return Error(
                str(data["code"]),
                str(data["message"]),
                None if cid is None else str(cid),
                None if until is None else str(until),
            )
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
                admin=bool(data.get("admin", False)),
            )
        if kind == "users":
            return Users(tuple(UserInfo(str(u["name"]), int(u["sessions"])) for u in data["users"]))
        if kind == "notice":
            return Notice(str(data["text"]))
        if kind == "gap":
            room, with_ = data.get("room"), data.get("with")
            return Gap(
                int(data["after"]),
                int(data["oldest"]),
                room if isinstance(room, str) else None,
                with_ if isinstance(with_, str) else None,
            )
        if kind in ("room", "member", "history", "read", "rooms"):
            return _parse_room_event(kind, data)
        if kind == "devices":
            return DeviceList(
                tuple(
                    DeviceInfo(
                        str(d["id"]),
                        str(d["first_seen"]),
                        str(d["last_seen"]),
                        str(d["address"]),
                        bool(d["current"]),
                    )
                    for d in data["devices"]
                )
            )
        if kind in ("edited", "deleted", "audit"):
            return _parse_moderation(kind, data)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError("bad_event", f"malformed {data.get('type')!r} event: {exc}") from None
    raise ProtocolError("unknown_type", f"unknown event type {short(data.get('type'))!r}")


def _parse_message(data: dict[str, Any]) -> Message:
    if data.get("deleted"):
        return Message(
            int(data["id"]), "", "", str(data["ts"]), _opt(data, "to"), None, _opt(data, "room"),
            deleted=True,
        )  # fmt: skip
    return Message(
        id=int(data["id"]),
        sender=str(data["from"]),
        text=str(data["text"]),
        ts=str(data["ts"]),
        to=None if data.get("to") is None else str(data["to"]),
        cid=None if data.get("cid") is None else str(data["cid"]),
        room=None if data.get("room") is None else str(data["room"]),
        edited_ts=_opt(data, "edited_ts"),
    )


def _opt(data: dict[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else str(data[key])


def _parse_moderation(kind: str, data: dict[str, Any]) -> ServerEvent:
    """``edited``, ``deleted`` and ``audit``."""
    if kind == "edited":
        return Edited(
            int(data["id"]), str(data["text"]), str(data["edited_ts"]), str(data["from"]),
            _opt(data, "room"), _opt(data, "to"),
        )  # fmt: skip
    if kind == "deleted":
        return Deleted(int(data["id"]), str(data["by"]), _opt(data, "room"), _opt(data, "to"))
    return AuditLog(
        tuple(
            AuditEntry(
                str(e["ts"]),
                str(e["by"]),
                str(e["action"]),
                str(e["target"]),
                str(e.get("reason", "")),
                str(e.get("room", "")),
            )
            for e in data["entries"]
        )
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
                tuple(
                    MemberInfo(str(m["name"]), bool(m["online"]), bool(m.get("op", False)))
                    for m in data["members"]
                ),
                int(data["last_id"]),
                int(data["unread"]),
                int(data.get("last_read", 0)),
                bool(data.get("moderated", False)),
                bool(data.get("topic_locked", False)),
            )
        if event == "parted":
            by = _opt(data, "by")
            return RoomParted(str(data["room"]), by, str(data.get("reason", "")) if by else "")
        if event == "mode":
            return RoomModeChanged(
                str(data["room"]),
                bool(data["moderated"]),
                bool(data["topic_locked"]),
                str(data["by"]),
            )
        if event == "topic":
            return RoomTopic(str(data["room"]), str(data["topic"]), str(data["by"]))
        raise ProtocolError("bad_field", f"unknown room event {short(event)!r}")
    if kind == "member":
        event = data["event"]
        if event not in ("join", "part"):
            raise ProtocolError("bad_field", f"unknown member event {short(event)!r}")
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
                tuple(str(name) for name in r.get("operators", ())),
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
        wire = {"type": "history", **conversation_wire(event.conversation), "limit": event.limit}
        if event.before is not None:
            wire["before"] = event.before
    elif isinstance(event, Read):
        wire = {"type": "read", **conversation_wire(event.conversation), "id": event.id}
    elif isinstance(event, ListRooms):
        wire = {"type": "rooms"}
    elif isinstance(event, SetTopic):
        wire = {"type": "topic", "room": event.room, "text": event.text}
    elif isinstance(event, Hello):
        wire = {"type": "hello", "name": event.name}
        for key in ("password", "token", "resume_from", "lang"):
            value = getattr(event, key)
            if value is not None:
                wire[key] = value
        if event.resume is not None:
            wire["resume"] = dict(event.resume)
    elif isinstance(event, Register):
        wire = {"type": "register", "password": event.password}
    elif isinstance(event, Who):
        wire = {"type": "who"}
    elif isinstance(event, Devices):
        wire = {"type": "devices"}
    elif isinstance(event, Revoke):
        wire = {"type": "revoke", "device": event.device}
    elif isinstance(event, ChangePassword):
        wire = {"type": "password", "old": event.old, "new": event.new}
    elif isinstance(event, Logout):
        wire = {"type": "logout", "all": True} if event.all else {"type": "logout"}
    else:
        wire = encode_moderation(event)
    return json.dumps(wire, ensure_ascii=False, separators=(",", ":"))


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
