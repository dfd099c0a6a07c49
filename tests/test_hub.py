"""In-process tests of the hub, rooms and stores: fake connections, no sockets, no sleeps.

Every routing and permission rule of rooms is checked here in milliseconds;
the real-socket tests (test_rooms.py) prove the wiring.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from papo.directory import Session
from papo.hub import Hub
from papo.limits import AttemptLimiter
from papo.protocol import (
    Conversation,
    Hello,
    History,
    Join,
    ListRooms,
    Part,
    Read,
    Say,
    SetTopic,
)
from papo.redis_wait import NotReplicated
from papo.store import StoreError
from papo.store_records import Stored
from papo.store_sqlite import SqliteStore
from tests.fakes import FakeLink, connect, link, make_hub, send


def texts(session: Session) -> list[str]:
    return [e["text"] for e in link(session).of("message")]


async def say(hub: Hub, session: Session, text: str, **where: Any) -> dict[str, Any]:
    """Say ``text`` as a client does (through the transport's way in); its ack or error."""
    await send(hub, session, Say(text, **where))
    await hub.settle()
    sent = link(session).take()
    answers: list[dict[str, Any]] = [e for e in sent if e["type"] in ("ack", "error")]
    assert answers, sent
    return answers[-1]


async def do(hub: Hub, session: Session, event: Any) -> None:
    await hub.handle(session, event)
    await hub.settle()


def clear(*sessions: Session) -> None:
    """Forget what was sent so far (presence of others joining, welcomes)."""
    for session in sessions:
        link(session).take()


def errors(session: Session) -> list[str]:
    return [e["code"] for e in link(session).of("error")]


async def test_routing_matrix_4_users_2_sessions_3_rooms_2_direct() -> None:
    """For every event, exactly which of 8 sessions receive it."""
    hub = await make_hub()
    users = ("ana", "beto", "carla", "davi")
    s = {f"{u}{i}": await connect(hub, u) for u in users for i in (1, 2)}
    rooms = {"#a": ("ana", "beto"), "#b": ("beto", "carla", "davi"), "#c": ("ana", "davi")}
    for room, members in rooms.items():
        for member in members:
            await do(hub, s[f"{member}1"], Join(room))
    for session in s.values():
        link(session).take()

    def everyone_but(sender: str, allowed: set[str]) -> dict[str, bool]:
        return {k: k != sender and k[:-1] in allowed for k in s}

    cases: list[tuple[str, dict[str, Any], set[str]]] = [
        ("ana1", {}, set(users)),  # #geral
        ("beto2", {"room": "#a"}, {"ana", "beto"}),
        ("carla1", {"room": "#b"}, {"beto", "carla", "davi"}),
        ("davi2", {"room": "#c"}, {"ana", "davi"}),
        ("ana2", {"to": "carla"}, {"ana", "carla"}),
        ("davi1", {"to": "beto"}, {"davi", "beto"}),
    ]
    for n, (sender, where, allowed) in enumerate(cases):
        ack = await say(hub, s[sender], f"m{n}", **where)
        assert ack["type"] == "ack"
        got = {k: texts(v) == [f"m{n}"] for k, v in s.items()}
        assert got == everyone_but(sender, allowed), (sender, where)
        for k, v in s.items():  # and nothing else reached anyone
            assert link(v).take() == [], k


async def test_room_message_carries_room_and_direct_message_does_not() -> None:
    hub = await make_hub()
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, ana, Join("#sala"))
    await do(hub, beto, Join("#SALA"))
    link(ana).take()
    await say(hub, beto, "oi", room="#sala")
    assert link(ana).of("message")[0]["room"] == "#sala"  # as first written
    await say(hub, beto, "psiu", to="ana")
    message = link(ana).of("message")[0]
    assert message["to"] == "ana" and "room" not in message
    await say(hub, beto, "todos")
    assert link(ana).of("message")[0]["room"] == "#geral"


