"""Several instances, one chat, through a real Redis Cluster (3 masters, one replica each).

The module shares one cluster (started by the test from Debian's redis-server,
see :mod:`tests.redis_cluster`), flushed before each test; the failover test
starts its own, as it kills a master. In CI these tests must run; elsewhere,
without redis-server and redis-cli, they are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import MaxConnectionsError

from papo.client_session import ChatSession
from papo.cluster_ids import slot_of_id
from papo.names import direct_key
from papo.protocol import Hello, Join, Message, RoomJoined
from papo.redis_pools import WaitingCluster
from papo.redis_wait import NotReplicated
from papo.store_cluster import ClusterStore
from papo.store_records import RoomRecord, Stored
from tests.conftest import StartServer
from tests.helpers import JsonClient, ServerProcess, need, resent
from tests.redis_cluster import RedisClusterServers, cluster_missing, command
from tests.test_crash_proof import Row, prove_no_gap_no_duplicate


@pytest.fixture(scope="module")
def cluster_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    need(cluster_missing(), "the Redis Cluster tests")
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster")).start()
    yield servers
    servers.stop()


@pytest.fixture
def cluster(cluster_servers: RedisClusterServers) -> RedisClusterServers:
    """The module's cluster, emptied."""
    cluster_servers.flush()
    return cluster_servers


def pair(
    start_server: StartServer, cluster: RedisClusterServers, *flags: str
) -> list[ServerProcess]:
    args = ("--redis", cluster.url, "--presence-grace", "0.3", "--rate-limit", "0", *flags)
    return [start_server(*args), start_server(*args)]


def stream(conv: str) -> str:
    return f"{{d:{conv}}}:messages" if conv.startswith("@") else f"{{r:{conv}}}:messages"


def rooms_on_every_master(cluster: RedisClusterServers) -> list[str]:
    """One room name per master (found by asking the cluster where each would live)."""
    found: dict[int, str] = {}
    for i in range(200):
        name = f"#sala{i}"
        found.setdefault(cluster.master_of(stream(name)).port, name)
        if len(found) == len(cluster.masters()):
            return sorted(found.values())
    raise AssertionError("no room name for some master")


async def join(client: JsonClient, room: str) -> None:
    await client.send({"type": "join", "room": room})
    event = await client.expect("room", timeout=10)
    assert event["event"] == "joined" and event["room"] == room, event


async def test_rooms_on_three_shards_route_across_two_instances(
    start_server: StartServer, cluster: RedisClusterServers
) -> None:
    a, b = pair(start_server, cluster)
    rooms = rooms_on_every_master(cluster)
    ana = await JsonClient.open(a.url, "ana")
    beto = await JsonClient.open(b.url, "beto")
    for room in rooms:
        await join(ana, room)
        await join(beto, room)
    await beto.quiet(0.5)
    for room in rooms:
        ack = await ana.say(f"em {room}", room=room)
        got = await beto.expect("message", timeout=10)
        assert (got["text"], got["room"], got["id"]) == (f"em {room}", room, ack["id"])
        # the id says in which slot it was handed out: the room's
        assert slot_of_id(ack["id"]) == cluster.keyslot(stream(room))
    masters = {cluster.master_of(stream(room)).port for room in rooms}
    assert len(masters) == 3, "the rooms did not land on three shards"
    for room in rooms:
        master = cluster.master_of(stream(room))
        assert command(master.port, "XLEN", stream(room)) == 1
    # an answer from B goes back to A, in every room
    for room in rooms:
        ack = await beto.say(f"de volta em {room}", room=room)
        got = await ana.expect("message", timeout=10)
        assert (got["text"], got["id"]) == (f"de volta em {room}", ack["id"])
    # the instance registry and accounts stay in one small global slot
    assert cluster.keyslot("{papo}:instances") == cluster.keyslot("{papo}:account:ana")


