"""A dispenser's leased number blocks, kept on disk.

When the coordinator cannot be reached the dispenser issues from a block of numbers the
coordinator reserved for it in advance. The blocks and every number used from them live in
SQLite, so a dispenser that reboots while offline never hands a number out twice.

Each ticket issued offline is also kept here until the coordinator has answered its
replay: the broker's acknowledgement is not enough (a broker killed before it saved the
message loses it), so the replay is sent again after every reconnect until a reply comes.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from hallq.sqlite import CarriesOn

log = logging.getLogger("hallq.edge")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    day TEXT NOT NULL, service TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (day, service, first)
);
CREATE TABLE IF NOT EXISTS used (
    day TEXT NOT NULL, service TEXT NOT NULL, number INTEGER NOT NULL,
    PRIMARY KEY (day, service, number)
);
CREATE TABLE IF NOT EXISTS replays (
    id TEXT PRIMARY KEY, day TEXT NOT NULL, payload TEXT NOT NULL
);
"""


class NotDurable(Exception):
    """The book cannot be written: a number taken now could be handed out again after a
    restart, so none is."""


class LeaseBook(CarriesOn):
    """Where its file cannot be written (a Pi's SD card gone read-only, at start or since)
    the book carries on in memory from what the file held: the offline tickets it holds
    are still replayed, but no leased number is handed out (``take`` raises NotDurable),
    since one that is not on disk could be handed out twice."""

    _NAME, _LOG, _LEVEL = "lease book", log, logging.ERROR
    _COST = (
        "Issuing offline stops; the offline tickets it holds are still replayed (until the "
        "agent restarts)"
    )
    _HELD = "its replays are"

    def __init__(self, path: Path) -> None:
        self._open(path, _SCHEMA)
        if self.unwritable is not None:
            log.error(
                "lease book cannot be written: %s. No ticket is issued offline until it "
                "can (a number not on disk could be handed out twice after a restart); "
                "check the SD card or disk (hallq doctor)",
                self.unwritable,
            )

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        self._written(lambda: self._db.execute(sql, args))

    def add_block(self, day: str, service: str, first: int, last: int) -> None:
        self._write("INSERT OR IGNORE INTO blocks VALUES (?, ?, ?, ?)", (day, service, first, last))

    def remaining(self, day: str, service: str) -> int:
        total = self._db.execute(
            "SELECT coalesce(sum(last - first + 1), 0) FROM blocks WHERE day = ? AND service = ?",
            (day, service),
        ).fetchone()[0]
        used = self._db.execute(
            "SELECT count(*) FROM used WHERE day = ? AND service = ?", (day, service)
        ).fetchone()[0]
        return int(total) - int(used)

    def take(self, day: str, service: str) -> int | None:
        """The lowest unused leased number, marked used on disk before it is returned;
        None if the blocks for today are used up; NotDurable if the book cannot be
        written."""
        if self.unwritable is not None:
            raise NotDurable(self.unwritable)
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for first, last in self._db.execute(
                    "SELECT first, last FROM blocks WHERE day = ? AND service = ? ORDER BY first",
                    (day, service),
                ).fetchall():
                    row = self._db.execute(
                        "SELECT coalesce(max(number), ?) FROM used WHERE day = ? "
                        "AND service = ? AND number BETWEEN ? AND ?",
                        (first - 1, day, service, first, last),
                    ).fetchone()
                    number = int(row[0]) + 1
                    if number <= last:
                        self._db.execute(
                            "INSERT INTO used VALUES (?, ?, ?)", (day, service, number)
                        )
                        return number
        except sqlite3.Error as exc:
            self._to_memory(exc)
            raise NotDurable(self.unwritable or str(exc)) from exc
        return None

    def forget_before(self, day: str) -> None:
        """Blocks end with their business day."""
        self._write("DELETE FROM blocks WHERE day < ?", (day,))
        self._write("DELETE FROM used WHERE day < ?", (day,))
        self._write("DELETE FROM replays WHERE day < ?", (day,))

    def hold_replay(self, replay_id: str, day: str, payload: str) -> None:
        """Keep an offline ticket's replay until the coordinator answers it."""
        self._write("INSERT OR IGNORE INTO replays VALUES (?, ?, ?)", (replay_id, day, payload))

    def replayed(self, replay_id: str) -> None:
        self._write("DELETE FROM replays WHERE id = ?", (replay_id,))

    def unanswered(self) -> list[str]:
        """Payloads of the replays the coordinator has not answered yet, oldest first."""
        return [row[0] for row in self._db.execute("SELECT payload FROM replays ORDER BY rowid")]