async def test_join_reaches_every_session_of_the_user_and_members_hear_of_it() -> None:
    hub = await make_hub()
    ana1, ana2 = await connect(hub, "ana"), await connect(hub, "ana")
    beto, carla = await connect(hub, "beto"), await connect(hub, "carla")
    await do(hub, beto, Join("#sala"))
    await say(hub, beto, "antes", room="#sala")
    clear(ana1, ana2, beto, carla)
    await do(hub, ana1, Join("#sala"))
    for session in (ana1, ana2):
        sent = link(session).take()
        assert sent[0]["type"] == "room" and sent[0]["event"] == "joined"
        assert [m["name"] for m in sent[0]["members"]] == ["ana", "beto"]
        assert [e["text"] for e in sent[1:]] == ["antes"]  # the last messages follow
    assert link(beto).take() == [
        {"type": "member", "event": "join", "room": "#sala", "name": "ana"}
    ]
    assert link(carla).take() == []
    # joining again: this session is answered, nobody else hears anything
    await do(hub, ana2, Join("#sala"))
    assert [e["type"] for e in link(ana2).take()] == ["room", "message"]
    assert link(ana1).take() == link(beto).take() == []


async def test_live_messages_during_a_join_follow_its_history_once_in_order() -> None:
    hub = await make_hub()
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, beto, Join("#sala"))
    clear(ana)
    await hub.handle(ana, Join("#sala"))  # its history is read in the background...
    await hub.handle(beto, Say("durante", room="#sala"))  # ...while this arrives live
    await hub.settle()
    sent = link(ana).take()
    assert sent[0]["event"] == "joined"
    assert [e["text"] for e in sent if e["type"] == "message"] == ["durante"]


async def test_part_and_its_refusals() -> None:
    hub = await make_hub()
    ana1, ana2, beto = (
        await connect(hub, "ana"),
        await connect(hub, "ana"),
        await connect(hub, "beto"),
    )
    await do(hub, ana1, Join("#sala"))
    await do(hub, beto, Join("#sala"))
    for session in (ana1, ana2, beto):
        link(session).take()
    await do(hub, ana2, Part("#sala"))
    for session in (ana1, ana2):
        assert link(session).take() == [{"type": "room", "event": "parted", "room": "#sala"}]
    assert link(beto).take() == [
        {"type": "member", "event": "part", "room": "#sala", "name": "ana"}
    ]
    await say(hub, beto, "ainda aí?", room="#sala")
    assert link(ana1).take() == link(ana2).take() == []
    await do(hub, ana1, Part("#sala"))
    await do(hub, ana1, Part("#nada"))
    await do(hub, ana1, Part("#geral"))
    assert errors(ana1) == ["not_member", "unknown_room", "cannot_part"]


async def test_member_and_non_member_permissions_both_ways() -> None:
    """Each room action: allowed for a member, refused for a non-member."""
    hub = await make_hub()
    member, outsider = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, member, Join("#sala"))
    await say(hub, member, "primeira", room="#sala")
    link(member).take()
    actions: list[Any] = [
        Say("oi", room="#sala"),
        SetTopic("#sala", "assunto"),
        History(Conversation(room="#sala")),
        Read(Conversation(room="#sala"), 1),
        Part("#sala"),
    ]
    for action in actions:
        await do(hub, outsider, action)
        assert errors(outsider) == ["not_member"], action
        await do(hub, member, action)
        assert errors(member) == [], action
    # an unknown room is named as such, for every action that needs the room
    for action in [
        Say("x", room="#nada"),
        SetTopic("#nada", "t"),
        History(Conversation(room="#nada")),
    ]:
        await do(hub, member, action)
        assert errors(member) == ["unknown_room"], action


async def test_topic_reaches_members_only() -> None:
    hub = await make_hub()
    ana, beto, carla = [await connect(hub, n) for n in ("ana", "beto", "carla")]
    for session in (ana, beto):
        await do(hub, session, Join("#sala"))
    for session in (ana, beto, carla):
        link(session).take()
    await do(hub, ana, SetTopic("#sala", "projeto x"))
    topic = {"type": "room", "event": "topic", "room": "#sala", "topic": "projeto x", "by": "ana"}
    assert link(ana).take() == [topic] and link(beto).take() == [topic]
    assert link(carla).take() == []


