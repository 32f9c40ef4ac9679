"""How good is the forecast: held-out months against a seasonal-naive baseline.

Each of the last ``holdout_months`` calendar months is forecast from everything before it
(as the monthly export would have been), and compared with what came. The baseline is
what a supervisor would do by hand: for each weekday and half hour, the mean of the last
four such days before the month starts, holidays and 调休 working weekends left out (a 调休
day is forecast as the mean of the last four weeks' Monday-to-Friday days, a holiday as
closed). Both are scored on the month's open days:
mean absolute error of half-hour counts, and how often the level (较少/适中/较多) of the
forecast matches the level of the actual count. Those scores cannot see a day forecast
open that was closed (a holiday) or the reverse, so the days each got wrong are counted
apart.

Levels are scored both ways, like for like. By rate thresholds, per half hour: the level
of the forecast rate against the level of the actual rate. By simulated waits (the index's
default, ``waits``), per open hour and per day: the actual counts, the model's forecast and
the baseline's are each played as days on the simulator (the same replications and seeds
for all three, so the same taxpayers), and each cell's level is the mean wait of the
tickets issued in it. Even a perfect forecast would not score 100% on waits: the same
counts played on other seeds give other waits near an edge.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coordinator.forecast.hall_calendar import Calendar
from coordinator.forecast.history import History
from coordinator.forecast.levels import (
    LEVEL_BY,
    LevelBy,
    SimulationUnavailable,
    Thresholds,
    thresholds,
    wait_level,
)
from coordinator.forecast.model import NO_CALENDAR, fit
from coordinator.forecast.waits import REPLICATIONS, SimulatedWaits, simulate_waits
from hallq.config import HallConfig

__all__ = ["Evaluation", "evaluate", "seasonal_naive"]

log = logging.getLogger("hallq.forecast")


@dataclass(frozen=True)
class Evaluation:
    """Scores over all held-out open half hours (``cells``) of ``months``; ``days`` held
    out, of which ``wrong_days`` (``baseline_wrong_days``) were forecast open but had no
    tickets, or forecast closed but had some. ``accuracy`` is by rate thresholds per half
    hour; ``wait_accuracy`` by simulated waits per open hour (``hours`` of them) and
    ``wait_day_accuracy`` per day (None when not simulated)."""

    months: tuple[str, ...]
    cells: int
    mae: float
    baseline_mae: float
    accuracy: float
    baseline_accuracy: float
    mean_count: float
    source: str
    days: int = 0
    wrong_days: int = 0
    baseline_wrong_days: int = 0
    hours: int = 0
    wait_accuracy: float | None = None
    baseline_wait_accuracy: float | None = None
    wait_day_accuracy: float | None = None
    baseline_wait_day_accuracy: float | None = None
    replications: int = 0

    def lines(self) -> list[str]:
        """The printed summary (the CLI and BENCHMARKS.md use the same words)."""
        head = (
            f"held-out months {', '.join(self.months)}: {self.cells} open half hours, "
            f"mean {self.mean_count:.1f} arrivals each ({self.source})"
        )
        mae = f"MAE per half hour: model {self.mae:.2f}, seasonal-naive {self.baseline_mae:.2f}"
        if self.baseline_mae > 0:
            mae += f" ({(1 - self.mae / self.baseline_mae) * 100:+.0f}% better)"
        levels = (
            f"level accuracy by rate thresholds, per half hour: model "
            f"{self.accuracy:.1%}, seasonal-naive {self.baseline_accuracy:.1%}"
        )
        wrong = (
            f"days forecast open but closed, or closed but open: model "
            f"{self.wrong_days}, seasonal-naive {self.baseline_wrong_days} "
            f"(of {self.days})"
        )
        out = [head, mae, levels]
        if self.wait_accuracy is not None and self.baseline_wait_accuracy is not None:
            out.append(
                f"level accuracy by simulated waits ({self.replications} days per "
                f"day), per open hour ({self.hours}): model {self.wait_accuracy:.1%}, "
                f"seasonal-naive {self.baseline_wait_accuracy:.1%}; per day: model "
                f"{self.wait_day_accuracy or 0:.1%}, seasonal-naive "
                f"{self.baseline_wait_day_accuracy or 0:.1%}"
            )
        return [*out, wrong]


def seasonal_naive(
    train: History, days: list[dt.date], weeks: int = 4, calendar: Calendar = NO_CALENDAR
) -> np.ndarray:
    """Per (day, half hour): the mean of the last ``weeks`` open same-weekday days of
    ``train``. Days with no tickets and the calendar's closed and extra working days are
    skipped; a closed day is forecast closed (zeros), an extra working day as the mean of
    the last ``weeks`` x 5 open Monday-to-Friday days."""
    totals = train.counts.sum(axis=1)
    usual = [
        r
        for r in range(len(train.days) - 1, -1, -1)
        if totals[r] > 0
        and not calendar.is_closed(train.days[r])
        and not calendar.is_extra_workday(train.days[r])
    ]
    out = np.zeros((len(days), len(train.slots)))
    for i, d in enumerate(days):
        if calendar.is_closed(d):
            continue
        if calendar.is_extra_workday(d):
            rows = [r for r in usual if train.days[r].weekday() < 5][: weeks * 5]
        else:
            rows = [r for r in usual if train.days[r].weekday() == d.weekday()][:weeks]
        if rows:
            out[i] = train.counts[rows].mean(axis=0)
    return out


@dataclass
class _WaitScores:
    """(model right, baseline right) per held-out open hour and day, each against the
    simulated-wait level of the actual counts."""

    hours: list[tuple[bool, bool]] = field(default_factory=list)
    days: list[tuple[bool, bool]] = field(default_factory=list)

    def add(
        self,
        th: Thresholds,
        sims: list[SimulatedWaits],
        hour_cols: list[list[int]],
        rows: list[int],
    ) -> None:
        """``sims``: the actual counts', the model's and the baseline's simulated days."""

        def levels(row: int, cols: list[int] | None) -> list[str]:
            return [
                wait_level(
                    w.mean_wait(row, cols),
                    quiet_wait_min=th.quiet_wait_min,
                    busy_wait_min=th.busy_wait_min,
                )
                for w in sims
            ]

        for i in rows:
            for cols in hour_cols:
                truth, model, base = levels(i, cols)
                self.hours.append((model == truth, base == truth))
            truth, model, base = levels(i, None)
            self.days.append((model == truth, base == truth))


