"""The shared store (``--redis URL``): several papo instances, one chat, through Redis.

Everything the instances share lives in Redis, under keys that all carry the
hash tag ``{papo}`` (so a Redis Cluster keeps them on one shard and the Lua
scripts below may touch them together):

``{papo}:seq``                  the last message id handed out (INCR)
``{papo}:messages``             the history: a stream whose entry ids are
                                ``0-<message id>``, trimmed to ``retention``
``{papo}:cid:<sender>:<cid>``   a message id by its client id, for a day
``{papo}:account:<key>``        an account (a hash)
``{papo}:revoked:<token id>``   a revoked token, until it would expire anyway
``{papo}:secret``               the token-signing secret, created once
``{papo}:instances``            live instances, scored by their last heartbeat
``{papo}:presence:<instance>``  that instance's users: key → "sessions<TAB>name"
``{papo}:events`` (channel)     presence changes: joins and leaves

Messages are appended by one script (check the cid, INCR, XADD), with every
message queued meanwhile in the same call (group commit), and each comes
back to every instance, this one included, through one blocking XREAD loop:
each instance reads each message once, puts it in its in-memory ring and
hands it to the hub (``on_message``), which writes it to its own sessions.
The sender is answered only once its own reader has seen the message, so
whatever it is told comes after every earlier message was delivered here.

Presence: each instance keeps its users' session counts in its own hash and
beats every few seconds; a script decides atomically whether a user appears
or disappears for the whole chat and publishes the join or leave. An instance
that stops beating is reaped by the next beat of any other: its users who are
on no other instance are announced as gone.

When Redis is unreachable nothing crashes: appends fail with
:class:`~papo.store.StoreError` (the sender is told), the reader, the
publisher and the heartbeat retry with backoff, ``ping`` fails (``/healthz``
says 503), and when Redis is back each loop picks up where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from papo.protocol import UserInfo
from papo.store import (
    DEFAULT_RETENTION,
    RING_SIZE,
    Account,
    Announce,
    Deliver,
    MessageLog,
    Page,
    Stored,
    StoreError,
    no_announcement,
    no_delivery,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

PREFIX = "{papo}:"
SEQ = PREFIX + "seq"
STREAM = PREFIX + "messages"
INSTANCES = PREFIX + "instances"
EVENTS = PREFIX + "events"
CID_TTL = 86_400  # seconds a client id is remembered: retries come within minutes
READ_BLOCK_MS = 5_000
READ_COUNT = 1_000
SCAN_COUNT = 1_000
BACKOFF_CAP = 5.0
APPEND_BATCH = 500  # messages per append script call at most

# Append a batch of messages. KEYS: seq, stream.
# ARGV: retention, floor (the newest id this instance has seen), cid ttl, then
# per message: its cid key ('' when no cid), how many field strings, the fields.
# Returns new (1 or 0) and id for each message.
APPEND = """
local floor, out, i = tonumber(ARGV[2]), {}, 4
while i <= #ARGV do
  local cid_key, n = ARGV[i], tonumber(ARGV[i + 1])
  local earlier = cid_key ~= '' and redis.call('GET', cid_key)
  if earlier then
    table.insert(out, 0)
    table.insert(out, tonumber(earlier))
  else
    local id = redis.call('INCR', KEYS[1])
    if id <= floor then  -- Redis lost its data: never hand out an id twice
      id = floor + 1
      redis.call('SET', KEYS[1], id)
    end
    floor = id
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], '0-' .. id, unpack(ARGV, i + 2, i + 1 + n))
    if cid_key ~= '' then redis.call('SET', cid_key, id, 'EX', ARGV[3]) end
    table.insert(out, 1)
    table.insert(out, id)
  end
  i = i + 2 + n
end
return out
"""

# Shared by the presence scripts: the clock, the live instances, and whether
# a user has an entry on an instance other than `me`.
_PRESENCE_LIB = """
local prefix = '{papo}:'
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function live(instances, dead_after)
  return redis.call('ZRANGEBYSCORE', instances, now() - dead_after, '+inf')