async def test_history_pages_back_to_the_first_message() -> None:
    hub = await make_hub()
    ana = await connect(hub, "ana")
    await do(hub, ana, Join("#sala"))
    for i in range(120):
        await say(hub, ana, f"m{i}", room="#sala")
        await say(hub, ana, f"geral{i}")  # other conversations interleave
    link(ana).take()
    seen: list[str] = []
    before = None
    while True:
        await do(hub, ana, History(Conversation(room="#sala"), before=before, limit=50))
        page = link(ana).of("history")[0]
        seen = [m["text"] for m in page["messages"]] + seen
        if not page["more"]:
            break
        before = page["messages"][0]["id"]
    assert seen == [f"m{i}" for i in range(120)]


async def test_read_marker_reaches_the_users_other_sessions_only_forward() -> None:
    hub = await make_hub()
    ana1, ana2, beto = (
        await connect(hub, "ana"),
        await connect(hub, "ana"),
        await connect(hub, "beto"),
    )
    for session in (ana1, beto):
        await do(hub, session, Join("#sala"))
    ids = [(await say(hub, beto, f"m{i}", room="#sala"))["id"] for i in range(3)]
    for session in (ana1, ana2, beto):
        link(session).take()
    await do(hub, ana1, Read(Conversation(room="#sala"), ids[1]))
    assert link(ana1).take() == []
    assert link(ana2).take() == [{"type": "read", "room": "#sala", "id": ids[1]}]
    assert link(beto).take() == []
    await do(hub, ana2, Read(Conversation(room="#sala"), ids[0]))  # backwards: nothing
    assert link(ana1).take() == []
    await do(hub, ana2, Read(Conversation(room="#sala"), 10**9))  # past the newest: capped
    assert link(ana1).take() == [{"type": "read", "room": "#sala", "id": ids[2]}]
    await do(hub, ana2, Read(Conversation(room="#sala"), ids[1]))
    # a new device sees one unread message in #sala
    ana3 = hub.attach(FakeLink())
    await do(hub, ana3, Hello("ana"))
    rooms = {r["room"]: r for r in link(ana3).of("welcome")[0]["rooms"]}
    assert rooms["#sala"]["unread"] == 0 and rooms["#sala"]["last_read"] == ids[2]


async def test_direct_conversation_has_history_read_and_unread() -> None:
    hub = await make_hub()
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    first = (await say(hub, ana, "oi beto", to="beto"))["id"]
    await say(hub, ana, "tudo bem?", to="BETO")
    link(beto).take()
    await do(hub, beto, History(Conversation(with_="ana")))
    page = link(beto).of("history")[0]
    assert page["with"] == "ana" and [m["text"] for m in page["messages"]] == [
        "oi beto",
        "tudo bem?",
    ]
    await do(hub, beto, Read(Conversation(with_="ana"), first))
    beto2 = hub.attach(FakeLink())
    await do(hub, beto2, Hello("beto"))
    assert link(beto2).of("welcome")[0]["direct"] == [
        {"with": "ana", "unread": 1, "last_read": first}
    ]
    await do(hub, beto, History(Conversation(with_="zeca")))
    assert errors(beto) == ["unknown_user"]


async def test_rooms_list_counts_members_online_and_joined() -> None:
    hub = await make_hub()
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, ana, Join("#sala"))
    await do(hub, ana, SetTopic("#sala", "t"))
    link(ana).take()
    await do(hub, beto, ListRooms())
    assert link(beto).of("rooms")[0]["rooms"] == [
        {"room": "#geral", "members": 2, "online": 2, "topic": "", "joined": True, "operators": []},
        {
            "room": "#sala",
            "members": 1,
            "online": 1,
            "topic": "t",
            "joined": False,
            "operators": ["ana"],  # its creator
        },
    ]


async def test_at_most_max_rooms_per_user() -> None:
    hub = await make_hub(max_rooms_per_user=3, room_creations=AttemptLimiter(100, 60))
    ana = await connect(hub, "ana")
    for name in ("#a", "#b", "#c"):
        await do(hub, ana, Join(name))
    assert errors(ana) == ["too_many_rooms"]  # #geral counts: #c was one too many
    await do(hub, ana, Part("#a"))
    await do(hub, ana, Join("#c"))
    assert errors(ana) == []


