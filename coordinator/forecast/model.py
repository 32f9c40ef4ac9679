"""The arrival model: a Poisson GLM (log link) fitted by IRLS in numpy.

log E[count(day, half hour)] = intercept + trend x months + filing phase (the peak and
after the deadline, against the early days) + weekday (against the first open weekday) +
half hour (against the first open one). Multiplicative effects are how a hall thinks
("Mondays are 20% busier, the deadline week 40%"), and a Poisson likelihood weighs a
quiet half hour's 3 tickets properly, which least squares on log counts does not.
Twenty-odd parameters on a few thousand cells: IRLS converges in a handful of
iterations, no statsmodels needed.

Days with no tickets at all are closed days (weekends, holidays) and are left out of the
fit; a weekday closed on most of its days in the history is forecast closed.

The hall calendar (:class:`~coordinator.forecast.hall_calendar.Calendar`) refines that:
its closed days are left out of the fit and forecast closed whatever their weekday, its
extra working days (调休) are in and open, with the mean of the open Monday-to-Friday
effects (each of those weekday columns at 1/n), and the filing phases follow each
month's deadline. The phases keep the names of the default deadline's days: "filing
days 10-15" is the peak (the deadline and the 5 days before it), "days 16-end" after it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coordinator.forecast.hall_calendar import Calendar
from coordinator.forecast.history import History, months_between
from coordinator.simulation.profile import FILING_DEADLINE, filing_phase

__all__ = ["FILING_GROUPS", "Fit", "PoissonFitError", "filing_group", "fit"]

# 征期 phases (early, peak, after), named by their days under the default deadline (the
# 15th); a moved deadline moves them (``profile.filing_phase``).
FILING_GROUPS = ("days 1-9", "days 10-15", "days 16-end")
NO_CALENDAR = Calendar()
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class PoissonFitError(ValueError):
    """The history cannot support the model (too little of it, or nothing open)."""


def filing_group(day_of_month: int, deadline: int = FILING_DEADLINE) -> int:
    """0, 1, 2: early, peak, after (:func:`~coordinator.simulation.profile.filing_phase`)."""
    return filing_phase(day_of_month, deadline)


@dataclass(frozen=True)
class Fit:
    """Fitted coefficients (log scale) with their names, and what the design needs to
    predict: the trend's origin, the open weekdays, the half-hour columns and the hall
    calendar (closed and extra working days, filing deadlines)."""

    names: tuple[str, ...]
    coef: np.ndarray
    origin: dt.date
    slots: tuple[int, ...]
    open_weekdays: tuple[int, ...]
    iterations: int
    deviance: float
    calendar: Calendar = NO_CALENDAR

    def effect(self, name: str) -> float:
        """A coefficient by name (log scale); 0.0 for a reference level."""
        return float(self.coef[self.names.index(name)]) if name in self.names else 0.0

    def is_open(self, day: dt.date) -> bool:
        """Open on ``day``: an open weekday or an extra working day, and not closed."""
        return self.calendar.is_open(day, self.open_weekdays)

    def mean(self, days: Sequence[dt.date]) -> np.ndarray:
        """Expected arrivals per (day, half hour); zeros on closed days."""
        x = _design(days, self.origin, self.slots, self.open_weekdays, self.calendar)
        mu: np.ndarray = np.exp(np.clip(x @ self.coef, -30.0, 30.0))
        mu = mu.reshape(len(days), len(self.slots))
        closed = np.array([not self.is_open(d) for d in days], bool)
        mu[closed] = 0.0
        return mu


def _names(slots: Sequence[int], open_weekdays: Sequence[int]) -> tuple[str, ...]:
    return (
        "intercept",
        "trend/month",
        *(f"filing {g}" for g in FILING_GROUPS[1:]),
        *(f"weekday {WEEKDAYS[w]}" for w in open_weekdays[1:]),
        *(f"slot {s // 60:02d}:{s % 60:02d}" for s in slots[1:]),
    )


def _design(
    days: Sequence[dt.date],
    origin: dt.date,
    slots: Sequence[int],
    open_weekdays: Sequence[int],
    calendar: Calendar = NO_CALENDAR,
) -> np.ndarray:
    """One row per (day, half hour), day-major, columns as :func:`_names`."""
    n_s = len(slots)
    wd = list(open_weekdays)
    cols = 2 + 2 + max(0, len(wd) - 1) + (n_s - 1)
    # an extra working day: the mean of the open Monday-to-Friday effects
    workdays = [w for w in wd if w < 5] or wd
    per_day = np.zeros((len(days), cols))
    per_day[:, 0] = 1.0
    for i, d in enumerate(days):
        per_day[i, 1] = months_between(origin, d)
        g = calendar.phase(d)
        if g:
            per_day[i, 1 + g] = 1.0
        if calendar.is_extra_workday(d):
            for w in workdays:
                if w != wd[0]:  # the reference weekday's effect is 0
                    per_day[i, 4 + wd.index(w) - 1] = 1.0 / len(workdays)
        elif d.weekday() in wd[1:]:
            per_day[i, 4 + wd.index(d.weekday()) - 1] = 1.0
    x = np.repeat(per_day, n_s, axis=0)
    slot_cols = np.zeros((n_s, n_s - 1))
    slot_cols[np.arange(1, n_s), np.arange(n_s - 1)] = 1.0
    x[:, cols - (n_s - 1) :] = np.tile(slot_cols, (len(days), 1))
    return x


def open_weekdays(
    history: History, closed_share: float = 0.5, calendar: Calendar = NO_CALENDAR
) -> tuple[int, ...]:
    """Weekdays open on at least half their days in the history (a holiday Monday does
    not close Mondays; a hall that never opens Sundays does not get a Sunday forecast).
    The calendar's closed and extra working days do not count for their weekday."""
    totals = history.counts.sum(axis=1)
    out = []
    for w in range(7):
        mine = [
            t
            for d, t in zip(history.days, totals, strict=True)
            if d.weekday() == w and not calendar.is_closed(d) and not calendar.is_extra_workday(d)
        ]
        if mine and sum(t > 0 for t in mine) / len(mine) >= closed_share:
            out.append(w)
    return tuple(out)