end
local function elsewhere(others, me, key)
  for _, other in ipairs(others) do
    if other ~= me and redis.call('HEXISTS', prefix .. 'presence:' .. other, key) == 1 then
      return true
    end
  end
  return false
end
local function announce(channel, event, key, name)
  redis.call('PUBLISH', channel, cjson.encode({e = event, k = key, n = name}))
end
"""

# Bring this instance's entries up to date and announce what changed for the
# whole chat. KEYS: instances, own presence hash, channel.
# ARGV: me, dead_after, then triples (key, "sessions<TAB>name" or '', name).
SYNC = (
    _PRESENCE_LIB
    + """
local me, dead_after = ARGV[1], tonumber(ARGV[2])
local others = live(KEYS[1], dead_after)
local changed = 0
for i = 3, #ARGV, 3 do
  local key, value, name = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local had = redis.call('HEXISTS', KEYS[2], key) == 1
  if value == '' then
    if had then
      redis.call('HDEL', KEYS[2], key)
      if not elsewhere(others, me, key) then announce(KEYS[3], 'leave', key, name) changed = changed + 1 end
    end
  else
    redis.call('HSET', KEYS[2], key, value)
    if not had and not elsewhere(others, me, key) then
      announce(KEYS[3], 'join', key, name)
      changed = changed + 1
    end
  end
end
return changed
"""
)

# A heartbeat: this instance is alive; reap instances that stopped beating.
# KEYS: instances, own presence hash, channel. ARGV: me, dead_after, hash ttl.
BEAT = (
    _PRESENCE_LIB
    + """
local me, dead_after = ARGV[1], tonumber(ARGV[2])
local t = now()
redis.call('ZADD', KEYS[1], t, me)
redis.call('EXPIRE', KEYS[2], ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (t - dead_after))
local left = 0
for _, inst in ipairs(dead) do
  local hash = prefix .. 'presence:' .. inst
  local entries = redis.call('HGETALL', hash)
  redis.call('DEL', hash)
  redis.call('ZREM', KEYS[1], inst)
  local others = live(KEYS[1], dead_after)
  for i = 1, #entries, 2 do
    local key = entries[i]
    if not elsewhere(others, inst, key) then
      announce(KEYS[3], 'leave', key, string.match(entries[i + 1], '\\t(.*)$'))
      left = left + 1
    end
  end
