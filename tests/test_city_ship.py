"""Shipping a hall's event log to the city's PostgreSQL: ordered, exactly once, resumable.

Against a real PostgreSQL: a database of its own per test on the machine's server, and a
private cluster (tests.citydb) where the server is restarted or stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from city.replay import LogRow, hall_day, write_rows
from coordinator.eventlog import EventLog
from coordinator.shipmark import lag, mark_path, read_mark
from hallq.config import load_config

from .citydb import (
    PrivateCluster,
    city_dsn,
    create_database,
    dsn_with,
    private_pg,
    psycopg_module,
)
from .halls import small_hall_text

__all__ = ["city_dsn", "private_pg"]  # fixtures

ROOT = Path(__file__).resolve().parent.parent
LIWAN = ROOT / "examples" / "liwan.toml"
DAY = dt.date(2026, 3, 16)


def until(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def day_rows(volume: float = 600, day: dt.date = DAY, seed: int = 1) -> list[LogRow]:
    return list(hall_day(load_config(LIWAN), day, volume=volume, seed=seed))


def city_state(dsn: str, hall: str) -> dict[str, Any]:
    psycopg = psycopg_module()
    # one statement, one snapshot: a SIGKILLed shipper's COMMIT already sent still lands
    # after the process is gone, and between two statements it showed the cursor of one
    # state and the rows of the next (cursor 2100, 2800 rows)
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor, count, distinct, low, high = conn.execute(
            "SELECT (SELECT shipped_seq FROM halls WHERE hall_id = %s), count(*), "
            "count(DISTINCT seq), min(seq), max(seq) FROM events WHERE hall_id = %s",
            (hall, hall),
        ).fetchone()
    return {
        "cursor": cursor,
        "count": count,
        "distinct": distinct,
        "min": low,
        "max": high,
    }


def cursor_of(dsn: str, hall: str) -> int:
    psycopg = psycopg_module()
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT shipped_seq FROM halls WHERE hall_id = %s", (hall,)
            ).fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else 0


def assert_exactly(dsn: str, hall: str, n: int) -> None:
    """Entries 1..n are all in the city, once each, and the cursor says n."""
    assert city_state(dsn, hall) == {"cursor": n, "count": n, "distinct": n, "min": 1, "max": n}


def test_a_log_entry_becomes_a_row_the_bureau_can_group_by() -> None:
    from city.ship import city_row

    rows = day_rows(volume=50)
    issue, call = rows[1], rows[2]
    assert issue[5]  # both rows carry a payload and a result
    assert issue[6]
    assert call[5]
    assert call[6]
    r = city_row("liwan", (2, *issue))
    assert r[4:11] == (
        "ticket",
        "issue",
        json.loads(issue[5])["service"],
        None,
        json.loads(issue[6])["ticket"],
        True,
        issue[4],
    )
    c = city_row("liwan", (3, *call))
    assert c[5] == "call"
    assert c[7] == json.loads(call[5])["window"]
    assert c[6] == json.loads(call[6])["info"]["service"]  # the window command names none
    opened = city_row("liwan", (1, *rows[0]))
    assert opened[4:10] == ("day_open", None, None, None, None, None)
    assert opened[3] == dt.datetime.fromtimestamp(rows[0][3], dt.UTC)


def test_migrations_apply_once_and_refuse_an_edited_or_unknown_one(
    city_dsn: str, tmp_path: Path
) -> None:
    psycopg = psycopg_module()
    from city.migrate import MIGRATIONS_DIR, MigrationError, migrate, pending, require_current

    with psycopg.connect(city_dsn, autocommit=True) as conn:
        assert migrate(conn) == []  # the fixture migrated it already
        require_current(conn)
        edited = tmp_path / "edited"
        shutil.copytree(MIGRATIONS_DIR, edited)
        first = sorted(edited.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- changed\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            pending(conn, edited)
        older = tmp_path / "older"
        older.mkdir()
        with pytest.raises(MigrationError, match="newer hallq"):
            pending(conn, older)
        newer = tmp_path / "newer"
        shutil.copytree(MIGRATIONS_DIR, newer)
        n = len(list(newer.glob("*.sql")))
        (newer / f"{n + 1:04d}_extra.sql").write_text("CREATE TABLE extra (x int);")
        with pytest.raises(MigrationError, match="hallq city migrate"):
            require_current(conn, newer)
        assert [m.name for m in migrate(conn, newer)] == ["extra"]
        assert conn.execute("SELECT count(*) FROM extra").fetchone() == (0,)


def test_a_fresh_database_is_refused_until_migrated(tmp_path: Path) -> None:
    psycopg = psycopg_module()
    from city.migrate import MigrationError
    from city.ship import Shipper

    from .citydb import ADMIN_DSN, drop_database

    dsn = create_database(ADMIN_DSN)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE events, halls, schema_migrations")
            conn.execute("DROP FUNCTION hallq_ensure_day")
        write_rows(tmp_path / "log.sqlite", day_rows(volume=20))
        shipper = Shipper("liwan", tmp_path / "log.sqlite", dsn)
        with pytest.raises(MigrationError, match="hallq city migrate"):
            shipper.ship_once()
        shipper.close()
    finally:
        drop_database(ADMIN_DSN, dsn)


def test_entries_ship_in_order_once_and_a_new_shipper_resumes_from_the_city_cursor(
    city_dsn: str, tmp_path: Path
) -> None:
    from city.ship import Shipper

    log_path = tmp_path / "events-liwan.sqlite"
    rows = day_rows()
    write_rows(log_path, rows[:1000])
    # trust auth ignores the password; the mark and the logs must not show it
    shipper = Shipper("liwan", log_path, dsn_with(city_dsn, password="s3cret"), batch=300)
    assert [shipper.ship_once() for _ in range(5)] == [300, 300, 300, 100, 0]
    assert_exactly(city_dsn, "liwan", 1000)
    mark = read_mark(mark_path(log_path))
    assert mark is not None
    assert mark.seq == 1000
    assert mark.error is None
    assert "s3cret" not in mark.target
    assert mark.target.startswith("127.0.0.1:5432/hallq_test_")
    shipper.close()
    mark_path(log_path).unlink()  # the city's cursor is the truth, not the local mark

    write_rows(log_path, rows[1000:])
    again = Shipper("liwan", log_path, city_dsn, batch=5000)
    while again.ship_once():
        pass
    assert_exactly(city_dsn, "liwan", len(rows))
    log = EventLog(log_path)
    assert lag(log, read_mark(mark_path(log_path))).events == 0
    log.close()
    again.close()


def test_two_shippers_for_one_hall_never_store_an_entry_twice(
    city_dsn: str, tmp_path: Path
) -> None:
    from city.ship import Shipper

    log_path = tmp_path / "events-liwan.sqlite"
    rows = day_rows()
    write_rows(log_path, rows)
    a = Shipper("liwan", log_path, city_dsn, batch=250)
    b = Shipper("liwan", log_path, city_dsn, batch=400)
    a.ship_once()
    b.ship_once()  # connected, then a moves on behind its back
    errors: list[BaseException] = []

    def drain(s: Shipper) -> None:
        # until this one's cursor is at the end: a batch refused because the other moved
        # the city cursor also ships 0, so "0 three times" could stop both early
        deadline = time.monotonic() + 60
        try:
            while s.cursor != len(rows) and time.monotonic() < deadline:
                s.ship_once()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(s,)) for s in (a, b)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        a.close()
        b.close()
    assert errors == []
    assert_exactly(city_dsn, "liwan", len(rows))


def _ship_process(cfg_path: Path, log_path: Path, dsn: str, *extra: str) -> subprocess.Popen[str]:
    """``hallq ship`` as its own process; its output goes to ship.log beside the hall file."""
    env = {**os.environ, "HALLQ_CITY_DSN": dsn}
    with open(cfg_path.with_name("ship.log"), "a", encoding="utf-8") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hallqctl.cli",
                "ship",
                "--config",
                str(cfg_path),
                "--log",
                str(log_path),
                *extra,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _hall_file(tmp_path: Path) -> Path:
    path = tmp_path / "hall.toml"
    path.write_text(small_hall_text(state_dir=str(tmp_path / "state")), encoding="utf-8")
    return path


def test_a_sigkilled_shipper_restarts_where_the_city_cursor_is_losing_nothing(
    city_dsn: str, tmp_path: Path
) -> None:
    cfg_path = _hall_file(tmp_path)
    log_path = tmp_path / "events.sqlite"
    days = [day_rows(volume=3000, day=DAY + dt.timedelta(days=i)) for i in range(3)]
    write_rows(log_path, days[0] + days[1])
    first = len(days[0]) + len(days[1])
    proc = _ship_process(cfg_path, log_path, city_dsn, "--batch", "700")
    try:
        until(lambda: cursor_of(city_dsn, "test-hall") >= 2000, 60, "the first batches")
        proc.send_signal(signal.SIGKILL)  # most likely in the middle of a COPY
        proc.wait(10)
    finally:
        proc.kill()
    state = city_state(city_dsn, "test-hall")
    assert 2000 <= state["cursor"] < first, "killed after it had finished: no test"
    assert state == {
        "cursor": state["cursor"],
        "count": state["cursor"],
        "distinct": state["cursor"],
        "min": 1,
        "max": state["cursor"],
    }

    write_rows(log_path, days[2])  # the hall went on meanwhile
    total = first + len(days[2])
    proc = _ship_process(cfg_path, log_path, city_dsn, "--batch", "5000")
    try:
        until(lambda: cursor_of(city_dsn, "test-hall") == total, 60, "the catch-up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert_exactly(city_dsn, "test-hall", total)
    with __import__("psycopg").connect(city_dsn) as conn:
        partitions = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"
        ).fetchone()
    assert partitions == (3,)


def test_shipping_goes_on_across_a_postgresql_restart_losing_and_duplicating_nothing(
    private_pg: PrivateCluster, tmp_path: Path
) -> None:
    from city.ship import Shipper

    dsn = create_database(private_pg.admin_dsn)
    log_path = tmp_path / "events-liwan.sqlite"
    rows = day_rows(volume=4000)
    chunks = [rows[i : i + 2000] for i in range(0, len(rows), 2000)]
    shipper = Shipper("liwan", log_path, dsn, batch=500, idle=0.02, backoff_max=0.3)
    stop = threading.Event()
    sizes: list[int] = []
    thread = threading.Thread(target=lambda: sizes.extend(shipper.batches(stop)))
    write_rows(log_path, chunks[0])
    thread.start()
    try:
        written = len(chunks[0])
        for i, chunk in enumerate(chunks[1:]):
            low = written - 1500
            until(lambda: cursor_of(dsn, "liwan") >= low, 30, "shipping to go on")  # noqa: B023
            if i == len(chunks) // 3:
                private_pg.restart("immediate")  # a crash and recovery, transactions lost
            write_rows(log_path, chunk)
            written += len(chunk)
        until(lambda: cursor_of(dsn, "liwan") == len(rows), 60, "the last entry")
    finally:
        stop.set()
        thread.join(10)
        shipper.close()
    assert shipper.stats.failures >= 1, "the restart went unnoticed: no test"
    assert_exactly(dsn, "liwan", len(rows))


def test_a_hall_offline_for_an_hour_shows_its_lag_and_catches_up(
    private_pg: PrivateCluster, tmp_path: Path
) -> None:
    from city.ship import Shipper
    from hallqctl.status import city_link_line

    cfg_path = _hall_file(tmp_path)
    cfg = load_config(cfg_path)
    log_path = tmp_path / "state" / f"events-{cfg.hall.id}.sqlite"
    dsn = create_database(private_pg.admin_dsn)
    rows = day_rows(volume=9000)
    now = time.time()
    # the hour before now: the day's busiest hour, moved so that it ends now
    hour_start = rows[1][3] + 2 * 3600
    hour = [r for r in rows if hour_start <= r[3] < hour_start + 3600]
    shift = now - (hour_start + 3600)
    hour = [(k, c, d, at + shift, s, p, res) for k, c, d, at, s, p, res in hour]
    before, during = rows[:1], hour
    write_rows(log_path, before)
    shipper = Shipper(cfg.hall.id, log_path, dsn, idle=0.02, backoff_max=0.2, connect_timeout=1)
    assert shipper.ship_once() == 1
    shipper.close()

    private_pg.stop()
    write_rows(log_path, during)
    shipper = Shipper(cfg.hall.id, log_path, dsn, idle=0.02, backoff_max=0.2, connect_timeout=1)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: list(shipper.batches(stop)))
    thread.start()
    try:
        until(lambda: shipper.stats.failures >= 2, 30, "failed attempts")
        mark = read_mark(mark_path(log_path))
        assert mark is not None
        assert mark.error
        assert mark.seq == 1
        line = city_link_line(cfg)
        assert line is not None
        assert f"{len(during)} event(s)" in line
        seconds = float(line.split(", ")[1].split(" s")[0])
        assert 3500 < seconds < 3700 + (time.time() - now)
        assert "last attempt failed" in line

        private_pg.start()
        back = time.monotonic()
        until(lambda: cursor_of(dsn, cfg.hall.id) == 1 + len(during), 60, "the catch-up")
        print(
            f"caught up {len(during)} entries (an hour at peak) in "
            f"{time.monotonic() - back:.2f} s after the database came back"
        )
        until(
            lambda: (read_mark(mark_path(log_path)) or mark).error is None,
            10,
            "the mark to clear its error",
        )
    finally:
        stop.set()
        thread.join(10)
        shipper.close()
    assert_exactly(dsn, cfg.hall.id, 1 + len(during))
    line = city_link_line(cfg)
    assert line is not None
    assert "0 event(s), 0 s behind" in line
    assert "failed" not in line


def test_the_coordinator_reports_the_city_link_from_the_shippers_mark(tmp_path: Path) -> None:
    from coordinator.shipmark import ShipMark, write_mark
    from coordinator.web.server import city_link

    log_path = tmp_path / "events.sqlite"
    rows = day_rows(volume=40)
    write_rows(log_path, rows)
    log = EventLog(log_path)
    try:
        assert city_link(log) is None  # no shipper has run: a hall without the city
        write_mark(mark_path(log_path), ShipMark(10, time.time(), "connection refused", "db"))
        got = city_link(log)
        assert got is not None
        assert got.events == len(rows) - 10
        assert got.shipped_seq == 10
        assert got.error == "connection refused"
        assert got.seconds == pytest.approx(time.time() - rows[10][3], abs=5)
        mark_path(log_path).write_text("{not json")
        broken = city_link(log)
        assert broken is not None
        assert "not a ship mark" in (broken.error or "")
    finally:
        log.close()


def _with_identities(rows: list[LogRow]) -> list[LogRow]:
    """The replayed day with an ID hash on every issue and on a carried-over ticket, as a
    real hall's log has where the dispenser read an ID card."""
    out: list[LogRow] = []
    for kind, cmd_id, day, at, source, payload, result in rows:
        body = json.loads(payload)
        if kind == "day_open":
            body["carried"] = [{"number": "A001", "service": "tax-filing", "identity": "cd" * 32}]
        elif body.get("kind") == "issue":
            body["identity"] = "ab" * 32
        out.append((kind, cmd_id, day, at, source, json.dumps(body), result))
    return out


