"""What a moderation change does here: the state, the sessions it closes, the people it tells.

A change is kept first (:meth:`~papo.moderation_ops.ModerationOps.change`)
and applied second, by :meth:`ModerationEffects.apply`; the Redis store hands
the same method every change made on another instance, so a change takes
effect the same way wherever it was made, each instance for its own sessions:

* an operator made or unmade: a notice to the room;
* a ban: the user's sessions are told why and closed (1008, the reason);
* an address ban: so are the sessions connected from that network;
* a mute: the user is told, and a timer lifts it when its time is up (lifted
  early: told at once);
* a room mode: ``room mode`` to the room's members.

It is apart from the requests (:mod:`papo.moderation_requests`) because it
runs for changes nobody here asked for, and from the checks of
:mod:`papo.moderation_ops` because they decide and this acts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from papo.directory import Session
from papo.i18n import Text, render, t
from papo.moderation import (
    ModerationChange,
    Network,
    Restriction,
    RoomMode,
    format_duration,
    in_networks,
    parse_network,
)
from papo.outgoing import Outgoing
from papo.plain import visible
from papo.protocol import Error, Notice, RoomModeChanged, ServerEvent

if TYPE_CHECKING:
    from papo.moderation_ops import ModerationOps

#: A WebSocket close reason is at most 123 bytes of UTF-8.
MAX_CLOSE_REASON = 123


class ModerationEffects:
    """Applies moderation changes to one hub's state and sessions; keeps the mutes' timers."""

    def __init__(self, ops: ModerationOps) -> None:
        self.ops = ops
        self.hub = ops.hub
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}

    def start_timers(self) -> None:
        """A timer for each mute loaded from the store, to lift it when its time is up."""
        loop = asyncio.get_running_loop()
        now = self.ops.clock()
        for (room, key), mute in list(self.ops.state.mutes.items()):
            left = mute.left(now)
            if left is not None:
                self._timers[(room, key)] = loop.call_later(left, self._mute_ended, room, key)

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def apply(self, change: ModerationChange) -> None:
        """Apply a change, made here or on another instance, and tell whom it concerns here."""
        change.apply_to(self.ops.state)
        r = change.restriction
        if change.what == "op":
            self._tell_room(change.room, Notice(op_text(change)))
        elif change.what == "ban" and r is not None:
            target = self.hub.users.get(change.key)
            if target is not None:
                self._close(list(target.sessions.values()), r)
        elif change.what == "mute":
            self._mute_applied(change)
        elif change.what == "ip_ban" and r is not None:
            network = parse_network(change.key)
            self._close([s for s in self.hub.pool.values() if covers(network, s.link.address)], r)
        elif change.what == "mode":
            mode = change.mode or RoomMode()
            changed = RoomModeChanged(
                change.room_name, mode.moderated, mode.topic_locked, change.by
            )
            self._tell_room(change.room, changed)

    def _mute_applied(self, change: ModerationChange) -> None:
        where = (change.room, change.key)
        old = self._timers.pop(where, None)
        if old is not None:
            old.cancel()
        mute = change.restriction
        if mute is None:
            self._tell_user(
                change.key, Notice(t("you may speak in {room} again", room=change.room_name))
            )
            return
        left = mute.left(self.ops.clock())
        if left is not None:
            loop = asyncio.get_running_loop()
            self._timers[where] = loop.call_later(left, self._mute_ended, *where)
        values = {"by": mute.by, "room": change.room_name, "duration": format_duration(left or 0)}
        told = (
            t("{by} muted you in {room} for {duration}: {reason}", reason=mute.reason, **values)
            if mute.reason
            else t("{by} muted you in {room} for {duration}", **values)
        )
        self._tell_user(change.key, Notice(told))

    def _mute_ended(self, room: str, key: str) -> None:
        """A mute's time is up: forget it, tell the user (every instance does, for its own
        sessions; the kept row is dropped at the next load, as ended)."""
        self._timers.pop((room, key), None)
        state = self.ops.state
        mute = state.mutes.get((room, key))
        if mute is None:
            return  # lifted meanwhile
        left = mute.left(self.ops.clock())
        if left:  # a longer mute replaced it, or the wall clock is a hair behind the timer
            loop = asyncio.get_running_loop()
            self._timers[(room, key)] = loop.call_later(left + 0.01, self._mute_ended, room, key)
            return
        del state.mutes[(room, key)]
        record = self.hub.rooms.get(room)
        name = record.name if record is not None else room
        self._tell_user(key, Notice(t("you may speak in {room} again", room=name)))

    def _close(self, sessions: list[Session], ban: Restriction) -> None:
        """Tell each session why, then close it with 1008 and the reason."""
        text = banned_text(ban, self.ops.clock())
        for session in sessions:
            session.link.write(Outgoing(Error("banned", text, None, ban.until_iso)))
            session.link.close(1008, _close_reason(visible(render(text, session.link.lang))))

    def _tell_user(self, key: str, event: ServerEvent) -> None:
        user = self.hub.users.get(key)
        if user is not None:
            out = Outgoing(event)
            for session in user.sessions.values():
                session.link.write(out)

    def _tell_room(self, key: str, event: ServerEvent) -> None:
        """``event`` to every session here of the room's members."""
        out = Outgoing(event)
        if key == self.hub.home.key:
            for session in self.hub.members.values():
                session.link.write(out)
            return
        room = self.hub.rooms.get(key)
        if room is not None:
            room.notify(out)


def banned_text(ban: Restriction, now: float) -> Text:
    """What a ban says at ``now``: who, for how much longer, why."""
    left = ban.left(now)
    if left is None and ban.reason:
        return t("{name} is banned: {reason}", name=ban.name, reason=ban.reason)
    if left is None:
        return t("{name} is banned", name=ban.name)
    duration = format_duration(left)
    if ban.reason:
        return t(
            "{name} is banned for {duration}: {reason}",
            name=ban.name,
            duration=duration,
            reason=ban.reason,
        )
    return t("{name} is banned for {duration}", name=ban.name, duration=duration)


def op_text(change: ModerationChange) -> Text:
    """The notice of an ``op`` or ``deop``."""
    values = {"by": change.by, "name": change.name, "room": change.room_name}
    if change.on:
        return t("{by} made {name} an operator of {room}", **values)
    return t("{by} took operator away from {name} in {room}", **values)


def covers(network: Network, address: str) -> bool:
    return in_networks(address, [network])


def _close_reason(text: str) -> str:
    """``text`` cut to what a close frame may carry (123 bytes of UTF-8)."""
    data = text.encode()
    if len(data) <= MAX_CLOSE_REASON:
        return text
    return data[: MAX_CLOSE_REASON - 3].decode(errors="ignore") + "…"
