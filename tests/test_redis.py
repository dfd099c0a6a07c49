"""Several instances, one chat, through a real Redis server.

Every test starts its own ``redis-server`` (see :class:`tests.helpers.RedisServer`)
and two real papo processes on two ports that share it, and talks to both over
real sockets. In CI these tests must run; elsewhere, without ``redis-server``,
they are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import signal
import socket
import time
import urllib.error
import urllib.request
from typing import Any, cast

import pytest
import redis as redis_py

from papo.client_session import ChatSession
from papo.config import parse_settings
from papo.protocol import Hello, Message
from tests.conftest import StartServer
from tests.helpers import JsonClient, PlainClient, RedisServer, ServerProcess


def pair(start_server: StartServer, redis: RedisServer, *flags: str) -> list[ServerProcess]:
    """Two instances on two ports, sharing ``redis``."""
    args = ("--redis", redis.url, "--presence-grace", "0.3", "--rate-limit", "0", *flags)
    return [start_server(*args), start_server(*args)]


def texts(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [(e["from"], e["text"], e.get("to")) for e in events if e["type"] == "message"]


def presence(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event"], e["name"]) for e in events if e["type"] == "presence"]


def health(server: ServerProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.http + "/healthz", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def redis_command(redis: RedisServer, *words: str) -> bytes:
    """One command to the test's Redis, for looking at what papo left there."""
    request = f"*{len(words)}\r\n".encode()
    for word in words:
        data = word.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(65536)


async def test_routing_presence_and_who_across_two_instances(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server)
    ana_a = await JsonClient.open(a.url, "ana")
    beto_b = await JsonClient.open(b.url, "beto")
    # beto's join crosses from B to A; ana's was before beto was there
    assert presence(await ana_a.quiet(0.5)) == [("join", "beto")]
    assert presence(await beto_b.quiet(0.2)) == []

    # ana's second device, on the other instance: no second join anywhere
    ana_b = await JsonClient.open(b.url, "ana")
    carla_a = await JsonClient.open(a.url, "carla")
    await asyncio.sleep(0.5)
    everyone = {"ana_a": ana_a, "ana_b": ana_b, "beto_b": beto_b, "carla_a": carla_a}
    seen = {k: presence(await c.quiet(0.1)) for k, c in everyone.items()}
    assert seen == {
        "ana_a": [("join", "carla")],
        "ana_b": [("join", "carla")],
        "beto_b": [("join", "carla")],
        "carla_a": [],
    }

    # public from B: every session on both instances but the sender's
    assert (await beto_b.say("olá a todos"))["type"] == "ack"
    got = {k: texts(await c.quiet(0.4)) for k, c in everyone.items()}
    public = [("beto", "olá a todos", None)]
    assert got == {"ana_a": public, "ana_b": public, "beto_b": [], "carla_a": public}

    # private from A to ana: both of ana's devices (A and B), nobody else
    assert (await carla_a.say("só para a ana", to="ANA"))["type"] == "ack"
    got = {k: texts(await c.quiet(0.4)) for k, c in everyone.items()}
    private = [("carla", "só para a ana", "ana")]
    assert got == {"ana_a": private, "ana_b": private, "beto_b": [], "carla_a": []}

    # a private reply from ana's device on B reaches carla on A and ana's device on A
    assert (await ana_b.say("obrigada", to="carla"))["type"] == "ack"
    got = {k: texts(await c.quiet(0.4)) for k, c in everyone.items()}
    reply = [("ana", "obrigada", "carla")]
    assert got == {"ana_a": reply, "ana_b": [], "beto_b": [], "carla_a": reply}

    # who: the whole chat, from either instance, with sessions counted across them
    for client in (ana_a, beto_b):
        await client.send({"type": "who"})
        users = (await client.expect("users"))["users"]
        assert users == [
            {"name": "ana", "sessions": 2},
            {"name": "beto", "sessions": 1},
            {"name": "carla", "sessions": 1},
        ]

    # ana closes one device: still online, no leave; then the other: one leave
    await ana_a.close()
    await asyncio.sleep(0.8)
    assert presence(await beto_b.quiet(0.1)) == []
    await ana_b.close()
    await asyncio.sleep(0.8)
    assert presence(await beto_b.quiet(0.1)) == [("leave", "ana")]
    assert presence(await carla_a.quiet(0.1)) == [("leave", "ana")]

    # a private message to ana, now offline everywhere, says so and waits for her
    await carla_a.send({"type": "say", "text": "volta logo", "to": "ana", "cid": "c1"})
    assert (await carla_a.expect("ack"))["id"] > 0
    notice = await carla_a.expect("notice")
    assert "offline" in notice["text"]
    ana_again = await JsonClient.open(b.url, "ana")
    context = await ana_again.quiet(0.5)
    assert ("carla", "volta logo", "ana") in texts(context)

    # plain-text clients on both instances see the same conversation
    plain_a = await PlainClient.open(a.url + "?name=dora")
    plain_b = await PlainClient.open(b.url + "?name=edu")
    await plain_a.until("* edu joined", timeout=15)
    await plain_b.send("oi dora")
    assert await plain_a.until("edu: oi dora", timeout=15)
    for client in (beto_b, carla_a, ana_again):
        await client.close()
    await plain_a.close()
    await plain_b.close()


