"""The terminal client's lines, in-process, in both of its languages.

Pure functions and :class:`Transcript` fed events: no sockets, no sleeps.
Times are written in UTC (``tz=UTC``) so the lines do not depend on the
machine's zone; "today" is injected for the day separators.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from papo.client_format import (
    Days,
    Transcript,
    format_event,
    format_help,
    format_history,
    format_message,
    format_prompt,
    format_rooms,
    format_unread,
    message_time,
)
from papo.client_state import Conversations
from papo.events import (
    Conversation,
    Error,
    Gap,
    HistoryPage,
    MemberInfo,
    Message,
    Notice,
    Presence,
    ReadMarker,
    RoomInfo,
    RoomJoined,
    RoomList,
    RoomState,
    RoomTopic,
    ServerEvent,
    UserInfo,
    Users,
    Welcome,
)

TS = "2024-05-01T12:34:56Z"  # 12:34 UTC
TODAY = date(2024, 5, 1)


def say(
    id_: int, sender: str, room: str | None = "#geral", text: str = "oi", ts: str = TS
) -> Message:
    return Message(id_, sender, text, ts, room=room)


def private(id_: int, sender: str, to: str, text: str = "oi") -> Message:
    return Message(id_, sender, text, TS, to=to)


def joined(room: str, last_id: int, topic: str = "") -> RoomJoined:
    return RoomJoined(room, topic, (MemberInfo("ana", True), MemberInfo("beto", False)), last_id, 0)


def ana(*events: object) -> Conversations:
    """ana's client after a welcome (10 messages so far, 2 unread in #sala) and ``events``."""
    state = Conversations()
    state.apply(
        Welcome("ana", "token", 10, rooms=(RoomState("#geral"), RoomState("#sala", unread=2)))
    )
    for event in events:
        state.apply(event)  # type: ignore[arg-type]
    return state


def at(day: date, hour: int = 12) -> str:
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=UTC).isoformat()


# --------------------------------------------------------------------------
# Times


def test_times_follow_the_language_and_the_zone() -> None:
    assert message_time(TS, "pt-BR", UTC) == "12:34"
    assert message_time("2024-05-01T01:55:00Z", "pt-BR", UTC) == "01:55"
    assert message_time("2024-05-01T01:55:00Z", "en", UTC) == "1:55 AM"
    assert message_time("2024-05-01T12:34:56+02:00", "pt-BR", UTC) == "10:34"
    brt = timezone(timedelta(hours=-3))
    assert message_time(TS, "pt-BR", brt) == "09:34"
    assert message_time("yesterday", "pt-BR") == "--:--"
    assert message_time("2024-05-01T12:34:56", "en") == "--:--"  # no zone: not guessed


# --------------------------------------------------------------------------
# Messages


def test_message_lines_tag_rooms_but_the_default_one() -> None:
    state = ana()
    for lang in ("en", "pt-BR"):
        hhmm = message_time(TS, lang, UTC)
        assert format_event(say(1, "beto", "#Geral"), state, lang=lang, tz=UTC) == (
            "",
            f"[{hhmm}] beto: oi",
        )
        assert format_event(say(1, "beto", None), state, lang=lang, tz=UTC) == (
            "",
            f"[{hhmm}] beto: oi",
        )
        assert format_event(say(1, "beto", "#sala"), state, lang=lang, tz=UTC) == (
            "",
            f"[{hhmm}] [#sala] beto: oi",
        )
    # No state: the default room's way.
    assert format_event(say(1, "beto", "#sala"), lang="pt-BR", tz=UTC) == ("", "[12:34] beto: oi")


def test_private_lines_name_the_other_side_once_as_the_server_spells_it() -> None:
    state = ana()  # ana's client
    to_me = private(1, "beto", "Ana", "psiu")
    mine = private(2, "ana", "Beatriz", "oi")  # typed "/msg beatriz oi": the server says Beatriz
    en = [format_event(m, state, lang="en", tz=UTC) for m in (to_me, mine)]
    assert en == [
        ("private", "[12:34 PM] private from beto: psiu"),
        ("private", "[12:34 PM] private to Beatriz: oi"),
    ]
    pt = [format_event(m, state, lang="pt-BR", tz=UTC) for m in (to_me, mine)]
    assert pt == [
        ("private", "[12:34] privado de beto: psiu"),
        ("private", "[12:34] privado para Beatriz: oi"),
    ]
    # Whose client it is unknown: both names, as the plain-text mode writes them.
    assert format_message(to_me, lang="pt-BR", tz=UTC) == (
        "private",
        "[12:34] beto → Ana (privado): psiu",
    )


