"""Wait estimates against the waits that happened: the simulation estimator, the engine's
queueing estimate, the old ``eta_min`` and a naive baseline, over simulated Liwan days.

Each day (a quiet day after the deadline, the average filing day, the peak day before the
deadline) is played twice through a real ``Engine`` (``advice.replay_day``, the hall's
configured skills, 3% no-shows): once to learn when every ticket was called, once to ask
the estimators. The second pass asks, for every ticket the moment it is issued (as the
dispenser's reply does: from the last refresh, which never saw it) and again at the first
``--tick`` past half its real wait, what every estimator predicts for its remaining wait;
every ``--refresh`` hall seconds it refreshes the simulation estimator. Errors are in minutes of
remaining wait; the range's coverage is how often the real call fell inside it (the
range is meant to hold it 8 times in 10); bias is the mean error over the mean real wait.

The estimator's counter times are the demand's (what ``learn_demand`` gives for a hall
with history); the refresh cost is measured and reported as the share of a core the live
coordinator spends at its refresh rate.

Usage: python bench/eta.py [--days quiet,average,peak] [--volume 9000] [--refresh 30] [--json]
"""

from __future__ import annotations

import argparse
import heapq
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from coordinator.advice.replay import replay_day
from coordinator.dispatch import core_kind, load_core
from coordinator.engine import Engine, Outcome
from coordinator.eta import SPREAD, WaitEstimator, fits_of
from coordinator.simulation import draw_days, sim_day
from coordinator.simulation.day import sim_config
from coordinator.simulation.policies import configured_skills
from coordinator.simulation.profile import CALIBRATED_VOLUME, Demand
from hallq import messages as m
from hallq.config import load_config
from hallq.messages import TicketState

DAYS = {"quiet": 20, "average": None, "peak": 14}
ESTIMATORS = ("simulation", "queueing", "old_eta_min", "naive")
NO_SHOW = 0.03


