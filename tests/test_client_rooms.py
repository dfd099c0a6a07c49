"""Rooms in the terminal client, driven in a real pseudo-terminal against a real server.

The other side of each conversation is a ``papo.v1`` test client (JsonClient).
pexpect blocks, so its waits run in a thread while the event loop keeps the
JSON clients' connections alive.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pexpect

from tests.helpers import JsonClient, ServerProcess
from tests.test_client import TIME, piped, spawn

PROMPT_GERAL = r"\[#geral\] >"
PROMPT_SALA = r"\[#sala\] >"


async def expect(child: pexpect.spawn, pattern: str, timeout: float = 10) -> str:
    """Wait (in a thread) until ``child`` prints ``pattern``; what it printed before."""
    await asyncio.to_thread(child.expect, pattern, timeout=timeout)
    before: str = child.before or ""
    return before


async def joined(children: list[pexpect.spawn], url: str, name: str, *args: str) -> pexpect.spawn:
    child = spawn("--url", url, "--name", name, *args, track=children)
    await expect(child, f"you are {name}")
    await expect(child, PROMPT_GERAL)
    return child


async def in_room(url: str, name: str, room: str = "#sala", **hello: Any) -> JsonClient:
    """A JSON client that has joined ``room`` (its backlog still queued)."""
    client = await JsonClient.open(url, name, **hello)
    await client.send({"type": "join", "room": room})
    event = await client.expect("room")
    assert event["event"] == "joined" and event["room"] == room, event
    return client


async def message(client: JsonClient, text: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next message with ``text`` that ``client`` receives (others are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        event = await client.expect("message", timeout=max(0.01, deadline - loop.time()))
        if event["text"] == text:
            return event


async def test_join_makes_the_room_current_and_lines_go_there(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    beto = await in_room(server.url, "beto")
    geral = await JsonClient.open(server.url, "carla")  # in #geral only
    ana = await joined(children, server.url, "ana")

    ana.sendline("/join #sala")
    shown = await expect(ana, r"you are in #sala: 2 members, 2 online")
    assert "error" not in shown
    await expect(ana, PROMPT_SALA)
    joined_event = await beto.expect("member")
    assert joined_event == {"type": "member", "event": "join", "room": "#sala", "name": "ana"}

    ana.sendline("oi sala")
    got = await message(beto, "oi sala")
    assert got["room"] == "#sala" and got["from"] == "ana"
    assert [e for e in await geral.quiet(0.5) if e.get("text") == "oi sala"] == []

    assert (await _say(beto, "oi ana", "#sala"))["type"] == "ack"
    await expect(ana, rf"\[{TIME}\] \[#sala\] beto: oi ana")
    for client in (beto, geral):
        await client.close()


async def test_other_rooms_are_tagged_counted_unread_and_cleared_by_other_devices(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    ana = await joined(children, server.url, "ana")
    ana_phone = await in_room(server.url, "ana")  # joins #sala for every session of ana
    await expect(ana, r"you are in #sala: 1 member, 1 online")
    beto = await in_room(server.url, "beto")
    await expect(ana, r"beto joined #sala")

    for text in ("um", "dois", "três"):
        assert (await _say(beto, text, "#sala"))["type"] == "ack"
    await expect(ana, rf"\[{TIME}\] \[#sala\] beto: um")
    await expect(ana, rf"\[{TIME}\] \[#sala\] beto: três")
    await _say(beto, "no geral")
    await expect(ana, rf"\[{TIME}\] beto: no geral")  # the default room: no tag

    ana.sendline("/rooms")
    await expect(ana, r"\* #geral — [^\r\n]*you are here")
    await expect(ana, r"\* #sala — 2 members, 2 online · 3 unread")

    last = (await message(ana_phone, "três"))["id"]
    await ana_phone.send({"type": "read", "room": "#sala", "id": last})
    await ana_phone.send({"type": "who"})  # answered after the read is handled (and forwarded)
    await ana_phone.expect("users")
    ana.sendline("/rooms")
    line = await _line(ana, r"\* #sala — ")
    assert "unread" not in line, line
    for client in (ana_phone, beto):
        await client.close()


async def test_part_goes_back_to_the_default_room(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    beto = await in_room(server.url, "beto")
    ana = await joined(children, server.url, "ana")
    ana.sendline("/join #sala")
    await expect(ana, PROMPT_SALA)
    assert (await beto.expect("member"))["event"] == "join"

    ana.sendline("/part")
    await expect(ana, r"you left #sala")
    await expect(ana, PROMPT_GERAL)
    parted = await beto.expect("member")
    assert parted == {"type": "member", "event": "part", "room": "#sala", "name": "ana"}

    ana.sendline("de volta ao geral")
    got = await message(beto, "de volta ao geral")
    assert got.get("room", "#geral") == "#geral"

    ana.sendline("/part")
    await expect(ana, r"#geral is everyone's room: it cannot be left")
    ana.sendline("/part #nenhuma")
    await expect(ana, r"error: ")
    await beto.close()


async def test_history_pages_back_through_the_current_room(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    beto = await in_room(server.url, "beto")
    for i in range(1, 61):
        assert (await _say(beto, f"antiga {i:02d}", "#sala"))["type"] == "ack"
    ana = await joined(children, server.url, "ana")
    ana.sendline("/join #sala")
    await expect(ana, r"you are in #sala")
    backlog = await expect(ana, r"beto: antiga 60")
    shown = [int(n) for n in re.findall(r"beto: antiga (\d\d)", backlog)] + [60]
    oldest = min(shown)
    assert shown == list(range(oldest, 61)), shown  # the room's latest messages, in order
    assert oldest > 5, "the join backlog should leave older messages for /history"

    ana.sendline("/history 5")
    await expect(ana, r"history of #sala: 5 messages; /history again for older ones")
    page = await expect(ana, r"end of history of #sala")
    got = [int(n) for n in re.findall(r"\[#sala\] beto: antiga (\d\d)", page)]
    assert got == list(range(oldest - 5, oldest)), got

    ana.sendline("/history 200")
    await expect(ana, rf"history of #sala: {oldest - 6} messages?; nothing older")
    page = await expect(ana, r"end of history of #sala")
    got = [int(n) for n in re.findall(r"\[#sala\] beto: antiga (\d\d)", page)]
    assert got == list(range(1, oldest - 5)), got

    ana.sendline("/history")
    await expect(ana, r"no older messages in #sala")
    await beto.close()


async def test_topic_and_member_lines(server: ServerProcess, children: list[pexpect.spawn]) -> None:
    beto = await in_room(server.url, "beto")
    ana = await joined(children, server.url, "ana")
    ana.sendline("/join #sala")
    await expect(ana, PROMPT_SALA)
    ana.sendline("/topic futebol de sábado")
    await expect(ana, r"ana set the topic of #sala: futebol de sábado")
    topic = await beto.expect("room")
    assert topic["event"] == "topic" and topic["topic"] == "futebol de sábado", topic
    assert topic["by"] == "ana"
    ana.sendline("/rooms")
    await expect(ana, r"\* #sala — 2 members, 2 online · topic: futebol de sábado · you are here")

    carla = await in_room(server.url, "carla")
    await expect(ana, r"\* carla joined #sala")
    await carla.send({"type": "part", "room": "#sala"})
    await expect(ana, r"\* carla left #sala")

    again = spawn("--url", server.url, "--name", "dora", track=children)
    await expect(again, "you are dora")
    again.sendline("/join #sala")
    await expect(again, r"you are in #sala \(topic: futebol de sábado\): 3 members, 3 online")
    for client in (beto, carla):
        await client.close()


async def test_reading_the_current_room_tells_the_other_devices(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    beto = await in_room(server.url, "beto")
    ana = await joined(children, server.url, "ana")
    ana.sendline("/join #sala")
    await expect(ana, PROMPT_SALA)
    ana_phone = await JsonClient.open(server.url, "ana")

    ack = await _say(beto, "leia isto", "#sala")
    await expect(ana, r"\[#sala\] beto: leia isto")
    marker = await ana_phone.expect("read")
    while marker["id"] < ack["id"]:  # an earlier marker may still be on its way
        marker = await ana_phone.expect("read")
    assert marker == {"type": "read", "room": "#sala", "id": ack["id"]}

    rooms_welcome = await JsonClient.open(server.url, "ana")  # a device that connects later
    sala = [r for r in rooms_welcome.welcome["rooms"] if r["room"] == "#sala"]
    assert sala and sala[0]["unread"] == 0 and sala[0]["last_read"] == ack["id"], sala
    for client in (beto, ana_phone, rooms_welcome):
        await client.close()


async def test_unread_while_away_comes_from_the_welcome(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    earlier = await in_room(server.url, "ana", password="s3gredo")  # a member, then away
    await earlier.close()
    beto = await in_room(server.url, "beto")
    for text in ("perdeu 1", "perdeu 2"):
        assert (await _say(beto, text, "#sala"))["type"] == "ack"

    ana = spawn("--url", server.url, "--name", "ana", "--password", "s3gredo", track=children)
    await expect(ana, "you are ana")
    await expect(ana, r"\* unread: #sala \(2\)")
    await expect(ana, r"\[#sala\] beto: perdeu 2")  # the recent messages, not counted twice
    ana.sendline("/rooms")
    await expect(ana, r"\* #sala — 2 members, 2 online · 2 unread")
    ana.sendline("/join #sala")  # already in: it becomes the current room, read
    await expect(ana, PROMPT_SALA)
    ana.sendline("/rooms")
    line = await _line(ana, r"\* #sala — ")
    assert "unread" not in line and "you are here" in line, line
    await beto.close()


async def test_piped_client_can_join_a_room(server: ServerProcess) -> None:
    listener = await in_room(server.url, "listener")
    lines = b"no geral\n/join #sala\nna sala\n/part\nde volta\n"
    code, out, err = await piped(server.url, "bot", lines)
    assert code == 0, err
    assert b"you are in #sala" in out and b"you left #sala" in out, out
    got: list[tuple[str, str | None]] = []
    while not got or got[-1][0] != "de volta":
        event = await listener.expect("message")
        if event["from"] == "bot":
            got.append((event["text"], event.get("room")))
    assert got == [("no geral", "#geral"), ("na sala", "#sala"), ("de volta", "#geral")]
    await listener.close()


async def test_reconnect_keeps_the_room_and_resends_to_it_once(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    ana = await joined(children, server.url, "ana", "--password", "s3gredo")
    ana.sendline("/join #sala")
    await expect(ana, PROMPT_SALA)

    server.kill()
    await expect(ana, "connection lost; reconnecting in")
    ana.sendline("escrito sem rede")  # typed while the server is down: kept in the outbox
    await asyncio.to_thread(server.restart)
    await expect(ana, "back online", timeout=20)

    beto = await in_room(server.url, "beto")
    await message(beto, "escrito sem rede")
    ana.sendline("depois da volta")  # still in #sala
    got = await message(beto, "depois da volta")
    assert got["room"] == "#sala"
    await beto.send({"type": "history", "room": "#sala"})
    page = await beto.expect("history")
    texts = [m["text"] for m in page["messages"]]
    assert texts.count("escrito sem rede") == 1, texts
    assert all(m.get("room") == "#sala" for m in page["messages"])
    await beto.close()


async def _say(client: JsonClient, text: str, room: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "say", "text": text}
    if room is not None:
        event["room"] = room
    await client.send(event)
    return await client.expect("ack", "error")


async def _line(child: pexpect.spawn, pattern: str) -> str:
    """The rest of the line that starts matching ``pattern``."""
    await expect(child, pattern)
    await expect(child, r"\r?\n")
    before: str = child.before or ""
    return before
