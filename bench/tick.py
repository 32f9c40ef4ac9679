"""The coordinator's periodic work through a day: flat from the first ticket to the 20,000th?

Every second the coordinator renders today's KPIs (``Engine.stats_state``) and, for the wait
estimates, captures the hall (``WaitEstimator.capture``), both on the event loop: whatever
they cost, every command in flight waits for. This plays one long day into an engine (the
bench hall of ``coordinator_load.py``: open round the clock, no caps), with the calls
keeping the waiting line at about ``--waiting`` tickets, and times both at each checkpoint
of the day. The comparison is the day against itself: the cost at the last checkpoint over
the cost at the first, in the same run.

Usage: python bench/tick.py [--tickets 20000] [--waiting 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from coordinator_load import hall_text

from coordinator.dispatch import load_core
from coordinator.engine import Engine
from coordinator.eta import WaitEstimator
from hallq import messages as m
from hallq.config import parse_config

REPEAT = 30


def timed(fn: Callable[[], object]) -> float:
    """Median ms of ``fn`` over REPEAT runs, after one to warm it."""
    fn()
    runs = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=20_000)
    parser.add_argument("--waiting", type=int, default=100, help="the waiting line kept")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()

    cfg = parse_config(hall_text("mqtt://127.0.0.1:1883", Path("/nonexistent")), "bench")
    engine = Engine(cfg, load_core("compiled"), by_site=False)  # (issues name no dispenser)
    now = 1_796_400_000.0
    engine.roll_over(now)
    estimator = WaitEstimator(engine)
    services, windows = list(engine.services), list(engine.windows)
    rng = random.Random(1)
    marks = sorted({1_000, args.tickets // 4, args.tickets // 2, args.tickets})
    rows = []
    print(f"{'tickets':>8} {'waiting':>8} {'stats ms':>9} {'capture ms':>11}")
    while len(engine.tickets) < args.tickets:
        now += 1.5
        engine.apply(m.IssueRequest(kind="issue", service=rng.choice(services)), now)
        while len(engine.waiting_in_queues()) > args.waiting:
            now += 0.1
            engine.apply(m.WindowAction(window=rng.choice(windows), action="call"), now)
        if len(engine.tickets) in marks:
            row = {
                "tickets": len(engine.tickets),
                "waiting": len(engine.waiting_in_queues()),
                "stats_ms": round(timed(partial(engine.stats_state, 1, now)), 3),
                "capture_ms": round(timed(partial(estimator.capture, now)), 3),
            }
            rows.append(row)
            print(
                f"{row['tickets']:>8} {row['waiting']:>8} {row['stats_ms']:>9.3f} "
                f"{row['capture_ms']:>11.3f}",
                flush=True,
            )
    first, last = rows[0], rows[-1]
    growth = {k: round(last[k] / first[k], 2) for k in ("stats_ms", "capture_ms")}
    print(
        f"ticket {last['tickets']} / ticket {first['tickets']}: stats {growth['stats_ms']}x, "
        f"capture {growth['capture_ms']}x"
    )
    if args.json:
        print(json.dumps({"rows": rows, "growth": growth}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
