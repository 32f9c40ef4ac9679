"""The comfort index itself: 30 days of forecast arrivals by half hour, with their levels.

``build_forecast`` is the one call the coordinator and the CLI make. It prefers the hall's
own event log; when the log holds fewer than ``min_weeks`` weeks (a new install, a demo) it
fits a generated history instead and says so in ``source``, because a forecast from a
fortnight of data would put the filing-period peak on the wrong days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coordinator.forecast.hall_calendar import Calendar
from coordinator.forecast.history import History, arrival_counts, generate_history
from coordinator.forecast.levels import QUIET, Level, Thresholds, thresholds
from coordinator.forecast.model import Fit, fit
from hallq import messages as m
from hallq.config import HallConfig

__all__ = ["MIN_WEEKS", "Forecast", "HourRow", "build_forecast", "forecast_from"]

MIN_WEEKS = 8  # two filing periods: the least that separates them from weekday effects


@dataclass(frozen=True)
class HourRow:
    """One open hour of a forecast day (the export's row)."""

    day: dt.date
    hour: int
    count: float
    level: Level


@dataclass(frozen=True, eq=False)
class Forecast:
    """Expected arrivals per (day, half hour) from ``start``; zero rows are closed days."""

    cfg: HallConfig
    start: dt.date
    slots: tuple[int, ...]
    open_min: tuple[float, ...]
    mean: np.ndarray
    thresholds: Thresholds
    fit: Fit
    source: str
    history_weeks: float
    days: list[dt.date] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", [self.start + dt.timedelta(days=i)
                                          for i in range(self.mean.shape[0])])

    def is_open(self, day: dt.date) -> bool:
        """The hall opens on ``day``: an open weekday or a 调休 working day, and not one of
        the hall calendar's closed days."""
        return self.fit.is_open(day)

    def _row(self, day: dt.date) -> int:
        row = (day - self.start).days
        if not 0 <= row < len(self.days):
            raise ValueError(f"{day} is outside the forecast ({self.start} to {self.days[-1]})")
        return row

    def slot_level(self, day: dt.date, slot: int) -> Level:
        """The level of one half hour: its rate per open hour against the thresholds."""
        j = self.slots.index(slot)
        return self.thresholds.level(self.mean[self._row(day), j] / self.open_min[j] * 60)

    def day_level(self, day: dt.date) -> Level:
        """A day's level from its mean rate over the opening hours: the one word a board
        shows all day. A closed day is 较少 (nobody waits)."""
        if not self.is_open(day):
            return QUIET
        total = float(self.mean[self._row(day)].sum())
        return self.thresholds.level(total / sum(self.open_min) * 60)

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
        """Open hours of open days, with the hour's forecast count and level (the level of
        the hour's mean rate, so it agrees with the half hours' on a steady hour)."""
        rows: list[HourRow] = []
        hours = sorted({s // 60 for s in self.slots})
        for i, d in enumerate(self.days):
            if not self.is_open(d):
                continue
            for h in hours:
                js = [j for j, s in enumerate(self.slots) if s // 60 == h]
                count = float(self.mean[i, js].sum())
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
            days.append(m.ComfortDay(
                day=d, open=self.is_open(d), level=self.day_level(d),
                first_hour=span.start, hours=[rows[h].level if h in rows else None for h in span],
                expected=[round(rows[h].count) if h in rows else 0 for h in span]))
        th = self.thresholds
        return m.ComfortState(rev=rev, source=self.source[:200],
                              quiet_below_per_hour=round(th.quiet_per_hour, 1),
                              busy_from_per_hour=round(th.busy_per_hour, 1),
                              method=th.method, days=days)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the dashboard's chart and the retained MQTT message."""
        return {
            "hall": self.cfg.hall.id, "source": self.source, "start": self.start.isoformat(),
            "thresholds_per_hour": {"quiet_below": round(self.thresholds.quiet_per_hour, 1),
                                    "busy_from": round(self.thresholds.busy_per_hour, 1),
                                    "method": self.thresholds.method,
                                    "basis": self.thresholds.basis},
            "days": [{"date": d.isoformat(), "open": self.is_open(d),
                      "count": round(float(self.mean[i].sum()), 1), "level": self.day_level(d)}
                     for i, d in enumerate(self.days)],
            "hours": [{"date": r.day.isoformat(), "hour": r.hour, "count": round(r.count, 1),
                       "level": r.level} for r in self.hourly()],
        }


def forecast_from(cfg: HallConfig, history: History, *, start: dt.date | None = None,
                  days: int = 30, th: Thresholds | None = None) -> Forecast:
    """Fit ``history`` and forecast ``days`` days from ``start`` (default: the day after
    the history ends), both under the hall calendar in ``cfg`` (holidays closed, 调休
    days open, filing phases by each month's deadline)."""
    model = fit(history, calendar=Calendar.of(cfg))
    start = start or history.end + dt.timedelta(days=1)
    span = [start + dt.timedelta(days=i) for i in range(days)]
    return Forecast(cfg, start, history.slots, history.open_min, model.mean(span),
                    th or thresholds(cfg), model, history.source, history.weeks)


def build_forecast(cfg: HallConfig, *, log_path: str | Path | None = None,
                   months_synthetic: int = 6, seed: int = 1, days: int = 30,
                   start: dt.date | None = None, min_weeks: float = MIN_WEEKS) -> Forecast:
    """The hall's comfort forecast for ``days`` days from ``start`` (default today, hall
    time). Uses the event log at ``log_path`` when it holds at least ``min_weeks`` weeks,
    else a generated ``months_synthetic``-month history ending yesterday; ``source`` on
    the result says which (and why)."""
    if start is None:
        start = dt.datetime.now(cfg.hall.tzinfo).date()
    reason = "no event log given"
    if log_path is not None and Path(log_path).exists():
        history = arrival_counts(log_path, cfg)
        if history.weeks >= min_weeks:
            return forecast_from(cfg, history, start=start, days=days)
        reason = f"event log holds {history.weeks:.1f} weeks, fewer than {min_weeks:g}"
    elif log_path is not None:
        reason = f"no event log at {log_path}"
    history = generate_history(cfg, months_synthetic, seed, end=start - dt.timedelta(days=1))
    out = forecast_from(cfg, history, start=start, days=days)
    object.__setattr__(out, "source", f"{history.source} ({reason})")
    return out
