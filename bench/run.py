#!/usr/bin/env python3
"""papo's benchmark: start the server, drive it with many clients, print the numbers.

    make bench                      # the full run (~2 minutes)
    python bench/run.py --quick     # a shorter one

Scenarios (as in ../shared/bench, so the numbers can be set side by side):
  idle  10 000 idle clients: RSS per connection
  chat  1000 clients, 10 senders x 10 msg/s, 64 B (~100k deliveries/s offered)
  sat   1000 clients, 20 senders, rate stepped up: the highest deliveries/s
        delivered completely (ratio >= 0.999) with p99 < 250 ms
  rooms 10 000 clients in 1 000 rooms of 10 (one sender each), then in 10
        rooms of 1 000 (ten senders each), all also silent in #geral: the
        highest messages/s in and deliveries/s out under the same rule, and
        the server's CPU per message in and per delivery out (bench/rooms.py,
        driven by the C load generator bench/roomgen.c when gcc is there)

    python bench/run.py --scenarios rooms   # only some scenarios

The server runs pinned to CPU 0 and the load generator to CPU 1 when there
are two CPUs and ``taskset`` exists. Results: a table on stdout,
``bench/results.json`` and a plot ``docs/bench.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from loadgen import Tally, open_clients, send_at_rate  # noqa: E402
from rooms import Layout, rooms  # noqa: E402

SCENARIOS = ("idle", "chat", "sat", "rooms")

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu)]
    return []


class Server:
    def __init__(self, extra: list[str]) -> None:
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="papo-bench-")
        cmd = [
            *pin(0), sys.executable, str(ROOT / "server.py"), "--host", "127.0.0.1",
            "--port", str(self.port), "--data", self.data, "--rate-limit", "0",
            "--max-connections", "20000", "--max-connections-per-ip", "0",
            "--log-level", "WARNING", *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid  # taskset execs the server: this is the server's pid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        shutil.rmtree(self.data, ignore_errors=True)


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


async def idle(server: Server, clients: int) -> dict[str, Any]:
    before = server.rss_kb()
    tally = Tally()
    conns = await open_clients("127.0.0.1", server.port, clients, 0, tally)
    await asyncio.sleep(2)
    after = server.rss_kb()
    # The clients answer no pings: on a loaded machine where opening takes longer than
    # ping interval + timeout (40 s), the first ones are closed; count only those left.
    alive = clients - tally.closed
    if alive < clients:
        print(f"idle: only {alive} of {clients} clients still open", flush=True)
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    return {
        "scenario": "idle",
        "clients": clients,
        "alive": alive,
        "rss_per_conn_kb": (after - before) / max(1, alive),
    }


async def load(
    server: Server, clients: int, senders: int, rate: float, seconds: float, *, size: int = 64
) -> dict[str, Any]:
    tally = Tally()
    conns = await open_clients("127.0.0.1", server.port, clients, 20, tally)
    await asyncio.sleep(0.5)
    tally.received = 0
    tally.latencies_ns.clear()
    cpu0, t0, own0 = server.cpu_seconds(), time.monotonic(), time.process_time()
    until = t0 + seconds
    sent = sum(await asyncio.gather(*(send_at_rate(c, rate, until, size) for c in conns[:senders])))
    elapsed = max(time.monotonic() - t0, seconds)  # the window, even if the last send came early
    cpu = server.cpu_seconds() - cpu0
    own = time.process_time() - own0
    expected = sent * (clients - 1)
    drain_until = time.monotonic() + 5
    # The count grows inside protocol callbacks: polling it is the simple way.
    while tally.received < expected and time.monotonic() < drain_until:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    lat = tally.latencies_ns
    return {
        "clients": clients,
        "senders": senders,
        "offered_per_s": round(senders * rate * (clients - 1)),
        "delivered_per_s": round(min(tally.received, expected) / elapsed),
        "loadgen_cpu_pct": round(100 * own / elapsed, 1),
        "ratio": round(tally.received / expected, 4) if expected else 0.0,
        "p50_ms": round(percentile(lat, 0.50), 2),
        "p90_ms": round(percentile(lat, 0.90), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "server_cpu_pct": round(100 * cpu / elapsed, 1),
    }


def run_scenario(fn: Any, extra: list[str], *args: Any) -> dict[str, Any]:
    server = Server(extra)
    try:
        try:
            import uvloop
        except ImportError:
            result: dict[str, Any] = asyncio.run(fn(server, *args))
            return result
        result = uvloop.run(fn(server, *args))
        return result
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer clients and steps")
    parser.add_argument("--memory", action="store_true", help="run the server with --memory")
    parser.add_argument(
        "--python-loadgen",
        action="store_true",
        help="rooms: drive with bench/loadgen.py instead of the C bench/roomgen.c",
    )
    parser.add_argument("--plot", default=str(ROOT / "docs" / "bench.png"))
    parser.add_argument("--json", default=str(HERE / "results.json"))
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (default: all); a subset updates "
        "only its own entries of the JSON results and leaves the plot alone",
    )
    args = parser.parse_args()
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown or not chosen:
        parser.error(f"--scenarios: unknown {', '.join(unknown) or '(none given)'}")
    if pin(1):  # the load generator (this process) on the other CPU than the server
        os.sched_setaffinity(0, {1})
    extra = ["--memory"] if args.memory else []
    seconds = 3.0 if args.quick else 5.0
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "storage": "memory" if args.memory else "sqlite (durable)",
    }
    print(f"papo benchmark on {results['machine']}; storage {results['storage']}", flush=True)

    if "idle" in chosen:
        idle_res = run_scenario(idle, extra, 2000 if args.quick else 10_000)
        results["idle"] = idle_res
        print(
            f"idle: {idle_res['clients']} clients, "
            f"{idle_res['rss_per_conn_kb']:.1f} KiB RSS per connection",
            flush=True,
        )
    if "chat" in chosen:
        results["chat"] = run_scenario(load, extra, 1000, 10, 10.0, seconds)
        print(f"chat: {results['chat']}", flush=True)
    if "sat" in chosen:
        saturate(results, extra, args.quick, seconds)
    if "rooms" in chosen:
        run_rooms(results, extra, args.quick, seconds, args.python_loadgen)

    print()
    if "chat" in results and "sat" in results:
        chat_table(results)
    if "rooms" in results:
        rooms_table(results["rooms"])
    path = Path(args.json)
    if set(chosen) != set(SCENARIOS) and path.exists():  # a subset: keep the others' entries
        results = {**json.loads(path.read_text()), **results}
    path.write_text(json.dumps(results, indent=2) + "\n")
    if "sat" in chosen:
        plot(results, Path(args.plot))
        print(f"results: {args.json}; plot: {args.plot}")
    else:
        print(f"results: {args.json}")
    return 0


def saturate(results: dict[str, Any], extra: list[str], quick: bool, seconds: float) -> None:
    """The sat scenario: 1000 clients, 20 senders, the rate stepped up until a step fails."""
    steps = [1, 5, 10, 20, 40] if quick else [1, 2, 5, 10, 20, 40, 80, 160]
    sat = []
    best = 0
    for rate in steps:
        step = run_scenario(load, extra, 1000, 20, float(rate), seconds)
        sat.append(step)
        ok = step["ratio"] >= 0.999 and step["p99_ms"] < 250
        print(f"sat {rate:>4} msg/s/sender: {step} {'ok' if ok else 'FAIL'}", flush=True)
        if ok:
            best = max(best, step["delivered_per_s"])
        else:
            break
    results["sat"] = sat
    results["sat_best_per_s"] = best


def chat_table(results: dict[str, Any]) -> None:
    print("| scenario | offered/s | delivered/s | ratio | p50 ms | p99 ms | server CPU % |")
    print("|---|---|---|---|---|---|---|")
    rows = [("chat", results["chat"])]
    rows += [(f"sat x{s['offered_per_s'] // 19980}", s) for s in results["sat"]]
    for name, row in rows:
        print(
            f"| {name} | {row['offered_per_s']:,} | {row['delivered_per_s']:,} | {row['ratio']} "
            f"| {row['p50_ms']} | {row['p99_ms']} | {row['server_cpu_pct']} |"
        )
    line = f"\nhighest sustained: {results['sat_best_per_s']:,} deliveries/s"
    if "idle" in results:
        line += f"; idle: {results['idle']['rss_per_conn_kb']:.1f} KiB/conn"
    print(line)


def run_rooms(
    results: dict[str, Any], extra: list[str], quick: bool, seconds: float, python: bool
) -> None:
    """The rooms scenario (bench/rooms.py): rooms of 10, then rooms of 1 000, one server each."""
    clients = 2000 if quick else 10_000
    # (room size, senders per room, total messages/s steps): the target is 50 000 msgs/s in
    # to rooms of 10; rooms of 1 000 deliver 999 per message (3 000/s: 3M deliveries/s).
    small = [1000, 2000, 3000, 5000, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 80_000]
    layouts = [
        (10, 1, [1000, 3000, 10_000, 50_000] if quick else small),
        (1000, 10, [100, 500, 2000] if quick else [100, 250, 500, 1000, 1500, 2000, 3000]),
    ]
    # 1 000 rooms from one address; the load generator answers no pings, and this runs minutes.
    extra = [*extra, "--room-creations", "0", "--ping-interval", "3600"]
    out = []
    for size, per_room, steps in layouts:
        spec = Layout(clients, size, per_room, steps, seconds, pin=tuple(pin(1)), python=python)
        out.append(run_scenario(rooms, extra, spec))
    results["rooms"] = out


def rooms_table(layouts: list[dict[str, Any]]) -> None:
    print(
        "\n| rooms | msgs in/s | deliveries/s | ratio | p50 ms | p99 ms | server CPU % "
        "| µs/msg in | µs/delivery | loadgen CPU % |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for layout in layouts:
        for row in layout["steps"]:
            print(
                f"| {layout['rooms']} x {layout['room_size']} | {row['msgs_in_per_s']:,} "
                f"| {row['deliveries_per_s']:,} | {row['ratio']} | {row['p50_ms']} "
                f"| {row['p99_ms']} | {row['server_cpu_pct']} | {row['us_per_msg_in']} "
                f"| {row['us_per_delivery']} | {row['loadgen_cpu_pct']} |"
            )
    for layout in layouts:
        best = layout["best"]
        where = f"{layout['rooms']} rooms of {layout['room_size']}"
        if best is None:
            print(f"{where}: no step passed")
        else:
            print(
                f"{where}: highest sustained {best['msgs_in_per_s']:,} msgs/s in, "
                f"{best['deliveries_per_s']:,} deliveries/s out; {best['us_per_msg_in']} µs "
                f"server CPU per message in, {best['us_per_delivery']} µs per delivery out"
            )


def plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot; `make bench` installs it)")
        return
    sat = results["sat"]
    offered = [s["offered_per_s"] for s in sat]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(offered, [s["delivered_per_s"] for s in sat], "o-", label="delivered")
    left.plot(offered, offered, ":", color="grey", label="offered")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("offered deliveries/s")
    left.set_ylabel("delivered deliveries/s")
    left.set_title("Throughput (1000 clients, 20 senders)")
    left.legend()
    right.plot(offered, [s["p50_ms"] for s in sat], "o-", label="p50")
    right.plot(offered, [s["p99_ms"] for s in sat], "s-", label="p99")
    right.axhline(250, color="red", linestyle=":", label="250 ms")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("offered deliveries/s")
    right.set_ylabel("latency (ms)")
    right.set_title("Latency")
    right.legend()
    fig.suptitle(f"papo, {results['storage']} — {results['machine'][:60]}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
