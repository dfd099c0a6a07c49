"""The core server over real sockets: handshake, fan-out, bad input, shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.conftest import StartServer
from tests.helpers import ROOT, JsonClient, PlainClient, ServerProcess, closed_with


def raw_handshake(address: str, path: str = "/", extra: str = "") -> str:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        return sock.recv(4096).decode(errors="replace")


def test_handshake_answers_101_at_root_and_ws(server: ServerProcess) -> None:
    for path in ("/", "/ws"):
        response = raw_handshake(server.address, path)
        assert response.startswith("HTTP/1.1 101 Switching Protocols"), response
        assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in response
    assert raw_handshake(server.address, "/elsewhere").startswith("HTTP/1.1 404")


def test_plain_http_gets_a_page_not_a_stack_trace(server: ServerProcess) -> None:
    with urllib.request.urlopen(server.http + "/") as response:  # the web page
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "client.py" in response.read().decode()
    with urllib.request.urlopen(server.http + "/ws") as response:  # how to connect, as text
        body = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/plain")
    assert "ws://" in body and "client.py" in body
    with urllib.request.urlopen(server.http + "/healthz") as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.http + "/nope")
    assert caught.value.code == 404
    assert not server.logged("Traceback")


async def test_json_broadcast_reaches_every_other_client_not_the_sender(
    server: ServerProcess,
) -> None:
    clients = [await JsonClient.open(server.url, f"user{i}") for i in range(5)]
    for c in clients:  # let every join notice arrive before the message
        await c.quiet(0.2)
    ack = await clients[0].say("olá a todos", cid="c-1")
    assert ack == {"type": "ack", "id": ack["id"], "cid": "c-1"}
    for c in clients[1:]:
        event = await c.expect("message")
        assert event["id"] == ack["id"]
        assert event["from"] == "user0" and event["text"] == "olá a todos"
        assert event["ts"].endswith("Z") and "to" not in event
    assert await clients[0].quiet(0.3) == []  # the sender gets its ack, not an echo
    for c in clients:
        await c.close()


async def test_plain_and_json_clients_chat_with_each_other(server: ServerProcess) -> None:
    plain = await PlainClient.open(server.url)
    greeting = await plain.recv()
    assert "welcome to papo" in greeting
    guest = (await plain.until("you are")).split()[-1]
    assert guest.startswith("guest-") and len(guest) == len("guest-NNNN")
    await plain.send("/nick ana")
    assert await plain.until("you are") == "* you are ana"

    json_client = await JsonClient.open(server.url, "beto")
    assert await plain.until("beto") == "* beto joined"
    await plain.send("oi beto")
    event = await json_client.expect("message")
    assert (event["from"], event["text"]) == ("ana", "oi beto")
    await json_client.say("oi ana")
    assert await plain.until("oi ana") == "beto: oi ana"
    await plain.send("/help")
    assert "/msg" in await plain.until("commands")
    await plain.close()
    await json_client.close()


async def test_plain_name_from_url(server: ServerProcess) -> None:
    async with connect(server.url + "?name=carla") as ws:
        lines = [await ws.recv(), await ws.recv()]
    assert lines[1] == "* you are carla"


async def test_client_without_papo_subprotocol_is_plain(server: ServerProcess) -> None:
    async with connect(server.url, subprotocols=[Subprotocol("chat")]) as ws:
        assert ws.subprotocol is None
        assert "welcome" in str(await ws.recv())


async def test_disconnect_leaves_the_pool_and_others_keep_chatting(server: ServerProcess) -> None:
    a = await JsonClient.open(server.url, "ana")
    b = await JsonClient.open(server.url, "beto")
    c = await JsonClient.open(server.url, "carla")
    b.ws.transport.abort()  # an unclean drop, no closing handshake
    await asyncio.sleep(0.1)
    await a.say("still here?")
    event = await c.expect("message")
    assert event["text"] == "still here?"
    leave = await c.expect("presence", timeout=3)
    assert leave == {"type": "presence", "event": "leave", "name": "beto"}
    await a.send({"type": "who"})
    users = await a.expect("users")
    assert [u["name"] for u in users["users"]] == ["ana", "carla"]
    await a.close()
    await c.close()
    assert server.logged("closed from")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[" * 60_000, "bad_json"),
        ("[1, 2]", "bad_event"),
        ('"just a string"', "bad_event"),
        ('{"text": "no type"}', "bad_event"),
        ('{"type": "shout", "text": "x"}', "unknown_type"),
        ('{"type": "say"}', "missing_field"),
        ('{"type": "say", "text": 42}', "bad_field"),
        ('{"type": "say", "text": "   "}', "empty_text"),
        (json.dumps({"type": "say", "text": "x" * 4097}), "text_too_long"),
        ('{"type": "say", "text": "x", "cid": []}', "bad_field"),
        ('{"type": "hello", "name": "a b"}', "bad_name"),
        ('{"type": "hello", "name": "ok", "resume_from": -1}', "bad_field"),
        # a lone surrogate: valid JSON, no character; it once stopped all storing
        ('{"type": "say", "text": "x\\ud800y", "cid": "c1"}', "bad_json"),
        ('{"type": "topic", "room": "#geral", "text": "\\uDFFF"}', "bad_json"),
    ],
)
async def test_bad_json_input_gets_an_error_and_the_connection_stays(
    server: ServerProcess, frame: str, code: str
) -> None:
    bad = await JsonClient.open(server.url, "bad")
    other = await JsonClient.open(server.url, "other")
    await bad.ws.send(frame)
    error = await bad.expect("error")
    assert error["code"] == code, error
    assert error["message"]
    ack = await bad.say("still connected")  # the connection stays usable
    assert ack["type"] == "ack"
    assert (await other.expect("message"))["text"] == "still connected"
    await bad.close()
    await other.close()


async def test_say_before_hello_and_binary_frames_are_refused(server: ServerProcess) -> None:
    client = await JsonClient.open(server.url)
    await client.send({"type": "say", "text": "hi"})
    assert (await client.expect("error"))["code"] == "not_joined"
    await client.ws.send(b"\x00\x01")
    assert (await client.expect("error"))["code"] == "binary"
    await client.close()


async def test_plain_bad_input_gets_an_error_line(server: ServerProcess) -> None:
    plain = await PlainClient.open(server.url)
    await plain.until("you are")
    for line, expected in [
        ("/nope", "* error: unknown command /nope"),
        ("/msg", "* error: usage: /msg NAME TEXT"),
        ("x" * 4097, "* error: a message has at most 4096 characters"),
        ("/nick one two three", "* error: usage: /nick NAME [PASSWORD]"),
        ("/nick \u202eevil", "* error: bad name"),
    ]:
        await plain.send(line)
        assert (await plain.until("error")).startswith(expected), line
    await plain.close()


async def test_text_limit_is_configurable(start_server: StartServer) -> None:
    server = start_server("--max-text", "10")
    client = await JsonClient.open(server.url, "ana")
    assert (await client.say("0123456789"))["type"] == "ack"
    assert (await client.say("0123456789x"))["code"] == "text_too_long"
    await client.close()


async def test_oversized_frame_closes_only_that_connection_with_1009(
    server: ServerProcess,
) -> None:
    big = await JsonClient.open(server.url, "big")
    other = await JsonClient.open(server.url, "other")
    await big.ws.send("x" * (64 * 1024 + 1))
    assert await closed_with(big.ws) == 1009
    await asyncio.sleep(0.1)
    third = await JsonClient.open(server.url, "third")
    await third.say("after the big one")
    assert (await other.expect("message"))["text"] == "after the big one"
    await other.close()
    await third.close()


async def test_invalid_utf8_closes_only_that_connection_with_1007(server: ServerProcess) -> None:
    victim = await JsonClient.open(server.url, "victim")
    other = await JsonClient.open(server.url, "other")
    # A text frame (opcode 1, unmasked is refused, so masked with a zero key) holding 0xFF.
    victim.ws.transport.write(bytes([0x81, 0x80 | 1, 0, 0, 0, 0, 0xFF]))
    assert await closed_with(victim.ws) == 1007
    third = await JsonClient.open(server.url, "third")
    await third.say("fine")
    assert (await other.expect("message"))["text"] == "fine"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_graceful_shutdown_closes_everyone_with_1001_and_exits_0(
    start_server: StartServer, sig: int
) -> None:
    server = start_server()
    json_client = await JsonClient.open(server.url, "ana")
    plain = await PlainClient.open(server.url)
    await plain.until("you are")
    await asyncio.to_thread(server.stop, sig)
    assert await closed_with(json_client.ws) == 1001
    assert await closed_with(plain.ws) == 1001
    assert server.proc is not None and server.proc.returncode == 0
    assert server.logged("2 connections served")
    assert not server.logged("Traceback")


async def test_unknown_path_upgrade_is_refused(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(server.url + "elsewhere")
    assert caught.value.response.status_code == 404


def test_help_and_bad_flags() -> None:
    out = subprocess.run(
        [sys.executable, "server.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--host", "--port", "--log-level", "--data", "--max-text", "--presence-grace"):
        assert flag in out
    bad = subprocess.run(
        [sys.executable, "server.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PAPO_PORT": "abc", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert bad.returncode == 2 and "PAPO_PORT='abc' is not valid" in bad.stderr


def test_port_in_use_is_one_clear_line(server: ServerProcess) -> None:
    port = server.address.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "server.py", "--host", "127.0.0.1", "--port", port],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_burst_from_one_connection_is_acked_and_delivered_in_order(
    server: ServerProcess,
) -> None:
    """Messages sent back to back are under way together (the connection does not
    wait for each commit): acked in the order sent with increasing ids, delivered in
    that order, and one sent again with its cid in the burst is stored once."""
    ana = await JsonClient.open(server.url, "ana")
    beto = await JsonClient.open(server.url, "beto")
    count = 150
    for n in range(count):
        await ana.send({"type": "say", "text": f"m{n}", "cid": f"c{n}"})
    await ana.send({"type": "say", "text": "again", "cid": "c7"})
    acks = [await ana.expect("ack") for _ in range(count + 1)]
    assert [ack["cid"] for ack in acks] == [f"c{n}" for n in range(count)] + ["c7"]
    ids = [ack["id"] for ack in acks[:count]]
    assert ids == sorted(ids) and len(set(ids)) == count and acks[-1]["id"] == acks[7]["id"]
    got = [await beto.expect("message") for _ in range(count)]
    assert [(e["id"], e["text"]) for e in got] == [(i, f"m{n}") for n, i in enumerate(ids)]
    await ana.close()
    await beto.close()