async def test_a_cluster_client_waits_for_a_turn_instead_of_failing(
    cluster: RedisClusterServers,
) -> None:
    """More commands and pipelines at once than the client's pool size: redis-py's own
    RedisCluster refuses the extra ones at once (MaxConnectionsError, as it has no
    blocking pool); papo's WaitingCluster lets them wait for a turn (papo/redis_pools.py),
    so all are served, and no node got more connections than the turns."""
    startup = [ClusterNode("127.0.0.1", node.port) for node in cluster.masters()]
    client = WaitingCluster(startup_nodes=startup, pool_size=2, pool_wait=30.0)
    plain = RedisCluster(startup_nodes=startup, max_connections=2)
    try:
        await client.initialize()
        before = {node.name: len(node._connections) for node in client.get_nodes()}

        async def piped(i: int) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(f"k{i}", i)
                pipe.blpop([f"nothing{i}"], 0.2)
                return await pipe.execute()

        # each BLPOP holds a connection for 0.2 s (the lists stay empty)
        waited = await asyncio.gather(
            *(client.blpop([f"nothing{i}"], 0.2) for i in range(8)),
            *(piped(i) for i in range(4)),
        )
        assert waited == [None] * 8 + [[True, None]] * 4
        for node in client.get_nodes():
            assert len(node._connections) <= before[node.name] + 2, node
        refused = await asyncio.gather(
            *(plain.blpop(["nothing"], 0.2) for _ in range(8)), return_exceptions=True
        )
        assert any(isinstance(r, MaxConnectionsError) for r in refused), refused
    finally:
        await client.aclose()
        await plain.aclose()


async def test_direct_messages_and_history_across_instances(
    start_server: StartServer, cluster: RedisClusterServers
) -> None:
    a, b = pair(start_server, cluster)
    ana = await JsonClient.open(a.url, "ana")
    beto = await JsonClient.open(b.url, "beto")
    await beto.quiet(0.3)
    # the first message of a new conversation: B starts following it
    ack = await ana.say("oi, só pra ti", to="beto")
    got = await beto.expect("message", timeout=10)
    assert (got["text"], got["to"], got["id"]) == ("oi, só pra ti", "beto", ack["id"])
    ack = await beto.say("oi ana", to="ana")
    got = await ana.expect("message", timeout=10)
    assert (got["text"], got["from"], got["id"]) == ("oi ana", "beto", ack["id"])
    # someone offline: carla gets it when she comes back, on the other instance
    carla = await JsonClient.open(b.url, "carla")
    await carla.close()
    await ana.expect("presence", timeout=10)  # carla joined
    await ana.expect("presence", timeout=10)  # and left
    assert (await ana.say("carla, quando vieres", to="carla"))["type"] == "ack"
    carla = await JsonClient.open(b.url, "carla")
    context = [e for e in await carla.quiet(1.0) if e["type"] == "message"]
    assert [e["text"] for e in context if e.get("to") == "carla"] == ["carla, quando vieres"]
    assert {d["with"] for d in carla.welcome["direct"]} == {"ana"}
    # history of a room and of a direct conversation, written on A, read on B
    for i in range(5):
        await ana.say(f"geral {i}")
    await beto.quiet(0.5)
    await beto.send({"type": "history", "room": "#geral", "limit": 3})
    page = await beto.expect("history", timeout=10)
    assert [m["text"] for m in page["messages"]] == ["geral 2", "geral 3", "geral 4"]
    assert page["more"] is True
    await beto.send({"type": "history", "with": "ana"})
    page = await beto.expect("history", timeout=10)
    assert [m["text"] for m in page["messages"]] == ["oi, só pra ti", "oi ana"]


async def test_per_conversation_since_and_ring_on_a_real_cluster(
    cluster: RedisClusterServers,
) -> None:
    home = RoomRecord("#geral", "#geral")
    one = ClusterStore(cluster.url, default_room=home, heartbeat=1.0)
    other = ClusterStore(cluster.url, default_room=home, heartbeat=1.0)
    await one.open()
    await other.open()
    try:
        for store in (one, other):
            await store.user_state("ana", "ana", home)
        rooms = rooms_on_every_master(cluster)[:2]
        for room in rooms:
            record, _ = await one.create_room(RoomRecord(room, room))
            await one.add_member(record, "ana", "ana")
        await other.user_state("ana", "ana", home)  # follows the two rooms there too
        sent: dict[str, list[int]] = {room: [] for room in rooms}
        for i in range(30):
            room = rooms[i % 2]
            message = Stored(
                0, "ana", "ana", f"{room} {i}", "2026-01-01T00:00:00Z", room=room, conv=room
            )
            stored, new = await one.append(message)
            assert new
            sent[room].append(stored.id)
        for room in rooms:
            assert sent[room] == sorted(sent[room])  # increasing in each conversation
            assert await other.reach_conv(room, sent[room][-1], within=10)
            for store in (one, other):
                assert store.log.covers_conv(room, 0)
                ring = [m.id for m in store.log.since_conv(room, sent[room][4], 100)]
                assert ring == sent[room][5:]
                from_redis = [m.id for m in await store.since(room, sent[room][4], 7)]
                assert from_redis == sent[room][5:12]
        assert len({i for ids in sent.values() for i in ids}) == 30
    finally:
        await one.close()
        await other.close()


