"""What the parts of the Redis store share: key names, connections, the log, parsing.

See :mod:`papo.store_redis` for the whole design. This module holds no loop:
:class:`RedisBase` opens the connections and registers the scripts,
:class:`RedisLog` is the in-memory ring when an instance reads only some
conversations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from papo import redis_scripts
from papo.health import WriteHealth
from papo.names import DIRECT_PREFIX
from papo.protocol import UserInfo
from papo.redis_connect import connect, parse_redis_url
from papo.redis_wait import ReplicaWait
from papo.store import (
    DEFAULT_RETENTION,
    RING_SIZE,
    Announce,
    Deliver,
    DevicesEnded,
    MessageLog,
    RoomChanged,
    RoomRecord,
    Stored,
    StoreError,
    StoreUnconfirmed,
    no_announcement,
    no_delivery,
    no_devices_ended,
    no_room_change,
)

log = logging.getLogger("papo.store_redis")

T = TypeVar("T")

PREFIX = "{papo}:"
SEQ = PREFIX + "seq"
INSTANCES = PREFIX + "instances"
EVENTS = PREFIX + "events"
TRIMS = PREFIX + "trims"  # conversation → the oldest id it still keeps, once trimmed
DIRECT = PREFIX + "direct"  # every direct message, for delivery: every instance follows it
ROOMS = PREFIX + "rooms"  # every room's key
LEGACY_STREAM = PREFIX + "messages"  # the one stream of before rooms
CID_TTL = 86_400  # seconds a client id is remembered: retries come within minutes
READ_BLOCK_MS = 5_000
READ_COUNT = 1_000
BACKOFF_CAP = 5.0
#: What a failing Redis raises: its errors, and a cluster's own (a slot no node serves
#: during a failover, ...), which redis-py does not derive from RedisError.
REDIS_FAILURES = (RedisError, RedisClusterException)
CANCEL_ROUNDS = 10  # times a loop that goes on is cancelled again when closing
CANCEL_WAIT = 0.5  # seconds to wait for the loops after each cancellation


def room_stream(room_key: str) -> str:
    return f"{{r:{room_key}}}:messages"


def stream_of(conv: str) -> str:
    """The stream of a conversation: a room's, or a direct conversation's own."""
    if conv.startswith(DIRECT_PREFIX):
        return f"{{d:{conv}}}:messages"
    return room_stream(conv)


def rewritten_of(stream: str) -> str:
    """The sorted set beside a stream that holds its rewritten entries (edited, deleted).

    A stream entry cannot be changed in place, nor added again under its old
    id, so an entry that is rewritten leaves the stream (XDEL) and its new
    version (the latest text, or a tombstone without text) is kept here,
    scored by its id; readers merge the two (see :mod:`papo.store_redis_lifecycle`).
    """
    base = stream.removesuffix(":messages")
    return f"{base}:rewritten"


def room_meta(room_key: str) -> str:
    return f"{{r:{room_key}}}:meta"


def room_members(room_key: str) -> str:
    return f"{{r:{room_key}}}:members"


def user_directs(key: str) -> str:
    return f"{{u:{key}}}:directs"


def user_devices(key: str) -> str:
    """A user's devices (:mod:`papo.devices`): device id → the device as JSON."""
    return f"{{u:{key}}}:devices"


class RedisLog(MessageLog):
    """The ring of an instance that reads only the conversations its users are in.

    ``complete_from`` says, per followed room, from which id on the ring holds
    every message of it (the instance started reading the room then, or loaded
    its recent messages); ``direct_from`` the same for every direct
    conversation (the shared direct stream, followed from the start).
    ``ring_from`` rises as the full ring drops its oldest messages.
    """

    def __init__(self, retention: int, ring_size: int) -> None:
        super().__init__(retention, ring_size)
        self.complete_from: dict[str, int] = {}
        self.direct_from = 0
        self.ring_from = 0

    def covers(self, after: int, convs: Collection[str] = ()) -> bool:
        if after >= self.committed:
            return True
        start = max(self.ring_from, self.ring[0].id if self._full() else 0)
        for conv in convs:
            if conv.startswith(DIRECT_PREFIX):
                since = self.direct_from
            else:
                since = self.complete_from.get(conv, self.committed + 1)
            if max(start, since) > after + 1:
                return False
        return True

    def _full(self) -> bool:
        return bool(self.ring) and len(self.ring) == self.ring.maxlen

    def commit(self, messages: list[Stored]) -> None:
        super().commit(messages)
        if self._full():
            self.ring_from = max(self.ring_from, self.ring[0].id)

    def merge(self, messages: Iterable[Stored]) -> None:
        """Put older messages (of a conversation just followed) in the ring, in id order."""
        known = {m.id for m in self.ring}
        fresh = [m for m in messages if m.id not in known]
        if not fresh:
            return
        merged = sorted([*self.ring, *fresh], key=lambda m: m.id)
        maxlen = self.ring.maxlen
        self.ring = deque(merged, maxlen=maxlen)
        if maxlen is not None and len(merged) > maxlen:
            self.ring_from = max(self.ring_from, self.ring[0].id)
        for m in fresh:
            if m.cid is not None:
                self._remember(m.sender_key, m.cid, m)

    def forget(self, conv: str) -> None:
        """A conversation no longer followed: its messages leave the ring."""
        self.complete_from.pop(conv, None)
        if any(m.conv == conv for m in self.ring):
            self.ring = deque((m for m in self.ring if m.conv != conv), maxlen=self.ring.maxlen)


