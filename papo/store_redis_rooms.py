"""Rooms, memberships, topics and read markers in Redis, shared by every instance.

Kept in Redis (see :mod:`papo.redis_scripts`): ``{r:<room>}:meta`` (name,
topic, created_by, created), ``{r:<room>}:members`` (user key → name),
``{papo}:rooms`` (every room's key), and per user ``{u:<key>}:rooms`` (the
rooms' keys), ``{u:<key>}:read`` (conversation → newest id read) and
``{u:<key>}:directs`` (direct conversation → other user's key and name, written
by the append script).

Devices that end (:mod:`papo.devices`) are published there too, so every
instance closes their sessions.

Every change is made by one script that also publishes it on ``{papo}:events``;
every instance's event worker hands it to :attr:`~papo.store.Store.on_room`,
this instance's included, so a join on one instance reaches the user's
sessions on all of them. The event carries the instance it was made on, and
the session ``origin`` is passed on only there. The call that made a
join, part or topic change returns once this instance has handled its event,
so a session's next request sees the change. Before a local user's join
is handed on, the reader follows the room (and the hub's history read that
follows covers whatever came before).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any, Literal, cast

from papo.store import (
    UNREAD_CAP,
    ConversationState,
    RoomChange,
    RoomRecord,
    RoomSummary,
    UserState,
)
from papo.store_redis_base import (
    EVENTS,
    READ_BLOCK_MS,
    REDIS_FAILURES,
    ROOMS,
    _backoff,
    log,
    room_members,
    room_meta,
    user_directs,
)
from papo.store_redis_reader import RedisReader

EVENT_WAIT = 5.0  # seconds a change waits for its own event to come back
ROOM_KINDS = ("join", "part", "topic", "read")


class RedisRooms(RedisReader):
    """The room half of the :class:`~papo.store.Store` interface, over Redis."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: users with a session (or a grace period) here → the rooms they are in
        self._local: dict[str, set[str]] = {}
        self._events: asyncio.Queue[str] = asyncio.Queue()
        self._event_waiters: dict[str, asyncio.Future[None]] = {}
        self._tokens = itertools.count(1)

    def _set_want(self) -> None:
        self._want = set().union(*self._local.values())

    # ---------------------------------------------------------------- the interface

    async def user_state(self, key: str, name: str, default_room: RoomRecord) -> UserState:
        args: list[str | float] = [
            key,
            name,
            default_room.key,
            default_room.name,
            time.time(),
            UNREAD_CAP,
        ]
        reply = await self._call(
            lambda: self._user_state(args=args), "cannot read the user's rooms from Redis"
        )
        flat_rooms, flat_directs = cast(list[list[Any]], reply)
        rooms = [
            ConversationState(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]))
            for r in _chunks(flat_rooms, 5)
        ]
        rooms.sort(key=lambda c: (c.conv != default_room.key, c.name.casefold()))
        direct = [
            ConversationState(str(d[0]), str(d[2]), "", int(d[3]), int(d[4]), str(d[1]))
            for d in _chunks(flat_directs, 5)
        ]
        direct.sort(key=lambda c: c.name.casefold())
        self._local[key] = {c.conv for c in rooms}
        self._set_want()
        await self._follow()  # the hub's catch-up reads the ring right after
        return UserState(rooms, direct)

    async def get_room(self, key: str) -> RoomRecord | None:
        fields = cast(
            dict[str, str],
            await self._call(
                lambda: self._redis.hgetall(room_meta(key)), "cannot read the room from Redis"
            ),
        )
        return _record(key, fields) if fields.get("name") else None

    async def create_room(self, room: RoomRecord) -> tuple[RoomRecord, bool]:
        args = creation_args(room)
        made, name, topic, by, created = await self._call(
            lambda: self._create_room(args=args), "cannot create the room in Redis"
        )
        return RoomRecord(room.key, str(name), str(topic), str(by), float(created)), bool(made)

    async def add_member(
        self, room: RoomRecord, key: str, name: str, origin: int | None = None
    ) -> bool:
        script, args = self._add_member, [room.key, room.name, key, name]
        return await self._change(script, args, origin, "cannot add the member in Redis") >= 0

    async def remove_member(
        self, room: RoomRecord, key: str, name: str, origin: int | None = None
    ) -> bool:
        script, args = self._remove_member, [room.key, room.name, key, name]
        return await self._change(script, args, origin, "cannot remove the member in Redis") >= 0

    async def set_topic(self, room: RoomRecord, topic: str, key: str, name: str) -> None:
        args = [room.key, room.name, key, name, topic]
        await self._change(self._set_topic, args, None, "cannot set the topic in Redis")

    async def set_read(
        self, key: str, name: str, conv: str, message_id: int, origin: int | None = None
    ) -> bool:
        args: list[str | int] = [key, name, conv, message_id]
        moved = await self._call(
            lambda: self._set_read(args=[self.instance, origin or "", "", *args]),
            "cannot store the read marker in Redis",
        )
        return bool(moved)

    async def _change(
        self,
        script: Any,
        args: list[Any],
        origin: int | None,
        what: str,
        keys: tuple[str, ...] = (),
    ) -> int:
        """Run a change script (-1: nothing changed); when it changed something,
        wait until this instance has handled its event (and so told its sessions).
        ``keys`` route the script to its shard in cluster mode."""
        token = f"{next(self._tokens)}"
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._event_waiters[token] = waiter
        try:
            result = int(
                await self._call(
                    lambda: script(
                        keys=list(keys), args=[self.instance, origin or "", token, *args]
                    ),
                    what,
                )
            )
            if result >= 0:
                async with asyncio.timeout(EVENT_WAIT):
                    await waiter
        except TimeoutError:
            log.warning("a room change made here did not come back as an event")
        finally:
            self._event_waiters.pop(token, None)
        return result

    async def forget_guest(self, key: str) -> None:
        self._local.pop(key, None)
        self._set_want()
        await self._call(lambda: self._forget_guest(args=[key]), "cannot forget the guest in Redis")

    async def room_state(self, room: RoomRecord, key: str) -> ConversationState:
        last, unread = await self._call(
            lambda: self._conv_state(args=[key, room.key, UNREAD_CAP]),
            "cannot read the read marker from Redis",
        )
        return ConversationState(room.key, room.name, room.topic, int(last), int(unread))

    async def members(self, room_key: str) -> list[tuple[str, str]]:
        members = cast(
            dict[str, str],
            await self._call(
                lambda: self._redis.hgetall(room_members(room_key)),
                "cannot read the members from Redis",
            ),
        )
        return sorted(members.items(), key=lambda item: item[1].casefold())

    async def rooms(self) -> list[RoomSummary]:
        async def read() -> list[tuple[str, dict[str, str], list[str]]]:
            keys = sorted(cast(set[str], await self._redis.smembers(ROOMS)))
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(room_meta(key))
                    pipe.hkeys(room_members(key))
                replies = await pipe.execute()
            return [(key, replies[2 * i], replies[2 * i + 1]) for i, key in enumerate(keys)]

        found = await self._call(read, "cannot read the rooms from Redis")
        await self.who()  # refreshes who is online anywhere (as events may have been missed)
        online = self._anywhere | {k for k, (_, n) in self._here.items() if n > 0}
        out = [
            RoomSummary(_record(key, meta), len(members), sum(1 for m in members if m in online))
            for key, meta, members in found
            if meta.get("name")
        ]
        return sorted(out, key=lambda s: s.room.name.casefold())

    async def direct_peer(self, conv: str, key: str) -> str | None:
        value = await self._call(
            lambda: self._redis.hget(user_directs(key), conv),
            "cannot read the direct conversation from Redis",
        )
        return None if value is None else str(value).partition("\t")[2]

    # ---------------------------------------------------------------- events

    async def _event_loop(self) -> None:
        """Receive the events of every instance (this one too) and queue them, in order."""
        failures = 0
        while True:
            pubsub = self._blocking.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(EVENTS)
                if failures:
                    log.info("receiving presence and room events again")
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=READ_BLOCK_MS / 1000)
                    if message is not None:
                        self._events.put_nowait(message["data"])
            except REDIS_FAILURES as exc:
                failures += 1
                self._lost(f"presence and room events failed: {exc}", failures)
                await asyncio.sleep(_backoff(failures))
                await self._events_lost()
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _events_lost(self) -> None:
        """The event subscription failed and is about to be made again (a cluster
        asks who serves what first)."""

    async def _event_worker(self) -> None:
        """Hand each event on, one at a time (a join may wait for the reader)."""
        while True:
            data = await self._events.get()
            try:
                await self._event(data)
            except Exception:  # one bad event must not stop the others
                log.exception("handling the event %r failed", data[:200])

    async def _event(self, data: str) -> None:
        try:
            event = json.loads(data)
            kind, key, name = str(event["e"]), str(event["k"]), str(event["n"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed event: %r", data[:200])
            return
        if kind == "room":
            await self._room_event(event, key, name)
            return
        if kind == "devices":
            self._devices_event(event, key)
            return
        if kind == "mod":
            self._moderation_event(event)
            return
        if kind == "join":
            self._anywhere.add(key)
        elif kind == "leave":
            self._anywhere.discard(key)
        else:
            return
        self.on_presence(cast(Literal["join", "leave"], kind), key, name)

    def _devices_event(self, event: dict[str, Any], key: str) -> None:
        """Devices of ``key`` ended on another instance: close their sessions here too
        (the instance that ended them did so already)."""
        if event.get("i") == self.instance:
            return
        ids, keep = event.get("d"), event.get("keep")
        self.on_devices(
            key,
            None if ids is None else frozenset(str(i) for i in ids),
            None if keep is None else str(keep),
        )

    def _moderation_event(self, event: dict[str, Any]) -> None:
        """A moderation change from an instance (see papo.moderation_redis, which overrides)."""

    async def _room_event(self, event: dict[str, Any], key: str, name: str) -> None:
        kind, conv = str(event.get("kind")), str(event.get("c", ""))
        if kind not in ROOM_KINDS or not conv:
            return
        here = event.get("i") == self.instance
        origin = str(event.get("o") or "")
        rooms = self._local.get(key)
        if kind == "join" and rooms is not None and conv not in rooms:
            rooms.add(conv)
            self._set_want()
            await self._follow()  # live messages of the room must reach this user here
        self.on_room(
            RoomChange(
                cast(Literal["join", "part", "topic", "read"], kind),
                conv,
                str(event.get("r") or ""),
                key,
                name,
                str(event.get("t") or ""),
                int(event.get("m") or 0),
                int(origin) if here and origin.isdigit() else None,
            )
        )
        if kind == "part" and rooms is not None:
            rooms.discard(conv)
            self._set_want()
        waiter = self._event_waiters.get(str(event.get("w", ""))) if here else None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def creation_args(room: RoomRecord) -> list[str | float]:
    """What the room creation scripts take: key, name, topic, creator, creation time."""
    return [room.key, room.name, room.topic, room.created_by, room.created or time.time()]


def _chunks(flat: list[Any], size: int) -> list[list[Any]]:
    return [flat[i : i + size] for i in range(0, len(flat), size)]


def _record(key: str, fields: dict[str, str]) -> RoomRecord:
    return RoomRecord(
        key,
        fields.get("name", key),
        fields.get("topic", ""),
        fields.get("created_by", ""),
        float(fields.get("created") or 0),
    )
