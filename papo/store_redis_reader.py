"""Reading the Redis store's streams: the reader loop, following rooms, pages and history.

Each room has its own stream, and an instance reads only the streams of the
rooms its users are in, plus the default room's and the shared stream of every
direct message. One reader loop does it all, in rounds:

1. apply changes to the set of followed rooms (between rounds, so a new room's
   cursor starts at ``log.committed``: every message of every followed stream
   up to there was delivered, and anything later in the new stream has a
   larger id; its recent messages are loaded into the ring);
2. ``GET seq`` and a non-blocking ``XREAD`` of every followed stream, in one
   pipeline: ids are taken and XADDed in one script, so every id up to that
   ``seq`` is in its stream when the XREAD runs;
3. deliver what came in id order; when a stream's reply hit ``COUNT``, only
   up to the smallest last id among such streams (the rest comes next round);
   ``log.committed`` becomes the seq (or that limit): a watermark below which
   everything followed was delivered;
4. when nothing came, a blocking ``XREAD`` over the same streams and this
   instance's wake stream only waits: a new message, or a marker XADDed to
   the wake stream when the followed set must change, ends it, and the next
   round reads. (A blocking read that returns is not a snapshot of every
   stream at once, so what it returns is not delivered.)
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
from collections.abc import Collection
from dataclasses import replace
from functools import partial
from typing import Any, cast

from redis.exceptions import RedisError

from papo.redis_scripts import RAISE_SEQ
from papo.redis_wait import NotReplicated
from papo.store import RING_SIZE, Page, Stored, StoreError
from papo.store_lifecycle import erase_in_ring, find_in_ring
from papo.store_redis_base import (
    DIRECT,
    PREFIX,
    READ_BLOCK_MS,
    READ_COUNT,
    SEQ,
    TRIMS,
    Entries,
    RedisBase,
    _backoff,
    _entries,
    _id,
    log,
    rewritten_of,
    stream_of,
)

RECENT_LOAD = 200  # messages of a newly followed room put in the ring
START_LOAD = RING_SIZE // 2  # messages of the default room, and direct ones, loaded at start
FOLLOW_WAIT = 5.0  # seconds to wait for the reader to take a new room in
READ_MARK_TTL = 3_600  # seconds the reader's marker write outlives its instance
CATCH_UP_WAIT = 10.0  # more seconds to wait for a reader behind Redis (see `reach`)


class RedisReader(RedisBase):
    """The reader loop and everything that reads messages back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._cursors: dict[str, int] = {}  # followed stream → the last id read from it
        self._want: set[str] = set()  # rooms this instance's users are in
        self._followed: set[str] = set()  # rooms the reader follows
        self._follow_waiters: list[asyncio.Future[None]] = []
        self._wake_stream = f"{PREFIX}wake:{self.instance}"
        self._wake_cursor = "0-0"
        #: what the reader writes after each read to WAIT for it (papo.redis_wait)
        self._read_mark = f"{PREFIX}read-mark:{self.instance}"
        self._raise_seq_script = self._redis.register_script(RAISE_SEQ)
        #: newly followed stream → its rewritten entries above the id it was followed
        #: from: out of the stream, so the next rounds deliver them with what XREAD reads
        self._pending: dict[str, Entries] = {}
        #: id → (origin, message) of the messages this instance appended, until the
        #: reader reads them back: it hands these on instead of parsing the entry
        self._mine: dict[int, tuple[str, Stored]] = {}

    # ---------------------------------------------------------------- following

    def followed(self) -> set[str]:
        """The rooms whose streams the reader follows now."""
        return set(self._followed)

    async def _follow(self) -> None:
        """Return once the reader follows exactly the rooms wanted (``_want`` and home)."""
        if self._wanted() == self._followed:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._follow_waiters.append(waiter)
        # (when this fails the reader is failing too: it applies the change before its next try)
        with contextlib.suppress(RedisError):
            await self._redis.xadd(self._wake_stream, {"w": "1"}, maxlen=10, approximate=True)
        try:
            async with asyncio.timeout(FOLLOW_WAIT):
                await asyncio.shield(waiter)
        except TimeoutError:
            log.warning("the reader did not take in new rooms within %.0f s", FOLLOW_WAIT)

    def _wanted(self) -> set[str]:
        return self._want | {self.default_room.key}

    async def _apply_follows(self) -> None:
        """Start and stop reading rooms' streams (in the reader, between rounds)."""
        want = self._wanted()
        gone = self._followed - want
        for conv in gone:
            self._cursors.pop(stream_of(conv), None)
            self._pending.pop(stream_of(conv), None)
            self._log.forget(conv)
        committed = self.log.committed
        new = sorted(want - self._followed)
        loaded: list[Stored] = []
        for conv in new:
            stream = stream_of(conv)
            self._cursors[stream] = committed
            since = committed + 1
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.xrevrange(stream, f"0-{committed}", "-", count=RECENT_LOAD)
                    pipe.zrevrangebyscore(
                        rewritten_of(stream), committed, "-inf", start=0, num=RECENT_LOAD
                    )
                    pipe.hget(TRIMS, conv)
                    pipe.zrangebyscore(rewritten_of(stream), f"({committed}", "+inf")
                    recent, rewritten, trimmed, later = await pipe.execute()
            except RedisError as exc:
                log.warning("cannot load the recent messages of %s: %s", conv, exc)
            else:
                entries = merged(recent, rewritten, RECENT_LOAD, newest_first=True)
                loaded += [self._stored(entry_id, fields) for entry_id, fields in entries]
                since = _id(entries[-1][0]) if len(entries) == RECENT_LOAD else 0
                if trimmed:
                    self.log.trim_conversation(conv, int(trimmed))
                if later:  # rewritten since `committed`, which may be a while ago
                    self._pending[stream] = merged([], later, len(later))
            self._log.complete_from[conv] = since
        self._log.merge(loaded)
        self._followed = want
        if new or gone:
            log.debug("following %d rooms: %s", len(want), " ".join(sorted(want)))
        waiters, self._follow_waiters = self._follow_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ---------------------------------------------------------------- the loop

    async def _read_loop(self) -> None:
        """Read the followed streams for ever, in id order, and hand each message on."""
        failures = 0
        while True:
            try:
                await self._read_round(failures)
            except Exception as exc:  # Redis or the connection to it; the loop must live on
                if not isinstance(exc, RedisError | OSError | NotReplicated):
                    log.exception("the reader failed unexpectedly")
                failures += 1
                self._lost(f"reading the message streams failed: {exc}", failures)
                await asyncio.sleep(_backoff(failures))
                # a failover may have left the master with fewer replicas (--redis-wait)
                with contextlib.suppress(RedisError, OSError):
                    await self._check_replication()
                continue
            failures = 0

    async def _read_round(self, failures: int) -> None:
        """One round: apply follow changes, read every followed stream, deliver;
        when nothing came, wait for something new (or a wake-up)."""
        if self._wanted() != self._followed or self._follow_waiters:
            await self._apply_follows()
        cursors = {stream: f"0-{cursor}" for stream, cursor in self._cursors.items()}
        wait = self.replicas.command()
        async with self._blocking.pipeline(transaction=False) as pipe:
            pipe.get(SEQ)
            pipe.xread(cast(dict[Any, Any], cursors), count=READ_COUNT)
            if wait is not None:  # a write after the read, then WAIT: see papo.redis_wait
                pipe.set(self._read_mark, self.log.committed, ex=READ_MARK_TTL)
                pipe.execute_command(*wait)
            replies = await pipe.execute()
        seq, reply = int(replies[0] or 0), replies[1]
        if wait is not None:
            self.replicas.check(replies[3], wait[1], "the messages read are not on enough replicas")
        if seq < self.log.committed:
            await self._raise_seq()
        if failures:
            log.info("reading the message streams again from id %d", self.log.committed)
        self._reading = True
        if self._round(cast(list[tuple[str, Entries]], reply or []), seq):
            return  # a stream had more: read again at once
        if self._wanted() != self._followed or self._follow_waiters:
            return
        cursors[self._wake_stream] = self._wake_cursor
        woken = await self._blocking.xread(
            cast(dict[Any, Any], cursors), count=1, block=READ_BLOCK_MS
        )
        for stream, entries in cast(list[tuple[str, Entries]], woken or []):
            if stream == self._wake_stream and entries:
                self._wake_cursor = entries[-1][0]

    async def _check_replication(self) -> None:
        """Ask the master how many replicas it has (for an automatic ``--redis-wait``, and
        to warn when a configured one is beyond them); with ``--redis-wait 0``, nothing."""
        if self.replicas.asks:
            self.replicas.heard(cast(dict[str, object], await self._redis.info("replication")))

    async def _raise_seq(self) -> None:
        """``{papo}:seq`` is below an id this instance already delivered: Redis lost
        writes (a failover to a replica that lacked them, a restart without its
        append-only file). Raise it at once, atomically, so that id is never handed
        out again for another message."""
        before, after = await self._raise_seq_script(keys=[SEQ], args=[self.log.committed])
        if int(before) < self.log.committed:
            log.error(
                "redis: {papo}:seq was %s, below id %d already delivered here: Redis lost "
                "writes (see --redis-wait); raised it to %s so no id is handed out twice",
                before,
                self.log.committed,
                after,
            )

    def _round(self, streams: list[tuple[str, Entries]], seq: int) -> bool:
        """Deliver one XREAD's entries in id order; True when a stream hit COUNT."""
        full = [_id(entries[-1][0]) for _, entries in streams if len(entries) >= READ_COUNT]
        limit = min(full) if full else None
        taken: list[tuple[int, str, dict[str, str]]] = []
        for stream, entries in streams:
            for entry_id, fields in entries:
                message_id = _id(entry_id)
                if limit is not None and message_id > limit:
                    break
                taken.append((message_id, entry_id, fields))
                self._cursors[stream] = message_id
        bound = seq if limit is None else limit
        for stream, pending in list(self._pending.items()):
            taken += [(_id(i), i, f) for i, f in pending if _id(i) <= bound]
            rest = [(i, f) for i, f in pending if _id(i) > bound]
            if rest:
                self._pending[stream] = rest
            else:
                del self._pending[stream]
        taken.sort(key=lambda item: item[0])
        batch: list[tuple[Stored, int | None]] = []
        seen: set[int] = set()
        mine = self._mine
        for message_id, entry_id, fields in taken:
            if message_id in seen:
                continue
            seen.add(message_id)
            kept = mine.pop(message_id, None)
            if kept is not None and kept[0] == fields.get("o"):
                stored = kept[1]  # what this instance appended: no need to parse it
            else:
                stored = self._stored(entry_id, fields)
            batch.append((stored, self._origin(fields)))
            if "g" in fields:
                self.log.trim_conversation(stored.conv, int(fields["g"]))
        if batch:
            self.log.commit([stored for stored, _ in batch])
            for stored, _ in batch:
                if stored.kind:  # an edit or deletion, perhaps made on another instance
                    self._rewrite_ring(stored)
        self.log.committed = max(self.log.committed, seq if limit is None else limit)
        self._forget_mine()
        if batch:
            self.on_message(batch)
        self._release()
        return limit is not None

    def _forget_mine(self) -> None:
        """Drop kept appends the reader is past (read from a stream it does not
        follow, or trimmed away before it read them). Ids were kept in the order
        Redis gave them, so the oldest come first."""
        mine, committed = self._mine, self.log.committed
        while mine:
            oldest = next(iter(mine))
            if oldest > committed:
                return
            del mine[oldest]

    def _origin(self, fields: dict[str, str]) -> int | None:
        """The session of this instance an entry came from (its ``o``), or None."""
        instance, _, session = fields.get("o", "").partition(":")
        here = instance == self.instance and session.isdigit()
        return int(session) if here else None

    def _rewrite_ring(self, entry: Stored) -> None:
        """The ring's copy of the message ``entry`` edits or deletes, rewritten the same way."""
        if entry.kind == "delete":
            erase_in_ring(self.log, [entry.target], entry.by or "")
            return
        target = find_in_ring(self.log, entry.target)
        if target is not None and target.is_message and not target.deleted:
            edited = entry.edited_ts or entry.ts
            self.log.rewrite([replace(target, text=entry.text, edited_ts=edited)])

    def _release(self) -> None:
        for message_id in [i for i in self._waiters if i <= self.log.committed]:
            for waiter in self._waiters.pop(message_id):
                if not waiter.done():
                    waiter.set_result(None)

    def _when_delivered(self, stored: Stored, done: asyncio.Future[Stored]) -> None:
        """Set ``done`` to ``stored`` once this instance's reader delivered it."""
        waiter = self._delivery_of(stored)
        if waiter is None:
            done.set_result(stored)
        else:
            waiter.add_done_callback(partial(_settle, done, stored))

    def _delivery_of(self, stored: Stored) -> asyncio.Future[None] | None:
        """What :meth:`_when_delivered` waits for (None: delivered already); the
        cluster store waits in the message's conversation instead."""
        return self._waiter(stored.id)

    def _waiter(self, message_id: int) -> asyncio.Future[None] | None:
        """A future done once the reader delivered ``message_id`` (None: it has)."""
        if self.log.committed >= message_id:
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(waiter)
        return waiter

    async def _reached(self, message_id: int) -> None:
        """Wait until this instance's reader has delivered ``message_id``."""
        waiter = self._waiter(message_id)
        if waiter is not None:
            await waiter

    async def reach(self, message_id: int, within: float = 2.0) -> bool:
        """Whether this instance has delivered every message up to ``message_id``,
        waiting ``within`` seconds for its reader; False only when Redis has no
        such id yet (a resume from the future).

        A reader may be behind Redis far longer than ``within``: the instance
        was cut off from Redis while a client saw ``message_id`` on another
        one. Answering False then would resume that client from this reader's
        older watermark, replaying what it has seen: so it is waited for
        (:data:`CATCH_UP_WAIT` more), and when it does not catch up the answer
        is a :class:`StoreError` (the client is told to try again).
        """
        if await self._within(message_id, within):
            return True
        newest = await self._call(lambda: self._redis.get(SEQ), "cannot read the newest id")
        if message_id > int(newest or 0):
            return False
        if await self._within(message_id, CATCH_UP_WAIT):
            return True
        raise StoreError(
            f"this instance has not read message {message_id} from Redis yet "
            f"(it has read up to {self.log.committed})"
        )

    async def _within(self, message_id: int, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._reached(message_id)
        except TimeoutError:
            return False
        return True

    async def reach_conv(self, conv: str, message_id: int) -> bool:
        return await self.reach(message_id)  # one id order: the watermark says it for all

    async def _load_ring(self) -> None:
        """At start: the watermark, and the recent messages of the streams always followed."""
        home = self.default_room.key
        seq = int(await self._redis.get(SEQ) or 0)
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in (stream_of(home), DIRECT):
                pipe.xrevrange(stream, f"0-{seq}", "-", count=START_LOAD)
                pipe.zrevrangebyscore(rewritten_of(stream), seq, "-inf", start=0, num=START_LOAD)
            pipe.hgetall(TRIMS)
            rooms, rooms_rewritten, directs, directs_rewritten, trims = await pipe.execute()
        for conv, oldest in cast(dict[str, str], trims).items():
            self.log.trim_conversation(conv, int(oldest))
        room_entries = merged(rooms, rooms_rewritten, START_LOAD, newest_first=True)
        direct_entries = merged(directs, directs_rewritten, START_LOAD, newest_first=True)
        recent = [self._stored(i, f) for i, f in room_entries + direct_entries]
        recent.sort(key=lambda m: m.id)
        self.log.load(recent, seq, recent[0].id if recent else 0)
        full = len(room_entries) == START_LOAD
        self._log.complete_from[home] = _id(room_entries[-1][0]) if full else 0
        full = len(direct_entries) == START_LOAD
        self._log.direct_from = _id(direct_entries[-1][0]) if full else 0
        self._cursors = {stream_of(home): seq, DIRECT: seq}
        self._followed = {home}

    # ---------------------------------------------------------------- reading back

    async def page(self, key: str, convs: Collection[str], after: int, limit: int) -> Page:
        committed = self.log.committed  # every id up to here is in its stream by now

        async def scan() -> Page:
            async with self._redis.pipeline(transaction=False) as pipe:
                for conv in sorted(convs):
                    stream = stream_of(conv)
                    pipe.xrange(stream, f"(0-{after}", "+", count=limit)
                    pipe.zrangebyscore(rewritten_of(stream), f"({after}", "+inf", 0, limit)
                replies = await pipe.execute()
            runs = [
                [self._stored(i, f) for i, f in merged(entries, rewritten, limit)]
                for entries, rewritten in zip(replies[::2], replies[1::2], strict=True)
            ]
            together = heapq.merge(*runs, key=lambda m: m.id)
            messages = [m for m in together if m.id <= committed][:limit]
            scanned = messages[-1].id if len(messages) == limit else max(after, committed)
            return Page(messages, scanned, self.log.oldest)

        return await self._call(scan, "cannot read the history from Redis")

    async def since(self, conv: str, after: int, limit: int) -> list[Stored]:
        """The conversation's stream after ``after`` with its rewritten entries merged in;
        only ids up to the reader's watermark (everything below it is in its stream)."""
        committed = self.log.committed

        async def scan() -> list[Stored]:
            found = await self._conv_entries(conv, after, limit)
            return [m for m in found if m.id <= committed]

        return await self._call(scan, "cannot read the conversation from Redis")

    async def _conv_entries(self, conv: str, after: int, limit: int) -> list[Stored]:
        """Up to ``limit`` entries of ``conv`` over ``after`` as Redis has them: its
        stream with its rewritten entries merged in, ascending."""
        stream = stream_of(conv)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(stream, f"(0-{after}", "+", count=limit)
            pipe.zrangebyscore(rewritten_of(stream), f"({after}", "+inf", 0, limit)
            entries, rewritten = await pipe.execute()
        return [self._stored(i, f) for i, f in merged(entries, rewritten, limit)]

    async def history(self, conv: str, before: int | None, limit: int) -> tuple[list[Stored], bool]:
        stream, want = stream_of(conv), limit + 1
        # With --redis-wait, only what the reader confirmed replicated (and delivered)
        # is shown: a newer entry may still be lost in a failover.
        shown = self.log.committed if self.replicas.wanted else None

        async def read() -> tuple[list[Stored], bool]:
            # Edit and deletion entries are not shown (their messages are kept
            # rewritten), so read back until enough messages came, or the start.
            page: list[Stored] = []
            below = before
            while True:
                top = "+" if below is None else f"(0-{below}"
                highest = "+inf" if below is None else f"({below}"
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.xrevrange(stream, top, "-", count=want)
                    pipe.zrevrangebyscore(rewritten_of(stream), highest, "-inf", 0, want)
                    reply, rewritten = await pipe.execute()
                entries = merged(reply, rewritten, want, newest_first=True)
                found = (self._stored(i, f) for i, f in entries)
                page += [m for m in found if m.is_message and (shown is None or m.id <= shown)]
                if len(page) > limit or len(entries) < want:
                    break
                below = _id(entries[-1][0])
            messages = page[:limit]
            messages.reverse()
            return messages, len(page) > limit

        return await self._call(read, "cannot read the history from Redis")


def _settle(done: asyncio.Future[Stored], stored: Stored, waiter: asyncio.Future[None]) -> None:
    """``done`` gets ``stored`` once ``waiter`` is done (cancelled with it)."""
    if done.done():
        return
    if waiter.cancelled():
        done.cancel()
    else:
        done.set_result(stored)


def merged(
    entries: object, rewritten: object, count: int, *, newest_first: bool = False
) -> Entries:
    """A range of a stream with its rewritten entries (a sorted set's members) put in
    place: the first ``count`` of both in id order (newest first when asked).

    Both replies are ranges of the same ids, each cut at ``count``, so the first
    ``count`` of their union are the first ``count`` of the whole range.
    """
    both = _entries(entries) + [
        (f"0-{member_id}", fields)
        for member_id, fields in (json.loads(member) for member in cast(list[str], rewritten or []))
    ]
    both.sort(key=lambda entry: _id(entry[0]), reverse=newest_first)
    return both[:count]
