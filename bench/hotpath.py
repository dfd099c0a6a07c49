#!/usr/bin/env python3
"""The server's cost per room message, in-process: no sockets, no load generator.

    .venv/bin/python bench/hotpath.py                 # 10 000 sessions, rooms of 10
    .venv/bin/python bench/hotpath.py --concurrency 1 # one message at a time
    .venv/bin/python bench/hotpath.py --profile out.prof

The server is built as ``papo.app.serve`` builds it (SQLite in a temporary
directory, the hub, the metrics, the transport, the endpoint) and 10 000
connections are opened on it through :class:`papo.wsconn.WsConnection` with a
fake asyncio transport: each one does the real handshake, joins as a guest
(so it is in the default room, where nobody speaks) and ``/join``\\ s its room
of ``--room-size``. Then a message is one masked client frame handed to
``data_received``, as uvloop hands it, and goes the whole way: the library's
parser, the connection's worker task, the transport's plain-text parsing, the
hub, the store's batch commit, the fan-out into the recipients' buffers and
the :class:`~papo.wsloop.Outbox` flush into the fake transports (a list
append, so the socket writes are left out).

``--concurrency`` messages (from as many rooms) are handed in per event-loop
step, and the next ones once those are delivered: under load that is how
many messages share a commit. The run prints the CPU of the whole process
(the SQLite thread included) and the wall time per message, in µs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from papo.accounts import Accounts, Tokens  # noqa: E402
from papo.app import GC_GEN0_THRESHOLD, make_store  # noqa: E402
from papo.config import Settings, parse_settings  # noqa: E402
from papo.hub import Hub  # noqa: E402
from papo.limits import AttemptLimiter  # noqa: E402
from papo.metrics import Metrics, TransportStats  # noqa: E402
from papo.store_sqlite import SqliteStore  # noqa: E402
from papo.transport import Transport  # noqa: E402
from papo.wsconn import Endpoint, WsConnection  # noqa: E402

HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class FakeTransport:
    """What a :class:`WsConnection` asks of its asyncio transport; writes are counted."""

    writes = 0
    written = 0

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        FakeTransport.writes += 1
        FakeTransport.written += len(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


def client_frame(text: str) -> bytes:
    """A masked text frame, as a client sends it (payloads under 126 bytes)."""
    payload = text.encode()
    assert len(payload) < 126
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def until(predicate: Any, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.001)


class Waiter:
    """Wakes the driver once the hub's deliveries reach ``target`` (no polling: the
    fan-out's metrics hook checks, after the real one)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.target = 0
        self.event = asyncio.Event()
        observe = hub.observe_fanout

        def observed(seconds: float) -> None:
            observe(seconds)
            if hub.stats.deliveries >= self.target:
                self.event.set()

        hub.observe_fanout = observed

    async def wait(self) -> None:
        self.event.clear()
        if self.hub.stats.deliveries < self.target:
            await self.event.wait()


