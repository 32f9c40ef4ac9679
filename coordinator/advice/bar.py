"""``python -m coordinator.advice HALL.toml``: the offline plan and the issue's bar table.

Until ``hallq advise`` is wired into the CLI this is the command the BENCHMARKS table
comes from. The bar (issue 8): hallq with express-window advice at least 25% below
per-service FIFO in mean wait and 35% in p95, same staffing, green channel mean < 1 min.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from dataclasses import asdict, dataclass

from rich.console import Console

from coordinator.advice.plan import SEARCH_DAYS, Plan, plan_day
from coordinator.simulation.profile import CALIBRATED_VOLUME
from hallq.config import load_config

GREEN = "vat-green"
MEAN_CUT, P95_CUT, GREEN_MAX_MIN = 0.25, 0.35, 1.0


@dataclass(frozen=True)
class BarRow:
    """One variant of the bar table: overall mean and p95 (± 95% CI), green mean, and the
    fraction each is below per-service FIFO."""

    variant: str
    name: str
    mean: float
    mean_ci: float
    p95: float
    p95_ci: float
    green_mean: float | None
    mean_cut: float
    p95_cut: float

    @property
    def passes(self) -> bool:
        return (self.mean_cut >= MEAN_CUT and self.p95_cut >= P95_CUT
                and self.green_mean is not None and self.green_mean < GREEN_MAX_MIN)

    def markdown(self) -> str:
        return (f"| {self.name} | {self.mean:.2f} ± {self.mean_ci:.2f} | "
                f"{self.p95:.2f} ± {self.p95_ci:.2f} | {self.green_mean} | "
                f"{-self.mean_cut:+.0%} | {-self.p95_cut:+.0%} |")


def bar_rows(plan: Plan, green: str = GREEN) -> list[BarRow]:
    """One row per variant of the plan's reports, cuts measured against ``fifo``."""
    fifo = plan.reports["fifo"].waits["all"]
    rows: list[BarRow] = []
    for key, rep in plan.reports.items():
        w = rep.waits["all"]
        g = rep.waits.get(green, {}).get("mean")
        rows.append(BarRow(
            variant=key, name=rep.name, mean=round(w["mean"].mean, 2),
            mean_ci=round(w["mean"].half, 2), p95=round(w["p95"].mean, 2),
            p95_ci=round(w["p95"].half, 2),
            green_mean=None if g is None or math.isnan(g.mean) else round(g.mean, 2),
            mean_cut=round(1 - w["mean"].mean / fifo["mean"].mean, 3),
            p95_cut=round(1 - w["p95"].mean / fifo["p95"].mean, 3)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hallq advise", description=__doc__)
    ap.add_argument("config")
    ap.add_argument("--volume", type=float, default=CALIBRATED_VOLUME)
    ap.add_argument("--day", type=int, default=None, help="day of month (default: average)")
    ap.add_argument("--staff-limit", type=int, default=None)
    ap.add_argument("--replications", type=int, default=10)
    ap.add_argument("--search-days", type=int, default=SEARCH_DAYS,
                    help="days, drawn apart from the reported ones, each candidate is played on")
    ap.add_argument("--rounds", type=int, default=6, help="moves kept at most")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--core", default="auto", choices=["auto", "compiled", "pure"])
    ap.add_argument("--no-live", action="store_true", help="skip the live-advice variant")
    ap.add_argument("--history", default=None, metavar="EVENT_LOG",
                    help="plan with the service mix, counter times and arrival profile "
                         "learned from the hall's event log (hallq simulate --history)")
    ap.add_argument("--history-since", type=dt.date.fromisoformat, default=None,
                    metavar="YYYY-MM-DD", help="learn only from business days since then")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    log = (lambda s: print(s, file=sys.stderr)) if args.verbose else None
    cfg = load_config(args.config)
    demand = None
    if args.history is not None:
        from coordinator.simulation.learn import LearnError, learn_demand, render_learned

        try:
            learned = learn_demand(args.history, cfg, since=args.history_since,
                                   core_kind=args.core)
        except LearnError as exc:
            print(f"--history: {exc}", file=sys.stderr)
            return 2
        Console(stderr=True).print(render_learned(learned))
        demand = learned.demand
    plan = plan_day(cfg, volume=args.volume, day_of_month=args.day,
                    staff_limit=args.staff_limit, replications=args.replications,
                    seed=args.seed, core_kind=args.core, rounds=args.rounds,
                    search_days=args.search_days, live=not args.no_live, log=log,
                    demand=demand)
    rows = bar_rows(plan)
    judged = rows[-1]  # the last variant: "advised" when live, else "planned"
    if args.json:
        print(json.dumps({**plan.to_dict(), "bar": [asdict(r) for r in rows],
                          "bar_variant": judged.variant, "bar_met": judged.passes,
                          "wall_s": round(time.perf_counter() - started, 1)},
                         ensure_ascii=False, default=lambda x: None))
        return 0
    print(plan.render())
    print("\n| variant | mean min | p95 min | green mean min | mean vs FIFO | p95 vs FIFO |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(r.markdown())
    print(f"\nbar (mean -25%, p95 -35%, green < 1 min) for {judged.name}: "
          f"{'met' if judged.passes else 'NOT met'}; {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
