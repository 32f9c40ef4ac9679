"""Simulated halls' days as event-log entries, for the city benchmarks and tests.

Arrivals come from the hall simulator's demand model (``coordinator.simulation.profile``);
each is issued a ticket, called at the first free window that serves its service and
finished after its counter time, and each step is logged as the coordinator logs it: the
command as the wire encodes it and the result record ``HallQueue`` stores. Dispatch is
plain first-come first-served here: the shipping path cares about the entries' shape and
rate, not about which policy produced them.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coordinator.eventlog import EventLog
from coordinator.simulation.day import epoch_of
from coordinator.simulation.profile import Demand, day_factor, draw_day, open_spans
from hallq import messages as m
from hallq.config import HallConfig

# (kind, cmd_id, day, at, source, payload, result): EventLog's columns after seq
LogRow = tuple[str, str | None, str, float, str, str, str | None]


def _ts(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, dt.UTC)


def _record(ok: bool = True, ticket: str | None = None, info: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {"ok": ok, "error": None, "ticket": ticket, "info": info, "lease": None}, ensure_ascii=False
    )


def hall_day(
    cfg: HallConfig,
    day: dt.date,
    *,
    volume: float,
    seed: int | str = 1,
    day_of_month: int | None = None,
) -> Iterator[LogRow]:
    """One business day of ``cfg``'s hall as log rows in time order (day_open first)."""
    rng = random.Random(f"hallq-city:{cfg.hall.id}:{day}:{seed}")
    codes = [s.code for s in cfg.services]
    prefix = {s.code: s.prefix for s in cfg.services}
    spans = open_spans(cfg.hall.open_hours)
    arrivals = draw_day(
        Demand.for_services(codes), spans, volume=volume * day_factor(day_of_month), rng=rng
    )
    base = epoch_of(cfg, day)
    iso = day.isoformat()
    dispenser = next((a.id for a in cfg.agents if a.role == "dispenser"), "dispenser")
    pad = {
        w: f"window/{a.id}"
        for a in cfg.agents
        if a.role == "window"
        for w in cfg.windows_for_agent(a.id)
    }
    serves: dict[str, list[int]] = {c: [] for c in codes}
    for w in cfg.windows:
        for c in codes:
            if w.all_services or c in w.skills:
                serves[c].append(w.number)
    free_at = {w.number: base + spans[0][0] for w in cfg.windows}
    counters = dict.fromkeys(codes, 0)
    events: list[tuple[float, int, LogRow]] = []
    n = 0

    def add(at: float, row: LogRow) -> None:
        nonlocal n
        n += 1
        heapq.heappush(events, (at, n, row))

    yield (
        "day_open",
        None,
        iso,
        base + spans[0][0] - 600,
        "",
        json.dumps({"day": iso, "carried": []}),
        None,
    )
    for a in arrivals:
        if not serves[a.service]:
            continue
        t = base + a.t
        counters[a.service] += 1
        number = f"{prefix[a.service]}{counters[a.service]:04d}"
        issue = m.IssueRequest(kind="issue", service=a.service, ts=_ts(t))
        info = {"number": number, "service": a.service, "state": "waiting"}
        add(
            t,
            (
                "ticket",
                issue.id,
                iso,
                t,
                f"dispenser/{dispenser}",
                m.encode(issue).decode(),
                _record(ticket=number, info=info),
            ),
        )
        window = min(serves[a.service], key=lambda w: free_at[w])
        start = max(t, free_at[window]) + 5.0
        source = pad.get(window, f"supervisor/w{window}")
        call = m.WindowAction(window=window, action="call", ts=_ts(start))
        add(
            start,
            (
                "window",
                call.id,
                iso,
                start,
                source,
                m.encode(call).decode(),
                _record(ticket=number, info={**info, "state": "called"}),
            ),
        )
        end = start + (20.0 if a.no_show else a.service_s)
        finish = m.Finish(window=window, action="finish", ts=_ts(end))
        add(
            end,
            (
                "window",
                finish.id,
                iso,
                end,
                source,
                m.encode(finish).decode(),
                _record(ticket=number, info={**info, "state": "done"}),
            ),
        )
        free_at[window] = end
    while events:
        yield heapq.heappop(events)[2]


def write_rows(log_path: Path, rows: Iterator[LogRow] | list[LogRow]) -> int:
    """Append rows to an event log in one transaction (a replay, not a live hall: the
    coordinator's own appends are one durable transaction each)."""
    EventLog(log_path).close()  # the schema, as the coordinator creates it
    db = sqlite3.connect(log_path)
    try:
        with db:
            cur = db.executemany(
                "INSERT INTO entries (kind, cmd_id, day, at, source, payload, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return cur.rowcount
    finally:
        db.close()
