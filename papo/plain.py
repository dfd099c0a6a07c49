"""Server events as lines for people: the plain-text mode's rendering. Pure, no I/O.

Control characters are made visible (``\\n`` becomes ``⏎`` and the like) in
everything that may carry someone's input, so one event is one line and
nobody can forge a notice or drive the reader's terminal.
"""

from __future__ import annotations

from dataclasses import replace

from papo.events import (
    AuditLog,
    Deleted,
    DeviceInfo,
    DeviceList,
    Edited,
    Error,
    Gap,
    Member,
    Message,
    Notice,
    Presence,
    RoomInfo,
    RoomJoined,
    RoomList,
    RoomModeChanged,
    RoomParted,
    RoomTopic,
    ServerEvent,
    Users,
    Welcome,
)
from papo.i18n import DEFAULT_LANGUAGE, Says, render, t, tn
from papo.moderation import AuditEntry


def render_plain(event: ServerEvent, lang: str = DEFAULT_LANGUAGE) -> str | None:
    """The line a plain-text client reading ``lang`` sees for ``event``, or None for none.

    Control characters are made visible (``\\n`` becomes ``⏎`` and the like)
    in everything that may carry someone's input, so one event is one line
    and nobody can forge a notice or drive the reader's terminal.
    """
    if isinstance(event, Message):
        return None if event.deleted else plain_message(event, lang)
    if isinstance(event, Edited):
        edited = Message(
            event.id, event.sender, event.text, event.edited_ts, event.to, None, event.room,
            event.home, edited_ts=event.edited_ts,
        )  # fmt: skip
        return plain_message(edited, lang)
    said = _says(event, lang)
    return None if said is None else render(said, lang)


def plain_message(event: Message, lang: str = DEFAULT_LANGUAGE) -> str:
    """One chat line: ``NAME: text`` in the default room, ``[#sala] NAME: text`` elsewhere.

    An edited message ends with ``(edited)``; a deleted one (a tombstone) reads
    ``(message deleted)``.
    """
    if event.deleted:
        gone = render(t("(message deleted)"), lang)
        if event.room is None or event.home:
            return gone
        return f"[{visible(event.room)}] {gone}"
    line = _chat_line(event, lang)
    if event.edited_ts is not None:
        return render(t("{line} (edited)", line=line), lang)
    return line


def _chat_line(event: Message, lang: str) -> str:
    text = visible(event.text)
    if event.to is not None:
        line = t(
            "{sender} → {to} (private): {text}",
            sender=visible(event.sender),
            to=visible(event.to),
            text=text,
        )
        return render(line, lang)
    if event.room is None or event.home:
        return f"{visible(event.sender)}: {text}"
    return f"[{visible(event.room)}] {visible(event.sender)}: {text}"


def _says(event: ServerEvent, lang: str) -> Says | None:
    if isinstance(event, Presence):
        name = visible(event.name)
        if event.event == "join":
            return t("* {name} joined", name=name)
        return t("* {name} left", name=name)
    if isinstance(event, Error):
        return t("* error: {message}", message=visible(render(event.message, lang)))
    if isinstance(event, Notice):
        text = visible(render(event.text, lang))
        return text if text.startswith("—") else "* " + text  # "— last 7 messages —" marks off
    if isinstance(event, Welcome):
        return t("* you are {name}", name=visible(event.name))
    if isinstance(event, Gap):
        return t(
            "* messages {first}-{last} are no longer kept",
            first=event.after + 1,
            last=event.oldest - 1,
        )
    if isinstance(event, Users):
        listed = ", ".join(
            visible(u.name)
            if u.sessions == 1
            else render(
                tn(
                    "{name} ({n} session)",
                    "{name} ({n} sessions)",
                    u.sessions,
                    name=visible(u.name),
                ),
                lang,
            )
            for u in event.users
        )
        if not event.users:
            return t("* nobody is online yet")
        return t("* online ({count}): {names}", count=len(event.users), names=listed)
    if isinstance(event, DeviceList):
        devices = "; ".join(render(_device_info(d), lang) for d in event.devices)
        return t("* your devices ({count}): {devices}", count=len(event.devices), devices=devices)
    return _rooms_says(event, lang)


def _device_info(device: DeviceInfo) -> Says:
    values = {
        "id": visible(device.id),
        "address": visible(device.address),
        "when": visible(device.last_seen[:16].replace("T", " ")) + " UTC",
    }
    if device.current:
        return t("{id} (this one), from {address}, last seen {when}", **values)
    return t("{id}, from {address}, last seen {when}", **values)


