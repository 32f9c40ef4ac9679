"""Levels from simulated waits: every open forecast day played on the hall's simulator.

A rate threshold (``levels``) classes a half hour by its arrivals per hour alone, so it
cannot see backlog: on a deadline Monday in Liwan, 09:30 and 11:30 both see ~1,900
arrivals/h, but the tickets issued at 09:30 wait ~2 min and those at 11:30 ~57 min, because
by 11:30 the morning's queue is still there. This module levels a day the direct way:
``replications`` days whose arrivals follow the day's own expected counts per half hour
are played by the real dispatch core on the simulator's compiled day loop
(``coordinator.simulation.FastHall``; a hall of several sites as their queues,
``sites.SitesHall``), and each hour is classed by the mean wait of the tickets issued in it
(the day: of all its tickets), with the same band edges as the rate thresholds: under 1 min
较少, from 5.04 min 较多. Liwan's deadline of May 2026 (Friday the
22nd, forecast from March and April): 11:30 sees 1,542 arrivals/h, under the busy edge
(1,635/h), but its tickets wait ~24 min.

Only served tickets have a wait: arrivals a daily cap or a service's hours turn away are
not in it (as in the simulated rate thresholds), and a half hour outside the opening
hours (a column an event log added) gets no arrivals, so no wait: 较少.

Arrivals come from :func:`draw_expected`: a non-homogeneous Poisson process, constant
within each half hour at that half hour's expected count (``profile.draw_day`` draws a day
of a given total volume along the seed profile instead, and is left as it was). Its draws
are common random numbers across days that differ only in their counts: the k-th
taxpayer (service, counter time) is the same person in the actual day, the model's
forecast and the seasonal-naive forecast of a date, arriving where each day's counts put
him. Seeds are (``seed``, date, replication): deterministic, and a date is simulated the
same way whatever else is in the forecast.

The compiled core is used when it is built, whatever ``HALLQ_DISPATCH`` says: both cores
pick the same tickets (``test_simulate`` holds both loops to the engine's day), and the
pure one plays a Liwan day in ~75 ms instead of ~2 ms: a Liwan month (22 open days, 4
replications) takes ~7 s pure and ~0.2 s compiled.
"""

from __future__ import annotations

import datetime as dt
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coordinator.forecast.levels import SimulationUnavailable
from coordinator.simulation.profile import DayArrivals, Demand, open_spans
from hallq.config import HallConfig

__all__ = ["REPLICATIONS", "SimulatedWaits", "draw_expected", "simulate_waits", "slot_pieces"]

REPLICATIONS = 4  # simulated days per forecast day
CHUNK = 1024  # points drawn at a time: the k-th taxpayer never depends on the day's total


def slot_pieces(
    slots: Sequence[int], spans: Sequence[tuple[float, float]]
) -> list[list[tuple[float, float]]]:
    """Per half hour (minute of day it starts), the parts of it the hall is open, as
    (start, end) seconds from midnight; empty for a half hour outside the opening hours."""
    out: list[list[tuple[float, float]]] = []
    for s in slots:
        lo, hi = s * 60.0, (s + 30) * 60.0
        out.append([(max(lo, a), min(hi, b)) for a, b in spans if min(hi, b) > max(lo, a)])
    return out


