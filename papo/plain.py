"""Server events as lines for people: the plain-text mode's rendering. Pure, no I/O.

Control characters are made visible (``\\n`` becomes ``⏎`` and the like) in
everything that may carry someone's input, so one event is one line and
nobody can forge a notice or drive the reader's terminal.
"""

from __future__ import annotations

from papo.events import (
    Error,
    Gap,
    Member,
    Message,
    Notice,
    Presence,
    RoomJoined,
    RoomList,
    RoomParted,
    RoomTopic,
    ServerEvent,
    Users,
    Welcome,
)


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