def _rooms_says(event: ServerEvent, lang: str) -> Says | None:
    if isinstance(event, RoomJoined):
        online = sum(1 for m in event.members if m.online)
        members = tn("{n} member", "{n} members", len(event.members))
        if event.moderated or event.topic_locked:
            return _joined_moderated(event, lang)
        if event.topic:
            return t(
                "* you are in {room} (topic: {topic}): {members}, {online} online",
                room=visible(event.room),
                topic=visible(event.topic),
                members=members,
                online=online,
            )
        return t(
            "* you are in {room}: {members}, {online} online",
            room=visible(event.room),
            members=members,
            online=online,
        )
    if isinstance(event, RoomParted):
        room = visible(event.room)
        if event.by is not None and event.reason:
            return t(
                "* {by} removed you from {room}: {reason}",
                by=visible(event.by),
                room=room,
                reason=visible(event.reason),
            )
        if event.by is not None:
            return t("* {by} removed you from {room}", by=visible(event.by), room=room)
        return t("* you left {room}", room=room)
    if isinstance(event, RoomTopic):
        if not event.topic:
            return t(
                "* {name} cleared the topic of {room}",
                name=visible(event.by),
                room=visible(event.room),
            )
        return t(
            "* {name} set the topic of {room}: {topic}",
            name=visible(event.by),
            room=visible(event.room),
            topic=visible(event.topic),
        )
    if isinstance(event, Member):
        name, room = visible(event.name), visible(event.room)
        if event.event == "join":
            return t("* {name} joined {room}", name=name, room=room)
        return t("* {name} left {room}", name=name, room=room)
    if isinstance(event, RoomList):
        if not event.rooms:
            return t("* no rooms yet: /join #name creates one")
        listed = "; ".join(_room_info(r, lang) for r in event.rooms)
        return t("* rooms ({count}): {rooms}", count=len(event.rooms), rooms=listed)
    return _moderation_says(event, lang)


def _moderation_says(event: ServerEvent, lang: str) -> Says | None:
    if isinstance(event, Deleted):
        by = visible(event.by)
        if event.to is not None:
            return t("* {by} deleted a private message", by=by)
        if event.room is None or event.home:
            return t("* {by} deleted a message", by=by)
        return t("* {by} deleted a message in {room}", by=by, room=visible(event.room))
    if isinstance(event, RoomModeChanged):
        modes = []
        if event.moderated:
            modes.append(render(t("read-only (only operators speak)"), lang))
        if event.topic_locked:
            modes.append(render(t("topic locked (only operators set it)"), lang))
        if not modes:
            modes.append(render(t("everyone may speak and set the topic"), lang))
        return t(
            "* {by} changed {room}: {modes}",
            by=visible(event.by),
            room=visible(event.room),
            modes=", ".join(modes),
        )
    if isinstance(event, AuditLog):
        if not event.entries:
            return t("* the audit log is empty")
        lines = " · ".join(audit_line(e, lang) for e in event.entries)
        return t("* audit ({count}): {entries}", count=len(event.entries), entries=lines)
    return None  # acks, read markers and history pages (sent line by line) are for JSON clients


def audit_line(entry: AuditEntry, lang: str = DEFAULT_LANGUAGE) -> str:
    """One audit entry for people: when, who, what, whom, where, why."""
    values = {
        # Every field goes through visible(): a client reads entries off the wire.
        "ts": visible(entry.ts[:16].replace("T", " ")),
        "by": visible(entry.by),
        "action": visible(entry.action),
        "target": visible(entry.target),
        "room": visible(entry.room),
        "reason": visible(entry.reason),
    }
    if entry.room and entry.reason:
        text = t("{ts} {by}: {action} {target} in {room} ({reason})", **values)
    elif entry.room:
        text = t("{ts} {by}: {action} {target} in {room}", **values)
    elif entry.reason:
        text = t("{ts} {by}: {action} {target} ({reason})", **values)
    else:
        text = t("{ts} {by}: {action} {target}", **values)
    return render(text, lang)


def _joined_moderated(event: RoomJoined, lang: str) -> Says:
    """``room joined`` of a read-only room or one with a locked topic: the usual line, then how."""
    line = render_plain(replace(event, moderated=False, topic_locked=False), lang) or ""
    if event.moderated:
        line += " " + render(t("(read-only: only operators speak)"), lang)
    if event.topic_locked:
        line += " " + render(t("(topic locked)"), lang)
    return line


def _room_info(room: RoomInfo, lang: str) -> str:
    line = render(_room_summary(room), lang)
    if room.operators:
        names = ", ".join(visible(name) for name in room.operators)
        line += " " + render(t("(operators: {names})", names=names), lang)
    return line


def _room_summary(room: RoomInfo) -> Says:
    values = {
        "room": visible(room.room),
        "members": tn("{n} member", "{n} members", room.members),
        "online": room.online,
    }
    if room.joined and room.topic:
        return t(
            "{room} (you): {members}, {online} online — {topic}",
            topic=visible(room.topic),
            **values,
        )
    if room.joined:
        return t("{room} (you): {members}, {online} online", **values)
    if room.topic:
        return t(
            "{room}: {members}, {online} online — {topic}", topic=visible(room.topic), **values
        )
    return t("{room}: {members}, {online} online", **values)


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
