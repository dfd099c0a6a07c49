"""Data directories from before: the server brings them to what papo keeps today, once.

From before rooms, messages move into conversations. From before name keys
folded accents, every stored key is made again (:mod:`papo.sqlite_keys`):
``joão`` and ``joao`` become one account (the older), ``#ação`` and ``#acao``
one room, and everything else is found under the new keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from papo.accounts import check_password, hash_password
from papo.protocol import Conversation, Hello, History, Say
from papo.store_sqlite import SqliteStore
from tests.conftest import StartServer
from tests.fakes import FakeLink, connect, make_hub
from tests.fakes import link as fake
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


# ------------------------------------------------------------------ name keys folding accents

# The tables as papo wrote them before name keys folded accents (commit 0ec6bd4):
# keys were NFKC + casefold, so `joão` and `joao` were two accounts, `#ação`
# and `#acao` two rooms.
KEYS_BEFORE_ACCENTS = """
CREATE TABLE accounts (key TEXT PRIMARY KEY, name TEXT NOT NULL, password_hash BLOB,
    created REAL NOT NULL, last_seen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE revoked_tokens (token_id TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE messages (id INTEGER PRIMARY KEY, sender TEXT NOT NULL, sender_key TEXT NOT NULL,
    text TEXT NOT NULL, ts TEXT NOT NULL, recipient TEXT, recipient_key TEXT, cid TEXT,
    conv TEXT, room TEXT);
CREATE INDEX messages_recipient ON messages (recipient_key, id) WHERE recipient_key IS NOT NULL;
CREATE INDEX messages_conv ON messages (conv, id);
CREATE TABLE rooms (key TEXT PRIMARY KEY, name TEXT NOT NULL, topic TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '', created REAL NOT NULL DEFAULT 0);
CREATE TABLE members (room TEXT NOT NULL, user_key TEXT NOT NULL, user_name TEXT NOT NULL,
    PRIMARY KEY (room, user_key)) WITHOUT ROWID;
CREATE TABLE read_markers (user_key TEXT NOT NULL, conv TEXT NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY (user_key, conv)) WITHOUT ROWID;
CREATE TABLE directs (conv TEXT PRIMARY KEY, a_key TEXT NOT NULL, a_name TEXT NOT NULL,
    b_key TEXT NOT NULL, b_name TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE trims (conv TEXT PRIMARY KEY, oldest INTEGER NOT NULL) WITHOUT ROWID;
"""
OLDER_PASSWORD, NEWER_PASSWORD = "senha-do-joão", "senha-do-joao"
SECRET = b"s" * 32


def keys_before_accents(path: Path) -> None:
    """A data directory as papo wrote it before accents were folded, by hand.

    ``João`` (key ``joão``) signed up first, ``joao`` (key ``joao``) later, both
    with passwords; each has a direct conversation with ``maria`` and one with
    the other; rooms ``#ação`` (older) and ``#acao`` each have members,
    messages and read markers.
    """
    path.mkdir(parents=True)
    (path / "secret").write_bytes(SECRET)
    db = sqlite3.connect(path / "papo.db")
    db.executescript(KEYS_BEFORE_ACCENTS)
    db.executemany(
        "INSERT INTO accounts VALUES (?, ?, ?, ?, ?)",
        [
            ("maria", "maria", None, 50.0, 0),
            ("joão", "João", hash_password(OLDER_PASSWORD), 100.0, 3),
            ("joao", "joao", hash_password(NEWER_PASSWORD), 200.0, 6),
        ],
    )
    db.executemany(
        "INSERT INTO rooms VALUES (?, ?, ?, ?, ?)",
        [
            ("#geral", "#geral", "", "", 0.0),
            ("#acao", "#acao", "", "joao", 20.0),
            ("#ação", "#ação", "ação, ação", "João", 10.0),
        ],
    )
    ts = "2026-11-20T10:00:00.000Z"
    db.executemany(
        "INSERT INTO messages (id, sender, sender_key, text, ts, recipient, recipient_key, cid, "
        "room, conv) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (1, "João", "joão", "bom dia", ts, None, None, "c1", "#geral", "#geral"),
            (2, "maria", "maria", "oi João", ts, "João", "joão", None, None, "@joão|maria"),
            (3, "João", "joão", "na sala", ts, None, None, None, "#ação", "#ação"),
            (4, "joao", "joao", "sou o outro", ts, "maria", "maria", None, None, "@joao|maria"),
            (5, "maria", "maria", "oi joao", ts, "joao", "joao", None, None, "@joao|maria"),
            (6, "joao", "joao", "na outra sala", ts, None, None, "c6", "#acao", "#acao"),
            (7, "João", "joão", "e você?", ts, "joao", "joao", None, None, "@joao|joão"),
        ],
    )
    db.executemany(
        "INSERT INTO members VALUES (?, ?, ?)",
        [
            ("#geral", "joão", "João"),
            ("#geral", "joao", "joao"),
            ("#geral", "maria", "maria"),
            ("#ação", "joão", "João"),
            ("#ação", "maria", "maria"),
            ("#acao", "joao", "joao"),
            ("#acao", "maria", "maria"),
        ],
    )
    db.executemany(
        "INSERT INTO read_markers VALUES (?, ?, ?)",
        [
            ("joão", "#geral", 1),
            ("joão", "#ação", 3),
            ("joão", "@joão|maria", 2),
            ("joão", "@joao|joão", 7),
            ("maria", "#ação", 3),
            ("maria", "#acao", 6),
            ("maria", "@joão|maria", 2),
            ("maria", "@joao|maria", 5),
            ("joao", "#acao", 6),
            ("joao", "@joao|maria", 5),
        ],
    )
    db.executemany(
        "INSERT INTO directs VALUES (?, ?, ?, ?, ?)",
        [
            ("@joão|maria", "maria", "maria", "joão", "João"),
            ("@joao|maria", "joao", "joao", "maria", "maria"),
            ("@joao|joão", "joão", "João", "joao", "joao"),
        ],
    )
    db.executemany(
        "INSERT INTO trims VALUES (?, ?)", [("#ação", 2), ("#acao", 5), ("@joão|maria", 1)]
    )
    db.commit()
    db.close()


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path / "papo.db")
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def collisions(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "one name now" in r.getMessage()
            or "one room now" in r.getMessage()]  # fmt: skip


async def test_keys_made_before_accents_were_folded_are_made_again_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    keys_before_accents(data)
    caplog.set_level(logging.INFO)
    hub = await make_hub(data)
    store = hub.store
    assert isinstance(store, SqliteStore)

    # the older account keeps the name, with its password; the newer is set aside
    account = await store.get_account("joao")
    assert account is not None and account.name == "João" and account.created == 100.0
    assert account.password_hash is not None
    assert check_password(OLDER_PASSWORD, account.password_hash)
    assert await store.get_account("joão") is None
    assert rows(data, "SELECT key, name, kept FROM accounts_set_aside") == [
        ("joao", "joao", "João")
    ]
    logged = collisions(caplog)
    assert len(logged) == 2, logged
    assert "'João' and 'joao' are one name now" in logged[0]
    assert "'#ação' and '#acao' are one room now" in logged[1]
    assert sum("name keys made again" in r.getMessage() for r in caplog.records) == 1

    # ids unchanged; the rooms are one, the older's name; the set-aside account's
    # private conversations are not the older account's
    assert rows(data, "SELECT id, sender_key, recipient_key, conv, room FROM messages") == [
        (1, "joao", None, "#geral", "#geral"),
        (2, "maria", "joao", "@joao|maria", None),
        (3, "joao", None, "#acao", "#ação"),
        (4, "~joao", "maria", "@maria|~joao", None),
        (5, "maria", "~joao", "@maria|~joao", None),
        (6, "~joao", None, "#acao", "#ação"),
        (7, "joao", "~joao", "@joao|~joao", None),
    ]
    assert rows(data, "SELECT key, name, topic FROM rooms ORDER BY key") == [
        ("#acao", "#ação", "ação, ação"),
        ("#geral", "#geral", ""),
    ]
    assert rows(data, "SELECT conv, oldest FROM trims ORDER BY conv") == [
        ("#acao", 5),
        ("@joao|maria", 1),
    ]
    assert sorted(rows(data, "SELECT * FROM read_markers")) == [
        ("joao", "#acao", 3),
        ("joao", "#geral", 1),
        ("joao", "@joao|maria", 2),
        ("maria", "#acao", 3),  # two rooms became one: the lower marker
        ("maria", "@joao|maria", 2),
    ]

    # over the hub: the older account with its password, rooms and conversations
    link = FakeLink()
    joao = hub.attach(link)
    await hub.handle(joao, Hello("joao", password=NEWER_PASSWORD))
    assert [e["code"] for e in link.of("error")] == [
        "name_merged"
    ]  # its own password: told why, not "wrong password"
    await hub.handle(joao, Hello("JOAO", password=OLDER_PASSWORD))
    await hub.settle()
    welcome = link.of("welcome")[0]
    assert welcome["name"] == "João" and welcome["protected"] is True
    assert {r["room"] for r in welcome["rooms"]} == {"#geral", "#ação"}
    assert [d["with"] for d in welcome["direct"]] == ["maria"]
    await hub.handle(joao, History(Conversation(with_="maria")))
    await hub.handle(joao, History(Conversation(room="#acao")))
    await hub.settle()
    pages = [[m["id"] for m in page["messages"]] for page in link.of("history")]
    assert pages == [[2], [3, 6]]
    maria = await connect(hub, "maria")
    await hub.handle(maria, Say("oi de novo", to="joao"))
    await hub.settle()
    assert [a["id"] for a in fake(maria).of("ack")] == [8]  # the ids go on
    assert [m["text"] for m in link.of("message")] == ["oi de novo"]
    await store.close()

    # a second open neither migrates nor logs again
    caplog.clear()
    again = SqliteStore(data)
    await again.open()
    assert collisions(caplog) == []
    assert not any("name keys made again" in r.getMessage() for r in caplog.records)
    assert (await again.get_account("joao")) == account
    await again.close()


def token_before(key: str) -> str:
    """A session token for ``key`` as papo issued them before name keys folded accents."""
    claims = {"sub": key, "exp": int(time.time()) + 3600, "jti": secrets.token_hex(12)}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    signature = hmac.new(SECRET, body.encode(), hashlib.sha256).digest()
    return f"v1.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


async def test_tokens_from_before_still_work_for_their_own_account_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    keys_before_accents(data)
    hub = await make_hub(data)
    # A token from before devices is exchanged for a device's at its first use (and
    # then refused), so each join here has a token of its own, minted for that key.
    for name, token_key, outcome in [
        ("João", "joão", "welcome"),
        ("joao", "joão", "welcome"),
        ("joao", "joao", "error"),  # the set-aside account's token is not the older's
        ("João", "joao", "error"),
        ("maria", "maria", "welcome"),
        ("joao", "maria", "error"),
    ]:
        link = FakeLink()
        session = hub.attach(link)
        await hub.handle(session, Hello(name, token=token_before(token_key)))
        await hub.settle()
        sent = [e for e in link.take() if e["type"] in ("welcome", "error")]
        assert sent[0]["type"] == outcome, (name, sent)
        if outcome == "error":
            assert sent[0]["code"] == "bad_token"
        else:
            assert sent[0]["name"] == ("maria" if name == "maria" else "João")
    await hub.store.close()


async def test_the_server_starts_on_keys_made_before_accents_were_folded(
    start_server: StartServer, tmp_path: Path
) -> None:
    keys_before_accents(tmp_path / "data")
    server = start_server("--rate-limit", "0")
    assert server.logged("'João' and 'joao' are one name now")
    joao = await JsonClient.open(server.url, "joao", password=OLDER_PASSWORD)
    assert joao.welcome["name"] == "João"
    assert [d["with"] for d in joao.welcome["direct"]] == ["maria"]
    other = await JsonClient.open(server.url)
    await other.send({"type": "hello", "name": "joão", "password": NEWER_PASSWORD})
    assert (await other.expect("error"))["code"] == "bad_password"
    # The set-aside account's owner, with its own name and password, is told why.
    await other.send({"type": "hello", "name": "joao", "password": NEWER_PASSWORD})
    merged = await other.expect("error")
    assert merged["code"] == "name_merged"
    assert "one name now" in merged["message"] and "choose another name" in merged["message"]
    await other.send({"type": "hello", "name": "zé", "password": NEWER_PASSWORD})
    assert (await other.expect("welcome"))["name"] == "zé"  # the newer owner chooses again
    assert (await other.say("oi", to="JOAO"))["type"] == "ack"
    seen: list[str] = []  # the recent history first, then the new message
    while "oi" not in seen:
        seen.append((await joao.expect("message"))["text"])
    assert "sou o outro" not in seen  # the set-aside account's private messages stay apart
    await joao.close()
    await other.close()
    server.restart()
    assert sum("are one name now" in line for line in server.log) == 1
