"""Moving a SQLite data directory to today's name keys, once.

Name keys (:func:`papo.names.name_key`) decide who is who, and the store
keeps them everywhere: accounts, message senders and recipients,
conversations (``#room`` and ``@a|b``), rooms, members, read markers, direct
conversations, trims. When the rule that makes them changes (accents became
folded: ``joao`` and ``joão`` are now one name), every stored key is made
again by the new rule, in one transaction, and the rule's version is
recorded in the ``meta`` table so that it happens once.

Today's key of an old key is ``name_key(old)``: the rule is idempotent and
maps a key of the rule before to the key of the same name today
(``name_key(legacy_key(x)) == name_key(x)``), so each stored key is
recomputed on its own, with no need to trust the display names next to it.

When keys of two accounts fall together, the older account (created
earliest) keeps the name; the newer is set aside (moved to
``accounts_set_aside``), and its owner must choose a name again: a hello with
that name now reaches the older account, which asks for its own password.
What was the newer account's (its direct messages, memberships and read
markers) is not merged into the older one, whose owner is another person:
its keys become ``~`` and the old key (no name can hold ``~``, so no one can
join as it), its memberships, markers and direct conversations are dropped,
and its messages stay on disk, out of everyone's reach. Rooms whose keys fall
together are merged into the older room (members, markers and messages of
both; message ids do not change). Each collision is logged once.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from papo.names import (
    DIRECT_PREFIX,
    DIRECT_SEPARATOR,
    KEY_RULE,
    ROOM_PREFIX,
    direct_key,
    name_key,
    room_key,
)

log = logging.getLogger(__name__)

SET_ASIDE_PREFIX = "~"


def migrate_keys(db: sqlite3.Connection, path: Path) -> bool:
    """Bring the keys in ``db`` to rule :data:`KEY_RULE`, once; True if this run did it.

    ``db`` is in autocommit mode; the whole move is one ``BEGIN IMMEDIATE``
    transaction, so a crash leaves the data as it was and the next start
    tries again.
    """
    if _version(db) == KEY_RULE:
        return False
    db.execute("BEGIN IMMEDIATE")
    try:
        if _version(db) == KEY_RULE:  # another process did it while we waited
            db.execute("ROLLBACK")
            return False
        changed = _Rekey(db, path).run()
        db.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('name_keys', ?)", (str(KEY_RULE),)
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if changed:
        log.info("store %s: name keys made again by rule %d (accents folded)", path, KEY_RULE)
    return True


def _version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE name = 'name_keys'").fetchone()
    return 1 if row is None else int(row[0])


@dataclass
class _Rekey:
    """One run of the move: the old keys' new keys, then every table rewritten."""

    db: sqlite3.Connection
    path: Path
    #: old user key → set-aside key, for accounts that lost their name
    set_aside: dict[str, str] = field(default_factory=dict)
    #: new room key → the display name of the room that kept it
    room_names: dict[str, str] = field(default_factory=dict)
    changed: bool = False

    def user(self, key: str) -> str:
        """Today's key of the user keyed ``key`` before (set aside: ``~`` and the old key)."""
        return self.set_aside.get(key) or name_key(key)

    def conv(self, conv: str) -> str:
        """Today's key of a conversation: a room's, or the direct one of two users."""
        if conv.startswith(ROOM_PREFIX):
            return room_key(conv)
        if conv.startswith(DIRECT_PREFIX):
            a, _, b = conv.removeprefix(DIRECT_PREFIX).partition(DIRECT_SEPARATOR)
            return direct_key(self.user(a), self.user(b))
        return conv

    def run(self) -> bool:
        self.accounts()
        self.rooms()
        self.messages()
        self.members()
        self.read_markers()
        self.directs()
        self.trims()
        return self.changed

    def accounts(self) -> None:
        rows = self.db.execute(
            "SELECT key, name, password_hash, created, last_seen FROM accounts "
            "ORDER BY created, key"
        ).fetchall()
        kept: dict[str, tuple[str, str]] = {}  # new key → (old key, name) of the older account
        for key, name, password_hash, created, last_seen in rows:
            new = name_key(key)
            if new not in kept:
                kept[new] = (key, name)
                continue
            _older_key, older = kept[new]
            self.set_aside[key] = SET_ASIDE_PREFIX + key
            self.db.execute(
                "INSERT OR REPLACE INTO accounts_set_aside "
                "(key, name, password_hash, created, last_seen, kept, set_aside) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, name, password_hash, created, last_seen, older, time.time()),
            )
            self.db.execute("DELETE FROM accounts WHERE key = ?", (key,))
            log.warning(
                "store %s: the accounts %r and %r are one name now (accents, case and "
                "compatibility forms no longer count); %r, the older, keeps it; %r is set "
                "aside (table accounts_set_aside) and its owner must choose another name",
                self.path, older, name, older, name,
            )  # fmt: skip
        for new, (key, _name) in kept.items():
            if new != key:
                self.db.execute("UPDATE accounts SET key = ? WHERE key = ?", (new, key))
                self.changed = True
        self.changed = self.changed or bool(self.set_aside)

    def rooms(self) -> None:
        rows = self.db.execute(
            "SELECT key, name, topic, created_by, created FROM rooms ORDER BY created, key"
        ).fetchall()
        kept: dict[str, tuple[str, str, str, str, float]] = {}  # new key → the older room
        for key, name, topic, created_by, created in rows:
            new = room_key(key)
            older = kept.get(new)
            if older is None:
                kept[new] = (key, name, topic, created_by, created)
                continue
            if not older[2]:  # the older room keeps its topic, or takes this one's
                kept[new] = (older[0], older[1], topic, older[3], older[4])
            log.warning(
                "store %s: the rooms %r and %r are one room now; %r, the older, keeps "
                "the members and messages of both",
                self.path, older[1], name, older[1],
            )  # fmt: skip
        self.room_names = {new: room[1] for new, room in kept.items()}
        old = [tuple(row) for row in rows]
        rewritten = [(new, *room[1:]) for new, room in kept.items()]
        self._rewrite("rooms", "key, name, topic, created_by, created", old, rewritten)

    def messages(self) -> None:
        def user(key: str | None) -> str | None:
            return None if key is None else self.user(key)

        def conv(key: str | None) -> str | None:
            return None if key is None else self.conv(key)

        def room(key: str | None, name: str | None) -> str | None:
            if key is None or name is None:
                return name
            return self.room_names.get(self.conv(key), name)

        def moved(sender_key: str | None, recipient_key: str | None, key: str | None) -> int:
            return int(
                user(sender_key) != sender_key
                or user(recipient_key) != recipient_key
                or conv(key) != key
            )

        db = self.db
        db.create_function("papo_moved", 3, moved, deterministic=True)
        db.create_function("papo_user", 1, user, deterministic=True)
        db.create_function("papo_conv", 1, conv, deterministic=True)
        db.create_function("papo_room", 2, room, deterministic=True)
        cursor = db.execute(
            "UPDATE messages SET sender_key = papo_user(sender_key), "
            "recipient_key = papo_user(recipient_key), room = papo_room(conv, room), "
            "conv = papo_conv(conv) "
            "WHERE papo_moved(sender_key, recipient_key, conv) OR papo_room(conv, room) IS NOT room"
        )
        self.changed = self.changed or cursor.rowcount > 0

    def _rewrite(
        self,
        table: str,
        columns: str,
        old: Sequence[tuple[object, ...]],
        new: Sequence[tuple[object, ...]],
    ) -> None:
        if sorted(old, key=repr) == sorted(new, key=repr):
            return
        self.changed = True
        self.db.execute(f"DELETE FROM {table}")
        marks = ", ".join("?" * (columns.count(",") + 1))
        self.db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", new)

    def _gone(self, key: str) -> bool:
        return key.startswith(SET_ASIDE_PREFIX)

    def _gone_conv(self, conv: str) -> bool:
        if not conv.startswith(DIRECT_PREFIX):
            return False
        a, _, b = conv.removeprefix(DIRECT_PREFIX).partition(DIRECT_SEPARATOR)
        return self._gone(a) or self._gone(b)

    def members(self) -> None:
        old = self.db.execute("SELECT room, user_key, user_name FROM members").fetchall()
        new: dict[tuple[str, str], tuple[object, ...]] = {}
        for room, user_key, user_name in old:
            key = self.user(user_key)
            if not self._gone(key):
                new.setdefault((room_key(room), key), (room_key(room), key, user_name))
        self._rewrite("members", "room, user_key, user_name", old, list(new.values()))

    def read_markers(self) -> None:
        old = self.db.execute("SELECT user_key, conv, id FROM read_markers").fetchall()
        new: dict[tuple[str, str], int] = {}
        for user_key, conv, message_id in old:
            key, where = self.user(user_key), self.conv(conv)
            if self._gone(key) or self._gone_conv(where):
                continue
            # two conversations became one: the lower marker, so nothing unread is lost
            new[key, where] = min(new.get((key, where), message_id), message_id)
        rows: list[tuple[object, ...]] = [(k, c, i) for (k, c), i in new.items()]
        self._rewrite("read_markers", "user_key, conv, id", old, rows)

    def directs(self) -> None:
        old = self.db.execute("SELECT conv, a_key, a_name, b_key, b_name FROM directs").fetchall()
        new: dict[str, tuple[object, ...]] = {}
        for _conv, a_key, a_name, b_key, b_name in old:
            a, b = self.user(a_key), self.user(b_key)
            if not (self._gone(a) or self._gone(b)):
                new.setdefault(direct_key(a, b), (direct_key(a, b), a, a_name, b, b_name))
        self._rewrite("directs", "conv, a_key, a_name, b_key, b_name", old, list(new.values()))

    def trims(self) -> None:
        old = self.db.execute("SELECT conv, oldest FROM trims").fetchall()
        new: dict[str, int] = {}
        for conv, oldest in old:
            where = self.conv(conv)
            # merged rooms: the later cut, as the conversation's history may miss what is before it
            new[where] = max(new.get(where, oldest), oldest)
        self._rewrite("trims", "conv, oldest", old, [(c, o) for c, o in new.items()])
