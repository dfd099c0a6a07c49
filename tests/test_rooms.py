"""Rooms and conversations over real sockets, against the real server process.

"Nothing else arrived" is checked without sleeping: after each event under
test a probe user says something in ``#geral``, which every session receives
with a larger id; ids are delivered in order, so whatever a session was going
to receive arrived before the probe.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import StartServer
from tests.helpers import JsonClient, PlainClient, ServerProcess

FLAGS = ("--presence-grace", "0.3", "--rate-limit", "0")


async def until_probe(client: JsonClient, probe: str) -> list[dict[str, Any]]:
    """Every event before the probe message ``probe`` (presence and member noise dropped)."""
    got: list[dict[str, Any]] = []
    while True:
        event = await client.recv()
        if event["type"] == "message" and event["text"] == probe:
            return got
        if event["type"] not in ("presence",):
            got.append(event)


async def joined(client: JsonClient, room: str) -> dict[str, Any]:
    await client.send({"type": "join", "room": room})
    while True:
        event = await client.expect("room", "error")
        if event["type"] == "error" or (event["event"] == "joined" and event["room"] == room):
            return event


async def test_routing_matrix_over_real_sockets(server: ServerProcess) -> None:
    names = ("ana", "beto", "carla", "davi")
    s = {f"{n}{i}": await JsonClient.open(server.url, n) for n in names for i in (1, 2)}
    probe = await JsonClient.open(server.url, "probe")
    rooms = {"#a": ("ana", "beto"), "#b": ("beto", "carla", "davi"), "#c": ("ana", "davi")}
    for room, members in rooms.items():
        for member in members:
            assert (await joined(s[f"{member}1"], room))["event"] == "joined"
    n = 0

    async def settle() -> None:
        nonlocal n
        n += 1
        await probe.say(f"probe{n}")
        for client in s.values():
            await until_probe(client, f"probe{n}")

    await settle()
    cases: list[tuple[str, dict[str, Any], set[str]]] = [
        ("ana1", {}, set(names)),
        ("beto2", {"room": "#a"}, {"ana", "beto"}),
        ("carla1", {"room": "#b"}, {"beto", "carla", "davi"}),
        ("davi2", {"room": "#c"}, {"ana", "davi"}),
        ("ana2", {"to": "carla"}, {"ana", "carla"}),
        ("davi1", {"to": "beto"}, {"davi", "beto"}),
    ]
    for i, (sender, where, allowed) in enumerate(cases):
        ack = await s[sender].say(f"m{i}", **where)
        assert ack["type"] == "ack", ack
        n += 1
        await probe.say(f"probe{n}")
        got = {k: [e["text"] for e in await until_probe(c, f"probe{n}")] for k, c in s.items()}
        want = {k: [f"m{i}"] if k != sender and k[:-1] in allowed else [] for k in s}
        assert got == want, (sender, where)
    for client in [*s.values(), probe]:
        await client.close()


async def test_errors_for_unknown_room_non_member_and_parting_geral(server: ServerProcess) -> None:
    ana = await JsonClient.open(server.url, "ana")
    beto = await JsonClient.open(server.url, "beto")
    await joined(ana, "#sala")
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"type": "say", "room": "#nada", "text": "x", "cid": "1"}, "unknown_room"),
        ({"type": "say", "room": "#sala", "text": "x", "cid": "2"}, "not_member"),
        ({"type": "part", "room": "#geral"}, "cannot_part"),
        ({"type": "part", "room": "#sala"}, "not_member"),
        ({"type": "history", "room": "#sala"}, "not_member"),
        ({"type": "say", "room": "#sala", "to": "ana", "text": "x"}, "bad_field"),
        ({"type": "join", "room": "#a b"}, "bad_name"),
        ({"type": "history", "room": "#sala", "limit": 500}, "bad_field"),
    ]
    for event, code in refusals:
        await beto.send(event)
        error = await beto.expect("error")
        assert error["code"] == code, (event, error)
    # and nothing of it disturbed anyone: ana still talks to beto in #geral
    await ana.say("ainda aqui")
    assert (await beto.expect("message"))["text"] == "ainda aqui"
    await ana.close()
    await beto.close()


async def test_membership_survives_sigkill_and_resume_spans_rooms(
    start_server: StartServer,
) -> None:
    server = start_server(*FLAGS)
    ana = await JsonClient.open(server.url, "ana", password="segredo")
    beto = await JsonClient.open(server.url, "beto")
    await joined(ana, "#sala")
    await joined(beto, "#sala")
    await joined(beto, "#outra")
    last = (await ana.say("antes"))["id"]
    token = ana.welcome["token"]
    await ana.close()
    expected = []
    for i in range(20):
        assert (await beto.say(f"geral{i}"))["type"] == "ack"
        assert (await _say_in(beto, "#sala", f"sala-r{i}"))["type"] == "ack"
        assert (await _say_in(beto, "#outra", f"outra{i}"))["type"] == "ack"
        assert (await beto.say(f"dm{i}", to="ana"))["type"] == "ack"
        expected += [f"geral{i}", f"sala-r{i}", f"dm{i}"]
    server.restart()  # SIGKILL, then start on the same data
    ana = await JsonClient.open(server.url, "ana", token=token, resume_from=last)
    rooms = [r["room"] for r in ana.welcome["rooms"]]
    assert rooms == ["#geral", "#sala"]
    got: list[str] = []
    while len(got) < len(expected):
        event = await ana.expect("message")
        got.append(event["text"])
    assert got == expected  # every message of ana's rooms and DMs, once, in order
    beto2 = await JsonClient.open(server.url, "beto")
    await beto2.send({"type": "rooms"})
    listed = {r["room"]: r for r in (await beto2.expect("rooms"))["rooms"]}
    assert listed["#sala"]["members"] == 2 and listed["#outra"]["joined"] is True
    for client in (ana, beto, beto2):
        await client.close()


async def _say_in(client: JsonClient, room: str, text: str) -> dict[str, Any]:
    await client.send({"type": "say", "room": room, "text": text})
    return await client.expect("ack", "error")


async def test_history_pages_back_to_the_first_message(server: ServerProcess) -> None:
    ana = await JsonClient.open(server.url, "ana")
    await joined(ana, "#longa")
    for i in range(130):
        assert (await _say_in(ana, "#longa", f"m{i}"))["type"] == "ack"
    seen: list[str] = []
    before = None
    pages = 0
    while True:
        request: dict[str, Any] = {"type": "history", "room": "#longa", "limit": 40}
        if before is not None:
            request["before"] = before
        await ana.send(request)
        page = await ana.expect("history")
        pages += 1
        seen = [m["text"] for m in page["messages"]] + seen
        if not page["more"]:
            break
        before = page["messages"][0]["id"]
    assert pages == 4
    assert seen == [f"m{i}" for i in range(130)]
    await ana.close()


async def test_read_marker_in_one_session_reaches_the_other(server: ServerProcess) -> None:
    laptop = await JsonClient.open(server.url, "ana")
    phone = await JsonClient.open(server.url, "ana")
    beto = await JsonClient.open(server.url, "beto")
    await joined(laptop, "#sala")
    await phone.expect("room")  # the phone joined too
    await joined(beto, "#sala")
    ack = await _say_in(beto, "#sala", "leia-me")
    await phone.send({"type": "read", "room": "#sala", "id": ack["id"]})
    assert await laptop.expect("read") == {"type": "read", "room": "#sala", "id": ack["id"]}
    tablet = await JsonClient.open(server.url, "ana")
    rooms = {r["room"]: r for r in tablet.welcome["rooms"]}
    assert rooms["#sala"] == {"room": "#sala", "topic": "", "unread": 0, "last_read": ack["id"]}
    for client in (laptop, phone, beto, tablet):
        await client.close()


async def test_plain_mode_join_current_room_and_tags(server: ServerProcess) -> None:
    ana = await JsonClient.open(server.url, "ana")
    await joined(ana, "#sala")
    plain = await PlainClient.open(server.url + "?name=zeca")
    await plain.until("you are zeca")
    await plain.send("/join #sala")
    assert "you are in #sala" in await plain.until("you are in")
    await plain.send("oi da sala")
    message = await ana.expect("message")
    assert (message["room"], message["text"]) == ("#sala", "oi da sala")
    await _say_in(ana, "#sala", "resposta")
    assert await plain.until("resposta") == "[#sala] ana: resposta"
    await ana.say("no geral")
    assert await plain.until("no geral") == "ana: no geral"
    await plain.send("/part")
    assert await plain.until("you left") == "* you left #sala"
    await plain.send("de volta ao geral")
    message = await ana.expect("message")
    assert (message["room"], message["text"]) == ("#geral", "de volta ao geral")
    await plain.send("/rooms")
    assert "#sala: 1 member, 1 online" in await plain.until("rooms (")
    await ana.close()
    await plain.close()


async def test_a_client_that_knows_nothing_of_rooms_sees_what_it_always_did(
    server: ServerProcess,
) -> None:
    old = await JsonClient.open(server.url, "velho")
    new = await JsonClient.open(server.url, "novo")
    await joined(new, "#sala")
    await _say_in(new, "#sala", "só na sala")
    await new.say("para todos")
    event = await old.expect("message")
    assert event["text"] == "para todos"
    await old.say("resposta")  # no room: #geral
    assert (await new.expect("message"))["room"] == "#geral"
    await asyncio.gather(old.close(), new.close())
