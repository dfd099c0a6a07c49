"""Nothing lost: ids, acks, cid, resume, retention, crashes, limits and faults."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.conftest import StartServer
from tests.helpers import JsonClient, ServerProcess, closed_with


def texts(events: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "message"]


async def test_ids_increase_and_ack_comes_after_storing(server: ServerProcess) -> None:
    a = await JsonClient.open(server.url, "ana")
    b = await JsonClient.open(server.url, "beto")
    ids = [(await a.say(f"m{i}", cid=f"c{i}"))["id"] for i in range(20)]
    assert ids == sorted(ids) and len(set(ids)) == 20
    received = [e["id"] for e in await b.quiet(0.5) if e["type"] == "message"]
    assert received == ids
    # acknowledged means stored: the rows are in the database already
    db = sqlite3.connect(Path(server.data_dir) / "papo.db")
    stored = [row[0] for row in db.execute("SELECT id FROM messages ORDER BY id")]
    assert stored[-20:] == ids


async def test_same_cid_again_returns_the_same_id_and_delivers_once(server: ServerProcess) -> None:
    a = await JsonClient.open(server.url, "ana")
    b = await JsonClient.open(server.url, "beto")
    first = await a.say("uma vez", cid="retry-1")
    again = await a.say("uma vez", cid="retry-1")
    assert again == first
    other = await JsonClient.open(server.url, "beto")  # a fresh tab: context has it once
    assert texts(await b.quiet(0.4)) == ["uma vez"]
    assert texts(await other.quiet(0.4)).count("uma vez") == 1
    # another user may use the same cid: it is a different message
    c = await JsonClient.open(server.url, "carla")
    assert (await c.say("eu também", cid="retry-1"))["id"] != first["id"]


async def test_resume_delivers_exactly_what_was_missed_then_live(server: ServerProcess) -> None:
    ana = await JsonClient.open(server.url, "ana", password="senha1")
    beto = await JsonClient.open(server.url, "beto")
    carla = await JsonClient.open(server.url, "carla")
    await beto.say("antes")
    seen = await ana.expect("message")
    token = ana.welcome["token"]
    await ana.close()

    await beto.say("durante 1")
    await carla.say("só para a ana", to="ana")
    await carla.say("só para o beto", to="beto")  # ana may not see this
    await beto.say("durante 2")

    ana2 = await JsonClient.open(server.url, "ana", token=token, resume_from=seen["id"])
    replay = [e for e in await ana2.quiet(0.5) if e["type"] == "message"]
    assert [(e["from"], e["text"], e.get("to")) for e in replay] == [
        ("beto", "durante 1", None),
        ("carla", "só para a ana", "ana"),
        ("beto", "durante 2", None),
    ]
    assert [e["id"] for e in replay] == sorted(e["id"] for e in replay)
    await beto.say("depois")
    assert texts([await ana2.expect("message")]) == ["depois"]


async def test_welcome_carries_last_id_and_resuming_from_it_misses_nothing(
    server: ServerProcess,
) -> None:
    beto = await JsonClient.open(server.url, "beto")
    last = (await beto.say("um"))["id"]
    ana = await JsonClient.open(server.url, "ana")
    assert ana.welcome["last_id"] == last
    await ana.close()  # dropped before receiving any live message
    await beto.say("dois")
    ana = await JsonClient.open(server.url, "ana", token=ana.welcome["token"], resume_from=last)
    assert texts(await ana.quiet(0.4)) == ["dois"]


async def test_fresh_join_gets_the_last_50_messages_it_may_see(server: ServerProcess) -> None:
    a = await JsonClient.open(server.url, "ana")
    await JsonClient.open(server.url, "beto")
    for i in range(60):
        await a.say(f"p{i}")
    await a.say("privado do beto", to="beto")
    carla = await JsonClient.open(server.url, "carla")
    got = texts(await carla.quiet(0.5))
    assert got == [f"p{i}" for i in range(10, 60)]


async def test_resume_older_than_retention_reports_a_gap(start_server: StartServer) -> None:
    server = start_server("--retention", "5", "--rate-limit", "0")
    a = await JsonClient.open(server.url, "ana")
    ids = [(await a.say(f"m{i}"))["id"] for i in range(200)]
    await asyncio.sleep(0.2)
    b = await JsonClient.open(server.url, "beto", resume_from=ids[0])
    events = await b.quiet(0.5)
    gap = events[0]
    assert gap["type"] == "gap" and gap["after"] == ids[0] and gap["oldest"] > ids[1]
    got = texts(events[1:])
    assert got[-5:] == [f"m{i}" for i in range(195, 200)]
    assert len(got) <= 5 + 2  # retention is trimmed in small steps


async def test_resume_from_the_future_is_a_clear_error(server: ServerProcess) -> None:
    a = await JsonClient.open(server.url, "ana")
    last = (await a.say("x"))["id"]
    b = await JsonClient.open(server.url, "beto", resume_from=last + 1000)
    error = await b.expect("error")
    assert error["code"] == "bad_resume" and str(last) in error["message"]
    await a.say("live")
    assert texts([await b.expect("message")]) == ["live"]


async def test_memory_mode_forgets_on_restart(start_server: StartServer) -> None:
    server = start_server("--memory")
    a = await JsonClient.open(server.url, "ana")
    assert (await a.say("efémero"))["type"] == "ack"
    assert not (server.data_dir / "papo.db").exists()
    server.restart(signal.SIGTERM)
    b = await JsonClient.open(server.url, "beto")
    assert b.welcome["last_id"] == 0
    assert await b.quiet(0.3) == []


async def test_sigkill_keeps_every_acknowledged_message(server: ServerProcess) -> None:
    clients = [await JsonClient.open(server.url, f"u{i}") for i in range(4)]
    acked: list[int] = []

    async def talk(client: JsonClient, n: int) -> None:
        for i in range(n):
            await client.send({"type": "say", "text": f"{client.name}-{i}", "cid": str(i)})
        try:
            while True:
                event = await client.recv(2)
                if event["type"] == "ack":
                    acked.append(event["id"])
        except Exception:  # the server is killed under us: stop reading
            return

    tasks = [asyncio.create_task(talk(c, 200)) for c in clients]
    await asyncio.sleep(0.15)
    server.kill()
    await asyncio.gather(*tasks)
    assert acked, "nothing was acknowledged before the kill"
    server.restart()
    db = sqlite3.connect(server.data_dir / "papo.db")
    stored = {row[0] for row in db.execute("SELECT id FROM messages")}
    assert set(acked) <= stored
    print(f"{len(acked)} acknowledged before SIGKILL, all {len(acked)} still stored")


async def test_graceful_restart_closes_with_1001_and_clients_resume(server: ServerProcess) -> None:
    ana = await JsonClient.open(server.url, "ana")
    beto = await JsonClient.open(server.url, "beto")
    await beto.say("antes")
    last = (await ana.expect("message"))["id"]
    stopper = asyncio.create_task(asyncio.to_thread(server.stop, signal.SIGTERM))
    assert await closed_with(ana.ws) == 1001
    assert await stopper == 0
    server.restart(signal.SIGTERM)
    beto = await JsonClient.open(server.url, "beto", token=beto.welcome["token"])
    await beto.say("depois do restart")
    ana = await JsonClient.open(server.url, "ana", token=ana.welcome["token"], resume_from=last)
    assert texts(await ana.quiet(0.5)) == ["depois do restart"]


async def test_slow_consumer_is_closed_with_1013_and_others_are_unaffected(
    start_server: StartServer,
) -> None:
    server = start_server("--max-pending", "65536", "--rate-limit", "0")
    # A reader whose kernel buffer is small, so the server's own buffer is what fills.
    host, port = server.address.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    slow = JsonClient(
        await connect(server.url, sock=sock, subprotocols=[Subprotocol("papo.v1")]), "lento"
    )
    await slow.send({"type": "hello", "name": "lento"})
    slow.welcome = await slow.expect("welcome")
    fast = await JsonClient.open(server.url, "rapido")
    sender = await JsonClient.open(server.url, "fonte")
    await asyncio.sleep(0.2)
    await fast.quiet(0.1)
    slow.ws.transport.pause_reading()  # stops reading
    text = "x" * 2000
    n = 3000  # ~6 MB: more than the server's socket buffer (4 MiB at most) plus 64 KiB
    for i in range(n):
        await sender.send({"type": "say", "text": f"{i} {text}", "cid": str(i)})
    received = 0
    while received < n:
        event = await fast.recv(10)
        received += event["type"] == "message"
    assert received == n  # the fast reader got everything
    assert server.logged("closing slow consumer")
    slow.ws.transport.resume_reading()
    assert await closed_with(slow.ws, 20) == 1013
    # it comes back and resumes: nothing is lost to it either
    again = await JsonClient.open(server.url, "lento", token=slow.welcome["token"], resume_from=0)
    got: list[str] = []
    while len(got) < n:
        event = await again.recv(10)
        if event["type"] == "message":
            got.append(event["text"])
    assert got == [f"{i} {text}" for i in range(n)]


async def test_flooding_is_rate_limited_then_closed_with_1008(start_server: StartServer) -> None:
    server = start_server("--rate-limit", "5")  # burst 10
    flood = await JsonClient.open(server.url, "flood")
    calm = await JsonClient.open(server.url, "calm")
    other = await JsonClient.open(server.url, "other")
    for i in range(60):
        await flood.send({"type": "say", "text": f"f{i}"})
    events = [e async for e in _until_closed(flood)]
    codes = [e.get("code") for e in events if e["type"] == "error"]
    assert "rate_limited" in codes
    assert sum(e["type"] == "ack" for e in events) <= 12
    assert flood.ws.close_code == 1008
    assert (await calm.say("ainda posso falar"))["type"] == "ack"
    assert "ainda posso falar" in texts(await other.quiet(0.5))


async def _until_closed(client: JsonClient) -> Any:
    try:
        while True:
            yield await client.recv(5)
    except Exception:  # closed
        return


async def test_max_connections_answers_503(start_server: StartServer) -> None:
    server = start_server("--max-connections", "2")
    a = await JsonClient.open(server.url, "a")
    b = await JsonClient.open(server.url, "b")
    with pytest.raises(InvalidStatus) as caught:
        await connect(server.url)
    assert caught.value.response.status_code == 503
    await a.close()
    await asyncio.sleep(0.2)
    assert (await JsonClient.open(server.url, "c")).welcome
    await b.close()


async def test_cross_origin_browsers_are_refused_unless_allowed(start_server: StartServer) -> None:
    server = start_server("--allow-origin", "https://chat.example")
    with pytest.raises(InvalidStatus) as caught:
        await connect(server.url, origin="https://evil.example")  # type: ignore[arg-type]
    assert caught.value.response.status_code == 403
    async with connect(server.url, origin="https://chat.example") as ws:  # type: ignore[arg-type]
        assert "welcome" in str(await ws.recv())
    same = f"http://{server.address}"
    async with connect(server.url, origin=same) as ws:  # type: ignore[arg-type]
        assert "welcome" in str(await ws.recv())


def test_stalled_handshakes_are_dropped(start_server: StartServer) -> None:
    server = start_server("--open-timeout", "1")
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server hangs up
        assert time.monotonic() - started < 4


def test_dead_peers_are_found_by_ping(start_server: StartServer) -> None:
    server = start_server("--ping-interval", "0.5", "--ping-timeout", "0.5")
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        started = time.monotonic()
        while chunk := sock.recv(4096):  # read, but never answer the pings
            data += chunk
        assert data.startswith(b"HTTP/1.1 101")
        assert data.endswith(b"keepalive ping timeout")  # the server's close frame
        assert time.monotonic() - started < 5
    time.sleep(0.2)
    assert server.logged("closed from")


async def test_a_failing_store_makes_say_fail_clearly(server: ServerProcess) -> None:
    a = await JsonClient.open(server.url, "ana")
    b = await JsonClient.open(server.url, "beto")
    locker = sqlite3.connect(server.data_dir / "papo.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        failed = await a.say("não vai", cid="x1")
        assert failed["type"] == "error" and failed["code"] == "store_unavailable"
        assert failed["cid"] == "x1"
        assert texts(await b.quiet(0.3)) == []  # never delivered without being stored
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    retried = await a.say("não vai", cid="x1")
    assert retried["type"] == "ack"
    assert texts(await b.quiet(0.5)) == ["não vai"]


@pytest.mark.parametrize(
    ("hello", "code"),
    [
        ({"name": "ctl\x01name"}, "bad_name"),
        ({"name": "bidi\u202eoverride"}, "bad_name"),
        ({"name": "zero\u200bwidth"}, "bad_name"),
        ({"name": "guest-1234"}, "bad_name"),
    ],
)
async def test_hostile_names(server: ServerProcess, hello: dict[str, str], code: str) -> None:
    client = await JsonClient.open(server.url)
    await client.send({"type": "hello", **hello})
    assert (await client.expect("error"))["code"] == code


async def test_client_supplied_from_is_ignored(server: ServerProcess) -> None:
    a = await JsonClient.open(server.url, "ana")
    b = await JsonClient.open(server.url, "beto")
    await a.ws.send(json.dumps({"type": "say", "text": "sou o admin", "from": "admin"}))
    event = await b.expect("message")
    assert event["from"] == "ana"
