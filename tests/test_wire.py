"""The fast path's bytes on the wire, metrics and health, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sqlite3
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from tests.conftest import StartServer
from tests.helpers import JsonClient, ServerProcess


def raw_client(address: str, path: str = "/") -> tuple[socket.socket, bytes]:
    """A hand-made WebSocket client: the handshake, then the raw byte stream."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"sec-websocket-extensions" not in head.lower()  # no compression by default
    return sock, rest


def parse_frames(data: bytes) -> list[Frame]:
    """Parse every complete frame strictly (as a client: server frames are unmasked)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while True:
        parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
            continue
        except EOFError:
            return frames
        raise AssertionError("unreachable")


async def test_coalesced_fanout_is_a_stream_of_valid_text_frames(server: ServerProcess) -> None:
    sock, rest = raw_client(server.address)
    senders = [await JsonClient.open(server.url, f"s{i}") for i in range(5)]
    texts = [f"{i}: {'é' * (i * 40)} 😀" for i in range(100)]  # 7-bit, 16-bit and 64-bit lengths
    texts.append("x" * 70_000)  # needs the 64-bit length form
    await asyncio.gather(
        *(senders[i % 5].send({"type": "say", "text": t}) for i, t in enumerate(texts[:-1]))
    )
    for s in senders:
        await s.quiet(0.2)
    sock.settimeout(3)
    data = rest
    deadline = asyncio.get_running_loop().time() + 10
    frames: list[Frame] = []
    while asyncio.get_running_loop().time() < deadline:
        try:
            chunk = await asyncio.to_thread(sock.recv, 1 << 20)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        frames = parse_frames(data)
        if sum(b"s" in f.data[:2] for f in frames) >= 100:
            break
    sock.close()
    assert frames, "no frames"
    for frame in frames:
        assert frame.opcode is Opcode.TEXT and frame.fin
        assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
        bytes(frame.data).decode("utf-8")  # valid UTF-8, or this raises
    said = [bytes(f.data).decode().split(": ", 1)[1] for f in frames if f.data[:1] == b"s"]
    assert sorted(said) == sorted(texts[:-1])


async def test_long_frames_use_the_long_length_forms(start_server: StartServer) -> None:
    server = start_server("--max-text", "100000", "--max-size", "1000000", "--rate-limit", "0")
    sock, rest = raw_client(server.address)
    sender = await JsonClient.open(server.url, "big")
    for size in (125, 126, 65_535, 65_536, 90_000):
        await sender.say("y" * size)
    data = rest
    sock.settimeout(3)
    while True:
        frames = parse_frames(data)
        if sum(bytes(f.data).startswith(b"big: ") for f in frames) == 5:
            break
        data += await asyncio.to_thread(sock.recv, 1 << 20)
    sock.close()
    sizes = [len(f.data) - len("big: ") for f in frames if bytes(f.data).startswith(b"big: ")]
    assert sizes == [125, 126, 65_535, 65_536, 90_000]


async def test_compression_when_enabled_goes_through_the_library(
    start_server: StartServer,
) -> None:
    server = start_server("--compression", "--rate-limit", "0")
    async with connect(server.url + "?name=zip", compression="deflate") as zipped:
        assert zipped.protocol.extensions  # permessage-deflate negotiated
        plain = await JsonClient.open(server.url, "plain")
        await zipped.send("comprimido " * 50)
        event = await plain.expect("message")
        assert event["text"] == "comprimido " * 50
        await plain.say("de volta " * 50)
        while "de volta" not in (line := str(await zipped.recv())):
            pass
        assert line == "plain: " + "de volta " * 50


async def test_metrics_count_what_happened(server: ServerProcess) -> None:
    a = await JsonClient.open(server.url, "ana")
    b = await JsonClient.open(server.url, "beto")
    for i in range(3):
        await a.say(f"m{i}")
    await a.send({"type": "join", "room": "#sala"})
    await a.expect("room")
    response = await asyncio.to_thread(urllib.request.urlopen, server.http + "/metrics")
    assert response.headers.get_all("Content-Type") == ["text/plain; version=0.0.4; charset=utf-8"]
    body = response.read().decode()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in body.splitlines()
        if line and not line.startswith("#")
    }
    assert values["papo_connections"] == 2
    assert values["papo_users_online"] == 2
    assert values["papo_rooms_routed"] == 2  # #geral and #sala
    assert values["papo_messages_received_total"] == 3
    assert values["papo_messages_stored_total"] == 3
    assert values["papo_messages_delivered_total"] >= 3
    assert values["papo_history_write_seconds_count"] >= 1
    assert values["papo_fanout_seconds_count"] >= 3
    for name in ("papo_rate_limited_total", "papo_slow_consumer_closes_total"):
        assert name in values
    await a.close()
    await b.close()


async def test_healthz_is_503_while_the_store_is_unusable(server: ServerProcess) -> None:
    response = await asyncio.to_thread(urllib.request.urlopen, server.http + "/healthz")
    assert response.status == 200 and response.read().startswith(b"ok")
    locker = sqlite3.connect(server.data_dir / "papo.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the database is held by someone else
    try:
        with pytest.raises(urllib.error.HTTPError) as caught:
            await asyncio.to_thread(urllib.request.urlopen, server.http + "/healthz")
        assert caught.value.code == 503
        assert b"unhealthy" in caught.value.read()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    response = await asyncio.to_thread(urllib.request.urlopen, server.http + "/healthz")
    assert response.status == 200
