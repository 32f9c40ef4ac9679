"""The bar table ``hallq advise`` prints under its plan, and BENCHMARKS quotes.

The bar (issue 8): hallq with express-window advice at least 25% below per-service FIFO
in mean wait and 35% in p95, same staffing, green channel mean < 1 min.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from coordinator.advice.plan import Plan

__all__ = ["BarRow", "bar_rows"]

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
        return (
            self.mean_cut >= MEAN_CUT
            and self.p95_cut >= P95_CUT
            and self.green_mean is not None
            and self.green_mean < GREEN_MAX_MIN
        )

    def markdown(self) -> str:
        return (
            f"| {self.name} | {self.mean:.2f} ± {self.mean_ci:.2f} | "
            f"{self.p95:.2f} ± {self.p95_ci:.2f} | {self.green_mean} | "
            f"{-self.mean_cut:+.0%} | {-self.p95_cut:+.0%} |"
        )


def bar_rows(plan: Plan, green: str = GREEN) -> list[BarRow]:
    """One row per variant of the plan's reports, cuts measured against ``fifo``."""
    fifo = plan.reports["fifo"].waits["all"]
    rows: list[BarRow] = []
    for key, rep in plan.reports.items():
        w = rep.waits["all"]
        g = rep.waits.get(green, {}).get("mean")
        rows.append(
            BarRow(
                variant=key,
                name=rep.name,
                mean=round(w["mean"].mean, 2),
                mean_ci=round(w["mean"].half, 2),
                p95=round(w["p95"].mean, 2),
                p95_ci=round(w["p95"].half, 2),
                green_mean=None if g is None or math.isnan(g.mean) else round(g.mean, 2),
                mean_cut=round(1 - w["mean"].mean / fifo["mean"].mean, 3),
                p95_cut=round(1 - w["p95"].mean / fifo["p95"].mean, 3),
            )
        )
    return rows
