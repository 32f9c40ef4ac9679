"""Figures across replications: point estimates with 95% confidence intervals.

Each replication is one independent day, so a per-day figure (a day's mean wait, its p90,
its overtime) is one observation and the interval is Student's t over days -- the honest
interval for a handful of days, where pooling every ticket would pretend thousands of
correlated waits were independent.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from coordinator.simulation.day import SAMPLE_S, WAIT_BIN_S, DayResult

# two-sided 95% Student t quantiles by degrees of freedom; 1.96 beyond the table
_T95 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]
STATS = ("mean", "p50", "p90", "p95", "max")


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


@dataclass(frozen=True)
class Estimate:
    """Mean over replications and the half-width of its 95% interval (0 with one day)."""

    mean: float
    half: float

    @classmethod
    def of(cls, values: list[float]) -> Estimate:
        if not values:
            return cls(math.nan, math.nan)
        mean = statistics.fmean(values)
        if len(values) < 2:
            return cls(mean, 0.0)
        return cls(mean, t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    def to_dict(self, digits: int = 3) -> dict[str, Any]:
        return {
            "mean": _num(self.mean, digits),
            "ci95": [_num(self.low, digits), _num(self.high, digits)],
        }

    def text(self, digits: int = 2) -> str:
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


def _num(x: float, digits: int) -> float | None:
    return None if math.isnan(x) else round(x, digits)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (the figure staff would quote)."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def wait_stats(waits_s: list[float]) -> dict[str, float]:
    """Mean, p50, p90, p95, max wait in minutes of one day's served tickets."""
    xs = sorted(w / 60.0 for w in waits_s)
    if not xs:
        return dict.fromkeys(STATS, math.nan)
    return {
        "mean": statistics.fmean(xs),
        "p50": percentile(xs, 0.5),
        "p90": percentile(xs, 0.9),
        "p95": percentile(xs, 0.95),
        "max": xs[-1],
    }


@dataclass
class PolicyReport:
    """One policy over R days: waits per service and overall, windows, overtime, timeline."""

    policy: str
    name: str
    waits: dict[str, dict[str, Estimate]]  # service or "all" -> stat -> minutes
    utilisation: dict[int, Estimate]  # window -> busy share of open time
    overtime_min: Estimate
    served: Estimate
    no_shows: Estimate
    turned_away: dict[str, float]  # code -> mean per day
    queue: list[tuple[float, float]]  # (hour of day, mean tickets waiting)
    wait_by_issue: list[tuple[float, float]]  # (hour of day, mean wait min)
    skills: dict[int, dict[str, float]] = field(default_factory=dict)
    transferred: Estimate = Estimate(0.0, 0.0)
    booked: dict[str, Estimate] = field(default_factory=dict)  # stat -> min from slot start
    sites: dict[str, dict[str, Estimate]] = field(default_factory=dict)  # site -> stat -> min

    @classmethod
    def from_days(
        cls, policy: str, name: str, days: list[DayResult], skills: dict[int, dict[str, float]]
    ) -> PolicyReport:
        services = list(days[0].waits)
        per_day: dict[str, list[dict[str, float]]] = {"all": []}
        for d in days:
            per_day["all"].append(wait_stats([w for ws in d.waits.values() for w in ws]))
            for c in services:
                per_day.setdefault(c, []).append(wait_stats(d.waits[c]))
        waits = {
            key: {s: Estimate.of([x[s] for x in rows if not math.isnan(x[s])]) for s in STATS}
            for key, rows in per_day.items()
        }
        util = {w: Estimate.of([d.busy_s[w] / d.open_s for d in days]) for w in days[0].busy_s}
        turned: Counter[str] = Counter()
        for d in days:
            turned.update(d.turned_away)
        queue = _mean_series([dict(d.queue_samples) for d in days], SAMPLE_S)
        bins: dict[float, list[float]] = {}
        for d in days:
            for k, (total, count) in d.wait_bins.items():
                acc = bins.setdefault(k, [0.0, 0.0])
                acc[0] += total
                acc[1] += count
        wait_series = [(k / 3600.0, v[0] / v[1] / 60.0) for k, v in sorted(bins.items()) if v[1]]
        return cls(
            policy=policy,
            name=name,
            waits=waits,
            utilisation=util,
            overtime_min=Estimate.of([d.overtime_s / 60.0 for d in days]),
            served=Estimate.of([float(d.served) for d in days]),
            no_shows=Estimate.of([float(d.no_shows) for d in days]),
            turned_away={k: v / len(days) for k, v in sorted(turned.items())},
            queue=queue,
            wait_by_issue=[(h + WAIT_BIN_S / 7200.0, w) for h, w in wait_series],
            skills=skills,
            transferred=Estimate.of([float(d.transferred) for d in days]),
            booked=_booked(days),
            sites={
                site: {s: Estimate.of([x[s] for x in rows if not math.isnan(x[s])]) for s in STATS}
                for site in days[0].site_waits
                if (rows := [wait_stats(d.site_waits[site]) for d in days])
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "name": self.name,
            "wait_min": {k: {s: e.to_dict() for s, e in v.items()} for k, v in self.waits.items()},
            "utilisation": {str(w): e.to_dict() for w, e in self.utilisation.items()},
            "mean_utilisation": round(
                statistics.fmean(e.mean for e in self.utilisation.values()), 4
            ),
            "overtime_min": self.overtime_min.to_dict(),
            "served": self.served.to_dict(1),
            "no_shows": self.no_shows.to_dict(1),
            "turned_away_per_day": {k: round(v, 2) for k, v in self.turned_away.items()},
            "timeline": {
                "queue": [[round(h, 3), round(q, 2)] for h, q in self.queue],
                "wait_min_by_issue": [[round(h, 3), round(w, 2)] for h, w in self.wait_by_issue],
            },
            "skills": {str(w): s for w, s in self.skills.items()},
            "transferred": self.transferred.to_dict(1),
            "booked_wait_from_slot_min": {s: e.to_dict() for s, e in self.booked.items()},
            "wait_min_by_site": {
                k: {s: e.to_dict() for s, e in v.items()} for k, v in self.sites.items()
            },
        }


def _booked(days: list[DayResult]) -> dict[str, Estimate]:
    rows = [wait_stats(d.booked_waits) for d in days if d.booked_waits]
    return {s: Estimate.of([x[s] for x in rows]) for s in STATS} if rows else {}


def _mean_series(series: list[dict[float, int]], step: float) -> list[tuple[float, float]]:
    keys = sorted({k for s in series for k in s})
    return [(k / 3600.0, statistics.fmean(s.get(k, 0) for s in series)) for k in keys]


@dataclass
class SimulationReport:
    """Everything one ``run_simulation`` call found, for the CLI, JSON and the chart."""

    hall: str
    volume: float
    day_of_month: int | None
    replications: int
    seed: int
    core_kind: str
    no_show: float
    arrivals: Estimate
    policies: dict[str, PolicyReport]
    wall_s: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hall": self.hall,
            "volume": self.volume,
            "day_of_month": self.day_of_month,
            "replications": self.replications,
            "seed": self.seed,
            "core": self.core_kind,
            "no_show": self.no_show,
            "arrivals": self.arrivals.to_dict(1),
            "wall_s": round(self.wall_s, 3),
            "settings": self.settings,
            "policies": {k: p.to_dict() for k, p in self.policies.items()},
        }

    def to_json(self, **kwargs: Any) -> str:
        """JSON with NaN written as null, so any JSON reader takes it."""
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False, **kwargs)