def test_identity_hashes_never_reach_the_city_database(city_dsn: str, tmp_path: Path) -> None:
    from city.ship import Shipper

    psycopg = psycopg_module()
    log_path = tmp_path / "events-liwan.sqlite"
    rows = _with_identities(day_rows(volume=100))
    assert sum('"identity"' in r[5] for r in rows) > 50
    write_rows(log_path, rows)
    shipper = Shipper("liwan", log_path, city_dsn, batch=5000)
    assert shipper.ship_once() == len(rows)
    shipper.close()
    with psycopg.connect(city_dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM events WHERE payload::text LIKE %s "
            "OR payload::text LIKE %s OR payload::text LIKE %s",
            ("%identity%", "%" + "ab" * 32 + "%", "%" + "cd" * 32 + "%"),
        ).fetchone()
        issued = conn.execute("SELECT count(*) FROM events WHERE op = 'issue'").fetchone()
        carried = conn.execute(
            "SELECT payload -> 'carried' -> 0 ->> 'number' FROM events WHERE kind = 'day_open'"
        ).fetchone()
    assert found == (0,)
    assert issued[0] > 50  # the rest of each entry is there
    assert carried == ("A001",)


def test_each_halls_login_may_write_only_its_own_rows_and_cursor(
    city_dsn: str, tmp_path: Path
) -> None:
    """``hallq city add-hall``'s roles: hall east's credentials ship east's log, and can
    neither store a row of west's nor move west's cursor."""
    import uuid

    from city.migrate import add_hall
    from city.ship import CityUnavailable, Shipper, city_row

    psycopg = psycopg_module()
    tag = uuid.uuid4().hex[:8]  # roles are the server's: unique per test run
    east, west = f"hall_east_{tag}", f"hall_west_{tag}"
    with psycopg.connect(city_dsn, autocommit=True) as admin:
        assert add_hall(admin, "east", east, "east-password")
        assert add_hall(admin, "west", west, "west-password")
        assert not add_hall(admin, "west", west)  # again: changes nothing
    try:
        east_dsn = dsn_with(city_dsn, user=east, password="east-password")
        west_dsn = dsn_with(city_dsn, user=west, password="west-password")
        rows = day_rows(volume=100)
        for hall, dsn in (("east", east_dsn), ("west", west_dsn)):
            write_rows(tmp_path / f"{hall}.sqlite", rows)
            shipper = Shipper(hall, tmp_path / f"{hall}.sqlite", dsn, batch=100)
            assert shipper.ship_once() == 100  # a new day's partition made on the way
            shipper.close()

        # east's credentials, shipping west's log: refused, nothing stored, cursor unmoved
        write_rows(tmp_path / "forged.sqlite", rows)
        forger = Shipper("west", tmp_path / "forged.sqlite", east_dsn, batch=100)
        with pytest.raises(CityUnavailable, match=r"row-level security|may write only"):
            forger.ship_once()
        forger.close()
        with psycopg.connect(east_dsn, autocommit=True) as conn:
            r = city_row("west", (101, *rows[100]))
            with (
                pytest.raises(psycopg.Error, match="may write only the rows of hall east, not"),
                conn.cursor().copy(
                    "COPY events (hall_id, seq, day, at, kind, source, payload) FROM STDIN"
                ) as copy,
            ):
                copy.write_row((r[0], r[1], r[2], r[3], r[4], r[10], r[12]))
            moved = conn.execute("UPDATE halls SET shipped_seq = 0 WHERE hall_id = 'west'").rowcount
            assert moved == 0  # west's cursor is not east's to move
            with pytest.raises(psycopg.Error, match="row-level security"):
                conn.execute("INSERT INTO halls (hall_id) VALUES ('north')")
            with pytest.raises(psycopg.Error, match="permission denied"):
                conn.execute("DELETE FROM events")
        assert city_state(city_dsn, "west") == {
            "cursor": 100,
            "count": 100,
            "distinct": 100,
            "min": 1,
            "max": 100,
        }
        assert city_state(city_dsn, "east")["count"] == 100
    finally:
        with psycopg.connect(city_dsn, autocommit=True) as admin:
            for role in (east, west):
                admin.execute(f'DROP OWNED BY "{role}"')
                admin.execute(f'DROP ROLE "{role}"')
