"""The SQLite store's tables, the migration from before rooms, and rows as messages.

One file of SQL so the store module reads as what it does, not how the rows
look. ``messages.conv`` is the conversation (a room's key, or ``@a|b`` for the
direct messages of two users), indexed with ``id`` so that a history page, an
unread count and a resume over a user's conversations are one indexed query
each.

``meta`` records versions of how the data is kept (``name_keys``: the rule
that made the stored name keys, see :mod:`papo.sqlite_keys`);
``accounts_set_aside`` keeps the accounts that lost their name when two
became one under a new rule (the newer of the two), for an operator to see.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable

from papo.store_records import Stored

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash BLOB,
    created REAL NOT NULL,
    last_seen INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    token_id TEXT PRIMARY KEY,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    text TEXT NOT NULL,
    ts TEXT NOT NULL,
    recipient TEXT,
    recipient_key TEXT,
    cid TEXT
);
CREATE INDEX IF NOT EXISTS messages_recipient ON messages (recipient_key, id)
    WHERE recipient_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS rooms (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    topic TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS members (
    room TEXT NOT NULL,
    user_key TEXT NOT NULL,
    user_name TEXT NOT NULL,
    PRIMARY KEY (room, user_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS read_markers (
    user_key TEXT NOT NULL,
    conv TEXT NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (user_key, conv)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS directs (
    conv TEXT PRIMARY KEY,
    a_key TEXT NOT NULL,
    a_name TEXT NOT NULL,
    b_key TEXT NOT NULL,
    b_name TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS online (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trims (
    conv TEXT PRIMARY KEY,
    oldest INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts_set_aside (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash BLOB,
    created REAL NOT NULL,
    last_seen INTEGER NOT NULL DEFAULT 0,
    kept TEXT NOT NULL,
    set_aside REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    user_key TEXT NOT NULL,
    gen INTEGER NOT NULL,
    used INTEGER NOT NULL,
    prev INTEGER NOT NULL,
    superseded_at REAL NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    address TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS devices_user ON devices (user_key);
CREATE TABLE IF NOT EXISTS health (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checked REAL NOT NULL
);
"""

DEVICE_COLUMNS = (
    "id, user_key, gen, used, prev, superseded_at, first_seen, last_seen, address, expires"
)

# Before rooms, messages had no conversation: public ones were the one room's.
MIGRATE_CONVERSATIONS = """
ALTER TABLE messages ADD COLUMN conv TEXT;
ALTER TABLE messages ADD COLUMN room TEXT;
UPDATE messages SET conv = :room_key, room = :room WHERE recipient_key IS NULL;
UPDATE messages SET conv = '@' || min(sender_key, recipient_key) || '|' || max(sender_key, recipient_key)
    WHERE recipient_key IS NOT NULL;
INSERT OR IGNORE INTO directs (conv, a_key, a_name, b_key, b_name)
    SELECT conv, sender_key, sender, recipient_key, recipient FROM messages
    WHERE recipient_key IS NOT NULL GROUP BY conv;
"""

CONV_INDEX = "CREATE INDEX IF NOT EXISTS messages_conv ON messages (conv, id)"

# The last four (edits and deletions) are added by papo.store_lifecycle.prepare_lifecycle.
COLUMNS = (
    "id, sender, sender_key, text, ts, recipient, recipient_key, cid, room, conv, "
    "kind, target, edited_ts, by_name"
)


_NAMES = [name.strip() for name in COLUMNS.split(",")]
#: Where a row has the values a message often leaves empty: recipient, recipient_key,
#: cid, room, edited_ts, by_name.
_OPTIONAL = (5, 6, 7, 8, 12, 13)

Row = tuple[object, ...]


def stored_to_row(m: Stored) -> Row:
    """A message as the values of ``COLUMNS``."""
    return (
        m.id, m.sender, m.sender_key, m.text, m.ts, m.to, m.to_key, m.cid, m.room, m.conv,
        m.kind, m.target, m.edited_ts, m.by,
    )  # fmt: skip


def inserts(messages: Iterable[Stored]) -> list[tuple[str, list[Row]]]:
    """The ``INSERT`` statements that store ``messages``, each with its rows: one per set of
    columns the rows leave empty, which it does not name (they are NULL all the same).

    Binding None costs the ``sqlite3`` module a failed adapter lookup (an
    ``AttributeError`` made and dropped) per value: five for a room message,
    a third of its insert.
    """
    groups: dict[int, list[Row]] = {}
    for message in messages:
        row = stored_to_row(message)
        empty = (  # a bit per _OPTIONAL index, in its order
            (row[5] is None)
            | (row[6] is None) << 1
            | (row[7] is None) << 2
            | (row[8] is None) << 3
            | (row[12] is None) << 4
            | (row[13] is None) << 5
        )
        rows = groups.get(empty)
        if rows is None:
            rows = groups[empty] = []
        rows.append(row)
    out = []
    for empty, rows in groups.items():
        statement, named = _insert(empty)
        out.append((statement, [named(row) for row in rows]))
    return out


@functools.cache
def _insert(empty: int) -> tuple[str, Callable[[Row], Row]]:
    """The statement for rows whose ``_OPTIONAL`` values in ``empty`` (bits) are None,
    and what picks the others out of a row."""
    left_out = {index for bit, index in enumerate(_OPTIONAL) if empty >> bit & 1}
    kept = [index for index in range(len(_NAMES)) if index not in left_out]
    columns = ", ".join(_NAMES[index] for index in kept)
    statement = f"INSERT INTO messages ({columns}) VALUES ({', '.join('?' * len(kept))})"
    return statement, operator.itemgetter(*kept)


def row_to_stored(row: tuple[object, ...]) -> Stored:
    id_, sender, sender_key, text, ts, to, to_key, cid, room, conv, *lifecycle = row
    kind, target, edited_ts, by = lifecycle
    return Stored(
        int(id_),  # type: ignore[call-overload]
        str(sender),
        str(sender_key),
        str(text),
        str(ts),
        None if to is None else str(to),
        None if to_key is None else str(to_key),
        None if cid is None else str(cid),
        None if room is None else str(room),
        str(conv),
        kind=str(kind),
        target=int(target),  # type: ignore[call-overload]
        edited_ts=None if edited_ts is None else str(edited_ts),
        by=None if by is None else str(by),
    )
