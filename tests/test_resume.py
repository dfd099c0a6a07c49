"""Per-conversation resume (``hello.resume``), in process: fakes, no sockets, no sleeps.

Each rule of docs/protocol.md's ``resume`` is checked on the memory store and
on SQLite: each conversation after its own position, the fallbacks
(``resume_from``, then the recent context), names that are not the user's
ignored, bad shapes refused, a room the user is not in never replayed, a gap
per conversation, and no gap and no duplicate when messages arrive while the
replay waits on a slow client.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from papo.accounts import Accounts, Tokens
from papo.client_session import ChatSession, Joined
from papo.directory import Session
from papo.events import MAX_RESUME
from papo.hub import Hub
from papo.limits import AttemptLimiter
from papo.protocol import Delete, Edit, Hello, Join, Message, Part, ProtocolError, Say, Users
from papo.protocol_client import encode_client
from papo.protocol_parse import MAX_ID, parse_client
from papo.store_memory import MemoryStore
from papo.store_records import Stored
from tests.fakes import FakeLink, connect, link, make_hub, send


@pytest.fixture(params=["memory", "sqlite"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    """Every rule on both embedded stores."""
    return None if request.param == "memory" else tmp_path


async def say(hub: Hub, session: Session, text: str, **where: Any) -> int:
    await send(hub, session, Say(text, **where))
    await hub.settle()
    acks = [e for e in link(session).take() if e["type"] == "ack"]
    assert acks, text
    return int(acks[-1]["id"])


async def do(hub: Hub, session: Session, event: Any) -> None:
    await hub.handle(session, event)
    await hub.settle()


async def resume(hub: Hub, name: str, link_: FakeLink | None = None, **hello: Any) -> FakeLink:
    """A new session of ``name`` joining with ``hello``'s fields; its link."""
    if isinstance(hello.get("resume"), dict):
        hello["resume"] = tuple(hello["resume"].items())
    session = hub.attach(link_ or FakeLink())
    await do(hub, session, Hello(name, **hello))
    return link(session)


def replayed(sent: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The texts each conversation received, in the order received: ``#room`` or ``@peer``."""
    out: dict[str, list[str]] = {}
    for event in sent:
        if event["type"] == "message":
            conv = event["room"] if "room" in event else "@" + event["from"]
            out.setdefault(conv, []).append(event["text"])
    return out


async def world(hub: Hub) -> tuple[Session, dict[str, int]]:
    """ana in #geral and #sala (beto too), beto's #outra; 3 messages in each, 3 direct
    from beto to ana. Returns beto's session and the id of each conversation's first."""
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, ana, Join("#sala"))
    await do(hub, beto, Join("#sala"))
    await do(hub, beto, Join("#outra"))
    hub.detach(ana)
    await hub.settle()
    first: dict[str, int] = {}
    for i in range(3):
        for conv, where in (
            ("#geral", {}),
            ("#sala", {"room": "#sala"}),
            ("#outra", {"room": "#outra"}),
            ("@beto", {"to": "ana"}),
        ):
            message_id = await say(hub, beto, f"{conv}{i}", **where)
            first.setdefault(conv, message_id)
    return beto, first


