"""Messages go into SQLite and come back the same, whichever of their fields are empty.

A batch is written with one ``INSERT`` per set of empty columns
(:func:`papo.sqlite_schema.inserts`): every set is tried here, mixed in one batch.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from papo.sqlite_schema import COLUMNS, inserts, row_to_stored
from papo.store_records import Stored
from papo.store_sqlite import SqliteStore


async def test_every_set_of_empty_fields_is_stored_and_read_back_as_it_was(
    tmp_path: Path,
) -> None:
    messages = []
    for n, empty in enumerate(itertools.product((False, True), repeat=6), start=1):
        to, to_key, cid, room, edited_ts, by = (
            None if gone else f"v{n}-{i}" for i, gone in enumerate(empty)
        )
        message = Stored(n, f"ana{n}", f"ana{n}", f"texto {n}", f"ts{n}", to, to_key, cid, room)
        edit = "edit" if n % 3 == 0 else ""
        messages.append(
            replace(
                message, conv=f"#c{n % 5}", kind=edit, target=n // 2, edited_ts=edited_ts, by=by
            )
        )
    assert len({statement for statement, _ in inserts(messages)}) == 2**6
    store = SqliteStore(tmp_path)
    await store.open()
    await store._run(lambda db: [db.executemany(s, rows) for s, rows in inserts(messages)])
    rows = await store._run(
        lambda db: db.execute(f"SELECT {COLUMNS} FROM messages ORDER BY id").fetchall()
    )
    assert [row_to_stored(row) for row in rows] == messages
    await store.close()