async def test_room_creation_is_rate_limited_per_user_with_a_fake_clock() -> None:
    clock = [0.0]
    limiter = AttemptLimiter(2, 60.0, clock=lambda: clock[0])
    hub = await make_hub(room_creations=limiter)
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, ana, Join("#a"))
    await do(hub, ana, Join("#b"))
    await do(hub, ana, Join("#c"))
    assert errors(ana) == ["rate_limited"]
    await do(hub, beto, Join("#c"))  # another user is not held back
    await do(hub, ana, Join("#c"))  # joining an existing room creates nothing
    assert errors(beto) == errors(ana) == []
    clock[0] += 61
    await do(hub, ana, Join("#d"))
    assert errors(ana) == []


async def test_a_join_flood_is_rate_limited_like_messages() -> None:
    hub = await make_hub(rate=1, burst=3)
    ana = await connect(hub, "ana")
    for _ in range(5):
        await do(hub, ana, Join("#geral"))
    assert errors(ana).count("rate_limited") == 2


async def test_fresh_join_gets_direct_messages_missed_under_many_room_messages(
    tmp_path: Path,
) -> None:
    hub = await make_hub(tmp_path)
    ana = await connect(hub, "ana")
    await say(hub, ana, "até já")
    hub.detach(ana)  # ana leaves: last_seen recorded
    await hub.settle()
    beto = await connect(hub, "beto")
    await say(hub, beto, "enquanto estavas fora", to="ana")
    for i in range(600):  # far more than one replay page of public messages
        await say(hub, beto, f"público {i}")
    ana = hub.attach(FakeLink())
    await do(hub, ana, Hello("ana"))
    got = texts(ana)
    assert got[0] == "enquanto estavas fora"
    assert got[1:] == [f"público {i}" for i in range(550, 600)]
    await hub.store.close()


async def test_resume_replays_only_the_users_rooms_and_directs_in_order() -> None:
    hub = await make_hub()
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, ana, Join("#sala"))
    await do(hub, beto, Join("#sala"))
    await do(hub, beto, Join("#outra"))
    last = (await say(hub, ana, "antes"))["id"]
    hub.detach(ana)
    expected = []
    for i in range(30):
        await say(hub, beto, f"sala{i}", room="#sala")
        await say(hub, beto, f"outra{i}", room="#outra")
        await say(hub, beto, f"dm{i}", to="ana")
        expected += [f"sala{i}", f"dm{i}"]
    await hub.settle()
    ana = hub.attach(FakeLink())
    await do(hub, ana, Hello("ana", resume_from=last))
    messages = link(ana).of("message")
    assert [m["text"] for m in messages] == expected
    assert [m["id"] for m in messages] == sorted(m["id"] for m in messages)


async def test_guest_memberships_end_with_its_session() -> None:
    hub = await make_hub()
    guest = hub.attach(FakeLink("plain"))
    await hub.presence.join_guest(guest)
    assert guest.user is not None
    name = guest.user.name
    await do(hub, guest, Join("#sala"))
    members = await hub.store.members("#sala")
    assert [n for _, n in members] == [name]
    hub.detach(guest)
    await hub.settle()
    assert await hub.store.members("#sala") == []


async def test_memberships_topics_and_markers_survive_a_restart(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path)
    ana = await connect(hub, "ana")
    await do(hub, ana, Join("#Ação"))
    await do(hub, ana, SetTopic("#ação", "tudo"))
    same = await say(hub, ana, "m", room="#acao")  # the same room: accents do not count
    assert same["type"] == "ack"
    msg = await say(hub, ana, "m", room="#AÇÃO")
    await do(hub, ana, Read(Conversation(room="#ação"), msg["id"]))
    await hub.store.close()
    hub = await make_hub(tmp_path)
    ana = hub.attach(FakeLink())
    await do(hub, ana, Hello("ana"))
    welcome = link(ana).of("welcome")[0]
    assert welcome["rooms"] == [
        {"room": "#geral", "topic": "", "unread": 0, "last_read": 0},
        {"room": "#Ação", "topic": "tudo", "unread": 0, "last_read": msg["id"]},
    ]
    await hub.store.close()


