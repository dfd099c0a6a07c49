"""The proof: clients keep talking while the server is SIGKILLed again and again.

Every client is the real client library (papo.client_session.ChatSession, the one the
terminal client uses): it reconnects with backoff, resumes each conversation
from the last id it saw in it (``resume``, and ``resume_from``) and re-sends
unacknowledged messages under the same cid. At the end, for every user, what
it received must be exactly the stored messages it may see (public ones and
private ones to it, not its own), each conversation in id order, with no
duplicate; and every message every client sent must be stored exactly once.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3

from papo.client_session import ChatSession
from papo.protocol import Hello, Message
from tests.helpers import ServerProcess

CLIENTS = 6
MESSAGES_EACH = 120
KILLS = 3
SPAN = 5.0  # seconds over which each client sends its messages


async def test_720_messages_6_clients_3_sigkills_no_gap_no_duplicate(
    server: ServerProcess,
) -> None:
    assert CLIENTS * MESSAGES_EACH == 720
    rng = random.Random(20261122)
    names = [f"u{i}" for i in range(CLIENTS)]
    sessions = []

    for name in names:
        session = ChatSession(server.url, max_backoff=1.0)
        await session.connect()
        await session.join(Hello(name))
        sessions.append(session)
    received: dict[str, list[Message]] = {name: [] for name in names}

    async def read(name: str, session: ChatSession) -> None:
        async for event in session.events():
            if isinstance(event, Message):
                received[name].append(event)

    async def write(name: str, session: ChatSession) -> None:
        for i in range(MESSAGES_EACH):
            private = rng.random() < 0.25
            to = rng.choice([n for n in names if n != name]) if private else None
            await session.say(f"{name}#{i}", to)
            await asyncio.sleep(rng.uniform(0.5, 1.5) * SPAN / MESSAGES_EACH)

    readers = [asyncio.create_task(read(n, s)) for n, s in zip(names, sessions, strict=True)]
    writers = [asyncio.create_task(write(n, s)) for n, s in zip(names, sessions, strict=True)]
    started = asyncio.get_running_loop().time()
    mid_traffic = 0
    for k in range(KILLS):  # spread over the first 3/4 of the traffic, at random points
        at = started + SPAN * 0.75 * (k + rng.uniform(0.3, 0.9)) / KILLS
        await asyncio.sleep(max(0.0, at - asyncio.get_running_loop().time()))
        mid_traffic += not all(w.done() for w in writers)
        await asyncio.to_thread(server.restart)  # SIGKILL, then start on the same port
    await asyncio.gather(*writers)
    # The first kill comes about a second into five of traffic; later ones may
    # land after it on a slow machine (restarts take time), which weakens the
    # run but does not make it wrong.
    assert mid_traffic >= 1, "no kill landed while clients were sending"
    for session in sessions:
        assert await session.wait_acked(30), f"{len(session.unacked)} never acknowledged"

    db = sqlite3.connect(server.data_dir / "papo.db")
    rows = db.execute(
        "SELECT id, sender_key, text, recipient_key FROM messages ORDER BY id"
    ).fetchall()
    expected = {
        name: [row[0] for row in rows if row[1] != name and (row[3] is None or row[3] == name)]
        for name in names
    }
    # wait (on the condition, with a deadline) for the last deliveries
    deadline = asyncio.get_running_loop().time() + 30
    while any(len(received[n]) < len(expected[n]) for n in names):
        assert asyncio.get_running_loop().time() < deadline, "deliveries missing"
        await asyncio.sleep(0.05)
    for session in sessions:
        await session.close()
    await asyncio.gather(*readers)

    # every message sent is stored exactly once
    sent = sorted(f"{n}#{i}" for n in names for i in range(MESSAGES_EACH))
    assert sorted(text for _, _, text, _ in rows) == sent
    # every acknowledged id is stored
    stored_ids = {row[0] for row in rows}
    for session in sessions:
        assert session.own_ids <= stored_ids
    # each user received exactly what it may see, once, each conversation in id order
    # (a resume replays conversation by conversation: the order across them is not promised)
    conv_of = {
        row[0]: "#geral" if row[3] is None else "@" + "|".join(sorted(row[1::2])) for row in rows
    }
    for name in names:
        got = [m.id for m in received[name]]
        assert len(set(got)) == len(got), f"{name}: a duplicate"
        assert sorted(got) == expected[name], (
            f"{name}: {len(got)} received, {len(expected[name])} expected"
        )
        for conv in set(conv_of.values()):
            in_conv = [i for i in got if conv_of[i] == conv]
            assert in_conv == sorted(in_conv), f"{name}: {conv} out of order"
    # Every client lived through the kills. How many times each reconnected
    # depends on scheduling (a client still backing off after one kill may
    # first reach the server after the next), so only "at least once" is certain.
    reconnects = {name: s.reconnects for name, s in zip(names, sessions, strict=True)}
    assert all(count >= 1 for count in reconnects.values()), reconnects
    total = len(rows)
    print(f"{CLIENTS} clients, {total} messages, {KILLS} SIGKILLs: no gap, no duplicate")
