"""Edits, deletions and purges with ``--redis``: two real instances, one real redis-server.

Edits and deletions reach the sessions on the other instance, a fresh join
and a history page on either show the latest text and tombstones, a resume
on the other instance replays them in order, and after a purge the text is
in neither Redis's dataset nor the append-only files in its data directory
(read raw, after the rewrite the store asks for).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.conftest import StartServer
from tests.helpers import JsonClient, RedisServer, closed_with
from tests.test_moderation_e2e import ADMIN, PASSWORD, edit_delete_then_resume, joined, next_of
from tests.test_redis import pair, redis_command


async def history(client: JsonClient, room: str) -> list[dict[str, Any]]:
    await client.send({"type": "history", "room": room})
    return list((await client.expect("history"))["messages"])


async def test_edit_and_delete_across_instances_and_in_history(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server)
    ana = await JsonClient.open(a.url, "ana")
    beto = await JsonClient.open(b.url, "beto")
    await joined(ana, "#sala")
    await joined(beto, "#sala")
    first = await ana.say("primeira versao", room="#sala")
    gone = await ana.say("SEGREDO-APAGADO", room="#sala")
    last = await ana.say("a última", room="#sala")
    await ana.send({"type": "edit", "id": first["id"], "text": "primeira versão"})
    for client in (ana, beto):
        edited = await next_of(client, "edited", id=first["id"])
        assert edited["text"] == "primeira versão" and edited["room"] == "#sala"
    await beto.send({"type": "edit", "id": first["id"], "text": "não é dele"})
    assert (await beto.expect("error"))["code"] == "forbidden"
    await ana.send({"type": "delete", "id": gone["id"]})
    for client in (ana, beto):
        assert (await next_of(client, "deleted", id=gone["id"]))["by"] == "ana"
    # fresh sessions on both instances, and history pages of them: as it is now
    for server, name in ((a, "carla"), (b, "davi")):
        fresh = await JsonClient.open(server.url, name)
        await joined(fresh, "#sala")
        page = await history(fresh, "#sala")
        assert [(m["id"], m.get("text"), m.get("deleted", False)) for m in page] == [
            (first["id"], "primeira versão", False),
            (gone["id"], None, True),
            (last["id"], "a última", False),
        ]
        assert page[0]["edited_ts"]
        assert "SEGREDO" not in repr(page) and "versao" not in repr(page)
        await fresh.close()
    # a page that ends before the edit entries still counts only messages
    await ana.send({"type": "history", "room": "#sala", "before": last["id"], "limit": 1})
    reply = await ana.expect("history")
    assert [m["id"] for m in reply["messages"]] == [gone["id"]] and reply["more"] is True
    # the recent context a fresh session on B gets comes from B's ring, which
    # B's reader rewrote when it read the entries made on A
    old = await ana.say("geral velho")
    secret = await ana.say("GERAL-SEGREDO")
    await ana.send({"type": "edit", "id": old["id"], "text": "geral novo"})
    await ana.send({"type": "delete", "id": secret["id"]})
    await next_of(beto, "deleted", id=secret["id"])
    fresh = await JsonClient.open(b.url, "eva")
    await ana.say("marcador")
    context: list[dict[str, Any]] = []
    while not context or context[-1].get("text") != "marcador":
        context.append(await fresh.expect("message"))
    shown = {m["id"]: m for m in context}
    assert shown[old["id"]]["text"] == "geral novo" and shown[old["id"]]["edited_ts"]
    assert shown[secret["id"]]["deleted"] is True
    assert "GERAL-SEGREDO" not in repr(context)
    for client in (ana, beto, fresh):
        await client.close()


async def test_resume_on_the_other_instance_across_an_edit_and_a_delete(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server)
    ana = await JsonClient.open(a.url, "ana", password="senha-da-ana")
    beto = await JsonClient.open(a.url, "beto")
    await joined(ana, "#sala")
    await joined(beto, "#sala")
    last = (await beto.say("antes", room="#sala"))["id"]
    await ana.expect("message")
    token = ana.welcome["token"]
    await ana.close()
    # in a room nobody on B is in: B reads it from Redis when ana comes back there
    await edit_delete_then_resume(beto, b.url, token, last, room="#sala")
    await beto.close()


def redis_keys(redis: RedisServer) -> list[str]:
    reply = redis_command(redis, "KEYS", "*").decode().split("\r\n")
    return [line for line in reply if line.startswith("{")]


def redis_value(redis: RedisServer, key: str) -> bytes:
    """What a key holds, read the way papo reads it (DUMP would show a stream's packed
    nodes, in which Redis keeps XDELed entries until the node goes)."""
    kind = redis_command(redis, "TYPE", key).strip().decode("ascii").lstrip("+")
    words = {
        "stream": ("XRANGE", key, "-", "+"),
        "zset": ("ZRANGE", key, "0", "-1"),
        "hash": ("HGETALL", key),
        "set": ("SMEMBERS", key),
        "list": ("LRANGE", key, "0", "-1"),
    }.get(kind, ("GET", key))
    return redis_command(redis, *words)


def redis_files(directory: Path) -> dict[str, bytes]:
    """Every file Redis keeps in its data directory (the multi-part AOF of Redis 7 too)."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in directory.rglob("*")
        if path.is_file() and path.name != "redis.log"
    }


