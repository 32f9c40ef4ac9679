"""City ingest: 100 simulated halls' peak days shipped into PostgreSQL, against raw COPY.

Each hall's peak filing day (the simulator's demand model at ``--volume``, scaled for day
``--day-of-month``; ``city.replay``) is written to its own SQLite event log, as the
coordinator would have left it. Then, in one run, into a fresh database of its own on the
same server:

- floor: the very rows the shipper would send, prepared beforehand (untimed), sent as one
  COPY per hall by ``--workers`` processes in lock step; only the COPYs are timed;
- hallq: ``city.ship.Shipper`` per hall, by the same number of processes: reading the log,
  extracting the columns, creating day partitions, COPY and the cursor, in transactions
  of ``--batch`` entries; timed by the wall clock from start to the last commit;
- catch-up: one hall whose link was down for its busiest hour ships that hour's backlog
  into the database now holding every hall's day, from a fresh shipper (connect, schema
  check, cursor) to the last commit.

The hall logs are cached under ``--cache`` (generating 100 days takes minutes).

Usage: python bench/city_ingest.py [--halls 100] [--workers 2] [--dsn ...] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from city.migrate import migrate
from city.replay import hall_day, write_rows
from city.ship import COPY_SQL, Shipper, city_row
from coordinator.eventlog import EventLog
from hallq.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DAY = dt.date(2026, 3, 16)


def hall_id(i: int) -> str:
    return f"hall-{i:03d}"


def _generate(args: tuple[Path, int, float, int]) -> int:
    path, i, volume, dom = args
    if path.exists():
        return 0
    cfg = load_config(ROOT / "examples" / "liwan.toml")
    tmp = path.with_suffix(".part")
    tmp.unlink(missing_ok=True)
    n = write_rows(tmp, hall_day(cfg, DAY, volume=volume, seed=i, day_of_month=dom))
    tmp.rename(path)
    return n


def logs(cache: Path, halls: int, volume: float, dom: int, workers: int) -> list[Path]:
    folder = cache / f"v{int(volume)}-d{dom}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{hall_id(i)}.sqlite" for i in range(halls)]
    todo = [(p, i, volume, dom) for i, p in enumerate(paths) if not p.exists()]
    if todo:
        print(f"generating {len(todo)} hall day(s) in {folder} ...", file=sys.stderr)
        with mp.Pool(workers) as pool:
            pool.map(_generate, todo)
    return paths


def rows_of(path: Path, hall: str) -> list[tuple[Any, ...]]:
    log = EventLog.reader(path)
    try:
        return [city_row(hall, r) for r in log.entries_after(0, 10**9)]
    finally:
        log.close()


def _floor_worker(dsn: str, jobs: list[tuple[int, Path]], barrier: Any, out: Any) -> None:
    spent = 0.0
    n = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i, path in jobs:
            rows = rows_of(path, hall_id(i))
            for day in sorted({r[2] for r in rows}):
                conn.execute("SELECT hallq_ensure_day(%s)", (day,))
            barrier.wait()
            t0 = time.perf_counter()
            with conn.transaction(), conn.cursor().copy(COPY_SQL) as copy:
                for row in rows:
                    copy.write_row(row)
            spent += time.perf_counter() - t0
            n += len(rows)
            barrier.wait()
    out.put((n, spent))


def floor(dsn: str, paths: list[Path], workers: int) -> tuple[int, float]:
    """Rows and seconds of the lock-step COPY rounds (the slowest worker's COPY per round
    bounds each round; summed per worker, the max is the wall time of the COPYs)."""
    per = [[(i, p) for i, p in enumerate(paths) if i % workers == w] for w in range(workers)]
    rounds = min(len(j) for j in per)
    extra = [j[rounds:] for j in per]
    per = [j[:rounds] for j in per]
    barrier = mp.Barrier(workers)
    out: Any = mp.Queue()
    procs = [
        mp.Process(target=_floor_worker, args=(dsn, per[w], barrier, out)) for w in range(workers)
    ]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    n = sum(r[0] for r in results)
    seconds = max(r[1] for r in results)
    for rest in extra:  # halls that did not divide evenly: COPY them alone
        if rest:
            one: Any = mp.Queue()
            proc = mp.Process(target=_floor_worker, args=(dsn, rest, mp.Barrier(1), one))
            proc.start()
            got = one.get()
            proc.join()
            n += got[0]
            seconds += got[1]
    return n, seconds


def _ship_worker(dsn: str, jobs: list[tuple[int, Path]], batch: int, out: Any) -> None:
    n = 0
    for i, path in jobs:
        shipper = Shipper(hall_id(i), path, dsn, batch=batch)
        try:
            while k := shipper.ship_once():
                n += k
        finally:
            shipper.close()
    out.put(n)


def ship_all(dsn: str, paths: list[Path], workers: int, batch: int) -> tuple[int, float]:
    per = [[(i, p) for i, p in enumerate(paths) if i % workers == w] for w in range(workers)]
    out: Any = mp.Queue()
    procs = [
        mp.Process(target=_ship_worker, args=(dsn, per[w], batch, out)) for w in range(workers)
    ]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    n = sum(out.get() for _ in procs)
    seconds = time.perf_counter() - t0
    for p in procs:
        p.join()
    return n, seconds


def catch_up(dsn: str, source: Path, folder: Path, batch: int) -> dict[str, float]:
    """The busiest hour of one hall's day as a backlog behind a shipped morning."""
    log = EventLog.reader(source)
    rows = [r[1:] for r in log.entries_after(0, 10**9)]
    log.close()
    hours: dict[int, int] = {}
    for r in rows:
        hours[int(r[3] // 3600)] = hours.get(int(r[3] // 3600), 0) + 1
    peak = max(hours, key=lambda h: hours[h]) * 3600
    path = folder / f"catchup-{uuid.uuid4().hex[:6]}.sqlite"
    write_rows(path, [r for r in rows if r[3] < peak])
    hall = "hall-catchup"
    shipper = Shipper(hall, path, dsn, batch=batch)
    while shipper.ship_once():
        pass
    shipper.close()
    backlog = [r for r in rows if peak <= r[3] < peak + 3600]
    write_rows(path, backlog)
    t0 = time.perf_counter()
    shipper = Shipper(hall, path, dsn, batch=batch)
    n = 0
    while k := shipper.ship_once():
        n += k
    seconds = time.perf_counter() - t0
    shipper.close()
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    assert n == len(backlog)
    return {"catchup_events": n, "catchup_s": seconds}


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events")
        conn.execute("DELETE FROM halls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--halls", type=int, default=100)
    parser.add_argument(
        "--volume",
        type=float,
        default=9000.0,
        help="expected tickets of an average filing-period day",
    )
    parser.add_argument(
        "--day-of-month",
        type=int,
        default=15,
        help="filing day whose factor scales the volume (15: the deadline)",
    )
    parser.add_argument("--workers", type=int, default=2, help="shipping processes at once")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument(
        "--dsn",
        default="host=127.0.0.1 port=5432 user=postgres dbname=postgres",
        help="a server where a database hallq_bench_<random> may be created",
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hallq-city-bench"))
    parser.add_argument("--json", action="store_true", help="print a JSON line at the end")
    args = parser.parse_args()

    paths = logs(args.cache, args.halls, args.volume, args.day_of_month, args.workers)
    name = f"hallq_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(args.dsn, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
        n_floor, s_floor = floor(dsn, paths, args.workers)
        reset(dsn)
        n_ship, s_ship = ship_all(dsn, paths, args.workers, args.batch)
        assert n_ship == n_floor, (n_ship, n_floor)
        with psycopg.connect(dsn, autocommit=True) as conn:
            stored = conn.execute("SELECT count(*) FROM events").fetchone()
        assert stored == (n_ship,), stored
        result: dict[str, Any] = {
            "halls": args.halls,
            "events": n_ship,
            "workers": args.workers,
            "floor_copy_eps": n_floor / s_floor,
            "hallq_ship_eps": n_ship / s_ship,
            "ratio": (n_ship / s_ship) / (n_floor / s_floor),
            "floor_s": s_floor,
            "ship_s": s_ship,
        }
        result |= catch_up(dsn, paths[0], paths[0].parent, args.batch)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(
        f"{result['halls']} halls, {result['events']:,} events of a peak day "
        f"({args.workers} shipping processes, batches of {args.batch})"
    )
    print(
        f"  raw COPY floor   {result['floor_copy_eps']:10,.0f} events/s "
        f"({result['floor_s']:.1f} s of COPY)"
    )
    print(
        f"  hallq shipping   {result['hallq_ship_eps']:10,.0f} events/s "
        f"({result['ship_s']:.1f} s)   ratio {result['ratio']:.2f} of the floor"
    )
    print(
        f"  catch-up of one hall's busiest hour: {result['catchup_events']:,} events in "
        f"{result['catchup_s']:.2f} s"
    )
    if args.json:
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()})
        )


if __name__ == "__main__":
    main()
