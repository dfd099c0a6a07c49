"""``server.py --workers N``: N processes on one port, one chat through a real Redis.

The end-to-end tests start the real supervisor (``server.py --workers 2``)
and their own ``redis-server``. Which worker served a connection is read from
the log: every worker's lines say ``worker N pid P``, and its ``conn … open
from 127.0.0.1:PORT`` line names the client's own port. The supervisor's
policies (how long to wait before starting a dying worker again, when to give
up) are tested in process with tiny stand-in workers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import redis as redis_py

from papo import workers
from papo.client_session import ChatSession
from papo.config import parse_settings
from papo.protocol import Hello, Message
from papo.store_redis_base import _cancel
from tests.conftest import StartServer
from tests.helpers import ROOT, RedisServer, ServerProcess

WORKER_LINE = re.compile(r" worker (\d+) pid (\d+) ")
OPENED = re.compile(r" worker \d+ pid (\d+) .*conn \d+ open from 127\.0\.0\.1:(\d+) ")
READY = re.compile(r"worker (\d+) ready \(pid (\d+)\)")


async def until(condition: Callable[[], Any], what: str, within: float = 30.0) -> Any:
    """Wait (polling, with a deadline) until ``condition()`` is truthy; return it."""
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)
    return value


def ready_workers(server: ServerProcess) -> dict[int, int]:
    """Worker index → pid of its latest process that said it listens."""
    ready: dict[int, int] = {}
    for line in list(server.log):
        if match := READY.search(line):
            ready[int(match.group(1))] = int(match.group(2))
    return ready


def served_by(server: ServerProcess, session: ChatSession) -> int | None:
    """The pid of the worker that accepted ``session``'s current connection (from its log)."""
    assert session.ws is not None
    port = str(session.ws.local_address[1])
    for line in reversed(list(server.log)):
        match = OPENED.search(line)
        if match and match.group(2) == port:
            return int(match.group(1))
    return None


def gone(pid: int) -> bool:
    """No such process any more (a zombie would still count: the supervisor reaps its own)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def stored(redis: RedisServer) -> list[tuple[int, str, str | None]]:
    """(id, sender, recipient) of every message in the default room's and the direct stream."""
    client = redis_py.Redis(port=redis.port, decode_responses=True)
    try:
        room = cast(list[tuple[str, dict[str, str]]], client.xrange("{r:#geral}:messages"))
        direct = cast(list[tuple[str, dict[str, str]]], client.xrange("{papo}:direct"))
    finally:
        client.close()
    rows: list[tuple[int, str, str | None]] = [(_id(i), f["k"], None) for i, f in room]
    rows += [(_id(i), f["k"], f["rk"]) for i, f in direct]
    return sorted(rows)


def _id(entry_id: str) -> int:
    return int(entry_id.split("-")[1])


def workers_flags(redis: RedisServer) -> tuple[str, ...]:
    return ("--workers", "2", "--redis", redis.url, "--presence-grace", "0.3", "--rate-limit", "0")


def conv(message: Message) -> str | None:
    """The conversation of a received message: its room, or the other side of a private one."""
    return message.sender if message.to is not None else message.room


# ---------------------------------------------------------------- end to end


