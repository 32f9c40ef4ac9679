"""Where to set the bar for express-window advice (``advice.live.worth_it``).

Simulated Liwan days (``draw_days``: the average filing day and the peak day before the
deadline) are played through a real ``Engine`` (``advice.replay_day``). Every ``--tick``
hall seconds a supervisor who follows the desk's advice acts on every piece shown: the
advice is what the coordinator makes (``advise`` with the short simulation of its effect),
shown only if it passes the bar under test. Each bar is judged by the day's waits (mean and
p95 of all tickets, minutes) against the number of window switches it asked for: every
switch moves a person between desks, so a bar that asks for many more switches for the
same waits asks for work that buys nothing.

Usage: python bench/advice_bar.py [--days average,peak] [--reps 2] [--tick 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from coordinator.advice.live import advise, worth_it
from coordinator.advice.replay import replay_day
from coordinator.dispatch import core_kind, load_core
from coordinator.engine import Engine
from coordinator.simulation import draw_days, sim_day
from coordinator.simulation.day import SkillChange, epoch_of, sim_config
from coordinator.simulation.policies import configured_skills
from coordinator.simulation.profile import CALIBRATED_VOLUME, Demand
from hallq.config import load_config

DAYS = {"average": None, "peak": 14}
# (min gain in minutes, min gain as a share of the wait before); None: no advice at all
BARS: list[tuple[float, float] | None] = [
    None,
    (0.0, 0.0),
    (1.0, 0.05),
    (2.0, 0.15),
    (5.0, 0.2),
    (10.0, 0.3),
]


class Follow:
    """A ``replay_day`` hook: act on every piece of advice that passes the bar, as
    ``ActOnAdvice`` does, but with the effect simulated as the coordinator shows it."""

    def __init__(self, bar: tuple[float, float]) -> None:
        self.bar = bar
        self.locked: dict[int, float] = {}
        self.switches = 0
        self.shown = 0
        self.gains: list[float] = []

    def __call__(self, engine: Engine, now: float) -> list[SkillChange]:
        self.locked = {w: t for w, t in self.locked.items() if t > now}
        base = epoch_of(engine.cfg, engine.day or engine.business_day(now))
        changes: list[SkillChange] = []
        for a in advise(engine, now, replications=3):
            if not worth_it(a, min_gain_min=self.bar[0], min_share=self.bar[1]):
                continue
            if any(w in self.locked for w in a.windows):
                continue
            self.shown += 1
            self.switches += len(a.windows)
            self.gains.append(a.before_min - a.after_min)
            for w in a.windows:
                self.locked[w] = a.until
                changes.append(SkillChange(now - base, w, {a.service: 1.0}))
                changes.append(SkillChange(a.until - base, w, a.restore[w]))
        return changes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/liwan.toml")
    ap.add_argument("--days", default="average,peak")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--tick", type=float, default=300.0)
    ap.add_argument("--volume", type=float, default=CALIBRATED_VOLUME)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cfg = load_config(args.config)
    sim = sim_config(cfg)
    core_cls = load_core("auto")
    demand = Demand.for_services([s.code for s in cfg.services])
    skills = configured_skills(cfg)
    opens = sim.hall.open_hours[0][0]
    start_s = opens.hour * 3600.0 + opens.minute * 60.0
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for label in args.days.split(","):
        dom = DAYS[label]
        days = draw_days(
            cfg, demand, volume=args.volume, day_of_month=dom, replications=args.reps, seed=7
        )
        for bar in BARS:
            means, p95s, switches, shown, gains = [], [], 0, 0, []
            for arrivals in days:
                hook = Follow(bar) if bar is not None else None
                res = replay_day(
                    sim,
                    core_cls,
                    skills,
                    arrivals,
                    day=sim_day(dom),
                    start_s=start_s,
                    hook=hook,
                    tick_s=args.tick,
                )
                waits = sorted(x / 60.0 for ws in res.waits.values() for x in ws)
                means.append(statistics.fmean(waits))
                p95s.append(waits[int(0.95 * (len(waits) - 1))])
                if hook is not None:
                    switches += hook.switches
                    shown += hook.shown
                    gains += hook.gains
            rows.append(
                {
                    "day": label,
                    "bar": "none" if bar is None else f"gain>={bar[0]:g}min & >={bar[1]:.0%}",
                    "mean_wait_min": round(statistics.fmean(means), 2),
                    "p95_wait_min": round(statistics.fmean(p95s), 2),
                    "advice_per_day": round(shown / args.reps, 1),
                    "switches_per_day": round(switches / args.reps, 1),
                    "median_predicted_gain_min": round(statistics.median(gains), 2)
                    if gains
                    else None,
                }
            )
            r = rows[-1]
            print(
                f"{label:8} {r['bar']:24} mean {r['mean_wait_min']:6.2f}  p95 "
                f"{r['p95_wait_min']:6.2f}  advice/day {r['advice_per_day']:5.1f}  "
                f"switches/day {r['switches_per_day']:5.1f}  median gain "
                f"{r['median_predicted_gain_min']}",
                flush=True,
            )
    took = time.perf_counter() - t0
    print(f"{took:.0f} s, dispatch core {core_kind(core_cls)}", file=sys.stderr)
    if args.json:
        print(json.dumps({"rows": rows, "seconds": round(took, 1)}))


if __name__ == "__main__":
    main()
