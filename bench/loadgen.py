"""A load generator for papo's benchmark: many WebSocket clients in one process.

Every client speaks the plain-text mode. Senders send ``bench <id> <seq> <t_ns>``
lines at a fixed rate; every client counts the ``bench`` tokens it receives
(``bytes.count`` over each read, so coalesced frames cost one C call), and a
few *probe* clients also parse every frame to measure latency. It runs on
asyncio protocols (no coroutine per client) and uvloop when installed.

Use ``bench/run.py``; this module is its engine.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import random
import re
import struct
import time
from dataclasses import dataclass, field

TOKEN = b"bench "
TOKEN_RE = re.compile(rb"bench (\d+) (\d+) (\d+)")
#: What a plain-text connection is told once its ``/join`` took effect.
JOINED = b"* you are in #"


@dataclass
class Tally:
    received: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    closed: int = 0
    joined: int = 0  # clients whose /join was answered (see Client.joining)


class Client(asyncio.Protocol):
    """One WebSocket client: handshake, then count (and maybe time) what arrives."""

    def __init__(
        self, ident: int, host: str, tally: Tally, probe: bool, ready: asyncio.Future[None]
    ) -> None:
        self.ident = ident
        self.host = host
        self.tally = tally
        self.probe = probe
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.buf = b""  # before the upgrade: the HTTP answer; probes: partial frames
        self.carry = b""  # the last bytes of a read: a token may straddle two reads
        #: Waiting for the answer to a ``/join`` (then counted once in ``tally.joined``).
        self.joining = False
        self.join_carry = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(  # type: ignore[attr-defined]
            (
                f"GET / HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.buf += data
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(head.split(b"\r\n")[0].decode()))
                return
            self.upgraded = True
            self.buf = b""
            if not self.ready.done():
                self.ready.set_result(None)
            data = rest
            if not data:
                return
        chunk = self.carry + data
        self.tally.received += chunk.count(TOKEN)
        self.carry = chunk[-5:]  # a token (6 bytes) cut here is counted next time, once
        if self.joining:
            seen = self.join_carry + data
            if JOINED in seen:
                self.joining = False
                self.tally.joined += 1
            self.join_carry = seen[-(len(JOINED) - 1) :]
        if self.probe:
            self._time(data)

    def _time(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf + data
        pos = 0
        while len(buf) - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                (length,) = struct.unpack_from("!H", buf, pos + 2)
                head = 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buf, pos + 2)
                head = 10
            end = pos + head + length
            if end > len(buf):
                break
            for match in TOKEN_RE.finditer(buf, pos + head, end):
                self.tally.latencies_ns.append(now - int(match.group(3)))
            pos = end
        self.buf = buf[pos:]

    def send_text(self, text: bytes) -> None:
        """A masked client text frame (RFC 6455 requires clients to mask)."""
        assert self.transport is not None
        mask = random.getrandbits(32).to_bytes(4, "big")
        length = len(text)
        head = (
            struct.pack("!BB", 0x81, 0x80 | length)
            if length < 126
            else struct.pack("!BBH", 0x81, 0x80 | 126, length)
        )
        # XOR as one big integer: a C-speed mask (a per-byte loop costs the sender ~5 µs).
        key = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
        masked = (int.from_bytes(text, "big") ^ key).to_bytes(length, "big")
        self.transport.write(head + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.closed += 1


async def open_clients(
    host: str, port: int, count: int, probes: int, tally: Tally, *, connect_rate: int = 2000
) -> list[Client]:
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    pending: list[asyncio.Future[None]] = []
    for ident in range(count):
        ready: asyncio.Future[None] = loop.create_future()
        probe = probes > 0 and ident % max(1, count // probes) == count // probes // 2
        _, client = await loop.create_connection(
            functools.partial(Client, ident, f"{host}:{port}", tally, probe, ready), host, port
        )
        clients.append(client)
        pending.append(ready)
        if ident % 100 == 99:
            await asyncio.sleep(100 / connect_rate)
    await asyncio.wait_for(asyncio.gather(*pending), 60)
    return clients


async def send_at_rate(
    client: Client, rate: float, until: float, size: int, *, seq_start: int = 0
) -> int:
    """Send ``rate`` messages a second until ``until`` (monotonic); how many were sent."""
    interval = 1.0 / rate
    next_at = time.monotonic() + interval * (client.ident % 97) / 97  # spread the senders
    seq = seq_start
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        line = f"bench {client.ident} {seq} {time.time_ns()} ".encode()
        client.send_text(line + b"x" * max(0, size - len(line)))
        seq += 1
        next_at += interval
    return seq - seq_start


async def send_spread(
    senders: list[Client], rate: float, until: float, size: int, *, tick: float = 0.005
) -> int:
    """Send ``rate`` messages a second in all, round-robin over ``senders``, until ``until``.

    One loop for every sender (no coroutine or timer per sender): each tick
    sends what is due since the start, so thousands of senders cost the load
    generator one wake-up per tick. Returns how many were sent.
    """
    start = time.monotonic()
    sent = 0
    turn = 0
    count = len(senders)
    while True:
        now = time.monotonic()
        if now >= until:
            return sent
        due = min(int(rate * (now - start)) - sent, int(rate) + 1)  # a second at most
        if due > 0:
            stamp = time.time_ns()
            for _ in range(due):
                client = senders[turn]
                turn = turn + 1 if turn + 1 < count else 0
                if client.transport is None or client.transport.is_closing():
                    continue  # closed by the server: counted in Tally.closed
                line = f"bench {client.ident} {sent} {stamp} ".encode()
                client.send_text(line + b"x" * max(0, size - len(line)))
                sent += 1
        await asyncio.sleep(tick)
