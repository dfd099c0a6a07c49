"""Edits and deletions in the embedded stores: find a message, rewrite it, erase its text.

An edit or a deletion is two things: the message as kept is rewritten (its
latest text, or a tombstone), so that a fresh join and a history page show
it as it is now; and an entry of its own (``kind`` ``edit`` or ``delete``) is
appended to the conversation through the store's ordinary ``append``, so that
it is delivered, and replayed by a resume, in id order like any message (see
:class:`~papo.store_records.Stored`). This module does the first half;
:mod:`papo.moderation_lifecycle` does both.

A deletion erases: the tombstone has no text, the edit entries of the
message lose theirs too (they become deletion entries), and the SQLite store
writes with ``PRAGMA secure_delete`` on (freed bytes are zeroed) and
checkpoints and truncates its write-ahead log afterwards, so the text
survives neither in ``papo.db`` nor in ``papo.db-wal``. The ring of recent
messages in memory is rewritten the same way.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from papo.message_log import MessageLog
from papo.sqlite_schema import COLUMNS
from papo.store_records import Stored

T = TypeVar("T")


@runtime_checkable
class MessageLifecycle(Protocol):
    """What a store needs for edits and deletions (the Redis store's is
    :mod:`papo.store_redis_lifecycle`)."""

    async def get_message(self, message_id: int) -> Stored | None:
        """The message (or entry) with this id, as kept now; None when there is none."""

    async def edit_message(self, updated: Stored) -> None:
        """Keep ``updated`` (a message with its new text and ``edited_ts``) in its place."""

    async def delete_messages(self, messages: Collection[Stored], by: str) -> None:
        """Rewrite ``messages`` (as found) as tombstones deleted by ``by``, erasing their
        text and that of their edits from the store (memory, disk and log alike)."""

    async def messages_by(self, key: str, since_ts: str | None) -> list[Stored]:
        """Every message (not deleted) the user ``key`` sent at ``since_ts`` or later
        (None: ever), in every conversation, oldest first."""


def tombstone(message: Stored, by: str) -> Stored:
    """``message`` deleted by ``by``: no text, nothing of an edit."""
    return replace(message, text="", by=by, edited_ts=None)


def erased_entry(entry: Stored, by: str) -> Stored:
    """An edit entry of a message that was deleted: a deletion now, without the text."""
    return replace(entry, kind="delete", text="", by=by)


def erase_in_ring(log: MessageLog, ids: Collection[int], by: str) -> None:
    """The ring's copies of the messages ``ids`` and of their edits, erased."""
    wanted = set(ids)
    if not wanted:
        return
    rewritten = [
        tombstone(m, by) if m.id in wanted and not m.kind else erased_entry(m, by)
        for m in log.ring
        if (m.id in wanted and not m.kind) or (m.kind == "edit" and m.target in wanted)
    ]
    log.rewrite(rewritten)


def find_in_ring(log: MessageLog, message_id: int) -> Stored | None:
    return log.find(message_id)


class MemoryLifecycle:
    """:class:`MessageLifecycle` for :class:`~papo.store_memory.MemoryStore` (a mixin)."""

    log: MessageLog
    _convs: dict[str, list[Stored]]

    async def get_message(self, message_id: int) -> Stored | None:
        found = find_in_ring(self.log, message_id)
        if found is not None:
            return found
        for kept in self._convs.values():
            index = bisect.bisect_left(kept, message_id, key=lambda m: m.id)
            if index < len(kept) and kept[index].id == message_id:
                return kept[index]
        return None

    def _put(self, message: Stored) -> None:
        kept = self._convs.get(message.conv, [])
        index = bisect.bisect_left(kept, message.id, key=lambda m: m.id)
        if index < len(kept) and kept[index].id == message.id:
            kept[index] = message

    async def edit_message(self, updated: Stored) -> None:
        self._put(updated)
        self.log.rewrite([updated])

    async def delete_messages(self, messages: Collection[Stored], by: str) -> None:
        wanted = {m.id for m in messages}
        for kept in self._convs.values():
            for index, message in enumerate(kept):
                if message.id in wanted and not message.kind:
                    kept[index] = tombstone(message, by)
                elif message.kind == "edit" and message.target in wanted:
                    kept[index] = erased_entry(message, by)
        erase_in_ring(self.log, wanted, by)

    async def messages_by(self, key: str, since_ts: str | None) -> list[Stored]:
        found = [
            m
            for kept in self._convs.values()
            for m in kept
            if m.sender_key == key
            and not m.kind
            and m.by is None
            and (since_ts is None or m.ts >= since_ts)
        ]
        return sorted(found, key=lambda m: m.id)


