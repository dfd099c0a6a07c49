"""A commit's worth of messages is fanned out in runs: the same events, in the same order.

In process, with fake links. The store hands the hub what one commit (or one
read of the shared log) made visible; consecutive messages to the same room
go out as one :class:`~papo.outgoing.OutgoingRun`. Whatever the batch, every
session must see exactly what delivering the messages one by one shows it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from papo.directory import Session
from papo.hub import Hub
from papo.names import direct_key
from papo.outgoing import Outgoing, OutgoingRun
from papo.protocol import Join
from papo.store_records import Stored
from tests.fakes import CountingLink, FakeLink, connect, link, make_hub

TS = "2026-12-02T10:00:00.000Z"


async def chat() -> tuple[Hub, dict[str, list[Session]], str, str]:
    """ana (json) and beto (plain) in #sala; carla (plain, pt-BR) with two devices, home only."""
    hub = await make_hub()
    sessions = {
        "ana": [await connect(hub, "ana", "json")],
        "beto": [await connect(hub, "beto", "plain")],
        "carla": [await connect(hub, "carla", "plain", lang="pt-BR") for _ in range(2)],
    }
    for name in ("ana", "beto"):
        await hub.handle(sessions[name][0], Join("#sala"))
    await hub.settle()
    for group in sessions.values():
        for session in group:
            link(session).take()
    sala = next(key for key, room in hub.rooms.items() if room.name == "#sala")
    return hub, sessions, hub.home.key, sala


def message(
    number: int, where: str, sender: str, hub: Hub, sala: str, *, edit: bool = False
) -> Stored:
    if where == "direct":
        to = "beto" if sender != "beto" else "ana"
        return Stored(number, sender, sender, f"m{number}", TS, to, to, conv=direct_key(sender, to))
    room = hub.rooms[hub.home.key if where == "home" else sala]
    fields: dict[str, Any] = {"room": room.name, "conv": room.key, "home": room.home}
    if edit:
        fields.update(kind="edit", target=1, edited_ts=TS)
    return Stored(number, sender, sender, f"m{number}", TS, **fields)


batches = st.lists(
    st.tuples(
        st.sampled_from(["home", "sala", "direct"]),
        st.sampled_from(["ana", "beto", "carla"]),
        st.booleans(),  # from a session here (else from another instance)
        st.booleans(),  # an edit (its plain line depends on the language)
    ),
    min_size=1,
    max_size=8,
)


async def seen(spec: list[tuple[str, str, bool, bool]], *, one_by_one: bool) -> list[list[Any]]:
    hub, sessions, _, sala = await chat()
    batch = []
    for number, (where, drawn, local, edit) in enumerate(spec, 1):
        sender = "ana" if where == "sala" and drawn == "carla" else drawn  # carla is not in #sala
        stored = message(number, where, sender, hub, sala, edit=edit and where != "direct")
        batch.append((stored, sessions[sender][-1].id if local else None))
    if one_by_one:
        for item in batch:
            hub.store.on_message([item])
    else:
        hub.store.on_message(batch)
    return [link(s).take() for group in sessions.values() for s in group]


@settings(max_examples=60, deadline=None)
@given(batches)
def test_a_batch_shows_every_session_what_one_by_one_delivery_shows(
    spec: list[tuple[str, str, bool, bool]],
) -> None:
    assert asyncio.run(seen(spec, one_by_one=False)) == asyncio.run(seen(spec, one_by_one=True))


async def test_a_run_to_the_default_room_is_one_write_per_session_but_for_its_senders() -> None:
    hub = await make_hub()
    counted = [hub.attach(CountingLink()) for _ in range(5)]
    for session in counted:
        await hub.presence.join_guest(session)
    await hub.settle()
    runs: list[int] = []
    for session in counted:
        assert isinstance(session.link, CountingLink)
        session.link.writes = 0
        original = session.link.write_run

        def write_run(run: OutgoingRun, _original: Any = original) -> None:
            runs.append(len(run.outs))
            _original(run)

        session.link.write_run = write_run  # type: ignore[method-assign]
    home = hub.rooms[hub.home.key]
    batch = [
        (Stored(n, "x", "x", f"m{n}", TS, room=home.name, conv=home.key, home=True), origin)
        for n, origin in ((1, counted[0].id), (2, None), (3, None))
    ]
    hub.store.on_message(batch)
    # Four sessions took the whole run in one call; the sender got the other two.
    assert runs == [3, 3, 3, 3]
    assert [s.link.writes for s in counted] == [2, 3, 3, 3, 3]  # type: ignore[attr-defined]
    assert hub.stats.deliveries == 14


async def test_a_member_still_being_sent_the_history_gets_the_run_queued_after_it() -> None:
    hub, sessions, _, sala = await chat()
    beto = sessions["beto"][0].user
    assert beto is not None
    queued: list[tuple[Stored, int | None]] = []
    beto.pending[sala] = queued
    batch = [(message(n, "sala", "ana", hub, sala), None) for n in (1, 2)]
    hub.store.on_message(batch)
    assert queued == batch and link(sessions["beto"][0]).take() == []
    assert [e["id"] for e in link(sessions["ana"][0]).take()] == [1, 2]


def test_a_run_joins_each_mode_and_language_once() -> None:
    outs = [Outgoing(message_event(n)) for n in (1, 2)]
    run = OutgoingRun(outs)
    joined = run.joined("json")
    assert joined == b"".join(out.frame("json") or b"" for out in outs)
    assert run.joined("json") is joined  # built once


def message_event(number: int) -> Any:
    return Stored(number, "ana", "ana", f"m{number}", TS, room="#geral", conv="#geral").event()


def test_fake_links_take_a_run_as_its_events() -> None:
    fake = FakeLink("json")
    fake.write_run(OutgoingRun([Outgoing(message_event(1)), Outgoing(message_event(2))]))
    assert [e["id"] for e in fake.take()] == [1, 2]