def _month_starts(history: History, n: int) -> list[dt.date]:
    months = sorted({(d.year, d.month) for d in history.days})
    starts = [max(dt.date(y, m, 1), history.start) for y, m in months[-n:]]
    return [s for s in starts if s > history.start]


def evaluate(
    cfg: HallConfig,
    history: History,
    *,
    holdout_months: int = 2,
    th: Thresholds | None = None,
    level_by: LevelBy = "waits",
    replications: int = REPLICATIONS,
    seed: int = 1,
) -> Evaluation:
    """Score the model and the baseline on the last ``holdout_months`` months, both told
    the hall calendar in ``cfg``. Levels are scored by rate thresholds, and with
    ``level_by="waits"`` (the default) by simulated waits too, ``replications`` days per
    held-out day (seeds from ``seed`` and the date); a hall that cannot be simulated logs
    a warning and gets the rate scores only."""
    if level_by not in LEVEL_BY:
        raise ValueError(f"unknown level_by {level_by!r}: expected one of {', '.join(LEVEL_BY)}")
    th = th or thresholds(cfg)
    hour_cols = [
        [j for j, s in enumerate(history.slots) if s // 60 == h]
        for h in sorted({s // 60 for s in history.slots})
    ]
    scores = _WaitScores() if level_by == "waits" else None
    cal = Calendar.of(cfg)
    minutes = np.array(history.open_min)
    errs: list[np.ndarray] = []
    base_errs: list[np.ndarray] = []
    hits: list[np.ndarray] = []
    base_hits: list[np.ndarray] = []
    actuals: list[np.ndarray] = []
    n_days = wrong = base_wrong = 0
    starts = _month_starts(history, holdout_months)
    if not starts:
        raise ValueError("the history is too short to hold out a month")
    bounds = [*starts, history.end + dt.timedelta(days=1)]
    for a, b in itertools.pairwise(bounds):
        cut = (a - history.start).days
        train = History(
            history.start, history.slots, history.open_min, history.counts[:cut], history.source
        )
        days = history.days[cut : (b - history.start).days]
        actual = history.counts[cut : cut + len(days)].astype(float)
        model = fit(train, calendar=cal)
        pred = model.mean(days)
        base = seasonal_naive(train, days, calendar=cal)
        came = actual.sum(axis=1) > 0
        forecast_open = np.array([model.is_open(d) for d in days], bool)
        n_days += len(days)
        wrong += int((came != forecast_open).sum())
        base_wrong += int((came != (base.sum(axis=1) > 0)).sum())
        open_rows = came & forecast_open
        act, pr, bs = actual[open_rows], pred[open_rows], base[open_rows]
        errs.append(np.abs(pr - act).ravel())
        base_errs.append(np.abs(bs - act).ravel())
        level = np.vectorize(th.level, otypes=[object])
        truth = level(act / minutes * 60)
        hits.append((level(pr / minutes * 60) == truth).ravel())
        base_hits.append((level(bs / minutes * 60) == truth).ravel())
        actuals.append(act.ravel())
        if scores is None:
            continue
        try:
            sims = [
                simulate_waits(
                    cfg,
                    history.slots,
                    x * open_rows[:, None],
                    days,
                    replications=replications,
                    seed=seed,
                )
                for x in (actual, pred, base)
            ]
        except SimulationUnavailable as exc:
            log.warning(
                "comfort index for hall %s: cannot simulate the held-out days (%s); "
                "levels scored by rate thresholds only",
                cfg.hall.id,
                exc,
            )
            scores = None
        else:
            scores.add(th, sims, hour_cols, np.flatnonzero(open_rows).tolist())
    err, berr = np.concatenate(errs), np.concatenate(base_errs)
    by_wait: dict[str, Any] = {}
    if scores is not None and scores.hours:
        hours, days_ = np.array(scores.hours), np.array(scores.days)
        by_wait = {
            "hours": len(hours),
            "replications": replications,
            "wait_accuracy": float(hours[:, 0].mean()),
            "baseline_wait_accuracy": float(hours[:, 1].mean()),
            "wait_day_accuracy": float(days_[:, 0].mean()),
            "baseline_wait_day_accuracy": float(days_[:, 1].mean()),
        }
    return Evaluation(
        months=tuple(f"{s:%Y-%m}" for s in starts),
        cells=int(err.size),
        mae=float(err.mean()),
        baseline_mae=float(berr.mean()),
        accuracy=float(np.concatenate(hits).mean()),
        baseline_accuracy=float(np.concatenate(base_hits).mean()),
        mean_count=float(np.concatenate(actuals).mean()),
        source=history.source,
        days=n_days,
        wrong_days=wrong,
        baseline_wrong_days=base_wrong,
        **by_wait,
    )
