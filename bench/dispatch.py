"""Dispatch core: issue (add) and call-next cost, compiled versus pure Python, in one run.

The hall is the seed's: 47 windows and 20 services. Twelve "一窗通办" windows serve all 20
services; the other 35 serve 2-5 services each, their main one weighted higher. 1,000 tickets
wait (green channel, appointments with slots around now, assisted, normal; popular services
busier), so every call looks at the heads of up to 81 queues.

- issue: ``add`` of 1,000 fresh tickets into an empty core, in batches of 50;
- call-next: batches of 50 ``call_next`` on windows in a shuffled rotation, the clock
  advancing one second a call; after each batch, untimed, 50 new tickets are issued, so the
  queue stays between 950 and 1,000.

Figures are medians of per-batch means (a batch amortises the timer; the Python loop around
each call is included). Both kinds replay the same seeded hall and must call the same tickets.

Usage: python bench/dispatch.py [--rounds 400] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from coordinator.dispatch import describe, load_core

N_SERVICES = 20
N_WINDOWS = 47
N_ALL_SERVICE = 12
WAITING = 1_000
BATCH = 50
GREEN, APPOINTMENT, ASSISTED, NORMAL = 0, 1, 2, 3


@dataclass
class Issue:
    s: int
    cls: int
    issue_time: float
    appt_start: float
    appt_end: float


class Hall:
    """A seeded hall and ticket stream, identical for every kind measured."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.popularity = [1.0 / (rank + 1) ** 0.8 for rank in range(N_SERVICES)]
        self.targets = [rng.choice([300.0, 450.0, 600.0, 900.0]) for _ in range(N_SERVICES)]
        self.skills: list[tuple[list[int], list[float]]] = []
        for w in range(N_WINDOWS):
            if w < N_ALL_SERVICE:
                self.skills.append((list(range(N_SERVICES)), [1.0] * N_SERVICES))
                continue
            services = rng.sample(range(N_SERVICES), rng.randint(2, 5))
            weights = [2.0] + [rng.choice([0.5, 1.0, 1.0, 1.5]) for _ in services[1:]]
            self.skills.append((services, weights))
        self.rotation = [w for w in range(N_WINDOWS) for _ in range(3)]
        rng.shuffle(self.rotation)

    def ticket(self, now: float, max_wait: float) -> Issue:
        rng = self.rng
        s = rng.choices(range(N_SERVICES), self.popularity)[0]
        cls = rng.choices([GREEN, APPOINTMENT, ASSISTED, NORMAL], [2, 10, 5, 83])[0]
        issue_time = now - rng.uniform(0.0, max_wait)
        appt_start = appt_end = 0.0
        if cls == APPOINTMENT:
            appt_start = now + 1800.0 * rng.randint(-2, 2)
            appt_end = appt_start + 1800.0
        return Issue(s, cls, issue_time, appt_start, appt_end)

    def configure(self, core: Any) -> None:
        for s, target in enumerate(self.targets):
            core.set_service(s, target)
        for w, (services, weights) in enumerate(self.skills):
            core.set_skills(w, services, weights)


def median_us(samples_ns: list[float]) -> float:
    return statistics.median(samples_ns) / 1000.0


def bench_issue(cls: type[Any], rounds: int, seed: int) -> float:
    per_op: list[float] = []
    for r in range(rounds):
        hall = Hall(seed + r)
        core = cls(N_SERVICES, N_WINDOWS)
        hall.configure(core)
        now = 36_000.0
        tickets = sorted(
            (hall.ticket(now, 3600.0) for _ in range(WAITING)), key=lambda x: x.issue_time
        )
        add = core.add
        for start in range(0, WAITING, BATCH):
            batch = [
                (t, x.s, x.cls, x.issue_time, t, x.appt_start, x.appt_end)
                for t, x in enumerate(tickets[start : start + BATCH], start)
            ]
            t0 = time.perf_counter_ns()
            for args in batch:
                add(*args)
            per_op.append((time.perf_counter_ns() - t0) / BATCH)
    return median_us(per_op)


def bench_call_next(cls: type[Any], rounds: int, seed: int) -> tuple[float, list[int]]:
    hall = Hall(seed)
    core = cls(N_SERVICES, N_WINDOWS)
    hall.configure(core)
    now = 36_000.0
    tickets = sorted((hall.ticket(now, 3600.0) for _ in range(WAITING)), key=lambda x: x.issue_time)
    for t, x in enumerate(tickets):
        core.add(t, x.s, x.cls, x.issue_time, t, x.appt_start, x.appt_end)
    next_t = WAITING
    call = core.call_next
    rotation = hall.rotation
    per_op: list[float] = []
    called: list[int] = []
    position = 0
    for _ in range(rounds):
        windows = [rotation[(position + i) % len(rotation)] for i in range(BATCH)]
        position += BATCH
        got = [0] * BATCH
        t0 = time.perf_counter_ns()
        for i, w in enumerate(windows):
            got[i] = call(w, now)
        per_op.append((time.perf_counter_ns() - t0) / BATCH)
        called.extend(got)
        now += BATCH
        for _ in range(BATCH):
            x = hall.ticket(now, 1.0)
            core.add(next_t, x.s, x.cls, now, next_t, x.appt_start, x.appt_end)
            next_t += 1
    return median_us(per_op), called


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="call-next batches per kind")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--json", action="store_true", help="print a JSON line at the end")
    args = parser.parse_args()

    print(describe())
    results: dict[str, float] = {}
    calls: dict[str, list[int]] = {}
    for kind in ("compiled", "pure"):
        cls = load_core(kind)
        results[f"issue_us_{kind}"] = bench_issue(cls, max(1, args.rounds // 20), args.seed)
        results[f"call_next_us_{kind}"], calls[kind] = bench_call_next(cls, args.rounds, args.seed)
    if calls["compiled"] != calls["pure"]:
        sys.exit("compiled and pure dispatch cores called different tickets")
    results["ratio"] = results["call_next_us_pure"] / results["call_next_us_compiled"]
    issue_ratio = results["issue_us_pure"] / results["issue_us_compiled"]

    n_calls = args.rounds * BATCH
    print(
        f"{N_WINDOWS} windows, {N_SERVICES} services, ~{WAITING} waiting; "
        f"{n_calls} calls per kind, batches of {BATCH}, medians of batch means"
    )
    print(f"{'':10} {'issue µs':>10} {'issue/s':>12} {'call µs':>10} {'call/s':>12}")
    for kind in ("compiled", "pure"):
        issue, call = results[f"issue_us_{kind}"], results[f"call_next_us_{kind}"]
        print(f"{kind:10} {issue:10.3f} {1e6 / issue:12,.0f} {call:10.3f} {1e6 / call:12,.0f}")
    print(
        f"pure/compiled: call_next {results['ratio']:.1f}x, issue {issue_ratio:.1f}x; "
        f"both kinds called the same {n_calls} tickets"
    )
    if args.json:
        print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()
