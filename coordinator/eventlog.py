"""The coordinator's durable event log (SQLite, WAL, synchronous=FULL).

The log is the truth: every command is appended with the time it was applied, its source
and its result before anything is published, and the hall's state is the replay of the
log. A ``day_open`` entry starts each business day with a snapshot (carried-over tickets,
window status and skills), so recovery replays only the current day; a checkpoint of the
whole state (every ``checkpoint_every`` entries, see ``HallQueue``) shortens that to the
entries after it. Older days stay for
analytics until the retention period ends.

A write that fails (disk full, read-only file system, I/O error) raises
:class:`StorageFailed`; the caller must then treat the command as not kept (see
``docs/delivery.md``).

Group commit: :meth:`EventLog.stage` numbers an entry and holds it in memory (visible to
:meth:`lookup` and :meth:`last_seq`), :meth:`commit` writes every staged entry in one
transaction, so commands that arrive together share one fsync. Nothing staged may be
answered or published before its commit returned; a failed commit keeps none of them
(``failures`` counts such losses, so a waiter can tell its group was lost).
:meth:`commit_off_loop` does the same in a writer thread, so the event loop keeps reading
and parsing the next commands while the fsync runs: ``_db`` is the writing connection
(used by one thread at a time), ``_reader`` a second one for the loop's reads, which in
WAL mode neither waits for a commit nor sees one before it is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic_core import to_json

from hallq.sqlite import open_db, unwritable_reason

log = logging.getLogger("hallq.coordinator")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('day_open', 'window', 'ticket', 'device')),
    cmd_id TEXT UNIQUE,
    day TEXT NOT NULL,
    at REAL NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL,
    result TEXT
);
CREATE INDEX IF NOT EXISTS entries_day ON entries (day);
CREATE TABLE IF NOT EXISTS probe (k INTEGER PRIMARY KEY CHECK (k = 1), at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS entries_kind ON entries (kind, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    data BLOB NOT NULL
);
"""
# the kinds a log of an earlier version allows (before supervisors suspended devices)
_OLD_KINDS = "CHECK (kind IN ('day_open', 'window', 'ticket'))"
_KINDS = "CHECK (kind IN ('day_open', 'window', 'ticket', 'device'))"
KEEP_CHECKPOINTS = 2
ABSENT_KEPT = 4096  # command ids remembered as not in the log (see EventLog.lookup)
WRITE_SMOOTHING = 0.2  # weight of the newest write in ``write_s``
LOGGED_SINCE_KEPT = 100_000  # command ids staged since the log's largest was read
# The WAL is copied back into the database file (checkpointed) when the coordinator asks,
# after a quiet group's messages have left, every this many commits (or entries): SQLite's
# own (at 1,000 pages, ~200 of a quiet hall's commits) runs inside the commit that crosses
# it, a write and an fsync of the database file (1.4-4 ms) on the path of that command's
# reply. SQLite's stays, past this, for a log nobody asks: a busy hall's, or one on a slow
# disk, whose groups are committed in the writer thread (and checkpointed there)
WAL_CHECKPOINT_COMMITS = 100
WAL_CHECKPOINT_ENTRIES = 2_000


_PROBE_WRITE = "INSERT OR REPLACE INTO probe (k, at) VALUES (1, ?)"  # one row, rewritten


class StorageFailed(Exception):
    """The event log could not be written: nothing may change that the log does not keep."""


class LogInUse(Exception):
    """Another process writes this event log: a second coordinator of the same hall."""


class LogUnwritable(Exception):
    """The event log cannot be opened for writing at start (a read-only or full disk, the
    wrong owner): the coordinator serves nothing without it."""


class _WriterLock:
    """``<log>.lock``, held by this process while it writes the log, so a second
    coordinator on the same log stops at its start instead of numbering entries over the
    first one's (each would serve the hall from its own memory). A POSIX record lock: the
    kernel lets go when the process ends, however it ends, and a forked child (a
    checkpoint, a simulated day) does not inherit it, so a restart right after a fork
    is not refused for the child's sake, as an flock shared with the child was."""

    held: ClassVar[set[Path]] = set()  # POSIX locks are the process's: one per file here

    def __init__(self, path: Path) -> None:
        self.file = Path(f"{path}.lock")
        self.fd: int | None = None
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)  # a new hall's state dir
            self.file = self.file.resolve()
            if self.file in self.held:
                raise LogInUse(f"event log {path} is open for writing in this process already")
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # a read-only card: the log's own writes report it
            log.warning("event log %s: no writer lock (%s)", path, exc)
            return
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LogInUse(
                f"event log {path} is written by another process (pid {holder}): one "
                "coordinator per hall log; stop the other one first (systemctl status "
                "hallq-coordinator)"
            ) from None
        self.fd = fd
        self.held.add(self.file)
        with contextlib.suppress(OSError):  # the pid only names the holder to the next one
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # the lock goes with it
            self.fd = None
            self.held.discard(self.file)


