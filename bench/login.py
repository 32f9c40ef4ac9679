"""Supervisor desk logins: what an argon2id check costs, and what it costs the queue.

The desk checks a password against its argon2id hash (argon2-cffi defaults: 64 MiB, t=3,
p=4) in a worker thread, one check at a time, because the coordinator's event loop also
serves the hall's MQTT traffic. This measures one check, and the event loop's worst
lateness (a 1 ms ticker) while ``--logins`` checks run, once in a thread as the desk does
and once inline on the loop, as a naive handler would.

Usage: python bench/login.py [--logins 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable

from argon2 import PasswordHasher

HASHER = PasswordHasher()
PASSWORD = "correct horse battery"


def check(stored: str) -> None:
    HASHER.verify(stored, PASSWORD)


async def worst_lag_ms(work: Callable[[], object]) -> float:
    """The loop's largest lateness on a 1 ms tick while ``work`` runs."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, (time.perf_counter() - start - 0.001) * 1000)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    result = work()
    if asyncio.iscoroutine(result):
        await result
    done.set()
    await task
    return worst


async def measure(logins: int) -> dict[str, float]:
    stored = HASHER.hash(PASSWORD)
    times = []
    for _ in range(logins):
        start = time.perf_counter()
        check(stored)
        times.append((time.perf_counter() - start) * 1000)

    async def threaded() -> None:
        for _ in range(logins):
            await asyncio.to_thread(check, stored)

    def inline() -> None:
        for _ in range(logins):
            check(stored)

    idle = await worst_lag_ms(lambda: asyncio.sleep(0.2))
    in_thread = await worst_lag_ms(threaded)
    on_loop = await worst_lag_ms(inline)
    return {
        "check_ms_median": statistics.median(times),
        "check_ms_max": max(times),
        "loop_lag_idle_ms": idle,
        "loop_lag_thread_ms": in_thread,
        "loop_lag_inline_ms": on_loop,
        "logins": logins,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = asyncio.run(measure(args.logins))
    print(
        f"argon2id check (m=64 MiB, t=3, p=4): median {r['check_ms_median']:.0f} ms, "
        f"max {r['check_ms_max']:.0f} ms over {args.logins}"
    )
    print(
        f"event loop worst lateness: idle {r['loop_lag_idle_ms']:.1f} ms; "
        f"{args.logins} checks in a thread {r['loop_lag_thread_ms']:.1f} ms; "
        f"inline {r['loop_lag_inline_ms']:.0f} ms "
        f"({r['loop_lag_inline_ms'] / max(r['loop_lag_thread_ms'], 0.1):.0f}x)"
    )
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
