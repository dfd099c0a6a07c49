"""The store over a Redis Cluster (``--redis redis+cluster://host:port[,host:port...]``).

The same keys as with one Redis (:mod:`papo.store_redis`), which already give
each room (``{r:#sala}``), user (``{u:ana}``) and direct conversation
(``{d:@ana|beto}``) a hash tag of its own: a Redis Cluster spreads them over
its shards by those tags. What differs:

* **ids**: no chat-wide counter. A conversation's messages are appended by a
  script on its own shard, which gives each its id there:
  ``T * 16384 + slot``, ``T`` a per-slot counter that follows the clock
  (:mod:`papo.cluster_ids`). Ids are unique across the chat, increase in
  each conversation's commit order, and stay under 2**53 until 2042. They
  do not increase across conversations in commit order: a resume is per
  conversation (``hello.resume``, see docs/protocol.md), and the ring is
  kept per conversation (:mod:`papo.store_cluster_log`).
* **no shared direct stream**: each direct conversation's stream is followed
  by the instances of its two users (:mod:`papo.store_cluster_rooms`), and
  a conversation's trim mark is a key in its own slot (``{r:#sala}:trim``)
  rather than the ``{papo}:trims`` hash.
* **reading**: one reader per shard, woken by the shard's bell
  (:mod:`papo.store_cluster_reader`).
* **writing**: what was queued meanwhile is grouped by hash slot, and each
  slot's group is appended by one script call on its node, in one pipeline
  with the bell (the slot's number, for the node's readers) and, with
  ``--redis-wait N``, ``WAIT N``: the sender is answered only once N replicas
  have the messages, so a failover loses no acknowledged message.
* **what stays global**, in the ``{papo}`` slot: accounts, tokens, the
  secret, moderation, the instance registry and presence (one entry per
  user session change, not per message), and the ``{papo}:events`` channel.

Room changes and presence keep their one-Redis scripts where those touch one
slot; the others are split in two steps (see :mod:`papo.store_cluster_rooms`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from papo.cluster_ids import (
    EPOCH_MS,
    clock_key,
    group_by_slot,
    key_slot,
    parse_cluster_url,
    slot_of_id,
)
from papo.redis_cluster_scripts import APPEND
from papo.redis_pools import WaitingCluster
from papo.redis_wait import WAIT_TIMEOUT_MS, NotReplicated
from papo.store import Stored, StoreError
from papo.store_cluster_reader import trim_key
from papo.store_cluster_rooms import ClusterRooms
from papo.store_redis import APPEND_BATCH, RedisStore
from papo.store_redis_base import (
    CID_TTL,
    EVENTS,
    READ_BLOCK_MS,
    REDIS_FAILURES,
    ROOMS,
    _fields,
    append_failure,
    log,
    rewritten_of,
    room_stream,
    stream_of,
    user_directs,
)

__all__ = ["ClusterStore"]

BELL_KEPT = 1_000  # bells a node's bell stream keeps (about: readers need only the newest)
APPEND_SHA = hashlib.sha1(APPEND.encode()).hexdigest()

Pending = tuple[Stored, "int | None", "asyncio.Future[tuple[bool, int]]"]


class ClusterStore(ClusterRooms, RedisStore):
    """The :class:`~papo.store.Store` interface over a Redis Cluster shared by instances."""

    def __init__(self, *args: Any, wait: int = 0, **kwargs: Any) -> None:
        """As :class:`~papo.store_redis.RedisStore`, and ``wait``: ``--redis-wait``
        (its WAIT goes to the node that took each write: see ``ClusterStore``'s write loop;
        the single-master replica check does not apply)."""
        super().__init__(*args, wait=0, **kwargs)
        self.wait_replicas = wait
        self._appends: list[Pending] = []
        self._known_directs: set[str] = set()  # recorded for both users already

    def _clients(self, url: str, common: dict[str, Any]) -> tuple[Redis, Redis]:
        nodes, user, password = parse_cluster_url(url)
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": 2.0,
            "username": user,
            "password": password,
        }
        # A node's own client reads (XREAD BLOCK) and appends (with WAIT): a
        # failure is handled by the store (another node may serve the slot now),
        # never retried blindly.
        self._node_kwargs = options | {
            "socket_timeout": READ_BLOCK_MS / 1000 + 5.0,
            "retry": Retry(NoBackoff(), 0),
        }
        # Clients whose commands wait for a turn when many run at once, instead
        # of failing with "Too many connections" (see papo.redis_pools).
        startup = [ClusterNode(host, port) for host, port in nodes]
        self._cluster = WaitingCluster(startup_nodes=startup, socket_timeout=5.0, **options)
        blocking = WaitingCluster(
            startup_nodes=startup, socket_timeout=READ_BLOCK_MS / 1000 + 5.0, **options
        )
        return cast(Redis, self._cluster), cast(Redis, blocking)

    async def _check_replication(self) -> None:
        """Nothing to check: each shard's WAIT counts that shard's own replicas."""

    async def open(self) -> None:
        try:
            await self._cluster.initialize()
            await cast(RedisCluster, self._blocking).initialize()
        except REDIS_FAILURES as exc:
            raise StoreError(f"cannot use the Redis Cluster at {self.target.safe}: {exc}") from exc
        await super().open()

    async def close(self) -> None:
        self._plan = {}  # a shard reader ends at its next round
        readers = list(self._shards.values())
        for task in readers:
            task.cancel()
        _, stuck = await asyncio.wait(readers, timeout=2.0) if readers else (set(), set())
        if stuck:  # a cancel redis-py swallowed in a blocking read: cut the connections
            for client in self._nodes.values():
                await client.connection_pool.disconnect()
            for task in stuck:
                task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for _, _, future in self._appends:
            future.cancel()
        for waiters in self._conv_waiters.values():
            for waiter in waiters:
                waiter.cancel()
        for node in list(self._nodes):
            with contextlib.suppress(*REDIS_FAILURES, OSError):
                await self._nodes[node].delete(self._wake_key(node))
        await super().close()
        for client in self._nodes.values():
            await client.aclose()

    async def _events_lost(self) -> None:
        with contextlib.suppress(*REDIS_FAILURES, OSError):
            await cast(RedisCluster, self._blocking).nodes_manager.initialize()

    # ---------------------------------------------------------------- messages

    async def append(self, message: Stored, origin: int | None = None) -> tuple[Stored, bool]:
        if message.to_key is not None:
            await self._open_direct(message)
        new, message_id = await self._submit(message, origin)
        if message.conv in self._followed:  # (its sender is here: it is)
            await self._reached_conv(message.conv, message_id)
        return message.with_id(message_id), new

    def _submit(self, message: Stored, origin: int | None) -> asyncio.Future[tuple[bool, int]]:
        """Queue ``message`` for its slot's next append (``enqueue`` takes room messages
        only, so no direct conversation needs opening first)."""
        future: asyncio.Future[tuple[bool, int]] = asyncio.get_running_loop().create_future()
        self._appends.append((message, origin, future))
        self._wake_writer.set()
        return future

    def _delivery_of(self, stored: Stored) -> asyncio.Future[None] | None:
        """Delivered in its conversation, as :meth:`append` waits (not at all when the
        conversation is not followed here)."""
        if stored.conv not in self._followed:
            return None
        return self._conv_waiter(stored.conv, stored.id)

    async def _open_direct(self, message: Stored) -> None:
        """Record a direct conversation for both users (once) and have it followed."""
        conv, a, b = message.conv, message.sender_key, message.to_key
        assert b is not None and message.to is not None
        if conv not in self._known_directs:

            async def record() -> bool:
                made = await asyncio.gather(
                    self._redis.hsetnx(user_directs(a), conv, f"{b}\t{message.to}"),
                    self._redis.hsetnx(user_directs(b), conv, f"{a}\t{message.sender}"),
                )
                if any(made):
                    event = {"e": "follow", "k": a, "n": "", "c": conv, "u": [a, b]}
                    await self._redis.publish(EVENTS, json.dumps(event, ensure_ascii=False))
                return True

            await self._call(record, "cannot record the direct conversation in Redis")
            self._known_directs.add(conv)
        for user in (a, b):
            if user in self._local:
                self._local[user].add(conv)
        self._set_want()
        await self._follow()

    async def _write_loop(self) -> None:
        """Append what was queued meanwhile: one script call per hash slot, all at once."""
        while True:
            if not self._appends:
                await self._wake_writer.wait()
                self._wake_writer.clear()
                continue
            batch, self._appends = self._appends, []
            by_slot: dict[int, list[Pending]] = {}
            for item in batch:
                by_slot.setdefault(key_slot(stream_of(item[0].conv)), []).append(item)
            calls = [
                self._append_slot(slot, items[start : start + APPEND_BATCH])
                for slot, items in by_slot.items()
                for start in range(0, len(items), APPEND_BATCH)
            ]
            await asyncio.gather(*calls)

    async def _append_slot(self, slot: int, items: list[Pending]) -> None:
        keys = [clock_key(slot)]
        args: list[str | int] = [self.retention, EPOCH_MS, slot, CID_TTL]
        for message, origin, _ in items:
            stream = stream_of(message.conv)
            base = stream.removesuffix(":messages")
            cid = message.cid
            keys += [stream, rewritten_of(stream), trim_key(stream)]
            keys.append(stream if cid is None else f"{base}:cid:{message.sender_key}:{cid}")
            fields: list[str | int] = ["o", f"{self.instance}:{origin or ''}"]
            for name, value in _fields(message).items():
                fields += [name, value]
            args += ["0" if cid is None else "1", len(fields), *fields]
        started = time.perf_counter()
        try:
            reply = await self._run_append(slot, keys, args)
        except Exception as exc:  # Redis, a failover, too few replicas: the loop must live on
            if not isinstance(exc, (*REDIS_FAILURES, OSError, StoreError)):
                log.exception("appending failed unexpectedly")
            error = append_failure(exc)  # not replicated in time: it may still arrive
            self.health.failed(str(error))
            for _, _, future in items:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, NotReplicated):
                self._spawn(self._refresh_topology())
            return
        self.health.succeeded()
        self.observe_commit(time.perf_counter() - started)
        for index, (_, _, future) in enumerate(items):
            if not future.done():
                future.set_result((bool(reply[2 * index]), int(reply[2 * index + 1])))

    async def _run_append(self, slot: int, keys: list[str], args: list[str | int]) -> list[Any]:
        """The append script on the node of ``slot``, its bell, and WAIT: one round trip."""
        node = str(self._cluster.nodes_manager.get_node_from_slot(slot).name)
        client = self._node_client(node)
        for _ in range(2):
            async with client.pipeline(transaction=False) as pipe:
                pipe.evalsha(APPEND_SHA, len(keys), *keys, *args)
                pipe.xadd(self._bell_key(node), {"s": slot}, maxlen=BELL_KEPT, approximate=True)
                if self.wait_replicas:
                    pipe.execute_command("WAIT", self.wait_replicas, WAIT_TIMEOUT_MS)
                replies = await pipe.execute(raise_on_error=False)
            first = replies[0]
            if isinstance(first, NoScriptError):
                await client.script_load(APPEND)
                continue
            if isinstance(first, Exception):
                raise first
            if self.wait_replicas and int(replies[-1]) < self.wait_replicas:
                raise NotReplicated(
                    f"only {replies[-1]} of {self.wait_replicas} replicas confirmed the write"
                )
            return cast(list[Any], first)
        raise StoreError("Redis lost the append script twice")

    # ---------------------------------------------------------------- reading back

    async def since(self, conv: str, after: int, limit: int) -> list[Stored]:
        """Entries of ``conv`` over ``after``, ascending, at most ``limit``: from Redis, and
        (when followed) only up to what was delivered here, the rest comes live."""

        async def read() -> list[Stored]:
            found = await self._conv_entries(conv, after, limit)
            top = self._clog.newest.get(conv) if conv in self._followed else None
            return found if top is None else [m for m in found if m.id <= top]

        return await self._call(read, "cannot read the conversation from Redis")

    async def get_message(self, message_id: int) -> Stored | None:
        found = self.log.find(message_id)
        if found is not None:
            return found
        slot = slot_of_id(message_id)  # a cluster id says in which slot to look

        async def look() -> Stored | None:
            mine = [stream_of(c) for c in sorted(self._followed)]
            found = await self._look_in([s for s in mine if key_slot(s) == slot], message_id)
            if found is None:  # an admin's request about a room nobody here is in
                rooms = cast(set[str], await self._redis.smembers(ROOMS))
                others = [room_stream(r) for r in sorted(rooms)]
                streams = [s for s in others if s not in mine and key_slot(s) == slot]
                found = await self._look_in(streams, message_id)
            return found

        return await self._call(look, "cannot find the message in Redis")

    @staticmethod
    def _script_groups(streams: list[str]) -> list[list[str]]:
        return [
            group[i : i + 100]
            for group in group_by_slot(streams).values()
            for i in range(0, len(group), 100)
        ]

    # ---------------------------------------------------------------- the append-only files

    async def _rewrite_aof(self) -> None:
        """Every master rewrites its append-only file (messages were deleted)."""
        for node in self._cluster.get_primaries():
            client = self._node_client(str(node.name))
            try:
                info = await client.info("persistence")
                if int(info.get("aof_enabled") or 0) and not int(
                    info.get("aof_rewrite_in_progress") or 0
                ):
                    await client.bgrewriteaof()
            except REDIS_FAILURES as exc:
                log.warning("cannot have %s rewrite its append-only file: %s", node.name, exc)