class GatedLink(FakeLink):
    """A link whose first ``drain`` holds the replay until ``gate`` is set
    (``waiting`` says the replay got there)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.waiting = asyncio.Event(), asyncio.Event()

    async def drain(self) -> None:
        self.waiting.set()
        await self.gate.wait()


async def test_each_conversation_is_replayed_after_its_own_position(where: Path | None) -> None:
    hub = await make_hub(where)
    _, first = await world(hub)
    got = await resume(
        hub, "ana", resume={"#SALA": first["#sala"] + 4, "@Beto": first["@beto"], "#geral": 0}
    )
    assert replayed(got.take()) == {
        "#geral": ["#geral0", "#geral1", "#geral2"],  # all of it
        "#sala": ["#sala2"],  # after the second (names fold: #SALA is #sala)
        "@beto": ["@beto1", "@beto2"],  # after the first
    }
    await hub.store.close()


async def test_unnamed_conversations_fall_back_to_resume_from_then_the_recent_context(
    where: Path | None,
) -> None:
    hub = await make_hub(where)
    _, first = await world(hub)
    got = await resume(hub, "ana", resume={"#sala": first["#sala"] + 4}, resume_from=first["#sala"])
    assert replayed(got.take()) == {
        "#geral": ["#geral1", "#geral2"],  # after resume_from (#geral0 came before it)
        "#sala": ["#sala2"],
        "@beto": ["@beto0", "@beto1", "@beto2"],
    }
    carla = await connect(hub, "carla")
    for i in range(60):  # more than the recent context of one conversation
        await say(hub, carla, f"g{i}")
    got = await resume(hub, "ana", resume={"#sala": first["#sala"]})  # no resume_from
    by_conv = replayed(got.take())
    assert by_conv["#sala"] == ["#sala1", "#sala2"]
    assert by_conv["#geral"] == [f"g{i}" for i in range(10, 60)]  # its last 50
    assert by_conv["@beto"] == ["@beto0", "@beto1", "@beto2"]
    await hub.store.close()


async def test_names_that_are_not_the_users_conversations_are_ignored_and_never_read(
    where: Path | None,
) -> None:
    hub = await make_hub(where)
    await world(hub)
    resume_at = {"#outra": 0, "#nada": 0, "@ninguém": 0, "@beto": 0, "#sala": 0}
    resume_at |= {"#geral": 10**9, "@carla": 3, "#a b c": 1}  # not even a name: ignored
    got = await resume(hub, "ana", resume=resume_at, resume_from=10**9)
    sent = got.take()
    by_conv = replayed(sent)
    assert "#outra" not in by_conv  # beto's room: never replayed, even when named
    assert set(by_conv) == {"#sala", "@beto"}
    assert [e["code"] for e in sent if e["type"] == "error"] == ["bad_resume"]
    await hub.store.close()


async def test_a_direct_conversation_of_others_is_not_replayed_when_named() -> None:
    hub = await make_hub()
    beto, carla = await connect(hub, "beto"), await connect(hub, "carla")
    await say(hub, beto, "segredo", to="carla")
    await say(hub, carla, "resposta", to="beto")
    got = await resume(hub, "ana", resume={"@beto": 0, "@carla": 0, "@ana": 0})
    assert not any("segredo" in json.dumps(e) or "resposta" in json.dumps(e) for e in got.take())


async def test_each_conversation_arrives_in_id_order_with_its_edits() -> None:
    hub = await make_hub()
    _, first = await world(hub)
    beto = next(s for s in hub.pool.values() if s.user is not None and s.user.key == "beto")
    await do(hub, beto, Edit(first["#sala"] + 4, "editado"))  # #sala1
    await do(hub, beto, Delete(first["@beto"]))
    got = await resume(hub, "ana", resume={"#sala": first["#sala"], "@beto": first["@beto"] - 1})
    sent = got.take()
    sala = [e for e in sent if e.get("room") == "#sala"]
    assert [e["type"] for e in sala] == ["message", "message", "edited"]
    assert sala[-1]["text"] == "editado"
    direct = [e for e in sent if e.get("to") == "ana" and e["type"] != "edited"]
    assert direct[0] == {"type": "message", "id": first["@beto"], "ts": direct[0]["ts"],
                         "deleted": True, "to": "ana"}  # fmt: skip
    assert direct[-1]["type"] == "deleted"


async def test_a_gap_names_its_conversation() -> None:
    store = MemoryStore(retention=10)  # keeps 10 entries per conversation
    await store.open()
    accounts = Accounts(store, Tokens(await store.secret(), 3600), AttemptLimiter(5, 60))
    hub = Hub(store, accounts, rate=0, presence_grace=0)
    await hub.moderation.open()
    ana, beto = await connect(hub, "ana"), await connect(hub, "beto")
    await do(hub, ana, Join("#sala"))
    await do(hub, beto, Join("#sala"))
    hub.detach(ana)
    await hub.settle()
    for i in range(30):
        await say(hub, beto, f"s{i}", room="#sala")
    await say(hub, beto, "psiu", to="ana")
    got = await resume(hub, "ana", resume={"#sala": 0, "@beto": 0, "#geral": 0})
    gaps = got.of("gap")
    assert len(gaps) == 1 and gaps[0]["room"] == "#sala" and gaps[0]["after"] == 0
    assert gaps[0]["oldest"] == store.log.trims["#sala"]


async def test_no_gap_and_no_duplicate_when_messages_arrive_during_the_replay(
    where: Path | None,
) -> None:
    hub = await make_hub(where)
    ana = await connect(hub, "ana")
    beto, carla = await connect(hub, "beto"), await connect(hub, "carla")
    for session in (ana, beto):
        await do(hub, session, Join("#sala"))
    hub.detach(ana)
    await hub.settle()
    start = await say(hub, beto, "início")
    for i in range(700):  # more than one replay chunk: the replay waits on the client
        await say(hub, beto, f"s{i}", room="#sala")
        if i % 7 == 0:
            await say(hub, carla, f"d{i}", to="ana")
    slow = GatedLink()
    gate, waiting = slow.gate, slow.waiting
    session = hub.attach(slow)
    resuming = asyncio.create_task(
        hub.handle(
            session,
            Hello(
                "ana", resume=tuple({"#sala": start, "@carla": start}.items()), resume_from=start
            ),
        )
    )
    await waiting.wait()
    during = []
    for i in range(40):  # while the replay waits: every conversation moves on
        during.append(await say(hub, beto, f"durante-s{i}", room="#sala"))
        during.append(await say(hub, carla, f"durante-d{i}", to="ana"))
        during.append(await say(hub, beto, f"durante-g{i}"))
        during.append(await say(hub, await connect(hub, f"novo{i % 3}"), f"novo{i}", to="ana"))
    gate.set()
    await resuming
    await hub.settle()
    after = [await say(hub, beto, "depois", room="#sala"), await say(hub, carla, "d", to="ana")]
    ids = [e["id"] for e in slow.take() if e["type"] == "message"]
    assert len(ids) == len(set(ids)), "a duplicate"
    expected = await visible_to_ana(hub, start)
    assert sorted(ids) == expected
    assert set(during) | set(after) <= set(ids)
    await hub.store.close()


async def visible_to_ana(hub: Hub, after: int) -> list[int]:
    """Every stored id after ``after`` in ana's conversations (from the store itself)."""
    state = await hub.store.user_state("ana", "ana", hub.home)
    convs = {c.conv for c in state.rooms + state.direct}
    ids: list[int] = []
    for conv in convs:
        ids += [m.id for m in await hub.store.since(conv, after, 10**6) if not m.kind]
    return sorted(ids)


