"""papo on Redis Sentinel: a master, a replica, three sentinels, all real, all the test's own.

See :mod:`tests.sentinel` for the processes. The failover test kills the
master with SIGKILL during traffic and proves what ``--redis-wait 1`` promises:
no acknowledged message is lost, none is stored twice, and every client gets
every message exactly once, whether it stayed connected or resumed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis as redis_py
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import MaxConnectionsError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from papo.redis_connect import connect, disconnect, parse_redis_url
from papo.redis_wait import NotReplicated
from papo.store import StoreUnconfirmed
from papo.store_records import Stored
from papo.store_redis import RedisStore
from tests.conftest import StartServer
from tests.helpers import ROOT, RedisServer, ServerProcess, need, redis_missing, resent
from tests.sentinel import SentinelSetup, ask

STREAM = "{r:#geral}:messages"


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSetup]:
    """A master, its replica and three sentinels (fails in CI when redis-server is missing)."""
    need(redis_missing(), "the Redis Sentinel tests")
    setup = SentinelSetup(tmp_path / "sentinel")
    try:
        setup.start()
    except BaseException:
        print(setup.logs())
        setup.stop()
        raise
    yield setup
    setup.stop()


def health(server: ServerProcess) -> int:
    """``/healthz``'s status; 0 when it does not answer in time."""
    try:
        with urllib.request.urlopen(server.http + "/healthz", timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, TimeoutError):
        return 0


def answers(server: ServerProcess, status: int) -> Callable[[], bool]:
    return lambda: health(server) == status


def has(peer: Peer, count: int) -> Callable[[], bool]:
    return lambda: len(peer.received) >= count


async def until(
    check: Callable[[], bool], what: str, timeout: float, *, blocking: bool = False
) -> None:
    """Wait for ``check`` (every 0.1 s; in a thread when it blocks, so clients keep
    reading); fail saying ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (await asyncio.to_thread(check) if blocking else check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.1)


def stream(server: RedisServer) -> list[tuple[int, str, str]]:
    """(id, sender, text) of the default room's stream on ``server``, in id order."""
    client = redis_py.Redis(port=server.port, decode_responses=True)
    try:
        entries = cast(list[tuple[str, dict[str, str]]], client.xrange(STREAM))
    finally:
        client.close()
    return [(int(i.split("-")[1]), f["s"], f["x"]) for i, f in entries]


