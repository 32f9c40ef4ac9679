"""The hall calendar: public holidays, 调休 working weekends and moved filing deadlines.

A tax hall's demand follows the 征期: the run-up to the month's filing deadline is the
busiest stretch of the month. The deadline is the 15th unless a holiday or a weekend
moves it (征期延长: 26 October 2026, after National Day), and the hall is shut on public
holidays but opens on the weekend days swapped for them (调休). ``hall.closed_days``,
``hall.extra_workdays`` and ``hall.filing_deadlines`` in the hall file say so; this is
what the forecast reads from them.

On an extra working day (a 调休 Saturday) the hall runs as on a working day; which one is
not known, so it gets the mean of the Monday-to-Friday effects (on the log scale: the
geometric mean of their multipliers). Filing phases come from
:func:`coordinator.simulation.profile.filing_phase`, the one rule the generator, the model
and the simulator share.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from coordinator.simulation.profile import FILING_DEADLINE, filing_factor, filing_phase
from hallq.config import HallConfig

__all__ = ["Calendar", "workday_factor"]


@dataclass(frozen=True, eq=False)
class Calendar:
    """Closed dates, extra working dates and filing deadlines by (year, month); the empty
    calendar (the default) is the hall without any: weekdays decide, deadlines on the 15th."""

    closed: frozenset[dt.date] = frozenset()
    extra_workdays: frozenset[dt.date] = frozenset()
    deadlines: Mapping[tuple[int, int], int] = field(default_factory=dict)
    _closed_by_month: dict[tuple[int, int], frozenset[int]] = field(
        init=False, repr=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        both = self.closed & self.extra_workdays
        if both:
            raise ValueError(f"closed and extra working day at once: {sorted(both)}")
        by_month: dict[tuple[int, int], set[int]] = {}
        for d in self.closed:
            by_month.setdefault((d.year, d.month), set()).add(d.day)
        self._closed_by_month.update({k: frozenset(v) for k, v in by_month.items()})

    @classmethod
    def of(cls, cfg: HallConfig) -> Calendar:
        """The calendar in the hall file's ``[hall]`` section."""
        hall = cfg.hall
        return cls(
            frozenset(hall.closed_days),
            frozenset(hall.extra_workdays),
            {(int(k[:4]), int(k[5:])): v for k, v in hall.filing_deadlines.items()},
        )

    @classmethod
    def make(
        cls,
        closed: Iterable[dt.date] = (),
        extra_workdays: Iterable[dt.date] = (),
        deadlines: Mapping[str, int] | None = None,
    ) -> Calendar:
        """From plain values, deadlines keyed "YYYY-MM" as in the hall file."""
        return cls(
            frozenset(closed),
            frozenset(extra_workdays),
            {(int(k[:4]), int(k[5:])): v for k, v in (deadlines or {}).items()},
        )

    def __bool__(self) -> bool:
        return bool(self.closed or self.extra_workdays or self.deadlines)

    def is_closed(self, day: dt.date) -> bool:
        return day in self.closed

    def is_extra_workday(self, day: dt.date) -> bool:
        return day in self.extra_workdays

    def uncovered_years(self, first: dt.date, last: dt.date) -> list[int]:
        """Years between ``first`` and ``last`` for which the calendar names no closed
        day: a year nobody entered, whose New Year's Day would be forecast and booked as
        open (``hallq config check`` and ``doctor`` warn)."""
        have = {d.year for d in self.closed}
        return [y for y in range(first.year, last.year + 1) if y not in have]

    def is_open(self, day: dt.date, open_weekdays: Sequence[int]) -> bool:
        """Open on ``day``: not closed, and an extra working day or an open weekday."""
        if day in self.closed:
            return False
        return day in self.extra_workdays or day.weekday() in open_weekdays

    def deadline(self, day: dt.date) -> int:
        """The day of ``day``'s month its filing deadline falls on."""
        return self.deadlines.get((day.year, day.month), FILING_DEADLINE)

    def phase(self, day: dt.date) -> int:
        """``day``'s filing phase (early / peak / after) against its month's deadline, the
        month's closed days not counted in the peak's days."""
        return filing_phase(
            day.day,
            self.deadline(day),
            self._closed_by_month.get((day.year, day.month), frozenset()),
        )

    def filing_factor(self, day: dt.date) -> float:
        """The simulator's filing factor of ``day`` under this calendar."""
        return filing_factor(
            day.day,
            self.deadline(day),
            self._closed_by_month.get((day.year, day.month), frozenset()),
        )


def workday_factor(weekday: Sequence[float]) -> float:
    """The multiplier of an extra working day from weekday multipliers (Mon=0): the
    geometric mean of the open Monday-to-Friday ones (1.0 when none is open)."""
    logs = [math.log(f) for f in weekday[:5] if f > 0]
    return math.exp(sum(logs) / len(logs)) if logs else 1.0