class RedisBase:
    """The connections, scripts, callbacks and the log every part of the store uses."""

    def __init__(
        self,
        url: str,
        retention: int = DEFAULT_RETENTION,
        *,
        default_room: RoomRecord | None = None,
        heartbeat: float = 5.0,
        dead_after: float = 15.0,
        wait: int | None = None,
    ) -> None:
        self.url = url
        #: where Redis is (one server, or a master Sentinel finds); BadRedisUrl if unclear
        self.target = parse_redis_url(url)
        #: replicas each message must reach before its ack (``--redis-wait``)
        self.replicas = ReplicaWait(wait)
        self.retention = retention
        self.default_room = default_room or RoomRecord("#geral", "#geral")
        self.heartbeat = heartbeat
        self.dead_after = dead_after
        self.instance = f"{socket.gethostname()}-{secrets.token_hex(4)}"
        #: the ring, as the hub sees it (``log``) and as the store uses it (``ring``)
        self._log = RedisLog(retention, RING_SIZE)
        self.log: MessageLog = self._log
        self.on_message: Deliver = no_delivery
        self.on_presence: Announce = no_announcement
        self.on_room: RoomChanged = no_room_change
        self.on_devices: DevicesEnded = no_devices_ended
        #: What the last writes said, for ``/healthz``.
        self.health = WriteHealth()
        # One immediate retry, on a broken connection only, lets a command find
        # a fresh connection after Redis restarted; a timeout is not retried,
        # as the command may have run.
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": 2.0,
            "retry": Retry(NoBackoff(), 1, (RedisConnectionError,)),
        }
        self._redis, self._blocking = self._clients(url, common)
        register = self._redis.register_script
        s = redis_scripts
        self._append = register(s.APPEND)
        self._user_state = register(s.USER_STATE)
        self._conv_state = register(s.CONV_STATE)
        self._create_room = register(s.CREATE_ROOM)
        self._add_member = register(s.ADD_MEMBER)
        self._remove_member = register(s.REMOVE_MEMBER)
        self._set_topic = register(s.SET_TOPIC)
        self._set_read = register(s.SET_READ)
        self._forget_guest = register(s.FORGET_GUEST)
        self._sync = register(s.SYNC)
        self._beat = register(s.BEAT)
        self._who = register(s.WHO)
        self._last_seen = register(s.LAST_SEEN)
        self._messages_by = register(s.MESSAGES_BY)
        self._here: dict[str, tuple[str, int]] = {}  # this instance's users: key → (name, n)
        # Users online on any instance, as of the last `who` and the presence
        # events since: good enough for advisory notices and room counts.
        self._anywhere: set[str] = set()
        self._reading = False  # the reader's last XREAD succeeded
        self._problem = "not connected to Redis yet"

    def _clients(self, url: str, common: dict[str, Any]) -> tuple[Redis, Redis]:
        """The client for commands, and one for blocking reads (XREAD BLOCK, SUBSCRIBE),
        which get connections of their own (the cluster store connects otherwise)."""
        return (
            connect(self.target, socket_timeout=5.0, **common),
            connect(self.target, socket_timeout=READ_BLOCK_MS / 1000 + 5.0, **common),
        )

    async def _call(self, fn: Callable[[], Awaitable[T]], what: str) -> T:
        """Run one Redis interaction; a Redis failure becomes a :class:`StoreError`."""
        try:
            return await fn()
        except REDIS_FAILURES as exc:
            self.health.failed(f"{what}: {exc}")
            raise StoreError(f"{what}: {exc}") from exc

    def _lost(self, problem: str, failures: int) -> None:
        self._reading = False
        self._problem = problem
        level = logging.WARNING if failures == 1 else logging.DEBUG
        log.log(level, "redis: %s (retrying)", problem)

    async def who(self) -> list[UserInfo]:
        reply = await self._call(
            lambda: self._who(keys=[INSTANCES], args=[self.dead_after]),
            "cannot read who is online from Redis",
        )
        self._anywhere = {str(reply[i]) for i in range(0, len(reply), 3)}
        return [UserInfo(str(reply[i + 1]), int(reply[i + 2])) for i in range(0, len(reply), 3)]

    async def set_online(self, key: str, name: str, online: bool) -> None:
        """Presence already lives in Redis, shared by every instance: nothing to keep here."""

    async def online_before(self) -> list[tuple[str, str]]:
        return []

    async def is_online(self, key: str) -> bool:
        """From what this instance knows (no Redis round trip per private message)."""
        # Here: a session, or within the presence grace (not yet announced as gone).
        return key in self._here or key in self._anywhere

    def _stored(self, entry_id: str, fields: dict[str, str]) -> Stored:
        conv = fields.get("v", "")
        return Stored(
            _id(entry_id),
            fields["s"],
            fields["k"],
            fields["x"],
            fields["t"],
            fields.get("r"),
            fields.get("rk"),
            fields.get("c"),
            fields.get("m"),
            conv,
            conv == self.default_room.key,
            fields.get("e", ""),
            int(fields.get("tg") or 0),
            fields.get("ed"),
            fields.get("by"),
        )


