"""The terminal client's pure parts, in-process: what it knows and when it marks read.

No sockets and no real sleeps: :class:`Conversations` is fed events,
:class:`ReadMarks` runs on a fake clock. Its lines are tests/test_client_format.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from papo.client_state import Change, Conversations, ReadDue, ReadMarks
from papo.events import (
    Conversation,
    DirectState,
    Error,
    HistoryPage,
    MemberInfo,
    Message,
    Read,
    ReadMarker,
    RoomJoined,
    RoomParted,
    RoomState,
    RoomTopic,
    Welcome,
)
from tests.fakes import FakeClock, settle

TS = "2024-05-01T12:34:56Z"


def say(id_: int, sender: str, room: str | None = "#geral", text: str = "oi") -> Message:
    return Message(id_, sender, text, TS, room=room)


def private(id_: int, sender: str, to: str, text: str = "oi") -> Message:
    return Message(id_, sender, text, TS, to=to)


def welcome(
    last_id: int = 10,
    rooms: tuple[RoomState, ...] = (RoomState("#geral"), RoomState("#sala", unread=2)),
    direct: tuple[DirectState, ...] = (),
    name: str = "ana",
) -> Welcome:
    return Welcome(name, "token", last_id, rooms=rooms, direct=direct)


def joined(room: str, last_id: int, unread: int = 0, last_read: int = 0) -> RoomJoined:
    members = (MemberInfo("ana", True), MemberInfo("beto", False))
    return RoomJoined(room, "", members, last_id, unread, last_read)


def ana(*events: object) -> Conversations:
    """ana's client after a welcome (10 messages so far, 2 unread in #sala) and ``events``."""
    state = Conversations()
    state.apply(welcome())
    for event in events:
        state.apply(event)  # type: ignore[arg-type]
    return state


# --------------------------------------------------------------------------
# Unread counts


def test_welcome_gives_the_rooms_their_unread_counts() -> None:
    state = Conversations()
    change = state.apply(
        welcome(
            rooms=(RoomState("#Geral", topic="bem-vindos"), RoomState("#sala", unread=2)),
            direct=(DirectState("beto", unread=3),),
        )
    )
    assert change == Change(moved=True)  # the prompt now spells it "#Geral"
    assert state.me == "ana"
    assert state.default == "#Geral" and state.current == "#Geral"
    assert state.unread("#sala") == 2 and state.unread("#SALA") == 2
    assert state.unread("#geral") == 0 and state.unread("#nowhere") == 0
    assert state.unread_rooms() == [("#sala", 2)]
    assert state.unread_direct() == [("beto", 3)]
    assert state.rooms["#geral"].topic == "bem-vindos"


def test_messages_elsewhere_count_mine_do_not_and_the_current_room_is_read() -> None:
    state = ana()
    assert state.apply(say(11, "beto", "#sala")) == Change()
    assert state.apply(say(12, "Ana", "#sala")) == Change()  # mine, whatever the case
    assert state.unread("#sala") == 3
    change = state.apply(say(13, "beto", "#geral"))
    assert change == Change(due=(ReadDue(Conversation(room="#geral"), "#geral", 13),))
    assert state.unread("#geral") == 0


def test_a_message_without_room_is_the_default_rooms() -> None:
    state = ana()
    (due,) = state.apply(say(11, "beto", room=None)).due
    assert due.conversation == Conversation(room="#geral") and due.message_id == 11
    assert state.rooms["#geral"].newest == 11


def test_backlog_and_replays_are_not_counted_twice() -> None:
    state = ana()
    for id_ in (8, 9, 10):  # already in the welcome's count
        state.apply(say(id_, "beto", "#sala"))
    assert state.unread("#sala") == 2
    for _ in range(2):  # a resume replays what this client saw before the drop
        state.apply(say(11, "beto", "#sala"))
        state.apply(say(12, "carla", "#sala"))
    assert state.unread("#sala") == 4


def test_a_reconnect_replaces_the_counts_with_the_servers() -> None:
    state = ana(say(11, "beto", "#sala"), say(12, "beto", "#sala"))
    assert state.unread("#sala") == 4
    state.apply(welcome(last_id=12, rooms=(RoomState("#geral"), RoomState("#sala", unread=1))))
    assert state.unread("#sala") == 1
    state.apply(say(12, "beto", "#sala"))  # replayed: in the new count already
    assert state.unread("#sala") == 1


def test_private_messages_count_per_person_and_replying_reads_them() -> None:
    state = ana(private(11, "Beto", "ana"), private(12, "ana", "beto"), private(13, "beto", "ana"))
    assert state.unread_direct() == [("Beto", 2)]
    assert state.replied("BETO") == ReadDue(Conversation(with_="Beto"), "@beto", 13)
    assert state.unread_direct() == []
    assert state.replied("beto") is None  # nothing new since
    assert state.replied("carla") is None  # no conversation with carla


