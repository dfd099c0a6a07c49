"""Where moderation is kept: operators, bans, mutes, address bans, room modes, the audit log.

The hub decides from a :class:`~papo.moderation.ModerationState` in memory
(the hot path, a ``say``, asks two dictionaries) and writes every change
through a :class:`ModerationKeeper` *before* applying it, so nothing is
enforced that would be forgotten at a restart.

* :class:`SqliteModeration` is mixed into the SQLite store: tables of their
  own in ``papo.db`` (created by :func:`prepare_sqlite`, which the store
  calls when it opens the file), loaded once at start.
* :class:`MemoryKeeper` keeps nothing beyond the process (``--memory``, and
  ``--redis`` for now: there each instance moderates on its own).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from papo.moderation import (
    AuditEntry,
    ModerationChange,
    ModerationState,
    Restriction,
    RoomMode,
    parse_network,
)

T = TypeVar("T")

#: The audit log a memory keeper holds (the SQLite one keeps everything).
MEMORY_AUDIT = 10_000


@runtime_checkable
class ModerationKeeper(Protocol):
    """Persistence of moderation; every method may raise :class:`~papo.store.StoreError`."""

    async def load_moderation(self) -> ModerationState:
        """Everything kept, as it was at the last change."""

    async def keep_moderation(self, change: ModerationChange) -> None:
        """Keep one change of the state (with several instances: and tell the others)."""

    async def keep_audit(self, entry: AuditEntry) -> None:
        """Add an entry to the audit log."""

    async def audit_entries(self, limit: int) -> list[AuditEntry]:
        """The newest ``limit`` entries, oldest first."""


class MemoryKeeper:
    """A keeper that keeps nothing beyond the process (the audit log in a bounded list)."""

    def __init__(self) -> None:
        self._audit: deque[AuditEntry] = deque(maxlen=MEMORY_AUDIT)

    async def load_moderation(self) -> ModerationState:
        return ModerationState()

    async def keep_moderation(self, change: ModerationChange) -> None:
        pass

    async def keep_audit(self, entry: AuditEntry) -> None:
        self._audit.append(entry)

    async def audit_entries(self, limit: int) -> list[AuditEntry]:
        return list(self._audit)[-limit:]


# ---------------------------------------------------------------- SQLite

MODERATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS room_operators (
    room TEXT NOT NULL,
    user_key TEXT NOT NULL,
    user_name TEXT NOT NULL,
    op INTEGER NOT NULL,
    PRIMARY KEY (room, user_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bans (
    user_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    by_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    until REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mutes (
    room TEXT NOT NULL,
    user_key TEXT NOT NULL,
    name TEXT NOT NULL,
    by_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    until REAL,
    PRIMARY KEY (room, user_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ip_bans (
    network TEXT PRIMARY KEY,
    by_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    until REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS room_modes (
    room TEXT PRIMARY KEY,
    moderated INTEGER NOT NULL,
    topic_locked INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    by_name TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    room TEXT NOT NULL
);
"""


def _write(db: sqlite3.Connection, *, change: ModerationChange) -> None:
    """One change into its table (on the store's thread, in a transaction)."""
    r = change.restriction
    if change.what == "op":
        db.execute(
            "INSERT OR REPLACE INTO room_operators (room, user_key, user_name, op) "
            "VALUES (?, ?, ?, ?)",
            (change.room, change.key, change.name, int(change.on)),
        )
    elif change.what == "ban" and r is None:
        db.execute("DELETE FROM bans WHERE user_key = ?", (change.key,))
    elif change.what == "ban" and r is not None:
        db.execute(
            "INSERT OR REPLACE INTO bans (user_key, name, by_name, reason, until) "
            "VALUES (?, ?, ?, ?, ?)",
            (change.key, r.name, r.by, r.reason, r.until),
        )
    elif change.what == "mute" and r is None:
        db.execute("DELETE FROM mutes WHERE room = ? AND user_key = ?", (change.room, change.key))
    elif change.what == "mute" and r is not None:
        db.execute(
            "INSERT OR REPLACE INTO mutes (room, user_key, name, by_name, reason, until) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (change.room, change.key, r.name, r.by, r.reason, r.until),
        )
    elif change.what == "ip_ban" and r is None:
        db.execute("DELETE FROM ip_bans WHERE network = ?", (change.key,))
    elif change.what == "ip_ban" and r is not None:
        db.execute(
            "INSERT OR REPLACE INTO ip_bans (network, by_name, reason, until) VALUES (?, ?, ?, ?)",
            (change.key, r.by, r.reason, r.until),
        )
    elif change.what == "mode":
        mode = change.mode or RoomMode()
        db.execute(
            "INSERT OR REPLACE INTO room_modes (room, moderated, topic_locked) VALUES (?, ?, ?)",
            (change.room, int(mode.moderated), int(mode.topic_locked)),
        )


def prepare_sqlite(db: sqlite3.Connection) -> None:
    """Create the moderation tables (an older ``papo.db`` gains them in place)."""
    db.executescript(MODERATION_SCHEMA)


class SqliteModeration:
    """The :class:`ModerationKeeper` of the SQLite store (a mixin of
    :class:`~papo.store_sqlite.SqliteStore`, whose thread and connection it uses)."""

    if TYPE_CHECKING:

        async def _run(
            self, fn: Callable[[sqlite3.Connection], T], *, transaction: bool = True
        ) -> T: ...

    async def load_moderation(self) -> ModerationState:
        def load(db: sqlite3.Connection) -> ModerationState:
            state = ModerationState()
            for room, key, name, on in db.execute(
                "SELECT room, user_key, user_name, op FROM room_operators"
            ):
                state.set_operator(room, key, name, bool(on))
            for key, name, by, reason, until in db.execute(
                "SELECT user_key, name, by_name, reason, until FROM bans"
            ):
                state.bans[key] = Restriction(name, by, reason, until)
            for room, key, name, by, reason, until in db.execute(
                "SELECT room, user_key, name, by_name, reason, until FROM mutes"
            ):
                state.mutes[(room, key)] = Restriction(name, by, reason, until)
            for network, by, reason, until in db.execute(
                "SELECT network, by_name, reason, until FROM ip_bans"
            ):
                state.ip_bans.add(parse_network(network), Restriction(network, by, reason, until))
            for room, moderated, locked in db.execute(
                "SELECT room, moderated, topic_locked FROM room_modes"
            ):
                if moderated or locked:  # an open room needs no check
                    state.modes[room] = RoomMode(bool(moderated), bool(locked))
            return state

        return await self._run(load)

    async def keep_moderation(self, change: ModerationChange) -> None:
        await self._run(partial(_write, change=change))

    async def keep_audit(self, entry: AuditEntry) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO audit (ts, by_name, action, target, reason, room) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (entry.ts, entry.by, entry.action, entry.target, entry.reason, entry.room),
            )
        )

    async def audit_entries(self, limit: int) -> list[AuditEntry]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT ts, by_name, action, target, reason, room FROM audit "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall(),
            transaction=False,
        )
        return [AuditEntry(*(str(v) for v in row)) for row in reversed(rows)]
