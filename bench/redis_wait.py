#!/usr/bin/env python3
"""The cost of ``--redis-wait 1``: papo on a Redis master with one replica, WAIT off and on.

    python bench/redis_wait.py            # ~5 minutes
    python bench/redis_wait.py --quick

Starts its own master and replica (``redis-server``, append-only file fsynced
on every write, as the README asks; ``--appendfsync everysec`` to compare), then
measures ``--redis-wait 0`` and ``1`` back to back, step by step, on the same
Redis pair:

- per-append latency: one message at a time through the Redis store, in this
  process (what a sender waits for its ``ack``, minus the WebSocket);
- ``chat``: 1000 clients, 10 senders x 10 msg/s (~100k deliveries/s offered):
  delivered/s and p99;
- ``sat``: 1000 clients, 20 senders, the rate stepped up as in ``bench/run.py``:
  the highest deliveries/s delivered completely with p99 < 250 ms.

The machine is shared and noisy: compare the two columns of one run, not
numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
sys.path.insert(0, str(ROOT))

from run import free_port, load, percentile, pin, run_scenario  # noqa: E402

from papo.store import RoomRecord, Stored  # noqa: E402
from papo.store_redis import RedisStore  # noqa: E402

WAITS = (0, 1)


def redis(directory: Path, port: int, fsync: str, *extra: str) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True)
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    proc = subprocess.Popen(
        [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--appendonly", "yes", "--appendfsync", fsync, "--aof-use-rdb-preamble", "no",
            "--save", "", *extra,
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def replica_ready(port: int) -> bool:
    import redis as redis_py

    client = redis_py.Redis(port=port, decode_responses=True)
    try:
        info = client.info("replication")
    finally:
        client.close()
    return info.get("master_link_status") == "up"


async def append_latency(url: str, wait: int, count: int) -> dict[str, Any]:
    store = RedisStore(url, default_room=RoomRecord("#geral", "#geral"), wait=wait)
    await store.open()
    try:
        took: list[int] = []
        for i in range(count):
            message = Stored(0, "bench", "bench", f"m{i}", "2026-01-01T00:00:00Z", conv="#geral")
            started = time.perf_counter_ns()
            await store.append(message)
            took.append(time.perf_counter_ns() - started)
    finally:
        await store.close()
    return {
        "p50_ms": round(percentile(took, 0.5), 3),
        "p99_ms": round(percentile(took, 0.99), 3),
        "mean_ms": round(sum(took) / len(took) / 1e6, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer appends and steps")
    parser.add_argument(
        "--appendfsync",
        default="always",
        choices=["always", "everysec"],
        help="Redis's appendfsync (always: what the README asks for without replicas)",
    )
    args = parser.parse_args()
    if pin(1):
        os.sched_setaffinity(0, {1})
    seconds = 3.0 if args.quick else 5.0
    appends = 500 if args.quick else 3000
    steps = [1, 5, 10, 20] if args.quick else [1, 2, 5, 10, 20, 40, 80]
    work = Path(tempfile.mkdtemp(prefix="papo-bench-wait-"))
    master_port, replica_port = free_port(), free_port()
    procs = [redis(work / "master", master_port, args.appendfsync)]
    replica = ["--replicaof", "127.0.0.1", str(master_port)]
    procs.append(redis(work / "replica", replica_port, args.appendfsync, *replica))
    try:
        while not replica_ready(replica_port):
            time.sleep(0.1)
        url = f"redis://127.0.0.1:{master_port}/0"
        flags = {wait: ["--redis", url, "--redis-wait", str(wait)] for wait in WAITS}
        # Each measure is taken for both settings back to back, so both see the same noise.
        rows: dict[int, dict[str, Any]] = {wait: {"sat": [], "sat_best_per_s": 0} for wait in WAITS}
        for wait in WAITS:
            rows[wait]["append"] = asyncio.run(append_latency(url, wait, appends))
        for wait in WAITS:
            rows[wait]["chat"] = run_scenario(load, flags[wait], 1000, 10, 10.0, seconds)
        going = set(WAITS)
        for rate in steps:
            for wait in sorted(going):
                step = run_scenario(load, flags[wait], 1000, 20, float(rate), seconds)
                rows[wait]["sat"].append(step)
                if step["ratio"] < 0.999 or step["p99_ms"] >= 250:
                    going.discard(wait)
                else:
                    rows[wait]["sat_best_per_s"] = step["delivered_per_s"]
                print(f"sat {rate} msg/s/sender, --redis-wait {wait}: {step}", flush=True)
            if not going:
                break
        for wait in WAITS:
            print(f"--redis-wait {wait}: {rows[wait]}", flush=True)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    print("\n| | --redis-wait 0 | --redis-wait 1 |\n|---|---|---|")
    for label, pick in (
        ("append p50 ms", lambda r: r["append"]["p50_ms"]),
        ("append p99 ms", lambda r: r["append"]["p99_ms"]),
        ("chat (~100k/s offered): delivered/s", lambda r: f"{r['chat']['delivered_per_s']:,}"),
        ("chat p99 ms", lambda r: r["chat"]["p99_ms"]),
        ("highest sustained deliveries/s", lambda r: f"{r['sat_best_per_s']:,}"),
    ):
        print(f"| {label} | {pick(rows[0])} | {pick(rows[1])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
