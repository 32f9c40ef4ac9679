"""What the fuzz suites share: how many inputs to try, from which seed, and how to report.

CI runs each suite at a size that takes seconds; the long run the issue asks for (a
million frames, 100 k payloads, 10 k configs) is the same code with
``HALLQ_FUZZ_SCALE=long``:

    HALLQ_FUZZ_SCALE=long .venv/bin/python -m pytest -n0 -s tests/test_fuzz_*.py

``HALLQ_FUZZ_SEED`` replays a run (a failure message prints the seed and the input).
Every suite prints one ``fuzz:`` line with its counts and time (``-n0 -s`` shows it: the
suite runs under xdist, whose workers keep a test's output).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SCALE = os.environ.get("HALLQ_FUZZ_SCALE", "ci")
if SCALE not in ("ci", "long"):
    raise RuntimeError(f"HALLQ_FUZZ_SCALE must be 'ci' or 'long', got {SCALE!r}")
SEED = int(os.environ.get("HALLQ_FUZZ_SEED", "20261204"))


# A fuzz test takes seconds at CI scale, up to a minute on a loaded two-core box; the long
# run takes minutes. Either way pytest's default 60 s per test is not the limit.
TIMEOUT = pytest.mark.timeout(7200 if SCALE == "long" else 180)


def count(ci: int, long: int) -> int:
    """How many inputs a suite tries at this scale."""
    return long if SCALE == "long" else ci


def rng(salt: str) -> random.Random:
    """A generator per suite, so adding one suite does not change another's inputs."""
    return random.Random(f"{SEED}:{salt}")


@contextmanager
def report(suite: str, figures: dict[str, object]) -> Iterator[dict[str, object]]:
    """Time the block and print ``fuzz: <suite> ...`` with whatever it filled in."""
    started = time.perf_counter()
    try:
        yield figures
    finally:
        figures["seconds"] = round(time.perf_counter() - started, 2)
        shown = " ".join(f"{k}={v}" for k, v in figures.items())
        print(f"\nfuzz: {suite} scale={SCALE} seed={SEED} {shown}")
