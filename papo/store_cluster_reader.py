"""Reading a Redis Cluster: one reader per shard, following only this instance's conversations.

An instance follows the conversations of its users (their rooms and direct
conversations, and the default room). Redis Cluster refuses an ``XREAD`` of
streams in two hash slots, even on one node, so a shard cannot be read with
one blocking ``XREAD`` of all its streams. Instead each shard (master node)
has one reader loop of its own, with one client to that node:

1. a round reads the followed streams of that node without blocking, one
   ``XREAD`` each, all in one pipeline (one round trip), and delivers what
   came, each stream in id order: an entry is delivered only when its id is
   above the stream's cursor, and the cursor moves in the same step, so no
   entry is delivered twice, even when a stream moves between shards;
2. then it waits with one blocking ``XREAD`` of two streams of the node, in one
   slot (the node's first): its *bell*, to which every append on that node
   adds the slots it wrote to (see :mod:`papo.store_cluster`), and this
   instance's *wake* stream there (new streams to read). The next round reads
   only the streams in the slots the bells named (all of them after a wake, a
   timeout or an error, so a lost bell costs at most ``READ_BLOCK_MS``).

Following a conversation loads its recent entries and its cursor in one
script (:data:`~papo.redis_cluster_scripts.LOAD`), so what the reader reads
next is exactly what came after. With ``--redis-wait N`` a round delivers what
it read only once a write made after that read (a fence) reached N replicas:
entries come before the fence in the node's replication stream, so a
delivered message survives a failover, as an acknowledged one does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from papo.cluster_ids import SLOTS, key_slot, slot_tag
from papo.redis_cluster_scripts import LOAD
from papo.redis_pools import node_client
from papo.redis_wait import WAIT_TIMEOUT_MS, NotReplicated
from papo.store import RING_SIZE, Stored
from papo.store_cluster_log import ClusterLog
from papo.store_redis_base import (
    READ_BLOCK_MS,
    READ_COUNT,
    REDIS_FAILURES,
    Entries,
    _backoff,
    _entries,
    _id,
    log,
    rewritten_of,
    stream_of,
)
from papo.store_redis_lifecycle import RedisLifecycle, _pairs
from papo.store_redis_reader import RECENT_LOAD, START_LOAD, merged

FOLLOW_RETRY = 2.0  # seconds between checks that every wanted conversation is followed
FENCE_TTL_MS = 60_000


def trim_key(stream: str) -> str:
    """A conversation's oldest id kept once its stream was trimmed (cluster mode)."""
    return stream.removesuffix(":messages") + ":trim"


@dataclass
class _Shard:
    """Where one shard reader is: its bell and wake cursors, which slots to read next."""

    node: str
    bell_cursor: str | None = None  # None: read the tops first
    wake_cursor: str = "0-0"
    hint: set[int] | None = None  # None: read every followed stream of the node