def fit(
    history: History,
    *,
    calendar: Calendar = NO_CALENDAR,
    max_iter: int = 50,
    tol: float = 1e-9,
    ridge: float = 1e-6,
) -> Fit:
    """Fit the Poisson GLM to ``history``'s open days by iteratively reweighted least
    squares. A tiny ridge keeps a half hour with no tickets ever from diverging.
    ``calendar`` is the hall's: its closed days are left out even when they have tickets
    (a green channel opened on a holiday is not demand to forecast)."""
    weekdays = open_weekdays(history, calendar=calendar)
    if not weekdays:
        raise PoissonFitError("no open day in the history")
    totals = history.counts.sum(axis=1)
    keep = [
        i for i, d in enumerate(history.days) if totals[i] > 0 and calendar.is_open(d, weekdays)
    ]
    if len(keep) < 14:
        raise PoissonFitError(f"only {len(keep)} open days in the history; need 14")
    days = [history.days[i] for i in keep]
    y = history.counts[keep].reshape(-1).astype(float)
    x = _design(days, history.start, history.slots, weekdays, calendar)
    penalty = np.full(x.shape[1], ridge)
    penalty[0] = 0.0
    mu = y + 0.5
    eta = np.log(mu)
    beta = np.zeros(x.shape[1])
    dev_old = np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 -- the count is the fit's ``iterations``
        z = eta + (y - mu) / mu
        xw = x * mu[:, None]
        beta = np.linalg.solve(x.T @ xw + np.diag(penalty) * len(y), xw.T @ z)
        eta = np.clip(x @ beta, -30.0, 30.0)
        mu = np.exp(eta)
        dev = _deviance(y, mu)
        if abs(dev_old - dev) <= tol * (abs(dev) + 1.0):
            break
        dev_old = dev
    return Fit(
        _names(history.slots, weekdays),
        beta,
        history.start,
        history.slots,
        weekdays,
        it,
        float(_deviance(y, mu)),
        calendar,
    )


def _deviance(y: np.ndarray, mu: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(2.0 * np.sum(term - (y - mu)))