end
return {#dead, left, redis.call('EXISTS', KEYS[2])}
"""
)

# Everyone online anywhere. KEYS: instances. ARGV: dead_after.
# Returns key, name, sessions, key, name, sessions, ...
WHO = (
    _PRESENCE_LIB
    + """
local totals, names, order = {}, {}, {}
for _, inst in ipairs(live(KEYS[1], tonumber(ARGV[1]))) do
  local entries = redis.call('HGETALL', prefix .. 'presence:' .. inst)
  for i = 1, #entries, 2 do
    local key = entries[i]
    local count, name = string.match(entries[i + 1], '^(%d+)\\t(.*)$')
    if totals[key] == nil then
      totals[key] = 0
      table.insert(order, key)
    end
    totals[key] = totals[key] + tonumber(count)
    if tonumber(count) > 0 or names[key] == nil then names[key] = name end
  end
end
local out = {}
for _, key in ipairs(order) do
  if totals[key] > 0 then
    table.insert(out, key)
    table.insert(out, names[key])
    table.insert(out, totals[key])
  end
end
return out
"""
)

# Remember when a user was last here, if the account exists. KEYS: account. ARGV: id.
LAST_SEEN = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_seen', ARGV[1]) end
"""


class RedisStore:
    """The :class:`~papo.store.Store` interface over a Redis server shared by instances."""

    def __init__(
        self,
        url: str,
        retention: int = DEFAULT_RETENTION,
        *,
        heartbeat: float = 5.0,
        dead_after: float = 15.0,
    ) -> None:
        self.url = url
        self.retention = retention
        self.heartbeat = heartbeat
        self.dead_after = dead_after
        self.instance = f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self.log = MessageLog(retention, RING_SIZE)
        self.on_message: Deliver = no_delivery
        self.on_presence: Announce = no_announcement
        # One immediate retry, on a broken connection only, lets a command find
        # a fresh connection after Redis restarted; a timeout is not retried,
        # as the command may have run.
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": 2.0,
            "retry": Retry(NoBackoff(), 1, (RedisConnectionError,)),
        }
        self._redis: Redis = Redis.from_url(url, socket_timeout=5.0, **common)
        # The blocking reads (XREAD BLOCK, SUBSCRIBE) get their own connections.
        self._blocking: Redis = Redis.from_url(
            url, socket_timeout=READ_BLOCK_MS / 1000 + 5.0, **common
        )
        self._append = self._redis.register_script(APPEND)
        self._sync = self._redis.register_script(SYNC)
        self._beat = self._redis.register_script(BEAT)
        self._who = self._redis.register_script(WHO)
        self._last_seen = self._redis.register_script(LAST_SEEN)
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._queue: list[tuple[list[str | int], asyncio.Future[tuple[bool, int]]]] = []
        self._wake_writer = asyncio.Event()
        self._here: dict[str, tuple[str, int]] = {}  # this instance's users: key → (name, n)
        # Users online on any instance, as of the last `who` and the presence
        # events since: good enough for the advisory "is offline" notice.
        self._anywhere: set[str] = set()
        self._dirty: set[str] = set()  # keys whose presence Redis has not been told yet
        self._names_gone: dict[str, str] = {}  # names of users gone, until Redis is told
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reading = False  # the reader's last XREAD succeeded
        self._problem = "not connected to Redis yet"
        self._presence_hash = f"{PREFIX}presence:{self.instance}"
        #: Called with the seconds each append took in Redis (metrics set it).
        self.observe_commit: Callable[[float], None] = lambda seconds: None

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Load the recent history, register this instance and start the loops."""

        async def load() -> tuple[Entries, int]:
            newest = await self._redis.xrevrange(STREAM, "+", "-", count=RING_SIZE)
            return _entries(newest), await self._oldest()

        newest, oldest = await self._call(load, f"cannot use Redis at {_safe(self.url)}")
        recent = [_stored(entry_id, fields) for entry_id, fields in reversed(newest)]
        last_id = recent[-1].id if recent else 0
        self.log.load(recent, last_id, oldest)
        await self._call(self._beat_once, "cannot register this instance in Redis")
        await self.who()
        self._reading = True  # Redis answered; the reader says when that stops
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write_loop(), name="papo-redis-writer"),
            loop.create_task(self._read_loop(), name="papo-redis-reader"),
            loop.create_task(self._event_loop(), name="papo-redis-events"),
            loop.create_task(self._beat_loop(), name="papo-redis-heartbeat"),
            loop.create_task(self._sync_loop(), name="papo-redis-presence"),
        ]
        log.info(
            "store redis %s as instance %s: %d messages kept, last id %d",
            _safe(self.url),
            self.instance,
            len(recent),
            last_id,
        )

    async def close(self) -> None:
        """Stop the loops and disconnect.

        This instance's presence entries are left to expire as after a crash:
        its users get the same grace to come back on another instance (a
        rolling restart does not flap everyone's presence); those who do not
        are announced as gone by the other instances within ``dead_after``.
        """
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, future in self._queue:
            future.cancel()
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cancel()
        await self._redis.aclose()
        await self._blocking.aclose()

    async def _call(self, fn: Callable[[], Awaitable[T]], what: str) -> T:
        """Run one Redis interaction; a Redis failure becomes a :class:`StoreError`."""
        try:
            return await fn()
        except RedisError as exc:
            raise StoreError(f"{what}: {exc}") from exc

    # ---------------------------------------------------------------- messages

    async def append(self, message: Stored, origin: int | None = None) -> tuple[Stored, bool]:
        future: asyncio.Future[tuple[bool, int]] = asyncio.get_running_loop().create_future()
        self._queue.append((_entry(message, f"{self.instance}:{origin or ''}"), future))
        self._wake_writer.set()
        new, message_id = await future
        await self._reached(message_id)
        return message.with_id(message_id), new

    async def _write_loop(self) -> None:
        """Append what was queued meanwhile in one script call (Redis's group commit).

        Under load a call carries many messages, so the cost of a round trip
        and of redis-py's per-command work is shared; when idle a message goes
        alone at once.
        """
        while True:
            if not self._queue:
                await self._wake_writer.wait()
                self._wake_writer.clear()
                continue
            batch, self._queue = self._queue[:APPEND_BATCH], self._queue[APPEND_BATCH:]
            args: list[str | int] = [self.retention, self.log.committed, CID_TTL]
            for entry, _ in batch:
                args += entry
            started = time.perf_counter()
            try:
                reply = await self._append(keys=[SEQ, STREAM], args=args)
            except RedisError as exc:
                error = StoreError(f"cannot store the message in Redis: {exc}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.observe_commit(time.perf_counter() - started)
            for index, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result((bool(reply[2 * index]), int(reply[2 * index + 1])))

    async def _reached(self, message_id: int) -> None:
        """Wait until this instance's reader has delivered ``message_id``."""
        if self.log.committed >= message_id:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(waiter)
        await waiter

    async def reach(self, message_id: int, within: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(within):
                await self._reached(message_id)
        except TimeoutError:
            return False
        return True

    async def _read_loop(self) -> None:
        """Read the shared stream for ever, in order, and hand each message to the hub."""
        failures = 0
        while True:
            cursor = f"0-{self.log.committed}"
            try:
                # Right after a failure, a read that does not block: it tells
                # at once whether Redis is back (and /healthz with it).
                reply = await self._blocking.xread(
                    {STREAM: cursor}, count=READ_COUNT, block=None if failures else READ_BLOCK_MS
                )
            except RedisError as exc:
                failures += 1
                self._lost(f"reading the message stream failed: {exc}", failures)
                await asyncio.sleep(_backoff(failures))
                continue
            if failures:
                log.info("reading the message stream again from id %d", self.log.committed)
            failures = 0
            self._reading = True
            for _stream, entries in cast(list[tuple[str, Entries]], reply or []):
                self._take(entries)

    def _take(self, entries: Entries) -> None:
        batch: list[tuple[Stored, int | None]] = []
        last = self.log.committed
        for entry_id, fields in entries:
            stored = _stored(entry_id, fields)
            if stored.id <= last:
                continue
            if stored.id != last + 1 and last:
                log.warning(
                    "messages %d to %d are missing from the stream (trimmed, or Redis lost them)",
                    last + 1,
                    stored.id - 1,
                )
            last = stored.id
            instance, _, session = fields.get("o", "").partition(":")
            here = instance == self.instance and session.isdigit()
            batch.append((stored, int(session) if here else None))
        if not batch:
            return
        self.log.commit([stored for stored, _ in batch])
        self.log.trimmed(batch[-1][0].id - self.retention + 1)
        for stored, origin in batch:
            self.on_message(stored, origin)
        for message_id in [i for i in self._waiters if i <= self.log.committed]:
            for waiter in self._waiters.pop(message_id):
                if not waiter.done():
                    waiter.set_result(None)

    async def page(self, key: str, after: int, limit: int) -> Page:
        async def scan() -> Page:
            out: list[Stored] = []
            cursor = after
            while True:
                entries = _entries(
                    await self._redis.xrange(STREAM, f"0-{cursor + 1}", "+", count=SCAN_COUNT)
                )
                for entry_id, fields in entries:
                    message = _stored(entry_id, fields)
                    cursor = message.id
                    if message.visible_to(key):
                        out.append(message)
                        if len(out) == limit:
                            return Page(out, cursor, await self._oldest())
                if len(entries) < SCAN_COUNT:
                    return Page(out, max(cursor, self.log.committed), await self._oldest())

        return await self._call(scan, "cannot read the history from Redis")

    async def _oldest(self) -> int:
        first = _entries(await self._redis.xrange(STREAM, "-", "+", count=1))
        return _id(first[0][0]) if first else 0

    async def ping(self) -> None:
        await self._call(self._redis.ping, "Redis does not answer")
        if not self._reading:
            raise StoreError(self._problem)

    def _lost(self, problem: str, failures: int) -> None:
        self._reading = False
        self._problem = problem
        level = logging.WARNING if failures == 1 else logging.DEBUG
        log.log(level, "redis: %s (retrying)", problem)

    # ---------------------------------------------------------------- presence

    def present(self, key: str, name: str, sessions: int) -> None:
        self._here[key] = (name, sessions)
        self._dirty.add(key)
        self._wake.set()

    def absent(self, key: str, name: str) -> None:
        self._here.pop(key, None)
        self._dirty.add(key)
        self._names_gone[key] = name
        self._wake.set()

    async def _sync_loop(self) -> None:
        """Tell Redis what changed here, in batches, in order, for ever."""
        failures = 0
        while True:
            if not self._dirty:
                await self._wake.wait()
                self._wake.clear()
                continue
            keys, self._dirty = self._dirty, set()
            args: list[str | float] = [self.instance, self.dead_after]
            for key in keys:
                if key in self._here:
                    name, sessions = self._here[key]
                    args += [key, f"{sessions}\t{name}", name]
                else:
                    args += [key, "", self._names_gone.get(key, key)]
            try:
                await self._sync(keys=[INSTANCES, self._presence_hash, EVENTS], args=args)
            except RedisError as exc:
                failures += 1
                self._dirty |= keys
                self._lost(f"updating presence failed: {exc}", failures)
                await asyncio.sleep(_backoff(failures))
                continue
            failures = 0
            for key in keys:
                if key not in self._here and key not in self._dirty:
                    self._names_gone.pop(key, None)

    async def _beat_once(self) -> None:
        reaped, left, registered = await self._beat(
            keys=[INSTANCES, self._presence_hash, EVENTS],
            args=[self.instance, self.dead_after, int(self.dead_after * 2)],
        )
        if reaped:
            log.warning(
                "%d instance(s) stopped beating; %d of their users announced as gone",
                reaped,
                left,
            )
        if not registered and self._here:  # Redis lost our entries (restart, reaped)
            log.warning(
                "presence of %d users here was lost in Redis; restoring it", len(self._here)
            )
            self._dirty |= set(self._here)
            self._wake.set()

    async def _beat_loop(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.heartbeat if not failures else _backoff(failures))
            try:
                await self._beat_once()
                await self.who()  # refreshes who is online anywhere
            except (RedisError, StoreError) as exc:
                failures += 1
                self._lost(f"heartbeat failed: {exc}", failures)
                continue
            failures = 0

    async def _event_loop(self) -> None:
        """Receive joins and leaves from every instance (this one too) and hand them on."""
        failures = 0
        while True:
            pubsub = self._blocking.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(EVENTS)
                if failures:
                    log.info("receiving presence events again")
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=READ_BLOCK_MS / 1000)
                    if message is not None:
                        self._event(message["data"])
            except RedisError as exc:
                failures += 1
                self._lost(f"presence events failed: {exc}", failures)
                await asyncio.sleep(_backoff(failures))
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _event(self, data: str) -> None:
        try:
            event = json.loads(data)
            kind, key, name = event["e"], str(event["k"]), str(event["n"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed presence event: %r", data[:200])
            return
        if kind == "join":
            self._anywhere.add(key)
        elif kind == "leave":
            self._anywhere.discard(key)
        else:
            return
        self.on_presence(cast(Literal["join", "leave"], kind), key, name)

    async def who(self) -> list[UserInfo]:
        reply = await self._call(
            lambda: self._who(keys=[INSTANCES], args=[self.dead_after]),
            "cannot read who is online from Redis",
        )
        self._anywhere = {str(reply[i]) for i in range(0, len(reply), 3)}
        return [UserInfo(str(reply[i + 1]), int(reply[i + 2])) for i in range(0, len(reply), 3)]

    async def is_online(self, key: str) -> bool:
        """From what this instance knows (no Redis round trip per private message)."""
        return self._here.get(key, ("", 0))[1] > 0 or key in self._anywhere

    # ---------------------------------------------------------------- accounts

    async def secret(self) -> bytes:
        async def get() -> str:
            await self._redis.set(PREFIX + "secret", secrets.token_hex(32), nx=True)
            return cast(str, await self._redis.get(PREFIX + "secret"))

        value = bytes.fromhex(await self._call(get, "cannot read the secret from Redis"))
        if len(value) < 32:
            raise StoreError(f"{PREFIX}secret in Redis is damaged (under 32 bytes)")
        return value

    async def get_account(self, key: str) -> Account | None:
        fields = cast(
            dict[str, str],
            await self._call(
                lambda: self._redis.hgetall(PREFIX + "account:" + key),
                "cannot read the account from Redis",
            ),
        )
        if not fields or "name" not in fields:
            return None
        password_hash = fields.get("hash") or ""
        return Account(
            key,
            fields["name"],
            bytes.fromhex(password_hash) if password_hash else None,
            float(fields.get("created", 0)),
            int(fields.get("last_seen", 0)),
        )

    async def save_account(self, account: Account) -> None:
        mapping: dict[Any, str | float] = {  # (redis-py wants its own key type)
            "name": account.name,
            "hash": account.password_hash.hex() if account.password_hash else "",
            "created": account.created,
            "last_seen": account.last_seen,
        }
        await self._call(
            lambda: self._redis.hset(PREFIX + "account:" + account.key, mapping=mapping),
            "cannot save the account in Redis",
        )

    async def set_last_seen(self, key: str, message_id: int) -> None:
        await self._call(
            lambda: self._last_seen(keys=[PREFIX + "account:" + key], args=[message_id]),
            "cannot update the account in Redis",
        )

    async def revoke_token(self, token_id: str, expires: float) -> None:
        await self._call(
            lambda: self._redis.set(PREFIX + "revoked:" + token_id, 1, exat=int(expires) + 1),
            "cannot revoke the token in Redis",
        )

    async def is_revoked(self, token_id: str) -> bool:
        count = await self._call(
            lambda: self._redis.exists(PREFIX + "revoked:" + token_id),
            "cannot check the token in Redis",
        )
        return bool(count)


#: A stream range as read with ``decode_responses=True``: ``[(entry id, fields)]``.
Entries = list[tuple[str, dict[str, str]]]


def _entries(reply: object) -> Entries:
    """A stream range reply with its real type (redis-py types replies loosely)."""
    return cast(Entries, reply or [])


def _entry(message: Stored, origin: str) -> list[str | int]:
    """A message as the append script reads it: cid key, field count, fields."""
    cid_key = "" if message.cid is None else f"{PREFIX}cid:{message.sender_key}:{message.cid}"
    fields: list[str | int] = ["o", origin, "s", message.sender, "k", message.sender_key]
    fields += ["x", message.text, "t", message.ts]
    if message.to is not None and message.to_key is not None:
        fields += ["r", message.to, "rk", message.to_key]
    if message.cid is not None:
        fields += ["c", message.cid]
    return [cid_key, len(fields), *fields]


def _id(entry_id: str) -> int:
    """``0-<n>`` → ``n``."""
    return int(entry_id.rpartition("-")[2])


def _stored(entry_id: str, fields: dict[str, str]) -> Stored:
    return Stored(
        _id(entry_id),
        fields["s"],
        fields["k"],
        fields["x"],
        fields["t"],
        fields.get("r"),
        fields.get("rk"),
        fields.get("c"),
    )


def _backoff(failures: int) -> float:
    return min(BACKOFF_CAP, 0.1 * 2.0 ** min(failures, 10)) * random.uniform(0.5, 1.0)


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user + ':***' if user else '***'}@{host}"
