"""Property and example tests of the pure modules: protocol, names, commands, frames."""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unicodedata import normalize
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from papo.commands import Help, HistoryHere, Nick, PartRoom, Quit, TopicHere, parse_line
from papo.names import (
    InvalidNameError,
    clean_name,
    clean_room,
    direct_key,
    direct_other,
    mixed_scripts,
    name_key,
    room_key,
)
from papo.outgoing import Outgoing
from papo.protocol import (
    Ack,
    ChangePassword,
    ClientEvent,
    Conversation,
    DeviceInfo,
    DeviceList,
    Devices,
    DirectState,
    Error,
    Hello,
    History,
    HistoryPage,
    Join,
    ListRooms,
    Logout,
    Member,
    MemberInfo,
    Message,
    Notice,
    Part,
    Presence,
    ProtocolError,
    Read,
    ReadMarker,
    Register,
    Revoke,
    RoomInfo,
    RoomJoined,
    RoomList,
    RoomParted,
    RoomState,
    RoomTopic,
    Say,
    ServerEvent,
    SetTopic,
    UserInfo,
    Users,
    Welcome,
    Who,
    render_plain,
)
from papo.protocol_client import encode_client, parse_server
from papo.protocol_encode import to_wire, utc_timestamp
from papo.protocol_parse import MAX_ID, parse_client
from papo.store_records import Stored
from papo.wsframe import text_frame

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["say", "hello", "who", "register", "logout", "x", ""])},
    optional={
        "text": json_values,
        "name": json_values,
        "to": json_values,
        "cid": json_values,
        "password": json_values,
        "token": json_values,
        "resume_from": json_values,
        "from": json_values,
    },
)


def parses_or_refuses(raw: str | bytes) -> ClientEvent | None:
    try:
        return parse_client(raw)
    except ProtocolError as exc:
        assert exc.code and exc.message
        return None


@given(st.text())
def test_any_text_parses_or_raises_protocol_error(raw: str) -> None:
    parses_or_refuses(raw)


@given(st.binary())
def test_any_bytes_parse_or_raise_protocol_error(raw: bytes) -> None:
    parses_or_refuses(raw)


@given(json_values)
def test_any_json_value_parses_or_raises_protocol_error(value: Any) -> None:
    parses_or_refuses(json.dumps(value))


@given(event_like)
def test_event_shaped_objects_parse_or_raise_protocol_error(value: dict[str, Any]) -> None:
    event = parses_or_refuses(json.dumps(value))
    if isinstance(event, Say):
        assert event.text.strip() and len(event.text) <= 4096


def test_hostile_nesting_is_a_protocol_error() -> None:
    for raw in ("[" * 60_000, '{"a":' * 60_000):
        with pytest.raises(ProtocolError) as caught:
            parse_client(raw)
        assert caught.value.code == "bad_json"


def test_client_supplied_from_is_ignored() -> None:
    assert parse_client('{"type":"say","text":"hi","from":"admin"}') == Say("hi")


def one_script(text: str) -> str:
    """``text`` without the letters that would mix scripts (a name's letters are of one)."""
    kept = ""
    for char in text:
        if all(mixed_scripts(normalize(f, kept + char)) is None for f in ("NFC", "NFKC")):
            kept += char
    return kept


def valid(name: str) -> bool:
    try:
        return clean_name(name) == name
    except InvalidNameError:
        return False


names = (
    st.text(
        st.characters(categories=["L", "Nd"], include_characters="_-."), min_size=1, max_size=32
    )
    .map(one_script)
    .filter(valid)
)
rooms = names.map(lambda n: "#" + n)
conversations = st.builds(Conversation, room=rooms) | st.builds(Conversation, with_=names)
topics = st.text(max_size=300).map(lambda t: " ".join(t.split()))
client_events = st.one_of(
    st.builds(
        Say,
        text=st.text(min_size=1, max_size=50).filter(str.strip),
        to=st.none() | names,
        cid=st.none() | st.text(min_size=1, max_size=64),
    ),
    st.builds(
        Say,
        text=st.text(min_size=1, max_size=50).filter(str.strip),
        cid=st.none() | st.text(min_size=1, max_size=64),
        room=rooms,
    ),
    st.builds(Join, room=rooms),
    st.builds(Part, room=rooms),
    st.builds(
        History,
        conversation=conversations,
        before=st.none() | st.integers(0, MAX_ID),
        limit=st.integers(1, 200),
    ),
    st.builds(Read, conversation=conversations, id=st.integers(0, MAX_ID)),
    st.just(ListRooms()),
    st.builds(SetTopic, room=rooms, text=topics),
    st.builds(
        Hello,
        name=names,
        password=st.none() | st.text(max_size=20),
        token=st.none() | st.text(max_size=20),
        resume_from=st.none() | st.integers(0, MAX_ID),
    ),
    st.just(Who()),
    st.just(Logout()),
    st.just(Logout(all=True)),
    st.builds(Register, password=st.text(min_size=1, max_size=20)),
    st.just(Devices()),
    st.builds(Revoke, device=st.text(min_size=1, max_size=64)),
    st.builds(
        ChangePassword, old=st.text(min_size=1, max_size=20), new=st.text(min_size=1, max_size=20)
    ),
)


