"""From forecast arrivals to 较少 / 适中 / 较多: thresholds set by the wait they imply.

A count means nothing to a taxpayer; a wait does. Each level is a band of expected wait,
and the band edges are turned into arrival rates once per hall, so a forecast cell is
classed by comparing its rate with two numbers.

The wait is a stationary approximation of per-service FIFO with dedicated windows (the
hall before hallq, and the simulator's ``fifo`` policy): each service gets the windows
:func:`~coordinator.simulation.policies.dedicated_skills` gives it, its share of the
arrivals (the demand mix) and its mean counter time (overall 1.63 min, the seed's), and
waits as an M/M/c queue (Erlang C). The hall's expected wait is the mix-weighted mean over
services. Treating each half hour as if it lasted forever ignores the backlog a peak
leaves behind, so it is optimistic in a peak and the levels lean to 较少; the 较多 edge is
therefore set at the seed hall's mean wait, where the simulator's real days are already
congested. Dispatch by hallq only ever makes the real wait shorter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from coordinator.simulation.policies import dedicated_skills
from coordinator.simulation.profile import SEED_MEAN_WAIT_MIN, Demand
from hallq.config import HallConfig

__all__ = ["BUSY", "LEVELS", "MODERATE", "QUIET", "Level", "Thresholds", "erlang_c_wait",
           "expected_wait", "thresholds"]

Level = Literal["较少", "适中", "较多"]
QUIET: Level = "较少"
MODERATE: Level = "适中"
BUSY: Level = "较多"
LEVELS: tuple[Level, ...] = (QUIET, MODERATE, BUSY)

# Band edges in minutes of expected wait: under 1 min you walk up to a window (较少);
# from the seed hall's mean wait (5.04 min) on, it is a busier-than-usual hall (较多).
QUIET_WAIT_MIN = 1.0
BUSY_WAIT_MIN = SEED_MEAN_WAIT_MIN


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
    """Arrivals per hour at which the expected wait reaches each band edge."""

    quiet_per_hour: float   # below: 较少
    busy_per_hour: float    # at or above: 较多
    quiet_wait_min: float
    busy_wait_min: float

    def level(self, per_hour: float) -> Level:
        if per_hour < self.quiet_per_hour:
            return QUIET
        if per_hour < self.busy_per_hour:
            return MODERATE
        return BUSY


def _service_queues(cfg: HallConfig) -> list[tuple[float, float, int]]:
    """(share of arrivals, mean counter minutes, dedicated windows) per service."""
    demand = Demand.for_services([s.code for s in cfg.services])
    skills = dedicated_skills(cfg, demand)
    windows = {c: 0 for c in demand.mix}
    for served in skills.values():
        for c in served:
            windows[c] = windows.get(c, 0) + 1
    return [(demand.mix[c], demand.mean_min[c], windows[c]) for c in demand.mix
            if demand.mix[c] > 0]


def expected_wait(cfg: HallConfig, per_hour: float) -> float:
    """Expected wait (minutes) at a steady ``per_hour`` arrivals, per-service FIFO."""
    lam = per_hour / 60.0
    return sum(share * erlang_c_wait(lam * share, mean, c)
               for share, mean, c in _service_queues(cfg))


def thresholds(cfg: HallConfig, *, quiet_wait_min: float = QUIET_WAIT_MIN,
               busy_wait_min: float = BUSY_WAIT_MIN) -> Thresholds:
    """Invert :func:`expected_wait` (increasing in the rate) by bisection at both edges."""
    if not 0 < quiet_wait_min < busy_wait_min:
        raise ValueError("need 0 < quiet_wait_min < busy_wait_min")
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

    return Thresholds(rate_for(quiet_wait_min), rate_for(busy_wait_min),
                      quiet_wait_min, busy_wait_min)
