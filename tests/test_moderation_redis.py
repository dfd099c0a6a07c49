"""Moderation across instances through Redis: two real servers, one real redis-server.

A ban made on one instance closes the user's sessions on the other (it is
pushed there as an event, at once); a mute, an operator and a read-only room made on one hold on the
other; all of it survives a restart of both (it lives in Redis).
"""

from __future__ import annotations

from typing import Any

from tests.conftest import StartServer
from tests.helpers import JsonClient, RedisServer, closed_with
from tests.test_moderation_e2e import ADMIN, PASSWORD, joined, next_of
from tests.test_redis import pair


async def test_a_ban_on_one_instance_closes_sessions_on_all_within_a_second(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server, "--admin", ADMIN)
    root = await JsonClient.open(a.url, ADMIN, password=PASSWORD)
    carla_a = await JsonClient.open(a.url, "carla")
    carla_b = await JsonClient.open(b.url, "carla")
    await root.send({"type": "ban", "name": "carla", "reason": "spam"})
    # pushed to B at once (an event, not a poll); waited for with a deadline, not timed
    assert await closed_with(carla_b.ws, timeout=10) == 1008
    assert "spam" in (carla_b.ws.close_reason or "")
    assert await closed_with(carla_a.ws, timeout=5) == 1008
    again = await JsonClient.open(b.url)
    await again.send({"type": "hello", "name": "carla"})
    assert (await again.expect("error"))["code"] == "banned"
    await root.close()
    await again.close()


async def test_mutes_operators_and_modes_hold_on_every_instance(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server, "--admin", ADMIN)
    ana = await JsonClient.open(a.url, "ana")
    beto = await JsonClient.open(b.url, "beto")
    carla = await JsonClient.open(b.url, "carla")
    await joined(ana, "#sala")
    for client in (beto, carla):
        await joined(client, "#sala")
    await ana.send({"type": "mute", "room": "#sala", "name": "carla", "seconds": 600})
    told = await next_of(carla, "notice")  # on the other instance: told, and muted
    assert told["text"] == "ana muted you in #sala for 10m"

    async def refused(client: JsonClient, text: str) -> dict[str, Any]:
        return await client.say(text, room="#sala")

    assert (await refused(carla, "oi"))["code"] == "muted"
    await ana.send({"type": "op", "room": "#sala", "name": "beto"})
    assert (await next_of(carla, "notice"))["text"] == "ana made beto an operator of #sala"
    await beto.send({"type": "unmute", "room": "#sala", "name": "carla"})  # beto, on B, may now
    assert (await next_of(carla, "notice"))["text"] == "you may speak in #sala again"
    assert (await refused(carla, "oi de novo"))["type"] == "ack"
    await ana.send({"type": "mode", "room": "#sala", "moderated": True})
    mode = await next_of(carla, "room", event="mode")
    assert mode["moderated"] is True and mode["by"] == "ana"
    assert (await refused(carla, "e agora?"))["code"] == "forbidden"
    assert (await refused(beto, "operador fala"))["type"] == "ack"
    for client in (ana, beto, carla):
        await client.close()
    # kept in Redis: both instances restarted still know
    a.restart()
    b.restart()
    carla = await JsonClient.open(b.url, "carla")
    assert (await carla.say("depois", room="#sala"))["code"] == "forbidden"
    await carla.send({"type": "rooms"})
    rooms = {r["room"]: r["operators"] for r in (await carla.expect("rooms"))["rooms"]}
    assert rooms["#sala"] == ["ana", "beto"]
    await carla.close()


async def test_the_audit_log_is_shared(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server, "--admin", ADMIN)
    ana = await JsonClient.open(a.url, "ana")
    await JsonClient.open(a.url, "carla")
    await joined(ana, "#sala")
    await ana.send({"type": "mute", "room": "#sala", "name": "carla", "seconds": 60, "reason": "x"})
    await next_of(ana, "notice")
    root = await JsonClient.open(b.url, ADMIN, password=PASSWORD)
    await root.send({"type": "audit"})
    entries = (await root.expect("audit"))["entries"]
    assert [(e["by"], e["action"], e["target"]) for e in entries] == [("ana", "mute", "carla")]
    await ana.close()
    await root.close()
