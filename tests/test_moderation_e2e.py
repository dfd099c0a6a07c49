"""Moderation and the message lifecycle against the real server process, over real sockets.

The in-process tests (test_moderation_hub.py) try every rule; these prove the
wiring: fan-out of edits and deletions, kick and rejoin, a mute that really
ends, bans closing sockets with 1008, address bans refused with HTTP 403
before the upgrade (directly and behind a trusted proxy), the text gone from
the database files after a purge, and a resume across an edit and a delete.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.conftest import StartServer
from tests.helpers import JsonClient, PlainClient, ServerProcess, closed_with

ADMIN, PASSWORD = "root", "segredo-forte"
FLAGS = ("--presence-grace", "0.3", "--rate-limit", "0", "--admin", ADMIN)


@pytest.fixture
def moderated(start_server: StartServer) -> ServerProcess:
    return start_server(*FLAGS)


async def joined(client: JsonClient, room: str) -> dict[str, Any]:
    await client.send({"type": "join", "room": room})
    while True:
        event = await client.expect("room")
        if event["event"] == "joined" and event["room"] == room:
            return event


async def next_of(client: JsonClient, kind: str, **fields: Any) -> dict[str, Any]:
    """The next event of type ``kind`` whose fields match (others of that type are dropped)."""
    while True:
        event = await client.expect(kind)
        if all(event.get(k) == v for k, v in fields.items()):
            return event


async def test_edit_and_delete_reach_every_session_that_could_see_it(
    moderated: ServerProcess,
) -> None:
    ana = await JsonClient.open(moderated.url, "ana")
    beto1 = await JsonClient.open(moderated.url, "beto")
    beto2 = await JsonClient.open(moderated.url, "beto")
    zeca = await JsonClient.open(moderated.url, "zeca")
    await joined(ana, "#sala")
    await joined(beto1, "#sala")
    ack = await ana.say("erro de digitaçao", room="#sala")
    await ana.send({"type": "edit", "id": ack["id"], "text": "erro de digitação"})
    for client in (ana, beto1, beto2):
        edited = await next_of(client, "edited", id=ack["id"])
        assert edited["text"] == "erro de digitação" and edited["room"] == "#sala"
    await ana.send({"type": "delete", "id": ack["id"]})
    for client in (ana, beto1, beto2):
        assert (await next_of(client, "deleted", id=ack["id"]))["by"] == "ana"
    # zeca, not in #sala, got none of it: the next thing he hears is this
    await ana.say("para todos")
    assert (await zeca.expect("message"))["text"] == "para todos"
    assert not [e for e in zeca.backlog if e["type"] in ("edited", "deleted")]
    await beto1.send({"type": "edit", "id": ack["id"], "text": "x"})
    assert (await beto1.expect("error"))["code"] == "unknown_message"
    for client in (ana, beto1, beto2, zeca):
        await client.close()


async def test_kick_then_rejoin(moderated: ServerProcess) -> None:
    ana = await JsonClient.open(moderated.url, "ana")
    beto = await JsonClient.open(moderated.url, "beto")
    await joined(ana, "#sala")
    await joined(beto, "#sala")
    await ana.send({"type": "kick", "room": "#sala", "name": "beto", "reason": "calma"})
    parted = await next_of(beto, "room", event="parted")
    assert parted == {
        "type": "room",
        "event": "parted",
        "room": "#sala",
        "by": "ana",
        "reason": "calma",
    }
    await next_of(ana, "member", name="beto", event="part")
    assert (await joined(beto, "#sala"))["room"] == "#sala"  # kicked, not banned
    assert (await beto.say("voltei", room="#sala"))["type"] == "ack"
    await beto.send({"type": "kick", "room": "#sala", "name": "ana"})
    assert (await beto.expect("error"))["code"] == "forbidden"
    await ana.close()
    await beto.close()


async def test_a_timed_mute_ends_by_itself(moderated: ServerProcess) -> None:
    ana = await JsonClient.open(moderated.url, "ana")
    beto = await JsonClient.open(moderated.url, "beto")
    await joined(ana, "#sala")
    await joined(beto, "#sala")
    await ana.send({"type": "mute", "room": "#sala", "name": "beto", "seconds": 1})
    await next_of(beto, "notice")  # told he is muted
    refused = await beto.say("posso?", room="#sala")
    assert refused["code"] == "muted" and refused["until"]
    deadline = time.monotonic() + 20
    while True:  # the mute ends by itself: speak again once it has
        answer = await beto.say("e agora?", room="#sala")
        if answer["type"] == "ack":
            break
        assert answer["code"] == "muted" and time.monotonic() < deadline, answer
        await next_of(beto, "notice")  # "you may speak in #sala again" comes first
    for client in (ana, beto):
        await client.close()


async def test_ban_closes_every_session_with_1008_and_refuses_hello(
    moderated: ServerProcess,
) -> None:
    root = await JsonClient.open(moderated.url, ADMIN, password=PASSWORD)
    carla1 = await JsonClient.open(moderated.url, "carla")
    carla2 = await JsonClient.open(moderated.url, "carla")
    await root.send({"type": "ban", "name": "carla", "reason": "spam"})
    for client in (carla1, carla2):
        assert await closed_with(client.ws) == 1008
        assert "spam" in (client.ws.close_reason or "")
    again = await JsonClient.open(moderated.url)
    await again.send({"type": "hello", "name": "carla"})
    refused = await again.expect("error")
    assert refused["code"] == "banned" and "until" not in refused
    await root.send({"type": "unban", "name": "carla"})
    await next_of(root, "notice", text="carla is no longer banned")
    back = await JsonClient.open(moderated.url, "carla")
    assert back.welcome["name"] == "carla"
    for client in (root, again, back):
        await client.close()


async def _handshake(url: str, forwarded: str | None = None) -> int:
    """The HTTP status of a WebSocket handshake (101 when it succeeds)."""
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    try:
        ws = await connect(url, additional_headers=headers, open_timeout=5)
    except InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return 101


async def test_ban_ip_refuses_the_handshake_with_403_behind_a_trusted_proxy(
    start_server: StartServer,
) -> None:
    server = start_server(*FLAGS, "--trusted-proxy", "127.0.0.1")
    # the admin comes "through the proxy" from 198.51.100.1
    ws = await connect(
        server.url,
        subprotocols=[Subprotocol("papo.v1")],
        additional_headers={"X-Forwarded-For": "198.51.100.1"},
        open_timeout=5,
    )
    root = JsonClient(ws)
    await root.send({"type": "hello", "name": ADMIN, "password": PASSWORD})
    await root.expect("welcome")
    victim = await connect(server.url, additional_headers={"X-Forwarded-For": "203.0.113.5"})
    await root.send({"type": "ban_ip", "address": "203.0.113.0/24", "reason": "bots"})
    assert await closed_with(victim) == 1008  # an open connection from there closes
    assert await _handshake(server.url, "203.0.113.77") == 403
    assert await _handshake(server.url, "6.6.6.6, 203.0.113.77") == 403  # the proxy's word
    assert await _handshake(server.url, "203.0.113.77, 6.6.6.6") == 101  # a forged one is not
    assert await _handshake(server.url, "198.51.100.2") == 101
    # the proxy's own address, directly (no header): banned too once asked
    await root.send({"type": "ban_ip", "address": "127.0.0.1"})
    await next_of(root, "notice", text="127.0.0.1/32 is banned")
    assert await _handshake(server.url) == 403
    # refused before the upgrade: plain HTTP still answers
    await root.send({"type": "unban_ip", "address": "127.0.0.1"})
    await next_of(root, "notice", text="127.0.0.1/32 is no longer banned")
    assert await _handshake(server.url) == 101
    await root.close()


async def test_an_untrusted_peer_cannot_choose_its_address(moderated: ServerProcess) -> None:
    root = await JsonClient.open(moderated.url, ADMIN, password=PASSWORD)
    await root.send({"type": "ban_ip", "address": "203.0.113.0/24"})
    await next_of(root, "notice", text="203.0.113.0/24 is banned")
    # no --trusted-proxy: the header is the client's own word, and ignored
    assert await _handshake(moderated.url, "203.0.113.5") == 101
    await root.send({"type": "ban_ip", "address": "127.0.0.1"})
    assert (await root.expect("error"))["code"] == "forbidden"  # its own address
    await root.close()


def raw_files(data_dir: Path) -> bytes:
    return b"".join(
        (data_dir / name).read_bytes()
        for name in ("papo.db", "papo.db-wal", "papo.db-shm")
        if (data_dir / name).exists()
    )


async def test_purge_removes_the_text_from_the_sqlite_files(moderated: ServerProcess) -> None:
    root = await JsonClient.open(moderated.url, ADMIN, password=PASSWORD)
    spammer = await JsonClient.open(moderated.url, "spammer")
    beto = await JsonClient.open(moderated.url, "beto")
    await joined(spammer, "#sala")
    ids = []
    for i in range(30):
        ids.append((await spammer.say(f"COMPRE-JA-{i:03d} {'!' * (i * 120)}"))["id"])
        ids.append((await spammer.say(f"COMPRE-JA-sala-{i:03d}", room="#sala"))["id"])
    ids.append((await spammer.say("COMPRE-JA-dm", to="beto"))["id"])
    await beto.say("mensagem-que-fica")
    assert b"COMPRE-JA" in raw_files(moderated.data_dir)
    await root.send({"type": "purge", "name": "spammer", "reason": "spam"})
    assert await closed_with(spammer.ws) == 1008
    await next_of(root, "notice", text="spammer is banned and their 61 messages deleted")
    deleted = {(await next_of(beto, "deleted"))["id"] for _ in range(31)}  # #geral and the DM
    assert deleted == {i for n, i in enumerate(ids) if n % 2 == 0 or i == ids[-1]}
    assert b"COMPRE-JA" not in raw_files(moderated.data_dir)
    # what remains: the audit line, not the text
    await root.send({"type": "audit"})
    entries = (await root.expect("audit"))["entries"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("purge", "spammer"),
        ("delete", "spammer"),
    ]
    for client in (root, beto):
        await client.close()


async def test_resume_across_an_edit_and_a_delete(moderated: ServerProcess) -> None:
    ana = await JsonClient.open(moderated.url, "ana", password="senha-da-ana")
    beto = await JsonClient.open(moderated.url, "beto")
    last = (await beto.say("antes"))["id"]
    await ana.expect("message")
    token = ana.welcome["token"]
    await ana.close()
    await edit_delete_then_resume(beto, moderated.url, token, last)
    await beto.close()


async def test_plain_moderation_commands(moderated: ServerProcess) -> None:
    root = await PlainClient.open(moderated.url + f"?name={ADMIN}&password={PASSWORD}")
    await root.until(f"you are {ADMIN}")
    beto = await JsonClient.open(moderated.url, "beto")
    await root.send("/join #sala")
    await root.until("you are in #sala")
    await joined(beto, "#sala")
    await root.send("/mode +m")
    assert (await next_of(beto, "room", event="mode"))["moderated"] is True
    assert "read-only" in await root.until("read-only")
    assert (await beto.say("oi", room="#sala"))["code"] == "forbidden"
    await root.send("oi, só eu falo")
    await root.send("/edit oi, só eu falo aqui")
    assert (await next_of(beto, "edited"))["text"] == "oi, só eu falo aqui"
    assert "(edited)" in await root.until("(edited)")
    await root.send("/mute beto 10m calma")
    assert "beto is muted in #sala for 10m" in await root.until("muted")
    await root.send("/kick beto chega")
    assert (await next_of(beto, "room", event="parted"))["reason"] == "chega"
    await root.send("/help")
    assert "/ban" in await root.until("admins:")
    await root.send("/audit")
    await root.until("— the last 3 audit entries —")
    assert "mode +m" in await root.recv()
    await root.send("/ban beto 1h flood")
    assert await closed_with(beto.ws) == 1008
    await root.close()


async def test_admins_from_the_environment(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAPO_ADMINS", "ana,root")
    server = start_server("--rate-limit", "0")
    ana = await JsonClient.open(server.url, "ana", password="senha-da-ana")
    await ana.send({"type": "audit"})
    assert (await ana.expect("audit", "error"))["type"] == "audit"
    await ana.close()


async def test_roles_and_bans_survive_a_restart(moderated: ServerProcess) -> None:
    root = await JsonClient.open(moderated.url, ADMIN, password=PASSWORD)
    ana = await JsonClient.open(moderated.url, "ana")
    await JsonClient.open(moderated.url, "carla")
    await joined(ana, "#sala")
    await root.send({"type": "ban", "name": "carla"})
    await next_of(root, "notice", text="carla is banned")
    moderated.restart()
    again = await JsonClient.open(moderated.url)
    await again.send({"type": "hello", "name": "carla"})
    assert (await again.expect("error"))["code"] == "banned"
    ana = await JsonClient.open(moderated.url, "ana")
    await ana.send({"type": "rooms"})
    rooms = {r["room"]: r["operators"] for r in (await ana.expect("rooms"))["rooms"]}
    assert rooms["#sala"] == ["ana"]
    await ana.close()


async def edit_delete_then_resume(
    beto: JsonClient, url: str, token: str, last: int, room: str | None = None
) -> None:
    """beto edits one message and deletes another while ana is away; ana resumes at ``url``.

    She gets both messages (the edited text, the deleted one as a tombstone)
    and then the ``edited`` and ``deleted`` entries, in id order, never the
    deleted text.
    """
    kept = await beto.say("fica", room=room)
    gone = await beto.say("vai sumir", room=room)
    await beto.send({"type": "edit", "id": kept["id"], "text": "fica, editada"})
    await next_of(beto, "edited")
    await beto.send({"type": "delete", "id": gone["id"]})
    await next_of(beto, "deleted")
    back = await JsonClient.open(url, "ana", token=token, resume_from=last)
    seen: list[dict[str, Any]] = []
    while len(seen) < 4:
        event = await back.recv()
        if event["type"] in ("message", "edited", "deleted"):
            seen.append(event)
    assert [(e["type"], e["id"]) for e in seen] == [
        ("message", kept["id"]),
        ("message", gone["id"]),
        ("edited", kept["id"]),
        ("deleted", gone["id"]),
    ]
    assert seen[0]["text"] == "fica, editada" and seen[1]["deleted"] is True
    assert "vai sumir" not in repr(seen)
    await back.close()
