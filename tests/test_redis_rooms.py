"""Rooms across several instances, through a real Redis server.

Two (or three) real papo processes share one ``redis-server`` (see
:func:`tests.test_redis.pair`). Membership, topics and read markers live in
Redis and every change reaches every instance; each room's history is its
own stream, read only by the instances where one of its members has a session.
Nothing here sleeps to let things happen: it waits for the event it expects,
and a thing that must *not* arrive is checked against a later message that
must (delivery is in id order).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import StartServer
from tests.helpers import JsonClient, RedisServer, ServerProcess
from tests.test_redis import pair, redis_command

Event = dict[str, Any]


async def until(
    client: JsonClient, wanted: Callable[[Event], bool], timeout: float = 10.0
) -> list[Event]:
    """Every event up to and including the first one ``wanted`` accepts."""
    got: list[Event] = []
    deadline = time.monotonic() + timeout
    while True:
        event = await client.recv(max(0.01, deadline - time.monotonic()))
        got.append(event)
        if wanted(event):
            return got


def kind(type_: str, **fields: Any) -> Callable[[Event], bool]:
    return lambda e: e["type"] == type_ and all(e.get(k) == v for k, v in fields.items())


def text(value: str) -> Callable[[Event], bool]:
    return lambda e: e["type"] == "message" and e["text"] == value


def messages(events: list[Event]) -> list[Event]:
    return [e for e in events if e["type"] == "message"]


async def wait_logged(server: ServerProcess, line: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not server.logged(line):
        assert time.monotonic() < deadline, f"never logged {line!r}"
        await _tick()


async def _tick() -> None:
    await asyncio.sleep(0.05)  # polling a log with a deadline, not waiting for something to happen


def following(server: ServerProcess) -> str:
    """The last set of rooms the instance said it follows ('' before any change)."""
    lines = [line for line in server.log if "following " in line and " rooms: " in line]
    return lines[-1].rsplit(" rooms: ", 1)[1].strip() if lines else ""


async def until_following(server: ServerProcess, rooms: str, timeout: float = 10.0) -> None:
    """Wait until the instance's last word on what it follows is ``rooms``.

    The server logs it before it answers, but the test reads its log through
    a pipe and a thread: the line may reach the test after the answer does.
    """
    deadline = time.monotonic() + timeout
    while following(server) != rooms:
        assert time.monotonic() < deadline, f"follows {following(server)!r}, not {rooms!r}"
        await _tick()


async def say(
    client: JsonClient, words: str, room: str | None = None, to: str | None = None
) -> int:
    event: Event = {"type": "say", "text": words}
    if room is not None:
        event["room"] = room
    if to is not None:
        event["to"] = to
    await client.send(event)
    ack = await client.expect("ack", "error")
    assert ack["type"] == "ack", ack
    return int(ack["id"])


async def join(client: JsonClient, room: str) -> Event:
    await client.send({"type": "join", "room": room})
    return (await until(client, kind("room", event="joined", room=room)))[-1]


async def test_rooms_membership_topic_read_and_history_cross_instances(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server, "--log-level", "DEBUG")
    ana_a = await JsonClient.open(a.url, "ana")
    ana_b = await JsonClient.open(b.url, "ana")
    beto_b = await JsonClient.open(b.url, "beto")
    carla_a = await JsonClient.open(a.url, "carla")
    dora_b = await JsonClient.open(b.url, "dora")
    assert "#sala" not in following(b)

    # ana joins #sala from her device on A: her device on B is told too
    joined = await join(ana_a, "#sala")
    assert joined["members"] == [{"name": "ana", "online": True, "op": True}]  # its creator
    other = (await until(ana_b, kind("room", event="joined")))[-1]
    assert other["room"] == "#sala"
    await wait_logged(b, "rooms: #geral #sala")  # B reads #sala now: ana is there

    # beto joins on B: ana hears it on both instances; non-members do not
    await join(beto_b, "#sala")
    for device in (ana_a, ana_b):
        event = (await until(device, kind("member", room="#sala")))[-1]
        assert (event["event"], event["name"]) == ("join", "beto")

    # a room message from B reaches the members on A and B, nobody else
    first = await say(beto_b, "oi sala", room="#sala")
    for device in (ana_a, ana_b):
        got = (await until(device, text("oi sala")))[-1]
        assert (got["id"], got["room"]) == (first, "#sala")
    await say(beto_b, "sentinela", room="#geral")
    for outsider in (carla_a, dora_b):
        seen = await until(outsider, text("sentinela"))
        assert [m["text"] for m in messages(seen)] == ["sentinela"]
        assert not [e for e in seen if e.get("room") == "#sala"]
    for client in (ana_a, ana_b):
        await until(client, text("sentinela"))

    # the topic crosses: set on A, heard by beto on B and ana's other device
    await ana_a.send({"type": "topic", "room": "#sala", "text": "assuntos gerais"})
    for client in (beto_b, ana_b, ana_a):
        event = (await until(client, kind("room", event="topic")))[-1]
        assert (event["room"], event["topic"], event["by"]) == ("#sala", "assuntos gerais", "ana")

    # a read marker set on A reaches ana's session on B (not the one that sent it)
    await ana_a.send({"type": "read", "room": "#sala", "id": first})
    event = (await until(ana_b, kind("read")))[-1]
    assert (event.get("room"), event["id"]) == ("#sala", first)
    private = await say(beto_b, "em particular", to="ana")
    for device in (ana_a, ana_b):
        await until(device, text("em particular"))
    await ana_b.send({"type": "read", "with": "beto", "id": private})
    event = (await until(ana_a, kind("read")))[-1]
    assert (event.get("with"), event["id"]) == ("beto", private)

    # history: paged back to the room's first message, the same on either instance
    ids = [first] + [await say(beto_b, f"linha {i}", room="#sala") for i in range(24)]
    for device in (ana_a, ana_b):
        await until(device, text("linha 23"))
    for client in (ana_a, ana_b):
        paged: list[int] = []
        before: int | None = None
        while True:
            request: Event = {"type": "history", "room": "#sala", "limit": 10}
            if before is not None:
                request["before"] = before
            await client.send(request)
            page = await client.expect("history")
            assert page["room"] == "#sala"
            page_ids = [m["id"] for m in page["messages"]]
            paged = page_ids + paged
            if not page["more"]:
                break
            before = page_ids[0]
        assert paged == ids

    # each room's history is its own stream in Redis
    assert redis_command(redis_server, "XLEN", "{r:#sala}:messages").strip() == b":25"
    geral = redis_command(redis_server, "XRANGE", "{r:#geral}:messages", "-", "+")
    assert b"sentinela" in geral and b"oi sala" not in geral

    # a part crosses too; then ana leaves B altogether and B stops reading #sala
    await beto_b.send({"type": "part", "room": "#sala"})
    await until(beto_b, kind("room", event="parted", room="#sala"))
    for device in (ana_a, ana_b):
        event = (await until(device, kind("member", room="#sala")))[-1]
        assert (event["event"], event["name"]) == ("part", "beto")
    await ana_b.close()
    await until_following(b, "#geral")
    # ...while A, where ana still is, keeps delivering it
    await say(ana_a, "ainda aqui", room="#sala")
    await join(beto_b, "#sala")  # back in from B: B reads #sala again, history included
    await until_following(b, "#geral #sala")
    for client in (ana_a, beto_b, carla_a, dora_b):
        await client.close()


async def test_resume_on_another_instance_replays_only_the_users_conversations(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server, "--log-level", "DEBUG")
    ana = await JsonClient.open(a.url, "ana")
    beto = await JsonClient.open(a.url, "beto")
    carla = await JsonClient.open(b.url, "carla")
    await join(ana, "#sala")
    await join(beto, "#sala")
    await join(carla, "#secreta")
    last = await say(beto, "antes", room="#sala")
    await until(ana, text("antes"))
    token = ana.welcome["token"]
    await ana.close()

    # while ana is away: many messages in her room (more than B loads when it
    # starts reading #sala), some in #geral, direct messages to her, and
    # traffic she must not see (another room, others' direct messages)
    expected: list[int] = []
    for i in range(260):
        expected.append(await say(beto, f"sala {i}", room="#sala"))
        if i % 40 == 0:
            expected.append(await say(beto, f"geral {i}"))
            expected.append(await say(beto, f"para ana {i}", to="ana"))
            await say(carla, f"secreta {i}", room="#secreta")
            await say(carla, f"para beto {i}", to="beto")
    assert "#sala" not in following(b)  # nobody on B is in #sala

    ana_b = await JsonClient.open(b.url, "ana", token=token, resume_from=last)
    await until_following(b, "#geral #sala #secreta")
    end = await say(beto, "depois")  # live after the replay (or its last part)
    got = messages(await until(ana_b, text("depois"), timeout=20))
    assert [m["id"] for m in got] == [*expected, end]
    assert not [m for m in got if m.get("room") == "#secreta" or m.get("to") == "beto"]
    rooms = {r["room"] for r in ana_b.welcome["rooms"]}
    assert rooms == {"#geral", "#sala"}
    assert [d["with"] for d in ana_b.welcome["direct"]] == ["beto"]
    for client in (ana_b, beto, carla):
        await client.close()


async def test_an_instance_without_members_of_a_room_never_reads_it(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server, "--log-level", "DEBUG")
    ana = await JsonClient.open(a.url, "ana")
    beto = await JsonClient.open(b.url, "beto")
    await join(ana, "#sala")
    await say(ana, "só em A", room="#sala")
    await say(ana, "em todo lado")
    await until(beto, text("em todo lado"))
    await wait_logged(a, "rooms: #geral #sala")
    assert not b.logged("#sala")
    assert redis_command(redis_server, "EXISTS", "{r:#sala}:messages").strip() == b":1"
    # rooms lists it with its member and online counts, from either instance
    await beto.send({"type": "rooms"})
    listed = {r["room"]: r for r in (await beto.expect("rooms"))["rooms"]}
    assert (listed["#sala"]["members"], listed["#sala"]["online"]) == (1, 1)
    assert listed["#sala"]["joined"] is False
    for client in (ana, beto):
        await client.close()


async def test_retention_trims_each_conversation_and_a_resume_hears_of_the_gap(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server, "--retention", "5")
    beto = await JsonClient.open(a.url, "beto")
    ids = [await say(beto, f"m{i}") for i in range(8)]
    assert redis_command(redis_server, "XLEN", "{r:#geral}:messages").strip() == b":5"
    trims = redis_command(redis_server, "HGET", "{papo}:trims", "#geral")
    assert str(ids[3]).encode() in trims, trims
    ana = await JsonClient.open(b.url, "ana", resume_from=ids[0])
    gap = await ana.expect("gap")
    assert (gap["after"], gap["oldest"]) == (ids[0], ids[3])
    got = messages(await until(ana, text("m7")))
    assert [m["id"] for m in got] == ids[3:]
    for client in (ana, beto):
        await client.close()
