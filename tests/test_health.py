"""``/healthz`` tells the truth about writes, and failed writes consume no ids.

In process, SQLite's writes are made to fail for real (another connection
holds the write lock). Over real sockets the data directory is a small tmpfs
that the test mounts and fills (root only: elsewhere skipped with the reason,
and in CI a failure), and Redis is refused memory (``maxmemory``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from papo.health import WriteHealth
from papo.protocol_encode import utc_timestamp
from papo.sqlite_writer import Busy
from papo.store import StoreError
from papo.store_records import Stored
from papo.store_sqlite import SqliteStore
from tests.conftest import StartServer
from tests.helpers import JsonClient, RedisServer, ServerProcess, need


def message(text: str) -> Stored:
    return Stored(0, "ana", "ana", text, utc_timestamp(), conv="#geral", room="#geral")


def health(server: ServerProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.http + "/healthz", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_write_health_is_the_outcome_of_the_last_writes() -> None:
    clock = [1_800_000_000.0]
    state = WriteHealth(clock=lambda: clock[0])
    assert state.problem is None
    state.failed("disk full")
    clock[0] += 5
    state.failed("disk still full")
    problem = state.problem
    assert problem is not None
    assert "2 failed" in problem and "disk still full" in problem and "2027-01-15" in problem
    state.succeeded()
    assert state.problem is None


async def test_failed_writes_consume_no_ids(tmp_path: Path) -> None:
    """The issue's reproduction: after 3 failed messages the next got id 126 after 122."""
    store = SqliteStore(tmp_path)
    await store.open()
    first, _ = await store.append(message("antes"))
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: every store write fails
    try:
        failed = await asyncio.gather(
            *(store.append(message(f"falha {i}")) for i in range(3)), return_exceptions=True
        )
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert all(isinstance(f, StoreError) for f in failed), failed
    after, _ = await store.append(message("depois"))
    assert after.id == first.id + 1
    assert [m.id for m in (await store.history("#geral", None, 10))[0]] == [first.id, after.id]
    await store.close()


async def test_messages_queued_behind_a_failed_batch_take_the_ids_it_gave_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    first, _ = await store.append(message("antes"))
    writer = store._loop_writer
    assert writer is not None
    insert, write = store._insert, writer.write
    failing, queued = threading.Event(), threading.Event()

    def busy_once(fn: Callable[[sqlite3.Connection], Any], rows: int) -> Any:
        if not failing.is_set():  # the thread holds the lock: the batch goes there
            raise Busy
        return write(fn, rows)

    def fail_once(db: sqlite3.Connection, *, messages: list[Stored]) -> tuple[int, dict[str, int]]:
        if not failing.is_set():
            failing.set()
            queued.wait()  # on the store's thread, until more messages are queued behind
            raise sqlite3.OperationalError("disk I/O error")
        return insert(db, messages=messages)

    monkeypatch.setattr(writer, "write", busy_once)
    monkeypatch.setattr(store, "_insert", fail_once)
    lost = asyncio.ensure_future(store.append(message("falha")))
    await asyncio.to_thread(failing.wait)  # its batch is being written
    behind = [store.enqueue(message(f"depois {i}").with_id) for i in range(3)]
    queued.set()
    with pytest.raises(StoreError):
        await lost
    after = [await future for future in behind]
    assert [m.id for m in after] == [first.id + 1, first.id + 2, first.id + 3]
    kept = (await store.history("#geral", None, 10))[0]
    assert [(m.id, m.text) for m in kept] == [(first.id, "antes")] + [(m.id, m.text) for m in after]
    await store.close()


async def test_sqlite_health_fails_with_the_writes_and_recovers_with_one(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    await store.ping()
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError):
            await store.append(message("falha"))
        with pytest.raises(StoreError) as caught:  # the probe write fails too
            await store.ping()
        assert "store writes failing since" in str(caught.value)
        assert "locked" in str(caught.value)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await store.ping()  # nobody sends, yet the probe write proves the store works again
    assert store.health.problem is None
    await store.close()


# ---------------------------------------------------------------- a full disk, for real


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, mounted for this test (root only) and unmounted after it."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    if os.geteuid() != 0:
        need("not root: mounting a tmpfs needs root", "the full-disk test")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        need(f"cannot mount a tmpfs: {mounted.stderr.strip()}", "the full-disk test")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; the file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 65536
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                size //= 2
    finally:
        os.close(fd)
    return filler


async def test_healthz_is_503_on_a_full_disk_and_200_after_ids_skip_nothing(
    tmpfs: Path,
) -> None:
    server = ServerProcess(tmpfs / "data", "--rate-limit", "0").start()
    try:
        ana = await JsonClient.open(server.url, "ana")
        before = await ana.say("antes", cid="c0")
        assert before["type"] == "ack"
        assert health(server)[0] == 200
        filler = fill(tmpfs)
        for i in range(3):  # big enough to need new pages in the write-ahead log
            failed = await ana.say("x" * 4000 + str(i), cid=f"f{i}")
            assert failed.get("code") == "store_unavailable", failed
        status, body = health(server)
        assert status == 503, body
        assert "store writes failing" in body and "full" in body
        filler.unlink()
        after = await ana.say("depois", cid="c1")
        assert after["type"] == "ack", after
        assert after["id"] == before["id"] + 1  # the failed ones used no id
        status, body = health(server)
        assert status == 200, body
        await ana.close()
    finally:
        server.kill()


async def test_redis_health_follows_its_writes(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    import redis as redis_py

    server = start_server("--redis", redis_server.url, "--rate-limit", "0")
    ana = await JsonClient.open(server.url, "ana")
    before = await ana.say("antes")
    r = redis_py.Redis(port=redis_server.port)
    try:
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", "1")  # every write is refused: OOM
        for i in range(3):
            failed = await ana.say(f"falha {i}")
            assert failed.get("code") == "store_unavailable", failed
        status, body = health(server)
        assert status == 503, body
        assert "OOM" in body or "memory" in body
    finally:
        r.config_set("maxmemory", "0")
        r.close()
    deadline = time.monotonic() + 20
    while (after := await ana.say("depois"))["type"] != "ack":  # presence may retry first
        assert time.monotonic() < deadline, after
        await asyncio.sleep(0.1)
    assert after["id"] == before["id"] + 1  # refused before the id was taken
    deadline = time.monotonic() + 20
    while (answer := health(server))[0] != 200:
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.1)
    await ana.close()


@pytest.mark.parametrize("wait", [0, None])
async def test_with_redis_wait_0_nothing_asks_about_replicas_and_the_probe_is_a_set(
    redis_server: RedisServer, wait: int | None
) -> None:
    """``--redis-wait 0``: no INFO replication at start nor at a heartbeat's check, and
    the health probe (while writes fail) is one SET, no WAIT. Without ``--redis-wait``
    (automatic) the master is asked, and with no replicas the probe still sends no WAIT."""
    import redis as redis_py

    from papo.store_redis import RedisStore

    r = redis_py.Redis(port=redis_server.port, decode_responses=True)
    store = RedisStore(redis_server.url, wait=wait)
    try:
        r.config_resetstat()
        await store.open()
        await store._check_replication()  # what every heartbeat does
        store.health.failed("a write failed")
        await store.ping()  # the probe write
        assert store.health.problem is None
        assert r.exists(f"{{papo}}:health:{store.instance}")  # the probe's SET
        stats = r.info("commandstats")
    finally:
        await store.close()
        r.close()
    assert ("cmdstat_info" in stats) == (wait is None), stats.keys()
    assert "cmdstat_wait" not in stats
