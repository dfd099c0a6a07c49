"""Per-conversation resume against real servers: one over SQLite, two through one Redis.

The in-process tests (test_resume.py) try every rule; these prove the wiring:
the ``resume`` field over a real socket, SQLite's and Redis's ``since``
(Redis: a room's stream with its rewritten entries, read when the instance's
ring does not hold the room from far enough back), and a resume on another
instance than the one the positions were seen on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import StartServer
from tests.helpers import JsonClient, RedisServer, ServerProcess

FLAGS = ("--presence-grace", "0.3", "--rate-limit", "0")
LIFECYCLE = ("message", "edited", "deleted")


async def joined(client: JsonClient, room: str) -> None:
    await client.send({"type": "join", "room": room})
    while True:
        event = await client.expect("room")
        if event["event"] == "joined" and event["room"] == room:
            return


async def collect(client: JsonClient, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The next ``count`` messages, edits and deletions (other events dropped)."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            event = await client.recv(timeout)
            if event["type"] in LIFECYCLE:
                got.append(event)
    return got


def conv_of(event: dict[str, Any], me: str = "ana") -> str:
    if "room" in event:
        return str(event["room"])
    return "@" + str(event["from"] if event.get("to") == me else event["to"])


def by_conv(events: list[dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for event in events:
        out.setdefault(conv_of(event), []).append((event["type"], event["id"]))
    return out


async def test_each_conversation_resumes_after_its_own_position_on_sqlite(
    server: ServerProcess,
) -> None:
    ana = await JsonClient.open(server.url, "ana", password="senha-da-ana")
    beto = await JsonClient.open(server.url, "beto")
    await joined(ana, "#sala")
    await joined(beto, "#sala")
    await joined(beto, "#outra")
    sala = [(await beto.say(f"sala{i}", room="#sala"))["id"] for i in range(3)]
    direct = [(await beto.say(f"dm{i}", to="ana"))["id"] for i in range(3)]
    await collect(ana, 6)
    token = ana.welcome["token"]
    await ana.close()
    geral = [(await beto.say(f"geral{i}"))["id"] for i in range(2)]
    sala += [(await beto.say("sala3", room="#sala"))["id"]]
    await beto.say("segredo", room="#outra")
    await beto.send({"type": "edit", "id": sala[2], "text": "sala2, editada"})
    await beto.expect("edited")
    resume = {"#SALA": sala[1], "@Beto": direct[2], "#outra": 0, "@zeca": 0}
    back = await JsonClient.open(
        server.url, "ana", token=token, resume=resume, resume_from=direct[2]
    )
    got = await collect(back, 5)
    assert by_conv(got) == {
        "#geral": [("message", geral[0]), ("message", geral[1])],  # after resume_from
        "#sala": [("message", sala[2]), ("message", sala[3]), ("edited", sala[2])],
    }
    assert got[[e["id"] for e in got].index(sala[2])]["text"] == "sala2, editada"
    live = await beto.say("ao vivo", to="ana")
    assert (await collect(back, 1))[0]["id"] == live["id"]  # nothing of #outra, no dm again
    for client in (back, beto):
        await client.close()


async def test_bad_resume_shapes_are_refused_over_the_wire(server: ServerProcess) -> None:
    client = await JsonClient.open(server.url)
    await client.send({"type": "hello", "name": "ana", "resume": ["#sala", 3]})
    error = await client.expect("error")
    assert error["code"] == "bad_field" and "resume" in error["message"]
    await client.send({"type": "hello", "name": "ana", "resume": {"#sala": 3}})
    assert (await client.expect("welcome", "error"))["type"] == "welcome"  # still usable
    await client.close()


async def test_resume_on_the_other_instance_reads_each_conversation_from_redis(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    args = ("--redis", redis_server.url, *FLAGS)
    a, b = start_server(*args), start_server(*args)
    ana = await JsonClient.open(a.url, "ana", password="senha-da-ana")
    carla = await JsonClient.open(a.url, "carla")
    beto = await JsonClient.open(b.url, "beto")
    for client, room in ((ana, "#grande"), (carla, "#grande"), (ana, "#sala"), (beto, "#sala")):
        await joined(client, room)
    before = (await beto.say("antes", room="#sala"))["id"]
    await collect(ana, 1)
    token = ana.welcome["token"]
    await ana.close()
    # #grande: more than instance b loads of a room it starts following, so b reads
    # its stream (and the rewritten entries beside it) from Redis
    grande = [(await carla.say(f"g{i}", room="#grande"))["id"] for i in range(260)]
    await carla.send({"type": "edit", "id": grande[0], "text": "g0, editada"})
    await carla.expect("edited")
    await carla.send({"type": "delete", "id": grande[1]})
    await carla.expect("deleted")
    sala = [(await beto.say(f"sala{i}", room="#sala"))["id"] for i in range(3)]
    direct = [(await beto.say(f"dm{i}", to="ana"))["id"] for i in range(2)]
    resume = {"#grande": 0, "#sala": sala[0], "@beto": 0, "#geral": before}
    back = await JsonClient.open(b.url, "ana", token=token, resume=resume)
    got = await collect(back, 260 + 2 + 2 + 2)
    convs = by_conv(got)
    assert convs["#grande"] == [
        *(("message", i) for i in grande),
        ("edited", grande[0]),
        ("deleted", grande[1]),
    ]
    grande_messages = [e for e in got if e.get("room") == "#grande" and e["type"] == "message"]
    assert grande_messages[0]["text"] == "g0, editada"
    assert grande_messages[1]["deleted"] is True and "text" not in grande_messages[1]
    assert convs["#sala"] == [("message", sala[1]), ("message", sala[2])]
    assert convs["@beto"] == [("message", i) for i in direct]
    assert "#geral" not in convs
    live = await carla.say("ao vivo", room="#grande")  # on a; ana is on b
    assert (await collect(back, 1))[0]["id"] == live["id"]
    for client in (back, carla, beto):
        await client.close()
