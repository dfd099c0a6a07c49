"""Server events in the JSON protocol: the object each one is on the wire. Pure, no I/O.

:func:`to_wire` gives the JSON object of a :data:`~papo.events.ServerEvent`
as ``docs/protocol.md`` describes it (its notices and errors rendered in the
reader's language), :func:`encode_json` the bytes of a text frame. The
fan-out does not call them per recipient: :class:`papo.outgoing.Outgoing`
encodes each event once and hands the same bytes to everyone. The ``ts`` of
every message is written by :func:`utc_timestamp`, here because the format
(ISO 8601, UTC, milliseconds) is the wire's.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from papo.events import (
    Ack,
    AuditLog,
    Conversation,
    Deleted,
    DeviceList,
    Edited,
    Error,
    Gap,
    HistoryPage,
    Member,
    MemberInfo,
    Message,
    Presence,
    ReadMarker,
    RoomJoined,
    RoomList,
    RoomModeChanged,
    RoomParted,
    RoomTopic,
    ServerEvent,
    Users,
    Welcome,
)
from papo.i18n import DEFAULT_LANGUAGE, render


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