@given(client_events)
def test_client_events_round_trip(event: ClientEvent) -> None:
    assert parse_client(encode_client(event)) == event


messages = st.builds(
    Message, id=st.integers(0), sender=names, text=st.text(), ts=st.text(), to=st.none() | names
) | st.builds(Message, id=st.integers(0), sender=names, text=st.text(), ts=st.text(), room=rooms)
server_events = st.one_of(
    messages,
    st.builds(
        RoomJoined,
        room=rooms,
        topic=st.text(),
        members=st.lists(st.builds(MemberInfo, name=names, online=st.booleans())).map(tuple),
        last_id=st.integers(0),
        unread=st.integers(0),
        last_read=st.integers(0),
    ),
    st.builds(RoomParted, room=rooms),
    st.builds(RoomTopic, room=rooms, topic=st.text(), by=names),
    st.builds(Member, event=st.sampled_from(["join", "part"]), room=rooms, name=names),
    st.builds(
        HistoryPage,
        conversation=conversations,
        messages=st.lists(messages, max_size=3).map(tuple),
        more=st.booleans(),
    ),
    st.builds(ReadMarker, conversation=conversations, id=st.integers(0)),
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
            )
        ).map(tuple),
    ),
    st.builds(Presence, event=st.sampled_from(["join", "leave"]), name=names),
    st.builds(Ack, id=st.integers(0), cid=st.none() | st.text()),
    st.builds(
        DeviceList,
        devices=st.lists(
            st.builds(
                DeviceInfo,
                id=st.text(),
                first_seen=st.text(),
                last_seen=st.text(),
                address=st.text(),
                current=st.booleans(),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(Error, code=st.text(), message=st.text(), cid=st.none() | st.text()),
    st.builds(Notice, text=st.text()),
    st.builds(
        Welcome,
        name=names,
        token=st.none() | st.text(),
        last_id=st.integers(0),
        protected=st.booleans(),
        rooms=st.lists(
            st.builds(RoomState, room=rooms, topic=st.text(), unread=st.integers(0))
        ).map(tuple),
        direct=st.lists(st.builds(DirectState, with_=names, unread=st.integers(0))).map(tuple),
    ),
    st.builds(
        Users,
        users=st.lists(st.builds(UserInfo, name=names, sessions=st.integers(1, 9))).map(tuple),
    ),
)


@given(server_events)
def test_server_events_round_trip_and_plain_lines_stay_one_line(event: ServerEvent) -> None:
    out = Outgoing(event)
    payload = out.payload("json")
    assert payload is not None
    assert parse_server(payload) == event
    assert json.loads(payload) == to_wire(event)
    line = render_plain(event)
    if line is not None:
        assert "\n" not in line and "\r" not in line and "\x1b" not in line


@given(st.binary(max_size=70_000))
def test_prebuilt_frames_are_valid_websocket_frames(payload: bytes) -> None:
    reader = StreamReader()
    reader.feed_data(text_frame(payload))
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
        raise AssertionError("the frame was incomplete")
    except StopIteration as done:
        frame = done.value
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.data == payload


def test_outgoing_encodes_once_per_mode() -> None:
    out = Outgoing(Message(1, "ana", "oi", "2026-01-01T00:00:00.000Z"))
    assert out.frame("json") is out.frame("json")
    assert out.payload("plain") == b"ana: oi"
    assert Outgoing(Ack(1)).payload("plain") is None


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name", ["joão", "João", "maria_2", "a", "x" * 32, "Ωμέγα", "दिल", "li.na-b"]
)
def test_good_names(name: str) -> None:
    assert clean_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 33,
        "a b",
        "tab\there",
        "nul\x00",
        "bell\x07",
        "evil\u202eoverride",
        "zero\u200bwidth",
        "emoji😀",
        "semi;colon",
        "\u0301accent-first",
    ],
)
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        clean_name(name)


def test_names_compare_case_insensitively_after_normalisation() -> None:
    decomposed = "joa\u0303o"  # "joão" with a combining tilde
    assert clean_name(decomposed) == "joão"
    assert (
        name_key("João") == name_key("joão") == name_key("JOÃO") == name_key(clean_name(decomposed))
    )
    assert name_key("Straße") == name_key("STRASSE")
    assert name_key("ana") != name_key("ana_")


