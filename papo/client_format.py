"""How the terminal client shows things: events become (style, line) pairs, in its language.

No I/O. Every function takes the reader's language (``lang``, one of
:data:`papo.i18n.LANGUAGES`): the client's own words come from the catalogs
(:func:`~papo.i18n.t`), the lines it shares with the server's plain-text mode
come from :mod:`papo.plain` in the same language, times are written as people
of that language write them (``01:55``, ``1:55 AM``).

Every piece of text that came from elsewhere (names, rooms, topics, message
text) goes through :func:`~papo.plain.visible`, so a line is always one line
and never carries a terminal escape. Styles are names (``"notice"``,
``"error"``, ``"private"``, ``""``); the screen picks their colours.

:class:`Transcript` is the screen's running order: it adds the separators
that depend on what was shown before (the day when it changes, and the marks
around the messages replayed on joining), so history never looks live.

Edits and deletions: a terminal cannot reliably rewrite a line that has
scrolled above the prompt (it may be off the screen, wrapped, or in the
scrollback of a multiplexer), so an edited message is printed again, with
its original time and ``(edited)``, and a deleted one is answered by a line
``(message deleted)`` with the original time, in place of its text from then
on (a history page, a resume). What was printed before stays on the screen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, tzinfo

from papo.client_state import Change, Conversations
from papo.commands import ADMIN_HELP, HELP, LIFECYCLE_HELP, MODERATION_HELP
from papo.events import (
    AuditLog,
    Deleted,
    DeviceList,
    Edited,
    Error,
    Gap,
    HistoryPage,
    Member,
    Message,
    Notice,
    Presence,
    RoomJoined,
    RoomList,
    RoomModeChanged,
    RoomParted,
    RoomTopic,
    ServerEvent,
    Users,
)
from papo.i18n import Says, clock_time, day_label, render, t, tn
from papo.names import name_key, room_key
from papo.plain import plain_message, render_plain, visible

#: A line on the screen: (style, text).
Line = tuple[str, str]


def notice(text: Says, lang: str, style: str = "notice") -> Line:
    """A line of the client's own: ``* `` and ``text`` in ``lang``."""
    return (style, f"* {render(text, lang)}")


def format_prompt(state: Conversations) -> str:
    """The input prompt: the current room, where typed lines go."""
    return f"[{visible(state.current)}] > "


def format_message(
    event: Message, *, lang: str, me: str = "", home: bool = True, tz: tzinfo | None = None
) -> Line:
    """(style, line) of a chat message; ``home`` (the default room's) lines carry no room tag.

    A room's line is the plain-text mode's (:func:`~papo.plain.plain_message`)
    after the time. A private line says who it is from, or, when the user
    (``me``, a name key) sent it, who it went to, by the name the server
    gives (the message's ``to``), each name once.
    """
    when = f"[{message_time(event.ts, lang, tz)}]"
    if event.deleted:  # a tombstone: no sender, no text
        style = "private" if event.to is not None else ""
        return (style, f"{when} {plain_message(replace(event, home=home), lang)}")
    if event.to is None:
        return ("", f"{when} {plain_message(replace(event, home=home), lang)}")
    text = visible(event.text)
    if me and name_key(event.sender) == me:
        said = render(t("private to {name}: {text}", name=visible(event.to), text=text), lang)
    elif me:
        said = render(t("private from {name}: {text}", name=visible(event.sender), text=text), lang)
    else:  # whose client this is is not known: both names (and "(edited)")
        return ("private", f"{when} {plain_message(event, lang)}")
    if event.edited_ts is not None:
        said = render(t("{line} (edited)", line=said), lang)
    return ("private", f"{when} {said}")


def format_event(
    event: ServerEvent, state: Conversations | None = None, *, lang: str, tz: tzinfo | None = None
) -> Line | None:
    """(style, line) for an incoming event; None for events not shown (or shown otherwise).

    Most events read as in the plain-text mode (:func:`~papo.plain.render_plain`);
    a gap says it without ids.
    """
    if isinstance(event, Message):
        home = state is None or state.is_default(event.room)
        me = "" if state is None else state.me
        return format_message(event, lang=lang, me=me, home=home, tz=tz)
    if isinstance(event, Gap):
        return notice(t("some older messages are no longer kept"), lang)
    if isinstance(event, Error) and event.until is not None:
        return ("error", f"{render_plain(event, lang)} {until_text(event.until, lang, tz)}")
    shown = (
        Presence, Users, Error, Notice, RoomParted, RoomTopic, Member, RoomJoined, DeviceList,
        Deleted, RoomModeChanged, AuditLog,
    )  # fmt: skip
    if isinstance(event, shown):
        line = render_plain(event, lang)
        assert line is not None
        return ("error" if isinstance(event, Error) else "notice", line)
    return None  # welcome, read markers; room lists and history pages take several lines


