"""Bureau dashboard queries over a month of 100 halls: p95 per query.

``--shipped`` halls' peak days (the logs ``bench/city_ingest.py`` caches) are shipped into a
fresh database and rolled up (``hallq_rollup_day``, timed). The month is then made from that
rollup: its rows copied to ``--halls`` halls and every workday of March 2026, each copy's
counts and waits scaled by a random factor (0.6-1.4), so the dashboard reads a month of
100 halls without shipping 70 M events first. Each query
of the dashboard then runs ``--rounds`` times on one connection.

Usage: python bench/city_kpi.py [--halls 100] [--shipped 10] [--rounds 50] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).parent))
from city_ingest import DAY, hall_id, logs

from city.kpi import comfort_month, kpis
from city.migrate import migrate
from city.ship import Shipper

MONTH = (dt.date(2026, 3, 1), dt.date(2026, 3, 31))


def workdays() -> list[dt.date]:
    d, out = MONTH[0], []
    while d <= MONTH[1]:
        if d.weekday() < 5:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def build_month(conn: psycopg.Connection, halls: int, shipped: int) -> int:
    conn.execute("CREATE TEMP TABLE seed AS SELECT * FROM kpi_hourly")
    conn.execute("DELETE FROM kpi_hourly")
    conn.execute("DELETE FROM kpi_daily")
    conn.execute("DELETE FROM kpi_hall_hour")
    for day in workdays():
        conn.execute(
            """INSERT INTO kpi_hourly
               SELECT %(day)s, 'hall-' || lpad(h::text, 3, '0'), s.service, s.hour,
                      round(s.issued * f)::int, round(s.called * f)::int,
                      round(s.finished * f)::int, s.wait_sum_s * f * f, s.wait_max_s * f
               FROM generate_series(0, %(halls)s - 1) h
               JOIN seed s ON s.hall_id = 'hall-' || lpad((h %% %(shipped)s)::text, 3, '0')
               CROSS JOIN LATERAL (SELECT 0.6 + 0.8 * random() + 0 * h AS f) r""",
            {"day": day, "halls": halls, "shipped": shipped},
        )
    for day in workdays():  # the coarser rollups, as hallq_rollup_day makes them
        conn.execute(
            """INSERT INTO kpi_daily SELECT day, hall_id, service, sum(issued), sum(called),
                   sum(finished), sum(wait_sum_s), max(wait_max_s)
               FROM kpi_hourly WHERE day = %(day)s GROUP BY day, hall_id, service;
               INSERT INTO kpi_hall_hour SELECT day, hall_id, hour, sum(issued), sum(called),
                   sum(finished), sum(wait_sum_s), max(wait_max_s)
               FROM kpi_hourly WHERE day = %(day)s GROUP BY day, hall_id, hour""".replace(
                "%(day)s", f"'{day.isoformat()}'"
            )
        )
    conn.execute("ANALYZE kpi_hourly")
    conn.execute("ANALYZE kpi_daily")
    conn.execute("ANALYZE kpi_hall_hour")
    row = conn.execute("SELECT count(*) FROM kpi_hourly").fetchone()
    return int(row[0]) if row else 0


def timed(fn: Any, rounds: int) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1000,
        "p95_ms": samples[min(len(samples) - 1, int(len(samples) * 0.95))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--halls", type=int, default=100)
    parser.add_argument("--shipped", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hallq-city-bench"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    paths = logs(args.cache, args.shipped, 9000.0, 15, 2)
    name = f"hallq_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(args.dsn, dbname=name)
    results: dict[str, Any] = {"halls": args.halls, "shipped_halls": args.shipped}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
            events = 0
            for i, path in enumerate(paths):
                shipper = Shipper(hall_id(i), path, dsn)
                while k := shipper.ship_once():
                    events += k
                shipper.close()
            t0 = time.perf_counter()
            conn.execute("SELECT hallq_rollup_day(%s)", (DAY,))
            results["rollup_events"] = events
            results["rollup_s"] = time.perf_counter() - t0
            results["kpi_rows"] = build_month(conn, args.halls, args.shipped)
            one_hall = hall_id(7)
            queries: dict[str, Callable[[], object]] = {
                "by_hall": lambda: kpis(conn, "hall", *MONTH),
                "by_day": lambda: kpis(conn, "day", *MONTH),
                "by_service": lambda: kpis(conn, "service", *MONTH),
                "by_hour": lambda: kpis(conn, "hour", *MONTH),
                "one_service_by_hour": lambda: kpis(conn, "hour", *MONTH, service="invoice"),
                "one_hall_by_day": lambda: kpis(conn, "day", *MONTH, hall=one_hall),
                "one_service_by_hall": lambda: kpis(conn, "hall", *MONTH, service="invoice"),
                "comfort_month": lambda: comfort_month(conn, MONTH[0]),
            }
            for q, fn in queries.items():
                fn()  # warm
                results[q] = timed(fn, args.rounds)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(
        f"rollup of {results['rollup_events']:,} shipped events ({args.shipped} halls' peak "
        f"day): {results['rollup_s']:.2f} s"
    )
    print(
        f"a month of {args.halls} halls: {results['kpi_rows']:,} kpi_hourly rows; "
        f"{args.rounds} runs per query"
    )
    worst = 0.0
    for q in (
        "by_hall",
        "by_day",
        "by_service",
        "by_hour",
        "one_service_by_hour",
        "one_hall_by_day",
        "one_service_by_hall",
        "comfort_month",
    ):
        r = results[q]
        worst = max(worst, r["p95_ms"])
        print(f"  {q:22s} p50 {r['p50_ms']:7.1f} ms   p95 {r['p95_ms']:7.1f} ms")
    results["worst_p95_ms"] = worst
    if args.json:
        print(json.dumps(results, default=lambda v: round(v, 3)))


if __name__ == "__main__":
    main()
