"""The audit log of the supervisor desk: who did what, when, from which address.

Every login (and refused login), logout and supervisor action lands here, in its own
SQLite file next to the event log, committed before the answer goes out. A supervisor
console's commands over MQTT land here too (role ``console``, from ``mqtt``), without a
sync of their own: the event log has them durably already, and a console's password in
other hands must not buy an fsync on the event loop per command it sends. The event log
already says *what* changed the queue (``supervisor/<user>`` as source); this says who
was behind the desk, from where, including attempts the engine refused or the desk
denied. Times are wall-clock (the hall clock of the demo runs faster). Texts are
ID-redacted before they are stored: a supervisor typing a number into a note must not
put it on disk.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hallq.logsetup import redact

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    role TEXT,
    action TEXT NOT NULL,
    target TEXT,
    ok INTEGER NOT NULL,
    result TEXT,
    detail TEXT,
    client TEXT
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
"""
_MAX_TEXT = 300
# a detail is JSON the desk reads back (an applied advice after a restart): clipped, it
# would not parse
_MAX_DETAIL = 4000


_NO_BOUND = 2**62  # past every id the log will ever hand out


def default_audit_path(eventlog: Path) -> Path:
    return eventlog.with_name(f"{eventlog.stem}-audit.sqlite")


def _clip(text: str | None) -> str | None:
    return None if text is None else redact(text)[:_MAX_TEXT]


def _detail(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:  # clipped
        return text


class AuditLog:
    def __init__(
        self, path: Path, *, retention_days: int = 400, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._quick = sqlite3.connect(path, isolation_level=None)  # (see the module's doc)
        self._quick.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("DELETE FROM audit WHERE at < ?", (clock() - retention_days * 86400,))

    def record(
        self,
        user: str,
        action: str,
        *,
        role: str | None = None,
        target: str | None = None,
        ok: bool = True,
        result: str | None = None,
        detail: dict[str, Any] | None = None,
        client: str | None = None,
        synced: bool = True,
    ) -> int:
        text = None if detail is None else json.dumps(detail, ensure_ascii=False, sort_keys=True)
        cur = (self._db if synced else self._quick).execute(
            "INSERT INTO audit (at, user, role, action, target, ok, result, detail, client)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.clock(),
                _clip(user) or "?",
                role,
                action,
                _clip(target),
                int(ok),
                _clip(result),
                None if text is None else redact(text)[:_MAX_DETAIL],
                _clip(client),
            ),
        )
        return int(cur.lastrowid or 0)

    def recent(
        self, limit: int = 100, before: int | None = None, console: bool | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ``before`` (an id) pages further back. Any integer will do: ids
        are positive and far below 2**62, so one past either end is clamped to it (SQLite
        refuses integers past 64 bits: `?before=2**63` was a 500, found by the HTTP fuzz).
        ``console``: only a console's commands over MQTT (True), or all but those (False):
        a script with a console's password must not push the desk's own out of sight."""
        bound = _NO_BOUND if before is None else max(-_NO_BOUND, min(before, _NO_BOUND))
        which = {None: "", True: " AND role IS 'console'", False: " AND role IS NOT 'console'"}
        rows = self._db.execute(
            "SELECT id, at, user, role, action, target, ok, result, detail, client FROM audit"
            f" WHERE id < ?{which[console]} ORDER BY id DESC LIMIT ?",
            (bound, limit),
        ).fetchall()
        return self._entries(rows)

    def between(self, start: float, end: float, limit: int = 1000) -> list[dict[str, Any]]:
        """Oldest first, ``start <= at < end`` (the day report's actions)."""
        rows = self._db.execute(
            "SELECT id, at, user, role, action, target, ok, result, detail, client FROM audit"
            " WHERE at >= ? AND at < ? ORDER BY id LIMIT ?",
            (start, end, limit),
        ).fetchall()
        return self._entries(rows)

    @staticmethod
    def _entries(rows: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "id": r[0],
                "at": r[1],
                "user": r[2],
                "role": r[3],
                "action": r[4],
                "target": r[5],
                "ok": bool(r[6]),
                "result": r[7],
                "detail": _detail(r[8]),
                "client": r[9],
            }
            for r in rows
        ]

    def last_id(self) -> int:
        """The newest entry's id: the desk reads the log again when it changes."""
        return int(self._db.execute("SELECT coalesce(max(id), 0) FROM audit").fetchone()[0])

    def close(self) -> None:
        self._quick.close()
        self._db.close()