class Server:
    """The parts ``papo.app.serve`` builds, over SQLite in ``data``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def start(self) -> None:
        s = self.settings
        store = make_store(s)
        assert isinstance(store, SqliteStore)
        self.store = store
        await self.store.open()
        accounts = Accounts(
            self.store,
            Tokens(await self.store.secret(), s.token_ttl_days * 86400),
            AttemptLimiter(s.login_attempts, 60.0),
        )
        self.hub = Hub(
            self.store,
            accounts,
            presence_grace=s.presence_grace,
            rate=s.rate_limit,
            burst=s.rate_burst,
            default_room=s.default_room,
            room_creations=AttemptLimiter(s.room_creations, 60.0),
            joins_per_address=s.joins_per_address,
        )
        await self.hub.moderation.open()
        metrics = Metrics(self.hub, TransportStats())
        self.hub.observe_fanout = metrics.fanout.observe
        self.store.observe_commit = metrics.history_write.observe
        self.transport = Transport(s, self.hub, metrics)
        self.endpoint = Endpoint.configured(self.transport, metrics.transport, s)

    def connect(self, n: int) -> WsConnection:
        conn = self.endpoint()
        conn.connection_made(FakeTransport(("127.0.0.1", 10_000 + n)))  # type: ignore[arg-type]
        conn.data_received(HANDSHAKE)
        return conn

    async def stop(self) -> None:
        self.hub.stop()
        self.endpoint.close_all(1001)
        await self.store.close()


async def populate(server: Server, clients: int, size: int) -> list[WsConnection]:
    """Open ``clients`` connections (guests, in the default room), each also in its room."""
    hub = server.hub
    conns = [server.connect(n) for n in range(clients)]
    await until(lambda: sum(1 for u in hub.users.values() if u.sessions) >= clients)
    for n, conn in enumerate(conns):
        conn.data_received(client_frame(f"/join #b{n // size}"))
    await until(lambda: len(hub.rooms) >= clients // size + 1)
    await until(lambda: sum(len(r.members) for r in hub.rooms.values() if not r.home) >= clients)
    await hub.settle()
    return conns


async def one_round(
    hub: Hub, waiter: Waiter, senders: list[WsConnection], args: argparse.Namespace
) -> tuple[int, float, float]:
    """Send ``args.messages``, ``args.concurrency`` at a time; (sent, CPU s, wall s)."""
    frames = [
        client_frame(f"bench {r:05d} 000001 1234567890123456789".ljust(64))
        for r in range(len(senders))
    ]
    per_message = args.room_size - 1  # every member but the sender (#geral is silent)
    sent = 0
    delivered0 = hub.stats.deliveries
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while sent < args.messages:
        batch = min(args.concurrency, args.messages - sent)
        for i in range(batch):
            r = (sent + i) % len(senders)
            senders[r].data_received(frames[r])
        sent += batch
        target = delivered0 + sent * per_message
        if hub.stats.deliveries < target:
            waiter.target = target
            await waiter.wait()
    await hub.settle()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert hub.stats.deliveries - delivered0 >= sent * per_message
    return sent, cpu, wall


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="papo-hotpath-") as data:
        settings = parse_settings(
            [
                "--data", data, "--rate-limit", "0", "--max-connections", "20000",
                "--max-connections-per-ip", "0", "--room-creations", "0",
                "--ping-interval", "3600", "--log-level", "WARNING",
            ]
        )  # fmt: skip
        server = Server(settings)
        await server.start()
        hub = server.hub
        started = time.perf_counter()
        size = args.room_size
        conns = await populate(server, args.clients, size)
        rooms = args.clients // size
        print(
            f"{args.clients} sessions, {rooms} rooms of {size}, "
            f"setup {time.perf_counter() - started:.1f} s; "
            f"{args.messages} messages, {args.concurrency} at a time",
            flush=True,
        )
        waiter = Waiter(hub)
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
        if args.hold:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        for rnd in range(args.repeat):
            profile = cProfile.Profile() if args.profile and rnd == args.repeat - 1 else None
            if profile is not None:
                profile.enable()
            sent, cpu, wall = await one_round(hub, waiter, conns[::size], args)
            if profile is not None:
                profile.disable()
                profile.dump_stats(args.profile)
            print(
                f"round {rnd + 1}: {1e6 * cpu / sent:6.2f} µs CPU/msg, "
                f"{1e6 * wall / sent:6.2f} µs wall/msg ({sent / wall:,.0f} msg/s)",
                flush=True,
            )
        if args.hold:
            print("done", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--room-size", type=int, default=10)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50, help="messages per loop step")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", default="", help="write a cProfile of the last round here")
    parser.add_argument("--asyncio", action="store_true", help="asyncio's loop, not uvloop")
    parser.add_argument(
        "--hold",
        action="store_true",
        help="wait for a line on stdin before the rounds and after them (to attach a profiler "
        "to the rounds only: py-spy, or callgrind_control -i on/off for instruction counts)",
    )
    args = parser.parse_args()
    if args.asyncio:
        asyncio.run(run(args))
    else:
        import uvloop

        uvloop.run(run(args))
    os._exit(0)


if __name__ == "__main__":
    main()
