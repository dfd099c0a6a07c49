"""The messages' SQLite writes on the event loop (papo.sqlite_writer), in process.

A real SQLite file in tmp_path; another connection plays the store's thread
holding the write lock. No sleeps: the tests wait on what the writer did.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import papo.sqlite_writer
import papo.store
from papo.sqlite_writer import Busy, LoopWriter
from papo.store_records import Stored
from papo.store_sqlite import SqliteStore

TS = "2026-12-02T10:00:00.000Z"


def message(n: int) -> Stored:
    return Stored(0, "ana", "ana", f"m{n}", TS, room="#geral", conv="#geral", home=True)


def stored_texts(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT text FROM messages ORDER BY id")]


async def test_a_batch_is_committed_on_the_loop_before_it_is_answered(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    try:
        stored, new = await store.append(message(1))
        assert new and stored.id == 1
        assert stored_texts(store.path) == ["m1"]  # on disk when the sender is answered
    finally:
        await store.close()


async def test_when_the_thread_holds_the_lock_the_batch_is_written_there(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, as a long write on the thread would
    writer = store._loop_writer
    assert writer is not None
    refused = asyncio.Event()
    write = writer.write

    def spy(*args: Any) -> Any:
        try:
            return write(*args)
        except Busy:
            refused.set()
            raise

    writer.write = spy  # type: ignore[method-assign,assignment]
    gate = threading.Event()  # the thread is kept busy until the lock is free again
    held = asyncio.ensure_future(store._run(lambda db: gate.wait(), transaction=False))
    try:
        appended = asyncio.ensure_future(store.append(message(1)))
        async with asyncio.timeout(10):
            await refused.wait()  # the loop did not wait on the lock...
        other.execute("COMMIT")
        gate.set()  # ... and the thread, behind it, writes the batch
        await held
        async with asyncio.timeout(10):
            stored, new = await appended
        assert new and stored.id == 1 and stored_texts(store.path) == ["m1"]
        stored, _ = await store.append(message(2))  # and the next goes on the loop again
        assert stored.id == 2
    finally:
        other.close()
        await store.close()


async def test_the_loop_asks_the_thread_for_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(papo.sqlite_writer, "CHECKPOINT_ROWS", 10)
    store = SqliteStore(tmp_path)
    await store.open()
    writer = store._loop_writer
    assert writer is not None
    asked = 0
    checkpoint = writer.checkpoint

    def count() -> object:
        nonlocal asked
        asked += 1
        return checkpoint()

    writer.checkpoint = count
    try:
        for n in range(25):
            await store.append(message(n))
        assert asked == 2  # after rows 10 and 20
        assert store._checkpointing is not None
        await store._checkpointing  # it ran on the thread, and did not fail
    finally:
        await store.close()
    assert len(stored_texts(store.path)) == 25


def test_a_writer_on_a_closed_or_broken_database_says_so(tmp_path: Path) -> None:
    writer = LoopWriter(tmp_path / "x.sqlite3", lambda: None)
    with pytest.raises(papo.store.StoreError):
        writer.write(lambda db: db.execute("INSERT INTO nowhere VALUES (1)"), 1)
    writer.close()
    with pytest.raises(papo.store.StoreError, match="closed"):
        writer.write(lambda db: None, 1)
