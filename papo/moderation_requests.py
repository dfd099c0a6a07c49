"""Operators' and admins' requests about people and rooms: kick, mute, op, mode, ban, ban-ip, audit.

Each request is checked the same way, in the same order: the room exists,
the actor's role allows the action (:meth:`~papo.moderation_ops.ModerationOps.require`),
the target exists and the actor may act on them (nobody acts on an admin,
:meth:`~papo.moderation_ops.ModerationOps.require_target`); a refusal raises
before anything changes. Then the change is kept and applied
(:meth:`~papo.moderation_ops.ModerationOps.change`), the action goes to the
audit log and the actor is told. Lifting what is not there (``unmute`` of
someone not muted, ``unban`` of a name not banned) only says so.

A kick is not a change of state: the store removes the member (and
announces the part), and the note of who kicked and why, kept in
:attr:`~papo.moderation_ops.ModerationOps.kicks` meanwhile, is what the part
event shows.

The requests about messages (edit, delete, purge) are
:mod:`papo.moderation_lifecycle`'s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from papo.directory import Session, User
from papo.errors import CannotPart, Forbidden, ProtocolError, UnknownRoom
from papo.i18n import t, tn
from papo.moderation import (
    Action,
    ModerationChange,
    RoomMode,
    format_duration,
    parse_network,
    restriction_for,
)
from papo.moderation_effects import banned_text, covers, op_text
from papo.moderation_redis import RedisModeration
from papo.names import name_key, room_key
from papo.plain import audit_line
from papo.protocol import (
    AuditLog,
    Ban,
    BanIp,
    Deop,
    Kick,
    Mute,
    Notice,
    Op,
    ReadAudit,
    RoomModeChanged,
    SetMode,
    Unban,
    UnbanIp,
    Unmute,
)
from papo.store_records import RoomRecord

if TYPE_CHECKING:
    from papo.moderation_ops import ModerationOps


class ModerationRequests:
    """The moderation requests of users here, for one hub."""

    def __init__(self, ops: ModerationOps) -> None:
        self.ops = ops
        self.hub = ops.hub

    async def _room(self, name: str) -> RoomRecord:
        record = await self.hub.store.get_room(room_key(name))
        if record is None:
            raise UnknownRoom(t("there is no room {room}", room=name))
        return record

    async def kick(self, session: Session, user: User, event: Kick) -> None:
        ops = self.ops
        record = await self._room(event.room)
        if record.key == self.hub.home.key:
            raise CannotPart(
                t("everyone is in {room}; mute or ban instead of kicking", room=record.name)
            )
        actor = await ops.role(user.key, record.key)
        ops.require(actor, Action.KICK, record.name)
        members = dict(await self.hub.store.members(record.key))
        key = name_key(event.name)
        if key not in members:
            raise ProtocolError(
                "not_member", t("{name} is not in {room}", name=event.name, room=record.name)
            )
        name = members[key]
        await ops.require_target(actor, key, name, record.key)
        ops.kicks[(record.key, key)] = (user.name, event.reason)
        if isinstance(self.hub.store, RedisModeration):  # the user's sessions elsewhere
            await self.hub.store.announce_kick(record.key, key, user.name, event.reason)
        try:  # the store announces the part (here: within the call) and it takes the note
            await self.hub.store.remove_member(record, key, name, None)
        finally:
            ops.kicks.pop((record.key, key), None)
        await ops.audit(user, "kick", name, event.reason, record.name)
        ops.confirm(session, t("{name} was removed from {room}", name=name, room=record.name))

    async def mute(self, session: Session, user: User, event: Mute | Unmute) -> None:
        ops = self.ops
        record = await self._room(event.room)
        actor = await ops.role(user.key, record.key)
        ops.require(actor, Action.MUTE if isinstance(event, Mute) else Action.UNMUTE, record.name)
        key, name = await ops.user_named(event.name)
        await ops.require_target(actor, key, name, record.key)
        change = ModerationChange("mute", key, record.key, record.name, name, user.name)
        if isinstance(event, Unmute):
            if ops.state.mute_of(record.key, key, ops.clock()) is None:
                ops.confirm(
                    session, t("{name} is not muted in {room}", name=name, room=record.name)
                )
                return
            await ops.change(change)
            await ops.audit(user, "unmute", name, "", record.name)
            ops.confirm(session, t("{name} may speak in {room} again", name=name, room=record.name))
            return
        mute = restriction_for(name, user.name, event.reason, event.seconds, ops.clock())
        await ops.change(replace(change, restriction=mute))
        duration = format_duration(event.seconds)
        await ops.audit(user, "mute", name, _with_duration(event.reason, duration), record.name)
        ops.confirm(
            session,
            t(
                "{name} is muted in {room} for {duration}",
                name=name,
                room=record.name,
                duration=duration,
            ),
        )

    async def op(self, session: Session, user: User, event: Op | Deop) -> None:
        ops = self.ops
        record = await self._room(event.room)
        actor = await ops.role(user.key, record.key)
        on = isinstance(event, Op)
        ops.require(actor, Action.OP if on else Action.DEOP, record.name)
        key, name = await ops.user_named(event.name)
        if not on:
            await ops.require_target(actor, key, name, record.key)
        change = ModerationChange("op", key, record.key, record.name, name, user.name, on)
        await ops.change(change)
        await ops.audit(user, "op" if on else "deop", name, "", record.name)
        if record.key not in user.rooms:
            ops.confirm(session, op_text(change))

    async def mode(self, session: Session, user: User, event: SetMode) -> None:
        ops = self.ops
        record = await self._room(event.room)
        ops.require(await ops.role(user.key, record.key), Action.MODE, record.name)
        old = ops.state.mode_of(record.key)
        mode = RoomMode(
            old.moderated if event.moderated is None else event.moderated,
            old.topic_locked if event.topic_locked is None else event.topic_locked,
        )
        await ops.change(
            ModerationChange("mode", "", record.key, record.name, "", user.name, mode=mode)
        )
        changes = []
        if mode.moderated != old.moderated:
            changes.append("+m" if mode.moderated else "-m")
        if mode.topic_locked != old.topic_locked:
            changes.append("+t" if mode.topic_locked else "-t")
        await ops.audit(user, "mode", " ".join(changes) or "=", "", record.name)
        if record.key not in user.rooms:
            ops.confirm(
                session, RoomModeChanged(record.name, mode.moderated, mode.topic_locked, user.name)
            )

    async def ban(self, session: Session, user: User, event: Ban | Unban) -> None:
        ops = self.ops
        actor = await ops.role(user.key, None)
        ops.require(actor, Action.BAN if isinstance(event, Ban) else Action.UNBAN)
        key, name = await ops.user_named(event.name)
        if isinstance(event, Unban):
            if ops.state.ban_of(key, ops.clock()) is None:
                ops.confirm(session, t("{name} is not banned", name=name))
                return
            await ops.change(ModerationChange("ban", key, name=name, by=user.name))
            await ops.audit(user, "unban", name)
            ops.confirm(session, t("{name} is no longer banned", name=name))
            return
        await ops.require_target(actor, key, name, None)
        await self.ban_user(user, key, name, event.seconds, event.reason)
        ops.confirm(session, banned_text(ops.state.bans[key], ops.clock()))

    async def ban_user(
        self,
        user: User,
        key: str,
        name: str,
        seconds: int | None,
        reason: str,
        *,
        action: str = "ban",
    ) -> None:
        """Ban ``key`` (for ``seconds``, None: until lifted) and audit it as ``action``."""
        ops = self.ops
        ban = restriction_for(name, user.name, reason, seconds, ops.clock())
        await ops.change(ModerationChange("ban", key, name=name, by=user.name, restriction=ban))
        duration = "" if seconds is None else format_duration(seconds)
        await ops.audit(user, action, name, _with_duration(reason, duration))

    async def ban_ip(self, session: Session, user: User, event: BanIp | UnbanIp) -> None:
        ops = self.ops
        actor = await ops.role(user.key, None)
        ops.require(actor, Action.BAN_IP if isinstance(event, BanIp) else Action.UNBAN_IP)
        network = parse_network(event.address)
        if isinstance(event, UnbanIp):
            if str(network) not in ops.state.ip_bans.entries:
                ops.confirm(session, t("{address} is not banned", address=event.address))
                return
            await ops.change(ModerationChange("ip_ban", str(network), by=user.name))
            await ops.audit(user, "unban_ip", event.address)
            ops.confirm(session, t("{address} is no longer banned", address=event.address))
            return
        if ops.state.ip_bans.entries.get(str(network)) is None and covers(
            network, session.link.address
        ):
            raise Forbidden(
                t(
                    "{address} is your own address: you would lock yourself out",
                    address=event.address,
                )
            )
        ban = restriction_for(str(network), user.name, event.reason, event.seconds, ops.clock())
        await ops.change(ModerationChange("ip_ban", str(network), by=user.name, restriction=ban))
        duration = "" if event.seconds is None else format_duration(event.seconds)
        await ops.audit(user, "ban_ip", event.address, _with_duration(event.reason, duration))
        ops.confirm(session, banned_text(ban, ops.clock()))

    async def read_audit(self, session: Session, user: User, event: ReadAudit) -> None:
        """The last entries of the audit log (admins only)."""
        ops = self.ops
        ops.require(await ops.role(user.key, None), Action.AUDIT)
        entries = await ops.keeper.audit_entries(event.limit)
        if session.link.mode == "json":
            self.hub.send(session, AuditLog(tuple(entries)))
            return
        if not entries:
            self.hub.send(session, Notice(t("the audit log is empty")))
            return
        lang = session.link.lang
        self.hub.send(
            session,
            Notice(
                tn("— the last {n} audit entry —", "— the last {n} audit entries —", len(entries))
            ),
        )
        for entry in entries:
            self.hub.send(session, Notice(audit_line(entry, lang)))


def _with_duration(reason: str, duration: str) -> str:
    """An audit entry's reason, with the duration in front when there is one."""
    if duration and reason:
        return f"{duration}: {reason}"
    return duration or reason
