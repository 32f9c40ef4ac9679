"""Ship a hall's event log to the city's PostgreSQL: in order, exactly once, resumable.

The shipper is its own process (``hallq ship``), reading the coordinator's SQLite log the
way any reader of a WAL database does, so nothing here is on a key press's path: when the
city database is slow or gone for hours, the coordinator appends as before and only the
lag grows. The cursor lives in the city database (``halls.shipped_seq``) and moves in the
transaction that COPYs the rows, which is what makes a batch arrive exactly once: a crash
before the commit leaves both unchanged, after it leaves both moved. The local mark file
(``coordinator.shipmark``) is written after each commit for ``hallq status``.

Back-pressure is by pull: the shipper reads at most ``batch`` entries at a time from the
log (memory does not grow with the backlog), waits between commits when ``max_rate`` is
set (so a hundred halls back from an outage do not swamp the city database at once), and
backs off exponentially while the database is unreachable.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.eventlog import EventLog
from coordinator.shipmark import ShipMark, lag, mark_path, write_mark

if TYPE_CHECKING:
    import psycopg

    from hallq.sdnotify import Notifier

log = logging.getLogger("hallq.ship")

COLUMNS = (
    "hall_id",
    "seq",
    "day",
    "at",
    "kind",
    "op",
    "service",
    "window_no",
    "ticket",
    "ok",
    "source",
    "cmd_id",
    "payload",
    "result",
)
COPY_SQL = f"COPY events ({', '.join(COLUMNS)}) FROM STDIN"
_UTC = dt.UTC


class CityUnavailable(Exception):
    """The city database cannot be reached or refused the batch; shipping will retry."""


def import_psycopg() -> Any:
    """psycopg is the ``city`` extra's: a hall without it still runs everything else."""
    try:
        import psycopg
    except ImportError as exc:
        raise SystemExit("shipping to the city needs psycopg: pip install 'hallq[city]'") from exc
    return psycopg


def describe_dsn(dsn: str) -> str:
    """host/database of a connection string, for logs and the mark (never the password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "?"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def knock_address(dsn: str) -> tuple[str, int] | None:
    """The database's TCP host and port, to knock on between retries; None for a Unix
    socket, several hosts, or a connection string that does not parse (then only the
    backoff paces the retries)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
        host = str(parts.get("hostaddr") or parts.get("host") or "localhost")
        port = int(str(parts.get("port") or 5432))
    except Exception:
        return None
    if host.startswith("/") or "," in host or "," in str(parts.get("port") or ""):
        return None
    return host, port


SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's SSLRequest: answered 'S' or 'N'


def database_answers(address: tuple[str, int], timeout: float) -> bool:
    """True if a PostgreSQL server answers at ``address``: an SSLRequest, which a server
    answers with one byte before any login. A TCP connection accepted and then closed (a
    relay or firewall with nothing behind it) does not count."""
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(SSL_REQUEST)
            return sock.recv(1) in (b"S", b"N")
    except OSError:
        return False


IDENTITY_KEYS = frozenset({"identity"})  # keyed hashes of ID numbers (IssueRequest, day_open)


def _without_identities(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_identities(v) for k, v in value.items() if k not in IDENTITY_KEYS}
    if isinstance(value, list):
        return [_without_identities(v) for v in value]
    return value


def strip_identities(payload: str) -> str:
    """The payload without identity hashes: a ticket request's ``identity`` and those of
    the tickets a new day carries over. The city needs no one's identity (the per-person
    limit is the hall's), and a hash of an ID number is still that person's key."""
    if '"identity"' not in payload:  # most entries: no parse, no copy
        return payload
    try:
        body = json.loads(payload)
    except ValueError:
        return "{}"  # unreadable and possibly carrying one: not shipped as it is
    return json.dumps(_without_identities(body), ensure_ascii=False, separators=(",", ":"))


