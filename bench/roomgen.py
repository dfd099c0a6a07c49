"""Build and run ``bench/roomgen.c``, the C load generator of the rooms scenario.

``bench/rooms.py`` runs it when ``gcc`` is there: one process, one thread,
epoll, every delivery timed (kernel receive timestamps), so that it is not
what limits the numbers (the Python ``bench/loadgen.py`` tops out near 30 000
deliveries/s). It connects the clients, sends each one's ``/join #b<room>``,
waits until every join is confirmed and the server is quiet, then runs the
steps and prints one JSON line per event (``ready``, ``quiet``, ``step``,
``error``); the fields are described in ``roomgen.c``'s header comment.

Binaries are built with ``gcc -O2`` into ``bench/.build/`` (not in git) when
missing or older than their source.

The self-check runs roomgen against ``bench/roommock.c``, a C stand-in for
papo's plain-text rooms whose faults are known (no papo server involved)::

    python bench/roomgen.py --selfcheck

It checks the counts (latency depends on how busy the machine is): a clean
run delivers every message once, dropped and misrouted deliveries fail the
step, echoes are counted apart. Then it runs steps on 10 000 clients
whatever their outcome and prints the stand-in's and roomgen's CPU, roomgen's
per delivery, so that its ceiling on this machine can be estimated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILD = HERE / ".build"


def build(name: str = "roomgen") -> Path | None:
    """``bench/.build/<name>`` from ``bench/<name>.c``, rebuilt if older; None without gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    source = HERE / f"{name}.c"
    binary = BUILD / name
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    BUILD.mkdir(exist_ok=True)
    done = subprocess.run(
        [gcc, "-O2", "-Wall", "-o", str(binary), str(source)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gcc could not build {source}:\n{done.stderr}")
    return binary


async def events(cmd: Sequence[str]) -> AsyncIterator[dict[str, Any]]:
    """Run ``cmd`` (a roomgen command line) and yield its JSON lines as they come.

    An ``error`` line or a non-zero exit raises RuntimeError; stderr (its
    ``#`` notices) goes to ours.
    """
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        async for raw in proc.stdout:
            event: dict[str, Any] = json.loads(raw)
            if event["event"] == "error":
                raise RuntimeError(f"roomgen: {event['error']} ({event})")
            yield event
        if await proc.wait() != 0:
            raise RuntimeError(f"roomgen exited with status {proc.returncode}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def command(
    binary: Path,
    port: int,
    *,
    clients: int,
    room_size: int,
    senders_per_room: int,
    steps: Sequence[int],
    seconds: float,
    size: int = 64,
    server_pid: int | None = None,
    pin: Sequence[str] = (),
) -> list[str]:
    """The command line of one roomgen run."""
    cmd = [
        *pin, str(binary), "--port", str(port), "--clients", str(clients),
        "--room-size", str(room_size), "--senders-per-room", str(senders_per_room),
        "--steps", ",".join(str(s) for s in steps), "--step-seconds", str(seconds),
        "--size", str(size),
    ]  # fmt: skip
    if server_pid is not None:
        cmd += ["--server-pid", str(server_pid)]
    return cmd


# ---------------------------------------------------------------- self-check


async def _against_mock(
    roomgen: Path,
    mock: Path,
    faults: list[str],
    clients: int,
    steps: list[int],
    *more: str,
    senders_per_room: int = 2,
) -> list[dict[str, Any]]:
    from run import free_port, pin

    port = free_port()
    server = await asyncio.create_subprocess_exec(*pin(0), str(mock), "--port", str(port), *faults)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        cmd = command(
            roomgen, port, clients=clients, room_size=10, senders_per_room=senders_per_room,
            steps=steps, seconds=3, server_pid=server.pid, pin=pin(1),
        )  # fmt: skip
        return [e async for e in events([*cmd, *more]) if e["event"] == "step"]
    finally:
        server.terminate()
        await server.wait()


def selfcheck(clients: int, top: list[int]) -> int:
    """Run roomgen against roommock, clean and with each fault; 0 if all was seen right."""
    roomgen, mock = build("roomgen"), build("roommock")
    if roomgen is None or mock is None:
        print("gcc is not installed: nothing to check")
        return 1
    failures = 0

    def check(name: str, ok: bool, step: dict[str, Any]) -> None:
        nonlocal failures
        failures += not ok
        keys = ("sent", "expected", "deliveries", "ratio", "cross_room", "echo", "p99_ms", "ok")
        shown = {k: step[k] for k in keys}
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {shown}", flush=True)

    run = asyncio.run
    (clean,) = run(_against_mock(roomgen, mock, [], 1000, [1000]))
    # Counts only: latency (and so "ok") depends on how busy the machine is.
    ok = clean["ratio"] == 1 and not clean["cross_room"] and not clean["out_of_order"]
    check("clean: all delivered, none elsewhere", ok, clean)
    (dropped,) = run(_against_mock(roomgen, mock, ["--drop", "500"], 1000, [1000]))
    ok = not dropped["ok"] and abs(dropped["ratio"] - 0.998) < 0.0005
    check("--drop 500: ratio 0.998, the step fails", ok, dropped)
    (routed,) = run(_against_mock(roomgen, mock, ["--misroute", "1000"], 1000, [1000]))
    ok = not routed["ok"] and routed["cross_room"] > 0
    check("--misroute 1000: cross_room counted, the step fails", ok, routed)
    (echo,) = run(_against_mock(roomgen, mock, ["--echo"], 1000, [1000]))
    ok = echo["echo"] == echo["sent"] and echo["ratio"] == 1
    check("--echo: echoes counted apart, not as deliveries", ok, echo)
    print(f"capacity: {clients} clients in rooms of 10, 1 sender each, steps {top} (msgs/s)")
    capacity = _against_mock(roomgen, mock, [], clients, top, "--keep-going", senders_per_room=1)
    for step in run(capacity):
        per = 1e4 * step["loadgen_cpu_pct"] / max(1, step["deliveries_per_s"])
        print(
            f"  {step['offered_msgs_per_s']:>7} msgs/s: {step['deliveries_per_s']:,} "
            f"deliveries/s, ratio {step['ratio']:.4f}, p99 {step['p99_ms']} ms; mock CPU "
            f"{step['server_cpu_pct']} %, roomgen CPU {step['loadgen_cpu_pct']} % "
            f"({per:.2f} µs per delivery; its core busy {step['loadgen_core_busy_pct']} %, "
            f"sends up to {step['sched_lag_max_ms']} ms late)",
            flush=True,
        )
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--selfcheck", action="store_true", help="run roomgen against roommock")
    parser.add_argument("--clients", type=int, default=10_000, help="for the capacity steps")
    parser.add_argument(
        "--steps", default="10000,20000,30000,40000,50000,60000,80000", help="capacity steps"
    )
    args = parser.parse_args()
    if not args.selfcheck:
        parser.print_help()
        return 2
    return selfcheck(args.clients, [int(s) for s in args.steps.split(",")])


if __name__ == "__main__":
    sys.exit(main())
