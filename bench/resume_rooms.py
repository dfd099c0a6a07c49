"""How long a resume of many missed messages across many rooms takes (issue 10).

Starts the real server (durable SQLite history, the default) in a temporary
data directory, puts a reader in ``--rooms`` rooms, disconnects it, writes
``--missed`` messages round-robin into those rooms and as many into as many
rooms the reader is not in (noise the resume must skip), then reconnects the
reader with ``resume_from`` (or, with ``--per-conversation``, ``resume`` naming
each room, as the clients do) and times the replay from ``hello`` to its last
message. Prints the numbers; asserts nothing.

    .venv/bin/python bench/resume_rooms.py [--missed 10000] [--rooms 50] [--noise 10000]
        [--per-conversation]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import JsonClient, ServerProcess  # noqa: E402


async def fill(client: JsonClient, rooms: list[str], count: int, tag: str) -> None:
    """Send ``count`` messages round-robin over ``rooms``, pipelined, and wait for every ack."""
    window = 200
    sent = acked = 0
    while acked < count:
        while sent < count and sent - acked < window:
            room = rooms[sent % len(rooms)]
            await client.send({"type": "say", "room": room, "text": f"{tag} {sent}"})
            sent += 1
        event = await client.recv(30)
        if event["type"] == "ack":
            acked += 1
        elif event["type"] == "error":
            raise RuntimeError(event)


async def run_once(
    missed: int, rooms: int, noise_count: int, per_conversation: bool = False
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), "--rate-limit", "0", "--room-creations", "0").start()
        try:
            mine = [f"#sala{i}" for i in range(rooms)]
            noise = [f"#outra{i}" for i in range(rooms)]
            reader = await JsonClient.open(server.url, "leitor", password="segredo")
            writer = await JsonClient.open(server.url, "escritor")
            other = await JsonClient.open(server.url, "outro")
            for room in mine:
                await reader.send({"type": "join", "room": room})
                await writer.send({"type": "join", "room": room})
            for room in noise:
                await other.send({"type": "join", "room": room})
            for client in (writer, other):
                await client.send({"type": "rooms"})
                await client.expect("rooms", timeout=30)
            await reader.send({"type": "rooms"})
            await reader.expect("rooms", timeout=30)
            token = reader.welcome["token"]
            last = reader.welcome["last_id"]
            await reader.close()
            started = time.perf_counter()
            await fill(writer, mine, missed, "mine")
            await fill(other, noise, noise_count, "noise")
            filled = time.perf_counter() - started

            client = await JsonClient.open(server.url)
            started = time.perf_counter()
            hello: dict[str, Any] = {"type": "hello", "name": "leitor", "token": token}
            hello["resume_from"] = last
            if per_conversation:
                hello["resume"] = dict.fromkeys(mine, last)
            await client.send(hello)
            got = 0
            ids: dict[str, list[int]] = {}
            while got < missed:
                raw = await asyncio.wait_for(client.ws.recv(), 30)
                event = json.loads(raw)
                if event["type"] == "message":
                    got += 1
                    ids.setdefault(event["room"], []).append(event["id"])
            replay = time.perf_counter() - started
            for room_ids in ids.values():  # the order across rooms is not promised
                assert room_ids == sorted(set(room_ids)), "out of order or duplicated"
            await client.close()
            await writer.close()
            await other.close()
            return {"fill_s": filled, "replay_s": replay, "messages": got}
        finally:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--missed", type=int, default=10_000)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument(
        "--noise",
        type=int,
        default=10_000,
        help="messages in other rooms after them (over 20 000 in all: the replay reads SQLite, "
        "not the in-memory ring)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--per-conversation", action="store_true", help="resume with `resume` naming each room"
    )
    args = parser.parse_args()
    print(
        f"resume of {args.missed} missed messages across {args.rooms} rooms "
        f"(+{args.noise} in {args.rooms} rooms the reader is not in), SQLite, one process, "
        + ("per conversation (resume)" if args.per_conversation else "resume_from")
    )
    for run in range(args.runs):
        result = asyncio.run(run_once(args.missed, args.rooms, args.noise, args.per_conversation))
        rate = result["messages"] / result["replay_s"]
        print(
            f"run {run + 1}: replay {result['replay_s'] * 1000:.0f} ms "
            f"({rate:,.0f} messages/s to one client), filling took {result['fill_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
