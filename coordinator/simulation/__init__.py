"""Simulate hall days on the real engine and dispatch core, to compare staffing policies.

``run_simulation`` draws R independent days (the same days for every policy: common
random numbers), plays each on the hall's dispatch core as a real
:class:`~coordinator.engine.Engine` configured it -- by the compiled day loop
(``FastHall``), or command by command through ``Engine.apply`` with ``engine=True``; both
give the same waits -- and aggregates the waits with 95% intervals over days.
``render_report`` gives the terminal view, ``save_chart`` the PNG,
``SimulationReport.to_json`` the machine view.

Submodules: ``profile`` (demand: arrivals, counter times, no-shows, transfers, booked
slots; no engine), ``learn`` (demand learned from the event log), ``day`` (one day on
the engine's core: ``run_day`` through the engine, ``FastHall`` on the compiled loop),
``fastday`` (that loop), ``policies`` (window skills per policy), ``report`` (figures),
``render`` (table, chart), ``calibrate`` (the volume that gives a target mean wait).

A command line wires it like this::

    with rich.progress.Progress() as bar:
        task = bar.add_task("simulating", total=None)
        report = run_simulation(cfg, volume=CALIBRATED_VOLUME, replications=10, seed=1,
                                core_kind="auto",
                                progress=lambda done, total: bar.update(task, completed=done,
                                                                        total=total))
    console.print(render_report(report))   # or print(report.to_json()) for --json
    save_chart(report, "sim.png")
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from coordinator.dispatch import core_kind as kind_of_core
from coordinator.dispatch import load_core
from coordinator.simulation.policies import POLICIES, POLICY_NAMES, policy_skills
from coordinator.simulation.profile import (
    CALIBRATED_VOLUME,
    DayArrivals,
    Demand,
    day_factor,
    draw_day,
    open_spans,
)
from coordinator.simulation.sites import SitesHall, SiteSplit
from hallq.config import HallConfig
from hallq.lazy import lazy_names

if TYPE_CHECKING:
    from coordinator.simulation.day import DayResult, FastHall
    from coordinator.simulation.render import render_report, save_chart
    from coordinator.simulation.report import PolicyReport, SimulationReport

# loaded on first use: the day loop brings numpy, the renderer PIL and rich, and the
# coordinator's start (the appointment book's calendar needs ``profile``) waits for neither
_HOME = {
    "FastHall": ".day",
    "render_report": ".render",
    "save_chart": ".render",
    "PolicyReport": ".report",
    "SimulationReport": ".report",
}


__getattr__ = lazy_names(__name__, _HOME)

__all__ = [
    "CALIBRATED_VOLUME",
    "POLICIES",
    "Demand",
    "FastHall",
    "PolicyReport",
    "SimulationReport",
    "draw_days",
    "render_report",
    "run_simulation",
    "save_chart",
    "sim_day",
]

Progress = Callable[[int, int], None]


def sim_day(day_of_month: int | None) -> dt.date:
    """The calendar date a simulated day runs on (a fixed month; the day sets the factor)."""
    return dt.date(2026, 3, day_of_month or 3)


def draw_days(
    cfg: HallConfig,
    demand: Demand,
    *,
    volume: float,
    day_of_month: int | None,
    replications: int,
    seed: int,
    no_show: float = 0.0,
    transfer: float = 0.0,
    appointments: float = 0.0,
) -> list[DayArrivals]:
    """R independent days of arrivals; replication r depends only on (seed, r)."""
    spans = open_spans(cfg.hall.open_hours)
    expected = volume * day_factor(day_of_month)
    return [
        draw_day(
            demand,
            spans,
            volume=expected,
            rng=random.Random(f"hallq-sim:{seed}:{r}"),
            no_show=no_show,
            transfer=transfer,
            appointments=appointments,
        )
        for r in range(replications)
    ]


def run_simulation(
    cfg: HallConfig,
    *,
    volume: float,
    day_of_month: int | None = None,
    replications: int = 10,
    seed: int = 1,
    policies: Sequence[str] = POLICIES,
    core_kind: str = "auto",
    no_show: float = 0.0,
    transfer: float = 0.0,
    appointments: float = 0.0,
    demand: Demand | None = None,
    progress: Progress | None = None,
    engine: bool = False,
) -> SimulationReport:
    """Simulate ``replications`` days of ``cfg`` under each policy and compare them.

    ``volume`` is the expected arrivals of an average filing-period day; ``day_of_month``
    scales it by the filing factor (``None``: the average day itself). ``core_kind`` is
    ``load_core``'s ``auto|compiled|pure``. ``progress(done, total)`` is called after each
    policy-day, for a progress bar. ``no_show``, ``transfer`` and ``appointments`` are the
    shares of taxpayers who leave before their call, are sent on to a second service, and
    booked a slot (``profile.draw_day``). ``engine`` plays every step through ``Engine.apply``
    (the reference path, ~100x slower) instead of the compiled loop.
    """
    from coordinator.simulation.day import run_day, sim_config
    from coordinator.simulation.report import Estimate, PolicyReport, SimulationReport

    if replications < 1:
        raise ValueError("replications must be at least 1")
    if volume < 0:
        raise ValueError("volume must not be negative")
    for name, share in (
        ("no_show", no_show),
        ("transfer", transfer),
        ("appointments", appointments),
    ):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be a share between 0 and 1, got {share}")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}: expected one of {', '.join(POLICIES)}")
    core_cls = load_core(core_kind)
    kind = kind_of_core(core_cls)
    sim_cfg = sim_config(cfg)
    demand = demand or Demand.for_services([s.code for s in cfg.services])
    spans = open_spans(cfg.hall.open_hours)
    started = time.perf_counter()
    days = draw_days(
        cfg,
        demand,
        volume=volume,
        day_of_month=day_of_month,
        replications=replications,
        seed=seed,
        no_show=no_show,
        transfer=transfer,
        appointments=appointments,
    )
    date = sim_day(day_of_month)
    skills = {p: policy_skills(cfg, demand, p) for p in policies}
    results: dict[str, list[DayResult]] = {p: [] for p in policies}
    total, done = replications * len(policies), 0
    # several 办税点: a queue per service and site, as the engine keeps them
    halls = (
        {}
        if engine
        else {p: SitesHall(sim_cfg, core_cls, skills[p], day=date, spans=spans) for p in policies}
    )
    split = SiteSplit.of(sim_cfg) if engine else None
    for arrivals in days:
        for p in policies:
            if split is not None:
                lanes = split.arrivals(DayArrivals.of(arrivals))
                played = run_day(
                    split.config(sim_cfg),
                    core_cls,
                    split.skills(skills[p]),
                    lanes,
                    day=date,
                    spans=spans,
                )
                results[p].append(split.fold(played))
            elif engine:
                results[p].append(
                    run_day(sim_cfg, core_cls, skills[p], arrivals, day=date, spans=spans)
                )
            else:
                results[p].append(halls[p].play(arrivals))
            done += 1
            if progress is not None:
                progress(done, total)
    reports = {
        p: PolicyReport.from_days(p, POLICY_NAMES[p], results[p], skills[p]) for p in policies
    }
    settings: dict[str, Any] = {
        "mix": {k: round(v, 4) for k, v in demand.mix.items()},
        "mean_counter_min": {k: round(v, 3) for k, v in demand.mean_min.items()},
        "lognormal_sigma": demand.sigma,
        "open_hours": [[f"{a:%H:%M}", f"{b:%H:%M}"] for a, b in cfg.hall.open_hours],
        "day_factor": round(day_factor(day_of_month), 4),
        "transfer": transfer,
        "appointments": appointments,
    }
    return SimulationReport(
        hall=cfg.hall.id,
        volume=volume,
        day_of_month=day_of_month,
        replications=replications,
        seed=seed,
        core_kind=kind + (" engine" if engine else ""),
        no_show=no_show,
        arrivals=Estimate.of([float(len(a)) for a in days]),
        policies=reports,
        wall_s=time.perf_counter() - started,
        settings=settings,
    )
