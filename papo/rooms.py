"""Rooms as users act on them: join, part, topic, history pages, read markers, the list.

:class:`RoomOps` checks a request against what the user is (member or not,
how many rooms, how fast it creates them) and asks the store to change it;
the store announces every change through ``on_room`` (:meth:`RoomOps.changed`),
here or on another instance alike, and only then do the hub's rooms and the
users' sessions hear of it. So a join on the phone reaches the laptop on
another instance the same way it reaches the laptop on this one.

A join is answered to every session of the user with ``room joined`` and the
room's last messages; live messages of that room arriving meanwhile wait in
the user's ``pending`` queue and follow the history, so none is lost, doubled
or reordered.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NoReturn

from papo.conversation import Room, write_each
from papo.directory import Pending, Session, User
from papo.errors import CannotPart, NotMember, ProtocolError, RateLimited, TooManyRooms, UnknownRoom
from papo.i18n import t, tn
from papo.names import direct_key, name_key, room_key
from papo.outgoing import Outgoing
from papo.protocol import (
    DEFAULT_HISTORY,
    Conversation,
    History,
    HistoryPage,
    Member,
    MemberInfo,
    Notice,
    Read,
    ReadMarker,
    RoomInfo,
    RoomJoined,
    RoomList,
    RoomParted,
    RoomTopic,
)
from papo.store import StoreError
from papo.store_records import RoomChange, RoomRecord

if TYPE_CHECKING:
    from papo.hub import Hub

log = logging.getLogger(__name__)


class RoomOps:
    """Room requests of users here, and room changes from the store."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    # ------------------------------------------------------------ local rooms

    def add_local(self, user: User, key: str, name: str, topic: str) -> Room:
        """``user`` (with sessions here) is a member of room ``key``: route its messages here."""
        room = self.hub.rooms.get(key)
        if room is None:
            room = self.hub.rooms[key] = Room(key, name, topic)
        user.rooms.add(key)
        if not room.home:
            room.members[user.key] = user
        return room

    def drop_local(self, user: User) -> None:
        """``user`` has no session here any more: stop routing its rooms here."""
        for key in user.rooms:
            self._forget_member(key, user)
        user.pending.clear()

    def _forget_member(self, key: str, user: User) -> None:
        room = self.hub.rooms.get(key)
        if room is not None and not room.home:
            room.members.pop(user.key, None)
            if not room.members:
                del self.hub.rooms[key]

    def member_room(self, user: User, name: str | None) -> Room | None:
        """The room ``name`` (None: the default room) when ``user`` is a member, else None."""
        key = self.hub.home.key if name is None else room_key(name)
        return self.hub.rooms.get(key) if key in user.rooms else None

    async def refuse(self, name: str) -> NoReturn:
        """Raise why a user cannot use room ``name``: it does not exist, or is not theirs."""
        if await self.hub.store.get_room(room_key(name)) is None:
            raise UnknownRoom(t("there is no room {room}; /join {room} creates it", room=name))
        raise NotMember(t("you are not in {room}; /join {room} first", room=name))

    async def _room(self, user: User, name: str) -> Room:
        room = self.member_room(user, name)
        if room is None:
            await self.refuse(name)
        return room

    # ------------------------------------------------------------ requests

    async def join(self, session: Session, user: User, name: str) -> None:
        store = self.hub.store
        key = room_key(name)
        if key in user.rooms:  # already in: answer this session, announce nothing
            room = self.hub.rooms[key]
            self._make_current(session, key, room.name)
            record = RoomRecord(key, room.name, room.topic)
            await self.send_joined(user, record, [session], token=None)
            return
        if len(user.rooms) >= self.hub.max_rooms_per_user:
            raise TooManyRooms(
                t(
                    "you are in {count} rooms, the most this server allows; /part one first",
                    count=len(user.rooms),
                )
            )
        found = await store.get_room(key)
        if found is not None:
            record = found
        else:
            record = await self._create(session, user, key, name)
        if not await store.add_member(record, user.key, user.name, session.id):
            # Already a member after all (a join from another device won the
            # race): this session still gets its answer.
            if key not in user.rooms:
                self.add_local(user, key, record.name, record.topic)
            await self.send_joined(user, record, [session], token=None)
        self._make_current(session, key, record.name)

    async def _create(self, session: Session, user: User, key: str, name: str) -> RoomRecord:
        """Create a room, within the per-user and per-address creation limits.

        The address limit (four times the user's) keeps one client that keeps
        taking new names from filling the server with rooms.
        """
        limiter = self.hub.room_creations
        address = f"address\x00{session.link.address}"
        wait = max(
            limiter.retry_after(user.key), self.hub.room_creations_by_address.retry_after(address)
        )
        if wait > 0:
            raise RateLimited(
                t(
                    "you are creating rooms too fast; try again in {seconds} s",
                    seconds=round(wait),
                )
            )
        record, created = await self.hub.store.create_room(RoomRecord(key, name, "", user.name))
        if created:
            limiter.failed(user.key)  # counts one creation
            self.hub.room_creations_by_address.failed(address)
            log.info("room %s created by %s", record.name, user.name)
        return record

    def _make_current(self, session: Session, key: str, name: str) -> None:
        """A plain-text connection's lines go to the room it joined last."""
        if session.link.mode == "plain":
            session.room = None if key == self.hub.home.key else name

    async def part(self, session: Session, user: User, name: str) -> None:
        key = room_key(name)
        if key == self.hub.home.key:
            raise CannotPart(t("everyone is in {room}; it cannot be left", room=self.hub.home.name))
        room = await self._room(user, name)
        record = RoomRecord(room.key, room.name, room.topic)
        await self.hub.store.remove_member(record, user.key, user.name, session.id)

    async def topic(self, session: Session, user: User, name: str, text: str) -> None:
        room = await self._room(user, name)
        await self.hub.moderation.check_topic(user, room.key, room.name)  # a locked topic
        record = await self.hub.store.get_room(room.key) or RoomRecord(room.key, room.name)
        await self.hub.store.set_topic(record, text, user.key, user.name)

    async def history(self, session: Session, user: User, event: History) -> None:
        conv, conversation = await self._conversation(user, event.conversation)
        before = event.before
        plain = session.link.mode == "plain"
        if plain and before is None:
            before = session.history_before.get(conv)
        messages, more = await self.hub.store.history(conv, before, event.limit)
        if not plain:
            page = tuple(m.message() for m in messages)
            self.hub.send(session, HistoryPage(conversation, page, more))
            return
        where = conversation.room or conversation.with_ or ""
        if not messages:
            self.hub.send(session, Notice(t("no older messages in {where}", where=where)))
            return
        session.history_before[conv] = messages[0].id
        self.hub.send(
            session,
            Notice(
                tn(
                    "— {n} earlier message of {where} —",
                    "— {n} earlier messages of {where} —",
                    len(messages),
                    where=where,
                )
            ),
        )
        for message in messages:
            self.hub.send(session, message.event())
        self.hub.send(
            session,
            Notice(t("— end of history; /history for more —") if more else t("— end of history —")),
        )

    async def read(self, session: Session, user: User, event: Read) -> None:
        conv, _ = await self._conversation(user, event.conversation)
        # A marker past the newest message would silence the badge for good.
        newest = self.hub.store.log.committed
        await self.hub.store.set_read(user.key, user.name, conv, min(event.id, newest), session.id)

    async def list_rooms(self, session: Session, user: User) -> None:
        summaries = await self.hub.store.rooms()
        self.hub.send(
            session,
            RoomList(
                tuple(
                    RoomInfo(
                        s.room.name,
                        s.members,
                        s.online,
                        s.room.topic,
                        s.room.key in user.rooms,
                        self.hub.moderation.operator_names(s.room),
                    )
                    for s in summaries
                )
            ),
        )

    async def _conversation(
        self, user: User, conversation: Conversation
    ) -> tuple[str, Conversation]:
        """The key of a room the user is in, or of a direct conversation it has."""
        if conversation.room is not None:
            room = await self._room(user, conversation.room)
            return room.key, Conversation(room=room.name)
        assert conversation.with_ is not None
        conv = direct_key(user.key, name_key(conversation.with_))
        peer = await self.hub.store.direct_peer(conv, user.key)
        if peer is None:
            raise ProtocolError(
                "unknown_user",
                t("you have no direct messages with {name}", name=conversation.with_),
            )
        return conv, Conversation(with_=peer)

    # ------------------------------------------------------------ changes

    def changed(self, change: RoomChange) -> None:
        """The store says a membership, topic or read marker changed (here or elsewhere)."""
        if change.kind == "join":
            self._joined(change)
        elif change.kind == "part":
            self._parted(change)
        elif change.kind == "topic":
            room = self.hub.rooms.get(change.conv)
            if room is not None:
                room.topic = change.topic
                self._notify(room, RoomTopic(room.name, change.topic, change.user_name))
        else:
            self._read(change)

    def _notify(self, room: Room, event: Member | RoomTopic, skip: str | None = None) -> None:
        out = Outgoing(event)
        if room.home:
            for session in self.hub.members.values():
                if session.user is not None and session.user.key != skip:
                    session.link.write(out)
        else:
            room.notify(out, skip=skip)

    def _joined(self, change: RoomChange) -> None:
        room = self.hub.rooms.get(change.conv)
        if room is not None:
            self._notify(room, Member("join", room.name, change.user_name), skip=change.user_key)
        user = self.hub.users.get(change.user_key)
        if user is None or change.conv in user.rooms:
            return
        self.add_local(user, change.conv, change.room, room.topic if room else "")
        token: Pending = []
        user.pending[change.conv] = token
        record = RoomRecord(change.conv, change.room)
        self.hub.spawn(self.send_joined(user, record, list(user.sessions.values()), token=token))

    async def send_joined(
        self,
        user: User,
        record: RoomRecord,
        sessions: list[Session],
        *,
        token: Pending | None,
    ) -> None:
        """``room joined``, the last messages, then what arrived meanwhile (``token``: the
        user's pending queue this join created; None for an answer to one session).

        Nothing is written when the user left the room meanwhile, or when a
        later join of the same room took over the pending queue.
        """
        key = record.key
        try:
            await self._write_joined(user, record, sessions, token)
        finally:
            if token is not None and user.pending.get(key) is token:
                del user.pending[key]

    async def _write_joined(
        self,
        user: User,
        record: RoomRecord,
        sessions: list[Session],
        token: Pending | None,
    ) -> None:
        store = self.hub.store
        try:
            record = await store.get_room(record.key) or record
            state = await store.room_state(record, user.key)
            members = await store.members(record.key)
            online = [await store.is_online(key) for key, _ in members]
            ops = await self.hub.moderation.operators_among(record, (k for k, _ in members))
            messages, _ = await store.history(record.key, None, DEFAULT_HISTORY)
        except StoreError as exc:
            log.error("cannot read room %s for %s: %s", record.name, user.name, exc)
            messages, members, online, ops = [], [], [], set()
            state = None
        if record.key not in user.rooms:
            return  # parted meanwhile: the session was told `parted`
        if token is not None and user.pending.get(record.key) is not token:
            return  # a later join of the same room answers instead
        room = self.hub.rooms.get(record.key)
        if room is not None:
            room.topic = record.topic
        pending = token or []
        newest = messages[-1].id if messages else 0
        mode = self.hub.moderation.mode_of(record.key)
        joined = RoomJoined(
            record.name,
            record.topic,
            tuple(
                MemberInfo(name, up, key in ops)
                for (key, name), up in zip(members, online, strict=True)
            ),
            max(newest, *(m.id for m, _ in pending)) if pending else newest,
            state.unread if state else 0,
            state.last_read if state else 0,
            mode.moderated,
            mode.topic_locked,
        )
        outs = [Outgoing(joined)] + [Outgoing(m.event()) for m in messages]
        for session in sessions:
            if session.id in self.hub.pool and session.user is user:
                for out in outs:
                    session.link.write(out)
                if messages and session.link.mode == "plain":
                    session.history_before[record.key] = messages[0].id
        if token is not None:  # from here on, live messages go straight to the sessions
            del user.pending[record.key]
        for message, origin in pending:
            if message.id > newest:
                write_each(user.sessions, Outgoing(message.event()), origin)

    def _parted(self, change: RoomChange) -> None:
        user = self.hub.users.get(change.user_key)
        if user is not None and change.conv in user.rooms:
            user.rooms.discard(change.conv)
            user.pending.pop(change.conv, None)
            self._forget_member(change.conv, user)
            out = Outgoing(
                RoomParted(
                    change.room, *self.hub.moderation.take_kick(change.conv, change.user_key)
                )
            )
            for session in user.sessions.values():
                session.link.write(out)
                if session.room is not None and room_key(session.room) == change.conv:
                    session.room = None
        room = self.hub.rooms.get(change.conv)
        if room is not None:
            self._notify(room, Member("part", room.name, change.user_name), skip=change.user_key)

    def _read(self, change: RoomChange) -> None:
        user = self.hub.users.get(change.user_key)
        if user is None:
            return
        if change.room:
            conversation = Conversation(room=change.room)
        else:  # a direct conversation: the store names the other user in `topic`
            conversation = Conversation(with_=change.topic)
        write_each(
            user.sessions, Outgoing(ReadMarker(conversation, change.message_id)), change.origin
        )