def format_rooms(event: RoomList, state: Conversations, *, lang: str) -> list[Line]:
    """The lines of ``/rooms``: every room, ``*`` marking the user's, with unread counts."""
    if not event.rooms:
        return [("notice", render(t("* no rooms yet: /join #name creates one"), lang))]
    lines = [notice(t("rooms ({count}; * = yours):", count=len(event.rooms)), lang)]
    for info in event.rooms:
        members = tn("{n} member", "{n} members", info.members)
        parts = [render(t("{members}, {online} online", members=members, online=info.online), lang)]
        if info.topic:
            parts.append(render(t("topic: {topic}", topic=visible(info.topic)), lang))
        if info.joined and (unread := state.unread(info.room)):
            parts.append(render(tn("{n} unread", "{n} unread", unread), lang))
        if state.is_current(info.room):
            parts.append(render(t("you are here"), lang))
        mark = "*" if info.joined else " "
        lines.append(("notice", f"  {mark} {visible(info.room)} — {' · '.join(parts)}"))
    direct = state.unread_direct()
    if direct:
        listed = ", ".join(
            render(
                tn("{name} ({n} unread)", "{name} ({n} unread)", count, name=visible(name)), lang
            )
            for name, count in direct
        )
        lines.append(notice(t("private: {listed}", listed=listed), lang))
    return lines


def format_history(
    page: HistoryPage,
    state: Conversations,
    *,
    lang: str,
    tz: tzinfo | None = None,
    days: Days | None = None,
) -> list[Line]:
    """A ``history`` page: a header line, then its messages, oldest first (with ``days``'
    separators when given), then an end line."""
    where = visible(page.conversation.room or page.conversation.with_ or "?")
    if not page.messages:
        return [notice(t("no older messages in {where}", where=where), lang)]
    messages = tn("{n} message", "{n} messages", len(page.messages))
    if page.more:
        header = t(
            "history of {where}: {messages}; /history again for older ones",
            where=where,
            messages=messages,
        )
    else:
        header = t("history of {where}: {messages}; nothing older", where=where, messages=messages)
    lines = [notice(header, lang)]
    home = state.is_default(page.conversation.room) and page.conversation.room is not None
    for message in page.messages:
        if days is not None:
            lines.extend(days.before(message.ts))
        lines.append(format_message(message, lang=lang, me=state.me, home=home, tz=tz))
    lines.append(notice(t("end of history of {where}", where=where), lang))
    return lines


def format_unread(state: Conversations, *, lang: str) -> Line | None:
    """After joining: the rooms (but the current one) and people with unread messages."""
    listed = [f"{visible(name)} ({count})" for name, count in state.unread_rooms()]
    listed += [
        render(t("{name} ({count}, private)", name=visible(name), count=count), lang)
        for name, count in state.unread_direct()
    ]
    if not listed:
        return None
    return notice(t("unread: {listed}", listed=", ".join(listed)), lang)


def format_help(lang: str, role: str = "member") -> list[Line]:
    """``/help``: the commands ``role`` allows, one a line (each catalog text's
    ``·``-separated list, split): everyone's, editing and deleting one's own
    messages, then for an ``"operator"`` of the current room the room's
    moderation, and for an ``"admin"`` that and the server's."""
    texts = [HELP, LIFECYCLE_HELP]
    if role in ("operator", "admin"):
        texts.append(MODERATION_HELP)
    if role == "admin":
        texts.append(ADMIN_HELP)
    lines: list[Line] = []
    for help_text in texts:
        text = render(help_text, lang)
        head, colon, rest = text.partition(": ")
        if not colon or " · " not in rest:
            lines.append(("notice", f"* {text}"))
            continue
        lines.append(("notice", f"* {head}:"))
        lines.extend(("notice", f"  {item}") for item in rest.split(" · "))
    return lines


def format_edited(
    message: Message, state: Conversations, *, lang: str, tz: tzinfo | None = None
) -> Line:
    """An edited message printed again: its original time, its new text, ``(edited)``."""
    edited = message if message.edited_ts is not None else replace(message, edited_ts=message.ts)
    home = state.is_default(edited.room)
    return format_message(edited, lang=lang, me=state.me, home=home, tz=tz)


def format_deleted(
    event: Deleted,
    gone: Message | None,
    state: Conversations,
    *,
    lang: str,
    tz: tzinfo | None = None,
) -> Line:
    """A deleted message: ``(message deleted)`` at its original time (and room), saying who
    deleted it when that was not its sender; unknown here, the plain-text line."""
    if gone is None:
        return (
            "notice",
            render_plain(replace(event, home=state.is_default(event.room)), lang) or "",
        )
    home = gone.to is not None or state.is_default(gone.room)
    line = f"[{message_time(gone.ts, lang, tz)}] {plain_message(replace(gone, home=home), lang)}"
    if gone.sender and name_key(event.by) != name_key(gone.sender):
        line += " " + render(t("(by {name})", name=visible(event.by)), lang)
    return ("notice", line)


def until_text(until: str, lang: str, tz: tzinfo | None = None) -> str:
    """``(until 9:05 PM)`` for a mute's or ban's end, in local time (and day, if not today)."""
    moment = parse_ts(until)
    if moment is None:
        return ""
    local = moment.astimezone(tz)
    time = clock_time(local, lang).replace("\u202f", " ")
    today = datetime.now(tz).date()
    if local.date() == today:
        return render(t("(until {time})", time=time), lang)
    day = day_label(local.date(), today, lang)
    return render(t("(until {day}, {time})", day=day, time=time), lang)


