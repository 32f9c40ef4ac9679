"""The last event SEQ accepted from each device, kept on disk so a restarted agent still
drops a repeat.

A device repeats its oldest event until it sees the master's ACK. If that ACK is lost and
the agent restarts before the repeat arrives, an agent that forgot the SEQ would deliver
the key press twice -- for a window's CALL key, calling the next taxpayer over the one
just called. The SEQ is written before the event is delivered, so a crash in between
loses the press (staff press again) rather than doubling it. A device's power-up BOOT
event (SEQ 0) restarts its count, so a stored SEQ never hides a new press for long.

The write is on the key's path (the bus task, on the agent's event loop), so it is not
synced to the disk (WAL, ``synchronous=NORMAL``): a committed SEQ survives the agent's
crash or restart, which is what it is for; only a power cut of the Pi in the same instant
can lose it, and then the pads usually lose power and restart their count too. A synced
write took 2 ms at the median and 20 ms at p99 on the project machine (an SD card is
slower), the unsynced one 0.01 ms.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from hallq.sqlite import open_db_or_copy

__all__ = ["EventSeqStore"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS last_event_seq (
    device TEXT PRIMARY KEY,
    seq INTEGER NOT NULL CHECK (seq BETWEEN 0 AND 255)
);
"""


class EventSeqStore:
    """``device id -> last accepted SEQ``; a failing disk is logged, never fatal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db, self.unwritable = open_db_or_copy(path, SCHEMA, synchronous="NORMAL")
        if self.unwritable is not None:
            log.warning(
                "event seq file cannot be written: %s. Kept in memory: a key press a device "
                "repeats across the next restart may be delivered twice",
                self.unwritable,
            )

    def get(self, device: str) -> int | None:
        row = self._db.execute(
            "SELECT seq FROM last_event_seq WHERE device = ?", (device,)
        ).fetchone()
        return None if row is None else int(row[0])

    def put(self, device: str, seq: int) -> None:
        try:
            self._db.execute(
                "INSERT INTO last_event_seq (device, seq) VALUES (?, ?) "
                "ON CONFLICT (device) DO UPDATE SET seq = excluded.seq",
                (device, seq),
            )
        except sqlite3.Error as exc:
            log.warning(
                "%s: could not keep event seq %d of %s (a repeat after a restart "
                "may be delivered twice): %s",
                self.path,
                seq,
                device,
                exc,
            )

    def close(self) -> None:
        self._db.close()
