"""Who is here: users arriving (a ``hello``, a plain-text guest), their sessions, and leaving.

A user is *here* while it has a session on this instance, and for a grace
period after its last one closed (``--presence-grace``), so a quick reconnect
does not make everyone see it leave and come back. The hub reports each
user's session count to the store, and the store (which may know other
instances) says when a user joined or left the whole chat; :meth:`Presence.announce`
tells everyone else here.

A ``hello`` is checked by the accounts, answered with ``welcome`` (the user's
rooms and direct conversations with unread counts), caught up
(:mod:`papo.catchup`: the recent context, a resume from one id, or, with
``resume``, each conversation from its own position), and only then made live.

A restart is not a leave: the store remembers who was online, and after a
restart those users are *here* again, without a session, for a while
(:meth:`Presence.restore`). Coming back in that while announces nothing, so
people who reconnected first do not see everyone else "join" again; whoever
does not come back is announced as gone when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from papo.catchup import RECENT_CONTEXT, fold_resume
from papo.directory import GUEST_PREFIX, Session, User, is_guest
from papo.errors import RateLimited
from papo.i18n import t
from papo.limits import TokenBucket
from papo.names import name_key
from papo.protocol import (
    DirectState,
    Error,
    Hello,
    Notice,
    ProtocolError,
    RoomParted,
    RoomState,
    Welcome,
)
from papo.protocol import Presence as PresenceEvent
from papo.store import StoreError
from papo.store_records import RoomRecord, UserState

if TYPE_CHECKING:
    from papo.accounts import Identity
    from papo.hub import Hub

log = logging.getLogger(__name__)


#: How long users who were online before a restart count as here without a session.
RESTART_GRACE = 30.0


class Presence:
    """Users arriving, living here and leaving, for one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._guests_used: set[str] = set()
        self._restored: dict[str, tuple[str, asyncio.TimerHandle]] = {}

    async def restore(self, window: float = RESTART_GRACE) -> int:
        """Bring back who was online before a restart, announced as gone only after ``window``.

        Called once at start-up, before anyone connects (so marking them
        present tells nobody). Returns how many users were restored.
        """
        store = self.hub.store
        before = await store.online_before()
        loop = asyncio.get_running_loop()
        for key, name in before:
            store.present(key, name, 0)
            self._restored[key] = (name, loop.call_later(window, self._restore_ended, key, name))
        if before:
            log.info("%d users were online before the restart; expecting them back", len(before))
        return len(before)

    def end_restore(self) -> None:
        """End the restart's grace now: whoever has not come back is announced as gone."""
        for key, (name, handle) in list(self._restored.items()):
            handle.cancel()
            self._restore_ended(key, name)

    def _restore_ended(self, key: str, name: str) -> None:
        self._restored.pop(key, None)
        if key in self.hub.users:  # came back: an ordinary user from now on
            return
        hub = self.hub
        hub.store.absent(key, name)
        hub.spawn(hub.store.set_online(key, name, False))

    async def hello(self, session: Session, hello: Hello, *, rename: bool = False) -> None:
        """Join ``session`` as ``hello.name`` (after checking password or token)."""
        hub = self.hub
        if hello.lang is not None:  # from now on, this connection reads its language
            session.link.lang = hello.lang
        if session.user is not None and not rename:
            raise ProtocolError(
                "already_joined", t("this connection is already {name}", name=session.user.name)
            )
        if name_key(hello.name).startswith(GUEST_PREFIX):
            raise ProtocolError("bad_name", t("names starting with 'guest-' are for guests"))
        hub.moderation.check_hello(name_key(hello.name))  # a banned name
        identity = await hub.accounts.authenticate(
            hello.name, password=hello.password, token=hello.token, address=session.link.address
        )
        if session.id not in hub.pool:  # closed while we checked
            return
        session.token = identity.token
        session.device = identity.device
        began = hub.store.log.committed  # direct conversations opened after: not in `state`
        state = await hub.store.user_state(identity.key, identity.name, hub.home)
        if session.id not in hub.pool:
            self._abandon(identity.key, identity.name)
            return
        welcome = Welcome(
            identity.name,
            identity.token,
            hub.store.log.committed,
            identity.protected,
            tuple(RoomState(c.name, c.topic, c.unread, c.last_read) for c in state.rooms),
            tuple(DirectState(c.name, c.unread, c.last_read) for c in state.direct),
            admin=await hub.moderation.is_admin(identity.key),
        )
        if session.user is not None:  # plain /nick: a new name, no replay
            hub.send(session, welcome)
            if session.user.key != identity.key:
                self.part(session, 0.0)
                session.room = None
                session.history_before = {}
                self.enter(session, identity.name, identity.key, state)
            return
        hub.send(session, welcome)
        present = hub.users.get(identity.key)
        # While this session catches up, the user's other sessions may join or
        # leave rooms: the catch-up reads the live set, and going live settles
        # what changed since the welcome.
        rooms = present.rooms if present is not None else {c.conv for c in state.rooms}
        welcomed = set(rooms)
        names = {c.conv: c.name for c in state.rooms}
        directs = {c.conv for c in state.direct}

        def go_live() -> None:
            self.enter(session, identity.name, identity.key, state)
            user = session.user
            assert user is not None
            for key in welcomed - user.rooms:
                hub.send(session, RoomParted(names.get(key, key)))
            for key in user.rooms - welcomed:
                room = hub.rooms.get(key)
                if room is not None:
                    record = RoomRecord(key, room.name, room.topic)
                    hub.spawn(hub.room_ops.send_joined(user, record, [session], token=None))

        with self._catching_up(session, identity):
            if hello.resume is not None:

                async def directs_now() -> dict[str, str]:
                    now = await hub.store.user_state(identity.key, identity.name, hub.home)
                    return {c.conv: c.name for c in now.direct}

                await hub.catchup.resume_each(
                    session,
                    identity,
                    rooms,
                    names | {c.conv: c.name for c in state.direct},
                    go_live,
                    positions=fold_resume(hello.resume, identity.key),
                    fallback=hello.resume_from,
                    began=began,
                    directs_now=directs_now,
                )
            elif hello.resume_from is not None:
                await hub.catchup.resume(
                    session, identity, rooms, directs, go_live, after=hello.resume_from
                )
            else:
                await hub.catchup.recent(session, identity, rooms, directs, go_live)

    @contextlib.contextmanager
    def _catching_up(self, session: Session, identity: Identity) -> Iterator[None]:
        """Around the catch-up (a resume, or the recent context) of a welcomed session.

        Closed meanwhile, it never went live: its state is let go. When the
        store fails meanwhile, it is closed with 1013 (try again later), after
        the ``store_unavailable`` the hub sends: welcomed but never live, the
        client would wait for messages that never come; closed, it comes back
        and resumes.
        """
        try:
            yield
        except StoreError:
            if session.user is None:
                self._abandon(identity.key, identity.name)

                async def close() -> None:  # after the store_unavailable the hub sends
                    session.link.close(1013, "cannot catch up now: reconnect and resume")

                self.hub.spawn(close())
            raise
        if session.user is None:  # closed while catching up
            self._abandon(identity.key, identity.name)

    def _abandon(self, key: str, name: str) -> None:
        """A hello that never went live: the store may stop keeping this user's state here."""
        if key not in self.hub.users:
            self.hub.store.absent(key, name)

    async def join_guest(self, session: Session) -> None:
        """Join a plain-text connection under a fresh ``guest-NNNN`` name (not announced)."""
        hub = self.hub
        try:
            hub.admit(session)
        except RateLimited as exc:
            hub.send(session, Error(exc.code, exc.message))
            hub.refused(session)
            return
        digits = 4
        while True:
            for _ in range(20):
                name = f"{GUEST_PREFIX}{random.randrange(10**digits):0{digits}d}"
                if name not in hub.users and name not in self._guests_used:
                    # A guest name is never handed out twice by one process:
                    # a newcomer must not inherit an earlier guest's messages.
                    self._guests_used.add(name)
                    self._reserve_guest(name)
                    try:
                        state = await hub.store.user_state(name, name, hub.home)
                    except StoreError as exc:
                        hub.users.pop(name, None)
                        log.error("store failure for conn %d: %s", session.id, exc)
                        message = t("the server cannot store anything now; try again soon")
                        hub.send(session, Error("store_unavailable", message))
                        return
                    if session.id not in hub.pool:
                        hub.users.pop(name, None)
                        return
                    hub.send(session, Welcome(name))
                    hub.send(session, Notice(t("choose your name with /nick NAME")))
                    rooms = {c.conv for c in state.rooms}
                    context = hub.store.log.recent(name, rooms, RECENT_CONTEXT)
                    context = [m for m in context if m.to_key is None]  # rooms only
                    hub.catchup.shown(session, context)
                    for recent in context:
                        hub.send(session, recent.event())
                    self.enter(session, name, name, state)
                    return
            digits += 1

    def _reserve_guest(self, name: str) -> None:
        """Hold a guest name while its state loads, so two guests cannot draw it."""
        hub = self.hub
        bucket = TokenBucket(hub.rate, hub.burst, hub.clock)
        hub.users[name] = User(name, name, bucket, guest=True)

    def enter(self, session: Session, name: str, key: str, state: UserState) -> None:
        """Make ``session`` live for ``key``: from now on it receives what the user may see."""
        hub = self.hub
        user = hub.users.get(key)
        if user is None or (user.guest and not user.sessions and user.leave_timer is None):
            if user is None:
                bucket = TokenBucket(hub.rate, hub.burst, hub.clock)
                user = hub.users[key] = User(key, name, bucket, guest=is_guest(key))
                if not user.guest:
                    hub.spawn(hub.store.set_online(key, name, True))
            for conv in state.rooms:
                hub.room_ops.add_local(user, conv.conv, conv.name, conv.topic)
        elif user.leave_timer is not None:  # back within the grace period: no flapping
            user.leave_timer.cancel()
            user.leave_timer = None
        user.sessions[session.id] = session
        session.user = user
        hub.members[session.id] = session
        if not user.guest:
            hub.store.present(key, user.name, len(user.sessions))
        log.debug("conn %d joined as %s (%d sessions)", session.id, user.name, len(user.sessions))

    def part(self, session: Session, grace: float) -> None:
        hub = self.hub
        user = session.user
        assert user is not None
        session.user = None
        hub.members.pop(session.id, None)
        user.sessions.pop(session.id, None)
        if not user.guest:
            hub.store.present(user.key, user.name, len(user.sessions))
        if user.sessions:
            return
        if hub.stopping and not user.guest:  # a shutdown is not a leave (see Hub.stop)
            return
        if grace > 0 and not user.guest:
            loop = asyncio.get_running_loop()
            user.leave_timer = loop.call_later(grace, self._announce_leave, user)
        else:
            self._announce_leave(user)

    def _announce_leave(self, user: User) -> None:
        hub = self.hub
        user.leave_timer = None
        if user.sessions or hub.users.get(user.key) is not user:
            return
        del hub.users[user.key]
        hub.room_ops.drop_local(user)
        if user.guest:
            hub.spawn(hub.store.forget_guest(user.key))
            return
        hub.store.absent(user.key, user.name)
        hub.spawn(hub.store.set_online(user.key, user.name, False))
        hub.spawn(hub.store.set_last_seen(user.key, hub.store.log.committed))

    def announce(self, event: Literal["join", "leave"], key: str, name: str) -> None:
        """The store says a user joined or left the chat: tell everyone else here."""
        hub = self.hub
        hub.fanout(
            (s for s in hub.members.values() if s.user is not None and s.user.key != key),
            PresenceEvent(event, name),
        )
