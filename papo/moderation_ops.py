"""Moderation and the message lifecycle as users act on them (the hub's side).

:class:`ModerationOps` is to moderation what :class:`~papo.rooms.RoomOps` is
to rooms: it checks a request against the actor's role (the rules are
:mod:`papo.moderation`'s), keeps the change (:mod:`papo.moderation_store`)
and only then applies it and tells whom it concerns. Every operator's and
admin's action goes to the audit log.

* **Roles.** An admin is a name given with ``--admin`` *and* protected by a
  password (checked in the store, remembered once true); an operator is the
  room's creator or someone made one with ``op``; admins are operators
  everywhere.
* **Checks for the rest of the hub**, cheap on the hot path:
  :meth:`check_hello` (a banned name), :meth:`watches` + :meth:`check_say`
  (a mute, a read-only room), :meth:`check_topic` (a locked topic), and what
  ``room joined`` and ``rooms`` show (:meth:`operators_among`,
  :meth:`operator_names`, :meth:`mode_of`).
* **Edits and deletions** rewrite the message in the store
  (:mod:`papo.store_lifecycle`) and append an entry of their own to its
  conversation, delivered and replayed in id order like a message. They run
  one at a time (a lock), so a message's text and its entries always agree.

Times come from ``clock`` (seconds since the epoch), which tests replace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from papo.commands import ADMIN_HELP, LIFECYCLE_HELP, MODERATION_HELP
from papo.directory import Session, User
from papo.errors import (
    Banned,
    CannotPart,
    EditWindowOver,
    Forbidden,
    Muted,
    ProtocolError,
    UnknownMessage,
    UnknownRoom,
)
from papo.i18n import Text, render, t, tn
from papo.moderation import (
    EDIT_WINDOW,
    Action,
    AuditEntry,
    ModerationChange,
    ModerationState,
    Network,
    Restriction,
    Role,
    RoomMode,
    format_duration,
    in_networks,
    iso_time,
    may,
    may_target,
    parse_network,
    parse_time,
    restriction_for,
)
from papo.moderation_redis import RedisModeration
from papo.moderation_store import MemoryKeeper, ModerationKeeper
from papo.names import name_key, room_key
from papo.plain import audit_line, visible
from papo.protocol import (
    AuditLog,
    Ban,
    BanIp,
    Delete,
    Deop,
    Edit,
    Error,
    Kick,
    ModerationEvent,
    Mute,
    Notice,
    Op,
    Outgoing,
    Purge,
    ReadAudit,
    RoomModeChanged,
    ServerEvent,
    SetMode,
    Unban,
    UnbanIp,
    Unmute,
)
from papo.store import RoomRecord, Stored
from papo.store_lifecycle import MessageLifecycle
from papo.store_memory import MemoryStore

if TYPE_CHECKING:
    from papo.hub import Hub

log = logging.getLogger(__name__)

#: A WebSocket close reason is at most 123 bytes of UTF-8.
MAX_CLOSE_REASON = 123
#: Seconds the note of a kick made on another instance waits for its part event.
KICK_NOTE_KEPT = 30.0


class ModerationOps:
    """Roles, moderation requests and the message lifecycle, for one hub."""

    def __init__(self, hub: Hub, admins: Iterable[str] = ()) -> None:
        self.hub = hub
        #: Name keys of the server admins (``--admin``); powers need a password too.
        self.admins = frozenset(name_key(name) for name in admins)
        self.clock: Callable[[], float] = time.time
        self.edit_window = EDIT_WINDOW
        self.state = ModerationState()
        store = hub.store
        self.keeper: ModerationKeeper = (
            store if isinstance(store, ModerationKeeper) else MemoryKeeper()
        )
        self._verified: set[str] = set()  # admins whose names are known to be protected
        self._opened = False
        self._lifecycle_lock = asyncio.Lock()
        #: (room key, user key) → (who kicked, why), for the ``parted`` of a kick
        self._kicks: dict[tuple[str, str], tuple[str, str]] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        #: the same for kicks made on other instances, with when the note goes stale
        self._remote_kicks: dict[tuple[str, str], tuple[str, str, float]] = {}
        if isinstance(store, RedisModeration):  # changes made on other instances
            store.on_moderation = self.apply
            store.on_kick = self._kicked_elsewhere

    async def open(self) -> None:
        """Load what the store kept (once; before the first connection)."""
        if self._opened:
            return
        self.state = await self.keeper.load_moderation()
        self._opened = True
        if isinstance(self.keeper, MemoryKeeper) and not isinstance(self.hub.store, MemoryStore):
            log.warning(
                "moderation (roles, bans, mutes) is kept by this instance only with this store"
            )
        loop = asyncio.get_running_loop()
        now = self.clock()
        for (room, key), mute in list(self.state.mutes.items()):
            left = mute.left(now)
            if left is not None:
                self._timers[(room, key)] = loop.call_later(left, self._mute_ended, room, key)

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # ------------------------------------------------------------ roles

    async def is_admin(self, key: str) -> bool:
        """Whether ``key`` is a server admin now: named with ``--admin`` and protected."""
        if key not in self.admins:
            return False
        if key in self._verified:
            return True
        account = await self.hub.store.get_account(key)
        if account is not None and account.protected:
            self._verified.add(key)  # a password cannot be taken off again
            return True
        return False

    async def _creator_key(self, key: str) -> str:
        record = await self.hub.store.get_room(key)
        return name_key(record.created_by) if record is not None and record.created_by else ""

    async def role(self, user_key: str, room: str | None) -> Role:
        """``user_key``'s role in the room with key ``room`` (None: the server's)."""
        if await self.is_admin(user_key):
            return "admin"
        if room is None:
            return "member"
        creator = await self._creator_key(room)
        return "operator" if self.state.is_operator(room, creator, user_key) else "member"

    async def operators_among(self, record: RoomRecord, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` are operators of the room (or admins): for ``room joined``."""
        creator = name_key(record.created_by) if record.created_by else ""
        return {
            key
            for key in keys
            if self.state.is_operator(record.key, creator, key) or await self.is_admin(key)
        }

    def operator_names(self, record: RoomRecord) -> tuple[str, ...]:
        """The names of the room's operators (admins aside): for ``rooms``."""
        creator = name_key(record.created_by) if record.created_by else ""
        return tuple(self.state.operator_names(record.key, creator, record.created_by))

    def mode_of(self, key: str) -> RoomMode:
        return self.state.mode_of(key)

    def _require(self, role: Role, action: Action, room: str | None = None) -> None:
        if may(role, action):
            return
        if room is not None and may("operator", action):
            raise Forbidden(t("only operators of {room} and admins may do that", room=room))
        raise Forbidden(t("only admins may do that"))

    async def _require_target(self, actor: Role, key: str, name: str, room: str | None) -> Role:
        target = await self.role(key, room)
        if not may_target(actor, target):
            if target == "admin":
                raise Forbidden(t("{name} is an admin: nobody may do that to them", name=name))
            raise Forbidden(t("you may not do that to {name}", name=name))
        return target

    # ------------------------------------------------------------ checks

    def check_hello(self, key: str) -> None:
        """Refuse a ``hello`` (or plain ``/nick``) as a banned name."""
        ban = self.state.ban_of(key, self.clock())
        if ban is not None:
            raise Banned(self._banned_text(ban), ban.until_iso)

    def watches(self, room: str, key: str) -> bool:
        """Whether a ``say`` of ``key`` in ``room`` needs :meth:`check_say` (cheap)."""
        state = self.state
        return (
            room in state.modes
            or (room, key) in state.mutes
            or (bool(state.bans) and key in state.bans)
        )

    async def check_say(self, user: User, room: str, name: str) -> None:
        """Refuse speech in a room where the user is muted, banned or not allowed to speak."""
        now = self.clock()
        ban = self.state.ban_of(user.key, now)
        if ban is not None:
            raise Banned(self._banned_text(ban), ban.until_iso)
        mute = self.state.mute_of(room, user.key, now)
        if mute is not None:
            left = format_duration(mute.left(now) or 0)
            raise Muted(
                t("you are muted in {room} for {duration} more", room=name, duration=left),
                mute.until_iso,
            )
        if self.state.mode_of(room).moderated and not may(
            await self.role(user.key, room), Action.SPEAK_MODERATED
        ):
            raise Forbidden(t("{room} is read-only: only its operators speak", room=name))

    async def check_topic(self, user: User, room: str, name: str) -> None:
        """Refuse a topic change of a locked topic by a member."""
        if self.state.mode_of(room).topic_locked and not may(
            await self.role(user.key, room), Action.TOPIC_LOCKED
        ):
            raise Forbidden(
                t("the topic of {room} is locked: only its operators set it", room=name)
            )

    def take_kick(self, room: str, key: str) -> tuple[str | None, str]:
        """Who kicked ``key`` out of ``room`` and why, for its ``parted`` (None: it left)."""
        kick = self._kicks.pop((room, key), None)
        if kick is not None:
            return kick
        remote = self._remote_kicks.pop((room, key), None)
        if remote is None or remote[2] < time.monotonic():
            return None, ""
        return remote[0], remote[1]

    def _kicked_elsewhere(self, room: str, key: str, by: str, reason: str) -> None:
        """A kick made on another instance: its part event follows (the note is kept for a
        while only, in case it does not)."""
        now = time.monotonic()
        stale = [where for where, note in self._remote_kicks.items() if note[2] < now]
        for where in stale:
            del self._remote_kicks[where]
        self._remote_kicks[(room, key)] = (by, reason, now + KICK_NOTE_KEPT)

    def ip_ban_of(self, address: str) -> Restriction | None:
        """The ban that refuses connections from ``address`` now, if any."""
        return self.state.ip_bans.match(address, self.clock())

    async def help_for(self, session: Session) -> list[Text]:
        """What ``/help`` adds for this session's user: edit and delete, and by role."""
        texts = [LIFECYCLE_HELP]
        user = session.user
        if user is None:
            return texts
        here = room_key(session.room) if session.room else self.hub.home.key
        role = await self.role(user.key, here)
        operator = role != "member"
        for key in user.rooms:
            operator = operator or self.state.is_operator(
                key, await self._creator_key(key), user.key
            )
        if operator:
            texts.append(MODERATION_HELP)
        if role == "admin":
            texts.append(ADMIN_HELP)
        return texts

    # ------------------------------------------------------------ requests

    async def handle(self, session: Session, user: User, event: ModerationEvent) -> None:
        """Carry out one moderation or lifecycle request (refusals raise)."""
        if isinstance(event, Edit):
            await self.edit(session, user, event)
        elif isinstance(event, Delete):
            await self.delete(session, user, event)
        elif isinstance(event, Kick):
            await self.kick(session, user, event)
        elif isinstance(event, Mute | Unmute):
            await self.mute(session, user, event)
        elif isinstance(event, Op | Deop):
            await self.op(session, user, event)
        elif isinstance(event, SetMode):
            await self.mode(session, user, event)
        elif isinstance(event, Ban | Unban):
            await self.ban(session, user, event)
        elif isinstance(event, BanIp | UnbanIp):
            await self.ban_ip(session, user, event)
        elif isinstance(event, Purge):
            await self.purge(session, user, event)
        else:
            await self.audit(session, user, event)

    async def _room(self, name: str) -> RoomRecord:
        record = await self.hub.store.get_room(room_key(name))
        if record is None:
            raise UnknownRoom(t("there is no room {room}", room=name))
        return record

    async def _user_named(self, name: str) -> tuple[str, str]:
        """``(key, name as first written)`` of a user who exists (online or with an account)."""
        key = name_key(name)
        online = self.hub.users.get(key)
        if online is not None:
            return key, online.name
        account = await self.hub.store.get_account(key)
        if account is None:
            raise ProtocolError("unknown_user", t("there is no user named {name}", name=name))
        return key, account.name

    async def kick(self, session: Session, user: User, event: Kick) -> None:
        record = await self._room(event.room)
        if record.key == self.hub.home.key:
            raise CannotPart(
                t("everyone is in {room}; mute or ban instead of kicking", room=record.name)
            )
        actor = await self.role(user.key, record.key)
        self._require(actor, Action.KICK, record.name)
        members = dict(await self.hub.store.members(record.key))
        key = name_key(event.name)
        if key not in members:
            raise ProtocolError(
                "not_member", t("{name} is not in {room}", name=event.name, room=record.name)
            )
        name = members[key]
        await self._require_target(actor, key, name, record.key)
        self._kicks[(record.key, key)] = (user.name, event.reason)
        if isinstance(self.hub.store, RedisModeration):  # the user's sessions elsewhere
            await self.hub.store.announce_kick(record.key, key, user.name, event.reason)
        try:  # the store announces the part (here: within the call) and it takes the note
            await self.hub.store.remove_member(record, key, name, None)
        finally:
            self._kicks.pop((record.key, key), None)
        await self._audit(user, "kick", name, event.reason, record.name)
        self._confirm(session, t("{name} was removed from {room}", name=name, room=record.name))

    async def mute(self, session: Session, user: User, event: Mute | Unmute) -> None:
        record = await self._room(event.room)
        actor = await self.role(user.key, record.key)
        self._require(actor, Action.MUTE if isinstance(event, Mute) else Action.UNMUTE, record.name)
        key, name = await self._user_named(event.name)
        await self._require_target(actor, key, name, record.key)
        change = ModerationChange("mute", key, record.key, record.name, name, user.name)
        if isinstance(event, Unmute):
            if self.state.mute_of(record.key, key, self.clock()) is None:
                self._confirm(
                    session, t("{name} is not muted in {room}", name=name, room=record.name)
                )
                return
            await self._change(change)
            await self._audit(user, "unmute", name, "", record.name)
            self._confirm(
                session, t("{name} may speak in {room} again", name=name, room=record.name)
            )
            return
        mute = restriction_for(name, user.name, event.reason, event.seconds, self.clock())
        await self._change(replace(change, restriction=mute))
        duration = format_duration(event.seconds)
        await self._audit(user, "mute", name, _with_duration(event.reason, duration), record.name)
        self._confirm(
            session,
            t(
                "{name} is muted in {room} for {duration}",
                name=name,
                room=record.name,
                duration=duration,
            ),
        )

    def _mute_ended(self, room: str, key: str) -> None:
        """A mute's time is up: forget it, tell the user (every instance does, for its own
        sessions; the kept row is dropped at the next load, as ended)."""
        self._timers.pop((room, key), None)
        mute = self.state.mutes.get((room, key))
        if mute is None:
            return  # lifted meanwhile
        left = mute.left(self.clock())
        if left:  # a longer mute replaced it, or the wall clock is a hair behind the timer
            loop = asyncio.get_running_loop()
            self._timers[(room, key)] = loop.call_later(left + 0.01, self._mute_ended, room, key)
            return
        del self.state.mutes[(room, key)]
        record = self.hub.rooms.get(room)
        name = record.name if record is not None else room
        self._tell_user(key, Notice(t("you may speak in {room} again", room=name)))

    async def op(self, session: Session, user: User, event: Op | Deop) -> None:
        record = await self._room(event.room)
        actor = await self.role(user.key, record.key)
        on = isinstance(event, Op)
        self._require(actor, Action.OP if on else Action.DEOP, record.name)
        key, name = await self._user_named(event.name)
        if not on:
            await self._require_target(actor, key, name, record.key)
        change = ModerationChange("op", key, record.key, record.name, name, user.name, on)
        await self._change(change)
        await self._audit(user, "op" if on else "deop", name, "", record.name)
        if record.key not in user.rooms:
            self._confirm(session, _op_text(change))

    async def mode(self, session: Session, user: User, event: SetMode) -> None:
        record = await self._room(event.room)
        self._require(await self.role(user.key, record.key), Action.MODE, record.name)
        old = self.state.mode_of(record.key)
        mode = RoomMode(
            old.moderated if event.moderated is None else event.moderated,
            old.topic_locked if event.topic_locked is None else event.topic_locked,
        )
        await self._change(
            ModerationChange("mode", "", record.key, record.name, "", user.name, mode=mode)
        )
        changes = []
        if mode.moderated != old.moderated:
            changes.append("+m" if mode.moderated else "-m")
        if mode.topic_locked != old.topic_locked:
            changes.append("+t" if mode.topic_locked else "-t")
        await self._audit(user, "mode", " ".join(changes) or "=", "", record.name)
        if record.key not in user.rooms:
            self._confirm(
                session, RoomModeChanged(record.name, mode.moderated, mode.topic_locked, user.name)
            )

    async def ban(self, session: Session, user: User, event: Ban | Unban) -> None:
        actor = await self.role(user.key, None)
        self._require(actor, Action.BAN if isinstance(event, Ban) else Action.UNBAN)
        key, name = await self._user_named(event.name)
        if isinstance(event, Unban):
            if self.state.ban_of(key, self.clock()) is None:
                self._confirm(session, t("{name} is not banned", name=name))
                return
            await self._change(ModerationChange("ban", key, name=name, by=user.name))
            await self._audit(user, "unban", name)
            self._confirm(session, t("{name} is no longer banned", name=name))
            return
        await self._require_target(actor, key, name, None)
        await self._ban(user, key, name, event.seconds, event.reason)
        self._confirm(session, self._banned_text(self.state.bans[key]))

    async def _ban(
        self,
        user: User,
        key: str,
        name: str,
        seconds: int | None,
        reason: str,
        *,
        action: str = "ban",
    ) -> None:
        ban = restriction_for(name, user.name, reason, seconds, self.clock())
        await self._change(ModerationChange("ban", key, name=name, by=user.name, restriction=ban))
        duration = "" if seconds is None else format_duration(seconds)
        await self._audit(user, action, name, _with_duration(reason, duration))

    # ------------------------------------------------------------ applying a change

    async def _change(self, change: ModerationChange) -> None:
        """Keep ``change`` (other instances hear of it from the store), then apply it here."""
        await self.keeper.keep_moderation(change)
        self.apply(change)

    def apply(self, change: ModerationChange) -> None:
        """Apply a change, made here or on another instance, and tell whom it concerns here."""
        change.apply_to(self.state)
        r = change.restriction
        if change.what == "op":
            self._tell_room(change.room, Notice(_op_text(change)))
        elif change.what == "ban" and r is not None:
            target = self.hub.users.get(change.key)
            if target is not None:
                self._close(list(target.sessions.values()), r)
        elif change.what == "mute":
            self._mute_applied(change)
        elif change.what == "ip_ban" and r is not None:
            network = parse_network(change.key)
            self._close([s for s in self.hub.pool.values() if _covers(network, s.link.address)], r)
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
        left = mute.left(self.clock())
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

    def _close(self, sessions: list[Session], ban: Restriction) -> None:
        """Tell each session why, then close it with 1008 and the reason."""
        text = self._banned_text(ban)
        for session in sessions:
            session.link.write(Outgoing(Error("banned", text, None, ban.until_iso)))
            session.link.close(1008, _close_reason(visible(render(text, session.link.lang))))

    def _banned_text(self, ban: Restriction) -> Text:
        left = ban.left(self.clock())
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

    async def ban_ip(self, session: Session, user: User, event: BanIp | UnbanIp) -> None:
        actor = await self.role(user.key, None)
        self._require(actor, Action.BAN_IP if isinstance(event, BanIp) else Action.UNBAN_IP)
        network = parse_network(event.address)
        if isinstance(event, UnbanIp):
            if str(network) not in self.state.ip_bans.entries:
                self._confirm(session, t("{address} is not banned", address=event.address))
                return
            await self._change(ModerationChange("ip_ban", str(network), by=user.name))
            await self._audit(user, "unban_ip", event.address)
            self._confirm(session, t("{address} is no longer banned", address=event.address))
            return
        if self.state.ip_bans.entries.get(str(network)) is None and _covers(
            network, session.link.address
        ):
            raise Forbidden(
                t(
                    "{address} is your own address: you would lock yourself out",
                    address=event.address,
                )
            )
        ban = restriction_for(str(network), user.name, event.reason, event.seconds, self.clock())
        await self._change(ModerationChange("ip_ban", str(network), by=user.name, restriction=ban))
        duration = "" if event.seconds is None else format_duration(event.seconds)
        await self._audit(user, "ban_ip", event.address, _with_duration(event.reason, duration))
        self._confirm(session, self._banned_text(ban))

    async def audit(self, session: Session, user: User, event: ReadAudit) -> None:
        self._require(await self.role(user.key, None), Action.AUDIT)
        entries = await self.keeper.audit_entries(event.limit)
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

    # ------------------------------------------------------------ the message lifecycle

    def _lifecycle(self) -> MessageLifecycle:
        store = self.hub.store
        if not isinstance(store, MessageLifecycle):  # every store of papo's has it
            raise TypeError(f"{type(store).__name__} cannot edit or delete messages")
        return store

    async def _message(
        self, user: User, message_id: int | None, room: str | None, *, admin: bool
    ) -> Stored:
        """The message a request is about, if the user may see it (an admin sees every one)."""
        if message_id is None:  # plain /edit, /delete: the user's newest message in the room
            key = room_key(room) if room is not None else self.hub.home.key
            for kept in reversed(self.hub.store.log.ring):
                if (
                    kept.conv == key
                    and kept.sender_key == user.key
                    and kept.is_message
                    and not kept.deleted
                ):
                    return kept
            raise UnknownMessage(
                t("you have no recent message in {room}", room=room or self.hub.home.name)
            )
        found = await self._lifecycle().get_message(message_id)
        if (
            found is None
            or not found.is_message
            or found.deleted
            or not (admin or found.visible_to(user.key, user.rooms))
        ):
            raise UnknownMessage(t("there is no message {id}", id=message_id))
        return found

    async def edit(self, session: Session, user: User, event: Edit) -> None:
        lifecycle = self._lifecycle()
        async with self._lifecycle_lock:
            target = await self._message(user, event.id, event.room, admin=False)
            if target.sender_key != user.key:
                raise Forbidden(t("you can edit only your own messages"))
            now = self.clock()
            if now - parse_time(target.ts) > self.edit_window:
                raise EditWindowOver(
                    t(
                        "a message can be edited for {minutes} minutes after it was sent",
                        minutes=round(self.edit_window / 60),
                    )
                )
            if target.to_key is None and self.watches(target.conv, user.key):
                await self.check_say(user, target.conv, target.room or target.conv)
            edited_ts = iso_time(now)
            await lifecycle.edit_message(replace(target, text=event.text, edited_ts=edited_ts))
            entry = replace(
                target, id=0, text=event.text, ts=edited_ts, cid=None, kind="edit",
                target=target.id, edited_ts=edited_ts,
            )  # fmt: skip
            await self.hub.store.append(entry, None)  # every session, the editor's too

    async def delete(self, session: Session, user: User, event: Delete) -> None:
        lifecycle = self._lifecycle()
        admin = await self.is_admin(user.key)
        async with self._lifecycle_lock:
            target = await self._message(user, event.id, event.room, admin=admin)
            own = target.sender_key == user.key
            if not own:
                where = None if target.to_key is not None else target.conv
                actor = await self.role(user.key, where)
                self._require(actor, Action.DELETE_ANY, target.room)
                await self._require_target(actor, target.sender_key, target.sender, where)
            await self._erase(lifecycle, user, [target])
        if not own:
            reason = f"#{target.id}"
            await self._audit(user, "delete", target.sender, reason, target.room or "")

    async def _erase(self, lifecycle: MessageLifecycle, user: User, targets: list[Stored]) -> None:
        """Tombstone ``targets`` (erasing their text) and announce each as ``deleted``."""
        if not targets:
            return
        await lifecycle.delete_messages(targets, user.name)
        ts = iso_time(self.clock())
        entries = [
            replace(
                m,
                id=0,
                text="",
                ts=ts,
                cid=None,
                kind="delete",
                target=m.id,
                edited_ts=None,
                by=user.name,
            )
            for m in targets
        ]
        # Started in order, so the entries' ids follow their messages' order.
        await asyncio.gather(*(self.hub.store.append(entry, None) for entry in entries))

    async def purge(self, session: Session, user: User, event: Purge) -> None:
        actor = await self.role(user.key, None)
        self._require(actor, Action.PURGE)
        lifecycle = self._lifecycle()
        key, name = await self._user_named(event.name)
        await self._require_target(actor, key, name, None)
        since = event.since
        if since is None and event.seconds is not None:
            since = iso_time(self.clock() - event.seconds)
        elif since is not None:
            since = iso_time(parse_time(since))
        await self._ban(user, key, name, None, event.reason, action="purge")
        async with self._lifecycle_lock:
            messages = await lifecycle.messages_by(key, since)
            await self._erase(lifecycle, user, messages)
        await self._audit(user, "delete", name, f"{len(messages)} messages")
        self._confirm(
            session,
            tn(
                "{name} is banned and their {n} message deleted",
                "{name} is banned and their {n} messages deleted",
                len(messages),
                name=name,
            ),
        )

    # ------------------------------------------------------------ telling people

    async def _audit(
        self, user: User, action: str, target: str, reason: str = "", room: str = ""
    ) -> None:
        entry = AuditEntry(iso_time(self.clock()), user.name, action, target, reason, room)
        await self.keeper.keep_audit(entry)
        log.info("moderation: %s %s %s %s %s", entry.by, action, target, room, reason)

    def _confirm(self, session: Session, text: Text | ServerEvent) -> None:
        self.hub.send(session, Notice(text) if isinstance(text, Text) else text)

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


def _covers(network: Network, address: str) -> bool:
    return in_networks(address, [network])


def _op_text(change: ModerationChange) -> Text:
    values = {"by": change.by, "name": change.name, "room": change.room_name}
    if change.on:
        return t("{by} made {name} an operator of {room}", **values)
    return t("{by} took operator away from {name} in {room}", **values)


def _with_duration(reason: str, duration: str) -> str:
    """An audit entry's reason, with the duration in front when there is one."""
    if duration and reason:
        return f"{duration}: {reason}"
    return duration or reason


def _close_reason(text: str) -> str:
    """``text`` cut to what a close frame may carry (123 bytes of UTF-8)."""
    data = text.encode()
    if len(data) <= MAX_CLOSE_REASON:
        return text
    return data[: MAX_CLOSE_REASON - 3].decode(errors="ignore") + "…"