def draw_expected(
    demand: Demand, pieces: Sequence[tuple[float, float, float]], rng: np.random.Generator
) -> DayArrivals:
    """One day's arrivals from explicit expected counts: ``pieces`` are (start, end seconds
    from midnight, expected arrivals), in time order and not overlapping, and the arrivals
    are a Poisson process of constant rate within each piece; services by ``demand``'s mix,
    counter times lognormal by service as in ``profile.draw_day``; nobody leaves unserved,
    is transferred or booked.

    Drawn as the points of a unit-rate Poisson process mapped through the day's cumulative
    expected arrivals, each point carrying its own service and counter time, ``CHUNK``
    points at a time, so two days drawn from equally seeded generators share their
    taxpayers in order (common random numbers) whatever their counts.
    """
    codes = list(demand.mix)
    live = [(a, b, n) for a, b, n in pieces if b > a and n > 0]
    if not live:
        return DayArrivals(codes, array("d"), array("i"), array("d"), array("b"))
    starts = np.array([a for a, _, _ in live])
    widths = np.array([b - a for a, b, _ in live])
    counts = np.array([n for _, _, n in live])
    edges = np.concatenate(([0.0], np.cumsum(counts)))
    total = float(edges[-1])
    mix = np.cumsum([demand.mix[c] for c in codes])
    sigma = np.array([demand.sigma_of(c) for c in codes])
    mu = np.log(np.array([demand.mean_min[c] * 60 for c in codes])) - sigma**2 / 2
    cum, picks, normals = [], [], []
    reached = 0.0
    while reached < total:
        s = reached + np.cumsum(rng.standard_exponential(CHUNK))
        cum.append(s)
        picks.append(rng.random(CHUNK))
        normals.append(rng.standard_normal(CHUNK))
        reached = float(s[-1])
    point = np.concatenate(cum)
    n = int(np.searchsorted(point, total))
    point = point[:n]
    k = np.searchsorted(edges, point, side="right") - 1
    t = starts[k] + (point - edges[k]) / counts[k] * widths[k]
    u = np.concatenate(picks)[:n] * mix[-1]
    svc = np.minimum(np.searchsorted(mix, u, side="right"), len(codes) - 1)
    service_s = np.exp(mu[svc] + sigma[svc] * np.concatenate(normals)[:n])
    return DayArrivals(
        codes,
        array("d", t.astype(np.float64).tobytes()),
        array("i", svc.astype(np.intc).tobytes()),
        array("d", service_s.astype(np.float64).tobytes()),
        array("b", bytes(n)),
    )


