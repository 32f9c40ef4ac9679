"""SQLite files as every hallq component opens them: WAL, autocommit, schema ensured."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

T = TypeVar("T")


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


def open_db_or_copy(
    path: Path,
    schema: str,
    *,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
) -> tuple[sqlite3.Connection, str | None]:
    """:func:`open_db`; where the file cannot be written (a Pi's SD card gone read-only,
    a full disk, the wrong owner), a copy in memory of what it holds and why, so a device
    starts and serves online instead of failing at every start until someone comes. What
    it writes then is lost at the next restart: its owner says what that costs."""
    try:
        return open_db(path, schema, synchronous=synchronous), None
    except (sqlite3.Error, OSError) as exc:  # (OSError: its folder could not be made)
        why = unwritable_reason(path, exc)
    memory = sqlite3.connect(":memory:", isolation_level=None)
    if path.exists():
        try:  # immutable: read as it lies, with no -shm or lock to create
            with contextlib.closing(
                sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
            ) as held:
                held.backup(memory)
        except sqlite3.Error as exc:
            why += f"; what it held could not be read either ({exc})"
    memory.executescript(schema)
    return memory, why


def unwritable_reason(path: Path, exc: BaseException) -> str:
    """Why ``path`` cannot be written, in words a field engineer acts on (SQLite says
    "unable to open database file" for most of them)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fs = os.statvfs(folder)
    except OSError:
        return f"{path}: {exc}"
    if fs.f_flag & os.ST_RDONLY:
        return f"{path}: the file system is read-only ({exc})"
    if fs.f_bavail == 0:
        return f"{path}: the disk is full ({exc})"
    if not os.access(folder, os.W_OK):
        return f"{path}: no permission to write in {folder} ({exc})"
    return f"{path}: {exc}"


def memory_copy(db: sqlite3.Connection, schema: str) -> tuple[sqlite3.Connection, str | None]:
    """What ``db`` holds, in a database in memory (its file has stopped taking writes: a
    card gone read-only), and, if it could not be read either, why (then it is empty)."""
    memory = sqlite3.connect(":memory:", isolation_level=None)
    lost = None
    try:
        db.backup(memory)
    except sqlite3.Error as exc:
        lost = str(exc)
    memory.executescript(schema)
    return memory, lost


class CarriesOn:
    """A store on one SQLite file that carries on as a copy in memory once the file cannot
    be written (a Pi's SD card gone read-only, a full disk): from the start
    (:func:`open_db_or_copy`), or from its first failed write (:meth:`_written`).
    ``unwritable`` says why, None while the file takes writes; the store says in its log
    what carrying on costs it (:meth:`_went_to_memory`)."""

    path: Path
    unwritable: str | None
    _db: sqlite3.Connection
    _schema: str
    # what the store says once switched: its name, where, at what level, what carrying on
    # costs it, and what of it is lost when the file could not be read either
    _NAME: ClassVar[str]
    _LOG: ClassVar[logging.Logger]
    _LEVEL: ClassVar[int] = logging.WARNING
    _COST: ClassVar[str]
    _HELD: ClassVar[str]

    def _open(
        self, path: Path, schema: str, *, synchronous: Literal["FULL", "NORMAL"] = "FULL"
    ) -> None:
        self.path, self._schema = path, schema
        self._db, self.unwritable = open_db_or_copy(path, schema, synchronous=synchronous)

    def _written(self, write: Callable[[], T]) -> T:
        """``write()``, again on the copy in memory if the file refused it."""
        try:
            return write()
        except sqlite3.Error as exc:
            if self.unwritable is not None:
                raise
            self._to_memory(exc)
            return write()

    def _to_memory(self, exc: sqlite3.Error) -> None:
        self.unwritable = unwritable_reason(self.path, exc)
        memory, lost = memory_copy(self._db, self._schema)
        self._db.close()
        self._db = memory
        self._went_to_memory(lost)

    def _went_to_memory(self, lost: str | None) -> None:
        """Said once the store has switched (``lost``: why what the file held could not be
        read either, and the copy is empty)."""
        self._LOG.log(
            self._LEVEL,
            "%s cannot be written any more: %s. %s",
            self._NAME,
            self.unwritable,
            self._COST,
        )
        if lost is not None:
            self._LOG.error(
                "%s could not be read either (%s): %s lost", self._NAME, lost, self._HELD
            )