#: A stream range as read with ``decode_responses=True``: ``[(entry id, fields)]``.
Entries = list[tuple[str, dict[str, str]]]


def _entries(reply: object) -> Entries:
    """A stream range reply with its real type (redis-py types replies loosely)."""
    return cast(Entries, reply or [])


def _fields(message: Stored) -> dict[str, str]:
    """A message's fields in its stream entry (and in a rewritten entry).

    ``e`` (kind), ``tg`` (target), ``ed`` (edited_ts) and ``by`` are there
    only for edit and deletion entries and rewritten messages.
    """
    fields = {"s": message.sender, "k": message.sender_key, "x": message.text}
    fields |= {"t": message.ts, "v": message.conv}
    if message.to is not None and message.to_key is not None:
        fields |= {"r": message.to, "rk": message.to_key}
    elif message.room is not None:
        fields["m"] = message.room
    if message.cid is not None:
        fields["c"] = message.cid
    if message.kind:
        fields |= {"e": message.kind, "tg": str(message.target)}
    if message.edited_ts is not None:
        fields["ed"] = message.edited_ts
    if message.by is not None:
        fields["by"] = message.by
    return fields


def _entry(message: Stored, origin: str) -> list[str | list[str]]:
    """A message as the append script reads it (see ``APPEND``): one item of the
    batch's JSON array."""
    cid_key = "" if message.cid is None else f"{PREFIX}cid:{message.sender_key}:{message.cid}"
    fields = ["o", origin]
    for name, value in _fields(message).items():
        fields += (name, value)
    if message.to is not None and message.to_key is not None:
        a_key, a_name, b_key, b_name = (
            message.sender_key,
            message.sender,
            message.to_key,
            message.to,
        )
    else:
        a_key = a_name = b_key = b_name = ""
    return [cid_key, message.conv, stream_of(message.conv), a_key, a_name, b_key, b_name, fields]


def append_batch(entries: list[list[str | list[str]]]) -> str:
    """The append script's batch argument: the entries as one JSON array (UTF-8 as is)."""
    return json.dumps(entries, ensure_ascii=False, separators=(",", ":"))


def append_failure(exc: BaseException) -> StoreError:
    """What the senders of an append batch that failed with ``exc`` are told.

    Not replicated in time (:class:`~papo.redis_wait.NotReplicated`): the batch
    is on the master, and is delivered once the replicas have it. No answer in
    time (a Redis timeout): the script may have run. Both are
    :class:`~papo.store.StoreUnconfirmed` (the message may still arrive; sent
    again with its ``cid`` it is stored once); anything else stored nothing.
    """
    if isinstance(exc, StoreUnconfirmed):
        return type(exc)(str(exc))
    if isinstance(exc, RedisTimeoutError):
        return StoreUnconfirmed(f"no answer from Redis about the message: {exc}")
    return StoreError(f"cannot store the message in Redis: {exc}")


def _id(entry_id: str) -> int:
    """``0-<n>`` → ``n``."""
    return int(entry_id.rpartition("-")[2])


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they end, cancelling again those that go on.

    A cancellation that lands inside redis-py may be swallowed: the
    ``CancelledError`` is replaced by the connection error of the clean-up
    that follows it (a pipeline's reset, a disconnect), which the loop takes for
    a Redis failure and retries, for ever. A shutdown must not hang on that.
    """
    for round_ in range(CANCEL_ROUNDS):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        if round_:
            log.debug("closing: cancelling %s again", ", ".join(t.get_name() for t in pending))
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=CANCEL_WAIT)
    stuck = [task.get_name() for task in tasks if not task.done()]
    if stuck:
        log.warning("closing: %s did not stop", ", ".join(stuck))


def _backoff(failures: int) -> float:
    return min(BACKOFF_CAP, 0.1 * 2.0 ** min(failures, 10)) * random.uniform(0.5, 1.0)
