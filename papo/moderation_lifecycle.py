"""The message lifecycle as users act on it: edit, delete, and an admin's purge.

* **Edit**: the sender's own message, within the edit window
  (:attr:`~papo.moderation_ops.ModerationOps.edit_window`), and only where
  they may still speak (a mute or a read-only room stops an edit as it stops
  a ``say``).
* **Delete**: one's own message, or, for an operator of its room (an admin:
  anywhere), someone else's; that one is audited.
* **Purge**: an admin bans a user and deletes their messages (all, or those
  since a time).

Each rewrites the message in the store (:mod:`papo.store_lifecycle`) and
appends an entry of its own (``kind`` ``edit`` or ``delete``) to its
conversation, delivered and replayed in id order like a message. They run
one at a time (a lock), so a message's text and its entries always agree.
Without an id, ``/edit`` and ``/delete`` mean the user's newest message in
the room, found in the ring of recent messages.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

from papo.directory import Session, User
from papo.errors import EditWindowOver, Forbidden, UnknownMessage
from papo.i18n import t, tn
from papo.moderation import Action, iso_time, parse_time
from papo.names import room_key
from papo.protocol import Delete, Edit, Purge
from papo.store_lifecycle import MessageLifecycle
from papo.store_records import Stored

if TYPE_CHECKING:
    from papo.moderation_ops import ModerationOps


class LifecycleRequests:
    """Edits, deletions and purges of users here, one at a time, for one hub."""

    def __init__(self, ops: ModerationOps) -> None:
        self.ops = ops
        self.hub = ops.hub
        self._lock = asyncio.Lock()

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
        ops = self.ops
        lifecycle = self._lifecycle()
        async with self._lock:
            target = await self._message(user, event.id, event.room, admin=False)
            if target.sender_key != user.key:
                raise Forbidden(t("you can edit only your own messages"))
            now = ops.clock()
            if now - parse_time(target.ts) > ops.edit_window:
                raise EditWindowOver(
                    t(
                        "a message can be edited for {minutes} minutes after it was sent",
                        minutes=round(ops.edit_window / 60),
                    )
                )
            if target.to_key is None and ops.watches(target.conv, user.key):
                await ops.check_say(user, target.conv, target.room or target.conv)
            edited_ts = iso_time(now)
            await lifecycle.edit_message(replace(target, text=event.text, edited_ts=edited_ts))
            entry = replace(
                target, id=0, text=event.text, ts=edited_ts, cid=None, kind="edit",
                target=target.id, edited_ts=edited_ts,
            )  # fmt: skip
            await self.hub.store.append(entry, None)  # every session, the editor's too

    async def delete(self, session: Session, user: User, event: Delete) -> None:
        ops = self.ops
        lifecycle = self._lifecycle()
        admin = await ops.is_admin(user.key)
        async with self._lock:
            target = await self._message(user, event.id, event.room, admin=admin)
            own = target.sender_key == user.key
            if not own:
                where = None if target.to_key is not None else target.conv
                actor = await ops.role(user.key, where)
                ops.require(actor, Action.DELETE_ANY, target.room)
                await ops.require_target(actor, target.sender_key, target.sender, where)
            await self._erase(lifecycle, user, [target])
        if not own:
            reason = f"#{target.id}"
            await ops.audit(user, "delete", target.sender, reason, target.room or "")

    async def _erase(self, lifecycle: MessageLifecycle, user: User, targets: list[Stored]) -> None:
        """Tombstone ``targets`` (erasing their text) and announce each as ``deleted``."""
        if not targets:
            return
        await lifecycle.delete_messages(targets, user.name)
        ts = iso_time(self.ops.clock())
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
        ops = self.ops
        actor = await ops.role(user.key, None)
        ops.require(actor, Action.PURGE)
        lifecycle = self._lifecycle()
        key, name = await ops.user_named(event.name)
        await ops.require_target(actor, key, name, None)
        since = event.since
        if since is None and event.seconds is not None:
            since = iso_time(ops.clock() - event.seconds)
        elif since is not None:
            since = iso_time(parse_time(since))
        await ops.requests.ban_user(user, key, name, None, event.reason, action="purge")
        async with self._lock:
            messages = await lifecycle.messages_by(key, since)
            await self._erase(lifecycle, user, messages)
        await ops.audit(user, "delete", name, f"{len(messages)} messages")
        ops.confirm(
            session,
            tn(
                "{name} is banned and their {n} message deleted",
                "{name} is banned and their {n} messages deleted",
                len(messages),
                name=name,
            ),
        )