@dataclass
class Rows:
    """(predicted p50, low, high, actual) remaining minutes per query."""

    items: list[tuple[float, float | None, float | None, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        if not self.items:
            return {"n": 0}
        err = sorted(abs(p - a) for p, _, _, a in self.items)
        actual = [a for *_, a in self.items]
        ranged = [(lo, hi, a) for _, lo, hi, a in self.items if lo is not None and hi is not None]
        within = sum(1 for p, _, _, a in self.items if abs(p - a) <= max(1.0, 0.2 * a))
        mean_actual = statistics.fmean(actual)
        out: dict[str, Any] = {
            "n": len(self.items),
            "median_abs_err_min": round(statistics.median(err), 2),
            "p90_abs_err_min": round(err[int(0.9 * (len(err) - 1))], 2),
            "bias_pct": round(
                100 * statistics.fmean(p - a for p, *_, a in self.items) / mean_actual, 1
            )
            if mean_actual > 0
            else None,
            "median_actual_min": round(statistics.median(actual), 2),
            "within_bar_pct": round(100 * within / len(self.items), 1),
        }
        out["coverage_pct"] = (
            round(100 * sum(1 for lo, hi, a in ranged if lo <= a <= hi) / len(ranged), 1)
            if ranged
            else None
        )
        return out


def _old_eta(engine: Engine, service: str, ahead: int) -> float:
    """``eta_min`` as it was: every open window serving the service counted in full."""
    per_window = engine.avg_service_s(service) / max(1, engine.serving_windows(service))
    return ahead * per_window / 60.0


def run_day(
    cfg: Any,
    core_cls: type[Any],
    demand: Demand,
    label: str,
    dom: int | None,
    *,
    volume: float,
    seed: int,
    tick_s: float,
    refresh_s: float,
    replications: int,
    spread: float,
) -> dict[str, Any]:
    sim = sim_config(cfg)
    day = sim_day(dom)
    skills = configured_skills(cfg)
    (arrivals,) = draw_days(
        cfg, demand, volume=volume, day_of_month=dom, replications=1, seed=seed, no_show=NO_SHOW
    )
    opens = sim.hall.open_hours[0][0]
    start_s = opens.hour * 3600.0 + opens.minute * 60.0 - tick_s  # first ask at opening
    seen: dict[str, Engine] = {}

    def keep(engine: Engine, now: float) -> list[Any]:
        seen["e"] = engine
        return []

    t0 = time.perf_counter()
    replay_day(sim, core_cls, skills, arrivals, day=day, start_s=start_s, hook=keep, tick_s=tick_s)
    truth = {t.number: t.called_at for t in seen["e"].tickets if t.called_at is not None}
    truth_s = time.perf_counter() - t0

    rows = {(est, moment): Rows() for est in ESTIMATORS for moment in ("issue", "half")}
    halfway: list[tuple[float, int]] = []  # (half-way epoch, ticket index), a heap
    state: dict[str, Any] = {"est": None, "last": -1e18}
    mean_s = {c: demand.mean_min[c] * 60.0 for c in demand.mean_min}

    def record(engine: Engine, est: WaitEstimator, t: Any, now: float, moment: str) -> None:
        called = truth[t.number]
        actual = (called - now) / 60.0
        ahead = engine.core.position(t.idx, now) if engine.core.queued(t.idx) else 0
        queueing = engine.eta_range(t, t.service, now)
        rows[("queueing", moment)].items.append(
            (queueing.p50_min, queueing.low_min, queueing.high_min, actual)
        )
        rows[("old_eta_min", moment)].items.append(
            (_old_eta(engine, t.service, ahead), None, None, actual)
        )
        n = max(1, engine.serving_windows(t.service))
        rows[("naive", moment)].items.append(
            (ahead * mean_s[t.service] / n / 60.0, None, None, actual)
        )
        got = est.estimate(engine, t, t.service, now)
        if got is None and moment == "issue":  # not in the last refresh: the queue's
            got = est.estimate(engine, None, t.service, now)
        if got is None:
            got = queueing
        rows[("simulation", moment)].items.append((got.p50_min, got.low_min, got.high_min, actual))

    def ask(engine: Engine, now: float) -> list[Any]:
        est: WaitEstimator | None = state["est"]
        if est is None:
            est = state["est"] = WaitEstimator(
                engine, fits=fits_of(demand), replications=replications, spread=spread
            )
            issue = engine.issue

            def issue_and_ask(req: m.IssueRequest, now: float, source: str = "") -> Outcome:
                out = issue(req, now, source)
                t = out.ticket
                if out.ok and t is not None and t.number in truth:
                    record(engine, est, t, now, "issue")
                    called = truth[t.number]
                    heapq.heappush(halfway, (now + (called - now) / 2, t.idx))
                return out

            engine.issue = issue_and_ask  # type: ignore[method-assign]
        while halfway and halfway[0][0] <= now:
            _, idx = heapq.heappop(halfway)
            t = engine.tickets[idx]
            if t.state is TicketState.WAITING and t.directed is None:
                record(engine, est, t, now, "half")
        if now - state["last"] >= refresh_s:
            est.refresh(now)
            state["last"] = now
        return []

    t0 = time.perf_counter()
    replay_day(sim, core_cls, skills, arrivals, day=day, start_s=start_s, hook=ask, tick_s=tick_s)
    wall = time.perf_counter() - t0
    est = state["est"]
    waits = [
        (c - t.issued_at) / 60.0
        for t in seen["e"].tickets
        if (c := truth.get(t.number)) is not None
    ]
    per_refresh = est.cost_s / max(1, est.refreshes)
    return {
        "day": label,
        "day_of_month": dom,
        "tickets": len(truth),
        "mean_wait_min": round(statistics.fmean(waits), 2) if waits else 0.0,
        "refreshes": est.refreshes,
        "refresh_ms": round(1000 * per_refresh, 1),
        "refresh_every_s_at_5pct": round(per_refresh / 0.05, 2),
        "wall_s": round(wall + truth_s, 1),
        "estimators": {
            f"{e}/{mo}": rows[(e, mo)].summary() for e in ESTIMATORS for mo in ("issue", "half")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="examples/liwan.toml")
    parser.add_argument("--days", default="quiet,average,peak")
    parser.add_argument(
        "--tick", type=float, default=10.0, help="hall seconds between half-way asks"
    )
    parser.add_argument(
        "--refresh", type=float, default=30.0, help="hall seconds between simulation refreshes"
    )
    parser.add_argument("--replications", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--volume", type=float, default=CALIBRATED_VOLUME, help="arrivals of an average filing day"
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=SPREAD,
        help="widening of the simulated range, minutes per side",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cfg = load_config(args.config)
    core_cls = load_core("auto")
    demand = Demand.for_services([s.code for s in cfg.services])
    out: dict[str, Any] = {
        "core": core_kind(core_cls),
        "volume": args.volume,
        "tick_s": args.tick,
        "refresh_s": args.refresh,
        "replications": args.replications,
        "days": [],
    }
    for label in args.days.split(","):
        res = run_day(
            cfg,
            core_cls,
            demand,
            label,
            DAYS[label],
            volume=args.volume,
            seed=args.seed,
            tick_s=args.tick,
            refresh_s=args.refresh,
            replications=args.replications,
            spread=args.spread,
        )
        out["days"].append(res)
        print(
            f"\n{label} day: {res['tickets']} tickets, mean wait {res['mean_wait_min']} min, "
            f"{res['refreshes']} refreshes of {res['refresh_ms']} ms "
            f"(5% of a core allows one every {res['refresh_every_s_at_5pct']} s)",
            file=sys.stderr if args.json else sys.stdout,
        )
        head = (
            f"{'estimator/moment':24} {'n':>6} {'medAE':>6} {'P90AE':>6} {'cover%':>7} "
            f"{'bias%':>6} {'within%':>8} {'med wait':>8}"
        )
        print(head, file=sys.stderr if args.json else sys.stdout)
        for name, s in res["estimators"].items():
            if not s["n"]:
                continue
            cov = "-" if s["coverage_pct"] is None else f"{s['coverage_pct']:.1f}"
            print(
                f"{name:24} {s['n']:6d} {s['median_abs_err_min']:6.2f} "
                f"{s['p90_abs_err_min']:6.2f} {cov:>7} {s['bias_pct']:6.1f} "
                f"{s['within_bar_pct']:8.1f} {s['median_actual_min']:8.2f}",
                file=sys.stderr if args.json else sys.stdout,
            )
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
