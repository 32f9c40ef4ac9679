"""Find the daily volume at which a policy's mean wait hits a target (the seed's 5.04 min).

The seed gives the hall's mean wait and counter time but not its daily volume, so the
volume is what calibration solves for: bisection on the expected arrivals of an average
filing-period day, every trial on the same seeds, so the curve it searches is smooth
enough to bisect.
"""

from __future__ import annotations

from collections.abc import Callable

from coordinator.simulation import run_simulation
from coordinator.simulation.profile import SEED_MEAN_WAIT_MIN
from coordinator.simulation.report import SimulationReport
from hallq.config import HallConfig


def calibrate_volume(
    cfg: HallConfig,
    *,
    target_min: float = SEED_MEAN_WAIT_MIN,
    policy: str = "fifo",
    low: float = 4000.0,
    high: float = 12000.0,
    replications: int = 10,
    seed: int = 1,
    core_kind: str = "auto",
    tolerance_min: float = 0.05,
    max_steps: int = 12,
    log: Callable[[str], None] | None = None,
) -> tuple[float, SimulationReport]:
    """The volume (rounded to 10 arrivals) whose ``policy`` mean wait is nearest ``target``.

    Returns the volume and the report of its run. Assumes the mean wait rises with the
    volume between ``low`` and ``high`` (it does: same seeds, more load).
    """
    best: tuple[float, float, SimulationReport] | None = None
    for _ in range(max_steps):
        mid = round((low + high) / 20.0) * 10.0
        report = run_simulation(
            cfg,
            volume=mid,
            replications=replications,
            seed=seed,
            policies=[policy],
            core_kind=core_kind,
        )
        wait = report.policies[policy].waits["all"]["mean"].mean
        if log is not None:
            log(f"volume {mid:.0f}: mean wait {wait:.2f} min")
        if best is None or abs(wait - target_min) < abs(best[1] - target_min):
            best = (mid, wait, report)
        if abs(wait - target_min) <= tolerance_min or high - low <= 20:
            break
        if wait < target_min:
            low = mid
        else:
            high = mid
    assert best is not None
    return best[0], best[2]
