"""Hall simulator: wall time per simulated hall-day, hallq (compiled, pure) against SimPy.

The seed hall (``examples/liwan.toml``, 47 windows) on a peak filing day (day 12, filing
factor 1.4 over the period mean) at the calibrated volume: 10,000+ arrivals a day. Policy:
per-service FIFO with dedicated windows, the one a SimPy model (``bench/simpy_hall.py``)
expresses exactly -- one ``Resource`` per service. Every simulator plays the same drawn days
(same arrivals, same counter times); drawing them is not timed.

- hallq: ``coordinator.simulation.day.run_day`` -- a fresh real ``Engine`` per day, every
  arrival an ``IssueRequest``, every call a ``WindowAction(call)``, every end of service a
  ``Finish``, the dispatch core compiled or pure;
- SimPy: one process per taxpayer, ``Resource`` request/release, the engine's issuing
  rules (service hours, daily caps) applied at the door.

Figures: median wall seconds per day over ``--days`` days, and the mean wait with its 95%
interval over those days for each simulator (they must agree: same policy, same people).
``--calibrate`` instead bisects the average filing-period volume at which this policy's
mean wait is the seed's 5.04 min.

Usage: python bench/simulate.py [--days 5] [--volume 9000] [--json] [--calibrate]
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
from coordinator.simulation.day import run_day, sim_config
from coordinator.simulation.policies import dedicated_skills
from coordinator.simulation.profile import CALIBRATED_VOLUME, Demand, open_spans
from coordinator.simulation.report import Estimate
from hallq.config import load_config

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "liwan.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5, help="replications (days) per simulator")
    parser.add_argument("--volume", type=float, default=CALIBRATED_VOLUME,
                        help="average filing-period daily volume")
    parser.add_argument("--day-of-month", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--calibrate", action="store_true",
                        help="find the volume whose FIFO mean wait is 5.04 min instead")
    parser.add_argument("--json", action="store_true", help="print a JSON line at the end")
    args = parser.parse_args()
    cfg = load_config(args.config)
    if args.calibrate:
        calibrate(cfg, args)
        return

    demand = Demand.for_services([s.code for s in cfg.services])
    days = draw_days(cfg, demand, volume=args.volume, day_of_month=args.day_of_month,
                     replications=args.days, seed=args.seed)
    skills = dedicated_skills(cfg, demand)
    spans = open_spans(cfg.hall.open_hours)
    sim_cfg = sim_config(cfg)
    date = sim_day(args.day_of_month)
    tickets = statistics.fmean(len(d) for d in days)
    print(f"{cfg.hall.id}: {len(cfg.windows)} windows, day {args.day_of_month}, volume "
          f"{args.volume:.0f} -> {tickets:,.0f} arrivals/day on average, {args.days} days, "
          "per-service FIFO with dedicated windows")

    seconds: dict[str, list[float]] = {}
    means: dict[str, list[float]] = {}
    served: dict[str, list[int]] = {}
    for kind in ("compiled", "pure"):
        core = load_core(kind)
        for arrivals in days:
            t0 = time.perf_counter()
            res = run_day(sim_cfg, core, skills, arrivals, day=date, spans=spans)
            seconds.setdefault(kind, []).append(time.perf_counter() - t0)
            waits = [w for ws in res.waits.values() for w in ws]
            means.setdefault(kind, []).append(statistics.fmean(waits) / 60)
            served.setdefault(kind, []).append(len(waits))
    caps = windows_per_service(skills)
    for arrivals in days:
        t0 = time.perf_counter()
        peer = run_simpy_day(cfg, caps, arrivals)
        seconds.setdefault("simpy", []).append(time.perf_counter() - t0)
        waits = [w for ws in peer.waits.values() for w in ws]
        means.setdefault("simpy", []).append(statistics.fmean(waits) / 60)
        served.setdefault("simpy", []).append(len(waits))

    results: dict[str, float] = {"arrivals_per_day": round(tickets, 1)}
    print(f"{'':10} {'s/day':>8} {'µs/ticket':>10} {'mean wait min (95% CI)':>26}")
    for kind in ("compiled", "pure", "simpy"):
        per_day = statistics.median(seconds[kind])
        est = Estimate.of(means[kind])
        results[f"s_per_day_{kind}"] = round(per_day, 4)
        results[f"mean_wait_min_{kind}"] = round(est.mean, 3)
        results[f"mean_wait_ci95_{kind}"] = round(est.half, 3)
        print(f"{kind:10} {per_day:8.3f} {per_day / tickets * 1e6:10.1f} "
              f"{est.mean:12.3f} ± {est.half:.3f}")
    same = served["compiled"] == served["simpy"] and all(
        math.isclose(a, b, rel_tol=1e-9) for a, b in zip(means["compiled"], means["simpy"],
                                                         strict=True))
    agree = abs(results["mean_wait_min_compiled"] - results["mean_wait_min_simpy"]) <= min(
        results["mean_wait_ci95_compiled"], results["mean_wait_ci95_simpy"])
    results["simpy_over_compiled"] = round(results["s_per_day_simpy"]
                                           / results["s_per_day_compiled"], 3)
    results["simpy_over_pure"] = round(results["s_per_day_simpy"] / results["s_per_day_pure"], 3)
    results["pure_over_compiled"] = round(results["s_per_day_pure"]
                                          / results["s_per_day_compiled"], 3)
    results["waits_identical"] = float(same)
    results["means_agree_within_ci"] = float(agree)
    print(f"SimPy / hallq compiled: {results['simpy_over_compiled']:.2f}x "
          f"(bar: >= 30x, aim 100x); SimPy / hallq pure: {results['simpy_over_pure']:.2f}x; "
          f"pure / compiled: {results['pure_over_compiled']:.2f}x")
    print(f"mean waits {'identical day by day' if same else 'differ'}; "
          f"{'agree' if agree else 'DO NOT agree'} within their 95% intervals")
    if args.json:
        print(json.dumps(results))


def calibrate(cfg: object, args: argparse.Namespace) -> None:
    from coordinator.simulation.calibrate import calibrate_volume
    from hallq.config import HallConfig

    assert isinstance(cfg, HallConfig)
    volume, report = calibrate_volume(cfg, replications=max(args.days, 10), seed=args.seed,
                                      log=print)
    fifo = report.policies["fifo"]
    print(f"calibrated volume: {volume:.0f} arrivals on an average filing-period day")
    for stat, est in fifo.waits["all"].items():
        print(f"  {stat:5} wait {est.text()} min")
    if args.json:
        print(json.dumps({"volume": volume, **{f"wait_{k}_min": round(v.mean, 3)
                                                for k, v in fifo.waits["all"].items()}}))


if __name__ == "__main__":
    main()
