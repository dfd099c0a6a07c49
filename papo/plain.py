"""Server events as lines for people: the plain-text mode's rendering. Pure, no I/O.

Control characters are made visible (``\\n`` becomes ``⏎`` and the like) in
everything that may carry someone's input, so one event is one line and
nobody can forge a notice or drive the reader's terminal.
"""

from __future__ import annotations

from papo.events import (
    DeviceInfo,
    DeviceList,
    Error,
    Gap,
    Member,
    Message,
    Notice,
    Presence,
    RoomInfo,
    RoomJoined,
    RoomList,
    RoomParted,
    RoomTopic,
    ServerEvent,
    Users,
    Welcome,
)
from papo.i18n import DEFAULT_LANGUAGE, Says, render, t, tn


def render_plain(event: ServerEvent, lang: str = DEFAULT_LANGUAGE) -> str | None:
    """The line a plain-text client reading ``lang`` sees for ``event``, or None for none.

    Control characters are made visible (``\\n`` becomes ``⏎`` and the like)
    in everything that may carry someone's input, so one event is one line
    and nobody can forge a notice or drive the reader's terminal.
    """
    if isinstance(event, Message):
        return plain_message(event, lang)
    said = _says(event, lang)
    return None if said is None else render(said, lang)


def plain_message(event: Message, lang: str = DEFAULT_LANGUAGE) -> str:
    """One chat line: ``NAME: text`` in the default room, ``[#sala] NAME: text`` elsewhere."""
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
        return t("* you left {room}", room=visible(event.room))
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
        listed = "; ".join(render(_room_info(r), lang) for r in event.rooms)
        return t("* rooms ({count}): {rooms}", count=len(event.rooms), rooms=listed)
    return None  # acks, read markers and history pages (sent line by line) are for JSON clients


def _room_info(room: RoomInfo) -> Says:
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