def city_row(hall_id: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """One log entry as the ``events`` table's row: what the bureau groups by pulled out of
    the payload and result (service, window, operation, ticket, outcome), identities
    stripped."""
    seq, kind, cmd_id, day, at, source, payload, result = row
    payload = strip_identities(payload)
    op = service = window = ticket = ok = None
    if kind != "day_open":
        try:
            body = json.loads(payload)
        except ValueError:
            body = {}
        op = body.get("action") or body.get("kind")
        service = body.get("service")
        window = body.get("window")
        if result:
            try:
                res = json.loads(result)
            except ValueError:
                res = {}
            ok = res.get("ok")
            ticket = res.get("ticket")
            info = res.get("info") or {}
            service = service or info.get("service")
            ticket = ticket or info.get("number")
        ticket = ticket or body.get("number") or body.get("ticket")
    return (
        hall_id,
        seq,
        day,
        dt.datetime.fromtimestamp(at, _UTC),
        kind,
        op,
        service,
        window,
        ticket,
        ok,
        source,
        cmd_id,
        payload,
        result,
    )


@dataclass
class ShipStats:
    shipped: int = 0
    batches: int = 0
    failures: int = 0


class Shipper:
    """One hall's log to one city database; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        hall_id: str,
        log_path: Path,
        dsn: str,
        *,
        batch: int = 5000,
        max_rate: float | None = None,
        idle: float = 0.5,
        backoff_max: float = 10.0,
        connect_timeout: float = 5.0,
        knock_every: float = 0.5,
    ) -> None:
        self.hall_id = hall_id
        self.log_path = log_path
        self.dsn = dsn
        self.batch = batch
        self.max_rate = max_rate
        self.idle = idle
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.knock_every = knock_every
        self.mark_file = mark_path(log_path)
        self.target = describe_dsn(dsn)
        self.stats = ShipStats()
        self.cursor: int | None = None  # as the city database last told us
        self._log: EventLog | None = None
        self._conn: psycopg.Connection | None = None
        self._days: set[str] = set()

    def close(self) -> None:
        self._disconnect()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _entries(self, after: int) -> list[tuple[Any, ...]]:
        if self._log is None:
            try:
                self._log = EventLog.reader(self.log_path)
            except FileNotFoundError:
                return []  # the coordinator has not started yet: nothing to ship
        return self._log.entries_after(after, self.batch)

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
                self.cursor = None

    def _connect(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        pg = import_psycopg()
        from city.migrate import MigrationError, require_current

        try:
            # keepalives: a city link that dies without a reset is noticed in ~25 s, and a
            # statement that hangs is cut at 60 s, so the shipper never blocks for good
            conn: psycopg.Connection = pg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=max(1, int(self.connect_timeout)),
                application_name=f"hallq-ship-{self.hall_id}",
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                options="-c statement_timeout=60000",
            )
        except pg.Error as exc:
            raise CityUnavailable(f"cannot connect to {self.target}: {exc}".strip()) from exc
        try:
            require_current(conn)
            conn.execute(
                "INSERT INTO halls (hall_id) VALUES (%s) ON CONFLICT DO NOTHING", (self.hall_id,)
            )
            row = conn.execute(
                "SELECT shipped_seq FROM halls WHERE hall_id = %s", (self.hall_id,)
            ).fetchone()
        except MigrationError:
            conn.close()
            raise
        except pg.Error as exc:
            conn.close()
            raise CityUnavailable(f"{self.target}: {exc}") from exc
        self._conn = conn
        assert row is not None  # the INSERT above made the row
        self.cursor = int(row[0])
        log.info("shipping hall %s to %s from entry %d", self.hall_id, self.target, self.cursor)
        return conn

    def _ensure_days(self, conn: psycopg.Connection, days: Iterable[str]) -> None:
        for day in sorted(set(days) - self._days):
            conn.execute("SELECT hallq_ensure_day(%s)", (day,))
            self._days.add(day)

    def ship_once(self) -> int:
        """Ship up to one batch; returns how many entries went (0: nothing to ship).

        Raises CityUnavailable when the database fails; the batch is then not in."""
        psycopg = import_psycopg()
        try:
            conn = self._connect()
            assert self.cursor is not None
            rows = self._entries(self.cursor)
            if not rows:
                return 0
            if rows[0][0] != self.cursor + 1:
                log.warning(
                    "event log entries %d..%d are not in the log (pruned before they "
                    "were shipped?)",
                    self.cursor + 1,
                    rows[0][0] - 1,
                )
            self._ensure_days(conn, (r[3] for r in rows))
            with conn.transaction():
                held = conn.execute(
                    "SELECT shipped_seq FROM halls WHERE hall_id = %s FOR UPDATE", (self.hall_id,)
                ).fetchone()
                now_at = int(held[0]) if held else 0
                if now_at != self.cursor:
                    # another shipper (or a restored database) moved it: start from there
                    log.warning(
                        "city cursor for %s is %d, expected %d; following it",
                        self.hall_id,
                        now_at,
                        self.cursor,
                    )
                    self.cursor = now_at
                    return 0
                with conn.cursor().copy(COPY_SQL) as copy:
                    for row in rows:
                        copy.write_row(city_row(self.hall_id, row))
                last = rows[-1]
                conn.execute(
                    "UPDATE halls SET shipped_seq = %s, shipped_at = %s, updated = now() "
                    "WHERE hall_id = %s",
                    (last[0], dt.datetime.fromtimestamp(last[4], _UTC), self.hall_id),
                )
        except psycopg.Error as exc:
            self._disconnect()
            raise CityUnavailable(f"{self.target}: {str(exc).strip()}") from exc
        self.cursor = int(rows[-1][0])
        self.stats.shipped += len(rows)
        self.stats.batches += 1
        self._write_mark(None)
        return len(rows)

    def _write_mark(self, error: str | None) -> None:
        seq = self.cursor
        if seq is None:  # not connected: keep the last known position
            from coordinator.shipmark import read_mark

            try:
                old = read_mark(self.mark_file)
            except ValueError:
                old = None
            seq = old.seq if old else 0
        write_mark(self.mark_file, ShipMark(seq, time.time(), error, self.target))

    def batches(self, stop: threading.Event) -> Iterator[int]:
        """Ship until ``stop``; yields each batch's size (0 when idle or after a failure)."""
        delay = 1.0
        while not stop.is_set():
            started = time.monotonic()
            try:
                n = self.ship_once()
            except CityUnavailable as exc:
                self.stats.failures += 1
                log.warning("city database unavailable (retrying in %.0f s): %s", delay, exc)
                self._write_mark(str(exc))
                yield 0
                if self._wait_knocking(stop, delay):
                    delay = 1.0  # the database answers again: retry now, not a backoff later
                else:
                    delay = min(delay * 2, self.backoff_max)
                continue
            delay = 1.0
            yield n
            if n == 0:
                stop.wait(self.idle)
            elif self.max_rate:
                stop.wait(max(0.0, n / self.max_rate - (time.monotonic() - started)))

    def _wait_knocking(self, stop: threading.Event, delay: float) -> bool:
        """Wait ``delay`` before the next attempt, knocking on the database's port every
        ``knock_every`` seconds meanwhile; True as soon as it answers, so the city is
        caught up about a second after the link returns, not a 10 s backoff later."""
        address = knock_address(self.dsn)
        timeout = min(1.0, self.connect_timeout)
        if address is not None and database_answers(address, timeout):
            address = None  # it answers: the failure is not the link (a login, the schema)
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            if stop.wait(min(left, self.knock_every)):
                return False
            if address is not None and time.monotonic() < end:
                if database_answers(address, timeout):
                    return True
        return False

    def run(
        self, stop: threading.Event, report_every: float = 60.0, notifier: Notifier | None = None
    ) -> None:
        """Ship until ``stop``; under systemd, READY at once (the hall does not wait for the
        city), a watchdog ping per batch or idle turn, and the lag as the unit's status."""
        next_report = time.monotonic() + report_every
        if notifier is not None:
            notifier.ready(f"shipping to {self.target}")
        for _ in self.batches(stop):
            if notifier is not None:
                notifier.ping()
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + report_every
                if self._log is None:
                    continue
                behind = lag(
                    self._log, None if self.cursor is None else ShipMark(self.cursor, time.time())
                )
                log.info(
                    "shipped %d entries in %d batches; %d behind (%.0f s)",
                    self.stats.shipped,
                    self.stats.batches,
                    behind.events,
                    behind.seconds,
                )
                if notifier is not None:
                    notifier.status(f"{behind.events} entries, {behind.seconds:.0f} s behind")