async def test_conversations_not_in_the_ring_come_from_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("papo.store_memory.RING_SIZE", 30)  # a ring smaller than the replay
    hub = await make_hub()
    _, first = await world(hub)
    carla = await connect(hub, "carla")
    for i in range(100):
        await say(hub, carla, f"g{i}")
    got = await resume(hub, "ana", resume={"#sala": 0, "@beto": first["@beto"]}, resume_from=0)
    by_conv = replayed(got.take())
    assert by_conv["#sala"] == ["#sala0", "#sala1", "#sala2"]
    assert by_conv["@beto"] == ["@beto1", "@beto2"]
    assert by_conv["#geral"] == [f"#geral{i}" for i in range(3)] + [f"g{i}" for i in range(100)]


async def test_what_arrives_while_the_store_is_read_is_replayed_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One conversation comes from the ring, the next from the store: a message of the
    first that arrives while the store is read must not fall between replay and live."""
    monkeypatch.setattr("papo.store_memory.RING_SIZE", 30)
    hub = await make_hub()
    await world(hub)
    carla = await connect(hub, "carla")
    ids = [await say(hub, carla, f"g{i}") for i in range(40)]  # #sala leaves the ring
    gate, reading = asyncio.Event(), asyncio.Event()
    since = hub.store.since

    async def slow_since(conv: str, after: int, limit: int) -> list[Stored]:
        reading.set()
        await gate.wait()
        return await since(conv, after, limit)

    monkeypatch.setattr(hub.store, "since", slow_since)
    session = hub.attach(FakeLink())
    hello = Hello("ana", resume=(("#geral", ids[20]), ("#sala", 0), ("@beto", 0)))
    task = asyncio.create_task(hub.handle(session, hello))
    await reading.wait()  # #geral came from the ring; #sala is being read
    during = await say(hub, carla, "durante")
    gate.set()
    await task
    await hub.settle()
    after = await say(hub, carla, "depois")
    got = [e for e in link(session).take() if e["type"] == "message"]
    geral = [e["id"] for e in got if e.get("room") == "#geral"]
    assert geral == [*ids[21:], during, after]
    assert [e["text"] for e in got if e.get("room") == "#sala"] == ["#sala0", "#sala1", "#sala2"]


async def test_a_direct_conversation_opened_during_the_replay_is_delivered() -> None:
    hub = await make_hub()
    ana = await connect(hub, "ana")
    beto = await connect(hub, "beto")
    hub.detach(ana)
    await hub.settle()
    for i in range(600):
        await say(hub, beto, f"g{i}")
    slow = GatedLink()
    gate, waiting = slow.gate, slow.waiting
    session = hub.attach(slow)
    resuming = asyncio.create_task(
        hub.handle(session, Hello("ana", resume=tuple({"#geral": 0}.items())))
    )
    await waiting.wait()
    opened = await say(hub, await connect(hub, "zeca"), "primeira vez", to="ana")
    gate.set()
    await resuming
    await hub.settle()
    assert [e["id"] for e in slow.of("message") if e.get("to") == "ana"] == [opened]


async def test_a_room_parted_during_the_replay_stops_being_replayed() -> None:
    hub = await make_hub()
    ana1, beto = await connect(hub, "ana"), await connect(hub, "beto")
    for session in (ana1, beto):
        await do(hub, session, Join("#x"))
    start = await say(hub, beto, "início")
    for i in range(600):
        await say(hub, beto, f"g{i}")
    slow = GatedLink()
    gate, waiting = slow.gate, slow.waiting
    ana2 = hub.attach(slow)
    task = asyncio.create_task(
        hub.handle(ana2, Hello("ana", resume=tuple({"#x": start, "#geral": 0}.items())))
    )
    await waiting.wait()
    await do(hub, ana1, Part("#x"))
    await say(hub, beto, "depois da saída", room="#x")
    gate.set()
    await task
    await hub.settle()
    sent = slow.take()
    assert not any(e.get("text") == "depois da saída" for e in sent)
    assert {"type": "room", "event": "parted", "room": "#x"} in sent


# ---------------------------------------------------------------- the wire


def hello_with(resume: object) -> str:
    return json.dumps({"type": "hello", "name": "ana", "resume": resume})


@pytest.mark.parametrize(
    "bad",
    [
        [],
        "#sala",
        17,
        {"#sala": "12"},
        {"#sala": -1},
        {"#sala": True},
        {"#sala": 1.5},
        {"#sala": MAX_ID + 1},
        {"sala": 1},
        {"#": 1},
        {"@": 1},
        {"#" + "x" * 200: 1},
        {f"#s{i}": i for i in range(MAX_RESUME + 1)},
    ],
)
def test_bad_shapes_are_refused_with_bad_field(bad: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client(hello_with(bad))
    assert caught.value.code == "bad_field"
    assert "resume" in str(caught.value.message)


def test_the_largest_resume_is_accepted() -> None:
    resume = {f"#s{i}": i for i in range(MAX_RESUME)}
    event = parse_client(hello_with(resume))
    assert isinstance(event, Hello) and event.resume is not None
    assert dict(event.resume) == resume


positions = st.dictionaries(
    st.text(min_size=1, max_size=30).flatmap(lambda n: st.sampled_from(["#" + n, "@" + n])),
    st.integers(0, MAX_ID),
    max_size=20,
)


@given(positions, st.none() | st.integers(0, MAX_ID))
def test_a_resume_round_trips(resume: dict[str, int], resume_from: int | None) -> None:
    hello = Hello("ana", resume_from=resume_from, resume=tuple(resume.items()))
    assert parse_client(encode_client(hello)) == hello


@given(st.dictionaries(st.text(max_size=5), st.none() | st.integers() | st.text(), max_size=5))
def test_any_resume_parses_or_is_refused_with_bad_field(resume: dict[str, Any]) -> None:
    try:
        event = parse_client(hello_with(resume))
    except ProtocolError as exc:
        assert exc.code == "bad_field"
        return
    assert isinstance(event, Hello) and event.resume is not None
    assert all(name[0] in "#@" and 0 <= p <= MAX_ID for name, p in event.resume)


# ---------------------------------------------------------------- the terminal client's side


def test_the_client_keeps_one_position_per_conversation_and_resumes_with_all() -> None:
    session = ChatSession("ws://localhost:1")
    session.joined = Joined("Ana", "token", 0)
    session.positions.listed([("#quieta", "#Quieta")], 5)  # listed by a welcome as of 5
    for event in (
        Message(10, "beto", "a", "t", room="#Sala"),
        Message(11, "beto", "b", "t", to="Ana"),
        Message(12, "Ana", "c", "t", to="Carla"),
        Message(13, "beto", "d", "t", room="#geral"),
        Message(14, "", "", "t", to="Ana", deleted=True),  # from whom: not said
    ):
        assert session._settle(event)
    hello = session._resuming("Ana", "token")
    assert dict(hello.resume or ()) == {
        "#Sala": 10, "@beto": 11, "@Carla": 12, "#geral": 13, "#Quieta": 5,
    }  # fmt: skip
    # not known to be live (this may be a replay a drop cuts short): the floor stays
    assert hello.resume_from == 0
    assert session._settle(Users(()))  # someone's `/who`: shown, and not taken as proof
    assert session._resuming("Ana", "token").resume_from == 0
    session._marker = True
    assert not session._settle(Users(()))  # ours: swallowed, and the replay is over
    assert session._resuming("Ana", "token").resume_from == 14
    assert session._settle(Message(15, "beto", "e", "t", room="#geral"))  # live: follows
    assert session._resuming("Ana", "token").resume_from == 15
    # after a reconnect the server replays conversation by conversation: an older id
    # in one conversation after a newer one in another is new; at or below its own
    # conversation's position it is a duplicate; a conversation without one: resume_from
    session.positions.proven = False
    session.resumed, session.positions.resumed_from = True, 15
    replay = [
        (Message(15, "beto", "e", "t", room="#geral"), False),
        (Message(20, "beto", "e", "t", room="#geral"), True),
        (Message(16, "beto", "f", "t", room="#sala"), True),
        (Message(10, "beto", "a", "t", room="#sala"), False),
        (Message(11, "beto", "b", "t", to="Ana"), False),
        (Message(17, "beto", "g", "t", to="Ana"), True),
        (Message(14, "zeca", "h", "t", to="Ana"), False),  # no position: resume_from
        (Message(18, "zeca", "i", "t", to="Ana"), True),
    ]
    assert [session._settle(event) for event, _ in replay] == [fresh for _, fresh in replay]
    assert session._resuming("Ana", "token").resume_from == 15  # the replay is not over


def test_a_conversation_the_client_never_heard_of_has_no_duplicates() -> None:
    """Listed by a reconnect's welcome, never seen: each of its messages is new, even
    below resume_from (a Redis Cluster's ids increase per conversation only), and its
    position is then its own newest message, not the stand-in resume_from."""
    session = ChatSession("ws://localhost:1")
    session.joined = Joined("Ana", "token", 0)
    session.positions.listed([("#sala", "#sala")], 5)
    assert session._settle(Message(40, "beto", "a", "t", room="#sala"))
    session.resumed, session.positions.resumed_from = True, 40
    session.positions.listed([("#sala", "#sala"), ("@zeca", "@zeca")], 40)  # zeca: new
    replay = [
        (Message(40, "beto", "a", "t", room="#sala"), False),
        (Message(31, "zeca", "b", "t", to="Ana"), True),  # below resume_from, yet new
        (Message(35, "zeca", "c", "t", to="Ana"), True),
        (Message(35, "zeca", "c", "t", to="Ana"), False),  # now at its own position
    ]
    assert [session._settle(event) for event, _ in replay] == [fresh for _, fresh in replay]
    assert dict(session._resuming("Ana", "token").resume or ()) == {"#sala": 40, "@zeca": 35}
