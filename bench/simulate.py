"""Hall simulator: wall time per simulated hall-day, hallq (compiled, pure) against SimPy.

The seed hall (``examples/liwan.toml``, 47 windows) on a peak filing day (day 12, filing
factor 1.4 over the period mean) at the calibrated volume: 10,000+ arrivals a day. Policy:
per-service FIFO with dedicated windows, the one a SimPy model (``bench/simpy_hall.py``)
expresses exactly -- one ``Resource`` per service. Every simulator plays the same drawn days
(same arrivals, same counter times); drawing them is not timed.

- hallq compiled / pure: ``coordinator.simulation.day.FastHall`` -- what ``hallq simulate``
  runs: a real ``Engine`` configures the dispatch core once (``SetSkills`` per window),
  then each day empties it (``clear``) and the day loop (``fastday.py``) drives it; both
  the loop and the core compiled, or both run as Python. The one-off set-up is timed
  separately and printed;
- hallq engine: ``run_day`` -- a fresh ``Engine`` per day and every step an
  ``Engine.apply`` (``IssueRequest``, ``WindowAction(call)``, ``Finish``), compiled core;
  the reference the fast loop is tested against, timed to show what the loop saves;
- SimPy: one process per taxpayer, ``Resource`` request/release, the engine's issuing
  rules (service hours, daily caps) applied at the door.

Figures: per day the best of ``--repeat`` runs, then the median over ``--days`` days; the
mean wait with its 95% interval over those days for each simulator (they must agree: same
policy, same people -- here they are identical day by day).
``--calibrate`` instead bisects the average filing-period volume at which this policy's
mean wait is the seed's 5.04 min.

Usage: python bench/simulate.py [--days 5] [--repeat 3] [--volume 8440] [--json] [--calibrate]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from simpy_hall import run_simpy_day, windows_per_service  # bench/ is the script's path

from coordinator.dispatch import load_core
from coordinator.simulation import draw_days, sim_day
from coordinator.simulation.day import FastHall, run_day, sim_config
from coordinator.simulation.policies import dedicated_skills
from coordinator.simulation.profile import CALIBRATED_VOLUME, Demand, open_spans
from coordinator.simulation.report import Estimate
from hallq.config import load_config

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "liwan.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5, help="replications (days) per simulator")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per day and simulator; the best counts"
    )
    parser.add_argument(
        "--volume", type=float, default=CALIBRATED_VOLUME, help="average filing-period daily volume"
    )
    parser.add_argument("--day-of-month", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="find the volume whose FIFO mean wait is 5.04 min instead",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON line at the end")
    args = parser.parse_args()
    cfg = load_config(args.config)
    if args.calibrate:
        calibrate(cfg, args)
        return

    demand = Demand.for_services([s.code for s in cfg.services])
    days = draw_days(
        cfg,
        demand,
        volume=args.volume,
        day_of_month=args.day_of_month,
        replications=args.days,
        seed=args.seed,
    )
    skills = dedicated_skills(cfg, demand)
    spans = open_spans(cfg.hall.open_hours)
    sim_cfg = sim_config(cfg)
    date = sim_day(args.day_of_month)
    tickets = statistics.fmean(len(d) for d in days)
    print(
        f"{cfg.hall.id}: {len(cfg.windows)} windows, day {args.day_of_month}, volume "
        f"{args.volume:.0f} -> {tickets:,.0f} arrivals/day on average, {args.days} days, "
        "per-service FIFO with dedicated windows"
    )

    seconds: dict[str, list[float]] = {}
    means: dict[str, list[float]] = {}
    served: dict[str, list[int]] = {}

    def record(kind: str, run: object, repeat: int) -> None:
        for arrivals in days:
            best = math.inf
            for _ in range(repeat):
                t0 = time.perf_counter()
                res = run(arrivals)  # type: ignore[operator]
                best = min(best, time.perf_counter() - t0)
            seconds.setdefault(kind, []).append(best)
            waits = [w for ws in res.waits.values() for w in ws]
            means.setdefault(kind, []).append(statistics.fmean(waits) / 60)
            served.setdefault(kind, []).append(len(waits))

    setup: dict[str, float] = {}
    for kind in ("compiled", "pure"):
        t0 = time.perf_counter()
        hall = FastHall(sim_cfg, load_core(kind), skills, day=date, spans=spans)
        setup[kind] = time.perf_counter() - t0
        record(kind, hall.play, args.repeat)
    compiled_core = load_core("compiled")
    record("engine", lambda a: run_day(sim_cfg, compiled_core, skills, a, day=date, spans=spans), 1)
    caps = windows_per_service(skills)
    record("simpy", lambda a: run_simpy_day(cfg, caps, a), args.repeat)

    kinds = ("compiled", "pure", "engine", "simpy")
    results: dict[str, float] = {"arrivals_per_day": round(tickets, 1)}
    print(f"{'':10} {'s/day':>9} {'µs/ticket':>10} {'mean wait min (95% CI)':>26}")
    for kind in kinds:
        per_day = statistics.median(seconds[kind])
        est = Estimate.of(means[kind])
        results[f"s_per_day_{kind}"] = round(per_day, 5)
        results[f"mean_wait_min_{kind}"] = round(est.mean, 3)
        results[f"mean_wait_ci95_{kind}"] = round(est.half, 3)
        print(
            f"{kind:10} {per_day:9.4f} {per_day / tickets * 1e6:10.2f} "
            f"{est.mean:12.3f} ± {est.half:.3f}"
        )
    print(
        f"one-off hall set-up (engine + SetSkills): compiled {setup['compiled'] * 1e3:.2f} ms, "
        f"pure {setup['pure'] * 1e3:.2f} ms"
    )
    same = all(
        served[k] == served["simpy"]
        and all(
            math.isclose(a, b, rel_tol=1e-9) for a, b in zip(means[k], means["simpy"], strict=True)
        )
        for k in kinds
    )
    agree = abs(results["mean_wait_min_compiled"] - results["mean_wait_min_simpy"]) <= min(
        results["mean_wait_ci95_compiled"], results["mean_wait_ci95_simpy"]
    )

    def ratio(a: str, b: str) -> float:
        return round(results[f"s_per_day_{a}"] / results[f"s_per_day_{b}"], 2)

    results["simpy_over_compiled"] = ratio("simpy", "compiled")
    results["simpy_over_pure"] = ratio("simpy", "pure")
    results["pure_over_compiled"] = ratio("pure", "compiled")
    results["engine_over_compiled"] = ratio("engine", "compiled")
    results["setup_ms_compiled"] = round(setup["compiled"] * 1e3, 3)
    results["waits_identical"] = float(same)
    results["means_agree_within_ci"] = float(agree)
    print(
        f"SimPy / hallq compiled: {results['simpy_over_compiled']:.1f}x "
        f"(bar: >= 30x, aim 100x); SimPy / hallq pure: {results['simpy_over_pure']:.2f}x; "
        f"pure / compiled: {results['pure_over_compiled']:.1f}x; "
        f"engine path / compiled: {results['engine_over_compiled']:.0f}x"
    )
    print(
        f"mean waits {'identical day by day' if same else 'differ'} across the four; "
        f"{'agree' if agree else 'DO NOT agree'} within their 95% intervals"
    )
    if args.json:
        print(json.dumps(results))


def calibrate(cfg: object, args: argparse.Namespace) -> None:
    from coordinator.simulation.calibrate import calibrate_volume
    from hallq.config import HallConfig

    assert isinstance(cfg, HallConfig)
    volume, report = calibrate_volume(
        cfg, replications=max(args.days, 10), seed=args.seed, log=print
    )
    fifo = report.policies["fifo"]
    print(f"calibrated volume: {volume:.0f} arrivals on an average filing-period day")
    for stat, est in fifo.waits["all"].items():
        print(f"  {stat:5} wait {est.text()} min")
    if args.json:
        print(
            json.dumps(
                {
                    "volume": volume,
                    **{f"wait_{k}_min": round(v.mean, 3) for k, v in fifo.waits["all"].items()},
                }
            )
        )


if __name__ == "__main__":
    main()
