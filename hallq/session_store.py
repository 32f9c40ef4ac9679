"""A client's durable MQTT state: the boot counter and the outbox of unsent publishes.

One SQLite file per client in the state directory, so a dispenser that loses power while
offline still has the tickets it must replay, and its next boot number is still higher.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hallq.sqlite import CarriesOn

log = logging.getLogger("hallq.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class SessionStore(CarriesOn):
    """Boot counter and bounded FIFO outbox; the oldest entry is dropped (and counted) when full."""

    _NAME, _LOG = "state file", log
    _COST = "Boots are counted and messages queued offline kept in memory, lost at the next restart"
    _HELD = "its outbox is"

    def __init__(self, path: Path, *, max_items: int = 10_000) -> None:
        if max_items < 1:
            raise ValueError("outbox max_items must be at least 1")
        self.max_items = max_items
        self._open(path, _SCHEMA, synchronous="NORMAL")
        if self.unwritable is not None:
            log.warning(
                "state file cannot be written: %s. Boots are counted and messages queued "
                "offline kept in memory, lost at the next restart; check the SD card or "
                "disk (hallq doctor)",
                self.unwritable,
            )
        self._count: int = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def _went_to_memory(self, lost: str | None) -> None:
        super()._went_to_memory(lost)
        self._count = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def _bump(self, key: str) -> int:
        def bump() -> int:
            row = self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, 1) "
                "ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
                (key,),
            ).fetchone()
            return int(row[0])

        return self._written(bump)

    def next_boot(self) -> int:
        """A number higher than any handed out before from this file."""
        return self._bump("boot")

    @property
    def dropped(self) -> int:
        """How many queued publishes were dropped because the outbox was full, ever."""
        return self._meta("dropped")

    def __len__(self) -> int:
        return self._count

    def push(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self._written(lambda: self._push(topic, payload, qos, retain))

    def _push(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            while self._count >= self.max_items:
                oldest = self._db.execute(
                    "DELETE FROM outbox WHERE seq = (SELECT min(seq) FROM outbox) RETURNING topic"
                ).fetchone()
                self._count -= 1
                total = self._bump("dropped")
                log.warning(
                    "outbox %s is full (%d messages): dropped the oldest, for %s "
                    "(%d dropped so far)",
                    self.path,
                    self.max_items,
                    oldest[0],
                    total,
                )
            self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                (topic, payload, qos, int(retain)),
            )
            self._count += 1

    def head(self, limit: int = 64) -> list[OutboxItem]:
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [OutboxItem(s, t, bytes(p), q, bool(r)) for s, t, p, q, r in rows]

    def remove(self, seq: int) -> None:
        gone = self._written(lambda: self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)))
        if gone.rowcount:
            self._count -= 1

    def close(self) -> None:
        self._db.close()