class ClusterReader(RedisLifecycle):
    """The reading half of the cluster store (see the module docstring)."""

    shared_direct = False
    # set by the store's _clients: the cluster client, and how to connect to one node
    _cluster: RedisCluster
    _node_kwargs: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clog = ClusterLog(self.retention, RING_SIZE)
        self.log = self._clog
        self.wait_replicas = 0
        self._follow_lock = asyncio.Lock()
        self._stream_conv: dict[str, str] = {}  # followed stream → its conversation
        self._plan: dict[str, set[str]] = {}  # node name → the followed streams it serves
        self._shards: dict[str, asyncio.Task[None]] = {}
        self._nodes: dict[str, Redis] = {}  # node name → a client of that node alone
        self._first_slot: dict[str, int] = {}  # node name → its first slot (bell, wake)
        self._failing: set[str] = set()  # nodes whose reader fails now
        self._conv_waiters: dict[tuple[str, int], list[asyncio.Future[None]]] = {}
        self._load = self._redis.register_script(LOAD)
        self._side_tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- nodes

    def _node_of(self, key: str) -> str:
        return str(self._cluster.nodes_manager.get_node_from_slot(key_slot(key)).name)

    def _node_client(self, name: str) -> Redis:
        client = self._nodes.get(name)
        if client is None:
            node = self._cluster.get_node(node_name=name)
            host, port = (node.host, node.port) if node else name.rsplit(":", 1)
            client = node_client(host, int(port), **self._node_kwargs)
            self._nodes[name] = client
        return client

    def _anchor(self, node: str) -> str:
        """The hash tag of a node's first slot: its bell and wake streams live there."""
        return slot_tag(self._first_slot.get(node, 0))

    def _bell_key(self, node: str) -> str:
        return f"{{{self._anchor(node)}}}:bell"

    def _wake_key(self, node: str) -> str:
        return f"{{{self._anchor(node)}}}:wake:{self.instance}"

    def _map_slots(self) -> None:
        first: dict[str, int] = {}
        cache = self._cluster.nodes_manager.slots_cache
        for slot in range(SLOTS):
            nodes = cache.get(slot)
            if nodes:
                first.setdefault(str(nodes[0].name), slot)
        self._first_slot = first

    async def _refresh_topology(self) -> None:
        """Ask the cluster again who serves which slot (after a failure), and re-plan."""
        with contextlib.suppress(*REDIS_FAILURES, OSError):
            await self._cluster.nodes_manager.initialize()
        self._regroup()

    # ---------------------------------------------------------------- following

    async def _follow(self, *, strict: bool = False) -> None:
        """Follow exactly the conversations wanted: load the new ones, drop the others.

        A conversation that cannot be loaded now is tried again by the supervisor
        (``strict``: the error is raised instead, at start).
        """
        async with self._follow_lock:
            want = self._wanted()
            gone = self._followed - want
            for conv in gone:
                stream = stream_of(conv)
                self._cursors.pop(stream, None)
                self._stream_conv.pop(stream, None)
                self._clog.forget(conv)
            new = sorted(want - self._followed)
            results = await asyncio.gather(
                *(self._load_conv(conv) for conv in new), return_exceptions=True
            )
            loaded = set()
            for conv, result in zip(new, results, strict=True):
                if isinstance(result, BaseException):
                    if strict or not isinstance(result, (*REDIS_FAILURES, OSError)):
                        raise result
                    log.warning("cannot follow %s yet: %s", conv, result)
                else:
                    loaded.add(conv)
            self._followed = (self._followed - gone) | loaded
            if gone or loaded:
                log.debug("following %d conversations", len(self._followed))
                self._regroup(wake=True)

    async def _load_conv(self, conv: str) -> None:
        stream = stream_of(conv)
        count = START_LOAD if conv == self.default_room.key else RECENT_LOAD
        keys = [stream, rewritten_of(stream), trim_key(stream)]
        flat, rewritten, trimmed = await self._load(keys=keys, args=[count])
        recent = _pairs(flat)  # (a script's reply is not parsed as XREVRANGE's would be)
        entries = merged(recent, rewritten, count, newest_first=True)
        top = max(
            [_id(i) for i, _ in _entries(recent)[:1]] + [_id(i) for i, _ in entries[:1]] + [0]
        )
        stored = [self._stored(i, f) for i, f in reversed(entries)]
        if trimmed:
            self._clog.trim_conversation(conv, int(trimmed))
        self._clog.follow(conv, stored, stored[0].id if len(entries) == count else 0)
        self._cursors[stream] = top
        self._stream_conv[stream] = conv

    def _regroup(self, *, wake: bool = False) -> None:
        """Give each node's reader the followed streams it serves; start missing readers."""
        try:
            self._map_slots()
            plan: dict[str, set[str]] = {}
            for stream in self._cursors:
                plan.setdefault(self._node_of(stream), set()).add(stream)
        except REDIS_FAILURES as exc:  # a slot nobody serves during a failover
            log.warning("cannot plan the shard readers yet: %s", exc)
            return
        changed = {n for n in plan if plan[n] != self._plan.get(n)}
        self._plan = plan
        loop = asyncio.get_running_loop()
        for node in plan:
            task = self._shards.get(node)
            if task is None or task.done():
                self._shards[node] = loop.create_task(
                    self._shard_loop(node), name=f"papo-cluster-reader-{node}"
                )
            elif wake and node in changed:
                self._spawn(self._wake_shard(node))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        """Run ``job`` on its own, kept until it ends (a wake-up, a topology refresh)."""
        task = asyncio.get_running_loop().create_task(job)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _wake_shard(self, node: str) -> None:
        """Have a node's reader read every stream now (it may wait on its bell)."""
        with contextlib.suppress(*REDIS_FAILURES, OSError):
            await self._node_client(node).xadd(self._wake_key(node), {"w": "1"}, maxlen=10)

    # ---------------------------------------------------------------- the readers

    async def _read_loop(self) -> None:
        """The supervisor: follow what failed to load, keep a reader per shard."""
        while True:
            await asyncio.sleep(FOLLOW_RETRY)
            try:
                if self._wanted() != self._followed:
                    await self._follow()
                if any(t.done() for t in self._shards.values()) or not self._shards:
                    self._regroup()
            except Exception:  # the supervisor must live on
                log.exception("the cluster reader supervisor failed")

    async def _shard_loop(self, node: str) -> None:
        shard = _Shard(node)
        failures = 0
        while self._plan.get(node):
            try:
                await self._shard_round(shard)
            except Exception as exc:  # Redis, the connection, a failover; the loop lives on
                if _cancelling():  # (redis-py may turn a cancel into a timeout)
                    raise asyncio.CancelledError from exc
                if not isinstance(exc, (*REDIS_FAILURES, OSError, NotReplicated)):
                    log.exception("the reader of %s failed unexpectedly", node)
                failures += 1
                self._failing.add(node)
                self._lost(f"reading the message streams on {node} failed: {exc}", failures)
                shard.bell_cursor, shard.hint = None, None
                await asyncio.sleep(_backoff(failures))
                await self._refresh_topology()  # may hand this node's streams to another
                continue
            if failures:
                log.info("reading the message streams on %s again", node)
            failures = 0
            self._failing.discard(node)
            self._reading = not self._failing

    async def _shard_round(self, shard: _Shard) -> None:
        client = self._node_client(shard.node)
        bell, wake = self._bell_key(shard.node), self._wake_key(shard.node)
        if shard.bell_cursor is None:  # from here on, every bell counts
            async with client.pipeline(transaction=False) as pipe:
                pipe.xrevrange(bell, "+", "-", count=1)
                pipe.xrevrange(wake, "+", "-", count=1)
                bells, wakes = await pipe.execute()
            shard.bell_cursor = _entries(bells)[0][0] if bells else "0-0"
            shard.wake_cursor = _entries(wakes)[0][0] if wakes else "0-0"
            shard.hint = None
        streams = sorted(self._plan.get(shard.node, ()))
        if shard.hint is not None:
            streams = [s for s in streams if key_slot(s) in shard.hint]
        cursors = {s: self._cursors[s] for s in streams if s in self._cursors}
        if cursors:
            async with client.pipeline(transaction=False) as pipe:
                for stream, cursor in cursors.items():
                    pipe.xread({stream: f"0-{cursor}"}, count=READ_COUNT)
                replies = await pipe.execute()
            got = [
                item for reply in replies for item in cast(list[tuple[str, Entries]], reply or [])
            ]
            if any(entries for _, entries in got) and self.wait_replicas:
                await self._fence(client, bell)
            more = self._deliver(got)
            if more:
                shard.hint = more
                return
        reply = await client.xread(
            {bell: shard.bell_cursor, wake: shard.wake_cursor},
            count=READ_COUNT,
            block=READ_BLOCK_MS,
        )
        hint: set[int] | None = set()
        for stream, entries in cast(list[tuple[str, Entries]], reply or []):
            if stream == bell and entries:
                shard.bell_cursor = entries[-1][0]
                for _, fields in entries:
                    hint = None if hint is None else hint | _slots(fields.get("s", ""))
                if len(entries) >= READ_COUNT:
                    hint = None  # perhaps more bells than read: read everything
            elif entries:
                shard.wake_cursor = entries[-1][0]
                hint = None
        shard.hint = hint if reply else None

    async def _fence(self, client: Redis, bell: str) -> None:
        """Return once what this round read has reached ``wait_replicas`` replicas."""
        fence = bell.removesuffix(":bell") + f":fence:{self.instance}"
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(fence, 1, px=FENCE_TTL_MS)
            pipe.execute_command("WAIT", self.wait_replicas, WAIT_TIMEOUT_MS)
            _, replicas = await pipe.execute()
        if int(replicas) < self.wait_replicas:
            raise NotReplicated(f"only {replicas} of {self.wait_replicas} replicas answered")

    def _deliver(self, got: list[tuple[str, Entries]]) -> set[int]:
        """Hand on what a round read (above each stream's cursor); the slots of streams
        that had more than one read took."""
        full: set[int] = set()
        batch: list[tuple[Stored, int | None]] = []
        for stream, entries in got:
            if stream not in self._stream_conv:
                continue  # no longer followed
            if len(entries) >= READ_COUNT:
                full.add(key_slot(stream))
            for entry_id, fields in entries:
                message_id = _id(entry_id)
                if message_id <= self._cursors.get(stream, message_id):
                    continue
                self._cursors[stream] = message_id
                stored = self._stored(entry_id, fields)
                batch.append((stored, self._origin(fields)))
                if "g" in fields:
                    self._clog.trim_conversation(stored.conv, int(fields["g"]))
        batch.sort(key=lambda item: item[0].id)  # each stream's order stays; roughly time order
        if batch:
            self._clog.commit([stored for stored, _ in batch])
            for stored, _ in batch:
                if stored.kind:
                    self._rewrite_ring(stored)
            self.on_message(batch)
        self._release()
        return full

    # ---------------------------------------------------------------- waiting for one's own

    def _release(self) -> None:
        super()._release()
        newest = self._clog.newest
        for conv, message_id in [k for k in self._conv_waiters if newest.get(k[0], 0) >= k[1]]:
            for waiter in self._conv_waiters.pop((conv, message_id)):
                if not waiter.done():
                    waiter.set_result(None)

    def _conv_waiter(self, conv: str, message_id: int) -> asyncio.Future[None] | None:
        """A future done once the reader delivered ``message_id`` of ``conv`` (None: it has)."""
        if self._clog.newest.get(conv, 0) >= message_id:
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._conv_waiters.setdefault((conv, message_id), []).append(waiter)
        return waiter

    async def _reached_conv(self, conv: str, message_id: int) -> None:
        """Wait until this instance's reader delivered ``message_id`` of ``conv``."""
        waiter = self._conv_waiter(conv, message_id)
        if waiter is not None:
            await waiter

    async def reach_conv(self, conv: str, message_id: int, within: float = 2.0) -> bool:
        """Whether every entry of ``conv`` up to ``message_id`` came through here (waiting
        a little for it). A client's position in a conversation may name no entry of
        it (the newest id it saw anywhere): what must come through is the
        conversation's newest entry at or below it, asked of Redis."""
        newest = self._clog.newest.get(conv, 0)
        if newest >= message_id:
            return True
        stream = stream_of(conv)

        async def top() -> int:
            found = await self._redis.xrevrange(stream, f"0-{message_id}", f"(0-{newest}", count=1)
            return _id(str(found[0][0])) if found else 0

        wanted = await self._call(top, "cannot read the conversation from Redis")
        try:
            async with asyncio.timeout(within):
                await self._reached_conv(conv, wanted)
        except TimeoutError:
            return False
        return True

    async def _load_ring(self) -> None:
        """At start: follow the default room (its recent messages into the ring)."""
        await self._follow(strict=True)


def _slots(text: str) -> set[int]:
    return {int(part) for part in text.split() if part.isdigit()}


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