async def test_plain_join_makes_the_current_room_and_tags_lines() -> None:
    hub = await make_hub()
    ana = await connect(hub, "ana", mode="plain")
    beto = await connect(hub, "beto")
    await do(hub, beto, Join("#sala"))
    await do(hub, ana, Join("#sala"))
    assert ana.room == "#sala"
    link(ana).take()
    await say(hub, beto, "na sala", room="#sala")
    await say(hub, beto, "no geral")
    assert link(ana).take() == ["[#sala] beto: na sala", "beto: no geral"]
    await do(hub, ana, Part("#sala"))
    assert ana.room is None


@pytest.mark.parametrize("mode", ["json", "plain"])
async def test_bad_room_names_are_refused_clearly(mode: str) -> None:
    from papo.protocol import ProtocolError
    from papo.protocol_parse import check_room

    for bad in ("#", "#a b", "#" + "x" * 33, "#zero\u200bwidth"):
        with pytest.raises(ProtocolError) as caught:
            check_room(bad)
        assert caught.value.code == "bad_name"
        assert "room name" in str(caught.value.message)


# ---------------------------------------------------------------- found by review


async def test_plain_join_of_a_room_already_joined_makes_it_current() -> None:
    hub = await make_hub()
    web = await connect(hub, "ana")
    plain = await connect(hub, "ana", mode="plain")
    await do(hub, web, Join("#segredo"))
    await do(hub, web, Join("#outra"))
    await do(hub, plain, Join("#segredo"))  # already in, from the web page
    assert plain.room == "#segredo"
    await do(hub, plain, Join("#outra"))
    await do(hub, plain, Join("#segredo"))
    assert plain.room == "#segredo"


async def test_a_new_guest_never_inherits_an_earlier_guests_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = await make_hub()
    monkeypatch.setattr("papo.presence.random.randrange", lambda n: 1)  # always guest-0001
    first = hub.attach(FakeLink("plain"))
    await hub.presence.join_guest(first)
    assert first.user is not None and first.user.name == "guest-0001"
    ana = await connect(hub, "ana")
    await do(hub, first, Join("#bando"))
    await say(hub, ana, "o código é 4711", to="guest-0001")
    hub.detach(first)
    await hub.settle()
    second = hub.attach(FakeLink("plain"))
    await hub.presence.join_guest(second)
    await hub.settle()
    assert second.user is not None and second.user.name != "guest-0001"
    assert not any("4711" in line for line in link(second).take())
    assert "#bando" not in second.user.rooms


async def test_a_resuming_session_stops_getting_a_room_its_user_left_meanwhile() -> None:
    hub = await make_hub()
    ana1, beto = await connect(hub, "ana"), await connect(hub, "beto")
    for session in (ana1, beto):
        await do(hub, session, Join("#x"))
    start = (await say(hub, beto, "início"))["id"]
    for i in range(600):  # more than one replay chunk: the catch-up drains between chunks
        await say(hub, beto, f"b{i}")
    gate, waiting = asyncio.Event(), asyncio.Event()

    class SlowLink(FakeLink):
        async def drain(self) -> None:
            waiting.set()
            await gate.wait()

    ana2 = hub.attach(SlowLink())
    resuming = asyncio.create_task(hub.handle(ana2, Hello("ana", resume_from=start)))
    await waiting.wait()  # the first chunk is out: the catch-up waits in drain
    await do(hub, ana1, Part("#x"))
    await say(hub, beto, "depois da saída", room="#x")
    gate.set()
    await resuming
    await hub.settle()
    sent = link(ana2).take()
    assert not any(e.get("text") == "depois da saída" for e in sent)
    assert {"type": "room", "event": "parted", "room": "#x"} in sent


async def test_join_part_join_quickly_answers_once_in_order() -> None:
    hub = await make_hub()
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, beto, Join("#x"))
    await say(hub, beto, "antes", room="#x")
    clear(ana)
    await hub.handle(ana, Join("#x"))
    await hub.handle(ana, Part("#x"))
    await hub.handle(ana, Join("#x"))
    await hub.handle(beto, Say("durante", room="#x"))
    await hub.settle()
    kinds = [e.get("event") or e.get("text") for e in link(ana).take()]
    assert kinds == ["parted", "joined", "antes", "durante"]