def message_time(ts: str, lang: str, tz: tzinfo | None = None) -> str:
    """The clock time of an ISO 8601 timestamp in ``tz`` (the machine's zone by default),
    as people of ``lang`` write it; ``--:--`` when it cannot be read.

    CLDR puts a narrow no-break space before ``AM``/``PM``; a terminal line gets a
    plain one (every terminal and every script that reads the output knows it).
    """
    moment = parse_ts(ts)
    if moment is None:
        return "--:--"
    return clock_time(moment.astimezone(tz), lang).replace("\u202f", " ")


def parse_ts(ts: str) -> datetime | None:
    """An ISO 8601 timestamp (``...Z`` included) as an aware datetime; None if unreadable."""
    try:
        moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class Days:
    """Day separators: the day's name before a message of another day than the last shown.

    The first message shown gets one only when it is not from today (a chat
    that starts today needs none). ``today`` is injectable for tests.
    """

    def __init__(
        self, lang: str, tz: tzinfo | None = None, today: Callable[[], date] | None = None
    ) -> None:
        self.lang = lang
        self.tz = tz
        self._today = today or (lambda: datetime.now(tz).date())
        self.last: date | None = None

    def before(self, ts: str) -> list[Line]:
        """The separator to show before a message stamped ``ts``, if any."""
        moment = parse_ts(ts)
        if moment is None:
            return []
        day = moment.astimezone(self.tz).date()
        if day == self.last:
            return []
        first = self.last is None
        self.last = day
        today = self._today()
        if first and day == today:
            return []
        label = day_label(day, today, self.lang)
        return [("notice", render(t("— {day} —", day=label), self.lang))]


class Transcript:
    """The screen's running order in one language: events become lines, with separators.

    Messages replayed on joining (the context of a fresh join, a room's last
    messages after ``room joined``) are set off from live ones: a line before
    them, another (:meth:`now`) once they are over, that is before the first
    line that is not one of them, or when the client learns that the replay
    ended. Days are named when they change (:class:`Days`).
    """

    def __init__(
        self, lang: str, *, tz: tzinfo | None = None, today: Callable[[], date] | None = None
    ) -> None:
        self.lang = lang
        self.tz = tz
        self.days = Days(lang, tz, today)
        self._through: int | None = None  # the context of a fresh join: ids up to this one
        self._rooms: dict[str, int] = {}  # room key → a room's context: ids up to this one
        self._open = False  # the "earlier messages" line is shown, "now" is not yet

    def expect_context(self, through: int, room: str | None = None) -> None:
        """Messages up to id ``through`` (of ``room``, or of any conversation) that follow
        are replayed context, not live."""
        if room is None:
            self._through = through
        else:
            self._rooms[room_key(room)] = through

    def now(self) -> list[Line]:
        """The replay is over: the line that closes it, if it was shown."""
        self._through = None
        self._rooms.clear()
        if not self._open:
            return []
        self._open = False
        return [("notice", render(t("— now —"), self.lang))]

    def lines(
        self, event: ServerEvent, state: Conversations, change: Change | None = None
    ) -> list[Line]:
        """What the screen shows for ``event`` (maybe nothing), separators included;
        ``change`` is what :meth:`Conversations.apply` answered for it (for edits and
        deletions: the message as it is now)."""
        lang, tz = self.lang, self.tz
        if isinstance(event, Edited):
            about = change.about if change is not None else None
            if about is None:
                about = state.edited(event)
            return [*self.now(), format_edited(about, state, lang=lang, tz=tz)]
        if isinstance(event, Deleted):
            if change is not None and change.repeat:
                return []
            gone = change.about if change is not None else None
            return [*self.now(), format_deleted(event, gone, state, lang=lang, tz=tz)]
        if isinstance(event, Message):
            out: list[Line] = []
            if not self._replayed(event):
                out.extend(self.now())
            elif not self._open:
                self._open = True
                out.append(("notice", render(t("— earlier messages —"), lang)))
            out.extend(self.days.before(event.ts))
            shown = format_event(event, state, lang=lang, tz=tz)
            assert shown is not None
            out.append(shown)
            return out
        if isinstance(event, RoomList):
            return self.now() + format_rooms(event, state, lang=lang)
        if isinstance(event, HistoryPage):
            return self.now() + format_history(event, state, lang=lang, tz=tz, days=self.days)
        line = format_event(event, state, lang=lang, tz=tz)
        if line is None:
            return []
        out = [*self.now(), line]
        if isinstance(event, RoomJoined):  # the room's last messages follow
            self.expect_context(event.last_id, event.room)
        return out

    def _replayed(self, event: Message) -> bool:
        if self._through is not None and event.id <= self._through:
            return True
        if event.room is None:
            return False
        through = self._rooms.get(room_key(event.room))
        return through is not None and event.id <= through
