"""Test helpers: run the real server as a process, talk to it over real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from papo.redis_wait import NotReplicated
from papo.store import Store
from papo.store_records import Stored

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on (wss?)://([^/]+)/")


class ServerProcess:
    """``python server.py`` on a free port, its log collected as it runs."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.log: list[str] = []
        self.port = "0"
        self.scheme = "ws"  # wss with --tls-cert
        self._ready = threading.Event()

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self._ready.clear()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "server.py"),
                "--host",
                "127.0.0.1",
                "--port",
                self.port,
                "--data",
                str(self.data_dir),
                *self.args,
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        if not self._ready.wait(timeout):
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        return self

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log.append(line)
            match = LISTENING.search(line)
            if match and not self._ready.is_set():
                self.scheme, self.address = match.group(1), match.group(2)
                self.port = self.address.rsplit(":", 1)[1]
                self._ready.set()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}/"

    @property
    def http(self) -> str:
        return f"{'https' if self.scheme == 'wss' else 'http'}://{self.address}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def restart(self, sig: int = signal.SIGKILL) -> ServerProcess:
        """Stop (by default: kill -9) and start again on the same port and data."""
        if sig == signal.SIGKILL:
            self.kill()
        else:
            self.stop(sig)
        for _ in range(50):  # the port may linger for a moment
            try:
                return self.start()
            except RuntimeError:
                if not any("address already in use" in line.lower() for line in self.log[-3:]):
                    raise
                time.sleep(0.1)
        raise RuntimeError("could not restart on port " + self.port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.log)


# ---------------------------------------------------------------- clients


class JsonClient:
    """A ``papo.v1`` client for tests: send events, read events with timeouts."""

    def __init__(self, ws: ClientConnection, name: str | None = None) -> None:
        self.ws = ws
        self.name = name
        self.welcome: dict[str, Any] = {}
        self.backlog: deque[dict[str, Any]] = deque()

    @classmethod
    async def open(
        cls, url: str, name: str | None = None, *, ssl: ssl.SSLContext | None = None, **hello: Any
    ) -> JsonClient:
        ws = await connect(url, subprotocols=[Subprotocol("papo.v1")], open_timeout=5, ssl=ssl)
        client = cls(ws, name)
        if name is not None:
            await client.send({"type": "hello", "name": name, **hello})
            event = await client.recv()
            assert event["type"] == "welcome", event
            client.welcome = event
        return client

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def say(
        self, text: str, to: str | None = None, cid: str | None = None, room: str | None = None
    ) -> dict[str, Any]:
        event: dict[str, Any] = {"type": "say", "text": text}
        if to is not None:
            event["to"] = to
        if room is not None:
            event["room"] = room
        if cid is not None:
            event["cid"] = cid
        await self.send(event)
        return await self.expect("ack", "error")

    async def recv(self, timeout: float = 15.0) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.popleft()
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        data: dict[str, Any] = json.loads(raw)
        return data

    async def expect(self, *types: str, timeout: float = 15.0) -> dict[str, Any]:
        """The next event of one of ``types``; events before it stay queued for ``recv``."""
        deadline = time.monotonic() + timeout
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                event = await self.recv(max(0.01, deadline - time.monotonic()))
                if event["type"] in types:
                    return event
                skipped.append(event)
        finally:
            self.backlog.extendleft(reversed(skipped))

    async def quiet(
        self, seconds: float = 0.3, *, ignore: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Everything received within ``seconds`` (minus ``ignore`` types)."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = await self.recv(left)
            except TimeoutError:
                break
            if event["type"] not in ignore:
                got.append(event)
        return got

    async def close(self) -> None:
        await self.ws.close()


async def closed_with(ws: ClientConnection, timeout: float = 10.0) -> int | None:
    """Read (and drop) frames until the server closes ``ws``; its close code."""
    async with asyncio.timeout(timeout):
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass  # an error code (not 1000/1001) ends the loop this way
    return ws.close_code


class PlainClient:
    """A plain-text client: what a five-line script or a browser console does."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, *, accept_language: str | None = None) -> PlainClient:
        headers = {"Accept-Language": accept_language} if accept_language else None
        return cls(await connect(url, additional_headers=headers, open_timeout=5))

    async def send(self, line: str) -> None:
        await self.ws.send(line)

    async def recv(self, timeout: float = 15.0) -> str:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str)
        return raw

    async def until(self, predicate: str, timeout: float = 15.0) -> str:
        """The first line that contains ``predicate`` (earlier lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            line = await self.recv(max(0.01, deadline - time.monotonic()))
            if predicate in line:
                return line

    async def lines(self, seconds: float = 0.3) -> list[str]:
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(await self.recv(left))
            except TimeoutError:
                break
        return got

    async def close(self) -> None:
        await self.ws.close()


# ---------------------------------------------------------------- other real parts


def need(missing: str | None, what: str) -> None:
    """Fail when ``missing`` names something absent in CI (nothing may silently
    skip there); elsewhere skip, saying why."""
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} must run in CI: {missing}")
    pytest.skip(missing)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A real ``redis-server`` of the test's own, on a free port.

    Its own process (not the machine's shared Redis) so that a test may stop
    and restart it. The append-only file is fsynced on every write, as the
    README asks of a production Redis, so a restart keeps every acknowledged
    message, and rewritten without an RDB preamble, so deleted text leaves it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.host = "127.0.0.1"
        self.port = free_port()
        self.wrapper: list[str] = []  # what runs it (``ip netns exec NAME``: tests/netns.py)
        self.options: list[str] = []  # more redis-server options
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                *self.wrapper,
                *redis_command(self.port, self.directory, self.host),
                "--appendonly", "yes",
                "--appendfsync", "always",
                # a rewritten AOF as commands, not an RDB copy of the streams' packed
                # nodes (which keep XDELed entries): as the README asks (deleted text)
                "--aof-use-rdb-preamble", "no",
                "--save", "",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start: " + self.log())

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text() if path.exists() else ""


def redis_command(port: int, directory: Path, host: str = "127.0.0.1") -> list[str]:
    """The start of a redis-server command line: on ``port`` of ``host``, in ``directory``
    (made here), its log file there."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("redis-server")
    assert binary is not None
    return [
        binary,
        "--port", str(port),
        "--bind", host,
        "--dir", str(directory),
        "--logfile", str(directory / "redis.log"),
    ]  # fmt: skip


def redis_missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    return None


async def resent(store: Store, message: Stored, timeout: float = 30.0) -> tuple[Stored, bool]:
    """``message`` appended again, as a client re-sends it (same cid) after
    ``store_unavailable``, until the store confirms it (Redis replicas back)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await store.append(message)
        except NotReplicated:
            if time.monotonic() > deadline:
                raise