async def test_a_topic_keeps_the_rooms_creator(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path)
    ana = await connect(hub, "ana")
    await do(hub, ana, Join("#sala"))
    await do(hub, ana, SetTopic("#sala", "novo"))
    room = await hub.store.get_room("#sala")
    assert room is not None and room.created_by == "ana" and room.created > 0
    await hub.store.close()


async def test_room_creation_is_limited_per_address_too() -> None:
    clock = [0.0]
    hub = await make_hub(room_creations=AttemptLimiter(2, 60.0, clock=lambda: clock[0]))
    names = [await connect(hub, f"nome{i}") for i in range(5)]  # one address, new names
    for i, session in enumerate(names):
        for j in range(2):
            await do(hub, session, Join(f"#r{i}-{j}"))
    refused = sum(errors(s).count("rate_limited") for s in names)
    assert refused == 2  # 10 tries, 8 allowed from one address (4 x 2)


async def test_plain_history_pages_back_from_what_was_shown() -> None:
    hub = await make_hub()
    ana = await connect(hub, "ana")
    for i in range(10):
        await say(hub, ana, f"g{i}")
    plain = hub.attach(FakeLink("plain"))
    await do(hub, plain, Hello("beto"))
    assert link(plain).take()[-1] == "ana: g9"  # the recent context
    await do(hub, plain, History(Conversation(room="#geral"), limit=3))
    assert "ana: g9" not in link(plain).take()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_write_not_confirmed_is_told_it_may_arrive_and_a_resend_is_stored_once(
    kind: str, tmp_path: Path
) -> None:
    """A store that wrote a message but could not confirm it (Redis replicas that did not
    confirm it in time: NotReplicated) delivers it all the same: its sender is told that
    it may still arrive, not that nothing was sent, and sending it again under its cid
    stores nothing twice (the earlier message is acknowledged; nobody gets it again).
    A failure that stored nothing says so. Each in the reader's language."""
    hub = await make_hub(tmp_path if kind == "sqlite" else None)
    ana = await connect(hub, "ana")
    beto = hub.attach(FakeLink(lang="pt-BR"))
    carla = hub.attach(FakeLink("plain"))
    await do(hub, beto, Hello("beto"))
    await do(hub, carla, Hello("carla"))
    clear(ana, beto, carla)
    append = hub.store.append
    failures: list[StoreError] = []

    async def unconfirmed(message: Stored, origin: int | None = None) -> tuple[Stored, bool]:
        if not failures:
            return await append(message, origin)
        failure = failures.pop(0)
        if isinstance(failure, NotReplicated):
            await append(message, origin)  # on the master, delivered: only unconfirmed
        raise failure

    hub.store.append = unconfirmed  # type: ignore[method-assign]
    hub._enqueue = None  # as with the Redis stores, where such failures come from: no enqueue
    failures.append(NotReplicated("0 of 1 replica(s) confirmed it within 2 s"))
    refused = await say(hub, ana, "oi", cid="c1")
    assert (refused["type"], refused["code"], refused["cid"]) == (
        "error",
        "store_unavailable",
        "c1",
    )
    assert refused["message"] == (
        "the server could not confirm this message in time; it may still arrive, "
        "and sending it again will not send it twice"
    )
    arrived = link(beto).of("message")
    assert [m["text"] for m in arrived] == ["oi"]  # it did arrive
    acked = await say(hub, ana, "oi", cid="c1")  # sent again, as the clients do
    assert (acked["type"], acked["id"], acked["cid"]) == ("ack", arrived[0]["id"], "c1")
    assert link(beto).of("message") == []  # not twice
    assert [m.text for m in hub.store.log.ring if m.sender_key == "ana"] == ["oi"]

    failures.append(NotReplicated("0 of 1 replica(s) confirmed it within 2 s"))
    answer = await say(hub, beto, "olá", cid="c2")
    assert answer["message"] == (
        "o servidor não conseguiu confirmar esta mensagem a tempo; ela ainda pode chegar, "
        "e enviá-la de novo não a envia duas vezes"
    )
    failures.append(NotReplicated("0 of 1 replica(s) confirmed it within 2 s"))
    await do(hub, carla, Say("sem cid"))  # plain text: no cid, a resend is a new message
    assert any("check before you send it again" in line for line in link(carla).take())
    assert [m["text"] for m in link(ana).of("message")] == ["olá", "sem cid"]  # they arrived
    failures.append(StoreError("Redis is not there"))
    nothing = await say(hub, ana, "tchau", cid="c3")
    assert nothing["message"] == "the server cannot store this now; nothing was sent, try again"
    await hub.store.close()


