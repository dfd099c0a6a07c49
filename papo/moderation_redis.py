"""Moderation kept in Redis and shared by every instance (a mixin of the Redis store).

Each change of the moderation state (:class:`~papo.moderation.ModerationChange`)
is written to a hash and published on ``{papo}:events`` in one transaction;
every other instance's event worker hands it to :attr:`RedisModeration.on_moderation`
(the hub's :meth:`~papo.moderation_effects.ModerationEffects.apply`), which applies it
and tells whom it concerns there. So a ban made on one instance closes the
user's sessions on all of them, and a mute ends at the same time everywhere
(its end is a time, not a countdown). The instance that made the change has
applied it already and skips its own event.

A kick is not a change of state but a note: who kicked and why is published
(``w`` ``kick``) just before the room's ``part`` event, on the same channel,
so every instance's ``parted`` for the user's sessions there says it too.

Keys (all under the ``{papo}`` hash tag): ``{papo}:mod:ops`` (``room\\tuser`` →
``[name, on]``), ``{papo}:mod:bans`` (user → restriction), ``{papo}:mod:mutes``
(``room\\tuser`` → restriction), ``{papo}:mod:ipbans`` (network → restriction),
``{papo}:mod:modes`` (room → ``[moderated, topic_locked]``) and the list
``{papo}:mod:audit`` (the newest :data:`AUDIT_KEPT` entries).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from papo.moderation import (
    AuditEntry,
    ModerationChange,
    ModerationState,
    Restriction,
    RoomMode,
    parse_network,
)
from papo.store_redis_base import EVENTS, PREFIX, log

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")

OPS = PREFIX + "mod:ops"
BANS = PREFIX + "mod:bans"
MUTES = PREFIX + "mod:mutes"
IP_BANS = PREFIX + "mod:ipbans"
MODES = PREFIX + "mod:modes"
AUDIT = PREFIX + "mod:audit"
AUDIT_KEPT = 100_000

# Write one field of a moderation hash (KEYS[1]; ARGV: field, value, '' to delete it)
# and publish the change (ARGV: channel, event), at once. A script rather than a
# transaction, which a Redis Cluster client refuses for PUBLISH (it names no key).
KEEP_CHANGE = """
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
"""


def _restriction(value: Any) -> Restriction | None:
    if value is None:
        return None
    name, by, reason, until = value
    return Restriction(str(name), str(by), str(reason), None if until is None else float(until))


def _plain(r: Restriction | None) -> list[Any] | None:
    return None if r is None else [r.name, r.by, r.reason, r.until]


def change_to_json(change: ModerationChange, instance: str) -> str:
    """A change as the event other instances receive (``e``, ``k``, ``n`` as every event)."""
    mode = change.mode
    return json.dumps(
        {
            "e": "mod",
            "k": change.key,
            "n": change.name,
            "i": instance,
            "w": change.what,
            "r": change.room,
            "rn": change.room_name,
            "b": change.by,
            "on": change.on,
            "x": _plain(change.restriction),
            "mode": None if mode is None else [mode.moderated, mode.topic_locked],
        },
        ensure_ascii=False,
    )


def change_from_event(event: dict[str, Any]) -> ModerationChange:
    """The change an event carries; ``KeyError``/``ValueError``/``TypeError`` when malformed."""
    what = str(event["w"])
    if what not in ("op", "ban", "mute", "ip_ban", "mode"):
        raise ValueError(f"unknown moderation change {what!r}")
    mode = event.get("mode")
    return ModerationChange(
        what,  # type: ignore[arg-type]
        str(event["k"]),
        str(event.get("r", "")),
        str(event.get("rn", "")),
        str(event.get("n", "")),
        str(event.get("b", "")),
        bool(event.get("on", True)),
        _restriction(event.get("x")),
        None if mode is None else RoomMode(bool(mode[0]), bool(mode[1])),
    )


class RedisModeration:
    """The :class:`~papo.moderation_store.ModerationKeeper` of the Redis store."""

    #: Called with every change made on another instance (the hub sets it).
    on_moderation: Callable[[ModerationChange], None] | None = None
    #: Called with (room key, user key, by, reason) of a kick made on another instance.
    on_kick: Callable[[str, str, str, str], None] | None = None

    if TYPE_CHECKING:
        _redis: Redis
        instance: str

        async def _call(self, fn: Callable[[], Awaitable[T]], what: str) -> T: ...

    async def load_moderation(self) -> ModerationState:
        async def read() -> list[dict[str, str]]:
            pipe = self._redis.pipeline(transaction=False)
            for key in (OPS, BANS, MUTES, IP_BANS, MODES):
                pipe.hgetall(key)
            return list(await pipe.execute())

        ops, bans, mutes, ip_bans, modes = await self._call(read, "reading moderation")
        state = ModerationState()
        for field, value in ops.items():
            room, _, key = field.partition("\t")
            name, on = json.loads(value)
            state.set_operator(room, key, str(name), bool(on))
        for key, value in bans.items():
            ban = _restriction(json.loads(value))
            if ban is not None:
                state.bans[key] = ban
        for field, value in mutes.items():
            room, _, key = field.partition("\t")
            mute = _restriction(json.loads(value))
            if mute is not None:
                state.mutes[(room, key)] = mute
        for network, value in ip_bans.items():
            ban = _restriction(json.loads(value))
            if ban is not None:
                state.ip_bans.add(parse_network(network), ban)
        for room, value in modes.items():
            moderated, locked = json.loads(value)
            if moderated or locked:
                state.modes[room] = RoomMode(bool(moderated), bool(locked))
        return state

    async def keep_moderation(self, change: ModerationChange) -> None:
        r = change.restriction

        async def write() -> None:
            pair = f"{change.room}\t{change.key}"
            if change.what == "op":
                op = (OPS, pair, json.dumps([change.name, change.on], ensure_ascii=False))
            elif change.what == "mode":
                mode = change.mode or RoomMode()
                op = (MODES, change.room, json.dumps([mode.moderated, mode.topic_locked]))
            else:
                key, field = {"ban": (BANS, change.key), "mute": (MUTES, pair)}.get(
                    change.what, (IP_BANS, change.key)
                )
                op = (key, field, "" if r is None else json.dumps(_plain(r), ensure_ascii=False))
            event = change_to_json(change, self.instance)
            await self._redis.eval(KEEP_CHANGE, 1, op[0], op[1], op[2], EVENTS, event)

        await self._call(write, "keeping a moderation change")

    async def announce_kick(self, room: str, key: str, by: str, reason: str) -> None:
        """Tell the other instances who kicks ``key`` out of ``room`` and why (before the part)."""
        note = {"e": "mod", "w": "kick", "k": key, "n": "", "i": self.instance}
        data = json.dumps(note | {"r": room, "b": by, "x": reason}, ensure_ascii=False)
        await self._call(lambda: self._redis.publish(EVENTS, data), "announcing a kick")

    def _moderation_event(self, event: dict[str, Any]) -> None:
        """A change published by an instance: applied here unless it was made here."""
        if event.get("i") == self.instance:
            return
        if event.get("w") == "kick":
            if self.on_kick is not None:
                room, by, reason = event.get("r"), event.get("b"), event.get("x")
                self.on_kick(str(room), str(event["k"]), str(by), str(reason or ""))
            return
        if self.on_moderation is None:
            return
        try:
            change = change_from_event(event)
        except (KeyError, ValueError, TypeError):
            log.warning("ignoring a malformed moderation event: %r", event)
            return
        self.on_moderation(change)

    async def keep_audit(self, entry: AuditEntry) -> None:
        line = json.dumps(
            [entry.ts, entry.by, entry.action, entry.target, entry.reason, entry.room],
            ensure_ascii=False,
        )

        async def write() -> None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.rpush(AUDIT, line)
            pipe.ltrim(AUDIT, -AUDIT_KEPT, -1)
            await pipe.execute()

        await self._call(write, "keeping an audit entry")

    async def audit_entries(self, limit: int) -> list[AuditEntry]:
        async def read() -> list[str]:
            return [str(line) for line in await self._redis.lrange(AUDIT, -limit, -1)]

        lines = await self._call(read, "reading the audit log")
        return [AuditEntry(*(str(v) for v in json.loads(line))) for line in lines]
