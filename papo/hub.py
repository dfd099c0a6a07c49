"""The hub: who is connected, which sessions belong to which user, who gets what.

One :class:`Hub` is created in ``main`` and owns all routing state: the pool
of connections, the users online here and the rooms they are in; nothing else
keeps a set of connections. A message flows one way through it: validated
event in → stored (id assigned, committed) → recipients picked by its
conversation → one :class:`~papo.protocol.Outgoing` written to every
recipient's link, without awaiting anyone. The hub does not know about
WebSockets (a :class:`~papo.directory.Link` is all it needs of a connection)
nor which store it has.

The work is split along the domain's seams: :mod:`papo.conversation` fans out
a room's messages to its members, :mod:`papo.presence` lets users in (hello,
guests) and out (after a grace period), :mod:`papo.catchup` replays what a
joining session missed, :mod:`papo.rooms` carries out joins, parts, topics,
history pages and read markers. The hub owns the state they share,
dispatches events to them, stores and delivers messages.

Stored messages come back from the store through ``store.on_message``, in id
order, whether they were sent here or on another instance; presence changes
through ``store.on_presence``; membership, topic and read-marker changes
through ``store.on_room``. The hub reports its users' session counts to the
store and never decides alone whether a user joined or left the chat. Devices
that end (logout, revoke, a password change) come back through
``store.on_devices``, wherever they ended, and their sessions here are closed.

Every refusal (an ``error`` caused by what a client sent) counts against the
client's user and address in a sliding window (:class:`~papo.limits.SlidingWindow`):
past ``flood_refusals`` within ``flood_window`` seconds the connection is
closed with 1008, and reconnecting does not reset the count.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from papo.accounts import Accounts
from papo.catchup import CatchUp
from papo.conversation import Room, write_each, write_run_each
from papo.directory import HubStats, Link, Session, User
from papo.errors import PapoError, RateLimited
from papo.i18n import t, tn
from papo.limits import AttemptLimiter, SlidingWindow
from papo.moderation_ops import ModerationOps
from papo.names import direct_key, name_key, room_key
from papo.presence import Presence
from papo.protocol import (
    Ack,
    ChangePassword,
    ClientEvent,
    DeviceInfo,
    DeviceList,
    Devices,
    Error,
    Hello,
    History,
    Join,
    ListRooms,
    Logout,
    Notice,
    Outgoing,
    OutgoingRun,
    Part,
    ProtocolError,
    Read,
    Register,
    Revoke,
    Say,
    ServerEvent,
    SetTopic,
    Users,
    Who,
    utc_timestamp,
)
from papo.rooms import RoomOps
from papo.store import Enqueues, RoomRecord, Store, Stored, StoreError

log = logging.getLogger(__name__)

DEFAULT_ROOM = "#geral"
MAX_ROOMS_PER_USER = 100
ROOM_CREATIONS_PER_MINUTE = 5
#: More refusals than this within FLOOD_WINDOW seconds, per user or per address: close 1008.
FLOOD_REFUSALS = 100
FLOOD_WINDOW = 10.0
#: Joins (``hello``, guests) per address within JOIN_WINDOW seconds (0: no limit).
JOINS_PER_ADDRESS = 100
JOIN_WINDOW = 10.0


class Hub:
    """Owns the pool of connections, the online users and their rooms; routes every event."""

    def __init__(
        self,
        store: Store,
        accounts: Accounts,
        *,
        presence_grace: float = 5.0,
        guests: bool = True,
        rate: float = 20.0,
        burst: float = 40.0,
        default_room: str = DEFAULT_ROOM,
        max_rooms_per_user: int = MAX_ROOMS_PER_USER,
        room_creations: AttemptLimiter | None = None,
        flood_refusals: int = FLOOD_REFUSALS,
        flood_window: float = FLOOD_WINDOW,
        joins_per_address: int = JOINS_PER_ADDRESS,
        clock: Callable[[], float] = time.monotonic,
        admins: Iterable[str] = (),
    ) -> None:
        self.store = store
        #: The monotonic clock of rate buckets and flood windows (tests pass a fake one).
        self.clock = clock
        self.accounts = accounts
        self.presence_grace = presence_grace
        #: Shutting down (``stop``): connections closing now are not users leaving.
        self.stopping = False
        self.guests = guests
        self.rate = rate
        self.burst = burst
        self.max_rooms_per_user = max_rooms_per_user
        self.room_creations = room_creations or AttemptLimiter(ROOM_CREATIONS_PER_MINUTE, 60.0)
        # Names are free: per address, four times what one user may create.
        self.room_creations_by_address = AttemptLimiter(
            4 * self.room_creations.limit, self.room_creations.window, self.room_creations.clock
        )
        self.floods = SlidingWindow(flood_refusals, flood_window, clock)
        self.joins = SlidingWindow(joins_per_address, JOIN_WINDOW, clock)
        self.pool: dict[int, Session] = {}
        self.members: dict[int, Session] = {}  # live joined sessions: the default room's fan-out
        self.users: dict[str, User] = {}  # online users (and users in their grace period)
        key = room_key(default_room)
        self.home = RoomRecord(key, default_room)
        self.rooms: dict[str, Room] = {key: Room(key, default_room, home=True)}
        self.stats = HubStats()
        self.catchup = CatchUp(store, self.pool)
        self.room_ops = RoomOps(self)
        self.moderation = ModerationOps(self, admins)
        self.presence = Presence(self)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Called with the seconds each fan-out took (metrics set it).
        self.observe_fanout: Callable[[float], None] = lambda seconds: None
        #: The store's queue for :meth:`handle_now`, when it has one.
        self._enqueue = store.enqueue if isinstance(store, Enqueues) else None
        store.on_message = self._deliver
        store.on_presence = self.presence.announce
        store.on_room = self.room_ops.changed
        store.on_devices = self._devices_ended

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
            self.presence.part(session, self.presence_grace)

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
                self.admit(session)
                await self.presence.hello(session, event, rename=rename)
            elif isinstance(event, Who):
                self.send(session, await self.who())
            elif isinstance(event, Register):
                await self.register(session, event.password)
            elif isinstance(event, Logout):
                await self.logout(session, everywhere=event.all)
            elif isinstance(event, Devices | Revoke | ChangePassword):
                user = self._user(session)
                self.take(session, user)
                await self.devices_request(session, user, event)
            else:
                user = self._user(session)
                self.take(session, user)
                if isinstance(event, Join):
                    await self.room_ops.join(session, user, event.room)
                elif isinstance(event, Part):
                    await self.room_ops.part(session, user, event.room)
                elif isinstance(event, SetTopic):
                    await self.room_ops.topic(session, user, event.room, event.text)
                elif isinstance(event, History):
                    await self.room_ops.history(session, user, event)
                elif isinstance(event, Read):
                    await self.room_ops.read(session, user, event)
                elif isinstance(event, ListRooms):
                    await self.room_ops.list_rooms(session, user)
                else:
                    await self.moderation.handle(session, user, event)
        except PapoError as exc:
            self._refuse(session, event, exc)
        except StoreError as exc:
            self._unstored(session, event, exc)

    def handle_now(self, session: Session, event: ClientEvent) -> Awaitable[object] | None:
        """Carry out ``event`` as :meth:`handle` does, without a coroutine when it can.

        A room message that waits for nothing but its commit (its sender is a
        member, no moderation watches the room for them, its ``cid`` is new,
        the store :class:`~papo.store.Enqueues`) is checked, counted and queued
        at once and a future returned: callbacks added to it run once the
        message is stored, delivered and acknowledged (its outcome is handled
        here). None: it was refused, and told so. Any other event: the
        coroutine of :meth:`handle`.

        A task and a chain of coroutines per message cost more than the rest
        of a room message's way to the store.
        """
        user = session.user
        enqueue = self._enqueue
        if (
            enqueue is None
            or user is None
            or not isinstance(event, Say)
            or event.to is not None
            or (event.cid is not None and self.store.log.duplicate(user.key, event.cid) is not None)
        ):
            return self.handle(session, event)
        room = self.room_ops.member_room(user, event.room or session.room)
        if room is None or self.moderation.watches(room.key, user.key):
            return self.handle(session, event)
        self.stats.received += 1  # from here on as say() does
        try:
            self.take(session, user)
        except PapoError as exc:
            self._refuse(session, event, exc)
            return None
        future = enqueue(partial(_room_message, user, room, event), session.id)
        future.add_done_callback(partial(self._said, session, event))
        return future

    def _said(self, session: Session, say: Say, future: asyncio.Future[Stored]) -> None:
        """A room message queued by :meth:`handle_now` is stored (or failed): what say() does
        after its append."""
        if future.cancelled():
            return
        try:
            stored = future.result()
        except StoreError as exc:
            self._unstored(session, say, exc)
            return
        self.stats.stored += 1
        if session.link.mode == "json":
            self.send(session, Ack(stored.id, say.cid, stored.to))

    def _refuse(self, session: Session, event: ClientEvent, exc: PapoError) -> None:
        self.send(session, Error(exc.code, exc.message, _cid(event), exc.until))
        self.refused(session)

    def _unstored(self, session: Session, event: ClientEvent, exc: StoreError) -> None:
        log.error("store failure for conn %d: %s", session.id, exc)
        cid = _cid(event)
        refusal = exc.refusal(resendable=cid is not None)  # may it have been stored?
        self.send(session, Error("store_unavailable", refusal, cid))

    def take(self, session: Session, user: User) -> None:
        """Spend one of the user's rate tokens, or refuse (and close a flood with 1008)."""
        if user.bucket.take():
            return
        self.stats.rate_limited += 1
        if user.bucket.refused > 2 * self.burst:
            self._flood_close(session)
        raise RateLimited(
            t("slow down: at most {rate} messages a second", rate=format(self.rate, "g"))
        )

    def refused(self, session: Session) -> None:
        """Count one refusal against the session's user and address; past the flood
        limit within the window, close the connection with 1008.

        Counted per user *and* per address, so that neither a reconnect nor a
        new name starts the count again.
        """
        over = self.floods.hit("@" + session.link.address)
        if session.user is not None and self.floods.hit(session.user.key):
            over = True
        if over:
            self._flood_close(session)

    def _flood_close(self, session: Session) -> None:
        if not session.link.closed:
            self.stats.flood_closes += 1
            log.warning("conn %d from %s: flooding; closing", session.id, session.link.address)
            session.link.close(1008, "flooding: too many refused requests")

    def admit(self, session: Session) -> None:
        """Count one join from the session's address; refuse it past the limit."""
        if self.joins.hit(session.link.address):
            raise RateLimited(t("too many joins from your address; wait a few seconds"))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background; a failure is logged."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def settle(self) -> None:
        """Wait until every background task started so far (and any they start) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background store update failed: %s", exc)

    def _user(self, session: Session) -> User:
        if session.user is None:
            raise ProtocolError("not_joined", t("join first: send a 'hello' with your name"))
        return session.user

    async def say(self, session: Session, say: Say) -> None:
        """Store a room or private message, deliver it, acknowledge it."""
        user = self._user(session)
        self.stats.received += 1
        self.take(session, user)
        if say.to is not None:
            to_key = name_key(say.to)
            target = self.users.get(to_key)
            if target is not None:
                to = target.name
            else:
                account = await self.store.get_account(to_key)
                if account is None:
                    raise ProtocolError(
                        "unknown_user", t("there is no user named {name}", name=say.to)
                    )
                to = account.name
            message = Stored(
                0, user.name, user.key, say.text, utc_timestamp(), to, to_key, say.cid,
                conv=direct_key(user.key, to_key),
            )  # fmt: skip
        else:
            where = say.room or session.room
            room = self.room_ops.member_room(user, where)
            if room is None:
                await self.room_ops.refuse(where or self.home.name)
            if self.moderation.watches(room.key, user.key):  # muted, banned, read-only
                await self.moderation.check_say(user, room.key, room.name)
            message = _room_message(user, room, say)
        stored, new = await self.store.append(message, session.id)  # delivered by now
        if new:
            self.stats.stored += 1
        if session.link.mode == "json":
            self.send(session, Ack(stored.id, say.cid, stored.to))
        if new and stored.to_key is not None and not await self.store.is_online(stored.to_key):
            self.send(
                session,
                Notice(
                    t("{name} is offline; they will get it when they come back", name=stored.to)
                ),
            )

    def _deliver(self, batch: Sequence[tuple[Stored, int | None]]) -> None:
        """Write stored messages (in id order) to every session here that may see each.

        Consecutive messages to the same room form a run that is fanned out in
        one pass (each recipient appends the run's frames at once); anything
        else goes one message at a time. A recipient sees the same events in the
        same order either way.
        """
        start, end = 0, len(batch)
        while start < end:
            stored = batch[start][0]
            stop = start + 1
            if stored.to_key is None:
                while stop < end and batch[stop][0].conv == stored.conv:
                    stop += 1  # a message of a room's conversation is never direct
            if stop - start == 1:
                self._deliver_one(stored, batch[start][1])
            else:
                self._deliver_run(batch[start:stop])
            start = stop

    def _deliver_run(self, items: Sequence[tuple[Stored, int | None]]) -> None:
        """Fan a run of messages to one room out in one pass (see :meth:`_deliver`)."""
        started = time.perf_counter()
        room = self.rooms.get(items[0][0].conv)
        if room is None:
            return
        run = OutgoingRun([Outgoing(stored.event()) for stored, _ in items])
        if room.home:  # everyone's room: every live session
            count = write_run_each(self.members, run, [origin for _, origin in items])
        else:
            count = room.deliver_run(items, run)
        self.stats.deliveries += count
        self.observe_fanout(time.perf_counter() - started)

    def _deliver_one(self, stored: Stored, origin: int | None) -> None:
        """Write a stored message to every session here that may see it, but its origin."""
        started = time.perf_counter()
        out = Outgoing(stored.event())
        count = 0
        if stored.to_key is None:
            room = self.rooms.get(stored.conv)
            if room is None:
                return
            if room.home:  # everyone's room: every live session
                count = write_each(self.members, out, origin)
            else:
                count = room.deliver(stored, out, origin)
        else:
            for key in {stored.to_key, stored.sender_key}:
                user = self.users.get(key)
                if user is not None:
                    count += write_each(user.sessions, out, origin)
        self.stats.deliveries += count
        self.observe_fanout(time.perf_counter() - started)

    async def who(self) -> Users:
        """Who is online in the whole chat (several instances included), by name."""
        online = sorted(await self.store.who(), key=lambda u: u.name.casefold())
        return Users(tuple(online))

    async def register(self, session: Session, password: str) -> None:
        """Protect the user's name; whoever else used it while it was open is logged out."""
        user = self._user(session)
        if user.guest:
            raise ProtocolError("not_joined", t("choose a name first: /nick NAME"))
        await self.accounts.register(user.name, password)
        await self.store.end_devices(user.key, keep=session.device)
        self.send(session, Notice(t("{name} is now protected by a password", name=user.name)))

    async def logout(self, session: Session, *, everywhere: bool = False) -> None:
        """End this session's device (every token of it), or every device of the user."""
        user = self._user(session)
        if everywhere:
            await self._protected(user)
            await self.store.end_devices(user.key)
        elif session.device is not None:
            await self.store.end_devices(user.key, [session.device])
        session.link.close(1000, "logged out")

    async def devices_request(
        self, session: Session, user: User, event: Devices | Revoke | ChangePassword
    ) -> None:
        """List the user's devices, end one, or change the password (ending the others)."""
        await self._protected(user)
        if isinstance(event, ChangePassword):
            address = session.link.address
            await self.accounts.change_password(user.name, event.old, event.new, address)
            ended = await self.store.end_devices(user.key, keep=session.device)
            self.send(
                session,
                Notice(
                    tn(
                        "password changed; {n} other device logged out",
                        "password changed; {n} other devices logged out",
                        len(ended),
                    )
                ),
            )
        elif isinstance(event, Revoke):
            if not await self.store.end_devices(user.key, [event.device]):
                raise ProtocolError(
                    "unknown_device",
                    t("you have no device {id}; /devices lists them", id=event.device),
                )
            self.send(session, Notice(t("device {id} is logged out", id=event.device)))
        else:
            devices = sorted(
                await self.store.devices(user.key), key=lambda d: d.last_seen, reverse=True
            )
            self.send(
                session,
                DeviceList(
                    tuple(
                        DeviceInfo(
                            d.id,
                            _iso(d.first_seen),
                            _iso(d.last_seen),
                            d.address,
                            d.id == session.device,
                        )
                        for d in devices
                    )
                ),
            )

    async def _protected(self, user: User) -> None:
        """Refuse unless the user's name has a password: an open name's devices are
        anybody's (and their addresses are nobody else's business)."""
        account = None if user.guest else await self.store.get_account(user.key)
        if account is None or not account.protected:
            raise ProtocolError(
                "not_protected",
                t(
                    "only a name with a password has devices to manage: "
                    "/register PASSWORD protects {name}",
                    name=user.name,
                ),
            )

    def _devices_ended(self, key: str, ids: frozenset[str] | None, keep: str | None) -> None:
        """Devices of ``key`` ended (here or on another instance): close their sessions here.

        ``ids`` None: every session of the user but those of device ``keep``.
        """
        for session in list(self.pool.values()):
            device = session.device
            if keep is not None and device == keep:
                continue
            user = session.user
            if ids is None:
                hit = user is not None and user.key == key
            else:
                hit = device in ids and (user is None or user.key == key)
            if hit:
                session.link.close(1000, "logged out")

    # ------------------------------------------------------------ shutdown

    def stop(self) -> None:
        """Cancel pending presence timers (the transport closes the connections).

        A shutdown is not a leave: the users of the connections closed from
        now on are not announced as gone (their presence stays in the store as
        after a crash, so they come back on a restart or on another instance
        without a leave and a join in between).
        """
        self.stopping = True
        self.moderation.stop()
        for user in self.users.values():
            if user.leave_timer is not None:
                user.leave_timer.cancel()
                user.leave_timer = None


def _cid(event: ClientEvent) -> str | None:
    return event.cid if isinstance(event, Say) else None


def _room_message(user: User, room: Room, say: Say, message_id: int = 0) -> Stored:
    """What ``user`` says in ``room``, to be stored (under the id the store gives)."""
    return Stored(
        message_id, user.name, user.key, say.text, utc_timestamp(), cid=say.cid,
        room=room.name, conv=room.key, home=room.home,
    )  # fmt: skip


def _iso(seconds: float) -> str:
    return utc_timestamp(datetime.fromtimestamp(seconds, UTC))
