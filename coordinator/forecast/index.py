"""The comfort index itself: 30 days of forecast arrivals by half hour, with their levels.

``build_forecast`` is the one call the coordinator and the CLI make. It prefers the hall's
own event log; when the log holds fewer than ``min_weeks`` weeks (a new install, a demo) it
fits a generated history instead and says so in ``source``, because a forecast from a
fortnight of data would put the filing-period peak on the wrong days.

Levels (``level_by``): by default ``"waits"``, each open forecast day is simulated
(``waits.simulate_waits``: 4 days at its forecast counts per half hour, on the hall's
dispatch core) and each hour, half hour and the day are classed by the mean simulated wait
of the tickets issued in them, so the backlog a morning leaves counts (Liwan, forecast
deadline Friday 22 May 2026: 11:30 sees 1,542 arrivals/h, 适中 by rate, but waits ~24
min). ``"rates"`` classes them by their arrival rate against the hall's rate thresholds
(``levels.thresholds``), as before; it is also what a hall that cannot be simulated gets.
The thresholds are computed either way: the retained message carries them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coordinator.forecast.hall_calendar import Calendar
from coordinator.forecast.history import (
    History,
    Stopped,
    count_arrivals,
    generate_history,
    issue_times,
)
from coordinator.forecast.levels import (
    LEVEL_BY,
    QUIET,
    Level,
    LevelBy,
    SimulationUnavailable,
    Thresholds,
    thresholds,
    wait_level,
)
from coordinator.forecast.model import Fit, fit
from coordinator.forecast.waits import (
    REPLICATIONS,
    SimulatedWaits,
    load_simulation,
    simulate_waits,
)
from hallq import messages as m
from hallq.config import HallConfig

__all__ = ["MIN_WEEKS", "Forecast", "HourRow", "build_forecast", "forecast_from"]

log = logging.getLogger("hallq.forecast")

MIN_WEEKS = 8  # two filing periods: the least that separates them from weekday effects


@dataclass(frozen=True)
class HourRow:
    """One open hour of a forecast day (the export's row)."""

    day: dt.date
    hour: int
    count: float
    level: Level
    wait_min: float | None = None  # mean simulated wait, when levels are by waits


@dataclass(frozen=True, eq=False)
class Forecast:
    """Expected arrivals per (day, half hour) from ``start``; zero rows are closed days.
    With ``waits`` (simulated days for each open day) levels are by simulated wait, else
    by rate against ``thresholds``."""

    cfg: HallConfig
    start: dt.date
    slots: tuple[int, ...]
    open_min: tuple[float, ...]
    mean: np.ndarray
    thresholds: Thresholds
    fit: Fit
    source: str
    history_weeks: float
    waits: SimulatedWaits | None = None
    days: list[dt.date] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "days", [self.start + dt.timedelta(days=i) for i in range(self.mean.shape[0])]
        )

    def is_open(self, day: dt.date) -> bool:
        """The hall opens on ``day``: an open weekday or a 调休 working day, and not one of
        the hall calendar's closed days."""
        return self.fit.is_open(day)

    def _row(self, day: dt.date) -> int:
        row = (day - self.start).days
        if not 0 <= row < len(self.days):
            raise ValueError(f"{day} is outside the forecast ({self.start} to {self.days[-1]})")
        return row

    @property
    def level_by(self) -> LevelBy:
        """What the levels come from: ``"waits"`` (simulated) or ``"rates"``."""
        return "rates" if self.waits is None else "waits"

    def _wait_level(self, wait_min: float) -> Level:
        th = self.thresholds
        return wait_level(
            wait_min, quiet_wait_min=th.quiet_wait_min, busy_wait_min=th.busy_wait_min
        )

    def slot_level(self, day: dt.date, slot: int) -> Level:
        """The level of one half hour: the mean simulated wait of the tickets issued in
        it, or (levels by rates) its rate per open hour against the thresholds."""
        j, row = self.slots.index(slot), self._row(day)
        if self.waits is not None:
            return self._wait_level(self.waits.mean_wait(row, [j]))
        return self.thresholds.level(self.mean[row, j] / self.open_min[j] * 60)

    def day_level(self, day: dt.date) -> Level:
        """A day's level, the one word a board shows all day: the mean simulated wait of
        all its tickets, or (levels by rates) its mean rate over the opening hours. A
        closed day is 较少 (nobody waits)."""
        if not self.is_open(day):
            return QUIET
        row = self._row(day)
        if self.waits is not None:
            return self._wait_level(self.waits.mean_wait(row))
        total = float(self.mean[row].sum())
        return self.thresholds.level(total / sum(self.open_min) * 60)

    def day_wait(self, day: dt.date) -> float | None:
        """The day's mean simulated wait (minutes); None when levels are by rates."""
        return None if self.waits is None else self.waits.mean_wait(self._row(day))

    def level_at(self, ts: float) -> Level:
        """The level of the half hour holding epoch ``ts`` (hall time); 较少 when the hall
        is closed then. Raises ValueError outside the forecast's days."""
        local = dt.datetime.fromtimestamp(ts, self.cfg.hall.tzinfo)
        day = self.cfg.hall.business_day(ts)
        self._row(day)
        slot = (local.hour * 60 + local.minute) // 30 * 30
        if slot not in self.slots or not self.is_open(day):
            return QUIET
        return self.slot_level(day, slot)

    def today_level(self, now: float | dt.datetime) -> Level:
        """Today's (business day's) level, for the boards' scrolling line."""
        ts = now.timestamp() if isinstance(now, dt.datetime) else float(now)
        return self.day_level(self.cfg.hall.business_day(ts))

    def hourly(self) -> list[HourRow]:
        """Open hours of open days, with the hour's forecast count and level: the mean
        simulated wait of the tickets issued in the hour, or (levels by rates) the level of
        the hour's mean rate, so it agrees with the half hours' on a steady hour."""
        rows: list[HourRow] = []
        hours = sorted({s // 60 for s in self.slots})
        for i, d in enumerate(self.days):
            if not self.is_open(d):
                continue
            for h in hours:
                js = [j for j, s in enumerate(self.slots) if s // 60 == h]
                count = float(self.mean[i, js].sum())
                if self.waits is not None:
                    wait = self.waits.mean_wait(i, js)
                    rows.append(HourRow(d, h, count, self._wait_level(wait), wait))
                    continue
                minutes = sum(self.open_min[j] for j in js)
                rows.append(HourRow(d, h, count, self.thresholds.level(count / minutes * 60)))
        return rows

    def comfort_state(self, rev: int, today: dt.date) -> m.ComfortState:
        """The retained MQTT form, from ``today`` to the forecast's last day."""
        by_day: dict[dt.date, dict[int, HourRow]] = {}
        for r in self.hourly():
            by_day.setdefault(r.day, {})[r.hour] = r
        days = []
        for d in self.days:
            if d < today:
                continue
            rows = by_day.get(d, {})
            span = range(min(rows), max(rows) + 1) if rows else range(0)
            days.append(
                m.ComfortDay(
                    day=d,
                    open=self.is_open(d),
                    level=self.day_level(d),
                    first_hour=span.start,
                    hours=[rows[h].level if h in rows else None for h in span],
                    expected=[round(rows[h].count) if h in rows else 0 for h in span],
                )
            )
        th = self.thresholds
        return m.ComfortState(
            rev=rev,
            source=self.source[:200],
            quiet_below_per_hour=round(th.quiet_per_hour, 1),
            busy_from_per_hour=round(th.busy_per_hour, 1),
            method=self.method,
            days=days,
        )

    @property
    def method(self) -> str:
        """How the levels were found, in a word or two (the retained message's ``method``):
        ``"simulated waits"``, or the thresholds' method (``"simulated"``: rate edges from
        simulated days, ``"erlang"``)."""
        return "simulated waits" if self.waits is not None else self.thresholds.method

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the dashboard's chart and the retained MQTT message; with
        levels by waits, days and hours carry ``wait_min`` too."""
        waits = self.waits

        def day(i: int, d: dt.date) -> dict[str, Any]:
            out = {
                "date": d.isoformat(),
                "open": self.is_open(d),
                "count": round(float(self.mean[i].sum()), 1),
                "level": self.day_level(d),
            }
            if waits is not None and self.is_open(d):
                out["wait_min"] = round(waits.mean_wait(i), 2)
            return out

        def hour(r: HourRow) -> dict[str, Any]:
            out = {
                "date": r.day.isoformat(),
                "hour": r.hour,
                "count": round(r.count, 1),
                "level": r.level,
            }
            if r.wait_min is not None:
                out["wait_min"] = round(r.wait_min, 2)
            return out

        doc: dict[str, Any] = {
            "hall": self.cfg.hall.id,
            "source": self.source,
            "start": self.start.isoformat(),
            "level_by": self.level_by,
            "thresholds_per_hour": {
                "quiet_below": round(self.thresholds.quiet_per_hour, 1),
                "busy_from": round(self.thresholds.busy_per_hour, 1),
                "method": self.thresholds.method,
                "basis": self.thresholds.basis,
            },
            "days": [day(i, d) for i, d in enumerate(self.days)],
            "hours": [hour(r) for r in self.hourly()],
        }
        if waits is not None:
            doc["waits"] = {
                "replications": waits.replications,
                "policy": waits.policy,
                "quiet_below_min": self.thresholds.quiet_wait_min,
                "busy_from_min": self.thresholds.busy_wait_min,
            }
        return doc


def forecast_from(
    cfg: HallConfig,
    history: History,
    *,
    start: dt.date | None = None,
    days: int = 30,
    th: Thresholds | None = None,
    level_by: LevelBy = "waits",
    replications: int = REPLICATIONS,
    seed: int = 1,
) -> Forecast:
    """Fit ``history`` and forecast ``days`` days from ``start`` (default: the day after
    the history ends), both under the hall calendar in ``cfg`` (holidays closed, 调休
    days open, filing phases by each month's deadline). ``level_by="waits"`` simulates
    ``replications`` days per open day (seeds from ``seed`` and the date) for the levels;
    a hall that cannot be simulated logs a warning and gets levels by rates."""
    if level_by not in LEVEL_BY:
        raise ValueError(f"unknown level_by {level_by!r}: expected one of {', '.join(LEVEL_BY)}")
    model = fit(history, calendar=Calendar.of(cfg))
    start = start or history.end + dt.timedelta(days=1)
    span = [start + dt.timedelta(days=i) for i in range(days)]
    mean = model.mean(span)
    waits = None
    if level_by == "waits":
        try:
            waits = simulate_waits(
                cfg, history.slots, mean, span, replications=replications, seed=seed
            )
        except SimulationUnavailable as exc:
            log.warning(
                "comfort index for hall %s: cannot simulate the forecast days (%s); "
                "levels by rate thresholds instead",
                cfg.hall.id,
                exc,
            )
        else:
            log.info(
                "comfort index for hall %s: %d forecast days x %d simulated (%s core) in %.2f s",
                cfg.hall.id,
                int((mean.sum(axis=1) > 0).sum()),
                waits.replications,
                waits.core,
                waits.wall_s,
            )
    return Forecast(
        cfg,
        start,
        history.slots,
        history.open_min,
        mean,
        th or thresholds(cfg),
        model,
        history.source,
        history.weeks,
        waits,
    )


def build_forecast(
    cfg: HallConfig,
    *,
    log_path: str | Path | None = None,
    months_synthetic: int = 6,
    seed: int = 1,
    days: int = 30,
    start: dt.date | None = None,
    min_weeks: float = MIN_WEEKS,
    level_by: LevelBy = "waits",
    stop: threading.Event | None = None,
    run: Callable[[Callable[[], Forecast]], Forecast] | None = None,
) -> Forecast:
    """The hall's comfort forecast for ``days`` days from ``start`` (default today, hall
    time). Uses the event log at ``log_path`` when it holds at least ``min_weeks`` weeks,
    else a generated ``months_synthetic``-month history ending yesterday; ``source`` on
    the result says which (and why). ``level_by``: see :func:`forecast_from`. ``stop``
    set (a coordinator stopping) ends it with :class:`~.history.Stopped` before the
    simulated days, and while the log is read. ``run`` runs what holds the GIL for
    seconds (counting the log's tickets, the simulated days), given it as a call (the
    coordinator's: in a forked child); by default here. The log is read before, where
    this is called: a forked child must not open a database its parent has open."""
    first = start or dt.datetime.now(cfg.hall.tzinfo).date()
    rows: list[tuple[float]] | None = None
    reason = "no event log given"
    if log_path is not None and Path(log_path).exists():
        rows = issue_times(log_path, stop=stop)
        if stop is not None and stop.is_set():
            raise Stopped("forecast stopped")
    elif log_path is not None:
        reason = f"no event log at {log_path}"

    def compute() -> Forecast:
        why = reason
        if rows is not None and log_path is not None:
            history = count_arrivals(rows, cfg, log_path)
            if history.weeks >= min_weeks:
                return forecast_from(cfg, history, start=first, days=days, level_by=level_by)
            why = f"event log holds {history.weeks:.1f} weeks, fewer than {min_weeks:g}"
        made = generate_history(cfg, months_synthetic, seed, end=first - dt.timedelta(days=1))
        out = forecast_from(cfg, made, start=first, days=days, level_by=level_by)
        object.__setattr__(out, "source", f"{made.source} ({why})")
        return out

    if run is None:
        return compute()
    load_simulation()  # here: the child must import nothing (see load_simulation)
    return run(compute)
