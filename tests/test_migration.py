"""A data directory from before rooms: the server moves its messages into conversations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import StartServer
from tests.helpers import JsonClient

# The schema papo had before rooms (commit a702407), and some history in it.
OLD_SCHEMA = """
CREATE TABLE accounts (key TEXT PRIMARY KEY, name TEXT NOT NULL, password_hash BLOB,
    created REAL NOT NULL, last_seen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE revoked_tokens (token_id TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE messages (id INTEGER PRIMARY KEY, sender TEXT NOT NULL, sender_key TEXT NOT NULL,
    text TEXT NOT NULL, ts TEXT NOT NULL, recipient TEXT, recipient_key TEXT, cid TEXT);
CREATE INDEX messages_recipient ON messages (recipient_key, id) WHERE recipient_key IS NOT NULL;
"""


def old_data_dir(path: Path) -> None:
    path.mkdir(parents=True)
    db = sqlite3.connect(path / "papo.db")
    db.executescript(OLD_SCHEMA)
    ts = "2026-11-20T10:00:00.000Z"
    for name in ("João", "maria"):
        db.execute(
            "INSERT INTO accounts (key, name, created) VALUES (?, ?, 0)", (name.casefold(), name)
        )
    rows = [
        (1, "João", "joão", "bom dia", ts, None, None, "c1"),
        (2, "maria", "maria", "psiu", ts, "João", "joão", None),
        (3, "João", "joão", "oi maria", ts, "maria", "maria", None),
        (4, "maria", "maria", "tchau", ts, None, None, None),
    ]
    db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()


async def test_history_from_before_rooms_lands_in_geral_and_direct_conversations(
    start_server: StartServer, tmp_path: Path
) -> None:
    old_data_dir(tmp_path / "data")
    server = start_server("--rate-limit", "0")
    assert server.logged("messages moved into conversations")
    joao = await JsonClient.open(server.url, "JOÃO", resume_from=0)
    assert joao.welcome["last_id"] == 4
    assert [r["room"] for r in joao.welcome["rooms"]] == ["#geral"]
    assert joao.welcome["direct"] == [{"with": "maria", "unread": 1, "last_read": 0}]
    replay = [await joao.expect("message") for _ in range(4)]
    assert [(m["id"], m.get("room"), m.get("to")) for m in replay] == [
        (1, "#geral", None),
        (2, None, "João"),
        (3, None, "maria"),
        (4, "#geral", None),
    ]
    await joao.send({"type": "history", "with": "maria"})
    page = await joao.expect("history")
    assert [m["text"] for m in page["messages"]] == ["psiu", "oi maria"]
    await joao.send({"type": "history", "room": "#geral"})
    page = await joao.expect("history")
    assert [m["text"] for m in page["messages"]] == ["bom dia", "tchau"]
    # and new messages continue the ids
    assert (await joao.say("depois"))["id"] == 5
    await joao.close()
    # a second start does not migrate again
    server.restart()
    assert sum("messages moved into conversations" in line for line in server.log) == 1