class Peer:
    """A ``papo.v1`` user: sends under cids it re-sends until acknowledged, keeps every
    message it receives, and can leave and come back resuming from the last id it saw."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ws: ClientConnection | None = None
        self.token = ""
        self.received: list[dict[str, Any]] = []
        self.refused = 0  # store_unavailable answers
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    @property
    def last_id(self) -> int:
        return max((m["id"] for m in self.received), default=0)

    async def open(self, server: ServerProcess, *, resume: bool = False) -> Peer:
        ws = await ws_connect(server.url, subprotocols=[Subprotocol("papo.v1")], open_timeout=10)
        hello: dict[str, Any] = {"type": "hello", "name": self.name}
        if resume:
            hello |= {"token": self.token, "resume_from": self.last_id}
        await ws.send(json.dumps(hello))
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if event["type"] == "welcome":
                break
            assert event["type"] not in ("error",), event
        self.token = event["token"]
        self.ws = ws
        self._reader = asyncio.create_task(self._read(ws))
        return self

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                event = json.loads(raw)
                if event["type"] == "message":
                    self.received.append(event)
                cid = event.get("cid")
                if event["type"] in ("ack", "error") and cid in self._answers:
                    future = self._answers.pop(cid)
                    if not future.done():
                        future.set_result(event)
        except ConnectionClosed:
            pass

    async def send(self, text: str, cid: str) -> int:
        """Send ``text`` until it is acknowledged (the same cid each time); its id."""
        assert self.ws is not None
        while True:
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._answers[cid] = future
            await self.ws.send(json.dumps({"type": "say", "text": text, "cid": cid}))
            try:
                answer = await asyncio.wait_for(future, 30)
            except TimeoutError:
                continue  # no answer: send again, it is stored once
            if answer["type"] == "ack":
                return int(answer["id"])
            assert answer["code"] == "store_unavailable", answer
            self.refused += 1
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


def instance(start_server: StartServer, setup: SentinelSetup, *flags: str) -> ServerProcess:
    return start_server(
        "--redis", setup.url, "--presence-grace", "0.3", "--rate-limit", "0", *flags
    )  # fmt: skip


async def test_two_instances_through_sentinel_acknowledge_what_the_replica_has(
    start_server: StartServer, sentinels: SentinelSetup
) -> None:
    a = instance(start_server, sentinels)
    b = instance(start_server, sentinels)
    # no --redis-wait: the master has a replica, so a message waits for one
    assert a.logged("acknowledging after 1 replica(s)"), "".join(a.log)
    ana = await Peer("ana").open(a)
    bia = await Peer("bia").open(b)
    for i in range(20):
        message_id = await ana.send(f"olá {i}", f"c{i}")
        # acknowledged means replicated: the replica has it by the time of the ack
        assert (message_id, "ana", f"olá {i}") in stream(sentinels.replica)
    await until(lambda: len(bia.received) >= 20, "bia gets ana's messages on b", 30)
    assert [m["text"] for m in bia.received] == [f"olá {i}" for i in range(20)]
    assert ana.refused == 0
    await ana.close()
    await bia.close()


async def test_a_sentinel_masters_client_waits_for_a_free_connection(
    sentinels: SentinelSetup,
) -> None:
    """More commands at once than the pool has connections: redis-py's own Sentinel pool
    refuses the extra ones at once ("Too many connections"); papo's waits for a free one
    (papo/redis_pools.py), so every command is served, over at most that many."""
    target = parse_redis_url(sentinels.url)
    client = connect(target, pool_size=2, pool_wait=30.0, socket_timeout=10.0)
    sentinel = Sentinel([target.nodes[0]])  # type: ignore[no-untyped-call]
    plain = sentinel.master_for(target.master, max_connections=2)
    try:
        # each BLPOP holds its connection for 0.2 s (the list stays empty)
        waited = await asyncio.gather(*(client.blpop([f"nothing{i}"], 0.2) for i in range(12)))
        assert waited == [None] * 12
        pool = client.connection_pool
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 2
        refused = await asyncio.gather(
            *(plain.blpop([f"nothing{i}"], 0.2) for i in range(12)), return_exceptions=True
        )
        assert any(isinstance(r, MaxConnectionsError) for r in refused), refused
    finally:
        await disconnect(client)
        await disconnect(plain)


async def test_a_message_not_confirmed_in_time_still_arrives_and_its_resend_is_stored_once(
    sentinels: SentinelSetup,
) -> None:
    """WAIT times out (the replica is stopped): the append fails with NotReplicated, yet the
    message is on the master, and is delivered once the replica has it (so the sender is
    told it may still arrive: papo/store.py); sent again with its cid it is not stored
    again: the earlier id comes back, not new, and it is delivered once."""
    store = RedisStore(sentinels.url, wait=1)
    delivered: list[Stored] = []
    store.on_message = lambda batch: delivered.extend(message for message, _ in batch)
    await store.open()
    message = Stored(
        0, "ana", "ana", "não confirmada", "2026-01-01T00:00:00Z", cid="c1",
        room="#geral", conv="#geral", home=True,
    )  # fmt: skip
    replica = sentinels.replica.proc
    assert replica is not None
    try:
        replica.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(NotReplicated) as refused:
                await store.append(message)
            assert isinstance(refused.value, StoreUnconfirmed)
            assert [text for _, _, text in stream(sentinels.master)] == ["não confirmada"]
        finally:
            replica.send_signal(signal.SIGCONT)
        stored, new = await resent(store, message)
        assert not new
        assert stream(sentinels.master) == [(stored.id, "ana", "não confirmada")]
        await until(lambda: bool(delivered), "the message is delivered", 30)
        assert [m.id for m in delivered] == [stored.id]
    finally:
        await store.close()


async def test_sigkill_of_the_master_during_traffic_loses_no_acknowledged_message(
    start_server: StartServer, sentinels: SentinelSetup
) -> None:
    a = instance(start_server, sentinels, "--redis-wait", "1")
    b = instance(start_server, sentinels, "--redis-wait", "1")
    writers = [await Peer("w0").open(a), await Peer("w1").open(b)]
    watchers = [await Peer("live-a").open(a), await Peer("live-b").open(b)]
    leaver = await Peer("leaver").open(a)  # gone during the switch, resumes on b after it
    acked: dict[str, int] = {}  # text → id, once acknowledged
    stop = asyncio.Event()

    async def write(peer: Peer) -> None:
        i = 0
        while not stop.is_set():
            text = f"{peer.name}#{i}"
            acked[text] = await peer.send(text, cid=f"{peer.name}-{i}")
            i += 1
            await asyncio.sleep(0.02)

    traffic = [asyncio.create_task(write(peer)) for peer in writers]
    await until(lambda: len(acked) >= 30, "traffic flows", 30)

    # The replica freezes (SIGSTOP) and the master drops its link: the next messages
    # reach only the master, WAIT refuses them, and the master dies with them (SIGKILL).
    old, replica = sentinels.master, sentinels.replica
    assert replica.proc is not None
    replica.proc.send_signal(signal.SIGSTOP)
    assert ask(old.port, "CLIENT", "KILL", "TYPE", "replica") == 1
    refusals = sum(peer.refused for peer in writers)
    await until(
        lambda: sum(peer.refused for peer in writers) > refusals,
        "a message the replica did not confirm is refused",
        30,
    )
    old.stop(signal.SIGKILL)
    replica.proc.send_signal(signal.SIGCONT)
    await leaver.close()
    for server in (a, b):  # the switch: both say so
        await until(answers(server, 503), "/healthz 503", 30, blocking=True)
    before_switch = len(acked)
    await until(
        lambda: sentinels.current_master() is replica,
        "the sentinels promote the replica",
        60,
        blocking=True,
    )
    old.start()  # back as a replica of the new master (the sentinels reconfigure it)
    await until(lambda: sentinels.in_sync(old), "the old master replicates", 90, blocking=True)
    for server in (a, b):
        await until(answers(server, 200), "/healthz 200 again", 60, blocking=True)
    after_switch = len(acked)
    await until(lambda: len(acked) >= after_switch + 30, "messages are acknowledged again", 60)
    stop.set()
    await asyncio.gather(*traffic)
    await leaver.open(b, resume=True)

    stored = stream(replica)  # the master now
    ids = [i for i, _, _ in stored]
    assert ids == sorted(set(ids)), "ids are unique and in order"
    texts = [text for _, _, text in stored]
    assert len(set(texts)) == len(texts), "a message was stored twice"
    by_text = {text: i for i, _, text in stored}
    lost = {text: i for text, i in acked.items() if by_text.get(text) != i}
    assert not lost, f"acknowledged messages lost or renumbered: {lost}"
    assert set(by_text) == set(acked), "every stored message was acknowledged"
    refused = sum(peer.refused for peer in writers)
    assert refused > 0, "the switch must have refused some messages"
    for peer in [*writers, *watchers, leaver]:
        expected = [i for i, sender, _ in stored if sender != peer.name]
        await until(has(peer, len(expected)), f"{peer.name} gets every message", 60)
        got = [m["id"] for m in peer.received]
        assert got == expected, (peer.name, len(got), len(expected))
    for peer in [*writers, *watchers, leaver]:
        await peer.close()
    print(
        f"acknowledged {len(acked)} ({before_switch} before the kill, "
        f"{after_switch - before_switch} during the switch); {refused} refusals"
    )


def test_a_bad_sentinel_url_is_refused_at_start_saying_why(tmp_path: Path) -> None:
    for url, says in (
        ("redis+sentinel://127.0.0.1:26379", "the master's name is missing"),
        ("redis+sentinel://127.0.0.1:99999/papo", "the port must be a number from 1 to 65535"),
        ("redis+sentinel://:secret@127.0.0.1/papo", "put passwords in the query"),
        ("redis+sentinel://127.0.0.1/papo?passwd=x", "unknown parameter 'passwd'"),
    ):
        done = _server(tmp_path, "--redis", url)
        assert done.returncode == 2 and says in done.stderr, (url, done.stderr)
        assert "secret" not in done.stderr


def test_a_sentinel_that_knows_no_such_master_is_a_clear_start_up_error(
    tmp_path: Path, sentinels: SentinelSetup
) -> None:
    nodes = ",".join(f"127.0.0.1:{s.port}" for s in sentinels.sentinels)
    done = _server(tmp_path, "--redis", f"redis+sentinel://{nodes}/nope")
    assert done.returncode == 1, done.stderr
    assert "know no master named 'nope'" in done.stderr, done.stderr


def test_redis_wait_beyond_the_replicas_is_a_clear_start_up_error(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    done = _server(tmp_path, "--redis", redis_server.url, "--redis-wait", "1")
    assert done.returncode == 1, done.stderr
    assert "0 of 1 replica(s) confirmed" in done.stderr, done.stderr
    assert "lower --redis-wait" in done.stderr


def _server(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``server.py`` run until it exits (these configurations must not start)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "--port", "0", "--data", str(tmp_path), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
