"""The rooms scenario of ``bench/run.py``: many rooms, everyone also in the default room.

10 000 plain-text clients (guests, so all of them are in ``#geral``, where
nobody speaks) are split into rooms of equal size: 1 000 rooms of 10, then 10
rooms of 1 000. The first ``senders_per_room`` clients of each room talk in it;
the rate (messages in a second, all rooms together) is stepped up on one
server until a step is not delivered completely (ratio >= 0.999) with p99 <
250 ms. Each step reports messages/s in, deliveries/s out and the server's CPU
per message in and per delivery out (µs), and the load generator's own CPU so
that it is seen not to be the bottleneck.

One server serves every step of one layout (connecting and joining 10 000
clients costs far more than a step); steps are separated by a drain, so a
step's messages are counted in that step only.

The load generator is ``bench/roomgen.c`` (C, one thread, epoll; built into
``bench/.build/roomgen`` by ``bench/roomgen.py`` when missing or older than
its source), run as a subprocess pinned to the load generator's CPU. It
joins each client to ``#b<room>`` with the plain-text ``/join``, waits for
every confirmation, for one warm-up message per room to be delivered (papo
confirms a join before its store has written it: without this the first step
waited behind the joins' writes) and for the server to be quiet, runs the
steps and prints one JSON line per step, with the server's CPU read from
``/proc/PID/stat`` at the step's start, the window's end and the end of its
drain. It times every delivery (kernel receive timestamps), and also counts
deliveries to a client of another room (``cross_room``) and sequence numbers
out of order per sender and receiver (``out_of_order``): either fails the
step. Server CPU % is over the window; µs per message in and per delivery
over the window and the drain. ``python bench/roomgen.py
--selfcheck`` runs it against a C stand-in server with known faults.

roomgen sends each room's messages evenly spaced (senders taken room by room
in turn) and does not make the server wake it for every arrival (it reads on
a 1 ms tick; over loopback a woken reader costs the sender a cross-CPU
wake-up). The Python path takes a room's senders one after the other, so a
room of 1 000 gets its ten senders' messages in a row and papo shares its
writes between them: there it measured ~5 000-6 000 µs of server CPU per
message in where roomgen measures ~9 000 (``roomgen --sender-order clients``
reproduces it). Its numbers for rooms of 1 000 are not comparable.

Without ``gcc`` (or with ``bench/run.py --python-loadgen``) the scenario runs
on the Python ``bench/loadgen.py`` instead, which tops out near 30 000
deliveries/s and times ~100 probe clients only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import roomgen
from loadgen import Client, Tally, open_clients, send_spread

#: A step passes when this share of the deliveries arrived, with p99 below P99_MS.
RATIO = 0.999
P99_MS = 250.0


class BenchServer(Protocol):
    port: int
    pid: int

    def cpu_seconds(self) -> float: ...


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


async def _until(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    # The counts grow inside protocol callbacks: polling them is the simple way.
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@dataclass(frozen=True)
class Layout:
    """``clients`` in rooms of ``size``; ``steps``: total messages/s, each for ``seconds``.

    ``pin``: the command prefix that pins roomgen to its CPU; ``python``: use
    ``bench/loadgen.py`` even when roomgen can be built.
    """

    clients: int
    size: int
    senders_per_room: int
    steps: list[int]
    seconds: float
    message_size: int = 64
    pin: tuple[str, ...] = ()
    python: bool = False


async def _quiet(server: BenchServer, *, busy: float = 0.1, seconds: float = 60) -> None:
    """Wait (at most ``seconds``) until the server used under ``busy`` of a CPU for 0.5 s."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cpu = server.cpu_seconds()
        await asyncio.sleep(0.5)
        if server.cpu_seconds() - cpu < busy * 0.5:
            return


async def rooms(server: BenchServer, spec: Layout, report: Any = print) -> dict[str, Any]:
    """Connect the clients in their rooms; step the total rate up until a step fails."""
    binary = None if spec.python else roomgen.build()
    if binary is None and not spec.python:
        report("rooms: gcc is not installed, so the Python load generator drives this")
    if binary is None:
        return await _rooms_python(server, spec, report)
    return await _rooms_c(server, spec, binary, report)


async def _rooms_c(server: BenchServer, spec: Layout, binary: Path, report: Any) -> dict[str, Any]:
    """The layout driven by roomgen (see the module's docstring)."""
    cmd = roomgen.command(
        binary, server.port, clients=spec.clients, room_size=spec.size,
        senders_per_room=spec.senders_per_room, steps=spec.steps, seconds=spec.seconds,
        size=spec.message_size, server_pid=server.pid, pin=spec.pin,
    )  # fmt: skip
    started = time.monotonic()
    layout: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    async for event in roomgen.events(cmd):
        if event["event"] == "ready":
            layout = {
                "clients": event["clients"],
                "rooms": event["rooms"],
                "room_size": event["room_size"],
                "senders": event["senders"],
                "loadgen": "roomgen (C)",
            }
        elif event["event"] == "quiet":  # joined, warm-up delivered, the server idle
            layout["setup_s"] = round(time.monotonic() - started, 1)
            layout["warmup_s"] = round(event["warm_s"], 1)
            report(f"rooms {layout['rooms']} x {layout['room_size']}: {layout}")
        elif event["event"] == "step":
            step = _from_roomgen(event)
            results.append(step)
            ok = bool(event["ok"])  # RATIO and P99_MS on unrounded numbers, and no errors
            rate = event["offered_msgs_per_s"]
            report(
                f"rooms {layout['rooms']} x {layout['room_size']} {rate:>6} msg/s: "
                f"{step} {'ok' if ok else 'FAIL'}"
            )
            if ok:
                best = step
    return {**layout, "steps": results, "best": best}


