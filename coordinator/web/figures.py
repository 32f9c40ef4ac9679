"""A business day's figures from its tickets: the desk's KPIs against earlier days, and
the day and month reports.

Today's come from the live engine; a past day's from the engine replayed out of the event
log (``logged_day_engine``, the recovery path a restart takes), so the comparison is made
the same way on both sides and needs no second store. Replays are cached per day: a past
day no longer changes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import multiprocessing
import sqlite3
import statistics
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hallq.config import HallConfig
from hallq.messages import TicketState

__all__ = ["DayFigures", "FigureCache", "day_figures", "same_weekday_last_month"]

log = logging.getLogger("hallq.web")


def _mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 1) if xs else None


def _p90(xs: list[float]) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(0.9 * len(xs)))], 1)


@dataclass
class DayFigures:
    """What the desk and the reports show of one day (times in seconds)."""

    day: dt.date
    issued: int = 0
    served: int = 0
    no_show: int = 0
    avg_wait_s: float | None = None
    p90_wait_s: float | None = None
    avg_service_s: float | None = None
    rating: float | None = None
    rated: int = 0
    ratings: dict[int, int] = field(default_factory=dict)
    # service -> hour -> (tickets called, mean wait s)
    waits_by_hour: dict[str, dict[int, tuple[int, float]]] = field(default_factory=dict)
    # window -> (served, busy s)
    windows: dict[int, tuple[int, float]] = field(default_factory=dict)
    # service -> (issued, served, mean wait s | None, p90 wait s | None)
    services: dict[str, tuple[int, int, float | None, float | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Past:
    """What the figures need of one ticket of a past day (the replayed engine is let go)."""

    service: str
    state: TicketState
    window: int | None
    issued_at: float
    called_at: float | None
    started_at: float | None
    finished_at: float | None
    rating: int | None
    identity: str | None = None  # the keyed hash the ID reader gave, never the number
    appointment: str | None = None


def _as_of(t: Any, cutoff: float | None) -> Any:
    """``t`` as it stood at ``cutoff`` (None: as it is): what had not happened yet is
    taken back, so a day so far compares with earlier days at the same hour."""
    if cutoff is None:
        return t
    if t.finished_at is not None and t.finished_at <= cutoff:
        return t
    called = t.called_at if t.called_at is not None and t.called_at <= cutoff else None
    state = TicketState.WAITING if called is None else TicketState.SERVING
    return Past(t.service, state, t.window, t.issued_at, called, None, None, None)


def day_figures(
    day: dt.date, tickets: Iterable[Any], tz: dt.tzinfo, cutoff: float | None = None
) -> DayFigures:
    """One pass over a day's tickets (engine ``Ticket`` records or ``Past``), as they
    stood at ``cutoff`` (epoch s) when given."""
    out = DayFigures(day=day)
    if cutoff is not None:
        tickets = [
            _as_of(t, cutoff)
            for t in tickets
            if t.issued_at <= cutoff and t.state is not TicketState.VOIDED
        ]
    waits: list[float] = []
    took: list[float] = []
    rates: list[int] = []
    per_hour: dict[str, dict[int, list[float]]] = {}
    per_service: dict[str, tuple[list[int], list[float]]] = {}
    for t in tickets:
        if t.state is TicketState.VOIDED:  # nobody held it: as the engine's KPIs (the desk
            continue  # said 3608 issued where the hall page said 3545, a supervisor found)
        out.issued += 1
        counts, svc_waits = per_service.setdefault(t.service, ([0, 0], []))
        counts[0] += 1
        if t.state is TicketState.DONE:
            out.served += 1
            counts[1] += 1
        elif t.state is TicketState.NO_SHOW:
            out.no_show += 1
        if t.called_at is not None:
            wait = max(0.0, t.called_at - t.issued_at)
            waits.append(wait)
            svc_waits.append(wait)
            hour = dt.datetime.fromtimestamp(t.called_at, tz).hour
            per_hour.setdefault(t.service, {}).setdefault(hour, []).append(wait)
        if t.finished_at is not None:
            s = max(0.0, t.finished_at - (t.started_at or t.called_at or t.finished_at))
            took.append(s)
            if t.window is not None:
                n, busy = out.windows.get(t.window, (0, 0.0))
                done = 1 if t.state is TicketState.DONE else 0
                out.windows[t.window] = (n + done, busy + s)
        if t.rating is not None:
            rates.append(int(t.rating))
    out.avg_wait_s, out.p90_wait_s, out.avg_service_s = _mean(waits), _p90(waits), _mean(took)
    out.rated = len(rates)
    out.rating = round(statistics.fmean(rates), 2) if rates else None
    for r in rates:
        out.ratings[r] = out.ratings.get(r, 0) + 1
    out.waits_by_hour = {
        c: {h: (len(ws), statistics.fmean(ws)) for h, ws in sorted(hours.items())}
        for c, hours in per_hour.items()
    }
    out.services = {c: (n[0], n[1], _mean(ws), _p90(ws)) for c, (n, ws) in per_service.items()}
    return out


def same_weekday_last_month(day: dt.date) -> dt.date:
    """Four weeks back: the same weekday, in the previous month's rhythm (a Monday is
    compared with a Monday, the filing period's week with its week)."""
    return day - dt.timedelta(days=28)