async def test_a_late_follow_event_still_delivers_the_first_direct_messages(
    cluster: RedisClusterServers,
) -> None:
    """The recipient's instance learns of a new direct conversation after its first
    messages are stored: following it then hands them on, they are not just kept."""
    home = RoomRecord("#geral", "#geral")
    one = ClusterStore(cluster.url, default_room=home, heartbeat=1.0)
    other = ClusterStore(cluster.url, default_room=home, heartbeat=1.0)
    await one.open()
    await other.open()
    delivered: list[Stored] = []
    arrived = asyncio.Event()

    def deliver(batch: Sequence[tuple[Stored, int | None]]) -> None:
        delivered.extend(message for message, _ in batch)
        arrived.set()

    async def until(ids: list[int]) -> None:
        async with asyncio.timeout(20):
            while [m.id for m in delivered if m.conv == conv] != ids:
                arrived.clear()
                await arrived.wait()

    other.on_message = deliver
    conv = direct_key("ana", "beto")
    gate = asyncio.Event()
    follow_event = other._follow_event

    async def late(conv: str, users: list[str]) -> None:
        await gate.wait()
        await follow_event(conv, users)

    other._follow_event = late  # type: ignore[method-assign]
    try:
        await one.user_state("ana", "ana", home)
        await other.user_state("beto", "beto", home)
        sent = []
        for i in range(3):
            message = Stored(
                0, "ana", "ana", f"oi {i}", "2026-01-01T00:00:00Z", "beto", "beto", conv=conv
            )
            stored, _ = await one.append(message)
            sent.append(stored.id)
        gate.set()
        await until(sent)
        stored, _ = await one.append(message.with_id(0))  # and what follows, once
        await until([*sent, stored.id])
    finally:
        await one.close()
        await other.close()


async def test_a_message_not_confirmed_on_a_shard_still_arrives_and_is_stored_once(
    cluster: RedisClusterServers,
) -> None:
    """The replica of the shard that took a message is stopped: WAIT times out, the
    append fails with NotReplicated, yet the message is on the shard's master and is
    delivered once the replica has it; re-sent with its cid it is stored once."""
    store = ClusterStore(cluster.url, wait=1)
    delivered: list[Stored] = []
    arrived = asyncio.Event()

    def deliver(batch: Sequence[tuple[Stored, int | None]]) -> None:
        delivered.extend(message for message, _ in batch)
        arrived.set()

    store.on_message = deliver
    await store.open()
    key = stream("#geral")
    master = cluster.master_of(key)
    replica = next(
        n for n in cluster.nodes
        if n.alive() and n.role() == "slave"
        and int(n.info("replication")["master_port"]) == master.port
    )  # fmt: skip
    assert replica.proc is not None
    message = Stored(
        0, "ana", "ana", "não confirmada", "2026-01-01T00:00:00Z", cid="c1",
        room="#geral", conv="#geral", home=True,
    )  # fmt: skip
    try:
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(NotReplicated):
                await store.append(message)
            assert command(master.port, "XLEN", key) == 1  # on the master
        finally:
            replica.proc.send_signal(signal.SIGCONT)
        stored, new = await resent(store, message)
        assert not new
        assert command(master.port, "XLEN", key) == 1
        async with asyncio.timeout(30):
            while not delivered:
                arrived.clear()
                await arrived.wait()
        assert [m.id for m in delivered] == [stored.id]
    finally:
        await store.close()
        await asyncio.to_thread(cluster.until_healthy)


# ---------------------------------------------------------------- a master dies


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    """A cluster of this test's own (it kills a master)."""
    need(cluster_missing(), "the Redis Cluster tests")
    servers = RedisClusterServers(tmp_path / "cluster").start()
    yield servers
    servers.stop()


class Sender:
    """Sends its messages with cids, one at a time, re-sending each until acknowledged."""

    def __init__(self, url: str, name: str, room: str, count: int) -> None:
        self.url, self.name, self.room, self.count = url, name, room, count
        self.acked: dict[str, int] = {}  # text → id
        self.refusals = 0
        self.flowing = asyncio.Event()  # a quarter of the messages is acknowledged

    async def run(self) -> None:
        client = await JsonClient.open(self.url, self.name)
        await join(client, self.room)
        for i in range(self.count):
            text = f"{self.name} {i}"
            while text not in self.acked:
                try:
                    answer = await client.say(text, room=self.room, cid=f"{self.name}-{i}")
                except TimeoutError:
                    self.refusals += 1
                    continue
                if answer["type"] == "ack":
                    self.acked[text] = answer["id"]
                    if len(self.acked) >= self.count // 4:
                        self.flowing.set()
                else:
                    assert answer["code"] == "store_unavailable", answer
                    self.refusals += 1
                    await asyncio.sleep(0.2)
            await asyncio.sleep(0.02)
        await client.close()


