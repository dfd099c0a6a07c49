"""The embedded store: SQLite (WAL) in the data directory, written by group commit.

SQLite connections are not shared across threads. The messages' inserts and
commits run on the event loop on a connection of their own (a WAL commit does
not wait for the disk; :mod:`papo.sqlite_writer` says why and how checkpoints
stay off the loop); every other statement runs on one dedicated worker thread
with the store's main connection.

Messages are written by one writer task: every message appended while the
previous batch was being committed goes into the next batch, in one
transaction. Under load a batch holds many messages and the cost of a commit
is shared; when idle a message is committed alone at once. Each sender is
answered (and the message fanned out) only after its batch is committed, and
batches resolve in id order, so delivery order is id order.

Every message carries its conversation (``conv``: a room's key, or the two
users' key for direct messages), and the index ``(conv, id)`` makes a history
page, an unread count and a resume over a user's conversations one indexed
query each. Retention applies per conversation. Rooms, memberships, read
markers and direct conversations are loaded into memory at start
(:class:`~papo.membership.Memberships`) and written through on every change.
A data directory from before rooms is migrated in place at start: public
messages move to the default room, private ones to their direct conversation;
one whose name keys were made by an older rule has them made again
(:mod:`papo.sqlite_keys`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TypeVar

from papo.devices import Device, beyond_limit
from papo.health import WriteHealth
from papo.membership import Memberships
from papo.message_log import DEFAULT_RETENTION, RING_SIZE, MessageLog
from papo.moderation_store import SqliteModeration, prepare_sqlite
from papo.sqlite_keys import migrate_keys
from papo.sqlite_schema import (
    COLUMNS,
    CONV_INDEX,
    DEVICE_COLUMNS,
    MIGRATE_CONVERSATIONS,
    SCHEMA,
    inserts,
    row_to_stored,
)
from papo.sqlite_writer import Busy, LoopWriter
from papo.store import StoreError
from papo.store_lifecycle import SqliteLifecycle, prepare_lifecycle
from papo.store_local import LocalRooms
from papo.store_records import UNREAD_CAP, Account, Page, RoomRecord, Stored
from papo.store_thread import StoreThread

log = logging.getLogger(__name__)

T = TypeVar("T")


class SqliteStore(SqliteLifecycle, SqliteModeration, LocalRooms):
    """Accounts, revoked tokens, messages and rooms in ``<data_dir>/papo.db``."""

    def __init__(
        self,
        data_dir: Path,
        retention: int = DEFAULT_RETENTION,
        default_room: RoomRecord | None = None,
    ) -> None:
        super().__init__()
        self.default_room = default_room or RoomRecord("#geral", "#geral")
        self._counts: dict[str, int] = {}  # messages kept per conversation
        self.data_dir = data_dir
        self.path = data_dir / "papo.db"
        self.retention = retention
        self.log = MessageLog(retention, RING_SIZE)
        self._thread = StoreThread("papo-sqlite")
        self._db: sqlite3.Connection | None = None
        self._queue: list[tuple[Stored, int | None, asyncio.Future[Stored]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._loop_writer: LoopWriter | None = None
        self._checkpointing: asyncio.Task[None] | None = None
        self._closing = False
        #: Called with the seconds each batch commit took (metrics set it).
        self.observe_commit: Callable[[float], None] = lambda seconds: None
        #: What the last writes said, for ``/healthz``.
        self.health = WriteHealth()

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, transaction: bool = True) -> T:
        """Run ``fn`` on the store's thread (in one transaction unless told otherwise)."""

        def call() -> T:
            if self._db is None:
                raise StoreError("the store is closed")
            try:
                if not transaction:
                    return fn(self._db)
                with self._db:
                    return fn(self._db)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

        try:
            return await self._thread.run(call)
        except StoreError as exc:
            self.health.failed(str(exc))
            raise

    async def open(self) -> None:
        def connect() -> None:
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=1.0
                )
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
                db.executescript(SCHEMA)
                columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
                if "conv" not in columns:
                    room = self.default_room
                    with db:
                        for statement in MIGRATE_CONVERSATIONS.split(";"):
                            if statement.strip():
                                db.execute(statement, {"room_key": room.key, "room": room.name})
                    log.info("store %s: messages moved into conversations", self.path)
                migrate_keys(db, self.path)
                db.execute(CONV_INDEX)
                prepare_sqlite(db)  # moderation's tables
                prepare_lifecycle(db)  # edits and deletions: columns, secure_delete
                db.isolation_level = "DEFERRED"  # implicit transactions for `with db`
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
            self._db = db

        await self._thread.run(connect)

        def load(db: sqlite3.Connection) -> tuple[list[Stored], int, int]:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM messages ORDER BY id DESC LIMIT ?", (RING_SIZE,)
            ).fetchall()
            last, oldest = db.execute("SELECT max(id), min(id) FROM messages").fetchone()
            self._load_rooms(db)
            return [self._stored(row) for row in reversed(rows)], last or 0, oldest or 0

        recent, last_id, oldest = await self._run(load)
        self.log.load(recent, last_id, oldest)
        self._loop_writer = LoopWriter(self.path, self._checkpoint)
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        log.info("store %s: %d messages kept, last id %d", self.path, len(recent), last_id)

    async def close(self) -> None:
        if self._writer is not None:  # let the writer commit what is queued, then stop
            self._closing = True
            self._wake.set()
            await self._writer
        if self._checkpointing is not None:
            await self._checkpointing
        if self._loop_writer is not None:
            self._loop_writer.close()
            self._loop_writer = None

        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._thread.run(shut)
        self._thread.stop()

    # ---------------------------------------------------------------- messages

    async def append(self, message: Stored, origin: int | None = None) -> tuple[Stored, bool]:
        earlier = self.log.duplicate(message.sender_key, message.cid)
        if earlier is not None:
            return (await earlier if isinstance(earlier, asyncio.Future) else earlier), False
        return await self.enqueue(message.with_id, origin), True

    def enqueue(
        self, make: Callable[[int], Stored], origin: int | None = None
    ) -> asyncio.Future[Stored]:
        """Queue a message whose ``cid`` is new for the next batch (see :class:`~papo.store.Enqueues`)."""
        # Ids are given in the order messages are queued, which is the order their
        # batches are written in; a batch that fails gives its ids back (_write_loop).
        message = make(self.log.next_id())
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self.log.pending(message, future)
        self._queue.append((message, origin, future))
        self._wake.set()
        return future

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._queue = self._queue, []
            messages = [message for message, _, _ in batch]
            started = time.perf_counter()
            try:
                oldest, trims = await self._write(messages)
            except Exception as exc:  # the loop must live on, whatever one batch did
                if not isinstance(exc, StoreError):
                    log.exception("storing %d message(s) failed unexpectedly", len(batch))
                    exc = StoreError(f"{self.path}: the message could not be stored ({exc})")
                log.error("could not store %d message(s): %s", len(batch), exc)
                # Nothing was stored, so a failed message consumes no id: the batch's
                # ids go to the messages queued since, numbered again.
                self.log.assigned = messages[0].id - 1
                self._queue = [(m.with_id(self.log.next_id()), o, f) for m, o, f in self._queue]
                for message, _, future in batch:
                    self.log.failed(message)
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.health.succeeded()
            self.observe_commit(time.perf_counter() - started)
            self.log.commit(messages)
            self.log.trimmed(oldest)
            for conv, kept in trims.items():
                self.log.trim_conversation(conv, kept)
            self._directs_of(messages)
            self.on_message(
                [(stored, origin) for stored, (_, origin, _) in zip(messages, batch, strict=True)]
            )
            for stored, (_, _, future) in zip(messages, batch, strict=True):
                if not future.done():
                    future.set_result(stored)

    async def _write(self, messages: list[Stored]) -> tuple[int, dict[str, int]]:
        """Insert a batch on the event loop (:mod:`papo.sqlite_writer`), else on the thread."""
        insert = partial(self._insert, messages=messages)
        writer = self._loop_writer
        if writer is not None:
            try:
                return writer.write(insert, len(messages))
            except Busy:
                log.debug("store busy on its thread: %d message(s) written there", len(messages))
            except StoreError as exc:
                self.health.failed(str(exc))
                raise StoreError(f"{self.path}: {exc}") from exc
        result = await self._run(insert)
        if writer is not None:
            writer.wrote(len(messages))
        return result

    def _checkpoint(self) -> None:
        """A passive checkpoint on the store's thread (asked for by the loop's writer)."""
        if self._checkpointing is not None and not self._checkpointing.done():
            return  # the last one is still running

        def checkpoint(db: sqlite3.Connection) -> None:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        async def run() -> None:
            try:
                await self._run(checkpoint, transaction=False)
            except StoreError as exc:
                log.warning("checkpoint of %s failed: %s", self.path, exc)

        self._checkpointing = asyncio.get_running_loop().create_task(run())

    def _insert(
        self, db: sqlite3.Connection, *, messages: list[Stored]
    ) -> tuple[int, dict[str, int]]:
        """Insert a batch (on the store's thread); trim each conversation to ``retention``.

        Returns the oldest id still kept anywhere, and the conversations trimmed
        with the oldest id each still keeps.
        """
        trims: dict[str, int] = {}
        for statement, rows in inserts(messages):
            db.executemany(statement, rows)
        added: dict[str, int] = {}
        for m in messages:
            added[m.conv] = added.get(m.conv, 0) + 1
            if m.to_key is not None:
                db.execute(
                    "INSERT OR IGNORE INTO directs (conv, a_key, a_name, b_key, b_name) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (m.conv, m.sender_key, m.sender, m.to_key, m.to),
                )
        for conv, n in added.items():
            count = self._counts[conv] = self._counts.get(conv, 0) + n
            if count > self.retention + self.retention // 100:  # trim in steps of 1 %
                cut = db.execute(
                    "SELECT id FROM messages WHERE conv = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                    (conv, self.retention - 1),
                ).fetchone()
                if cut is not None:
                    db.execute("DELETE FROM messages WHERE conv = ? AND id < ?", (conv, cut[0]))
                    db.execute(
                        "INSERT OR REPLACE INTO trims (conv, oldest) VALUES (?, ?)", (conv, cut[0])
                    )
                    trims[conv] = int(cut[0])
                    self._counts[conv] = self.retention
        row = db.execute("SELECT min(id) FROM messages").fetchone()
        return int(row[0] or 0), trims

    async def page(self, key: str, convs: Collection[str], after: int, limit: int) -> Page:
        wanted = json.dumps(sorted(convs))

        def query(db: sqlite3.Connection) -> Page:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM messages "
                "WHERE conv IN (SELECT value FROM json_each(?)) AND id > ? ORDER BY id LIMIT ?",
                (wanted, after, limit),
            ).fetchall()
            newest, oldest = db.execute("SELECT max(id), min(id) FROM messages").fetchone()
            messages = [self._stored(row) for row in rows]
            scanned = messages[-1].id if len(messages) == limit else max(after, newest or 0)
            return Page(messages, scanned, oldest or 0)

        return await self._run(query)

    async def since(self, conv: str, after: int, limit: int) -> list[Stored]:
        def query(db: sqlite3.Connection) -> list[Stored]:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM messages WHERE conv = ? AND id > ? ORDER BY id LIMIT ?",
                (conv, after, limit),
            ).fetchall()
            return [self._stored(row) for row in rows]

        return await self._run(query)

    async def history(self, conv: str, before: int | None, limit: int) -> tuple[list[Stored], bool]:
        def query(db: sqlite3.Connection) -> tuple[list[Stored], bool]:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM messages WHERE conv = ? AND id < ? AND kind = '' "
                "ORDER BY id DESC LIMIT ?",
                (conv, before if before is not None else 2**63 - 1, limit + 1),
            ).fetchall()
            messages = [self._stored(row) for row in rows[:limit]]
            messages.reverse()
            return messages, len(rows) > limit

        return await self._run(query)

    # ---------------------------------------------------------------- rooms

    def _load_rooms(self, db: sqlite3.Connection) -> None:
        """Rooms, memberships, markers and direct conversations into memory (at start).

        Guests' memberships end with their sessions: a crash may have left some.
        """
        db.execute("DELETE FROM members WHERE user_key LIKE 'guest-%'")
        db.execute("DELETE FROM read_markers WHERE user_key LIKE 'guest-%'")
        db.execute("DELETE FROM directs WHERE a_key LIKE 'guest-%' OR b_key LIKE 'guest-%'")
        table = self.memberships = Memberships()
        for key, name, topic, by, created in db.execute(
            "SELECT key, name, topic, created_by, created FROM rooms"
        ):
            table.add_room(RoomRecord(key, name, topic, by, created))
        for room, user_key, user_name in db.execute(
            "SELECT room, user_key, user_name FROM members"
        ):
            table.add_member(room, user_key, user_name)
        for user_key, conv, message_id in db.execute("SELECT user_key, conv, id FROM read_markers"):
            table.set_marker(user_key, conv, message_id)
        for conv, a_key, a_name, b_key, b_name in db.execute(
            "SELECT conv, a_key, a_name, b_key, b_name FROM directs"
        ):
            table.add_direct(conv, (a_key, a_name), (b_key, b_name))
        for conv, oldest in db.execute("SELECT conv, oldest FROM trims"):
            self.log.trim_conversation(conv, oldest)
        self._counts = dict(db.execute("SELECT conv, count(*) FROM messages GROUP BY conv"))

    async def _persist_room(self, room: RoomRecord) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO rooms (key, name, topic, created_by, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (room.key, room.name, room.topic, room.created_by, room.created),
            )
        )

    async def _persist_member(self, room_key: str, key: str, name: str, last_read: int) -> None:
        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR IGNORE INTO members (room, user_key, user_name) VALUES (?, ?, ?)",
                (room_key, key, name),
            )
            db.execute(
                "INSERT OR REPLACE INTO read_markers (user_key, conv, id) VALUES (?, ?, ?)",
                (key, room_key, last_read),
            )

        await self._run(insert)

    async def _persist_part(self, room_key: str, key: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM members WHERE room = ? AND user_key = ?", (room_key, key))
            db.execute("DELETE FROM read_markers WHERE user_key = ? AND conv = ?", (key, room_key))

        await self._run(delete)

    async def _persist_marker(self, key: str, conv: str, message_id: int) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO read_markers (user_key, conv, id) VALUES (?, ?, ?) "
                "ON CONFLICT (user_key, conv) DO UPDATE SET id = excluded.id "
                "WHERE excluded.id > read_markers.id",
                (key, conv, message_id),
            )
        )

    async def _persist_forget(self, key: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM members WHERE user_key = ?", (key,))
            db.execute("DELETE FROM read_markers WHERE user_key = ?", (key,))
            db.execute("DELETE FROM directs WHERE a_key = ? OR b_key = ?", (key, key))

        await self._run(delete)

    async def _newest(self, conv: str) -> int:
        def query(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT max(id) FROM messages WHERE conv = ?", (conv,)).fetchone()
            return int(row[0] or 0)

        return await self._run(query, transaction=False)

    async def _unread(self, key: str, marks: dict[str, int]) -> dict[str, int]:
        def query(db: sqlite3.Connection) -> dict[str, int]:
            return {
                conv: int(
                    db.execute(
                        "SELECT count(*) FROM (SELECT 1 FROM messages WHERE conv = ? AND id > ? "
                        "AND sender_key != ? AND kind = '' AND by_name IS NULL LIMIT ?)",
                        (conv, after, key, UNREAD_CAP),
                    ).fetchone()[0]
                )
                for conv, after in marks.items()
            }

        return await self._run(query, transaction=False)

    def _stored(self, row: tuple[object, ...]) -> Stored:
        stored = row_to_stored(row)
        if stored.conv == self.default_room.key:
            return replace(stored, home=True)
        return stored

    async def ping(self) -> None:
        """Check that a write could happen now (a read alone succeeds under WAL even
        when another process holds the write lock), and that the last writes did.

        While writes fail (a full disk), a small real write is tried: its
        success makes the store healthy again even when nobody is sending.
        """
        if self.health.problem is not None:
            try:
                await self._run(
                    lambda db: db.execute(
                        "INSERT OR REPLACE INTO health (id, checked) VALUES (1, ?)", (time.time(),)
                    )
                )
            except StoreError:
                pass  # recorded by _run
            else:
                self.health.succeeded()
            problem = self.health.problem
            if problem is not None:
                raise StoreError(problem)

        def probe(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")  # takes the write lock, or fails
            db.execute("ROLLBACK")

        await self._run(probe, transaction=False)

    # ---------------------------------------------------------------- accounts

    async def secret(self) -> bytes:
        path = self.data_dir / "secret"

        def load() -> bytes:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                pass
            value = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(value)
            return value

        try:
            value = await self._thread.run(load)
        except OSError as exc:
            raise StoreError(f"cannot read or create {path}: {exc}") from exc
        if len(value) < 32:
            raise StoreError(f"{path} is damaged (under 32 bytes); remove it to make a new one")
        return value

    async def get_account(self, key: str) -> Account | None:
        def get(db: sqlite3.Connection) -> Account | None:
            row = db.execute(
                "SELECT key, name, password_hash, created, last_seen FROM accounts WHERE key = ?",
                (key,),
            ).fetchone()
            return None if row is None else Account(row[0], row[1], row[2], row[3], row[4])

        return await self._run(get)

    async def save_account(self, account: Account) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO accounts (key, name, password_hash, created, last_seen) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    account.key,
                    account.name,
                    account.password_hash,
                    account.created,
                    account.last_seen,
                ),
            )
        )

    async def set_online(self, key: str, name: str, online: bool) -> None:
        def write(db: sqlite3.Connection) -> None:
            if online:
                db.execute("INSERT OR REPLACE INTO online (key, name) VALUES (?, ?)", (key, name))
            else:
                db.execute("DELETE FROM online WHERE key = ?", (key,))

        await self._run(write)

    async def online_before(self) -> list[tuple[str, str]]:
        rows = await self._run(lambda db: db.execute("SELECT key, name FROM online").fetchall())
        return [(str(key), str(name)) for key, name in rows]

    async def set_aside_account(self, key: str) -> Account | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT key, name, password_hash, created, last_seen FROM accounts_set_aside "
                "WHERE key = ?",
                (key,),
            ).fetchone()
        )
        if row is None:
            return None
        return Account(str(row[0]), str(row[1]), row[2], float(row[3]), int(row[4]))

    async def set_last_seen(self, key: str, message_id: int) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE accounts SET last_seen = ? WHERE key = ?", (message_id, key)
            )
        )

    async def revoke_token(self, token_id: str, expires: float) -> None:
        def revoke(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM revoked_tokens WHERE expires < ?", (time.time(),))
            db.execute(
                "INSERT OR REPLACE INTO revoked_tokens (token_id, expires) VALUES (?, ?)",
                (token_id, expires),
            )

        await self._run(revoke)

    async def is_revoked(self, token_id: str) -> bool:
        return await self._run(
            lambda db: (
                db.execute(
                    "SELECT 1 FROM revoked_tokens WHERE token_id = ?", (token_id,)
                ).fetchone()
                is not None
            )
        )

    # ---------------------------------------------------------------- devices

    async def devices(self, key: str) -> list[Device]:
        now = time.time()
        return await self._run(
            lambda db: [
                Device(*row)
                for row in db.execute(
                    f"SELECT {DEVICE_COLUMNS} FROM devices WHERE user_key = ? AND expires > ?",
                    (key, now),
                )
            ]
        )

    async def add_device(self, device: Device) -> None:
        def add(db: sqlite3.Connection) -> None:
            _put_device(db, device)
            kept = [
                Device(*row)
                for row in db.execute(
                    f"SELECT {DEVICE_COLUMNS} FROM devices WHERE user_key = ?", (device.user_key,)
                )
            ]
            gone = beyond_limit(kept, time.time())
            db.executemany("DELETE FROM devices WHERE id = ?", [(i,) for i in gone])

        await self._run(add)

    async def refresh_device(
        self, key: str, device_id: str, gen: int, *, now: float, address: str, ttl: float
    ) -> Device | None:
        def refresh(db: sqlite3.Connection) -> Device | None:
            row = db.execute(
                f"SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ? AND user_key = ?",
                (device_id, key),
            ).fetchone()
            fresh = None if row is None else Device(*row).refreshed(gen, now, address, ttl)
            if fresh is not None:
                _put_device(db, fresh)
            return fresh

        return await self._run(refresh)  # one transaction on the one store thread: atomic

    async def end_devices(
        self, key: str, ids: Collection[str] | None = None, *, keep: str | None = None
    ) -> list[str]:
        def remove(db: sqlite3.Connection) -> list[str]:
            found = [
                str(row[0])
                for row in db.execute("SELECT id FROM devices WHERE user_key = ?", (key,))
            ]
            gone = [i for i in found if i != keep and (ids is None or i in ids)]
            db.executemany("DELETE FROM devices WHERE id = ?", [(i,) for i in gone])
            return gone

        gone = await self._run(remove)
        self.on_devices(key, None if ids is None else frozenset(ids), keep)
        return gone


def _put_device(db: sqlite3.Connection, d: Device) -> None:
    db.execute(
        f"INSERT OR REPLACE INTO devices ({DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            d.id,
            d.user_key,
            d.gen,
            d.used,
            d.prev,
            d.superseded_at,
            d.first_seen,
            d.last_seen,
            d.address,
            d.expires,
        ),
    )