# ---------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("oi", Say("oi")),
        ("  oi  ", Say("  oi  ")),
        ("/msg joão oi tudo bem", Say("oi tudo bem", to="joão")),
        ("/who", Who()),
        ("/nick ana", Nick("ana")),
        ("/nick ana s3cret", Nick("ana", "s3cret")),
        ("/register s3cret", Register("s3cret")),
        ("/logout", Logout()),
        ("/help", Help()),
        ("sair", Quit()),
        ("/quit", Quit()),
        ("SAIR", Quit()),
        ("//slash", Say("/slash")),
        ("/join #sala", Join("#sala")),
        ("/join sala", Join("#sala")),
        ("/part", PartRoom()),
        ("/part #Sala", PartRoom("#Sala")),
        ("/rooms", ListRooms()),
        ("/topic  projeto   x ", TopicHere("projeto x")),
        ("/topic", TopicHere("")),
        ("/history", HistoryHere()),
        ("/history 5", HistoryHere(5)),
    ],
)
def test_commands(line: str, command: object) -> None:
    assert parse_line(line) == command


@pytest.mark.parametrize(
    "line",
    [
        "/msg",
        "/msg ana",
        "/msg ana   ",
        "/bogus",
        "/nick",
        "/register",
        "   ",
        "/join",
        "/join #a #b",
        "/join #a b",
        "/part #a #b",
        "/history x",
        "/history 0",
        "/history 201",
    ],
)
def test_bad_commands(line: str) -> None:
    with pytest.raises(ProtocolError):
        parse_line(line)


# ---------------------------------------------------------------- rooms


@given(names)
def test_a_room_is_a_name_behind_a_hash(name: str) -> None:
    assert clean_room(name) == clean_room("#" + name) == "#" + clean_name(name)
    assert room_key(clean_room(name)) == "#" + name_key(name)


@given(names, names)
def test_rooms_compare_like_names(a: str, b: str) -> None:
    assert (room_key("#" + a) == room_key("#" + b)) == (name_key(a) == name_key(b))


@given(names, names)
def test_direct_key_names_one_conversation_for_both_sides(a: str, b: str) -> None:
    ka, kb = name_key(a), name_key(b)
    assert direct_key(ka, kb) == direct_key(kb, ka)
    assert direct_other(direct_key(ka, kb), ka) == kb
    assert direct_key(ka, kb) != room_key("#" + a)  # never a room's key


def test_say_takes_a_room_or_a_recipient_not_both() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client('{"type":"say","text":"x","room":"#a","to":"b"}')
    assert caught.value.code == "bad_field"
    with pytest.raises(ProtocolError) as caught:
        parse_client('{"type":"history"}')
    assert caught.value.code == "missing_field"
    with pytest.raises(ProtocolError) as caught:
        parse_client('{"type":"read","room":"#a","with":"b","id":1}')
    assert caught.value.code == "bad_field"


def test_room_lines_in_plain_mode() -> None:
    assert render_plain(Message(1, "ana", "oi", "t", room="#sala")) == "[#sala] ana: oi"
    assert render_plain(Message(1, "ana", "oi", "t", room="#geral", home=True)) == "ana: oi"
    assert render_plain(Message(1, "ana", "oi", "t", to="beto")) == "ana → beto (private): oi"


def test_ids_beyond_what_a_store_can_hold_are_refused() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client('{"type":"history","room":"#geral","before":9223372036854775808}')
    assert caught.value.code == "bad_field"


@given(st.integers(min_value=0, max_value=4_102_444_800_000_000_000))
def test_timestamps_of_now_read_as_those_of_a_datetime(ns: int) -> None:
    # utc_timestamp() formats the current second once; it must read as strftime would.
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    with patch("papo.protocol_encode.time.time_ns", return_value=ns):
        now = utc_timestamp()
    assert now == utc_timestamp(moment)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", now)


def test_a_stored_message_under_its_id_keeps_every_other_field() -> None:
    # Stored.with_id writes its fields out: one added to Stored must be added there too.
    values: dict[str, Any] = {}
    for number, f in enumerate(fields(Stored)):
        values[f.name] = {"int": number, "bool": True}.get(str(f.type), f"v{number}")
    message = Stored(**values)
    assert message.with_id(12345) == replace(message, id=12345)


# Any code point, surrogates included (hypothesis leaves them out by default).
ANY_CHARACTER = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())


@given(st.text(ANY_CHARACTER, min_size=1, max_size=40), st.booleans())
def test_whatever_text_a_frame_escapes_what_is_accepted_can_be_written_as_utf8(
    text: str, as_bytes: bool
) -> None:
    """A lone surrogate ("\\ud800") is valid JSON but no character: it is refused, with
    the frame's other fields alike; everything accepted encodes as UTF-8 (a store
    that could not write it once stopped storing for everyone)."""
    frame = json.dumps({"type": "say", "text": text, "cid": "c1"})  # escapes everything
    raw: str | bytes = frame.encode() if as_bytes else frame
    decoded = json.loads(frame)["text"]  # (a high and a low surrogate in a row: one character)
    lone = any(0xD800 <= ord(c) <= 0xDFFF for c in decoded)
    try:
        event = parse_client(raw)
    except ProtocolError as exc:
        assert lone or exc.code in ("empty_text", "text_too_long")
        return
    assert not lone and isinstance(event, Say) and event.text == decoded
    event.text.encode()
