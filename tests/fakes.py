"""Small fakes for in-process tests of the core: a connection without a socket.

:class:`FakeLink` is what the hub needs of a connection (``papo.directory.Link``):
it decodes every frame written to it, so a test reads exactly the events a
real client would have received, in order, in microseconds. :func:`make_hub`
builds a hub over a real store (memory or SQLite) and real accounts.
:class:`FakeServer` is the other end for the client's side
(:class:`~papo.client_session.ChatSession`): what the client sends, and
events the test plays as the server; :class:`FakeClock` a clock (and a
``sleep``) that moves only when the test says.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from papo.accounts import Accounts, Tokens
from papo.directory import Session
from papo.hub import Hub
from papo.limits import AttemptLimiter
from papo.outgoing import Outgoing, OutgoingRun
from papo.protocol import ClientEvent, Hello, Mode
from papo.store import Store
from papo.store_memory import MemoryStore
from papo.store_sqlite import SqliteStore


class FakeLink:
    """A connection that keeps what it was sent."""

    def __init__(self, mode: Mode = "json", address: str = "127.0.0.1", lang: str = "en") -> None:
        self.mode: Mode = mode
        self.address = address
        self.lang = lang
        self.sent: list[Any] = []  # decoded JSON events, or plain lines
        self.close_code: int | None = None

    def write(self, out: Outgoing) -> None:
        if self.close_code is not None:
            return
        payload = out.payload(self.mode, self.lang)
        if payload is not None:
            text = payload.decode()
            self.sent.append(json.loads(text) if self.mode == "json" else text)

    def write_run(self, run: OutgoingRun) -> None:
        for out in run.outs:
            self.write(out)

    async def drain(self) -> None:
        pass

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def take(self) -> list[Any]:
        """Everything sent since the last take."""
        sent, self.sent = self.sent, []
        return sent

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The events of one type sent since the last take (the others are dropped)."""
        return [e for e in self.take() if isinstance(e, dict) and e["type"] == kind]


async def make_hub(tmp_path: Path | None = None, **options: Any) -> Hub:
    """A hub over a memory store (or SQLite in ``tmp_path``), opened, with real accounts."""
    store: Store = MemoryStore() if tmp_path is None else SqliteStore(tmp_path)
    await store.open()
    accounts = Accounts(store, Tokens(await store.secret(), 3600), AttemptLimiter(5, 60))
    options.setdefault("rate", 0)
    options.setdefault("presence_grace", 0)
    hub = Hub(store, accounts, **options)
    await hub.moderation.open()
    return hub


async def send(hub: Hub, session: Session, event: ClientEvent) -> None:
    """Hand ``event`` to the hub as the transport does (a room message is queued at once,
    :meth:`Hub.handle_now`) and wait for what that leaves under way, as the connection does."""
    pending = hub.handle_now(session, event)
    if isinstance(pending, asyncio.Future):
        await asyncio.wait((pending,))  # its outcome is the hub's own
    elif pending is not None:
        await pending


async def connect(hub: Hub, name: str, mode: Mode = "json", **hello: Any) -> Session:
    """A joined session of ``name``, its welcome and context already taken."""
    session = hub.attach(FakeLink(mode))
    await hub.handle(session, Hello(name, **hello))
    await hub.settle()
    link(session).take()
    return session


def link(session: Session) -> FakeLink:
    assert isinstance(session.link, FakeLink)
    return session.link


class CountingLink(FakeLink):
    """A connection that only counts what it was written: for tests that count work.

    It encodes nothing, so ten thousand of them cost little; ``writes`` is the
    number of frames the hub wrote to it.
    """

    def __init__(self, mode: Mode = "plain", address: str = "127.0.0.1", lang: str = "en") -> None:
        super().__init__(mode, address, lang)
        self.writes = 0

    def write(self, out: Outgoing) -> None:
        self.writes += 1


class FakeClock:
    """A clock that moves only when told; ``sleep`` waits for it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for wake, future in list(self._sleepers):
            if wake <= self.now and not future.done():
                future.set_result(None)
        self._sleepers = [s for s in self._sleepers if not s[1].done()]
        await settle()

    @property
    def sleeping(self) -> int:
        self._sleepers = [s for s in self._sleepers if not s[1].done()]
        return len(self._sleepers)


async def settle() -> None:
    """Let every ready task run (no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


class FakeServer:
    """The client's WebSocket without a socket: what the client sent (decoded), and
    the events the test plays as the server's (``play``), until ``end``."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def play(self, **event: Any) -> None:
        self._inbox.put_nowait(json.dumps(event))

    def end(self, code: int = 1000) -> None:
        self.close_code = code
        self._inbox.put_nowait(None)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.end(code)

    def __aiter__(self) -> FakeServer:
        return self

    async def __anext__(self) -> str:
        raw = await self._inbox.get()
        if raw is None:
            raise StopAsyncIteration
        return raw