async def test_purge_removes_the_text_from_redis_and_its_append_only_files(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server, "--admin", ADMIN)
    root = await JsonClient.open(a.url, ADMIN, password=PASSWORD)
    spammer = await JsonClient.open(b.url, "spammer")
    beto = await JsonClient.open(a.url, "beto")
    await joined(spammer, "#sala")
    ids = []
    for i in range(20):
        ids.append((await spammer.say(f"COMPRE-JA-{i:03d}"))["id"])
        ids.append((await spammer.say(f"COMPRE-JA-sala-{i:03d}", room="#sala"))["id"])
    dm = await spammer.say("COMPRE-JA-dm", to="beto")
    edited = await spammer.say("quase COMPRE-JA")
    await spammer.send({"type": "edit", "id": edited["id"], "text": "COMPRE-JA-editada"})
    await next_of(spammer, "edited")
    await beto.say("mensagem-que-fica")
    files = redis_files(redis_server.directory)
    assert any(b"COMPRE-JA" in data for data in files.values()), sorted(files)
    await root.send({"type": "purge", "name": "spammer", "reason": "spam"})
    assert await closed_with(spammer.ws, timeout=10) == 1008
    await next_of(root, "notice", text="spammer is banned and their 42 messages deleted")
    wanted = {*ids[::2], dm["id"], edited["id"]}  # #geral and the DM reach beto
    assert {(await next_of(beto, "deleted"))["id"] for _ in wanted} == wanted
    # gone from the dataset: no key holds the text
    for key in redis_keys(redis_server):
        assert b"COMPRE-JA" not in redis_value(redis_server, key), key
    # and from the files, once Redis has rewritten its append-only file
    deadline = time.monotonic() + 30
    while True:
        files = redis_files(redis_server.directory)
        holding = sorted(name for name, data in files.items() if b"COMPRE-JA" in data)
        if not holding:
            break
        assert time.monotonic() < deadline, f"the text is still in {holding}"
        await asyncio.sleep(0.1)
    bases = [name for name in files if ".base." in name]
    assert bases and all(name.endswith(".base.aof") for name in bases), sorted(files)
    assert b"mensagem-que-fica" in b"".join(files.values())  # the rest is all there
    # a restarted instance reads the tombstones back from Redis
    a.restart()
    late = await JsonClient.open(a.url, "late")
    await joined(late, "#sala")
    page = await history(late, "#sala")
    assert page and all(m.get("deleted") for m in page)
    assert "COMPRE" not in repr(page)
    # what remains: the audit line, not the text
    root = await JsonClient.open(a.url, ADMIN, password=PASSWORD)
    await root.send({"type": "audit"})
    entries = (await root.expect("audit"))["entries"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("purge", "spammer"),
        ("delete", "spammer"),
    ]
    for client in (root, beto, late):
        await client.close()


async def test_a_kick_tells_the_sessions_on_every_instance_who_and_why(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server)
    ana = await JsonClient.open(a.url, "ana")
    beto_a = await JsonClient.open(a.url, "beto")
    beto_b = await JsonClient.open(b.url, "beto")
    await joined(ana, "#sala")
    await joined(beto_a, "#sala")
    await ana.send({"type": "kick", "room": "#sala", "name": "beto", "reason": "calma"})
    for client in (beto_a, beto_b):
        parted = await next_of(client, "room", event="parted")
        assert parted == {
            "type": "room",
            "event": "parted",
            "room": "#sala",
            "by": "ana",
            "reason": "calma",
        }
    # a part of his own afterwards says nothing of a kick
    await joined(beto_b, "#sala")
    await beto_b.send({"type": "part", "room": "#sala"})
    for client in (beto_a, beto_b):
        parted = await next_of(client, "room", event="parted")
        assert "by" not in parted and "reason" not in parted, parted
    for client in (ana, beto_a, beto_b):
        await client.close()
