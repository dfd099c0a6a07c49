"""How the terminal client shows things: events become (style, line) pairs. No I/O.

Every piece of text that came from elsewhere (names, rooms, topics, message
text) goes through :func:`~papo.plain.visible`, so a line is always one line
and never carries a terminal escape. Styles are names (``"notice"``,
``"error"``, ``"private"``, ``""``); the screen picks their colours.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, tzinfo

from papo.client_state import Conversations
from papo.events import (
    DeviceList,
    Error,
    Gap,
    HistoryPage,
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
)
from papo.plain import plain_message, render_plain, visible

#: A line on the screen: (style, text).
Line = tuple[str, str]


def format_prompt(state: Conversations) -> str:
    """The input prompt: the current room, where typed lines go."""
    return f"[{visible(state.current)}] > "


def format_message(event: Message, home: bool = True) -> Line:
    """(style, line) of a chat message; ``home`` (the default room's) lines carry no room tag.

    The line is the plain-text mode's (:func:`~papo.plain.plain_message`), after the time.
    """
    line = plain_message(replace(event, home=home))
    return ("private" if event.to is not None else "", f"[{local_time(event.ts)}] {line}")


def format_event(event: ServerEvent, state: Conversations | None = None) -> Line | None:
    """(style, line) for an incoming event; None for events not shown (or shown otherwise).

    Most events read as in the plain-text mode (:func:`~papo.plain.render_plain`);
    a room join counts its members in words, and a gap says it without ids.
    """
    if isinstance(event, Message):
        return format_message(event, state is None or state.is_default(event.room))
    if isinstance(event, Gap):
        return ("notice", f"* older messages (up to {event.oldest - 1}) are no longer kept")
    if isinstance(event, RoomJoined):
        topic = f" (topic: {visible(event.topic)})" if event.topic else ""
        online = sum(1 for m in event.members if m.online)
        return (
            "notice",
            f"* you are in {visible(event.room)}{topic}: {count_of(len(event.members), 'member')}, "
            f"{online} online",
        )
    if isinstance(
        event, Presence | Users | Error | Notice | RoomParted | RoomTopic | Member | DeviceList
    ):
        line = render_plain(event)
        assert line is not None
        return ("error" if isinstance(event, Error) else "notice", line)
    return None  # welcome, read markers; room lists and history pages take several lines


def format_rooms(event: RoomList, state: Conversations) -> list[Line]:
    """The lines of ``/rooms``: every room, ``*`` marking the user's, with unread counts."""
    if not event.rooms:
        return [("notice", "* no rooms yet: /join #name creates one")]
    lines = [("notice", f"* rooms ({len(event.rooms)}; * = yours):")]
    for info in event.rooms:
        parts = [f"{count_of(info.members, 'member')}, {info.online} online"]
        if info.topic:
            parts.append(f"topic: {visible(info.topic)}")
        if info.joined and (unread := state.unread(info.room)):
            parts.append(f"{unread} unread")
        if state.is_current(info.room):
            parts.append("you are here")
        mark = "*" if info.joined else " "
        lines.append(("notice", f"  {mark} {visible(info.room)} — {' · '.join(parts)}"))
    direct = state.unread_direct()
    if direct:
        listed = ", ".join(f"{visible(name)} ({count} unread)" for name, count in direct)
        lines.append(("notice", f"* private: {listed}"))
    return lines


def format_history(page: HistoryPage, state: Conversations) -> list[Line]:
    """A ``history`` page: a header line, then its messages, oldest first."""
    where = visible(page.conversation.room or page.conversation.with_ or "?")
    if not page.messages:
        return [("notice", f"* no older messages in {where}")]
    more = "; /history again for older ones" if page.more else "; nothing older"
    lines = [("notice", f"* history of {where}: {count_of(len(page.messages), 'message')}{more}")]
    home = state.is_default(page.conversation.room) and page.conversation.room is not None
    lines.extend(format_message(m, home) for m in page.messages)
    lines.append(("notice", f"* end of history of {where}"))
    return lines


def format_unread(state: Conversations) -> Line | None:
    """After joining: the rooms (but the current one) and people with unread messages."""
    listed = [f"{visible(name)} ({count})" for name, count in state.unread_rooms()]
    listed += [f"{visible(name)} ({count}, private)" for name, count in state.unread_direct()]
    return ("notice", f"* unread: {', '.join(listed)}") if listed else None


def count_of(n: int, word: str) -> str:
    """``1 member``, ``2 members``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def local_time(ts: str, tz: tzinfo | None = None) -> str:
    """``HH:MM`` of an ISO 8601 timestamp in ``tz`` (the machine's zone by default)."""
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(tz).strftime("%H:%M")
    except ValueError:
        return "--:--"