async def test_resume_on_the_other_instance_and_cid_idempotency_across_them(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server)
    ana = await JsonClient.open(a.url, "ana")
    beto = await JsonClient.open(b.url, "beto")
    for i in range(5):
        await beto.say(f"antes {i}")
    before = [m["id"] for m in await ana.quiet(0.5) if m["type"] == "message"]
    assert len(before) == 5
    token, last = ana.welcome["token"], before[-1]

    # ana drops from A; beto keeps talking on B (public and private to her)
    await ana.close()
    sent = []
    for i in range(20):
        ack = await beto.say(f"durante {i}", to="ana" if i % 4 == 0 else None)
        sent.append(ack["id"])

    # ana comes back on B, resuming from the last id she saw on A: exactly the
    # missed ones, in order, then live
    ana_b = await JsonClient.open(b.url, "ana", token=token, resume_from=last)
    replayed = [e for e in await ana_b.quiet(0.6) if e["type"] == "message"]
    assert [m["id"] for m in replayed] == sent
    await beto.say("depois")
    live = texts(await ana_b.quiet(0.5))
    assert live == [("beto", "depois", None)]

    # the same cid sent to A and then to B: one id, delivered once
    carla_a = await JsonClient.open(a.url, "carla")
    carla_b = await JsonClient.open(b.url, "carla")
    await asyncio.sleep(0.3)
    await ana_b.quiet(0.1)
    first = await carla_a.say("uma vez só", cid="retry-1")
    again = await carla_b.say("uma vez só", cid="retry-1")
    assert first["type"] == again["type"] == "ack"
    assert first["id"] == again["id"]
    assert texts(await ana_b.quiet(0.5)) == [("carla", "uma vez só", None)]
    # 5 + 15 + 1 + 1 in the default room's stream, 5 in the direct one: nothing stored twice
    stream = redis_command(redis_server, "XLEN", "{r:#geral}:messages")
    assert stream.strip() == b":22", stream
    stream = redis_command(redis_server, "XLEN", "{papo}:direct")
    assert stream.strip() == b":5", stream
    for client in (beto, ana_b, carla_a, carla_b):
        await client.close()


async def test_an_instance_killed_with_sigkill_has_its_users_leave_within_30_s(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server)
    ana = await JsonClient.open(a.url, "ana")
    beto = await JsonClient.open(b.url, "beto")
    carla = await JsonClient.open(a.url, "carla")
    carla_b = await JsonClient.open(b.url, "carla")  # carla is on both instances
    await asyncio.sleep(0.5)
    await beto.quiet(0.1)

    a.kill()  # SIGKILL: no goodbye, its presence entries stay in Redis
    killed = time.monotonic()
    event = await beto.expect("presence", timeout=30)
    waited = time.monotonic() - killed
    assert (event["event"], event["name"]) == ("leave", "ana")
    assert waited < 30, waited
    # carla is still on B: no leave for her, and who agrees
    assert presence(await beto.quiet(1.0)) == []
    await beto.send({"type": "who"})
    assert (await beto.expect("users"))["users"] == [
        {"name": "beto", "sessions": 1},
        {"name": "carla", "sessions": 1},
    ]
    assert b.logged("stopped beating")
    print(f"leave announced {waited:.1f} s after the SIGKILL")
    for client in (beto, carla_b):
        await client.close()
    del ana, carla


