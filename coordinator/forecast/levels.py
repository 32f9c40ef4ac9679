"""From forecast arrivals to 较少 / 适中 / 较多: thresholds set by the wait they imply.

A count means nothing to a taxpayer; a wait does. Each level is a band of expected wait --
under 1 min you walk up to a window (较少), from the seed hall's mean wait (5.04 min) on it
is a busier-than-usual hall (较多) -- and the band edges are turned into arrival rates once
per hall, so a forecast cell can be classed by comparing its rate with two numbers.

The forecast no longer does so by default: it simulates each forecast day and classes a
cell by the wait of the tickets issued in it (``coordinator.forecast.waits``, the same
edges through :func:`wait_level`), because a rate cannot see backlog (below). The rate
thresholds remain the ``level_by="rates"`` option, the fallback for a hall whose forecast
days cannot be simulated, and the edges the retained message carries.

Two ways to find the rate at which the expected wait reaches an edge (``thresholds``'s
``method``):

``"simulated"`` (the default): the hall's own simulated days. The days of a filing month
-- each filing period (days 1-9, 10-15, 16-end) times each weekday Monday to Friday, at
the volumes the generated history uses (``history.synthetic_volume``: the calibrated
Liwan day scaled by windows, times the filing and weekday factors), with the seed half-hour
profile -- are played by the real dispatch core on the simulator's compiled day loop
(``coordinator.simulation.FastHall``). Every open half hour of every day gives a pair
(expected arrivals per hour in it, the wait of the tickets issued in it), which includes
the backlog a peak leaves behind. The expected wait at a rate is the ticket-weighted mean
over half hours near that rate (a Gaussian kernel 6% wide in rate), each day weighted by
how many such days a month has, made non-decreasing (isotonic regression) and read off by
linear interpolation where it crosses each edge (Liwan: 较少 below 1,289/h, 较多 from
1,635/h). Fixed seeds make it deterministic; the 30 days cost ~0.3 s with the compiled
core (~3 s pure), once per hall and process (cached).

The policy simulated is ``hallq``: the windows' configured skills scored by the dispatch
core, the hall as it actually runs, because the index tells taxpayers what they will meet.
``policy="fifo"`` (per-service FIFO with dedicated windows, the hall before hallq) is kept
for comparison with the Erlang method, which describes that policy.

``"erlang"``: a stationary approximation of per-service FIFO with dedicated windows (the
simulator's ``fifo`` policy): each service gets the windows
:func:`~coordinator.simulation.policies.dedicated_skills` gives it, its share of the
arrivals and its mean counter time, and waits as an M/M/c queue (Erlang C); the hall's
expected wait is the mix-weighted mean over services. Treating each half hour as if it
lasted forever ignores the backlog a peak leaves, and M/M/c with ~47 windows goes from no
wait to saturation within a few percent of load, so its 适中 band is narrow (Liwan:
1,348-1,459 arrivals/h). It needs no simulation and is the fallback when the hall cannot
be simulated (a service no window serves, no opening hours, a failing run).

What the simulated edges mean, and do not: they are the expected wait of a half hour at
that rate *averaged over the month's days*. A half hour after a peak waits far longer
than one at the same rate before it (Liwan, hallq, a deadline Monday of ~13,000
arrivals: 09:30 and 11:30 both see ~1,900 arrivals/h; 09:30 waits ~2 min, 11:30 ~57 min),
so a rate threshold cannot be right for every cell; it is right on average over the cells
at that rate (which is why the forecast now simulates its own days). With ``level_by="rates"``,
``Forecast.day_level`` applies the same edges to a day's mean rate; for Liwan
a day averaging the quiet edge (1,289/h) waits 1.0 min on average, one averaging the busy
edge (1,635/h) 8.7 min. The month's days are the generated history's; a hall whose real
volume differs much from it would get other edges from its own days (``volume``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from coordinator.simulation.policies import POLICIES, POLICY_NAMES, dedicated_skills, policy_skills
from coordinator.simulation.profile import SEED_MEAN_WAIT_MIN, Demand, filing_factor
from hallq.config import HallConfig

__all__ = [
    "BUSY",
    "LEVELS",
    "LEVEL_BY",
    "METHODS",
    "MODERATE",
    "QUIET",
    "Level",
    "LevelBy",
    "Method",
    "SimulationUnavailable",
    "Thresholds",
    "WaitCurve",
    "erlang_c_wait",
    "expected_wait",
    "simulated_wait_curve",
    "thresholds",
    "wait_level",
]

log = logging.getLogger("hallq.forecast")

Level = Literal["较少", "适中", "较多"]
QUIET: Level = "较少"
MODERATE: Level = "适中"
BUSY: Level = "较多"
LEVELS: tuple[Level, ...] = (QUIET, MODERATE, BUSY)

Method = Literal["simulated", "erlang"]
METHODS: tuple[Method, ...] = ("simulated", "erlang")

# What a forecast cell's level comes from: the simulated wait of its own day
# (``coordinator.forecast.waits``), or its rate against the thresholds here.
LevelBy = Literal["waits", "rates"]
LEVEL_BY: tuple[LevelBy, ...] = ("waits", "rates")

# Band edges in minutes of expected wait: under 1 min you walk up to a window (较少);
# from the seed hall's mean wait (5.04 min) on, it is a busier-than-usual hall (较多).
QUIET_WAIT_MIN = 1.0
BUSY_WAIT_MIN = SEED_MEAN_WAIT_MIN

# The simulated month: filing periods as (a day in it, days of an average month in it).
FILING_PERIODS = ((1, 9.0), (10, 6.0), (16, 365.25 / 12 - 15))
WORKDAYS = range(5)  # Monday to Friday (Saturday's skeleton service never queues)
REPLICATIONS = 2  # days drawn per (filing period, weekday): 30 days in all
KERNEL_WIDTH = 0.06  # Gaussian kernel sd in log rate: ~6% of the rate
GRID_POINTS = 241
STRESS_ROUNDS = 4  # heavier days added, x1.25 each, when no day reaches 较多
_CACHE_SIZE = 32


def wait_level(
    wait_min: float, *, quiet_wait_min: float = QUIET_WAIT_MIN, busy_wait_min: float = BUSY_WAIT_MIN
) -> Level:
    """The level of an expected wait itself (what the rate thresholds stand for): under
    ``quiet_wait_min`` 较少, from ``busy_wait_min`` 较多, 适中 between."""
    if wait_min < quiet_wait_min:
        return QUIET
    if wait_min < busy_wait_min:
        return MODERATE
    return BUSY


class SimulationUnavailable(ValueError):
    """The hall cannot be simulated for its thresholds (the reason is the message)."""


def erlang_c_wait(rate: float, mean_service: float, servers: int) -> float:
    """Mean wait in queue of M/M/c (same time unit as ``1/rate`` and ``mean_service``);
    infinite at or above full load. The Erlang B recursion keeps it stable for c ~ 50."""
    if rate <= 0:
        return 0.0
    if servers <= 0:
        return math.inf
    a = rate * mean_service
    if a >= servers:
        return math.inf
    b = 1.0
    for k in range(1, servers + 1):
        b = a * b / (k + a * b)
    rho = a / servers
    c = b / (1 - rho + rho * b)
    return c * mean_service / (servers - a)


@dataclass(frozen=True)
class Thresholds:
    """Arrivals per hour at which the expected wait reaches each band edge, and how that
    wait was found (``method``; ``basis`` says it in words for the table and the JSON)."""

    quiet_per_hour: float  # below: 较少
    busy_per_hour: float  # at or above: 较多
    quiet_wait_min: float
    busy_wait_min: float
    method: Method = "erlang"
    basis: str = "per-service FIFO, dedicated windows (Erlang C)"

    def level(self, per_hour: float) -> Level:
        if per_hour < self.quiet_per_hour:
            return QUIET
        if per_hour < self.busy_per_hour:
            return MODERATE
        return BUSY


@dataclass(frozen=True)
class WaitCurve:
    """Expected wait (minutes) against arrivals per hour, non-decreasing, from simulated
    days; zero wait at zero arrivals, the last wait held beyond the last rate."""

    rates: tuple[float, ...]  # per hour, increasing
    waits: tuple[float, ...]  # minutes, non-decreasing
    policy: str
    days: int  # days simulated
    wall_s: float = field(default=0.0, compare=False)  # what the simulation took

    def wait_at(self, per_hour: float) -> float:
        return float(np.interp(per_hour, (0.0, *self.rates), (0.0, *self.waits)))

    def rate_for(self, wait_min: float) -> float | None:
        """The lowest rate whose expected wait reaches ``wait_min`` (linear between grid
        points); None when no simulated rate gets there."""
        xs, ys = (0.0, *self.rates), (0.0, *self.waits)
        for i in range(1, len(xs)):
            if ys[i] >= wait_min:
                x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
                return x1 if y1 <= y0 else x0 + (wait_min - y0) / (y1 - y0) * (x1 - x0)
        return None


def _service_queues(cfg: HallConfig) -> list[tuple[float, float, int]]:
    """(share of arrivals, mean counter minutes, dedicated windows) per service."""
    demand = Demand.for_services([s.code for s in cfg.services])
    skills = dedicated_skills(cfg, demand)
    windows = {c: 0 for c in demand.mix}
    for served in skills.values():
        for c in served:
            windows[c] = windows.get(c, 0) + 1
    return [
        (demand.mix[c], demand.mean_min[c], windows[c]) for c in demand.mix if demand.mix[c] > 0
    ]


def expected_wait(cfg: HallConfig, per_hour: float) -> float:
    """Expected wait (minutes) at a steady ``per_hour`` arrivals, per-service FIFO, by
    Erlang C (the ``erlang`` method; the simulated one is :func:`simulated_wait_curve`)."""
    lam = per_hour / 60.0
    return sum(
        share * erlang_c_wait(lam * share, mean, c) for share, mean, c in _service_queues(cfg)
    )


def _erlang_thresholds(cfg: HallConfig, quiet_wait_min: float, busy_wait_min: float) -> Thresholds:
    """Invert :func:`expected_wait` (increasing in the rate) by bisection at both edges."""
    queues = _service_queues(cfg)
    # the hall saturates when its most loaded service does
    cap = min((c / (mean * share) for share, mean, c in queues if c > 0), default=0.0) * 60

    def rate_for(wait: float) -> float:
        lo, hi = 0.0, cap
        for _ in range(80):
            mid = (lo + hi) / 2
            if expected_wait(cfg, mid) < wait:
                lo = mid
            else:
                hi = mid
        return lo

    return Thresholds(
        rate_for(quiet_wait_min), rate_for(busy_wait_min), quiet_wait_min, busy_wait_min
    )


def thresholds(
    cfg: HallConfig,
    *,
    quiet_wait_min: float = QUIET_WAIT_MIN,
    busy_wait_min: float = BUSY_WAIT_MIN,
    method: Method = "simulated",
    policy: str = "hallq",
    volume: float | None = None,
) -> Thresholds:
    """The hall's band edges in arrivals per hour (see the module's docstring).

    ``method="simulated"`` reads them off :func:`simulated_wait_curve` for ``policy`` and
    ``volume`` (cached per hall and process); when the hall cannot be simulated it logs a
    warning and falls back to ``"erlang"``, and the result's ``method`` says which was used.
    """
    if not 0 < quiet_wait_min < busy_wait_min:
        raise ValueError("need 0 < quiet_wait_min < busy_wait_min")
    if method == "erlang":
        return _erlang_thresholds(cfg, quiet_wait_min, busy_wait_min)
    if method != "simulated":
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    try:
        curve = simulated_wait_curve(cfg, policy=policy, volume=volume, reach_min=busy_wait_min)
        quiet, busy = curve.rate_for(quiet_wait_min), curve.rate_for(busy_wait_min)
        if quiet is None or busy is None:  # reach_min makes this unreachable; be explicit
            raise SimulationUnavailable(f"no simulated day waits {busy_wait_min:g} min")
    except SimulationUnavailable as exc:
        log.warning(
            "comfort index for hall %s: cannot simulate (%s); thresholds from Erlang C instead",
            cfg.hall.id,
            exc,
        )
        erlang = _erlang_thresholds(cfg, quiet_wait_min, busy_wait_min)
        return replace(erlang, basis=f"{erlang.basis}; not simulated: {exc}")
    return Thresholds(
        quiet,
        busy,
        quiet_wait_min,
        busy_wait_min,
        "simulated",
        f"{POLICY_NAMES[policy]}, {curve.days} simulated days",
    )


# ------------------------------------------------------------------ simulated wait curve

_CURVES: OrderedDict[str, WaitCurve] = OrderedDict()


def _hall_key(cfg: HallConfig, *parts: Any) -> str:
    """What a simulated day depends on: hours, the engine's settings, services, windows."""
    doc = [
        cfg.hall.model_dump(mode="json", include={"timezone", "reset_time", "open_hours"}),
        cfg.coordinator.model_dump(
            mode="json",
            include={
                "overdue_boost",
                "max_recalls",
                "person_daily_limit",
                "carry_over",
                "default_service_min",
            },
        ),
        [s.model_dump(mode="json") for s in cfg.services],
        [w.model_dump(mode="json") for w in cfg.windows],
        [repr(p) for p in parts],
    ]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def simulated_wait_curve(
    cfg: HallConfig,
    *,
    policy: str = "hallq",
    replications: int = REPLICATIONS,
    seed: int = 1,
    volume: float | None = None,
    demand: Demand | None = None,
    reach_min: float = BUSY_WAIT_MIN,
) -> WaitCurve:
    """Expected wait against arrivals per hour from the hall's simulated month (see the
    module's docstring); cached per hall, arguments and process.

    ``volume`` is the average filing-period weekday (default: the generated history's,
    ``history.synthetic_volume``); ``demand`` the mix, counter times and half-hour profile
    (default: the seed's for the hall's services). When no day of the month reaches
    ``reach_min`` of expected wait, heavier days are added (x1.25, up to
    ``STRESS_ROUNDS`` times). Raises :class:`SimulationUnavailable` when the hall cannot
    be simulated or never reaches ``reach_min``.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: expected one of {', '.join(POLICIES)}")
    if replications < 1:
        raise ValueError("replications must be at least 1")
    key = _hall_key(cfg, policy, replications, seed, volume, demand, reach_min)
    if key in _CURVES:
        _CURVES.move_to_end(key)
        return _CURVES[key]
    curve = _simulate_curve(cfg, policy, replications, seed, volume, demand, reach_min)
    _CURVES[key] = curve
    while len(_CURVES) > _CACHE_SIZE:
        _CURVES.popitem(last=False)
    return curve


def _simulate_curve(
    cfg: HallConfig,
    policy: str,
    replications: int,
    seed: int,
    volume: float | None,
    demand: Demand | None,
    reach_min: float,
) -> WaitCurve:
    # imported here: the simulator's package may one day import the forecast's history
    from coordinator.dispatch import load_core
    from coordinator.forecast.history import (
        SYNTHETIC_WEEKDAY,
        open_slots,
        synthetic_volume,
    )
    from coordinator.simulation import sim_day
    from coordinator.simulation.day import sim_config
    from coordinator.simulation.profile import FILING_MEAN, draw_day, open_spans
    from coordinator.simulation.sites import SitesHall

    started = time.perf_counter()
    demand = demand or Demand.for_services([s.code for s in cfg.services])
    skills = policy_skills(cfg, demand, policy)
    served = {c for sk in skills.values() for c in sk}
    unserved = [c for c, share in demand.mix.items() if share > 0 and c not in served]
    if unserved:
        raise SimulationUnavailable(
            f"no window serves {', '.join(unserved)} under the {policy} policy"
        )
    slots, open_min = open_slots(cfg)
    spans = open_spans(cfg.hall.open_hours)
    if not slots or not spans:
        raise SimulationUnavailable("the hall has no opening hours")
    weight = np.array([demand.weight_at(s) * m / 30 for s, m in zip(slots, open_min, strict=True)])
    if weight.sum() <= 0:
        raise SimulationUnavailable("the demand profile puts no arrivals in the opening hours")
    # expected arrivals per hour in each open half hour, per arrival of the day
    per_hour = weight / weight.sum() / np.array(open_min) * 60
    base = synthetic_volume(cfg) if volume is None else volume
    if base <= 0:
        raise SimulationUnavailable("no arrivals to simulate")
    month = [
        (base * filing_factor(d) / FILING_MEAN * SYNTHETIC_WEEKDAY[wd], days / 5)
        for d, days in FILING_PERIODS
        for wd in WORKDAYS
    ]
    index = {s: j for j, s in enumerate(slots)}
    try:
        hall = SitesHall(sim_config(cfg), load_core(), skills, day=sim_day(None), spans=spans)
    except Exception as exc:  # a hall file the engine refuses (e.g. skills): say why
        raise SimulationUnavailable(f"{type(exc).__name__}: {exc}") from exc
    # one row per (day, half hour): rate, day weight, wait sum (min), tickets
    rows: list[tuple[np.ndarray, float, np.ndarray, np.ndarray]] = []

    def play(tag: str, vol: float, w: float) -> None:
        for r in range(replications):
            rng = random.Random(f"hallq-levels:{seed}:{tag}:{r}")
            day = hall.play(draw_day(demand, spans, volume=vol, rng=rng))
            total, count = np.zeros(len(slots)), np.zeros(len(slots))
            for start, (s, n) in day.wait_bins.items():
                j = index.get(int(start // 1800 * 30))
                if j is not None:
                    total[j] += s / 60
                    count[j] += n
            rows.append((vol * per_hour, w / replications, total, count))

    heaviest, mean_weight = max(v for v, _ in month), sum(w for _, w in month) / len(month)
    try:
        for k, (vol, w) in enumerate(month):
            play(f"month{k}", vol, w)
        rates, waits = _fit(rows)
        for k in range(1, STRESS_ROUNDS + 1):
            if waits[-1] >= reach_min:
                break
            play(f"stress{k}", heaviest * 1.25**k, mean_weight)
            rates, waits = _fit(rows)
    except SimulationUnavailable:
        raise
    except Exception as exc:  # a simulator failure must not cost the hall its index
        log.debug("comfort index: simulated day failed", exc_info=True)
        raise SimulationUnavailable(f"the simulator failed: {type(exc).__name__}: {exc}") from exc
    if waits[-1] < reach_min:
        raise SimulationUnavailable(
            f"even days of {heaviest * 1.25**STRESS_ROUNDS:.0f} "
            f"arrivals wait under {reach_min:g} min on average"
        )
    curve = WaitCurve(
        tuple(rates.tolist()),
        tuple(waits.tolist()),
        policy,
        len(rows),
        time.perf_counter() - started,
    )
    log.info(
        "comfort index for hall %s: %d days simulated (%s) in %.2f s",
        cfg.hall.id,
        curve.days,
        policy,
        curve.wall_s,
    )
    return curve


def _fit(
    rows: list[tuple[np.ndarray, float, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel mean of the waits per ticket on a log-rate grid, then made non-decreasing."""
    rate = np.concatenate([r for r, _, _, _ in rows])
    day_w = np.concatenate([np.full(len(r), w) for r, w, _, _ in rows])
    total = np.concatenate([t for _, _, t, _ in rows])
    count = np.concatenate([c for _, _, _, c in rows])
    keep = (count > 0) & (rate > 0)
    if not keep.any():
        raise SimulationUnavailable("no simulated ticket was served")
    x, w, total, count = np.log(rate[keep]), day_w[keep], total[keep], count[keep]
    grid = np.linspace(x.min(), x.max(), GRID_POINTS)
    k = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / KERNEL_WIDTH) ** 2) * w[None, :]
    tickets = k @ count
    mean = np.divide(k @ total, tickets, out=np.zeros_like(tickets), where=tickets > 0)
    return np.exp(grid), _isotonic(mean, tickets)


def _isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    means: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        means.append(yi)
        weights.append(wi)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, w2, n2 = means.pop(), weights.pop(), sizes.pop()
            m1, w1, n1 = means.pop(), weights.pop(), sizes.pop()
            wt = w1 + w2
            means.append((m1 * w1 + m2 * w2) / wt if wt > 0 else max(m1, m2))
            weights.append(wt)
            sizes.append(n1 + n2)
    return np.repeat(means, sizes)
