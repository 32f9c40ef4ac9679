"""The coordinator's durable event log (SQLite, WAL, synchronous=FULL).

The log is the truth: every command is appended with the time it was applied, its source
and its result before anything is published, and the hall's state is the replay of the
log. A ``day_open`` entry starts each business day with a snapshot (carried-over tickets,
window status and skills), so recovery replays only the current day. Older days stay for
analytics until the retention period ends.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hallq.sqlite import open_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('day_open', 'window', 'ticket')),
    cmd_id TEXT UNIQUE,
    day TEXT NOT NULL,
    at REAL NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL,
    result TEXT
);
CREATE INDEX IF NOT EXISTS entries_day ON entries (day);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    kind: str
    cmd_id: str | None
    day: str
    at: float
    source: str
    payload: str
    result: dict[str, Any] | None


def _entry(row: tuple[Any, ...]) -> Entry:
    seq, kind, cmd_id, day, at, source, payload, result = row
    return Entry(seq, kind, cmd_id, day, at, source, payload,
                 json.loads(result) if result else None)


class EventLog:
    """Append-only command log; one per hall (the hall is the unit of partitioning)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_db(path, _SCHEMA)

    @classmethod
    def reader(cls, path: Path) -> EventLog:
        """The log opened read-only, usable from any one thread at a time: for readers
        beside the coordinator (the city shipper, status) that must never write to it.
        Raises FileNotFoundError when the coordinator has not created it yet."""
        if not path.exists():
            raise FileNotFoundError(f"no event log at {path}")
        log = cls.__new__(cls)
        log.path = path
        log._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                  isolation_level=None, check_same_thread=False)
        return log

    def close(self) -> None:
        self._db.close()

    def last_seq(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0])

    def lookup(self, cmd_id: str) -> Entry | None:
        row = self._db.execute(
            "SELECT seq, kind, cmd_id, day, at, source, payload, result FROM entries "
            "WHERE cmd_id = ?", (cmd_id,)
        ).fetchone()
        return None if row is None else _entry(row)

    def append(self, *, kind: str, cmd_id: str | None, day: str, at: float, source: str,
               payload: str, result: dict[str, Any] | None) -> int:
        """Append one entry durably and return its sequence number."""
        cursor = self._db.execute(
            "INSERT INTO entries (kind, cmd_id, day, at, source, payload, result) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, cmd_id, day, at, source, payload,
             json.dumps(result, ensure_ascii=False) if result is not None else None),
        )
        return int(cursor.lastrowid or 0)

    def entries_after(self, seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Raw rows (seq, kind, cmd_id, day, at, source, payload, result) after ``seq``, in
        order: the shipper's read, without decoding what it only forwards."""
        return self._db.execute(
            "SELECT seq, kind, cmd_id, day, at, source, payload, result FROM entries "
            "WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()

    def backlog(self, seq: int) -> tuple[int, float | None]:
        """How many entries follow ``seq`` and the time of the first of them (None: none).

        Two index lookups whatever the backlog, so the coordinator can answer it in its
        event loop: the count is by sequence numbers, which the log never skips."""
        last = self.last_seq()
        row = self._db.execute(
            "SELECT at FROM entries WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)
        ).fetchone()
        return max(0, last - seq), (row[0] if row else None)

    def current_day(self) -> tuple[Entry | None, list[Entry]]:
        """The latest ``day_open`` entry and every entry after it, in order."""
        row = self._db.execute(
            "SELECT seq, kind, cmd_id, day, at, source, payload, result FROM entries "
            "WHERE kind = 'day_open' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        start = _entry(row) if row else None
        after = start.seq if start else 0
        rows = self._db.execute(
            "SELECT seq, kind, cmd_id, day, at, source, payload, result FROM entries "
            "WHERE seq > ? ORDER BY seq", (after,)
        ).fetchall()
        return start, [_entry(r) for r in rows]

    def prune(self, keep_from: dt.date) -> int:
        """Drop whole days before ``keep_from``; returns how many entries went."""
        cursor = self._db.execute("DELETE FROM entries WHERE day < ?", (keep_from.isoformat(),))
        return cursor.rowcount