async def test_redis_restarted_mid_traffic_clear_errors_then_recovery_nothing_acked_lost(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = pair(start_server, redis_server)
    rng = random.Random(6)
    names = ["u0", "u1", "u2", "u3"]
    servers = {"u0": a, "u1": b, "u2": a, "u3": b}
    refused: dict[str, int] = dict.fromkeys(names, 0)
    sessions: dict[str, ChatSession] = {}
    for name in names:
        session = ChatSession(servers[name].url, max_backoff=1.0)
        await session.connect()
        await session.join(Hello(name))
        sessions[name] = session
    received: dict[str, list[Message]] = {name: [] for name in names}

    async def read(name: str) -> None:
        async for event in sessions[name].events():
            if isinstance(event, Message):
                received[name].append(event)

    async def write(name: str) -> int:
        sent = 0
        for i in range(150):
            await sessions[name].say(f"{name}#{i}")
            sent += 1
            await asyncio.sleep(rng.uniform(0.01, 0.03))
        return sent

    plain = await PlainClient.open(b.url + "?name=dora")
    readers = [asyncio.create_task(read(n)) for n in names]
    writers = [asyncio.create_task(write(n)) for n in names]
    await asyncio.sleep(1.0)  # traffic flowing

    redis_server.stop(signal.SIGKILL)  # a crash; the append-only file is fsynced per write
    await asyncio.sleep(0.5)
    status, text = health(a)
    assert status == 503 and "unhealthy" in text, (status, text)
    await plain.send("alguém aí?")  # a clear error, never a silent loss
    assert "nothing was sent" in await plain.until("cannot store", timeout=10)
    await asyncio.sleep(1.0)
    redis_server.start()

    await asyncio.gather(*writers)
    for name in names:
        assert await sessions[name].wait_acked(30), name
    for server in (a, b):  # both recover by themselves
        deadline = time.monotonic() + 20
        while health(server)[0] != 200:
            assert time.monotonic() < deadline, health(server)
            await asyncio.sleep(0.2)
        assert server.proc is not None and server.proc.poll() is None  # never crashed
    await asyncio.sleep(1.0)
    for name in names:
        await sessions[name].close()
    await asyncio.gather(*readers)
    await plain.close()

    # the stream after the restart: every acknowledged message, once, in id order
    stored = _stream(redis_server)
    ids = [i for i, _, _ in stored]
    assert ids == sorted(set(ids))
    by_text = {text: i for i, _, text in stored}
    assert len(by_text) == len(stored), "a message was stored twice"
    for name in names:
        # refused (store_unavailable) and sent again by the session itself, or given up
        refused[name] = sessions[name].resends.refusals
        assert sessions[name].own_ids <= set(ids), name
    assert sum(refused.values()) > 0, "the outage must have refused some messages"
    # every client received every stored message of the others, in order, once
    for name in names:
        expected = [i for i, sender, _ in stored if sender != name and sender in names]
        got = [m.id for m in received[name]]
        assert got == expected, (name, len(got), len(expected))
    print(f"refused during the outage: {refused}; stored: {len(stored)}")


def _stream(redis: RedisServer) -> list[tuple[int, str, str]]:
    """(id, sender, text) of every message in the test Redis's streams (the default
    room's and the direct messages'), in id order."""
    client = redis_py.Redis(port=redis.port, decode_responses=True)
    try:
        entries = [
            *cast(list[tuple[str, dict[str, str]]], client.xrange("{r:#geral}:messages")),
            *cast(list[tuple[str, dict[str, str]]], client.xrange("{papo}:direct")),
        ]
    finally:
        client.close()
    return sorted((int(i.split("-")[1]), f["s"], f["x"]) for i, f in entries)


async def test_without_redis_the_server_says_so_and_exits(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    redis_server.stop()
    try:
        start_server("--redis", redis_server.url)
    except RuntimeError as exc:
        assert "cannot use Redis at redis://127.0.0.1" in str(exc)
    else:
        raise AssertionError("the server started without Redis")


def test_redis_url_from_flag_or_environment_and_clear_refusals() -> None:
    url = "redis://127.0.0.1:6379/0"
    assert parse_settings(["--redis", url], {}).redis_url == url
    assert parse_settings([], {"PAPO_REDIS_URL": url}).redis_url == url
    assert parse_settings([], {}).redis_url is None
    for argv, says in (
        (["--redis", url, "--memory"], "--memory and --redis exclude each other"),
        (["--redis", "127.0.0.1:6379"], "--redis wants a URL like redis://"),
    ):
        err = io.StringIO()
        with pytest.raises(SystemExit) as exited, contextlib.redirect_stderr(err):
            parse_settings(argv, {})
        assert exited.value.code == 2 and says in err.getvalue()


async def test_a_burst_from_one_connection_is_acked_and_delivered_in_order(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    """Messages sent back to back are under way together (the connection does not
    wait for each commit): still acked in the order sent, with increasing ids,
    delivered in that order on both instances, and a cid sent twice in the burst
    stored once."""
    a, b = pair(start_server, redis_server)
    ana = await JsonClient.open(a.url, "ana")
    beto = await JsonClient.open(b.url, "beto")
    here = await JsonClient.open(a.url, "carla")
    count = 150
    for n in range(count):
        await ana.send({"type": "say", "text": f"m{n}", "cid": f"c{n}"})
    await ana.send({"type": "say", "text": "again", "cid": "c7"})  # a resend, in the burst
    acks = [await ana.expect("ack") for _ in range(count + 1)]
    assert [ack["cid"] for ack in acks] == [f"c{n}" for n in range(count)] + ["c7"]
    ids = [ack["id"] for ack in acks[:count]]
    assert ids == sorted(ids) and len(set(ids)) == count
    assert acks[-1]["id"] == acks[7]["id"]  # stored once
    for client in (beto, here):
        got: list[tuple[int, str]] = []
        while len(got) < count:
            event = await client.expect("message")
            if event["from"] == "ana":
                got.append((event["id"], event["text"]))
        assert got == [(i, f"m{n}") for n, i in enumerate(ids)]
    for client in (ana, beto, here):
        await client.close()