def test_other_events_become_notices_in_the_clients_language() -> None:
    state = ana()
    cases: list[tuple[ServerEvent, str, str]] = [
        (joined("#sala", 3), "* you are in #sala: 2 members, 1 online",
         "* você está em #sala: 2 membros, 1 online"),
        (RoomTopic("#sala", "", "beto"), "* beto cleared the topic of #sala",
         "* beto apagou o tópico de #sala"),
        (Presence("join", "beto"), "* beto joined", "* beto entrou"),
        (Gap(3, 9), "* some older messages are no longer kept",
         "* algumas mensagens antigas não estão mais guardadas"),
        (Users((UserInfo("ana", 1), UserInfo("beto", 2))), "* online (2): ana, beto (2 sessions)",
         "* online (2): ana, beto (2 sessões)"),
    ]  # fmt: skip
    for event, en, pt in cases:
        assert format_event(event, state, lang="en") == ("notice", en)
        assert format_event(event, state, lang="pt-BR") == ("notice", pt)
    # An error's message comes from the server already in our language: only the frame is ours.
    error = Error("unknown_user", "não existe usuário chamado x")
    assert format_event(error, lang="pt-BR") == ("error", "* erro: não existe usuário chamado x")
    assert format_event(Error("x", "no\nway"), lang="en") == ("error", "* error: no⏎way")
    assert format_event(Notice("olá"), lang="en") == ("notice", "* olá")
    assert format_event(ReadMarker(Conversation(room="#sala"), 3), lang="en") is None


# --------------------------------------------------------------------------
# Several lines


def test_rooms_lines_show_ours_unread_where_we_are_and_private_counts() -> None:
    state = ana(private(11, "beto", "ana"))
    rooms = RoomList(
        (
            RoomInfo("#geral", 3, 2, "", True),
            RoomInfo("#sala", 1, 1, "planos", True),
            RoomInfo("#outra", 2, 0, "", False),
        )
    )
    assert format_rooms(rooms, state, lang="en") == [
        ("notice", "* rooms (3; * = yours):"),
        ("notice", "  * #geral — 3 members, 2 online · you are here"),
        ("notice", "  * #sala — 1 member, 1 online · topic: planos · 2 unread"),
        ("notice", "    #outra — 2 members, 0 online"),
        ("notice", "* private: beto (1 unread)"),
    ]
    assert format_rooms(rooms, state, lang="pt-BR") == [
        ("notice", "* salas (3; * = suas):"),
        ("notice", "  * #geral — 3 membros, 2 online · você está aqui"),
        ("notice", "  * #sala — 1 membro, 1 online · tópico: planos · 2 não lidas"),
        ("notice", "    #outra — 2 membros, 0 online"),
        ("notice", "* privado: beto (1 não lida)"),
    ]
    assert format_rooms(RoomList(()), state, lang="pt-BR") == [
        ("notice", "* ainda não há salas: /entrar #nome cria uma")
    ]


def test_history_lines() -> None:
    state = ana()
    page = HistoryPage(Conversation(room="#geral"), (say(1, "beto"), say(2, "carla")), more=True)
    assert format_history(page, state, lang="en", tz=UTC) == [
        ("notice", "* history of #geral: 2 messages; /history again for older ones"),
        ("", "[12:34 PM] beto: oi"),
        ("", "[12:34 PM] carla: oi"),
        ("notice", "* end of history of #geral"),
    ]
    assert format_history(page, state, lang="pt-BR", tz=UTC) == [
        ("notice", "* histórico de #geral: 2 mensagens; /historico de novo para as anteriores"),
        ("", "[12:34] beto: oi"),
        ("", "[12:34] carla: oi"),
        ("notice", "* fim do histórico de #geral"),
    ]
    page = HistoryPage(Conversation(room="#sala"), (say(1, "beto", "#sala"),), more=False)
    assert format_history(page, state, lang="pt-BR", tz=UTC)[:2] == [
        ("notice", "* histórico de #sala: 1 mensagem; não há anteriores"),
        ("", "[12:34] [#sala] beto: oi"),
    ]
    empty = HistoryPage(Conversation(room="#sala"), (), more=False)
    assert format_history(empty, state, lang="en") == [("notice", "* no older messages in #sala")]
    assert format_history(empty, state, lang="pt-BR") == [
        ("notice", "* não há mensagens anteriores em #sala")
    ]


def test_unread_line_and_prompt() -> None:
    state = ana(private(11, "beto", "ana"))
    assert format_unread(state, lang="en") == ("notice", "* unread: #sala (2), beto (1, private)")
    assert format_unread(state, lang="pt-BR") == (
        "notice",
        "* não lidas: #sala (2), beto (1, privado)",
    )
    assert format_prompt(state) == "[#geral] > "
    state.join("#sala")
    state.apply(joined("#sala", last_id=11))
    assert format_prompt(state) == "[#sala] > "
    state.apply(ReadMarker(Conversation(with_="beto"), 11))
    assert format_unread(state, lang="en") is None


def test_help_is_one_command_a_line_in_each_language() -> None:
    en = [line for _, line in format_help("en")]
    pt = [line for _, line in format_help("pt-BR")]
    assert en[0] == "* commands:" and pt[0] == "* comandos:"
    assert "  /who or /quem (who is online)" in en
    assert "  /quem ou /who (quem está online)" in pt
    assert any(line.startswith("  /ajuda ou /help") for line in pt)
    assert len(en) == len(pt) > 8


# --------------------------------------------------------------------------
# The running order: days and replayed context


