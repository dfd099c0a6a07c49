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
* **Requests** (:meth:`handle`) go to the module of their kind:
  :mod:`papo.moderation_requests` (kick, mute, op, mode, ban, ban-ip, the
  audit log) and :mod:`papo.moderation_lifecycle` (edit, delete, purge).
  They share what this class keeps: the state, the roles, the checks of the
  actor (:meth:`require`, :meth:`require_target`), keeping a change
  (:meth:`change`) and auditing it (:meth:`audit`).
* **Applying a change**, made here or on another instance, is
  :mod:`papo.moderation_effects`'s: closing banned sessions, the mutes'
  timers, the notices.

Times come from ``clock`` (seconds since the epoch), which tests replace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from papo.commands import ADMIN_HELP, LIFECYCLE_HELP, MODERATION_HELP
from papo.directory import Session, User
from papo.errors import Banned, Forbidden, Muted, ProtocolError
from papo.i18n import Text, t
from papo.moderation import (
    EDIT_WINDOW,
    Action,
    AuditEntry,
    ModerationChange,
    ModerationState,
    Restriction,
    Role,
    RoomMode,
    format_duration,
    iso_time,
    may,
    may_target,
)
from papo.moderation_effects import ModerationEffects, banned_text
from papo.moderation_lifecycle import LifecycleRequests
from papo.moderation_redis import RedisModeration
from papo.moderation_requests import ModerationRequests
from papo.moderation_store import MemoryKeeper, ModerationKeeper
from papo.names import name_key, room_key
from papo.protocol import (
    Ban,
    BanIp,
    Delete,
    Deop,
    Edit,
    Kick,
    ModerationEvent,
    Mute,
    Notice,
    Op,
    Purge,
    ServerEvent,
    SetMode,
    Unban,
    UnbanIp,
    Unmute,
)
from papo.store_memory import MemoryStore
from papo.store_records import RoomRecord

if TYPE_CHECKING:
    from papo.hub import Hub

log = logging.getLogger(__name__)

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
        #: (room key, user key) → (who kicked, why), for the ``parted`` of a kick
        self.kicks: dict[tuple[str, str], tuple[str, str]] = {}
        #: the same for kicks made on other instances, with when the note goes stale
        self._remote_kicks: dict[tuple[str, str], tuple[str, str, float]] = {}
        self.effects = ModerationEffects(self)
        self.requests = ModerationRequests(self)
        self.lifecycle = LifecycleRequests(self)
        if isinstance(store, RedisModeration):  # changes made on other instances
            store.on_moderation = self.effects.apply
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
        self.effects.start_timers()

    def stop(self) -> None:
        self.effects.stop()

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

    def require(self, role: Role, action: Action, room: str | None = None) -> None:
        """Refuse ``action`` to ``role`` unless it may (``room``: the name the refusal says)."""
        if may(role, action):
            return
        if room is not None and may("operator", action):
            raise Forbidden(t("only operators of {room} and admins may do that", room=room))
        raise Forbidden(t("only admins may do that"))

    async def require_target(self, actor: Role, key: str, name: str, room: str | None) -> Role:
        """Refuse an action of ``actor`` on user ``key`` of a role it may not act on."""
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
            raise Banned(banned_text(ban, self.clock()), ban.until_iso)

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
            raise Banned(banned_text(ban, self.clock()), ban.until_iso)
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
        kick = self.kicks.pop((room, key), None)
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
        requests, lifecycle = self.requests, self.lifecycle
        if isinstance(event, Edit):
            await lifecycle.edit(session, user, event)
        elif isinstance(event, Delete):
            await lifecycle.delete(session, user, event)
        elif isinstance(event, Kick):
            await requests.kick(session, user, event)
        elif isinstance(event, Mute | Unmute):
            await requests.mute(session, user, event)
        elif isinstance(event, Op | Deop):
            await requests.op(session, user, event)
        elif isinstance(event, SetMode):
            await requests.mode(session, user, event)
        elif isinstance(event, Ban | Unban):
            await requests.ban(session, user, event)
        elif isinstance(event, BanIp | UnbanIp):
            await requests.ban_ip(session, user, event)
        elif isinstance(event, Purge):
            await lifecycle.purge(session, user, event)
        else:
            await requests.read_audit(session, user, event)

    # ------------------------------------------------------------ shared by the requests

    async def user_named(self, name: str) -> tuple[str, str]:
        """``(key, name as first written)`` of a user who exists (online or with an account)."""
        key = name_key(name)
        online = self.hub.users.get(key)
        if online is not None:
            return key, online.name
        account = await self.hub.store.get_account(key)
        if account is None:
            raise ProtocolError("unknown_user", t("there is no user named {name}", name=name))
        return key, account.name

    async def change(self, change: ModerationChange) -> None:
        """Keep ``change`` (other instances hear of it from the store), then apply it here."""
        await self.keeper.keep_moderation(change)
        self.effects.apply(change)

    async def audit(
        self, user: User, action: str, target: str, reason: str = "", room: str = ""
    ) -> None:
        """Add ``user``'s action to the audit log (and the log)."""
        entry = AuditEntry(iso_time(self.clock()), user.name, action, target, reason, room)
        await self.keeper.keep_audit(entry)
        log.info("moderation: %s %s %s %s %s", entry.by, action, target, room, reason)

    def confirm(self, session: Session, text: Text | ServerEvent) -> None:
        """Tell the actor's session what was done."""
        self.hub.send(session, Notice(text) if isinstance(text, Text) else text)
