"""The hub: who is connected, which sessions belong to which user, who gets what.

One :class:`Hub` is created in ``main`` and owns all routing state; nothing
else keeps a set of connections. A message flows one way through it:
validated event in → stored (id assigned, committed) → recipients picked →
one :class:`~papo.protocol.Outgoing` written to every recipient's link,
without awaiting anyone. The hub does not know about WebSockets (a
:class:`Link` is all it needs of a connection) nor which store it has.

Stored messages come back from the store through ``store.on_message``, in id
order, whether they were sent here or on another instance; presence changes
through ``store.on_presence``. The hub reports its users' session counts to
the store and never decides alone whether a user joined or left the chat.

Joining with ``resume_from`` replays what the session missed before it goes
live: older pages from the store with flow control in between, and the last
part from the store's in-memory ring in the same event-loop step in which the
session becomes a recipient, so no message can fall between replay and live.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from papo.accounts import Accounts, Identity
from papo.limits import TokenBucket
from papo.names import name_key
from papo.protocol import (
    Ack,
    ClientEvent,
    Error,
    Gap,
    Hello,
    Logout,
    Mode,
    Notice,
    Outgoing,
    Presence,
    ProtocolError,
    Register,
    Say,
    ServerEvent,
    Users,
    Welcome,
    Who,
    utc_timestamp,
)
from papo.store import Store, Stored, StoreError

log = logging.getLogger(__name__)

GUEST_PREFIX = "guest-"
RECENT_CONTEXT = 50
REPLAY_CHUNK = 500


class Link(Protocol):
    """What the hub needs of one connection; the transport provides it."""

    mode: Mode
    address: str

    def write(self, out: Outgoing) -> None:
        """Queue ``out`` for this peer without waiting; never raises."""

    async def drain(self) -> None:
        """Wait until this peer's pending output is low again; never raises."""

    def close(self, code: int, reason: str) -> None:
        """Start closing this connection with ``code``; never raises."""

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or closed."""


class Session:
    """One live connection, joined to a user or not yet."""

    __slots__ = ("id", "link", "opened", "token", "user")

    def __init__(self, session_id: int, link: Link) -> None:
        self.id = session_id
        self.link = link
        self.user: User | None = None
        self.token: str | None = None
        self.opened = time.monotonic()


class User:
    """A name with one or more sessions (devices, tabs)."""

    __slots__ = ("bucket", "guest", "key", "leave_timer", "name", "sessions")

    def __init__(self, key: str, name: str, bucket: TokenBucket, *, guest: bool) -> None:
        self.key = key
        self.name = name
        self.guest = guest
        self.bucket = bucket
        self.sessions: dict[int, Session] = {}
        self.leave_timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class HubStats:
    connections_total: int = 0
    connections_peak: int = 0
    received: int = 0
    stored: int = 0
    deliveries: int = 0
    rate_limited: int = 0
    flood_closes: int = 0


class Hub:
    """Owns the pool of connections and the online users; routes every event."""

    def __init__(
        self,
        store: Store,
        accounts: Accounts,
        *,
        presence_grace: float = 5.0,
        guests: bool = True,
        rate: float = 20.0,
        burst: float = 40.0,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.presence_grace = presence_grace
        self.guests = guests
        self.rate = rate
        self.burst = burst
        self.pool: dict[int, Session] = {}
        self.members: dict[int, Session] = {}  # live joined sessions, for public fan-out
        self.users: dict[str, User] = {}  # online users (and users in their grace period)
        self.stats = HubStats()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Called with the seconds each fan-out took (metrics set it).
        self.observe_fanout: Callable[[float], None] = lambda seconds: None
        store.on_message = self._deliver
        store.on_presence = self._presence

    # ------------------------------------------------------------ connections

    def attach(self, link: Link) -> Session:
        """Add a new connection to the pool."""
        session = Session(next(self._ids), link)
        self.pool[session.id] = session
        self.stats.connections_total += 1
        self.stats.connections_peak = max(self.stats.connections_peak, len(self.pool))
        return session

    def detach(self, session: Session) -> None:
        """Remove a closed connection at once; its user leaves after the grace period."""
        if self.pool.pop(session.id, None) is None:
            return
        if session.user is not None:
            self._part(session, self.presence_grace)

    def send(self, session: Session, event: ServerEvent) -> None:
        """Send one event to one session."""
        session.link.write(Outgoing(event))

    def fanout(
        self, recipients: Iterable[Session], event: ServerEvent, exclude: Session | None = None
    ) -> int:
        """Encode ``event`` once and write it to every recipient but ``exclude``."""
        started = time.perf_counter()
        out = Outgoing(event)
        count = 0
        for session in recipients:
            if session is not exclude:
                session.link.write(out)
                count += 1
        self.stats.deliveries += count
        self.observe_fanout(time.perf_counter() - started)
        return count

    # ------------------------------------------------------------ events

    async def handle(self, session: Session, event: ClientEvent, *, rename: bool = False) -> None:
        """Carry out one client event; a refusal becomes an ``error`` event to its sender.

        ``rename`` lets a ``Hello`` move a joined session to another name
        (plain-text ``/nick``).
        """
        try:
            if isinstance(event, Say):
                await self.say(session, event)
            elif isinstance(event, Hello):
                await self.join(session, event, rename=rename)
            elif isinstance(event, Who):
                self.send(session, await self.who())
            elif isinstance(event, Register):
                await self.register(session, event.password)
            else:
                assert isinstance(event, Logout)
                await self.logout(session)
        except ProtocolError as exc:
            self.send(session, Error(exc.code, exc.message, _cid(event)))
        except StoreError as exc:
            log.error("store failure for conn %d: %s", session.id, exc)
            message = "the server cannot store this now; nothing was sent, try again"
            self.send(session, Error("store_unavailable", message, _cid(event)))

    async def join(self, session: Session, hello: Hello, *, rename: bool = False) -> None:
        """Join ``session`` as ``hello.name`` (after checking password or token)."""
        if session.user is not None and not rename:
            raise ProtocolError("already_joined", f"this connection is already {session.user.name}")
        if name_key(hello.name).startswith(GUEST_PREFIX):
            raise ProtocolError("bad_name", "names starting with 'guest-' are for guests")
        identity = await self.accounts.authenticate(
            hello.name, password=hello.password, token=hello.token, address=session.link.address
        )
        if session.id not in self.pool:  # closed while we checked
            return
        session.token = identity.token
        welcome = Welcome(
            identity.name, identity.token, self.store.log.committed, identity.protected
        )
        if session.user is not None:  # plain /nick: a new name, no replay
            self.send(session, welcome)
            if session.user.key != identity.key:
                self._part(session, 0.0)
                self._enter(session, identity.name, identity.key)
            return
        self.send(session, welcome)
        if hello.resume_from is not None:
            await self._catch_up(session, identity, hello.resume_from)
        else:
            await self._recent(session, identity)

    def join_guest(self, session: Session) -> None:
        """Join a plain-text connection under a fresh ``guest-NNNN`` name (not announced)."""
        digits = 4
        while True:
            for _ in range(20):
                name = f"{GUEST_PREFIX}{random.randrange(10**digits):0{digits}d}"
                if name not in self.users:
                    self.send(session, Welcome(name))
                    self._go_live(session, name, name, self.store.log.recent(name, RECENT_CONTEXT))
                    return
            digits += 1

    async def _recent(self, session: Session, identity: Identity) -> None:
        """A fresh join: the recent context, and private messages sent while away."""
        log_ = self.store.log
        context = log_.recent(identity.key, RECENT_CONTEXT)
        first = context[0].id if context else log_.committed + 1
        if 0 < identity.last_seen < first - 1:
            page = await self.store.page(identity.key, identity.last_seen, REPLAY_CHUNK)
            if session.id not in self.pool:
                return
            missed = [m for m in page.messages if m.to_key == identity.key and m.id < first]
            for message in missed:
                self.send(session, message.event())
            context = log_.recent(identity.key, RECENT_CONTEXT)  # may have moved meanwhile
            cursor = max((m.id for m in missed), default=0)
            context = [m for m in context if m.id > cursor]
        self._go_live(session, identity.name, identity.key, context)

    def _go_live(self, session: Session, name: str, key: str, context: list[Stored]) -> None:
        """Send the recent ``context``, then make the session a recipient.

        Callers read ``context`` from the ring with no await since, so no
        message can fall between the context and what arrives live.
        """
        for message in context:
            self.send(session, message.event())
        self._enter(session, name, key)

    async def _catch_up(self, session: Session, identity: Identity, after: int) -> None:
        """Replay every message visible to the user after ``after``, then go live."""
        log_ = self.store.log
        key = identity.key
        if after > log_.committed and not await self.store.reach(after):
            self.send(
                session,
                Error(
                    "bad_resume",
                    f"resume_from {after} is newer than the newest message ({log_.committed}); "
                    "resuming from there",
                ),
            )
            after = log_.committed
        if log_.oldest and after < log_.oldest - 1:
            self.send(session, Gap(after, log_.oldest))
        cursor = after
        while True:
            if log_.covers(cursor):
                batch, cursor = log_.since(key, cursor, REPLAY_CHUNK)
                for message in batch:
                    self.send(session, message.replayed_to(key))
                if cursor >= log_.committed:
                    break  # no await since `since`: nothing new can be missed
            else:
                page = await self.store.page(key, cursor, REPLAY_CHUNK)
                for message in page.messages:
                    if message.id > cursor:
                        self.send(session, message.replayed_to(key))
                cursor = max(cursor, page.scanned_to)
            await session.link.drain()
            if session.id not in self.pool or session.link.closed:
                return
        self._enter(session, identity.name, key)

    def _enter(self, session: Session, name: str, key: str) -> None:
        """Make ``session`` live for ``key``: from now on it receives what the user may see."""
        user = self.users.get(key)
        if user is None:
            bucket = TokenBucket(self.rate, self.burst)
            user = self.users[key] = User(key, name, bucket, guest=key.startswith(GUEST_PREFIX))
        elif user.leave_timer is not None:  # back within the grace period: no flapping
            user.leave_timer.cancel()
            user.leave_timer = None
        user.sessions[session.id] = session
        session.user = user
        self.members[session.id] = session
        if not user.guest:
            self.store.present(key, user.name, len(user.sessions))
        log.debug("conn %d joined as %s (%d sessions)", session.id, user.name, len(user.sessions))

    def _part(self, session: Session, grace: float) -> None:
        user = session.user
        assert user is not None
        session.user = None
        self.members.pop(session.id, None)
        user.sessions.pop(session.id, None)
        if not user.guest:
            self.store.present(user.key, user.name, len(user.sessions))
        if user.sessions:
            return
        if grace > 0 and not user.guest:
            loop = asyncio.get_running_loop()
            user.leave_timer = loop.call_later(grace, self._announce_leave, user)
        else:
            self._announce_leave(user)

    def _announce_leave(self, user: User) -> None:
        user.leave_timer = None
        if user.sessions or self.users.get(user.key) is not user:
            return
        del self.users[user.key]
        if user.guest:
            return
        self.store.absent(user.key, user.name)
        self._spawn(self.store.set_last_seen(user.key, self.store.log.committed))

    def _presence(self, event: Literal["join", "leave"], key: str, name: str) -> None:
        """The store says a user joined or left the chat: tell everyone else here."""
        self.fanout(
            (s for s in self.members.values() if s.user is not None and s.user.key != key),
            Presence(event, name),
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background store update failed: %s", exc)

    def _user(self, session: Session) -> User:
        if session.user is None:
            raise ProtocolError("not_joined", "join first: send a 'hello' with your name")
        return session.user

    async def say(self, session: Session, say: Say) -> None:
        """Store a public or private message, deliver it, acknowledge it."""
        user = self._user(session)
        self.stats.received += 1
        if not user.bucket.take():
            self.stats.rate_limited += 1
            if user.bucket.refused > 2 * self.burst:
                self.stats.flood_closes += 1
                session.link.close(1008, "flooding: too many messages")
            raise ProtocolError(
                "rate_limited", f"slow down: at most {self.rate:g} messages a second"
            )
        to = to_key = None
        if say.to is not None:
            to_key = name_key(say.to)
            target = self.users.get(to_key)
            if target is not None:
                to = target.name
            else:
                account = await self.store.get_account(to_key)
                if account is None:
                    raise ProtocolError("unknown_user", f"there is no user named {say.to}")
                to = account.name
        stored, new = await self.store.append(
            Stored(0, user.name, user.key, say.text, utc_timestamp(), to, to_key, say.cid),
            session.id,
        )  # delivered by now, through _deliver
        if new:
            self.stats.stored += 1
        if session.link.mode == "json":
            self.send(session, Ack(stored.id, say.cid))
        if new and to_key is not None and not await self.store.is_online(to_key):
            self.send(session, Notice(f"{to} is offline; they will get it when they come back"))

    def _deliver(self, stored: Stored, origin: int | None) -> None:
        """Write a stored message to every session here that may see it, but its origin."""
        if stored.to_key is None:
            exclude = None if origin is None else self.members.get(origin)
            self.fanout(self.members.values(), stored.event(), exclude=exclude)
            return
        sessions: dict[int, Session] = {}
        for key in (stored.to_key, stored.sender_key):
            user = self.users.get(key)
            if user is not None:
                sessions.update(user.sessions)
        if origin is not None:
            sessions.pop(origin, None)
        self.fanout(sessions.values(), stored.event())

    async def who(self) -> Users:
        """Who is online in the whole chat (several instances included), by name."""
        online = sorted(await self.store.who(), key=lambda u: u.name.casefold())
        return Users(tuple(online))

    async def register(self, session: Session, password: str) -> None:
        user = self._user(session)
        if user.guest:
            raise ProtocolError("not_joined", "choose a name first: /nick NAME")
        await self.accounts.register(user.name, password)
        self.send(session, Notice(f"{user.name} is now protected by a password"))

    async def logout(self, session: Session) -> None:
        self._user(session)
        if session.token is not None:
            await self.accounts.revoke(session.token)
        session.link.close(1000, "logged out")

    # ------------------------------------------------------------ shutdown

    def stop(self) -> None:
        """Cancel pending presence timers (the transport closes the connections)."""
        for user in self.users.values():
            if user.leave_timer is not None:
                user.leave_timer.cancel()
                user.leave_timer = None


def _cid(event: ClientEvent) -> str | None:
    return event.cid if isinstance(event, Say) else None
