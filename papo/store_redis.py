"""The shared store (``--redis URL``): several papo instances, one chat, through Redis.

Everything the instances share lives in Redis. The chat-wide keys carry the
hash tag ``{papo}``; each room's keys its own (``{r:<room key>}``), each
user's theirs (``{u:<user key>}``), each direct conversation's its own
(``{d:<conversation key>}``), so the data can later spread over a Redis
Cluster (issue 13; today the scripts touch several tags, which one Redis
allows):

``{papo}:seq``                  the last message id handed out (INCR), chat-wide
``{r:<room>}:messages``         a room's history: a stream whose entry ids are
                                ``0-<message id>``, trimmed to ``retention``
``{d:<conv>}:messages``         a direct conversation's history, the same way
``{papo}:direct``               every direct message again, for delivery: every
                                instance reads it (a new conversation needs no
                                discovery), trimmed to about ``retention``
``{papo}:trims``                conversation → the oldest id it keeps, once trimmed
``{r:<room>}:meta``, ``:members``  a room (name, topic, ...) and its members
``{u:<user>}:rooms``, ``:read``, ``:directs``  a user's rooms, read markers and
                                direct conversations
``{r:<room>}:rewritten``        a room's edited and deleted entries, out of its stream
                                (a sorted set by id; ``{d:<conv>}:rewritten`` and
                                ``{papo}:direct:rewritten`` the same: see
                                :mod:`papo.store_redis_lifecycle`)
``{papo}:rooms``                every room's key
``{papo}:cid:<sender>:<cid>``   a message id by its client id, for a day
``{papo}:account:<key>``        an account (a hash)
``{papo}:revoked:<token id>``   a revoked token (from before devices), until it would expire
``{u:<user>}:devices``          the user's devices (token families): id → JSON, expiring
                                with the newest token
``{papo}:health:<instance>``    the probe write of a health check while writes fail
``{papo}:secret``               the token-signing secret, created once
``{papo}:instances``            live instances, scored by their last heartbeat
``{papo}:presence:<instance>``  that instance's users: key → "sessions<TAB>name"
``{papo}:wake:<instance>``      markers that wake that instance's reader
``{papo}:events`` (channel)     presence joins and leaves, and room changes
                                (join, part, topic, read; see
                                :mod:`papo.store_redis_rooms`)

Messages are appended by one script (check the cid, INCR, XADD to the
conversation's stream), with every message queued meanwhile in the same call
(group commit). Each instance reads back only the streams of the rooms its
users are in, the default room's and the shared direct stream, with one
reader loop that delivers in global id order (:mod:`papo.store_redis_reader`):
each message goes once into the instance's in-memory ring and to the hub
(``on_message``). The sender is answered only once its own reader has seen the
message, so whatever it is told comes after every earlier message was
delivered here. A resume or a page of a conversation this instance did not
follow from far enough back reads the conversations' streams and merges them.

Presence: each instance keeps its users' session counts in its own hash and
beats every few seconds; a script decides atomically whether a user appears
or disappears for the whole chat and publishes the join or leave. An instance
that stops beating is reaped by the next beat of any other: its users who are
on no other instance are announced as gone, but only by an instance that has
beaten for that long itself: when a partition cut them all off, the first
one back waits for the others instead of reaping them. One that was cut off from
Redis tells it again about every user it has once its beats work again, so
those are announced as back.

Where Redis is comes from :mod:`papo.redis_connect` (one server, or the master
Redis Sentinel names, found again after a failover); how many replicas must
confirm each append and each read before anything is acknowledged or
delivered, from :mod:`papo.redis_wait` (``--redis-wait``).

When Redis is unreachable nothing crashes: appends fail with
:class:`~papo.store.StoreError` (the sender is told), the reader, the
publisher and the heartbeat retry with backoff, ``ping`` fails (``/healthz``
says 503), and when Redis is back each loop picks up where it stopped.
Events published while an instance was cut off from Redis are not replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable, Collection
from functools import partial
from typing import Any, cast

from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import NoScriptError, RedisError, WatchError

from papo.devices import Device, beyond_limit, device_from_json
from papo.moderation_redis import RedisModeration
from papo.names import KEY_RULE, name_key
from papo.redis_connect import disconnect
from papo.redis_wait import NotReplicated
from papo.store import DEFAULT_RETENTION, Account, RoomRecord, Stored, StoreError
from papo.store_redis_base import (
    CID_TTL,
    DIRECT,
    EVENTS,
    INSTANCES,
    LEGACY_STREAM,
    PREFIX,
    REDIS_FAILURES,
    SEQ,
    TRIMS,
    _backoff,
    _cancel,
    _entry,
    append_batch,
    append_failure,
    log,
    user_devices,
)
from papo.store_redis_lifecycle import RedisLifecycle

__all__ = ["RedisStore"]

APPEND_BATCH = 500  # messages per append script call at most
REFRESH_TRIES = 10  # optimistic retries of a device refresh that raced another
WAKE_TTL = 86_400  # an instance's wake stream outlives a crash by a day at most


class RedisStore(RedisModeration, RedisLifecycle):
    """The :class:`~papo.store.Store` interface over a Redis server shared by instances."""

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
        super().__init__(
            url,
            retention,
            default_room=default_room,
            heartbeat=heartbeat,
            dead_after=dead_after,
            wait=wait,
        )
        self._queue: list[tuple[Stored, str, asyncio.Future[tuple[bool, int]]]] = []
        self._wake_writer = asyncio.Event()
        self._dirty: set[str] = set()  # keys whose presence Redis has not been told yet
        self._names_gone: dict[str, str] = {}  # names of users gone, until Redis is told
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._presence_hash = f"{PREFIX}presence:{self.instance}"
        self._beating_since: float | None = None  # monotonic time heartbeats work since
        #: Called with the seconds each append took in Redis (metrics set it).
        self.observe_commit: Callable[[float], None] = lambda seconds: None

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Load the recent history, register this instance and start the loops."""
        where = f"cannot use Redis at {self.target.safe}"
        try:  # (first contact: with --redis-wait 0 no replica check, a PING)
            await self._call(self._check_replication if self.replicas.asks else self._ping, where)
        except StoreError as exc:
            if isinstance(exc.__cause__, MasterNotFoundError):
                raise StoreError(
                    f"{where}: the sentinels there know no master named {self.target.master!r} "
                    "(are the sentinels running, and is it the name in their "
                    "'sentinel monitor' line?)"
                ) from None
            raise
        await self._call(self._load_ring, where)
        if self.replicas.wanted:  # what was loaded is delivered: it must be replicated
            try:
                await self._call(self._probe_write, where)
            except NotReplicated as exc:
                raise StoreError(
                    f"{where}: {exc}; start the replicas, or lower --redis-wait"
                ) from None
        legacy = await self._call(lambda: self._redis.exists(LEGACY_STREAM), "cannot use Redis")
        if legacy:
            log.warning(
                "%s holds messages from before rooms; they are not shown (not migrated)",
                LEGACY_STREAM,
            )
        await self._call(self._rekey_accounts, "cannot make the account keys again in Redis")
        await self._call(self._beat_once, "cannot register this instance in Redis")
        await self.who()
        self._reading = True  # Redis answered; the reader says when that stops
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write_loop(), name="papo-redis-writer"),
            loop.create_task(self._read_loop(), name="papo-redis-reader"),
            loop.create_task(self._event_loop(), name="papo-redis-events"),
            loop.create_task(self._event_worker(), name="papo-redis-event-worker"),
            loop.create_task(self._beat_loop(), name="papo-redis-heartbeat"),
            loop.create_task(self._sync_loop(), name="papo-redis-presence"),
        ]
        log.info(
            "store redis %s as instance %s: %d messages in the ring, last id %d; "
            "acknowledging after %d replica(s)",
            self.target.safe,
            self.instance,
            len(self.log.ring),
            self.log.committed,
            self.replicas.wanted,
        )

    async def close(self) -> None:
        """Stop the loops and disconnect.

        This instance's presence entries are left to expire as after a crash:
        its users get the same grace to come back on another instance (a
        rolling restart does not flap everyone's presence); those who do not
        are announced as gone by the other instances within ``dead_after``.
        """
        self._stop_lifecycle()
        await _cancel(self._tasks)
        for _, _, future in self._queue:
            future.cancel()
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cancel()
        with contextlib.suppress(*REDIS_FAILURES):
            await self._redis.delete(self._wake_stream)
        await disconnect(self._redis)
        await disconnect(self._blocking)

    # ---------------------------------------------------------------- messages

    async def append(self, message: Stored, origin: int | None = None) -> tuple[Stored, bool]:
        new, message_id = await self._submit(message, origin)
        await self._reached(message_id)
        return message.with_id(message_id), new

    def enqueue(
        self, make: Callable[[int], Stored], origin: int | None = None
    ) -> asyncio.Future[Stored]:
        """Queue a room message for the next append (see :class:`~papo.store.Enqueues`):
        done once this instance's reader delivered it, as :meth:`append` returns.

        The id comes from Redis, so the message is built under 0 and copied under
        its id. Its ``cid`` is new here; Redis may still know it (sent again through
        another instance): then it is done under the id it had (nothing is stored).
        """
        message = make(0)
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._submit(message, origin).add_done_callback(partial(self._appended, message, done))
        return done

    def _submit(self, message: Stored, origin: int | None) -> asyncio.Future[tuple[bool, int]]:
        """Queue ``message`` for the writer: (new, id) once Redis has it."""
        future: asyncio.Future[tuple[bool, int]] = asyncio.get_running_loop().create_future()
        self._queue.append((message, f"{self.instance}:{origin or ''}", future))
        self._wake_writer.set()
        return future

    def _appended(
        self, message: Stored, done: asyncio.Future[Stored], acked: asyncio.Future[tuple[bool, int]]
    ) -> None:
        """An enqueued message's append answered: wait for the reader, or fail."""
        if done.done():
            return
        if acked.cancelled():
            done.cancel()
            return
        error = acked.exception()
        if error is not None:
            done.set_exception(error)
            return
        _new, message_id = acked.result()
        self._when_delivered(message.with_id(message_id), done)

    async def _write_loop(self) -> None:
        """Append what was queued meanwhile in one script call (Redis's group commit).

        Under load a call carries many messages, so the cost of a round trip
        and of redis-py's per-command work is shared; when idle a message goes
        alone at once. The batch goes as one JSON string (``APPEND``), and each
        message appended is kept for the reader (``_mine``), which then hands on
        this very object instead of one built again from the stream's fields.
        """
        while True:
            if not self._queue:
                await self._wake_writer.wait()
                self._wake_writer.clear()
                continue
            batch, self._queue = self._queue[:APPEND_BATCH], self._queue[APPEND_BATCH:]
            entries = [_entry(message, origin) for message, origin, _ in batch]
            args: list[str | int] = [
                self.retention,
                self.log.committed,
                CID_TTL,
                append_batch(entries),
            ]
            started = time.perf_counter()
            try:
                reply = await self._append_replicated(args)
            except Exception as exc:  # Redis or the connection to it; the loop must live on
                if not isinstance(exc, RedisError | OSError | NotReplicated):
                    log.exception("appending failed unexpectedly")
                error = append_failure(exc)
                self.health.failed(str(error))
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.health.succeeded()
            self.observe_commit(time.perf_counter() - started)
            mine = self._mine
            for index, (message, origin, future) in enumerate(batch):
                new, message_id = bool(reply[2 * index]), int(reply[2 * index + 1])
                if new and message_id > self.log.committed:  # (else the reader has it)
                    mine[message_id] = (origin, message.with_id(message_id))
                if not future.done():
                    future.set_result((new, message_id))

    async def _append_replicated(self, args: list[str | int]) -> list[int]:
        """The append script over ``args``, followed by ``WAIT`` when replicas must confirm it
        (:mod:`papo.redis_wait`): on the same connection, in one round trip."""
        keys = [SEQ, TRIMS, DIRECT]
        wait = self.replicas.command()
        if wait is None:
            return cast(list[int], await self._append(keys=keys, args=args))
        for attempt in (1, 2):
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.evalsha(self._append.sha, len(keys), *keys, *args)
                    pipe.execute_command(*wait)
                    reply, confirmed = await pipe.execute()
            except NoScriptError:  # a new master (a failover) has not seen the script yet
                if attempt == 2:
                    raise
                await self._redis.script_load(self._append.script)
                continue
            self.replicas.check(confirmed, wait[1], "the message is not on enough replicas")
            return cast(list[int], reply)
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        """Redis answers, the reader reads, and the last writes succeeded (while they
        failed, a small probe write is tried: see :mod:`papo.health`)."""
        await self._call(self._redis.ping, "Redis does not answer")
        if not self._reading:
            raise StoreError(self._problem)
        if self.health.problem is None:
            return
        with contextlib.suppress(StoreError):  # recorded by _call
            await self._call(self._probe_write, "cannot write to Redis")
            self.health.succeeded()
        problem = self.health.problem
        if problem is not None:
            raise StoreError(problem)

    async def _ping(self) -> None:
        await self._redis.ping()

    async def _probe_write(self) -> None:
        """The health check's small write, confirmed by as many replicas as a message
        must be (so /healthz says 200 only when a message could be stored): a plain
        ``SET`` when messages wait for none."""
        key, now = f"{PREFIX}health:{self.instance}", int(time.time())
        wait = self.replicas.command()
        if wait is None:
            await self._redis.set(key, now, ex=60)
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(key, now, ex=60)
            pipe.execute_command(*wait)
            replies = await pipe.execute()
        try:
            self.replicas.check(replies[1], wait[1], "a write is not on enough replicas")
        except NotReplicated as exc:
            self.health.failed(str(exc))
            raise

    # ---------------------------------------------------------------- presence

    def present(self, key: str, name: str, sessions: int) -> None:
        self._here[key] = (name, sessions)
        self._dirty.add(key)
        self._wake.set()

    def absent(self, key: str, name: str) -> None:
        self._here.pop(key, None)
        if self._local.pop(key, None) is not None:
            self._set_want()  # the reader stops reading rooms nobody here is in
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
            except REDIS_FAILURES as exc:
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
        now = time.monotonic()
        if self._beating_since is None:
            self._beating_since = now
        # An instance judges others dead only once it has beaten for dead_after
        # itself: one that just started, or just came back from a cut, has not
        # seen whether they beat meanwhile, and when a partition cut them all
        # off the first one back would announce everyone else as gone.
        judge = now - self._beating_since >= self.dead_after
        reaped, left, registered = await self._beat(
            keys=[INSTANCES, self._presence_hash, EVENTS],
            args=[self.instance, self.dead_after, int(self.dead_after * 2), int(judge)],
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

    def _present_again(self) -> None:
        """After heartbeats failed: tell Redis again about every user here.

        Cut off from Redis, this instance may have been reaped by another one
        (its users announced as gone), and its presence hash made again since
        by one user who came meanwhile, so the beat finds it registered. Users
        Redis still has are written again as they were, announcing nothing;
        those it lost are announced as back.
        """
        log.info(
            "telling Redis again who is here (%d users), after failed heartbeats", len(self._here)
        )
        self._dirty |= set(self._here)
        self._wake.set()

    async def _beat_loop(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.heartbeat if not failures else _backoff(failures))
            try:
                await self._beat_once()
                if failures and self._here:
                    self._present_again()
                await self.who()  # refreshes who is online anywhere
                await self._check_replication()  # a failover may have changed the replicas
            except (*REDIS_FAILURES, StoreError) as exc:
                failures += 1
                self._beating_since = None
                self._lost(f"heartbeat failed: {exc}", failures)
                continue
            failures = 0

    # ---------------------------------------------------------------- accounts

    async def secret(self) -> bytes:
        async def get() -> str:
            await self._redis.set(PREFIX + "secret", secrets.token_hex(32), nx=True)
            return cast(str, await self._redis.get(PREFIX + "secret"))

        value = bytes.fromhex(await self._call(get, "cannot read the secret from Redis"))
        if len(value) < 32:
            raise StoreError(f"{PREFIX}secret in Redis is damaged (under 32 bytes)")
        return value

    async def _rekey_accounts(self) -> None:
        """Move accounts kept under the key rule of before (``joão``) to today's (``joao``), once.

        Without this, ``joao`` typed by anyone would find no account and make an
        open one beside João's protected ``joão``. When two accounts become one
        name, the older keeps it (as the SQLite store does) and the newer is
        kept aside under ``{papo}:account-set-aside:<key>``; each collision is
        logged once. Other data keyed by name (memberships, read markers,
        direct conversations) is not moved: see the README. Idempotent, so
        instances starting together may both run it.
        """
        marker = PREFIX + "name-keys"
        if await self._redis.get(marker) == str(KEY_RULE):
            return
        moves: dict[str, list[tuple[float, str, dict[str, str]]]] = {}
        async for raw in self._redis.scan_iter(match=PREFIX + "account:*", count=1000):
            old = str(raw).removeprefix(PREFIX + "account:")
            new = name_key(old)
            if new != old:
                fields = cast(dict[str, str], await self._redis.hgetall(raw))
                if fields:
                    moves.setdefault(new, []).append((float(fields.get("created", 0)), old, fields))
        for new, olds in moves.items():
            current = cast(dict[str, str], await self._redis.hgetall(PREFIX + "account:" + new))
            candidates = sorted(olds)
            if current:
                candidates.append((float(current.get("created", 0)), new, current))
                candidates.sort()
            _keep_created, keep_key, keep = candidates[0]
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(PREFIX + "account:" + new, mapping=cast(Any, keep))
                for _created, old, fields in olds:
                    pipe.delete(PREFIX + "account:" + old)
                    if old != keep_key:
                        pipe.hset(PREFIX + "account-set-aside:" + old, mapping=cast(Any, fields))
                if current and keep_key != new:
                    pipe.hset(PREFIX + "account-set-aside:" + new, mapping=cast(Any, current))
                await pipe.execute()
            for _created, _old, fields in candidates[1:]:
                log.warning(
                    "accounts %r and %r are one name now; %r (the older) keeps it, "
                    "%r must choose another name",
                    keep.get("name"),
                    fields.get("name"),
                    keep.get("name"),
                    fields.get("name"),
                )
        await self._redis.set(marker, str(KEY_RULE))
        if moves:
            log.info(
                "moved %d accounts to the key rule %d", sum(map(len, moves.values())), KEY_RULE
            )

    async def set_aside_account(self, key: str) -> Account | None:
        return await self._account(PREFIX + "account-set-aside:" + key, key)

    async def get_account(self, key: str) -> Account | None:
        return await self._account(PREFIX + "account:" + key, key)

    async def _account(self, redis_key: str, key: str) -> Account | None:
        fields = cast(
            dict[str, str],
            await self._call(
                lambda: self._redis.hgetall(redis_key),
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

    # ---------------------------------------------------------------- devices

    async def devices(self, key: str) -> list[Device]:
        fields = cast(
            dict[str, str],
            await self._call(
                lambda: self._redis.hgetall(user_devices(key)), "cannot read the devices from Redis"
            ),
        )
        now = time.time()
        found = (device_from_json(raw) for raw in fields.values())
        return [d for d in found if d is not None and d.expires > now]

    async def add_device(self, device: Device) -> None:
        hash_key = user_devices(device.user_key)

        async def add() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(hash_key, device.id, device.to_json())
                # Every device expires at most a token lifetime after its last
                # write, and this write is the newest: the hash may go with it.
                pipe.expireat(hash_key, int(device.expires) + 60)
                pipe.hgetall(hash_key)
                replies = await pipe.execute()
            kept = cast(dict[str, str], replies[-1])
            parsed = {field: device_from_json(raw) for field, raw in kept.items()}
            damaged = [field for field, d in parsed.items() if d is None]
            gone = beyond_limit([d for d in parsed.values() if d is not None], time.time())
            if damaged or gone:
                await self._redis.hdel(hash_key, *damaged, *gone)

        await self._call(add, "cannot keep the device in Redis")

    async def refresh_device(
        self, key: str, device_id: str, gen: int, *, now: float, address: str, ttl: float
    ) -> Device | None:
        hash_key = user_devices(key)

        async def refresh() -> Device | None:
            # Optimistic: WATCH the user's devices, apply Device.refreshed, and
            # write only if nobody changed them meanwhile (another instance
            # refreshing or ending one); otherwise read again.
            async with self._redis.pipeline(transaction=True) as pipe:
                for _ in range(REFRESH_TRIES):
                    try:
                        await pipe.watch(hash_key)
                        raw = await pipe.hget(hash_key, device_id)
                        device = None if raw is None else device_from_json(str(raw))
                        if device is None or device.user_key != key:
                            return None
                        fresh = device.refreshed(gen, now, address, ttl)
                        if fresh is None:
                            return None
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.hset(hash_key, device_id, fresh.to_json())
                        pipe.expireat(hash_key, int(fresh.expires) + 60)
                        await pipe.execute()
                        return fresh
                    except WatchError:
                        continue
            raise StoreError("the device changed on every try; try again")

        return await self._call(refresh, "cannot refresh the device in Redis")

    async def end_devices(
        self, key: str, ids: Collection[str] | None = None, *, keep: str | None = None
    ) -> list[str]:
        hash_key = user_devices(key)
        wanted = None if ids is None else sorted(ids)
        event = json.dumps(
            {"e": "devices", "k": key, "n": "", "d": wanted, "keep": keep, "i": self.instance}
        )

        async def end() -> list[str]:
            found = cast(list[str], await self._redis.hkeys(hash_key))
            gone = [i for i in found if i != keep and (wanted is None or i in wanted)]
            if gone:
                await self._redis.hdel(hash_key, *gone)
            await self._redis.publish(EVENTS, event)  # the other instances close theirs
            return gone

        gone = await self._call(end, "cannot end the devices in Redis")
        self.on_devices(key, None if ids is None else frozenset(ids), keep)
        return gone
