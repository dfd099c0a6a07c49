"""Moderation and the message lifecycle in the terminal client (issue 12).

Pure tests first (lines and book-keeping, in-process, ``tz=UTC``), then the
real client in a real pseudo-terminal (pexpect) against the real server
started with ``--admin root``; an admin name needs a password, which its first
``hello`` sets. The clients read English (``LANG=C.UTF-8``) unless a test says
Portuguese.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pexpect
import pytest

from papo.client_chat import Client
from papo.client_format import Transcript, format_help, format_history, until_text
from papo.client_screen import Screen
from papo.client_session import ChatSession
from papo.client_state import Conversations
from papo.commands import DeleteHere, EditHere
from papo.events import (
    Conversation,
    Delete,
    Deleted,
    Edit,
    Edited,
    Error,
    HistoryPage,
    MemberInfo,
    Message,
    RoomInfo,
    RoomJoined,
    RoomList,
    Say,
    ServerEvent,
    Welcome,
)
from papo.i18n import clock_time
from tests.conftest import StartServer
from tests.helpers import JsonClient, ServerProcess
from tests.test_client import TIME, locale_env, spawn

TS = "2024-05-01T12:34:56Z"
EDITED_TS = "2024-05-01T12:40:00Z"
ADMIN, PASSWORD = "root", "segredo-forte"
FLAGS = ("--presence-grace", "0.3", "--rate-limit", "0", "--admin", ADMIN)
PT = {"LANG": "pt_BR.UTF-8"}
PT_TIME = r"\d\d:\d\d"
#: When a mute or ban ends: a time, after the day ("tomorrow, ") when that is not today
#: (an hour's ban given at 23:30 ends tomorrow: the test must not depend on the hour).
UNTIL = rf"(?:[^()]*, )?{TIME}"


def state_of(me: str = "ana", *, admin: bool = False) -> Conversations:
    state = Conversations()
    state.welcome(Welcome(me, last_id=0, admin=admin))
    return state


def shown(transcript: Transcript, state: Conversations, *events: ServerEvent) -> list[str]:
    """The lines the screen shows for ``events``, applied to ``state`` as the client does."""
    lines: list[str] = []
    for event in events:
        change = state.apply(event)
        lines += [line for _, line in transcript.lines(event, state, change)]
    return lines


# ---------------------------------------------------------------- pure: help by role


def test_help_lists_only_what_the_role_allows() -> None:
    member = "\n".join(line for _, line in format_help("en", "member"))
    operator = "\n".join(line for _, line in format_help("en", "operator"))
    admin = "\n".join(line for _, line in format_help("en", "admin"))
    assert "/edit" in member and "/delete" in member and "/join" in member
    assert "/kick" not in member and "/ban" not in member
    assert "/kick" in operator and "/mute NAME 10m" in operator and "/mode +m" in operator
    assert "/ban" not in operator and "/audit" not in operator
    assert "/kick" in admin and "/ban NAME" in admin and "/purge" in admin and "/audit" in admin
    portuguese = "\n".join(line for _, line in format_help("pt-BR", "admin"))
    assert "/editar" in portuguese and "/expulsar" in portuguese and "/banir" in portuguese


def test_the_role_comes_from_the_welcome_and_the_room_joined_op_flags() -> None:
    state = state_of("ana")
    assert state.role("#geral") == "member"
    members = (MemberInfo("ana", True, op=True), MemberInfo("beto", True))
    state.apply(RoomJoined("#sala", "", members, 10, 0))
    assert state.role("#sala") == "operator" and state.role("#geral") == "member"
    beto = state_of("beto")
    beto.apply(RoomJoined("#sala", "", members, 10, 0))
    assert beto.role("#sala") == "member"
    beto.apply(RoomList((RoomInfo("#sala", 2, 2, "", True, ("ana", "beto")),)))  # /rooms: op'd
    assert beto.role("#sala") == "operator"
    assert state_of("root", admin=True).role("#geral") == "admin"


# ---------------------------------------------------------------- pure: own messages


def test_the_last_own_message_comes_from_acks_and_forgets_deleted_ones() -> None:
    state = state_of("ana")
    assert state.last_own("#geral") is None
    state.acked(5, None)  # the default room
    state.acked(7, None)
    state.acked(8, None, to="beto")  # private: not a room's
    state.acked(9, "#sala")
    assert state.last_own("#geral") == 7 and state.last_own("#sala") == 9
    assert state.is_own(5) and not state.is_own(8)
    state.apply(Deleted(7, "ana", "#geral"))
    assert state.last_own("#geral") == 5
    # the user's messages from another device count too
    state.apply(Message(11, "Ana", "de outro lugar", TS, room="#geral"))
    assert state.last_own("#geral") == 11


async def test_edit_and_delete_resolve_to_own_ids(capsys: pytest.CaptureFixture[str]) -> None:
    """``/edit`` and ``/delete`` as the wire has them (a session never connected: nothing
    is unacknowledged)."""
    client = Client(ChatSession("ws://127.0.0.1:1"), Screen(False, "en"), interactive=False)
    client.state.welcome(Welcome("ana", last_id=0))
    assert await client.lifecycle(EditHere("oi")) is None
    assert "you have no message in #geral that this client knows of" in capsys.readouterr().out
    client.acked(4, Say("primeira"), None)
    client.acked(6, Say("segunda"), None)
    assert await client.lifecycle(EditHere("segunda!")) == Edit(6, "segunda!")
    assert await client.lifecycle(EditHere("4 primeira!")) == Edit(4, "primeira!")  # own id
    assert await client.lifecycle(EditHere("5 é um número")) == Edit(6, "5 é um número")
    assert await client.lifecycle(DeleteHere(99)) == Delete(99)  # anyone's, the server decides
    assert await client.lifecycle(DeleteHere()) == Delete(6)
    assert await client.lifecycle(DeleteHere()) == Delete(4)  # the one before, at once
    assert client.state.seen[4].text == "primeira"  # remembered: its deletion shows its time


# ---------------------------------------------------------------- pure: lines


def test_an_edited_message_is_printed_again_with_its_time_and_edited() -> None:
    state, transcript = state_of("beto"), Transcript("en", tz=UTC)
    lines = shown(
        transcript, state,
        Message(3, "ana", "oi tdo bem", TS, room="#geral"),
        Edited(3, "oi, tudo bem?", EDITED_TS, "ana", "#geral"),
    )  # fmt: skip
    assert lines[-2:] == ["[12:34 PM] ana: oi tdo bem", "[12:34 PM] ana: oi, tudo bem? (edited)"]
    pt_state, pt = state_of("beto"), Transcript("pt-BR", tz=UTC)
    lines = shown(
        pt, pt_state,
        Message(3, "ana", "oi", TS, room="#sala"),
        Edited(3, "olá", EDITED_TS, "ana", "#sala"),
    )  # fmt: skip
    assert lines[-1] == "[12:34] [#sala] ana: olá (editada)"


def test_an_edit_of_a_message_not_shown_here_uses_the_edits_time() -> None:
    lines = shown(Transcript("en", tz=UTC), state_of("beto"), Edited(3, "novo", EDITED_TS, "ana"))
    assert lines == ["[12:40 PM] ana: novo (edited)"]


def test_a_deleted_message_reads_message_deleted_at_its_time() -> None:
    state, transcript = state_of("carla"), Transcript("en", tz=UTC)
    lines = shown(
        transcript, state,
        Message(3, "ana", "ops", TS, room="#geral"),
        Message(4, "beto", "spam", TS, room="#sala"),
        Deleted(3, "ana", "#geral"),
        Deleted(4, "ana", "#sala"),
        Deleted(99, "ana", "#sala"),  # never shown here
    )  # fmt: skip
    assert lines[-3:] == [
        "[12:34 PM] (message deleted)",
        "[12:34 PM] [#sala] (message deleted) (by ana)",
        "* ana deleted a message in #sala",
    ]
    pt_state, pt = state_of("carla"), Transcript("pt-BR", tz=UTC)
    lines = shown(pt, pt_state, Message(3, "ana", "ops", TS), Deleted(3, "beto"))
    assert lines[-1] == "[12:34] (mensagem apagada) (por beto)"


def test_private_messages_edited_and_deleted() -> None:
    state, transcript = state_of("beto"), Transcript("en", tz=UTC)
    lines = shown(
        transcript, state,
        Message(3, "ana", "segredo", TS, to="beto"),
        Edited(3, "outro segredo", EDITED_TS, "ana", to="beto"),
        Deleted(3, "ana", to="beto"),
        Message(5, "", "", TS, to="beto", deleted=True),  # a history's tombstone
    )  # fmt: skip
    assert lines[-3:] == [
        "[12:34 PM] private from ana: outro segredo (edited)",
        "[12:34 PM] (message deleted)",
        "[12:34 PM] (message deleted)",
    ]
    # nothing left unread (the deletion took it), and the tombstone is nobody's: no "" partner
    assert state.unread_direct() == []
    state.apply(Message(7, "", "", TS, room="#sala", deleted=True))
    assert state.unread("#sala") == 0 and state.oldest("#sala") == 7


def test_a_replayed_tombstone_and_its_deletion_make_one_line() -> None:
    """A resume replays a deleted message as a tombstone, then its ``deleted``."""
    state, transcript = state_of("carla"), Transcript("en", tz=UTC)
    tombstone = Message(3, "", "", TS, room="#geral", deleted=True)
    lines = shown(transcript, state, tombstone, Deleted(3, "ana", "#geral"))
    assert lines[-1] == "[12:34 PM] (message deleted)"
    assert lines.count("[12:34 PM] (message deleted)") == 1


def test_a_history_page_shows_the_latest_text_and_tombstones() -> None:
    state = state_of("carla")
    page = HistoryPage(
        Conversation(room="#sala"),
        (
            Message(1, "ana", "oi, tudo bem?", TS, room="#sala", edited_ts=EDITED_TS),
            Message(2, "", "", TS, room="#sala", deleted=True),
        ),
        more=False,
    )
    lines = [line for _, line in format_history(page, state, lang="pt-BR", tz=UTC)]
    assert lines[1:3] == [
        "[12:34] [#sala] ana: oi, tudo bem? (editada)",
        "[12:34] [#sala] (mensagem apagada)",
    ]


def test_mutes_and_bans_say_until_when_in_local_time() -> None:
    now = datetime.now(UTC)
    # A zone where it is about noon now, so that ten minutes on is still today
    # whatever the hour the test runs at.
    noon = timezone(timedelta(hours=12 - now.hour))
    soon = (now + timedelta(minutes=10)).astimezone(noon)
    iso = soon.astimezone(UTC).isoformat().replace("+00:00", "Z")
    time_en = clock_time(soon, "en").replace("\u202f", " ")
    assert until_text(iso, "en", noon) == f"(until {time_en})"
    assert until_text(iso, "pt-BR", noon) == f"(até {clock_time(soon, 'pt-BR')})"
    later = until_text("2099-01-02T03:04:05Z", "en", UTC)
    assert later.startswith("(until ") and "2099" in later and "3:04 AM" in later
    muted = Error("muted", "you are muted in #sala for 10m more", None, iso)
    lines = shown(Transcript("en", tz=noon), state_of(), muted)
    assert lines == [f"* error: you are muted in #sala for 10m more (until {time_en})"]


# ---------------------------------------------------------------- real: the welcome


@pytest.fixture
def moderated(start_server: StartServer) -> ServerProcess:
    return start_server(*FLAGS)


async def test_the_welcome_tells_an_admin_so(moderated: ServerProcess) -> None:
    root = await JsonClient.open(moderated.url, ADMIN, password=PASSWORD)
    beto = await JsonClient.open(moderated.url, "beto")
    assert root.welcome["admin"] is True
    assert "admin" not in beto.welcome
    open_root = await JsonClient.open(moderated.url, "Root2")  # not an admin name
    assert "admin" not in open_root.welcome
    for client in (root, beto, open_root):
        await client.close()


# ---------------------------------------------------------------- real: terminal clients


def joined(
    children: list[pexpect.spawn], url: str, name: str, *args: str, pt: bool = False
) -> pexpect.spawn:
    env = locale_env(**PT) if pt else None
    child = spawn("--url", url, "--name", name, *args, track=children, env=env)
    child.expect(f"você entrou como {name}" if pt else f"you are {name}")
    child.expect(r"\[#geral\] >")
    return child


def enter(child: pexpect.spawn, room: str) -> None:
    child.sendline(f"/join {room}")
    child.expect(rf"\[{room}\] >")


def test_edit_and_delete_the_last_message_seen_by_another_client(
    moderated: ServerProcess, children: list[pexpect.spawn]
) -> None:
    ana = joined(children, moderated.url, "ana")
    beto = joined(children, moderated.url, "beto")
    ana.sendline("/delete")  # nothing of hers yet
    ana.expect("you have no message in #geral that this client knows of")

    ana.sendline("oi tdo bem")
    beto.expect(rf"\[{TIME}\] ana: oi tdo bem")
    ana.sendline("/edit oi, tudo bem?")  # her last message, by default
    beto.expect(rf"\[{TIME}\] ana: oi, tudo bem\? \(edited\)")
    ana.expect(r"ana: oi, tudo bem\? \(edited\)")  # her own client shows it too

    ana.sendline("segunda")
    beto.expect(r"\] ana: segunda")
    ana.sendline("/delete")
    beto.expect(rf"\[{TIME}\] \(message deleted\)")
    ana.sendline("/edit a primeira de novo")  # the last one left is the first
    beto.expect(r"ana: a primeira de novo \(edited\)")

    beto.sendline("/edit 1 não é minha")  # not his: "1 não é minha" is the text, and he
    beto.expect(r"you have no message in #geral")  # has none here to edit


def test_an_operator_kicks_a_member_who_sees_why_and_help_differs_by_role_pt(
    moderated: ServerProcess, children: list[pexpect.spawn]
) -> None:
    ana = joined(children, moderated.url, "ana", pt=True)
    beto = joined(children, moderated.url, "beto", pt=True)
    enter(ana, "#sala")  # she creates it: its operator
    enter(beto, "#sala")

    ana.sendline("/ajuda")
    ana.expect(r"/expulsar")
    ana.expect(r"\[#sala\] >")
    beto.sendline("/ajuda")
    beto.expect(r"/editar")
    beto.expect(r"\[#sala\] >")
    assert "/expulsar" not in (beto.before or "") and "/banir" not in (beto.before or "")

    ana.sendline("/expulsar beto chega de spam")
    beto.expect(r"ana tirou você de #sala: chega de spam")
    beto.expect(r"de volta a #geral")
    beto.expect(r"\[#geral\] >")
    ana.expect(r"beto saiu de #sala")


def test_a_timed_mute_ends_by_itself(
    moderated: ServerProcess, children: list[pexpect.spawn]
) -> None:
    ana = joined(children, moderated.url, "ana")
    beto = joined(children, moderated.url, "beto")
    enter(ana, "#sala")
    enter(beto, "#sala")
    ana.sendline("/help")
    ana.expect(r"/kick NAME")

    ana.sendline("/mute beto 8s calma")
    beto.expect(r"ana muted you in #sala for 8s: calma")
    beto.sendline("falo mesmo assim")
    beto.expect(rf"error: you are muted in #sala for \d+s more \(until {UNTIL}\)")
    beto.expect(r"you may speak in #sala again", timeout=30)  # the end, by itself
    beto.sendline("agora posso")
    ana.expect(rf"\[{TIME}\] \[#sala\] beto: agora posso")
    assert "falo mesmo assim" not in (ana.before or "")

    beto.sendline("/help")  # a member here
    beto.expect(r"/delete or /apagar")
    beto.expect(r"\[#sala\] >")
    assert "/kick" not in (beto.before or "")
    ana.sendline("/op beto")
    beto.expect(r"ana made beto an operator of #sala")
    beto.sendline("/help")  # an operator now: /help asks the server who operates what
    beto.expect(r"/kick NAME")


def test_a_ban_closes_the_client_with_the_reason_and_no_reconnect(
    moderated: ServerProcess, children: list[pexpect.spawn]
) -> None:
    root = joined(children, moderated.url, ADMIN, "--password", PASSWORD)
    beto = joined(children, moderated.url, "beto")
    root.sendline("/help")
    root.expect(r"/ban NAME")
    root.expect(r"/audit")

    root.sendline("/ban beto 1h spam")
    beto.expect(rf"error: beto is banned for 1h: spam \(until {UNTIL}\)")
    beto.expect(r"papo: the server closed the connection: beto is banned")
    beto.expect(pexpect.EOF, timeout=10)
    beto.close()
    assert beto.exitstatus == 1
    assert "reconnecting" not in (beto.before or "")

    again = spawn("--url", moderated.url, "--name", "beto", track=children)
    again.expect(r"papo: beto is banned for \d+m?.*\(until ")
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 1

    root.sendline("/audit")
    root.expect(r"root: ban beto")


def test_a_fresh_join_shows_the_latest_text_and_tombstones(
    moderated: ServerProcess, children: list[pexpect.spawn]
) -> None:
    ana = joined(children, moderated.url, "ana")
    ana.sendline("primeira versao")
    ana.sendline("vai sumir")
    ana.sendline("/delete")  # waits for the ack of "vai sumir": that one
    ana.expect(r"\(message deleted\)")
    ana.sendline("/edit primeira versão")
    ana.expect(r"ana: primeira versão \(edited\)")

    carla = spawn("--url", moderated.url, "--name", "carla", track=children)
    carla.expect(r"— now —")
    replay = carla.before or ""
    assert re.search(rf"\[{TIME}\] ana: primeira versão \(edited\)", replay), replay
    assert re.search(rf"\[{TIME}\] \(message deleted\)", replay), replay
    assert "vai sumir" not in replay and "primeira versao" not in replay