def _from_roomgen(event: dict[str, Any]) -> dict[str, Any]:
    """A roomgen step line as the Python path's step dict (plus its error counts)."""
    if event["server_cpu_s"] is None:
        raise RuntimeError("roomgen could not read the server's CPU from /proc")
    errors = {k: event[k] for k in ("cross_room", "out_of_order", "bad_tokens") if event[k]}
    return {
        "offered_msgs_per_s": round(event["offered_msgs_per_s"]),
        "msgs_in_per_s": round(event["msgs_in_per_s"]),
        "deliveries_per_s": round(event["deliveries_per_s"]),
        "ratio": round(event["ratio"], 4),
        "p50_ms": round(event["p50_ms"], 2),
        "p99_ms": round(event["p99_ms"], 2),
        "server_cpu_pct": event["server_cpu_pct"],
        "us_per_msg_in": event["us_per_msg_in"],
        "us_per_delivery": event["us_per_delivery"],
        "loadgen_cpu_pct": event["loadgen_cpu_pct"],
        "closed": event["closed"],  # connections the server closed so far (should stay 0)
        "errors": errors,  # deliveries to another room, out of order, unknown senders
        # All processes on the server's and roomgen's CPUs: is either shared?
        "server_core_busy_pct": event["server_core_busy_pct"],
        "loadgen_core_busy_pct": event["loadgen_core_busy_pct"],
    }


async def _rooms_python(server: BenchServer, spec: Layout, report: Any) -> dict[str, Any]:
    """The layout driven by ``bench/loadgen.py`` in this process (no gcc)."""
    clients, size, senders_per_room = spec.clients, spec.size, spec.senders_per_room
    tally = Tally()
    started = time.monotonic()
    conns = await open_clients("127.0.0.1", server.port, clients, 0, tally)
    count = clients // size
    for c in conns:
        c.joining = True
        c.send_text(f"/join #b{c.ident // size}".encode())
    if not await _until(lambda: tally.joined >= len(conns), 300):
        raise RuntimeError(f"only {tally.joined} of {len(conns)} clients joined their room")
    await _quiet(server)  # the last joins' announcements leave before the first step
    setup = time.monotonic() - started
    senders: list[Client] = [c for c in conns if c.ident % size < senders_per_room]
    # Probes (they parse every frame, for latency): ~100, none of them a sender.
    every = max(1, clients // 100)
    for c in conns:
        if c.ident % every == (every // 2 + 1) % every and c.ident % size >= senders_per_room:
            c.probe = True
    layout = {
        "clients": clients,
        "rooms": count,
        "room_size": size,
        "senders": len(senders),
        "probes": sum(c.probe for c in conns),
        "setup_s": round(setup, 1),
        "loadgen": "loadgen.py",
    }
    report(f"rooms {count} x {size}: {layout}")
    results = []
    best: dict[str, Any] | None = None
    for rate in spec.steps:
        step = await _step(server, tally, senders, spec, rate)
        results.append(step)
        ok = step["ratio"] >= RATIO and step["p99_ms"] < P99_MS
        report(f"rooms {count} x {size} {rate:>6} msg/s: {step} {'ok' if ok else 'FAIL'}")
        if not ok:
            break
        best = step
    return {**layout, "steps": results, "best": best}


async def _step(
    server: BenchServer, tally: Tally, senders: list[Client], spec: Layout, rate: int
) -> dict[str, Any]:
    seconds = spec.seconds
    tally.received = 0
    tally.latencies_ns.clear()
    cpu0, t0, own0 = server.cpu_seconds(), time.monotonic(), time.process_time()
    sent = await send_spread(senders, rate, t0 + seconds, spec.message_size)
    elapsed = max(time.monotonic() - t0, seconds)
    expected = sent * (spec.size - 1)  # every member but the sender
    await _until(lambda: tally.received >= expected, 5)
    # Server CPU up to the drain: what these messages cost, in and out.
    cpu = server.cpu_seconds() - cpu0
    own = time.process_time() - own0
    delivered = min(tally.received, expected)
    lat = tally.latencies_ns
    return {
        "offered_msgs_per_s": rate,
        "msgs_in_per_s": round(sent / elapsed),
        "deliveries_per_s": round(delivered / elapsed),
        "ratio": round(tally.received / expected, 4) if expected else 0.0,
        "p50_ms": round(percentile(lat, 0.50), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "server_cpu_pct": round(100 * cpu / elapsed, 1),
        "us_per_msg_in": round(1e6 * cpu / sent, 2) if sent else 0.0,
        "us_per_delivery": round(1e6 * cpu / delivered, 3) if delivered else 0.0,
        "loadgen_cpu_pct": round(100 * own / elapsed, 1),
        "closed": tally.closed,  # connections the server closed so far (should stay 0)
    }