def test_read_markers_from_other_devices_clear_counts() -> None:
    state = ana(say(11, "beto", "#sala"), say(12, "beto", "#sala"), private(13, "beto", "ana"))
    assert state.unread("#sala") == 4
    state.apply(ReadMarker(Conversation(room="#sala"), 11))  # the welcome's 2, and 11
    assert state.unread("#sala") == 1
    state.apply(ReadMarker(Conversation(room="#sala"), 5))  # older: no news
    assert state.unread("#sala") == 1
    state.apply(ReadMarker(Conversation(with_="BETO"), 13))
    assert state.unread_direct() == []
    state.apply(say(12, "beto", "#sala"))  # a replay of a read message stays read
    state.apply(ReadMarker(Conversation(room="#nowhere"), 99))  # not ours: ignored
    assert state.unread("#sala") == 1


def test_read_up_to_before_the_welcome_keeps_its_count() -> None:
    state = ana()
    state.apply(ReadMarker(Conversation(room="#sala"), 5))  # ids unknown: the count stays
    assert state.unread("#sala") == 2
    state.apply(ReadMarker(Conversation(room="#sala"), 10))
    assert state.unread("#sala") == 0


@given(
    base=st.integers(0, 5),
    last_id=st.integers(0, 30),
    ids=st.lists(st.integers(1, 60), max_size=40),
)
def test_unread_is_the_welcome_count_plus_each_newer_message_once(
    base: int, last_id: int, ids: list[int]
) -> None:
    state = Conversations()
    state.apply(welcome(last_id, rooms=(RoomState("#geral"), RoomState("#sala", unread=base))))
    for id_ in ids:
        state.apply(say(id_, "beto", "#sala"))
    assert state.unread("#sala") == base + len({i for i in ids if i > last_id})
    assert state.unread("#geral") == 0


# --------------------------------------------------------------------------
# The current room


def test_our_join_makes_the_room_current_and_its_backlog_read() -> None:
    state = ana()
    state.join("#Projeto")
    change = state.apply(joined("#projeto", last_id=20, unread=5))
    assert change == Change(moved=True)  # nothing seen there yet: no marker
    assert state.current == "#projeto" and state.is_current("#PROJETO")
    assert state.unread("#projeto") == 0
    assert state.apply(say(19, "beto", "#projeto")).due == (
        ReadDue(Conversation(room="#projeto"), "#projeto", 19),
    )
    assert state.apply(say(18, "beto", "#projeto")).due == ()  # older: read already
    assert state.oldest("#projeto") == 18


def test_a_join_from_another_device_does_not_move_us() -> None:
    state = ana()
    change = state.apply(joined("#outra", last_id=20, unread=3))
    assert change == Change()
    assert state.current == "#geral"
    state.apply(say(20, "beto", "#outra"))  # backlog, in the count already
    assert state.unread("#outra") == 3


def test_joining_a_room_again_after_leaving_it() -> None:
    state = ana()
    state.join("#sala")
    state.apply(joined("#sala", last_id=20))
    state.apply(say(20, "beto", "#sala"))
    state.apply(RoomParted("#sala"))
    assert state.current == "#geral"
    state.join("#sala")
    change = state.apply(joined("#sala", last_id=22, unread=2, last_read=20))
    assert change.moved and state.current == "#sala" and state.unread("#sala") == 0
    assert state.apply(say(20, "beto", "#sala")).due == ()  # read before we left
    assert state.apply(say(22, "beto", "#sala")).due == (ReadDue(SALA, "#sala", 22),)


def test_a_refused_join_is_forgotten() -> None:
    state = ana()
    state.join("#sala2")
    state.apply(Error("bad_name", "no"))
    assert not state.apply(joined("#sala2", last_id=20)).moved
    state.join("#sala3")
    state.apply(Error("rate_limited", "slow down", cid="c1"))  # a say's: not the join's
    assert state.apply(joined("#sala3", last_id=20)).moved


def test_parting_the_current_room_goes_back_to_the_default_and_reads_it() -> None:
    state = ana()
    state.apply(say(11, "beto", "#geral"))  # read at once: current
    state.join("#sala")
    state.apply(joined("#sala", last_id=11))
    state.apply(say(12, "beto", "#geral"))
    assert state.unread("#geral") == 1
    change = state.apply(RoomParted("#SALA"))
    assert change == Change(moved=True, due=(ReadDue(Conversation(room="#geral"), "#geral", 12),))
    assert state.current == "#geral" and "#sala" not in state.rooms
    assert state.unread("#geral") == 0


def test_parting_another_room_stays_put() -> None:
    state = ana()
    assert state.apply(RoomParted("#sala")) == Change()
    assert state.current == "#geral" and "#sala" not in state.rooms
    state.apply(RoomParted("#geral"))  # the default room is never forgotten
    assert "#geral" in state.rooms