def writer_of(path: Path) -> int | None:
    """The pid of the process holding ``path``'s writer lock (a running coordinator), or
    None. Asked of the kernel (/proc/locks), not the pid written in the lock file, which
    outlives its process; and without taking the lock, which would refuse a coordinator
    starting at that moment."""
    try:
        st = os.stat(f"{path}.lock")
        held = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in held.splitlines():
        # "1: POSIX  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; a waiter's has "->" after "1:"
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "POSIX" and fields[5] == inode:
            return int(fields[4])
    return None


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


def entry_of(row: tuple[Any, ...]) -> Entry:
    """An entry from its row as stored (its result's JSON read)."""
    seq, kind, cmd_id, day, at, source, payload, result = row
    return Entry(
        seq, kind, cmd_id, day, at, source, payload, json.loads(result) if result else None
    )


def _widen_kinds(db: sqlite3.Connection) -> None:
    """Let a log of an earlier version take the kinds this one writes. Its CHECK is
    rewritten in place, SQLite's documented way to change a constraint every stored row
    already meets (https://sqlite.org/lang_altertable.html, "making other kinds of table
    schema changes"): no row is copied, so a year's log opens as fast as before."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'entries'")
    sql = row.fetchone()[0]
    if _OLD_KINDS not in sql:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA schema_version").fetchone()[0]
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'entries'",
            (sql.replace(_OLD_KINDS, _KINDS),),
        )
        db.execute(f"PRAGMA schema_version = {int(version) + 1}")
        db.execute("PRAGMA writable_schema = OFF")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    log.info("event log: now also takes supervisors' device commands (schema widened)")


class EventLog:
    """Append-only command log; one per hall (the hall is the unit of partitioning)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # an in-memory log is private to its connection: read where it is written
        memory = str(path) == ":memory:"
        self._lock = None if memory else _WriterLock(path)
        try:
            self._db = open_db(path, _SCHEMA, check_same_thread=False)
            _widen_kinds(self._db)
        except BaseException as exc:
            if self._lock is not None:  # not opened: nobody writes it
                self._lock.release()
            if isinstance(exc, OSError) or getattr(exc, "sqlite_errorname", "").startswith(
                ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_FULL", "SQLITE_PERM")
            ):
                raise LogUnwritable(
                    f"event log cannot be opened for writing: {unwritable_reason(path, exc)}. "
                    "The coordinator serves nothing without it: free the disk or give the "
                    "service user the folder (hallq doctor on this machine says which)"
                ) from exc
            raise
        self._wal = not memory  # an in-memory log has no WAL
        self._wal_commits = self._wal_entries = 0  # since the last checkpoint
        self._reader = self._db if memory else sqlite3.connect(path, isolation_level=None)
        self._staged: list[tuple[Any, ...]] = []
        self._staged_ids: dict[str, tuple[Any, ...]] = {}
        # command ids just looked up and not in the log: only ``stage`` adds an id, and
        # this process is the log's one writer, so the answer holds until then (the
        # coordinator asks twice per command: who owns the id, then whether it is new)
        self._absent: set[str] | None = set()
        # and without asking SQLite at all (a query by the unique index was ~4% of a busy
        # coordinator's loop): an id above the largest in the log when it was last read
        # (``_anchor``) that was not staged since (``_logged_since``) cannot be in it.
        # Holds for any strings (SQLite compares text as Python does, by code point);
        # new ULIDs from devices with sane clocks sort above the log's, others are asked
        self._anchor: str | None = None
        self._logged_since: set[str] = set()
        self.failures = 0  # commits that failed: their staged entries were never kept
        self.write_s = 0.0  # a group's write with its fsync, smoothed (see _write)
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        # the write running in the writer thread, and how many staged entries it takes
        self._job: tuple[concurrent.futures.Future[None], int] | None = None
        # the newest committed entry, counted here rather than asked of SQLite for every
        # group (a read transaction after the last commit: ~25 µs, in a quiet hall every
        # command's); None: ask, as after a failed write. The one writer is this log.
        self._committed: int | None = None
        self._committed = self.committed_seq()
        self._reanchor()

    def _reanchor(self) -> None:
        """Read the largest command id in the log again; only what is staged now (some of
        it perhaps being written) is then logged since."""
        row = self._reader.execute("SELECT max(cmd_id) FROM entries").fetchone()
        self._anchor = row[0] if row and row[0] is not None else ""
        self._logged_since = set(self._staged_ids)

    @classmethod
    def reader(cls, path: Path) -> EventLog:
        """The log opened read-only, usable from any one thread at a time: for readers
        beside the coordinator (the city shipper, status) that must never write to it.
        Raises FileNotFoundError when the coordinator has not created it yet."""
        if not path.exists():
            raise FileNotFoundError(f"no event log at {path}")
        log = cls.__new__(cls)
        log.path = path
        log._staged, log._staged_ids, log.failures, log.write_s = [], {}, 0, 0.0
        log._absent = None  # another process writes: every lookup asks the file
        log._anchor, log._logged_since = None, set()
        log._writer, log._job, log._committed, log._lock = None, None, None, None
        log._wal, log._wal_commits, log._wal_entries = False, 0, 0
        log._db = log._reader = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        return log

    def close(self) -> None:
        if self._job is not None:
            try:
                self._written(self._job)
            except StorageFailed:
                pass  # counted in failures: those commands were never answered
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        self._db.close()
        if self._reader is not self._db:
            self._reader.close()
        if self._lock is not None:
            self._lock.release()

    def last_seq(self) -> int:
        """The newest entry's number, staged or committed."""
        if self._staged:
            return int(self._staged[-1][0])
        return self.committed_seq()

    def committed_seq(self) -> int:
        if self._committed is not None:
            return self._committed
        return int(self._reader.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0])

    @property
    def staged(self) -> int:
        return len(self._staged)

    def lookup(self, cmd_id: str) -> Entry | None:
        staged = self._staged_ids.get(cmd_id)
        if staged is not None:
            return entry_of(staged)
        absent = self._absent
        if absent is not None and cmd_id in absent:
            return None
        anchor = self._anchor
        if anchor is not None and cmd_id > anchor and cmd_id not in self._logged_since:
            return None
        row = self._reader.execute(
            "SELECT seq, kind, cmd_id, day, at, source, payload, result FROM entries "
            "WHERE cmd_id = ?",
            (cmd_id,),
        ).fetchone()
        if row is None:
            if absent is not None:
                if len(absent) >= ABSENT_KEPT:
                    absent.clear()
                absent.add(cmd_id)
            return None
        return entry_of(row)

    def append(
        self,
        *,
        kind: str,
        cmd_id: str | None,
        day: str,
        at: float,
        source: str,
        payload: str,
        result: dict[str, Any] | None,
    ) -> int:
        """Append one entry durably (with whatever was staged before it, in one
        transaction) and return its sequence number."""
        seq = self.stage(
            kind=kind, cmd_id=cmd_id, day=day, at=at, source=source, payload=payload, result=result
        )
        self.commit()
        return seq

    def stage(
        self,
        *,
        kind: str,
        cmd_id: str | None,
        day: str,
        at: float,
        source: str,
        payload: str,
        result: dict[str, Any] | None,
    ) -> int:
        """Number one entry and hold it for the next :meth:`commit` (not durable yet)."""
        if self._staged:
            seq = int(self._staged[-1][0]) + 1
        else:  # counted here; asked of SQLite again only after a failure (None)
            self._committed = seq = self.committed_seq()
            seq += 1
        row = (
            seq,
            kind,
            cmd_id,
            day,
            at,
            source,
            payload,
            # pydantic's serializer: compact UTF-8, a fifth of json.dumps' ~5 µs a command
            to_json(result).decode() if result is not None else None,
        )
        self._staged.append(row)
        if cmd_id is not None:
            self._staged_ids[cmd_id] = row
            if self._absent is not None:
                self._absent.discard(cmd_id)
            if self._anchor is not None:
                self._logged_since.add(cmd_id)
                if len(self._logged_since) > LOGGED_SINCE_KEPT:
                    self._reanchor()
        return seq

    def commit(self) -> int:
        """Write every staged entry in one transaction (one fsync); returns how many. On
        failure none of them is kept, the staged ones are dropped and StorageFailed raised.
        A write still running in the writer thread (a stop in the middle of
        :meth:`commit_off_loop`) is waited for and accounted first."""
        if self._job is not None:
            self._written(self._job)
        rows, self._staged, self._staged_ids = self._staged, [], {}
        if not rows:
            return 0
        try:
            self._write(rows)
        except StorageFailed:
            self._failed()
            raise
        self._committed = int(rows[-1][0])
        self._wal_commits += 1
        self._wal_entries += len(rows)
        return len(rows)

    async def commit_off_loop(self) -> int:
        """:meth:`commit` with the write in the writer thread: the event loop runs on
        meanwhile. The entries stay staged (seen by :meth:`lookup`) until the write is
        done; the caller stages nothing meanwhile (it holds its lock), so the staged
        entries are exactly the group written. Cancelled, it still waits for the write
        (blocking: only at shutdown), so the log and ``staged`` never disagree."""
        if self._job is not None:  # one write at a time
            self._written(self._job)
        rows = list(self._staged)
        if not rows:
            return 0
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="eventlog-commit"
            )
        job = self._writer.submit(self._write, rows)
        self._job = (job, len(rows))
        try:
            await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if self._job is not None and self._job[0] is job:
                self._written(self._job)
            raise
        except StorageFailed:
            pass
        if self._job is None or self._job[0] is not job:  # accounted by commit() meanwhile
            if job.exception() is not None:
                raise StorageFailed(f"event log {self.path}: {job.exception()}")
            return len(rows)
        self._written(self._job)
        return len(rows)

    def _written(self, job_n: tuple[concurrent.futures.Future[None], int]) -> None:
        """Account for a write of the first ``n`` staged entries (waited for, if still
        running): they are durable and no longer staged, or the log failed and nothing
        staged is kept (StorageFailed)."""
        job, n = job_n
        self._job = None
        concurrent.futures.wait([job])
        exc = job.exception()
        if exc is None:
            self._committed = int(self._staged[n - 1][0])
            for row in self._staged[:n]:
                if row[2] is not None:
                    self._staged_ids.pop(row[2], None)
            del self._staged[:n]
            self._wal_commits += 1
            self._wal_entries += n
            return
        self._staged, self._staged_ids = [], {}
        self._failed()
        raise exc

    def _failed(self) -> None:
        self.failures += 1
        self._committed = None  # a failed COMMIT may have landed all the same: ask again

    def checkpoint_wal(self) -> bool:
        """Checkpoint the WAL here and now if WAL_CHECKPOINT_COMMITS or _ENTRIES have been
        committed since the last time and no write is running (PASSIVE: it never waits for
        a reader; with the one writer idle it copies every frame). Then the WAL is started
        over at once, by a write of the probe row: the first write after a complete
        checkpoint writes a new WAL header and syncs it (synchronous=FULL) before its own
        frames, two fsyncs, and left to the next command's commit that was the slowest
        commit in a hundred, ~1% of the CALLs. A failure is logged, not raised: the WAL
        grows until the next (the log's writes tell of a bad disk). True if it ran."""
        if not self._wal or self._job is not None:
            return False
        if self._wal_commits < WAL_CHECKPOINT_COMMITS and (
            self._wal_entries < WAL_CHECKPOINT_ENTRIES
        ):
            return False
        self._wal_commits = self._wal_entries = 0
        try:
            busy, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if not busy and frames == copied:
                self._db.execute(_PROBE_WRITE, (time.time(),))
        except sqlite3.Error as exc:
            log.warning(
                "event log %s: the WAL was not checkpointed (or begun again): %s", self.path, exc
            )
        return True

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        """The one transaction (in whichever thread commits); StorageFailed if not kept.
        Its time, smoothed, is ``write_s`` (how long the disk takes to make a group
        durable now: a caller may then decide where to wait for it)."""
        started = time.perf_counter()
        try:
            self._transaction(rows)
        finally:
            took = time.perf_counter() - started
            self.write_s += (took - self.write_s) * WRITE_SMOOTHING

    def _transaction(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO entries (seq, kind, cmd_id, day, at, source, payload, result) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            raise StorageFailed(f"event log {self.path}: {exc}") from exc

    def probe(self, at: float) -> None:
        """One real, synced write: whether an append would be kept now (after a failure).
        The file is opened again first: SQLite opens a file it cannot write read-only and
        keeps it so, even once the file system is writable again."""
        # the old connections go first, the reader's too: SQLite shares one file descriptor
        # per file within a process, so a new connection beside either would inherit its
        # read-only one (a coordinator started on a read-only card never wrote again)
        separate_reader = self._reader is not self._db
        self._db.close()
        if separate_reader:
            self._reader.close()
        db: sqlite3.Connection | None = None
        try:
            db = open_db(self.path, _SCHEMA, check_same_thread=False)
            db.execute(_PROBE_WRITE, (at,))
        except (sqlite3.Error, OSError) as exc:
            # the failed connection is closed now, not when collected: while it lives, the
            # next probe's connection would share its read-only descriptor
            if db is not None:
                db.close()
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._reader = (
                sqlite3.connect(self.path, isolation_level=None) if separate_reader else self._db
            )
            raise StorageFailed(f"event log {self.path}: {exc}") from exc
        self._db = db
        self._reader = (
            sqlite3.connect(self.path, isolation_level=None) if separate_reader else self._db
        )
        self._committed = None

    def entries_after(self, seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Raw rows (seq, kind, cmd_id, day, at, source, payload, result) after ``seq``, in
        order: the shipper's read, without decoding what it only forwards."""
        return self._reader.execute(
            "SELECT seq, kind, cmd_id, day, at, source, payload, result FROM entries "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()

    def backlog(self, seq: int) -> tuple[int, float | None]:
        """How many entries follow ``seq`` and the time of the first of them (None: none).

        Two index lookups whatever the backlog, so the coordinator can answer it in its
        event loop: the count is by sequence numbers, which the log never skips."""
        last = self.committed_seq()
        row = self._reader.execute(
            "SELECT at FROM entries WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)
        ).fetchone()
        return max(0, last - seq), (row[0] if row else None)

    def current_day(self) -> tuple[Entry | None, list[Entry]]:
        """The latest ``day_open`` entry and every entry after it, in order."""
        start = self.day_start()
        return start, self.entries_since(start.seq if start else 0)

    def day_start(self) -> Entry | None:
        row = self._reader.execute(
            "SELECT seq, kind, cmd_id, day, at, source, payload, result FROM entries "
            "WHERE kind = 'day_open' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return entry_of(row) if row else None

    def entries_since(self, seq: int) -> list[Entry]:
        rows = self._reader.execute(
            "SELECT seq, kind, cmd_id, day, at, source, payload, result FROM entries "
            "WHERE seq > ? ORDER BY seq",
            (seq,),
        ).fetchall()
        return [entry_of(r) for r in rows]

    def latest_checkpoint(self) -> tuple[int, str, str, bytes] | None:
        """(seq, day, fingerprint, data) of the newest checkpoint, if any."""
        row = self._reader.execute(
            "SELECT seq, day, fingerprint, data FROM checkpoints ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), row[1], row[2], bytes(row[3]))

    @staticmethod
    def save_checkpoint(path: Path, seq: int, day: str, fingerprint: str, data: bytes) -> None:
        """Store a checkpoint of the state after entry ``seq`` over a connection of its own
        (called from a worker thread; the log's own connection stays on the event loop).
        Only a speed-up: a checkpoint that cannot be written is simply not there."""
        db = open_db(path, _SCHEMA)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR REPLACE INTO checkpoints (seq, day, fingerprint, data) "
                "VALUES (?, ?, ?, ?)",
                (seq, day, fingerprint, data),
            )
            db.execute(
                "DELETE FROM checkpoints WHERE seq NOT IN (SELECT seq FROM checkpoints "
                "ORDER BY seq DESC LIMIT ?)",
                (KEEP_CHECKPOINTS,),
            )
            db.execute("COMMIT")
        finally:
            db.close()

    def prune(self, keep_from: dt.date) -> int:
        """Drop whole days before ``keep_from``; returns how many entries went."""
        cursor = self._db.execute("DELETE FROM entries WHERE day < ?", (keep_from.isoformat(),))
        return cursor.rowcount
