"""SQLite files as every hallq component opens them: WAL, autocommit, schema ensured."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal


def open_db(
    path: Path,
    schema: str,
    *,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """Open (creating folders and tables) a database in WAL mode.

    FULL where a lost write would lose a ticket (the event log, leases); NORMAL where the
    worst case is re-sending a message (the outbox). ``check_same_thread=False`` for a
    connection used by one thread at a time, not always the one that opened it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(schema)
    except BaseException:
        # closed now: a connection is freed only by the cycle collector (its statement
        # cache refers back to it), and until then a new one to this file in this
        # process shares its descriptor, read-only if it was opened read-only
        db.close()
        raise
    return db