def test_days_are_named_when_they_change_and_not_for_a_chat_of_today() -> None:
    days = Days("pt-BR", UTC, today=lambda: TODAY)
    assert days.before(at(TODAY)) == []  # the first line, today: nothing to say
    assert days.before(at(TODAY, 13)) == []
    later = Days("pt-BR", UTC, today=lambda: TODAY)
    assert later.before(at(date(2024, 4, 28))) == [("notice", "— 28 de abril de 2024 —")]
    assert later.before(at(date(2024, 4, 28), 15)) == []
    assert later.before(at(date(2024, 4, 30))) == [("notice", "— ontem —")]
    assert later.before(at(TODAY)) == [("notice", "— hoje —")]
    english = Days("en", UTC, today=lambda: TODAY)
    assert english.before(at(date(2024, 4, 30))) == [("notice", "— yesterday —")]
    assert english.before(at(TODAY)) == [("notice", "— today —")]
    assert english.before("not a time") == []


def test_the_days_are_the_readers_days() -> None:
    brt = timezone(timedelta(hours=-3))  # 01:00 UTC on May 1st is still April 30th in Brasília
    days = Days("pt-BR", brt, today=lambda: TODAY)
    assert days.before("2024-05-01T01:00:00Z") == [("notice", "— ontem —")]


def test_replayed_context_is_set_off_from_live_messages() -> None:
    state = ana()
    view = Transcript("pt-BR", tz=UTC, today=lambda: TODAY)
    view.expect_context(10)  # a fresh join: the messages up to 10 are the recent context
    yesterday = at(date(2024, 4, 30))
    shown = view.lines(say(9, "beto", ts=yesterday), state) + view.lines(say(10, "carla"), state)
    assert shown == [
        ("notice", "— mensagens anteriores —"),
        ("notice", "— ontem —"),
        ("", "[12:00] beto: oi"),
        ("notice", "— hoje —"),
        ("", "[12:34] carla: oi"),
    ]
    assert view.lines(say(11, "beto", text="ao vivo"), state) == [
        ("notice", "— agora —"),
        ("", "[12:34] beto: ao vivo"),
    ]
    assert view.lines(say(12, "beto"), state) == [("", "[12:34] beto: oi")]
    assert view.now() == []  # closed once


def test_the_end_of_a_replay_can_be_told_and_a_quiet_join_shows_no_marks() -> None:
    state = ana()
    view = Transcript("en", tz=UTC, today=lambda: TODAY)
    view.expect_context(10)
    assert view.now() == []  # nothing was replayed: nothing to close
    assert view.lines(say(5, "beto"), state) == [("", "[12:34 PM] beto: oi")]  # not context
    view.expect_context(10)
    view.lines(say(9, "beto"), state)
    assert view.now() == [("notice", "— now —")]


def test_a_room_joined_is_followed_by_its_context() -> None:
    state = ana()
    view = Transcript("en", tz=UTC, today=lambda: TODAY)
    assert view.lines(joined("#sala", 30), state) == [
        ("notice", "* you are in #sala: 2 members, 1 online")
    ]
    assert view.lines(say(29, "beto", "#sala"), state) == [
        ("notice", "— earlier messages —"),
        ("", "[12:34 PM] [#sala] beto: oi"),
    ]
    # Another room's message is live: the context is over.
    assert view.lines(say(31, "carla", "#geral"), state) == [
        ("notice", "— now —"),
        ("", "[12:34 PM] carla: oi"),
    ]
    # So is any other line; a history page is no replay either.
    view.lines(joined("#outra", 40), state)
    view.lines(say(39, "beto", "#outra"), state)
    assert view.lines(Presence("leave", "beto"), state) == [
        ("notice", "— now —"),
        ("notice", "* beto left"),
    ]
    page = HistoryPage(Conversation(room="#sala"), (say(2, "beto", "#sala"),), more=False)
    assert view.lines(page, state)[0] == ("notice", "* history of #sala: 1 message; nothing older")


@given(
    sender=st.text(min_size=1),
    room=st.text(min_size=1),
    text=st.text(),
    to=st.none() | st.text(min_size=1),
    lang=st.sampled_from(["en", "pt-BR"]),
)
def test_every_line_is_one_printable_line(
    sender: str, room: str, text: str, to: str | None, lang: str
) -> None:
    state = ana()
    message = Message(7, sender, text, TS, to=to, room="#" + room)
    mine = Message(8, "ana", text, TS, to=to or "x", room=None)
    lines = [
        format_message(message, lang=lang, home=False),
        format_message(message, lang=lang, me="ana", home=True),
        format_event(mine, state, lang=lang),
        format_event(RoomTopic("#" + room, text, sender), state, lang=lang),
        format_event(Error("x", text), state, lang=lang),
        format_event(Notice(text), state, lang=lang),
        *format_rooms(RoomList((RoomInfo("#" + room, 1, 1, text, True),)), state, lang=lang),
        *format_history(
            HistoryPage(Conversation(room="#" + room), (message,), False), state, lang=lang
        ),
    ]
    for line in lines:
        assert line is not None
        assert line[1].isprintable(), line  # no newline, escape or other control character
