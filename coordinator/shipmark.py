"""How far the event log has been shipped to the city, and how far behind that is.

The shipper (``city.ship``) keeps its authoritative cursor in PostgreSQL, in the same
transaction as the rows it ships; this file beside the log is its local echo, written
after each commit, so that ``hallq status`` and the coordinator can tell the lag while
the city database is unreachable. It can only trail the real cursor (written after the
commit), never run ahead of it, so the lag it gives is never smaller than the truth.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coordinator.eventlog import EventLog


def mark_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + "-shipped.json")


@dataclass(frozen=True, slots=True)
class ShipMark:
    seq: int  # last entry committed in the city database
    updated: float  # wall clock of the last contact with the city database (or attempt)
    error: str | None = None  # why the last attempt failed; None while shipping works
    target: str = ""  # host/database, never the password


@dataclass(frozen=True, slots=True)
class Lag:
    events: int
    seconds: float
    shipped_seq: int
    error: str | None
    updated: float | None  # None: no shipper has ever run for this log

    def as_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "seconds": round(self.seconds, 1),
            "shipped_seq": self.shipped_seq,
            "error": self.error,
            "updated": self.updated,
        }


def write_mark(path: Path, mark: ShipMark) -> None:
    """Replace the mark atomically (a reader sees the old one or the new one, whole). The
    temporary file is this writer's own: two shippers of one log (a second one started by
    mistake) sharing one name renamed each other's file away (FileNotFoundError)."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(mark), f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o640)  # the units' UMask: the coordinator and the hallq group read it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_mark(path: Path) -> ShipMark | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ShipMark(
            int(data["seq"]), float(data["updated"]), data.get("error"), str(data.get("target", ""))
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a ship mark ({exc})") from exc


def lag(log: EventLog, mark: ShipMark | None, now: float | None = None) -> Lag:
    """Entries not yet in the city database, and how long the oldest of them has waited."""
    shipped = mark.seq if mark else 0
    events, first = log.backlog(shipped)
    now = time.time() if now is None else now
    seconds = max(0.0, now - first) if first is not None else 0.0
    return Lag(
        events, seconds, shipped, mark.error if mark else None, mark.updated if mark else None
    )
