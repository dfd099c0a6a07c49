"""Client events from the JSON protocol: parse and validate one frame. Pure, no I/O.

:func:`parse_client` turns a text frame of a ``papo.v1`` client (see
``docs/protocol.md``) into a :data:`~papo.events.ClientEvent`, or raises
:class:`~papo.errors.ProtocolError` with a stable code and a translatable
reason: a client's input is hostile until checked, and this is the one place
that checks it. The ``check_*`` validators are shared with the plain-text
commands (:mod:`papo.commands`), so a name, a room or a message is held to
the same rules whichever way it was typed; :func:`load_event` and
:func:`short` with the terminal client's reading of server events
(:mod:`papo.protocol_client`).
"""

from __future__ import annotations

import json
from typing import Any

from papo.devices import MAX_DEVICE_ID
from papo.errors import ProtocolError
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
    Ban,
    BanIp,
    ChangePassword,
    ClientEvent,
    Conversation,
    Delete,
    Deop,
    Devices,
    Edit,
    Hello,
    History,
    Join,
    Kick,
    ListRooms,
    Logout,
    ModerationEvent,
    Mute,
    Op,
    Part,
    Purge,
    Read,
    ReadAudit,
    Register,
    Revoke,
    Say,
    SetMode,
    SetTopic,
    Unban,
    UnbanIp,
    Unmute,
    Who,
)
from papo.i18n import Text, match_language, t
from papo.moderation import MAX_DURATION, BadAddress, parse_network, parse_time
from papo.names import InvalidNameError, clean_name, clean_room

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
    if _may_escape_a_surrogate(raw):
        _no_lone_surrogate(data)
    return data


def _may_escape_a_surrogate(raw: str | bytes) -> bool:
    r"""Whether ``raw`` has a ``\uD...`` escape: a lone surrogate can only come from
    one (a frame's UTF-8 holds none), so only such frames are looked through."""
    if isinstance(raw, str):
        return "\\ud" in raw or "\\uD" in raw
    return b"\\ud" in raw or b"\\uD" in raw


def _no_lone_surrogate(data: dict[str, Any]) -> None:
    r"""Refuse text with a UTF-16 surrogate that is not half of a pair (``"\ud800"``):
    valid JSON, but no character, and it cannot be written as UTF-8 (not to the
    store, not to a plain-text client), so it must not get past here."""
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        code = f"\\u{ord(exc.object[exc.start]):04x}" if isinstance(exc.object, str) else "?"
        reason = t("{code} alone is not a character (half of a UTF-16 pair)", code=code)
        raise ProtocolError("bad_json", t("not valid JSON: {reason}", reason=reason)) from None


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
