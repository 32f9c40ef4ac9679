"""Arrival history: tickets issued per (day, half hour), from the event log or generated.

The comfort index is a forecast of demand, so its input is what people asked for: issued
tickets, counted by the half hour they were issued in (hall time). Rejected requests
(daily cap, per-person limit) are left out: they never joined a queue. Days run from the
first to the last day seen; a day with no tickets stays in as zeros, which the model reads
as a closed day (weekend, holiday) rather than as a day nobody came. Which days were
holidays or 调休 working weekends is the hall calendar's business (``hall_calendar``),
passed to the model next to the history.

``generate_history`` draws a synthetic history from the simulator's demand profile so the
demo and the tests have months of data on a fresh install. Its effects are the truth the
tests check the model against.
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coordinator.forecast.hall_calendar import Calendar, workday_factor
from coordinator.simulation.profile import (
    CALIBRATED_VOLUME,
    FILING_MEAN,
    Demand,
)
from hallq.config import HallConfig

__all__ = [
    "LIWAN_WINDOWS",
    "SYNTHETIC_TREND",
    "SYNTHETIC_WEEKDAY",
    "History",
    "Stopped",
    "arrival_counts",
    "count_arrivals",
    "generate_history",
    "issue_times",
    "open_slots",
]

SLOT_MIN = 30


class Stopped(RuntimeError):
    """The caller's stop flag was set while the log was read (a coordinator stopping)."""


# Weekday multipliers of the generated history (Mon=0): Monday carries the weekend's
# backlog, Friday afternoons thin out, Saturday is a skeleton service, Sunday closed.
SYNTHETIC_WEEKDAY = (1.20, 1.05, 1.00, 1.00, 0.90, 0.15, 0.0)
SYNTHETIC_TREND = 0.02  # +2% volume per month: more registered taxpayers every month
LIWAN_WINDOWS = 47  # the hall CALIBRATED_VOLUME was calibrated on


