"""How good is the forecast: held-out months against a seasonal-naive baseline.

Each of the last ``holdout_months`` calendar months is forecast from everything before it
(as the monthly export would have been), and compared with what came. The baseline is
what a supervisor would do by hand: for each weekday and half hour, the mean of the last
four such days before the month starts. Both are scored on the month's open days:
mean absolute error of half-hour counts, and how often the level (较少/适中/较多) of the
forecast matches the level of the actual count.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import numpy as np

from coordinator.forecast.history import History
from coordinator.forecast.levels import Thresholds, thresholds
from coordinator.forecast.model import fit
from hallq.config import HallConfig

__all__ = ["Evaluation", "evaluate", "seasonal_naive"]


@dataclass(frozen=True)
class Evaluation:
    """Scores over all held-out open half hours (``cells``) of ``months``."""

    months: tuple[str, ...]
    cells: int
    mae: float
    baseline_mae: float
    accuracy: float
    baseline_accuracy: float
    mean_count: float
    source: str

    def lines(self) -> list[str]:
        """The printed summary (the CLI and BENCHMARKS.md use the same words)."""
        head = (f"held-out months {', '.join(self.months)}: {self.cells} open half hours, "
                f"mean {self.mean_count:.1f} arrivals each ({self.source})")
        mae = f"MAE per half hour: model {self.mae:.2f}, seasonal-naive {self.baseline_mae:.2f}"
        if self.baseline_mae > 0:
            mae += f" ({(1 - self.mae / self.baseline_mae) * 100:+.0f}% better)"
        levels = (f"level accuracy: model {self.accuracy:.1%}, seasonal-naive "
                  f"{self.baseline_accuracy:.1%}")
        return [head, mae, levels]


def seasonal_naive(train: History, days: list[dt.date], weeks: int = 4) -> np.ndarray:
    """Per (day, half hour): the mean of the last ``weeks`` open same-weekday days of
    ``train`` (closed or holiday days, with no tickets, are skipped)."""
    totals = train.counts.sum(axis=1)
    out = np.zeros((len(days), len(train.slots)))
    for i, d in enumerate(days):
        rows = [r for r in range(len(train.days) - 1, -1, -1)
                if train.days[r].weekday() == d.weekday() and totals[r] > 0][:weeks]
        if rows:
            out[i] = train.counts[rows].mean(axis=0)
    return out


def _month_starts(history: History, n: int) -> list[dt.date]:
    months = sorted({(d.year, d.month) for d in history.days})
    starts = [max(dt.date(y, m, 1), history.start) for y, m in months[-n:]]
    return [s for s in starts if s > history.start]


def evaluate(cfg: HallConfig, history: History, *, holdout_months: int = 2,
             th: Thresholds | None = None) -> Evaluation:
    """Score the model and the baseline on the last ``holdout_months`` months."""
    th = th or thresholds(cfg)
    minutes = np.array(history.open_min)
    errs: list[np.ndarray] = []
    base_errs: list[np.ndarray] = []
    hits: list[np.ndarray] = []
    base_hits: list[np.ndarray] = []
    actuals: list[np.ndarray] = []
    starts = _month_starts(history, holdout_months)
    if not starts:
        raise ValueError("the history is too short to hold out a month")
    bounds = [*starts, history.end + dt.timedelta(days=1)]
    for a, b in itertools.pairwise(bounds):
        cut = (a - history.start).days
        train = History(history.start, history.slots, history.open_min,
                        history.counts[:cut], history.source)
        days = history.days[cut:(b - history.start).days]
        actual = history.counts[cut:cut + len(days)].astype(float)
        model = fit(train)
        pred = model.mean(days)
        base = seasonal_naive(train, days)
        open_rows = (actual.sum(axis=1) > 0) & np.array(
            [d.weekday() in model.open_weekdays for d in days], bool)
        act, pr, bs = actual[open_rows], pred[open_rows], base[open_rows]
        errs.append(np.abs(pr - act).ravel())
        base_errs.append(np.abs(bs - act).ravel())
        level = np.vectorize(th.level, otypes=[object])
        truth = level(act / minutes * 60)
        hits.append((level(pr / minutes * 60) == truth).ravel())
        base_hits.append((level(bs / minutes * 60) == truth).ravel())
        actuals.append(act.ravel())
    err, berr = np.concatenate(errs), np.concatenate(base_errs)
    return Evaluation(
        months=tuple(f"{s:%Y-%m}" for s in starts), cells=int(err.size),
        mae=float(err.mean()), baseline_mae=float(berr.mean()),
        accuracy=float(np.concatenate(hits).mean()),
        baseline_accuracy=float(np.concatenate(base_hits).mean()),
        mean_count=float(np.concatenate(actuals).mean()), source=history.source)