# ---------------------------------------------------------------- SQLite

#: Columns an older ``messages`` table gains (read by papo.sqlite_schema.row_to_stored).
LIFECYCLE_COLUMNS = (
    ("kind", "TEXT NOT NULL DEFAULT ''"),
    ("target", "INTEGER NOT NULL DEFAULT 0"),
    ("edited_ts", "TEXT"),
    ("by_name", "TEXT"),
)


def prepare_lifecycle(db: sqlite3.Connection) -> None:
    """Give ``messages`` the lifecycle columns (in place), and zero what is deleted.

    ``secure_delete`` makes SQLite overwrite freed content with zeros, so a
    rewritten row leaves no copy of its old text in the page or on the free list.
    """
    db.execute("PRAGMA secure_delete=ON")
    columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    for name, declaration in LIFECYCLE_COLUMNS:
        if name not in columns:
            db.execute(f"ALTER TABLE messages ADD COLUMN {name} {declaration}")


class SqliteLifecycle:
    """:class:`MessageLifecycle` for :class:`~papo.store_sqlite.SqliteStore` (a mixin)."""

    log: MessageLog

    if TYPE_CHECKING:

        async def _run(
            self, fn: Callable[[sqlite3.Connection], T], *, transaction: bool = True
        ) -> T: ...

        def _stored(self, row: tuple[object, ...]) -> Stored: ...

    async def get_message(self, message_id: int) -> Stored | None:
        found = find_in_ring(self.log, message_id)
        if found is not None:
            return found
        row = await self._run(
            lambda db: db.execute(
                f"SELECT {COLUMNS} FROM messages WHERE id = ?", (message_id,)
            ).fetchone(),
            transaction=False,
        )
        return None if row is None else self._stored(row)

    async def edit_message(self, updated: Stored) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE messages SET text = ?, edited_ts = ? WHERE id = ?",
                (updated.text, updated.edited_ts, updated.id),
            )
        )
        self.log.rewrite([updated])

    async def delete_messages(self, messages: Collection[Stored], by: str) -> None:
        wanted = sorted({m.id for m in messages})
        if not wanted:
            return

        def erase(db: sqlite3.Connection) -> None:
            with db:
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    db.execute(
                        "UPDATE messages SET text = '', by_name = ?, edited_ts = NULL "
                        f"WHERE kind = '' AND id IN ({marks})",
                        (by, *chunk),
                    )
                    db.execute(
                        "UPDATE messages SET text = '', kind = 'delete', by_name = ? "
                        f"WHERE kind = 'edit' AND target IN ({marks})",
                        (by, *chunk),
                    )
            # Out of the log and into the file (with the freed bytes zeroed), then
            # the log emptied: the old text is in neither file any more.
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        await self._run(erase, transaction=False)
        erase_in_ring(self.log, wanted, by)

    async def messages_by(self, key: str, since_ts: str | None) -> list[Stored]:
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT {COLUMNS} FROM messages WHERE sender_key = ? AND kind = '' "
                "AND by_name IS NULL AND ts >= ? ORDER BY id",
                (key, since_ts or ""),
            ).fetchall(),
            transaction=False,
        )
        return [self._stored(row) for row in rows]
