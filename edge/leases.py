"""A dispenser's leased number blocks, kept on disk.

When the coordinator cannot be reached the dispenser issues from a block of numbers the
coordinator reserved for it in advance. The blocks and every number used from them live in
SQLite, so a dispenser that reboots while offline never hands a number out twice.

Each ticket issued offline is also kept here until the coordinator has answered its
replay: the broker's acknowledgement is not enough (a broker killed before it saved the
message loses it), so the replay is sent again after every reconnect until a reply comes.
"""

from __future__ import annotations

from pathlib import Path

from hallq.sqlite import open_db

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


class LeaseBook:
    def __init__(self, path: Path) -> None:
        self._db = open_db(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add_block(self, day: str, service: str, first: int, last: int) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO blocks VALUES (?, ?, ?, ?)", (day, service, first, last)
        )

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
        """The lowest unused leased number, marked used before it is returned; None if the
        blocks for today are used up."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for first, last in self._db.execute(
                "SELECT first, last FROM blocks WHERE day = ? AND service = ? ORDER BY first",
                (day, service),
            ).fetchall():
                row = self._db.execute(
                    "SELECT coalesce(max(number), ?) FROM used WHERE day = ? AND service = ? "
                    "AND number BETWEEN ? AND ?",
                    (first - 1, day, service, first, last),
                ).fetchone()
                number = int(row[0]) + 1
                if number <= last:
                    self._db.execute("INSERT INTO used VALUES (?, ?, ?)", (day, service, number))
                    return number
        return None

    def forget_before(self, day: str) -> None:
        """Blocks end with their business day."""
        self._db.execute("DELETE FROM blocks WHERE day < ?", (day,))
        self._db.execute("DELETE FROM used WHERE day < ?", (day,))
        self._db.execute("DELETE FROM replays WHERE day < ?", (day,))

    def hold_replay(self, replay_id: str, day: str, payload: str) -> None:
        """Keep an offline ticket's replay until the coordinator answers it."""
        self._db.execute(
            "INSERT OR IGNORE INTO replays VALUES (?, ?, ?)", (replay_id, day, payload)
        )

    def replayed(self, replay_id: str) -> None:
        self._db.execute("DELETE FROM replays WHERE id = ?", (replay_id,))

    def unanswered(self) -> list[str]:
        """Payloads of the replays the coordinator has not answered yet, oldest first."""
        return [row[0] for row in self._db.execute("SELECT payload FROM replays ORDER BY rowid")]
