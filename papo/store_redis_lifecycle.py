"""Edits and deletions in the Redis store: rewritten entries, erased text, a rewritten AOF.

The same semantics as the embedded stores (:mod:`papo.store_lifecycle`): an
edit or a deletion rewrites the message as kept, and appends an entry of its
own (``kind`` ``edit`` or ``delete``, an id of its own) through the ordinary
append, so every instance delivers it, and a resume replays it, in id order.

A stream entry cannot be changed in place, nor be added again under its old
id (a stream only grows at its end). So a message that is rewritten leaves
its stream (``XDEL``) and its new version is kept beside the stream, in the
sorted set ``<tag>:rewritten`` (``{r:#sala}:rewritten``, ``{d:@ana|beto}:rewritten``,
``{papo}:direct:rewritten`` for the shared direct stream), scored by its id:
an edited message with its latest text, a deleted one as a tombstone without
text (so ids stay continuous in a history page), and the edit entries of a
deleted message as deletion entries without their text. Every reader of a
range (history pages, a resume, the ring at start and when a room is
followed) merges the two (:func:`papo.store_redis_reader.merged`). The live
reader has delivered the original already and delivers the entry that
rewrote it next; only a stream it starts following from a watermark older
than a rewrite has rewritten entries it never read, and those are delivered
with its first rounds, in id order with the rest. Each instance rewrites its own ring when its
reader delivers an edit or a deletion entry, wherever it was made.

Erasing for real: ``XDEL`` takes the entry out of the dataset, but Redis's
append-only file still holds the ``XADD`` that wrote it, until Redis rewrites
the file from the dataset. So after a deletion the store asks for
``BGREWRITEAOF`` (at most once every :data:`AOF_REWRITE_EVERY` seconds per
instance; a deletion meanwhile gets one at the end of that time). The
rewritten file holds no trace of the text only when it is written as
commands: a base in RDB form (``aof-use-rdb-preamble yes``, Redis's default)
copies a stream's packed nodes, deleted entries included. The README says
what an operator must configure.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from typing import Any, cast

from papo.moderation import EDIT_WINDOW, parse_time
from papo.store import Stored
from papo.store_lifecycle import erase_in_ring, erased_entry, find_in_ring, tombstone
from papo.store_redis_base import (
    DIRECT,
    REDIS_FAILURES,
    ROOMS,
    Entries,
    _entries,
    _fields,
    log,
    rewritten_of,
    room_stream,
    stream_of,
    user_directs,
)
from papo.store_redis_reader import merged
from papo.store_redis_rooms import RedisRooms

#: At most one append-only file rewrite asked for per this many seconds (per instance).
AOF_REWRITE_EVERY = 60.0
#: When Redis was rewriting already (perhaps from before the deletion), ask again after this.
AOF_RETRY = 5.0
#: How far after a message its edit entries are looked for: the edit window, and clock skew.
EDITS_WITHIN = 2 * EDIT_WINDOW + 300.0
SCAN_COUNT = 500
REWRITE_BATCH = 200  # rewritten entries per transaction


class RedisLifecycle(RedisRooms):
    """The :class:`~papo.store_lifecycle.MessageLifecycle` of the Redis store."""

    #: Direct messages are in the shared direct stream too (not in cluster mode).
    shared_direct = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aof_rewrite_every = AOF_REWRITE_EVERY
        self._aof_last = -float("inf")
        self._aof_timer: asyncio.TimerHandle | None = None
        self._aof_tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- finding

    async def get_message(self, message_id: int) -> Stored | None:
        found = find_in_ring(self.log, message_id)
        if found is not None:
            return found

        async def look() -> Stored | None:
            followed = sorted(self._followed)
            found = await self._look_in([stream_of(c) for c in followed] + [DIRECT], message_id)
            if found is None:  # an admin's request about a room nobody here is in
                rooms = cast(set[str], await self._redis.smembers(ROOMS))
                others = [room_stream(r) for r in sorted(rooms - set(followed))]
                found = await self._look_in(others, message_id)
            return found

        return await self._call(look, "cannot find the message in Redis")

    async def _look_in(self, streams: list[str], message_id: int) -> Stored | None:
        if not streams:
            return None
        entry = f"0-{message_id}"
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xrange(stream, entry, entry)
                pipe.zrangebyscore(rewritten_of(stream), message_id, message_id)
            replies = await pipe.execute()
        for entries, rewritten in zip(replies[::2], replies[1::2], strict=True):
            for entry_id, fields in merged(entries, rewritten, 1):
                return self._stored(entry_id, fields)
        return None

    async def messages_by(self, key: str, since_ts: str | None) -> list[Stored]:
        async def find() -> list[Stored]:
            rooms = cast(set[str], await self._redis.smembers(ROOMS))
            directs = cast(list[str], await self._redis.hkeys(user_directs(key)))
            streams = [room_stream(r) for r in sorted(rooms)] + [stream_of(c) for c in directs]
            found: list[Stored] = []
            for chunk in self._script_groups(streams):
                reply = await self._messages_by(keys=chunk, args=[key, since_ts or ""])
                found += [self._stored(i, f) for i, f in _pairs(reply)]
                async with self._redis.pipeline(transaction=False) as pipe:
                    for stream in chunk:
                        pipe.zrange(rewritten_of(stream), 0, -1)
                    replies = await pipe.execute()
                kept = [self._stored(i, f) for r in replies for i, f in merged([], r, len(r))]
                found += [  # edited messages (a tombstone is not a message any more)
                    m
                    for m in kept
                    if m.sender_key == key
                    and m.is_message
                    and not m.deleted
                    and m.ts >= (since_ts or "")
                ]
            return sorted(found, key=lambda m: m.id)

        return await self._call(find, "cannot find the user's messages in Redis")

    @staticmethod
    def _script_groups(streams: list[str]) -> list[list[str]]:
        """``streams`` in groups one script call may read (a cluster: one slot's)."""
        return [streams[start : start + 100] for start in range(0, len(streams), 100)]

    async def _edits_of(self, targets: list[Stored]) -> list[Stored]:
        """The edit entries of ``targets`` (messages of one conversation) in its stream."""
        wanted = {m.id for m in targets}
        until = max(parse_time(m.ts) for m in targets) + EDITS_WITHIN
        stream = stream_of(targets[0].conv)
        cursor = f"(0-{min(wanted)}"
        found: list[Stored] = []
        while True:
            entries = _entries(await self._redis.xrange(stream, cursor, "+", count=SCAN_COUNT))
            for entry_id, fields in entries:
                if fields.get("e") == "edit" and int(fields.get("tg") or 0) in wanted:
                    found.append(self._stored(entry_id, fields))
            if len(entries) < SCAN_COUNT or _too_late(entries[-1][1], until):
                return found
            cursor = f"({entries[-1][0]}"

    # ---------------------------------------------------------------- rewriting

    async def _put(self, rewritten: list[Stored]) -> None:
        """Take ``rewritten`` out of their streams and keep their new versions beside them:
        one transaction per conversation and batch (a cluster takes one slot's keys in one)."""
        by_conv: dict[str, list[Stored]] = {}
        for m in rewritten:
            by_conv.setdefault(m.conv, []).append(m)
        for group in by_conv.values():
            for start in range(0, len(group), REWRITE_BATCH):
                batch = group[start : start + REWRITE_BATCH]
                async with self._redis.pipeline(transaction=True) as pipe:
                    for m in batch:
                        member = json.dumps([m.id, _fields(m)], ensure_ascii=False, sort_keys=True)
                        shared = self.shared_direct and m.to_key is not None
                        for stream in [stream_of(m.conv)] + ([DIRECT] if shared else []):
                            beside = rewritten_of(stream)
                            pipe.xdel(stream, f"0-{m.id}")
                            pipe.zremrangebyscore(beside, m.id, m.id)
                            pipe.zadd(beside, {member: m.id})
                    if self.shared_direct and batch[0].to_key is not None:
                        # the shared direct stream is trimmed to about retention; this too
                        pipe.zremrangebyrank(rewritten_of(DIRECT), 0, -(self.retention + 1))
                    await pipe.execute()

    async def edit_message(self, updated: Stored) -> None:
        await self._call(lambda: self._put([updated]), "cannot keep the edit in Redis")
        self.log.rewrite([updated])

    async def delete_messages(self, messages: Collection[Stored], by: str) -> None:
        targets = {m.id: m for m in messages if m.is_message}
        if not targets:
            return
        by_conv: dict[str, list[Stored]] = {}
        for m in targets.values():
            by_conv.setdefault(m.conv, []).append(m)

        async def erase() -> None:
            edits = {e.id: e for e in self.log.ring if e.kind == "edit" and e.target in targets}
            for group in by_conv.values():
                edits |= {e.id: e for e in await self._edits_of(group)}
            rewritten = [tombstone(m, by) for m in targets.values()]
            rewritten += [erased_entry(e, by) for e in edits.values()]
            await self._put(sorted(rewritten, key=lambda m: m.id))

        await self._call(erase, "cannot delete the messages in Redis")
        erase_in_ring(self.log, targets, by)
        self._rewrite_aof_soon()

    # ---------------------------------------------------------------- the append-only file

    def _rewrite_aof_soon(self) -> None:
        """Have Redis rewrite its append-only file now, or when the rate limit allows."""
        if self._aof_timer is not None:
            return  # one is due already, and it comes after this deletion
        wait = self._aof_last + self.aof_rewrite_every - time.monotonic()
        if wait > 0:
            self._aof_timer = asyncio.get_running_loop().call_later(wait, self._aof_due)
        else:
            self._aof_due()

    def _aof_due(self) -> None:
        self._aof_timer = None
        self._aof_last = time.monotonic()
        task = asyncio.get_running_loop().create_task(self._rewrite_aof())
        self._aof_tasks.add(task)
        task.add_done_callback(self._aof_tasks.discard)

    async def _rewrite_aof(self) -> None:
        try:
            info = await self._redis.info("persistence")
            if not int(info.get("aof_enabled") or 0):
                return  # no append-only file to clean
            if not int(info.get("aof_rewrite_in_progress") or 0):
                await self._redis.bgrewriteaof()
                log.info("asked Redis to rewrite its append-only file (messages were deleted)")
                return
            problem = "a rewrite that may predate the deletion is running"
        except REDIS_FAILURES as exc:
            problem = str(exc)
        log.warning("cannot have Redis rewrite its append-only file yet: %s (retrying)", problem)
        if self._aof_timer is None:
            self._aof_timer = asyncio.get_running_loop().call_later(AOF_RETRY, self._aof_due)

    def _stop_lifecycle(self) -> None:
        """Forget a pending rewrite (the store closes)."""
        if self._aof_timer is not None:
            self._aof_timer.cancel()
            self._aof_timer = None
        for task in self._aof_tasks:
            task.cancel()


def _pairs(reply: object) -> Entries:
    """``MESSAGES_BY``'s reply: ``[[entry id, [field, value, ...]], ...]`` as entries."""
    out: Entries = []
    for entry_id, flat in cast(list[tuple[str, list[str]]], reply or []):
        out.append((str(entry_id), dict(zip(flat[::2], flat[1::2], strict=True))))
    return out


def _too_late(fields: dict[str, str], until: float) -> bool:
    try:
        return parse_time(fields.get("t", "")) > until
    except ValueError:
        return False