def open_slots(cfg: HallConfig) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Half hours (minute of day they start) that overlap the opening hours, and how many
    minutes of each are open: a 13:30 opening leaves the 13:00 slot closed, a 16:45
    closing leaves the 16:30 slot 15 minutes, and rates must use the open minutes."""
    open_min: dict[int, float] = {}
    for a, b in cfg.hall.open_hours:
        lo, hi = a.hour * 60 + a.minute, b.hour * 60 + b.minute
        for s in range(lo // SLOT_MIN * SLOT_MIN, hi, SLOT_MIN):
            overlap = min(hi, s + SLOT_MIN) - max(lo, s)
            if overlap > 0:
                open_min[s] = open_min.get(s, 0.0) + overlap
    slots = tuple(sorted(open_min))
    return slots, tuple(open_min[s] for s in slots)


@dataclass(frozen=True)
class History:
    """Issued tickets per day (rows, consecutive dates from ``start``) and half hour
    (columns, ``slots`` as minutes from midnight). ``source`` says where they came from."""

    start: dt.date
    slots: tuple[int, ...]
    open_min: tuple[float, ...]
    counts: np.ndarray  # (days, slots), integer counts
    source: str
    days: list[dt.date] = field(init=False)

    def __post_init__(self) -> None:
        n = self.counts.shape[0]
        object.__setattr__(self, "days", [self.start + dt.timedelta(days=i) for i in range(n)])

    @property
    def end(self) -> dt.date:
        """The last day held."""
        return self.start + dt.timedelta(days=self.counts.shape[0] - 1)

    @property
    def weeks(self) -> float:
        return float(self.counts.shape[0]) / 7

    def count(self, day: dt.date, hour: int, minute: int = 0) -> int:
        """Tickets issued on ``day`` in the half hour holding ``hour:minute``."""
        slot = (hour * 60 + minute) // SLOT_MIN * SLOT_MIN
        row = (day - self.start).days
        if not 0 <= row < self.counts.shape[0] or slot not in self.slots:
            return 0
        return int(self.counts[row, self.slots.index(slot)])

    def as_dict(self) -> dict[tuple[dt.date, int], int]:
        """``{(date, slot minute): count}`` for every cell, zeros included."""
        return {
            (d, s): int(self.counts[i, j])
            for i, d in enumerate(self.days)
            for j, s in enumerate(self.slots)
        }

    def split(self, test_days: int) -> tuple[History, History]:
        """The history before the last ``test_days`` days, and those days."""
        if not 0 < test_days < self.counts.shape[0]:
            raise ValueError(f"cannot hold out {test_days} of {self.counts.shape[0]} days")
        cut = self.counts.shape[0] - test_days
        return (
            History(self.start, self.slots, self.open_min, self.counts[:cut], self.source),
            History(self.days[cut], self.slots, self.open_min, self.counts[cut:], self.source),
        )


def arrival_counts(
    log_path: str | Path, cfg: HallConfig, *, stop: threading.Event | None = None
) -> History:
    """Count the tickets issued in the event log at ``log_path`` by (business day, half hour).

    The log is opened read-only, so this is safe next to a running coordinator (WAL lets
    readers in while it writes). Tickets issued in a half hour outside the opening hours
    (an offline dispenser catching up, a green channel opened early) get their own column.
    A long log takes seconds: once ``stop`` is set, the reading ends with :class:`Stopped`.
    """
    return count_arrivals(issue_times(log_path, stop=stop), cfg, log_path, stop=stop)


def issue_times(log_path: str | Path, *, stop: threading.Event | None = None) -> list[tuple[float]]:
    """When each ticket in the log at ``log_path`` was issued, in order: SQLite's part of
    :func:`arrival_counts` (the query runs without the GIL; the counting does not, and
    the coordinator does it in a forked child)."""
    uri = f"file:{Path(log_path).resolve()}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    if stop is not None:  # SQLite asks every 100k steps; a true answer interrupts the query
        db.set_progress_handler(stop.is_set, 100_000)
    try:
        rows = db.execute(
            "SELECT at FROM entries WHERE kind = 'ticket' AND json_extract(result, '$.ok') "
            "AND json_extract(result, '$.info') IS NOT NULL ORDER BY at"
        ).fetchall()
    except sqlite3.OperationalError:
        if stop is not None and stop.is_set():
            raise Stopped(f"reading {log_path} stopped") from None
        raise
    finally:
        db.close()
    return rows


def count_arrivals(
    rows: list[tuple[float]],
    cfg: HallConfig,
    log_path: str | Path,
    *,
    stop: threading.Event | None = None,
) -> History:
    """:func:`arrival_counts` of the issue times :func:`issue_times` read."""
    slots, open_min = open_slots(cfg)
    tz = cfg.hall.tzinfo
    cells: dict[tuple[dt.date, int], int] = {}
    for i, (at,) in enumerate(rows):
        if stop is not None and not i % 10_000 and stop.is_set():
            raise Stopped(f"counting {log_path} stopped")
        local = dt.datetime.fromtimestamp(float(at), tz)
        key = (
            cfg.hall.business_day(float(at)),
            (local.hour * 60 + local.minute) // SLOT_MIN * SLOT_MIN,
        )
        cells[key] = cells.get(key, 0) + 1
    extra = sorted({s for _, s in cells} - set(slots))
    if extra:
        merged = sorted(set(slots) | set(extra))
        minutes = dict(zip(slots, open_min, strict=True))
        slots, open_min = tuple(merged), tuple(minutes.get(s, float(SLOT_MIN)) for s in merged)
    if not cells:
        return History(
            cfg.hall.business_day(time.time()),
            slots,
            open_min,
            np.zeros((0, len(slots)), np.int64),
            f"event log {log_path}: no tickets",
        )
    first = min(d for d, _ in cells)
    last = max(d for d, _ in cells)
    counts = np.zeros(((last - first).days + 1, len(slots)), np.int64)
    for (d, s), n in cells.items():
        counts[(d - first).days, slots.index(s)] += n
    return History(
        first, slots, open_min, counts, f"event log {log_path}: {counts.shape[0] / 7:.1f} weeks"
    )


def synthetic_volume(cfg: HallConfig) -> float:
    """Expected tickets on an average filing-period Monday-to-Friday day: the calibrated
    Liwan volume scaled by the number of windows, so a small test hall is not swamped."""
    return CALIBRATED_VOLUME * len(cfg.windows) / LIWAN_WINDOWS


def synthetic_means(
    cfg: HallConfig,
    days: Sequence[dt.date],
    origin: dt.date,
    *,
    volume: float | None = None,
    trend: float = SYNTHETIC_TREND,
    weekday: Sequence[float] = SYNTHETIC_WEEKDAY,
) -> np.ndarray:
    """Expected arrivals per (day, open half hour) under the generator's known effects:
    ``volume`` x month trend x filing factor x weekday x half-hour profile share.

    The hall calendar (``hall.closed_days``, ``extra_workdays``, ``filing_deadlines``)
    applies: nobody comes on a closed day, an extra working day has the geometric mean of
    the Monday-to-Friday multipliers, and the filing factor follows each month's deadline.
    """
    slots, open_min = open_slots(cfg)
    demand = Demand.for_services([s.code for s in cfg.services])
    w = np.array([demand.weight_at(s) * m / SLOT_MIN for s, m in zip(slots, open_min, strict=True)])
    share = w / w.sum()
    base = synthetic_volume(cfg) if volume is None else volume
    cal = Calendar.of(cfg)
    extra = workday_factor(weekday)

    def day_weight(d: dt.date) -> float:
        if cal.is_closed(d):
            return 0.0
        return extra if cal.is_extra_workday(d) else weekday[d.weekday()]

    daily = np.array(
        [
            base
            * math.exp(trend * months_between(origin, d))
            * cal.filing_factor(d)
            / FILING_MEAN
            * day_weight(d)
            for d in days
        ]
    )
    arrivals: np.ndarray = daily[:, None] * share[None, :]
    return arrivals


def months_between(origin: dt.date, day: dt.date) -> float:
    """Months from ``origin`` to ``day`` as a real number (the trend's clock)."""
    return (day - origin).days / 30.4375


def generate_history(
    cfg: HallConfig,
    months: int = 6,
    seed: int = 1,
    *,
    end: dt.date | None = None,
    volume: float | None = None,
    trend: float = SYNTHETIC_TREND,
    weekday: Sequence[float] = SYNTHETIC_WEEKDAY,
) -> History:
    """A synthetic ``months``-month history ending on ``end`` (default yesterday, hall
    time): Poisson counts around :func:`synthetic_means`, the hall calendar included.
    Lunch is whatever the hall's opening hours close plus the profile's lull;
    deterministic for a seed."""
    if months < 1:
        raise ValueError("months must be at least 1")
    if end is None:
        end = dt.datetime.now(cfg.hall.tzinfo).date() - dt.timedelta(days=1)
    start = _months_back(end + dt.timedelta(days=1), months)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    means = synthetic_means(cfg, days, start, volume=volume, trend=trend, weekday=weekday)
    rng = np.random.default_rng(seed)
    counts = rng.poisson(means).astype(np.int64)
    slots, open_min = open_slots(cfg)
    return History(start, slots, open_min, counts, f"generated: {months} months, seed {seed}")


def _months_back(day: dt.date, months: int) -> dt.date:
    """The same day of the month ``months`` months earlier (clamped to the month's end)."""
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    m += 1
    last = (dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(y, m, min(day.day, last))