def test_a_reconnect_keeps_the_current_room_or_falls_back() -> None:
    state = ana()
    state.join("#sala")
    state.apply(joined("#sala", last_id=10))
    assert state.apply(welcome(last_id=12)) == Change()
    assert state.current == "#sala"
    state.apply(say(12, "beto", "#geral"))
    change = state.apply(welcome(last_id=13, rooms=(RoomState("#geral", unread=1),)))
    assert change.moved and state.current == "#geral"
    assert change.due == (ReadDue(Conversation(room="#geral"), "#geral", 12),)


def test_topic_and_history_update_what_is_known() -> None:
    state = ana(RoomTopic("#SALA", "planos", "beto"), RoomTopic("#nowhere", "x", "beto"))
    assert state.rooms["#sala"].topic == "planos"
    page = HistoryPage(Conversation(room="#sala"), (say(3, "beto", "#sala"),), more=True)
    state.apply(page)
    assert state.oldest("#sala") == 3
    state.apply(HistoryPage(Conversation(room="#sala"), (), more=False))
    state.apply(HistoryPage(Conversation(with_="beto"), (private(1, "beto", "ana"),), False))
    assert state.oldest("#sala") == 3
    assert state.oldest("#nowhere") is None


# --------------------------------------------------------------------------
# Read markers: at most one per conversation per interval


class Sent:
    def __init__(self, clock: FakeClock, online: bool = True) -> None:
        self.clock = clock
        self.online = online
        self.reads: list[tuple[float, str | None, int]] = []

    async def __call__(self, read: Read) -> bool:
        if self.online:
            conversation = read.conversation
            self.reads.append((self.clock.now, conversation.room or conversation.with_, read.id))
        return self.online


SALA = Conversation(room="#sala")
BETO = Conversation(with_="beto")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_the_first_marker_goes_at_once_later_ones_wait_and_only_the_newest(
    clock: FakeClock,
) -> None:
    sent = Sent(clock)
    marks = ReadMarks(sent, 1.0, clock=clock, sleep=clock.sleep)
    marks.mark(SALA, "#sala", 5)
    await settle()
    assert sent.reads == [(0.0, "#sala", 5)]
    await clock.advance(0.25)
    marks.mark(SALA, "#sala", 6)
    marks.mark(SALA, "#sala", 8)
    marks.mark(SALA, "#sala", 7)  # older than what waits: dropped
    await settle()
    assert sent.reads == [(0.0, "#sala", 5)] and clock.sleeping == 1
    await clock.advance(0.5)
    assert len(sent.reads) == 1
    await clock.advance(0.25)
    assert sent.reads == [(0.0, "#sala", 5), (1.0, "#sala", 8)]
    await clock.advance(5.0)
    marks.mark(SALA, "#sala", 8)  # sent already
    marks.mark(SALA, "#sala", 3)
    await settle()
    assert len(sent.reads) == 2
    marks.mark(SALA, "#sala", 9)  # an interval has passed: at once
    await settle()
    assert sent.reads[-1] == (6.0, "#sala", 9) and clock.sleeping == 0


async def test_conversations_are_throttled_separately(clock: FakeClock) -> None:
    sent = Sent(clock)
    marks = ReadMarks(sent, 1.0, clock=clock, sleep=clock.sleep)
    marks.mark(SALA, "#sala", 5)
    marks.mark(BETO, "@beto", 6)
    await settle()
    assert sent.reads == [(0.0, "#sala", 5), (0.0, "beto", 6)]


async def test_a_marker_not_sent_offline_can_go_later(clock: FakeClock) -> None:
    sent = Sent(clock, online=False)
    marks = ReadMarks(sent, 1.0, clock=clock, sleep=clock.sleep)
    marks.mark(SALA, "#sala", 5)
    await settle()
    sent.online = True
    marks.mark(SALA, "#sala", 5)
    await settle()
    assert sent.reads == []  # one interval after the failed attempt
    await clock.advance(1.0)
    assert sent.reads == [(1.0, "#sala", 5)]


async def test_cancel_drops_what_waits(clock: FakeClock) -> None:
    sent = Sent(clock)
    marks = ReadMarks(sent, 1.0, clock=clock, sleep=clock.sleep)
    marks.mark(SALA, "#sala", 5)
    await settle()
    marks.mark(SALA, "#sala", 6)
    await settle()
    marks.cancel()
    await settle()
    await clock.advance(2.0)
    assert sent.reads == [(0.0, "#sala", 5)]
    marks.mark(SALA, "#sala", 7)  # a new flush starts after a cancel
    await settle()
    assert sent.reads[-1] == (2.0, "#sala", 7)