class Reader:
    """A real client (the terminal client's library) in one room: it reconnects and
    resumes each conversation from its own position (``resume``)."""

    def __init__(self, url: str, name: str, room: str) -> None:
        self.session = ChatSession(url, max_backoff=1.0)
        self.name, self.room = name, room
        self.got: list[Message] = []
        self.changed = asyncio.Event()  # a message came, or the room was joined
        self.joined = False
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.session.connect()
        await self.session.join(Hello(self.name))
        self.task = asyncio.create_task(self._read())
        await self.session.send(Join(self.room))
        await self.until(lambda: self.joined, 30)

    async def _read(self) -> None:
        async for event in self.session.events():
            if isinstance(event, Message) and event.room == self.room:
                self.got.append(event)
            elif isinstance(event, RoomJoined) and event.room == self.room:
                self.joined = True
            self.changed.set()

    def sent_by(self, name: str) -> list[Message]:
        return [m for m in self.got if m.sender == name]

    def has_all(self, name: str, count: int) -> bool:
        return len(self.sent_by(name)) >= count

    async def until(self, done: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        await self.session.close()
        if self.task is not None:
            await self.task


@pytest.mark.timeout(600)
async def test_a_master_killed_during_traffic_loses_no_acknowledged_message(
    start_server: StartServer, own_cluster: RedisClusterServers
) -> None:
    """Every acknowledged message reaches its reader exactly once, in order, though the
    room's master is SIGKILLed during traffic and, after the failover, the readers'
    papo instance too (they resume per conversation with the terminal client's code)."""
    cluster = own_cluster
    a, b = pair(start_server, cluster, "--redis-wait", "1")
    rooms = rooms_on_every_master(cluster)
    readers = {room: Reader(b.url, f"leitor{room[5:]}", room) for room in rooms}
    for reader in readers.values():
        await reader.start()
    senders = [Sender(a.url, f"autor{room[5:]}", room, 60) for room in rooms]
    tasks = [asyncio.create_task(s.run()) for s in senders]
    victim = cluster.master_of(stream(rooms[0]))
    async with asyncio.timeout(60):
        await senders[0].flowing.wait()  # traffic is flowing
    victim.kill()  # SIGKILL
    await asyncio.to_thread(cluster.wait_failover)
    # the readers' instance dies too: they resume each room from their own position
    # on it, while the new master has no replica yet
    await asyncio.to_thread(b.restart)
    # the new master has no replica: nothing is acknowledged (WAIT 1) until one is back
    await asyncio.to_thread(cluster.rejoin, victim)
    async with asyncio.timeout(180):
        await asyncio.gather(*tasks)
    assert senders[0].refusals >= 1, "the kill did not touch the room's traffic"
    for sender in senders:
        reader = readers[sender.room]
        await reader.until(partial(reader.has_all, sender.name, len(sender.acked)), 60)
        mine = reader.sent_by(sender.name)
        assert sorted(m.text for m in mine) == sorted(sender.acked), "missing, or twice"
        assert all(m.id == sender.acked[m.text] for m in mine)
        assert [m.id for m in mine] == sorted(m.id for m in mine)  # in order
        assert reader.session.reconnects >= 1, "the reader did not resume"
    for reader in readers.values():
        await reader.close()


# ---------------------------------------------------------------- an instance dies


async def test_sigkilled_instance_on_the_cluster_no_gap_no_duplicate(
    start_server: StartServer, cluster: RedisClusterServers
) -> None:
    """tests/test_crash_proof.py's proof, with the chat in the cluster.

    Room and private messages: the terminal client resumes each conversation from
    its own position (``resume``), the only exact position in cluster mode, where
    ids increase per conversation and not across them.
    """
    server = start_server("--redis", cluster.url, "--presence-grace", "0.3", "--rate-limit", "0")

    def stored() -> list[Row]:
        client: Any = redis_py.RedisCluster(
            host="127.0.0.1", port=cluster.nodes[0].port, decode_responses=True
        )
        try:
            streams = ["{r:#geral}:messages"]
            streams += client.scan_iter(match="{d:*}:messages", target_nodes=client.PRIMARIES)
            rows: list[Row] = []
            for name in streams:
                for entry_id, f in client.xrange(name):
                    rows.append((int(entry_id.rpartition("-")[2]), f["k"], f["x"], f.get("rk")))
            return sorted(rows)
        finally:
            client.close()

    await prove_no_gap_no_duplicate(server, stored)