def replay_tickets(
    log_path: Path, cfg: HallConfig, core: str, day: dt.date
) -> list[tuple[Any, ...]] | None:
    """A past day's tickets as ``Past`` fields, replayed from the log (None: no such day).
    Runs in the figures' worker process: a Liwan day takes seconds of pure Python, which
    must not hold the coordinator's GIL."""
    from coordinator.dispatch import load_core
    from coordinator.simulation.learn import logged_day_engine

    engine = logged_day_engine(log_path, cfg, load_core(core), day)
    if engine is None:
        return None
    return [
        (
            t.service,
            t.state.value,
            t.window,
            t.issued_at,
            t.called_at,
            t.started_at,
            t.finished_at,
            t.rating,
            t.identity,
            t.appointment,
        )
        for t in engine.tickets
    ]


def _past(row: Sequence[Any]) -> Past:
    return Past(row[0], TicketState(row[1]), *row[2:])


class FigureCache:
    """Past days' tickets, replayed once each from the event log in a worker process and
    kept beside the log (``<log>-days.sqlite``: a day closed never changes), so a restart
    does not replay them again. Concurrent askers share the one replay."""

    def __init__(
        self,
        cfg: HallConfig,
        log_path: Path,
        core_cls: type[Any],
        *,
        today: Any = None,
        on_ready: Any = None,
    ) -> None:
        from coordinator.dispatch import core_kind

        self.cfg, self.log_path = cfg, log_path
        self.core = core_kind(core_cls)
        self.today = today  # () -> the business day now: only days before it are kept
        self.on_ready = on_ready  # (day) -> None: a day was replayed (the desk refreshes)
        self.store_path = log_path.with_name(f"{log_path.stem}-days.sqlite")
        self._db: sqlite3.Connection | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._days: dict[dt.date, asyncio.Future[list[Past] | None]] = {}
        self._warming: set[asyncio.Task[list[Past] | None]] = set()

    def _store(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(self.store_path, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS days (day TEXT PRIMARY KEY, tickets TEXT NOT NULL)"
            )
            if self.today is not None:  # kept as long as the event log keeps its days
                keep = self.today() - dt.timedelta(days=self.cfg.coordinator.retention_days)
                self._db.execute("DELETE FROM days WHERE day < ?", (keep.isoformat(),))
        return self._db

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._db is not None:
            self._db.close()

    async def _replay(self, day: dt.date) -> list[Past] | None:
        try:
            row = (
                self._store()
                .execute("SELECT tickets FROM days WHERE day = ?", (day.isoformat(),))
                .fetchone()
            )
        except sqlite3.Error as exc:
            log.warning("figures store %s: %s", self.store_path, exc)
            row = None
        if row is not None:
            return [_past(r) for r in json.loads(row[0])]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(
            self._pool, replay_tickets, self.log_path, self.cfg, self.core, day
        )
        if rows is None:
            return None
        closed = self.today is None or day < self.today()
        if closed:
            try:
                self._store().execute(
                    "INSERT OR REPLACE INTO days VALUES (?, ?)", (day.isoformat(), json.dumps(rows))
                )
            except sqlite3.Error as exc:
                log.warning("figures store %s: %s", self.store_path, exc)
        return [_past(r) for r in rows]

    async def figures(self, day: dt.date, cutoff: float | None = None) -> DayFigures | None:
        """The day's figures (as they stood at ``cutoff``), replaying it if needed."""
        tickets = await self.get(day)
        if tickets is None:
            return None
        return day_figures(day, tickets, self.cfg.hall.tzinfo, cutoff)

    async def get(self, day: dt.date) -> list[Past] | None:
        found = self._days.get(day)
        if found is None:
            loop = asyncio.get_running_loop()
            found = self._days[day] = loop.create_future()
            try:
                found.set_result(await self._replay(day))
            except Exception as exc:  # a damaged day: no figures, the desk says "—"
                found.set_result(None)
                log.warning("no figures for %s: %s", day, exc)
            if self.on_ready is not None and found.result() is not None:
                self.on_ready(day)
        return await asyncio.shield(found)

    def ready(self, day: dt.date, cutoff: float | None = None) -> DayFigures | None:
        """The figures if replayed already (no waiting: the live desk never blocks on a
        replay; ``warm`` starts one)."""
        found = self._days.get(day)
        if found is None or not found.done() or found.result() is None:
            return None
        return day_figures(day, found.result() or [], self.cfg.hall.tzinfo, cutoff)

    def warm(self, day: dt.date) -> None:
        """Start a replay in the background if none has started."""
        if day not in self._days:
            task = asyncio.ensure_future(self.get(day))
            self._warming.add(task)
            task.add_done_callback(self._warming.discard)
