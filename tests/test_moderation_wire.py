"""The moderation and message-lifecycle wire: JSON events both ways, plain commands and lines."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from papo.commands import (
    DeleteHere,
    DeopHere,
    EditHere,
    KickHere,
    ModeHere,
    MuteHere,
    OpHere,
    UnmuteHere,
    parse_line,
)
from papo.i18n import render
from papo.moderation import MAX_DURATION, AuditEntry
from papo.outgoing import Outgoing
from papo.protocol import (
    AuditLog,
    Ban,
    BanIp,
    ClientEvent,
    Delete,
    Deleted,
    Deop,
    Edit,
    Edited,
    Error,
    Kick,
    MemberInfo,
    Message,
    Mute,
    Op,
    ProtocolError,
    Purge,
    ReadAudit,
    RoomInfo,
    RoomJoined,
    RoomList,
    RoomModeChanged,
    RoomParted,
    ServerEvent,
    SetMode,
    Unban,
    UnbanIp,
    Unmute,
    render_plain,
)
from papo.protocol_client import encode_client, parse_server
from papo.protocol_encode import to_wire
from papo.protocol_parse import MAX_ID, parse_client
from tests.test_protocol import names, rooms  # valid names: letters of one script

reasons = st.text(max_size=300).map(lambda t: " ".join(t.split()))
seconds = st.integers(1, MAX_DURATION)
ids = st.integers(0, MAX_ID)
addresses = st.sampled_from(["203.0.113.7/32", "10.0.0.0/8", "2001:db8::/32", "::1/128"])
texts = st.text(min_size=1, max_size=50).filter(str.strip)

client_events = st.one_of(
    st.builds(Edit, id=ids, text=texts),
    st.builds(Delete, id=ids),
    st.builds(Kick, room=rooms, name=names, reason=reasons),
    st.builds(Mute, room=rooms, name=names, seconds=seconds, reason=reasons),
    st.builds(Unmute, room=rooms, name=names),
    st.builds(Ban, name=names, seconds=st.none() | seconds, reason=reasons),
    st.builds(Unban, name=names),
    st.builds(BanIp, address=addresses, seconds=st.none() | seconds, reason=reasons),
    st.builds(UnbanIp, address=addresses),
    st.builds(Purge, name=names, seconds=st.none() | seconds, reason=reasons),
    st.builds(Purge, name=names, since=st.just("2026-11-22T21:40:00.123Z"), reason=reasons),
    st.builds(Op, room=rooms, name=names),
    st.builds(Deop, room=rooms, name=names),
    st.builds(SetMode, room=rooms, moderated=st.booleans(), topic_locked=st.none() | st.booleans()),
    st.builds(SetMode, room=rooms, topic_locked=st.booleans()),
    st.builds(ReadAudit, limit=st.integers(1, 500)),
)


@given(client_events)
def test_client_events_round_trip(event: ClientEvent) -> None:
    assert parse_client(encode_client(event)) == event


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"type": "edit", "text": "x"}, "missing_field"),
        ({"type": "edit", "id": 1}, "missing_field"),
        ({"type": "edit", "id": 1, "text": "  "}, "empty_text"),
        ({"type": "edit", "id": "1", "text": "x"}, "bad_field"),
        ({"type": "delete"}, "missing_field"),
        ({"type": "delete", "id": -1}, "bad_field"),
        ({"type": "kick", "room": "#sala"}, "missing_field"),
        ({"type": "kick", "room": "#sala", "name": "a b"}, "bad_name"),
        ({"type": "kick", "room": "#sala", "name": "beto", "reason": "x" * 301}, "text_too_long"),
        ({"type": "mute", "room": "#sala", "name": "beto"}, "missing_field"),
        ({"type": "mute", "room": "#sala", "name": "beto", "seconds": 0}, "bad_field"),
        ({"type": "mute", "room": "#sala", "name": "beto", "seconds": 10**9}, "bad_field"),
        ({"type": "mute", "room": "#sala", "name": "beto", "seconds": True}, "bad_field"),
        ({"type": "ban"}, "missing_field"),
        ({"type": "ban", "name": "beto", "seconds": "1h"}, "bad_field"),
        ({"type": "ban_ip", "address": "nowhere"}, "bad_field"),
        ({"type": "ban_ip", "address": "10.0.0.0/33"}, "bad_field"),
        ({"type": "unban_ip"}, "missing_field"),
        ({"type": "purge", "name": "beto", "since": "yesterday"}, "bad_field"),
        ({"type": "purge", "name": "beto", "since": "2026-01-01", "seconds": 5}, "bad_field"),
        ({"type": "mode", "room": "#sala"}, "missing_field"),
        ({"type": "mode", "room": "#sala", "moderated": "yes"}, "bad_field"),
        ({"type": "audit", "limit": 0}, "bad_field"),
        ({"type": "audit", "limit": 501}, "bad_field"),
    ],
)
def test_bad_moderation_events(event: dict[str, Any], code: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_client(json.dumps(event))
    assert raised.value.code == code


def test_addresses_are_normalised_and_defaults_filled() -> None:
    assert parse_client('{"type":"ban_ip","address":"203.0.113.9/24"}') == BanIp("203.0.113.0/24")
    assert parse_client('{"type":"ban_ip","address":"::ffff:10.1.2.3"}') == BanIp("10.1.2.3/32")
    assert parse_client('{"type":"audit"}') == ReadAudit(20)
    assert parse_client('{"type":"ban","name":"beto"}') == Ban("beto")
    assert parse_client('{"type":"kick","room":"sala","name":"beto"}') == Kick("#sala", "beto")


audit_entries = st.builds(
    AuditEntry,
    ts=st.text(max_size=30),
    by=names,
    action=st.sampled_from(["kick", "ban", "purge"]),
    target=names,
    reason=st.text(),
    room=st.just("") | rooms,
)
server_events = st.one_of(
    st.builds(Edited, id=ids, text=st.text(), edited_ts=st.text(), sender=names, room=rooms),
    st.builds(Edited, id=ids, text=st.text(), edited_ts=st.text(), sender=names, to=names),
    st.builds(Deleted, id=ids, by=names, room=rooms),
    st.builds(Deleted, id=ids, by=names, to=names),
    st.builds(
        Message,
        id=ids,
        sender=names,
        text=st.text(),
        ts=st.text(),
        room=rooms,
        edited_ts=st.none() | st.text(),
    ),
    st.builds(Message, id=ids, sender=st.just(""), text=st.just(""), ts=st.text(), room=rooms).map(
        lambda m: Message(m.id, "", "", m.ts, room=m.room, deleted=True)
    ),
    st.builds(RoomParted, room=rooms, by=names, reason=st.text()),
    st.builds(
        RoomModeChanged,
        room=rooms,
        moderated=st.booleans(),
        topic_locked=st.booleans(),
        by=names,
    ),
    st.builds(AuditLog, entries=st.lists(audit_entries, max_size=3).map(tuple)),
    st.builds(
        RoomJoined,
        room=rooms,
        topic=st.text(),
        members=st.lists(
            st.builds(MemberInfo, name=names, online=st.booleans(), op=st.booleans())
        ).map(tuple),
        last_id=st.integers(0),
        unread=st.integers(0),
        moderated=st.booleans(),
        topic_locked=st.booleans(),
    ),
    st.builds(
        RoomList,
        rooms=st.lists(
            st.builds(
                RoomInfo,
                room=rooms,
                members=st.integers(0),
                online=st.integers(0),
                topic=st.text(),
                joined=st.booleans(),
                operators=st.lists(names, max_size=3).map(tuple),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(Error, code=st.text(), message=st.text(), until=st.none() | st.text()),
)


@given(server_events)
def test_server_events_round_trip_and_plain_lines_stay_one_line(event: ServerEvent) -> None:
    for lang in ("en", "pt-BR"):
        payload = Outgoing(event).payload("json", lang)
        assert payload is not None
        assert parse_server(payload) == event
        assert json.loads(payload) == to_wire(event, lang)
        line = render_plain(event, lang)
        if line is not None:
            assert "\n" not in line and "\r" not in line and "\x1b" not in line


def test_wire_shapes() -> None:
    assert to_wire(Edited(7, "novo", "2026-01-01T00:00:00.000Z", "ana", "#sala")) == {
        "type": "edited",
        "id": 7,
        "text": "novo",
        "edited_ts": "2026-01-01T00:00:00.000Z",
        "from": "ana",
        "room": "#sala",
    }
    assert to_wire(Deleted(7, "beto", to="ana")) == {
        "type": "deleted",
        "id": 7,
        "by": "beto",
        "to": "ana",
    }
    tombstone = Message(7, "", "", "2026-01-01T00:00:00.000Z", room="#sala", deleted=True)
    assert to_wire(tombstone) == {
        "type": "message",
        "id": 7,
        "ts": "2026-01-01T00:00:00.000Z",
        "deleted": True,
        "room": "#sala",
    }
    assert to_wire(RoomParted("#sala", "ana", "spam")) == {
        "type": "room",
        "event": "parted",
        "room": "#sala",
        "by": "ana",
        "reason": "spam",
    }
    assert to_wire(RoomParted("#sala")) == {"type": "room", "event": "parted", "room": "#sala"}
    assert to_wire(Error("muted", "x", until="2026-01-01T00:10:00.000Z"))["until"] == (
        "2026-01-01T00:10:00.000Z"
    )
    joined = RoomJoined(
        "#sala", "", (MemberInfo("ana", True, True), MemberInfo("beto", False)), 1, 0
    )
    assert to_wire(joined)["members"] == [
        {"name": "ana", "online": True, "op": True},
        {"name": "beto", "online": False},
    ]


def test_plain_lines() -> None:
    ts = "2026-01-01T00:00:00.000Z"
    assert render_plain(Edited(7, "novo", ts, "ana", "#geral", home=True)) == "ana: novo (edited)"
    assert render_plain(Edited(7, "novo", ts, "ana", "#sala"), "pt-BR") == (
        "[#sala] ana: novo (editada)"
    )
    assert render_plain(Message(7, "", "", ts, room="#sala", deleted=True)) is None
    assert render_plain(Deleted(7, "ana", "#sala")) == "* ana deleted a message in #sala"
    assert render_plain(Deleted(7, "ana", "#geral", home=True), "pt-BR") == (
        "* ana apagou uma mensagem"
    )
    assert render_plain(RoomParted("#sala", "ana", "spam")) == "* ana removed you from #sala: spam"
    assert render_plain(RoomModeChanged("#sala", True, False, "ana")) == (
        "* ana changed #sala: read-only (only operators speak)"
    )
    entry = AuditEntry("2026-01-01T10:20:30.000Z", "ana", "kick", "beto", "spam", "#sala")
    assert render_plain(AuditLog((entry,))) == (
        "* audit (1): 2026-01-01 10:20 ana: kick beto in #sala (spam)"
    )
    joined = RoomJoined("#sala", "", (MemberInfo("ana", True, True),), 1, 0, moderated=True)
    assert render_plain(joined) == (
        "* you are in #sala: 1 member, 1 online (read-only: only operators speak)"
    )


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/edit novo texto", EditHere("novo texto")),
        ("/editar novo", EditHere("novo")),
        ("/delete", DeleteHere()),
        ("/delete 42", DeleteHere(42)),
        ("/apagar 42", DeleteHere(42)),
        ("/kick beto", KickHere("beto")),
        ("/kick beto chega de spam", KickHere("beto", "chega de spam")),
        ("/mute beto 10m", MuteHere("beto", 600)),
        ("/silenciar beto 1h30m calma", MuteHere("beto", 5400, "calma")),
        ("/unmute beto", UnmuteHere("beto")),
        ("/ban beto", Ban("beto")),
        ("/ban beto 1d flood", Ban("beto", 86400, "flood")),
        ("/ban beto flood de novo", Ban("beto", None, "flood de novo")),
        ("/unban beto", Unban("beto")),
        ("/ban-ip 203.0.113.9/24", BanIp("203.0.113.0/24")),
        ("/banir-ip 203.0.113.9 2h bots", BanIp("203.0.113.9/32", 7200, "bots")),
        ("/unban-ip 203.0.113.0/24", UnbanIp("203.0.113.0/24")),
        ("/purge beto", Purge("beto")),
        ("/purge beto 1h", Purge("beto", seconds=3600)),
        ("/limpar beto 1h spam", Purge("beto", seconds=3600, reason="spam")),
        ("/op beto", OpHere("beto")),
        ("/deop beto", DeopHere("beto")),
        ("/mode +m", ModeHere(moderated=True)),
        ("/mode -m", ModeHere(moderated=False)),
        ("/mode +t", ModeHere(topic_locked=True)),
        ("/modo +mt", ModeHere(True, True)),
        ("/mode -m +t", ModeHere(False, True)),
        ("/audit", ReadAudit(20)),
        ("/auditoria 5", ReadAudit(5)),
    ],
)
def test_moderation_commands(line: str, command: object) -> None:
    assert parse_line(line) == command


@pytest.mark.parametrize(
    "line",
    [
        "/edit",
        "/delete abc",
        "/kick",
        "/mute beto",
        "/mute beto soon",
        "/unmute beto now",
        "/ban-ip nowhere",
        "/mode",
        "/mode m",
        "/mode +x",
        "/audit 0",
        "/op",
    ],
)
def test_bad_moderation_commands(line: str) -> None:
    with pytest.raises(ProtocolError):
        parse_line(line)


def test_room_commands_name_the_room_they_are_typed_in() -> None:
    assert EditHere("x").at("#sala") == Edit(None, "x", "#sala")
    assert DeleteHere(4).at("#sala") == Delete(4, "#sala")
    assert KickHere("beto", "r").at("#sala") == Kick("#sala", "beto", "r")
    assert MuteHere("beto", 60).at("#sala") == Mute("#sala", "beto", 60)
    assert ModeHere(True).at("#sala") == SetMode("#sala", True, None)


def test_usage_errors_are_translated() -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_line("/silenciar beto logo")
    assert render(raised.value.message, "pt-BR").startswith("logo não é uma duração")
