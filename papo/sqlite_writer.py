"""The messages' SQLite writes, run on the event loop itself, with the checkpoints off it.

Why not the store's thread: a batch's insert and commit cost 0.1-0.3 ms of
CPU, but handing them to a thread and back costs more than that, and when the
event loop is busy (fanning out, writing to sockets) the thread waits for the
GIL at every step of the call: under a chat of 100k deliveries/s a commit took
2-5 ms that way, added to every message's latency, against 0.2-0.4 ms here.
In WAL mode with ``synchronous=NORMAL`` a commit does not wait for the disk;
only a checkpoint does (it syncs the database file), so this connection never
checkpoints (``wal_autocheckpoint=0``) and asks the store's thread to run a
passive checkpoint, which does not stop writers, every ``CHECKPOINT_ROWS``
rows. A commit is still durable across a crash of the process (the WAL is on
disk); across a power loss, as before, the last commits may be lost.

The store's thread keeps its own connection for every other statement
(reads, accounts, rooms, moderation). When it holds the write lock, this
connection does not wait (``timeout=0``): :meth:`LoopWriter.write` says it
is busy and the store runs that batch on its thread instead, so the event
loop never sleeps on a lock.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from papo.store import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Rows written between two checkpoints asked of the store's thread (~1-2 MB of WAL).
CHECKPOINT_ROWS = 5_000


class Busy(Exception):
    """The store's thread holds the write lock: write this batch there instead."""


class LoopWriter:
    """A second connection to the store's database, for the event loop's writes."""

    def __init__(self, path: Path, checkpoint: Callable[[], object]) -> None:
        #: Asks the store's thread for a passive checkpoint (it must not block).
        self.checkpoint = checkpoint
        self.rows = 0  # written since the last checkpoint was asked for
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
            db.execute("PRAGMA synchronous=NORMAL")  # as the store's connection (WAL is the file's)
            db.execute("PRAGMA secure_delete=ON")  # trimmed rows are zeroed, as lifecycle ones
            db.execute("PRAGMA wal_autocheckpoint=0")  # the thread checkpoints
            db.isolation_level = "DEFERRED"
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {path} for writing: {exc}") from exc
        self.db: sqlite3.Connection | None = db

    def write(self, fn: Callable[[sqlite3.Connection], T], rows: int) -> T:
        """Run ``fn`` in one transaction, here; raises :class:`Busy` or StoreError."""
        db = self.db
        if db is None:
            raise StoreError("the store is closed")
        try:
            with db:
                result = fn(db)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise Busy from exc
            raise StoreError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        self.wrote(rows)
        return result

    def wrote(self, rows: int) -> None:
        """Count ``rows`` written (here or by the thread); ask for a checkpoint when due."""
        self.rows += rows
        if self.rows >= CHECKPOINT_ROWS:
            self.rows = 0
            self.checkpoint()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