async def test_two_workers_serve_one_chat_and_a_killed_worker_comes_back_with_no_gap(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    server = start_server(*workers_flags(redis_server))
    first = await until(lambda: len(ready_workers(server)) == 2 and ready_workers(server), "ready")
    assert len(set(first.values())) == 2

    # two distinct papo instances for the Redis store
    instances = {
        WORKER_LINE.search(line).group(1): line.rsplit(" as instance ", 1)[1].split(":")[0]  # type: ignore[union-attr]
        for line in server.log
        if " as instance " in line
    }
    assert len(set(instances.values())) == 2, instances

    # clients until both workers serve some (the kernel spreads connections by a hash)
    sessions: list[ChatSession] = []
    served: dict[int, list[int]] = {}
    while len(served) < 2 or min(len(v) for v in served.values()) < 2:
        assert len(sessions) < 60, f"60 connections and still {served}"
        session = ChatSession(server.url, max_backoff=1.0)
        await session.connect()
        await session.join(Hello(f"u{len(sessions)}"))
        pid = await until(lambda: served_by(server, session), "its conn line")  # noqa: B023
        served.setdefault(pid, []).append(len(sessions))
        sessions.append(session)
    assert set(served) == set(first.values())
    names = [session.hello.name for session in sessions if session.hello is not None]

    received: dict[str, list[Message]] = {name: [] for name in names}
    rng = random.Random(13)

    async def read(name: str, session: ChatSession) -> None:
        async for event in session.events():
            if isinstance(event, Message):
                received[name].append(event)

    keep_sending = asyncio.Event()
    keep_sending.set()
    counts: dict[str, int] = dict.fromkeys(names, 0)

    async def write(name: str, session: ChatSession) -> None:
        while keep_sending.is_set() or counts[name] < 40:
            private = rng.random() < 0.2
            to = rng.choice([n for n in names if n != name]) if private else None
            await session.say(f"{name}#{counts[name]}", to)
            counts[name] += 1
            await asyncio.sleep(rng.uniform(0.02, 0.08))

    pairs = list(zip(names, sessions, strict=True))
    readers = [asyncio.create_task(read(n, s)) for n, s in pairs]
    writers = [asyncio.create_task(write(n, s)) for n, s in pairs]
    await until(lambda: min(counts.values()) >= 10, "traffic flowing")

    # SIGKILL one worker mid-traffic: the supervisor starts it again, its clients resume
    victim_pid = served_by(server, sessions[0])
    assert victim_pid is not None
    victim = next(index for index, pid in first.items() if pid == victim_pid)
    os.kill(victim_pid, signal.SIGKILL)
    await until(
        lambda: ready_workers(server).get(victim) not in (None, victim_pid), "the worker back"
    )
    assert server.logged(f"worker {victim} (pid {victim_pid}) died (killed by SIGKILL)")
    moved = [sessions[i] for i in served[victim_pid]]
    await until(lambda: all(s.reconnects >= 1 for s in moved), "its clients reconnected")
    sent_then = dict(counts)
    await until(lambda: all(counts[n] >= sent_then[n] + 10 for n in names), "more traffic")
    keep_sending.clear()
    await asyncio.gather(*writers)
    for session in sessions:
        assert await session.wait_acked(30), f"{len(session.unacked)} never acknowledged"

    # every message stored once; every client got exactly what it may see, once
    rows = stored(redis_server)
    ids = [row[0] for row in rows]
    assert len(ids) == sum(counts.values()) and len(set(ids)) == len(ids)
    for name, session in pairs:
        assert session.own_ids <= set(ids), name
    expected = {
        name: sorted(i for i, sender, to in rows if sender != name and to in (None, name))
        for name in names
    }

    def complete() -> bool:
        return all(len(received[n]) >= len(expected[n]) for n in names)

    await until(complete, "every delivery", within=30)
    for name in names:
        got = [m.id for m in received[name]]
        assert sorted(got) == expected[name], name  # no gap, no duplicate
        for conversation in {conv(m) for m in received[name]}:  # each conversation in order
            in_it = [m.id for m in received[name] if conv(m) == conversation]
            assert in_it == sorted(in_it), (name, conversation)
    for session in sessions:
        await session.close()
    await asyncio.gather(*readers)

    # SIGTERM: every worker stops cleanly, the supervisor exits 0, nothing left behind
    every_pid = {int(m.group(2)) for line in server.log if (m := READY.search(line))}
    assert len(every_pid) == 3
    assert server.stop(signal.SIGTERM, timeout=60) == 0
    await until(lambda: all(gone(pid) for pid in every_pid), "no worker left")
    assert server.logged("every worker stopped")
    assert sum("shutting down: closing" in line for line in server.log) == 2  # the live ones


async def test_a_killed_supervisor_takes_its_workers_with_it(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    server = start_server(*workers_flags(redis_server))
    ready = await until(lambda: len(ready_workers(server)) == 2 and ready_workers(server), "ready")
    server.kill()  # SIGKILL: the supervisor cannot tell anyone
    await until(lambda: all(gone(pid) for pid in ready.values()), "the workers gone", within=60)
    assert server.logged("the supervisor is gone; shutting down")


def test_workers_without_redis_refuse_to_start_saying_they_share_the_chat_through_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAPO_")}
    for args, extra in ((["--workers", "2"], {}), ([], {"PAPO_WORKERS": "0"})):
        done = subprocess.run(
            [sys.executable, str(ROOT / "server.py"), *args],
            check=False,
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert "share the chat through Redis: give --redis URL" in done.stderr, done.stderr


# ---------------------------------------------------------------- in process


def test_workers_flag_and_environment() -> None:
    url = "redis://127.0.0.1:6379/0"
    assert parse_settings([], {}).workers is None
    assert parse_settings(["--workers", "3", "--redis", url], {}).workers == 3
    assert parse_settings(["--redis", url], {"PAPO_WORKERS": "0"}).workers == 0
    with pytest.raises(SystemExit):
        parse_settings(["--workers", "-1", "--redis", url], {})
    assert workers.worker_count(3) == 3
    assert workers.worker_count(0) == len(os.sched_getaffinity(0))


def test_a_worker_that_keeps_dying_at_start_waits_longer_each_time() -> None:
    assert workers.restart_delay(0) == 0.0  # it had run a while: at once
    delays = [workers.restart_delay(n) for n in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays == sorted(delays) and max(delays) == workers.MAX_BACKOFF
    assert workers.describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert workers.describe_exit(1) == "exit status 1"


def test_a_port_in_use_is_refused_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as refused:
            workers.reserve_port("127.0.0.1", port)
        assert refused.value.errno == errno.EADDRINUSE
    assert workers.reserve_port("127.0.0.1", 0) > 0  # port 0: one free port for every worker


def stand_in(code: str) -> workers.Command:
    """A worker that runs ``code`` instead of papo."""

    def command(index: int, argv: Sequence[str]) -> list[str]:
        return [sys.executable, "-c", code, str(index)]

    return command


async def test_a_worker_that_never_comes_up_stops_the_supervisor_with_status_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="papo.workers")
    settings = parse_settings(["--host", "127.0.0.1", "--port", "0"], {})
    supervisor = workers.Supervisor(settings, [], 2, command=stand_in("raise SystemExit(3)"))
    assert await asyncio.wait_for(supervisor.run(), 60) == 1
    assert "could not start (exit status 3)" in caplog.text


async def test_a_worker_that_dies_after_coming_up_is_started_again_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="papo.workers")
    settings = parse_settings(["--host", "127.0.0.1", "--port", "0"], {})
    # says it listens, then dies at once: every start is a fast death
    code = "import os, sys; os.write(1, b'ready\\n'); sys.exit(5)"
    supervisor = workers.Supervisor(settings, [], 1, command=stand_in(code))
    running = asyncio.create_task(supervisor.run())
    await until(lambda: caplog.text.count("worker 1 started") >= 3, "three starts")
    supervisor.stop()  # what its SIGTERM handler does
    assert await asyncio.wait_for(running, 60) == 0
    assert "died (exit status 5)" in caplog.text
    assert "starting it again in 0.5 s" in caplog.text
    assert "starting it again in 1.0 s" in caplog.text


async def test_closing_the_redis_store_ends_a_loop_that_swallowed_its_cancellation() -> None:
    """What hung a rolling restart: redis-py's clean-up replaced a CancelledError."""
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # as a loop does that takes the clean-up's error for Redis's
        await asyncio.Event().wait()

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    await asyncio.wait_for(_cancel([task]), 60)
    assert swallowed.is_set() and task.cancelled()


async def test_sighup_reaches_every_worker_with_tls(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """SIGHUP reloads the certificate: the supervisor passes it on to each worker."""
    caplog.set_level(logging.INFO, logger="papo.workers")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    argv = ["--host", "127.0.0.1", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)]
    settings = parse_settings(argv, {})
    code = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGHUP, lambda *_: os.write(1, b'hup ' + sys.argv[1].encode() + b'\\n'))\n"
        "os.write(1, b'ready\\n')\n"
        "while True: signal.pause()\n"
    )
    supervisor = workers.Supervisor(settings, [], 2, command=stand_in(code))
    running = asyncio.create_task(supervisor.run())
    await until(lambda: caplog.text.count(" ready (pid ") == 2, "both ready")
    os.kill(os.getpid(), signal.SIGHUP)  # handled by the supervisor while it runs
    out: list[str] = []

    def told() -> bool:
        out.append(capfd.readouterr().out)
        return {"hup 1", "hup 2"} <= set("".join(out).splitlines())

    await until(told, "both workers told")
    supervisor.stop()
    assert await asyncio.wait_for(running, 60) == 0