# ---------------------------------------------------------------- room messages without a task


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_room_message_is_queued_at_once_and_done_once_delivered_and_acked(
    store: str, tmp_path: Path
) -> None:
    hub = await make_hub(tmp_path if store == "sqlite" else None)
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, ana, Join("#sala"))
    await do(hub, beto, Join("#sala"))
    clear(ana, beto)
    received, stored = hub.stats.received, hub.stats.stored
    pending = hub.handle_now(ana, Say("oi", room="#sala", cid="c1"))
    assert isinstance(pending, asyncio.Future)  # no coroutine, no task
    assert hub.stats.received == received + 1
    await asyncio.wait((pending,))  # as the connection waits: a callback
    [ack] = link(ana).of("ack")  # sent before whoever waits on it hears it is done
    [message] = link(beto).of("message")
    assert ack["cid"] == "c1" and ack["id"] == message["id"] and message["text"] == "oi"
    assert hub.stats.stored == stored + 1
    await hub.store.close()


async def test_what_a_room_message_must_wait_for_takes_the_coroutine() -> None:
    hub = await make_hub()
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, ana, Join("#sala"))
    first = hub.handle_now(ana, Say("x", room="#sala", cid="c1"))
    assert isinstance(first, asyncio.Future)
    await asyncio.wait((first,))
    [ack] = link(ana).of("ack")
    cases: list[tuple[Session, Say]] = [
        (beto, Say("not a member", room="#sala")),  # which refusal: the store says
        (beto, Say("to ana", to="ana")),  # is the recipient online? the store says
        (ana, Say("x", room="#sala", cid="c1")),  # a retry: the earlier answer
    ]
    for session, event in cases:
        pending = hub.handle_now(session, event)
        assert pending is not None and not isinstance(pending, asyncio.Future), event
        await pending
    assert errors(beto) == ["not_member"]
    assert link(ana).of("ack") == [ack]  # the same id again, nothing stored twice
    not_joined = hub.attach(FakeLink())
    pending = hub.handle_now(not_joined, Say("who am I?"))
    assert pending is not None and not isinstance(pending, asyncio.Future)
    await pending
    assert errors(not_joined) == ["not_joined"]


async def test_a_refusal_at_once_is_sent_and_leaves_nothing_under_way() -> None:
    hub = await make_hub(rate=1, burst=1)
    ana = await connect(hub, "ana")
    assert hub.handle_now(ana, Say("um")) is not None
    assert hub.handle_now(ana, Say("dois")) is None  # the bucket is empty
    await hub.settle()
    assert errors(ana) == ["rate_limited"] and len(link(ana).of("ack")) == 0


async def test_a_room_message_the_store_could_not_keep_is_an_error_to_its_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = await make_hub(tmp_path)
    ana = await connect(hub, "ana")
    store = hub.store
    assert isinstance(store, SqliteStore)

    def disk_full(db: sqlite3.Connection, *, messages: list[Stored]) -> tuple[int, dict[str, int]]:
        full = sqlite3.OperationalError("database or disk is full")
        full.sqlite_errorcode = sqlite3.SQLITE_FULL  # as SQLite's own errors carry
        raise full

    monkeypatch.setattr(store, "_insert", disk_full)
    stored = hub.stats.stored
    await send(hub, ana, Say("perdida", cid="c9"))
    [error] = link(ana).of("error")
    assert error["code"] == "store_unavailable" and error["cid"] == "c9"
    assert hub.stats.stored == stored
    await store.close()
