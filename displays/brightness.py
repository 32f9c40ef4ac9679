"""Board brightness by time of day.

A board bright enough for a sunlit hall at noon glares at 8 in the morning and after dark
wastes power and annoys staff; halls set a few switch points instead of a light sensor.
Levels are 0-255 as luma uses them (a MAX7219 has 16 steps: level // 16); 0 is off.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Iterable

__all__ = ["DEFAULT_SCHEDULE", "BrightnessSchedule"]

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class BrightnessSchedule:
    """Switch points ``(time, level)``: a level holds from its time until the next one.

    Before the first point of the day the last point of the previous day still holds, so
    ``[("07:30", 160), ("18:00", 40)]`` is 40 from 18:00 overnight until 07:30.
    """

    def __init__(self, points: Iterable[tuple[dt.time | str, int]]) -> None:
        parsed: dict[dt.time, int] = {}
        for when, level in points:
            clock = _clock(when)
            if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 255:
                raise ValueError(f"brightness at {clock:%H:%M} must be 0-255, got {level!r}")
            if clock in parsed:
                raise ValueError(f"brightness schedule has {clock:%H:%M} twice")
            parsed[clock] = level
        if not parsed:
            raise ValueError("a brightness schedule needs at least one (HH:MM, level) point")
        self.points = sorted(parsed.items())
        self._times = [t for t, _ in self.points]

    def __repr__(self) -> str:
        inner = ", ".join(f"{t:%H:%M}={level}" for t, level in self.points)
        return f"BrightnessSchedule({inner})"

    def level_at(self, when: dt.time | dt.datetime) -> int:
        """The level at a local wall-clock time (pass the hall's local time, not UTC)."""
        clock = when.time() if isinstance(when, dt.datetime) else when
        clock = clock.replace(tzinfo=None)
        i = bisect.bisect_right(self._times, clock) - 1
        return self.points[i][1]  # i == -1: the last point, carried over from yesterday

    def next_switch(self, when: dt.datetime) -> dt.datetime:
        """When the level next changes after ``when`` (same tzinfo), so an agent can sleep."""
        for day in (0, 1):
            date = when.date() + dt.timedelta(days=day)
            for clock, _ in self.points:
                at = dt.datetime.combine(date, clock, tzinfo=when.tzinfo)
                if at > when:
                    return at
        raise AssertionError("unreachable: a schedule has at least one point")


def _clock(value: dt.time | str) -> dt.time:
    if isinstance(value, dt.time):
        return value.replace(second=0, microsecond=0, tzinfo=None)
    if isinstance(value, str) and (m := _HHMM.fullmatch(value.strip())):
        return dt.time(int(m.group(1)), int(m.group(2)))
    raise ValueError(f'expected a local time "HH:MM", got {value!r}')


DEFAULT_SCHEDULE = BrightnessSchedule([("00:00", 32), ("07:30", 160), ("18:30", 64)])