@dataclass(frozen=True, eq=False)
class SimulatedWaits:
    """Waits of the tickets issued in each (forecast day, half hour): ``wait_sum`` minutes
    and ``tickets`` served, each summed over the ``replications`` days simulated for the
    day (zeros on a day not simulated: closed)."""

    slots: tuple[int, ...]
    wait_sum: np.ndarray  # (days, slots)
    tickets: np.ndarray  # (days, slots)
    replications: int
    policy: str
    core: str  # "compiled" or "pure"
    wall_s: float = 0.0

    def mean_wait(self, row: int, cols: Sequence[int] | None = None) -> float:
        """Mean wait (minutes) of the tickets issued on day ``row`` in half hours ``cols``
        (default: all day); 0.0 when none was issued."""
        sel = slice(None) if cols is None else list(cols)
        n = float(self.tickets[row, sel].sum())
        return float(self.wait_sum[row, sel].sum()) / n if n > 0 else 0.0

    def hour_waits(self, row: int) -> dict[int, float]:
        """Mean wait per hour of day ``row``, for the hours holding any slot."""
        hours = sorted({s // 60 for s in self.slots})
        return {
            h: self.mean_wait(row, [j for j, s in enumerate(self.slots) if s // 60 == h])
            for h in hours
        }


def load_simulation() -> None:
    """Import now what the simulated days import on first use (the dispatch core, the day
    loop, numpy's random module). They run in a forked child, which must import nothing:
    a module another thread of the parent was importing at the fork has its lock taken
    for good in the child, and a coordinator's start imports these very modules for its
    wait estimates, in a thread of its own, while its forecast forks (a child hung that
    way for twenty minutes, orphaned by a test's SIGKILL)."""
    import numpy.random  # noqa: F401

    from coordinator.dispatch import load_core
    from coordinator.simulation import sim_day  # noqa: F401
    from coordinator.simulation.day import loop_module, sim_config  # noqa: F401
    from coordinator.simulation.policies import POLICIES, policy_skills  # noqa: F401
    from coordinator.simulation.sites import SitesHall  # noqa: F401

    loop_module(load_core("auto"))


class _Hall:
    """A hall set up once for simulating forecast days: SitesHall, demand, slot pieces."""

    def __init__(
        self,
        cfg: HallConfig,
        slots: Sequence[int],
        policy: str,
        demand: Demand | None,
        core_cls: type[Any] | None,
    ) -> None:
        from coordinator.dispatch import core_kind, load_core
        from coordinator.simulation import sim_day
        from coordinator.simulation.day import sim_config
        from coordinator.simulation.policies import POLICIES, policy_skills
        from coordinator.simulation.sites import SitesHall

        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}: expected one of {', '.join(POLICIES)}")
        self.demand = demand or Demand.for_services([s.code for s in cfg.services])
        skills = policy_skills(cfg, self.demand, policy)
        served = {c for sk in skills.values() for c in sk}
        unserved = [c for c, share in self.demand.mix.items() if share > 0 and c not in served]
        if unserved:
            raise SimulationUnavailable(
                f"no window serves {', '.join(unserved)} under the {policy} policy"
            )
        spans = open_spans(cfg.hall.open_hours)
        if not spans:
            raise SimulationUnavailable("the hall has no opening hours")
        self.core_cls = core_cls or load_core("auto")
        self.core = core_kind(self.core_cls)
        try:
            self.fast = SitesHall(
                sim_config(cfg), self.core_cls, skills, day=sim_day(None), spans=spans
            )
        except Exception as exc:  # a hall file the engine refuses (e.g. skills): say why
            raise SimulationUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self.pieces = slot_pieces(slots, spans)
        self.index = {s: j for j, s in enumerate(slots)}

    def play(self, expected: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One simulated day at ``expected`` arrivals per slot: wait sum (min), tickets."""
        pieces: list[tuple[float, float, float]] = []
        for parts, n in zip(self.pieces, expected.tolist(), strict=True):
            open_s = sum(b - a for a, b in parts)
            pieces += [(a, b, n * (b - a) / open_s) for a, b in parts]
        day = self.fast.play(draw_expected(self.demand, pieces, rng))
        total, count = np.zeros(len(self.index)), np.zeros(len(self.index))
        for start, (s, k) in day.wait_bins.items():
            j = self.index.get(int(start // 1800 * 30))
            if j is not None:
                total[j] += s / 60
                count[j] += k
        return total, count


def simulate_waits(
    cfg: HallConfig,
    slots: Sequence[int],
    mean: np.ndarray,
    days: Sequence[dt.date],
    *,
    replications: int = REPLICATIONS,
    seed: int = 1,
    policy: str = "hallq",
    demand: Demand | None = None,
    core_cls: type[Any] | None = None,
) -> SimulatedWaits:
    """Simulate ``replications`` days for each row of ``mean`` (expected arrivals per
    (day, half hour ``slots``), day ``days[i]``) with any arrivals; rows without are
    closed days and are not simulated. Replication ``r`` of day ``d`` is drawn from the
    generator seeded (``seed``, ``d``, ``r``). Raises :class:`SimulationUnavailable` when
    the hall cannot be simulated (a service no window serves, no opening hours) or the
    simulator fails."""
    if replications < 1:
        raise ValueError("replications must be at least 1")
    if mean.shape != (len(days), len(slots)):
        raise ValueError(f"mean is {mean.shape}, expected ({len(days)}, {len(slots)})")
    started = time.perf_counter()
    hall = _Hall(cfg, slots, policy, demand, core_cls)
    wait_sum, tickets = np.zeros(mean.shape), np.zeros(mean.shape)
    try:
        for i, d in enumerate(days):
            if not mean[i].sum() > 0:
                continue
            for r in range(replications):
                total, count = hall.play(
                    mean[i], np.random.default_rng([seed % 2**63, d.toordinal(), r])
                )
                wait_sum[i] += total
                tickets[i] += count
    except Exception as exc:  # a simulator failure must not cost the hall its index
        raise SimulationUnavailable(f"the simulator failed: {type(exc).__name__}: {exc}") from exc
    return SimulatedWaits(
        tuple(slots),
        wait_sum,
        tickets,
        replications,
        policy,
        hall.core,
        time.perf_counter() - started,
    )
