"""Rooms, memberships, read markers and direct conversations in a Redis Cluster.

The same keys as with one Redis (:mod:`papo.store_redis_rooms`), but a script
may touch one hash slot only, so what one script did across a room's tag and
a user's is done in two steps, the room's first (it decides: already a member
or not, and publishes the change), then the user's, which is idempotent
(``SADD``, a marker), so doing it again at the next join or hello repairs
what a crash in between left undone. A user's hello reads their own keys in
one call, then every conversation's unread count on its own shard, all at once.

Direct conversations have no shared stream in cluster mode: each has its own
(``{d:@ana|beto}:messages``), followed by the instances where one of the two
has a session. Its first message records it for both users and publishes a
``follow`` event on ``{papo}:events``, so the recipient's instance starts
following it; what it loads then is handed on as new (the conversation just
began: nothing of it was delivered here), so nothing is missed however late
the event comes. An instance that missed the event (cut off from Redis then) follows
the conversation at the user's next hello; until then the messages wait in
the stream, and a resume replays them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from papo import redis_cluster_scripts as cs
from papo.store import UNREAD_CAP, ConversationState, RoomRecord, UserState
from papo.store_cluster_reader import ClusterReader
from papo.store_redis_base import (
    ROOMS,
    room_members,
    room_meta,
    room_stream,
    stream_of,
    user_directs,
)
from papo.store_redis_rooms import creation_args


def user_rooms(key: str) -> str:
    return f"{{u:{key}}}:rooms"


def user_read(key: str) -> str:
    return f"{{u:{key}}}:read"


class ClusterRooms(ClusterReader):
    """The room half of the :class:`~papo.store.Store` interface, over a Redis Cluster."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        register = self._redis.register_script
        self._c_create_room = register(cs.CREATE_ROOM)
        self._c_room_join = register(cs.ROOM_JOIN)
        self._c_room_part = register(cs.ROOM_PART)
        self._c_user_room = register(cs.USER_ROOM)
        self._c_user_state = register(cs.USER_STATE)
        self._c_conv_state = register(cs.CONV_STATE)
        self._c_set_read = register(cs.SET_READ)
        self._begun: set[str] = set()  # direct conversations a follow event began here

    async def user_state(self, key: str, name: str, default_room: RoomRecord) -> UserState:
        self._local.setdefault(key, set())  # follow events for this user count from now
        await self.create_room(default_room)

        async def read() -> tuple[list[Any], list[Any]]:
            home = default_room.key
            args = [self.instance, "", "", home, default_room.name, key, name, "0"]
            last = await self._c_room_join(keys=[room_members(home), room_stream(home)], args=args)
            keys = [user_rooms(key), user_read(key), user_directs(key)]
            rooms, flat_read, flat_directs = await self._c_user_state(keys=keys, args=[home, last])
            marks = dict(zip(flat_read[::2], flat_read[1::2], strict=True))
            directs = dict(zip(flat_directs[::2], flat_directs[1::2], strict=True))
            room_keys, direct_keys = sorted(rooms), sorted(directs)
            states = await asyncio.gather(
                *(self._unread(rk, key, int(marks.get(rk, 0)), room=True) for rk in room_keys),
                *(self._unread(c, key, int(marks.get(c, 0)), room=False) for c in direct_keys),
            )
            out_rooms = [
                ConversationState(rk, str(s[0]), str(s[1]), int(marks.get(rk, 0)), int(s[2]))
                for rk, s in zip(room_keys, states, strict=False)
                if s
            ]
            out_directs = []
            for conv, s in zip(direct_keys, states[len(room_keys) :], strict=True):
                other, _, other_name = str(directs[conv]).partition("\t")
                mark = int(marks.get(conv, 0))
                unread = int(s[2]) if s else 0
                out_directs.append(ConversationState(conv, other_name, "", mark, unread, other))
            return out_rooms, out_directs

        rooms, direct = await self._call(read, "cannot read the user's rooms from Redis")
        rooms.sort(key=lambda c: (c.conv != default_room.key, c.name.casefold()))
        direct.sort(key=lambda c: c.name.casefold())
        self._local[key] = self._local.get(key, set()) | {c.conv for c in rooms + direct}
        self._set_want()
        await self._follow()  # the hub's catch-up reads the ring right after
        return UserState(rooms, direct)

    async def _unread(self, conv: str, key: str, after: int, *, room: bool) -> list[Any] | None:
        stream = stream_of(conv)
        keys = [stream, room_meta(conv) if room else stream]
        return cast(
            "list[Any] | None", await self._c_conv_state(keys=keys, args=[after, key, UNREAD_CAP])
        )

    async def create_room(self, room: RoomRecord) -> tuple[RoomRecord, bool]:
        args = creation_args(room)

        async def create() -> list[Any]:
            reply = await self._c_create_room(keys=[room_meta(room.key)], args=args)
            await self._redis.sadd(ROOMS, room.key)  # (again, when made: idempotent)
            return cast(list[Any], reply)

        made, name, topic, by, created = await self._call(create, "cannot create the room in Redis")
        return RoomRecord(room.key, str(name), str(topic), str(by), float(created)), bool(made)

    async def add_member(
        self, room: RoomRecord, key: str, name: str, origin: int | None = None
    ) -> bool:
        what = "cannot add the member in Redis"
        keys = (room_members(room.key), room_stream(room.key))
        args = [room.key, room.name, key, name, "1"]
        last = await self._change(self._c_room_join, args, origin, what, keys)
        await self._user_room("join", key, room.key, last, what)
        return last >= 0

    async def remove_member(
        self, room: RoomRecord, key: str, name: str, origin: int | None = None
    ) -> bool:
        what = "cannot remove the member in Redis"
        args = [room.key, room.name, key, name]
        result = await self._change(
            self._c_room_part, args, origin, what, (room_members(room.key),)
        )
        await self._user_room("part", key, room.key, -1, what)
        return result >= 0

    async def _user_room(self, op: str, key: str, room: str, last: int, what: str) -> None:
        keys = [user_rooms(key), user_read(key)]
        await self._call(lambda: self._c_user_room(keys=keys, args=[op, room, last]), what)

    async def set_topic(self, room: RoomRecord, topic: str, key: str, name: str) -> None:
        args = [room.key, room.name, key, name, topic]
        what = "cannot set the topic in Redis"
        await self._change(self._set_topic, args, None, what, (room_meta(room.key),))

    async def set_read(
        self, key: str, name: str, conv: str, message_id: int, origin: int | None = None
    ) -> bool:
        async def move() -> Any:
            room_name = ""
            if not conv.startswith("@"):
                room_name = str(await self._redis.hget(room_meta(conv), "name") or "")
            args = [self.instance, origin or "", "", key, name, conv, message_id, room_name]
            return await self._c_set_read(keys=[user_read(key), user_directs(key)], args=args)

        return bool(await self._call(move, "cannot store the read marker in Redis"))

    async def forget_guest(self, key: str) -> None:
        self._local.pop(key, None)
        self._set_want()

        async def forget() -> None:
            rooms = cast(set[str], await self._redis.smembers(user_rooms(key)))
            directs = cast(dict[str, str], await self._redis.hgetall(user_directs(key)))
            await asyncio.gather(
                *(self._redis.hdel(room_members(rk), key) for rk in rooms),
                *(
                    self._redis.hdel(user_directs(v.partition("\t")[0]), conv)
                    for conv, v in directs.items()
                ),
            )
            await self._redis.delete(user_rooms(key), user_read(key), user_directs(key))

        await self._call(forget, "cannot forget the guest in Redis")

    async def room_state(self, room: RoomRecord, key: str) -> ConversationState:
        async def read() -> tuple[int, int]:
            mark = int(await self._redis.hget(user_read(key), room.key) or 0)
            state = await self._unread(room.key, key, mark, room=True)
            return mark, int(state[2]) if state else 0

        last, unread = await self._call(read, "cannot read the read marker from Redis")
        return ConversationState(room.key, room.name, room.topic, last, unread)

    # ---------------------------------------------------------------- direct conversations

    async def _event(self, data: str) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if isinstance(event, dict) and event.get("e") == "follow":
            await self._follow_event(str(event.get("c", "")), [str(u) for u in event.get("u", [])])
            return
        await super()._event(data)

    async def _follow_event(self, conv: str, users: list[str]) -> None:
        """A direct conversation began: follow it if one of its two is here."""
        changed = False
        for user in users:
            convs = self._local.get(user)
            if convs is not None and conv and conv not in convs:
                convs.add(conv)
                changed = True
        if changed:
            if conv not in self._followed:
                self._begun.add(conv)
            self._set_want()
            await self._follow()
            if conv in self._followed or conv not in self._wanted():
                self._begun.discard(conv)  # (else a later try loads and delivers it)

    async def _load_conv(self, conv: str) -> None:
        """Follow ``conv``; one a follow event began: what was loaded is delivered
        (in the step that put it in the ring), as the reader would have."""
        await super()._load_conv(conv)
        if conv in self._begun:
            self._begun.discard(conv)
            loaded = [(message, None) for message in self._clog.convs.get(conv, ())]
            if loaded:
                self.on_message(loaded)
