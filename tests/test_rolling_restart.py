"""The README's rolling restart: ``deploy/rolling-restart.sh`` behind ``deploy/nginx.conf``.

Two instances share a real Redis behind Debian's nginx running the
repository's config; the test plays the process manager (systemd's
``Restart=always``): an instance that stops is started again on its port.
Clients (the real client library: reconnect, resume, re-send by cid) chat
through nginx all along while the script restarts each instance in turn. At
the end every acknowledged message is stored once and reached every client it
should, once, and nobody was announced leaving or joining: not when an
instance stopped, not when its clients came back elsewhere, not when the
instances that stopped were reaped from Redis.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_py

from papo.client_session import ChatSession
from papo.protocol import Hello, Message, Presence
from tests.helpers import ROOT, RedisServer, ServerProcess, need
from tests.test_nginx import nginx_for
from tests.test_workers import conv, stored, until

SCRIPT = ROOT / "deploy" / "rolling-restart.sh"
USERS = 6


class Managed:
    """A papo instance kept running like a service manager does: started again when it stops.

    Its pid is in ``<run>/<port>.pid``, for the restart command.
    """

    def __init__(self, server: ServerProcess, run: Path) -> None:
        self.server = server
        self.run = run
        self.closing = False
        self.starts = 0
        self._thread = threading.Thread(target=self._keep, daemon=True)

    def start(self) -> Managed:
        self._start()
        self._thread.start()
        return self

    def _start(self) -> None:
        for _ in range(50):  # the port may linger for a moment
            try:
                self.server.start()
                break
            except RuntimeError:
                if not self.server.logged("address already in use"):
                    raise
                time.sleep(0.1)
        assert self.server.proc is not None
        self.starts += 1
        (self.run / f"{self.server.port}.pid").write_text(f"{self.server.proc.pid}\n")

    def _keep(self) -> None:
        while not self.closing:
            proc = self.server.proc
            assert proc is not None
            proc.wait()
            if not self.closing:
                self._start()

    def close(self) -> None:
        self.closing = True
        self.server.kill()
        self._thread.join(30)
        # for whoever reads a failure: every process's log, in the test's directory
        (self.run / f"{self.server.port}.log").write_text("".join(self.server.log))


@pytest.fixture
def instances(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[Managed]]:
    need(
        None if shutil.which("curl") else "curl is not installed (apt-get install curl)",
        "the rolling-restart test",
    )
    run = tmp_path / "run"
    run.mkdir()
    flags = ("--redis", redis_server.url, "--presence-grace", "0.3", "--rate-limit", "0")
    started: list[Managed] = []
    try:
        for _ in range(2):
            server = ServerProcess(tmp_path / "data", *flags, "--max-connections-per-ip", "0")
            started.append(Managed(server, run).start())
        yield started
    finally:
        for managed in started:
            managed.close()


def instances_in_redis(redis: RedisServer) -> int:
    client = redis_py.Redis(port=redis.port)
    try:
        return int(client.zcard("{papo}:instances"))
    finally:
        client.close()


async def test_rolling_restart_behind_nginx_loses_nothing_and_nobody_leaves(
    tmp_path: Path, instances: list[Managed], redis_server: RedisServer
) -> None:
    a, b = (managed.server for managed in instances)
    with nginx_for(tmp_path, [a, b]) as nginx:
        names = [f"u{i}" for i in range(USERS)]
        sessions: dict[str, ChatSession] = {}
        for name in names:
            session = ChatSession(nginx.url, max_backoff=1.0)
            await session.connect()
            await session.join(Hello(name))
            sessions[name] = session
        received: dict[str, list[Message]] = {name: [] for name in names}
        presence: dict[str, list[tuple[str, str]]] = {name: [] for name in names}

        async def read(name: str) -> None:
            async for event in sessions[name].events():
                if isinstance(event, Message):
                    received[name].append(event)
                elif isinstance(event, Presence):
                    presence[name].append((event.event, event.name))

        readers = [asyncio.create_task(read(name)) for name in names]
        # everyone heard the joins of those who came after them; from now on, silence
        await until(
            lambda: all(
                {("join", later) for later in names[i + 1 :]} <= set(presence[name])
                for i, name in enumerate(names)
            ),
            "the joins of the start",
        )
        for heard in presence.values():
            heard.clear()

        rng = random.Random(1313)
        counts = dict.fromkeys(names, 0)
        keep_sending = asyncio.Event()
        keep_sending.set()

        async def write(name: str) -> None:
            while keep_sending.is_set():
                private = rng.random() < 0.2
                to = rng.choice([n for n in names if n != name]) if private else None
                await sessions[name].say(f"{name}#{counts[name]}", to)
                counts[name] += 1
                await asyncio.sleep(rng.uniform(0.05, 0.15))

        writers = [asyncio.create_task(write(name)) for name in names]
        await until(lambda: min(counts.values()) >= 5, "traffic flowing")

        # the documented procedure: each instance in turn, while everyone keeps talking
        command = (
            f'pid=$(cat "{instances[0].run}/$PORT.pid") && kill -TERM "$pid" && '
            'while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done'
        )
        script = await asyncio.create_subprocess_exec(
            "sh", str(SCRIPT), "--command", command, a.port, b.port,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(script.communicate(), 120)
        assert script.returncode == 0, output.decode()
        assert "every instance restarted" in output.decode()
        assert [managed.starts for managed in instances] == [2, 2]
        await until(  # the clients of the instance restarted last are back too
            lambda: all(s.reconnects >= 1 and s.live for s in sessions.values()), "reconnects"
        )

        after = dict(counts)
        await until(lambda: all(counts[n] >= after[n] + 5 for n in names), "traffic after")
        keep_sending.clear()
        await asyncio.gather(*writers)
        for name in names:
            assert await sessions[name].wait_acked(60), f"{name}: never acknowledged"

        # the stopped instances are reaped (where a leave would be announced) ...
        await until(lambda: instances_in_redis(redis_server) == 2, "the reaps", within=90)
        # ... and a join published after the reaps reaches everyone after any leave would
        late = ChatSession(nginx.url)
        await late.connect()
        await late.join(Hello("late"))
        await until(
            lambda: all(("join", "late") in heard for heard in presence.values()), "late's join"
        )
        for name in names:
            assert presence[name] == [("join", "late")], (name, presence[name])

        # every acknowledged message stored once, and delivered once to each who may see it
        rows = stored(redis_server)
        ids = [row[0] for row in rows]
        assert len(ids) == sum(counts.values()) and len(set(ids)) == len(ids)
        expected = {
            name: sorted(i for i, sender, to in rows if sender != name and to in (None, name))
            for name in names
        }
        for name in names:
            assert sessions[name].own_ids <= set(ids), name
        await until(
            lambda: all(len(received[n]) >= len(expected[n]) for n in names), "every delivery"
        )
        for name in names:
            got = [m.id for m in received[name]]
            assert sorted(got) == expected[name], name
            for conversation in {conv(m) for m in received[name]}:
                in_it = [m.id for m in received[name] if conv(m) == conversation]
                assert in_it == sorted(in_it), (name, conversation)
        print(
            f"{len(ids)} messages through two restarts; reconnects: "
            f"{[s.reconnects for s in sessions.values()]}"
        )
        for session in [*sessions.values(), late]:
            await session.close()
        await asyncio.gather(*readers)
