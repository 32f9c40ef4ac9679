"""Scrolling, flashing and blinking as pure functions of time.

Every animated thing on a board is computed from ``t`` (seconds on whatever monotonic clock
the board agent uses) and the time a change was noted, never from a frame counter. So a
frame is the same whenever it is drawn, tests ask for the frame at t = 2.25 s instead of
sleeping, and a board agent that falls behind skips frames without slowing the animation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from displays.fonts import GLYPH_HEIGHT, BitmapFont

if TYPE_CHECKING:
    from displays.fonts import Raster

__all__ = [
    "FLASH_PERIOD",
    "FLASH_TIMES",
    "Marquee",
    "blink_next_change",
    "blink_on",
    "flash_next_change",
    "flash_visible",
]

FLASH_TIMES = 3
FLASH_PERIOD = 1.0  # shown for the first half of each period, blank for the second


def flash_visible(age: float, *, times: int = FLASH_TIMES, period: float = FLASH_PERIOD) -> bool:
    """Whether a call ``age`` seconds after it appeared is drawn: it blinks off ``times`` times.

    It starts shown, so the number is readable the instant it arrives.
    """
    if age < 0 or age >= times * period:
        return True
    return age % period < period / 2


def flash_next_change(
    age: float, *, times: int = FLASH_TIMES, period: float = FLASH_PERIOD
) -> float | None:
    """Seconds from ``age`` to the next on/off switch of a flash, or None once it is over."""
    if age < 0 or age >= times * period:
        return None
    half = period / 2
    return (math.floor(age / half) + 1) * half - age


def blink_on(t: float, period: float = 2.0) -> bool:
    return t % period < period / 2


def blink_next_change(t: float, period: float = 2.0) -> float:
    half = period / 2
    return (math.floor(t / half) + 1) * half


@dataclass(frozen=True, slots=True)
class _Run:
    text: str
    strip: Raster
    start: float


class Marquee:
    """A one-line lane: text that fits stands still, wider text scrolls in from the right.

    Scrolling moves one pixel per step at ``speed`` pixels a second: the text enters at the
    right edge and leaves at the left, then starts again. A new text replaces a scrolling
    one only when the current pass ends (``wait=True``), so a ticker whose waiting counts
    change every few seconds is still read to the end; a window's new number replaces the
    old one at once (``wait=False``).
    """

    def __init__(
        self,
        font: BitmapFont[Any],
        width: int,
        *,
        speed: float = 32.0,
        align: Literal["left", "center"] = "left",
    ) -> None:
        if width < 1:
            raise ValueError(f"a marquee needs a width of at least 1 pixel, got {width}")
        if not speed > 0:
            raise ValueError(f"scroll speed must be above 0 pixels a second, got {speed}")
        self.font = font
        self.width = width
        self.speed = speed
        self.align = align
        self._current: _Run | None = None
        self._pending: _Run | None = None

    @property
    def text(self) -> str:
        """The latest text given, whether or not it is showing yet."""
        run = self._pending or self._current
        return run.text if run else ""

    def set_text(self, text: str, now: float, *, wait: bool = True) -> None:
        self._commit(now)
        if text == self.text:
            return
        run = _Run(text, self.font.render(text), now)
        current = self._current
        if not wait or current is None or not current.text or not self._scrolls(current):
            self._current, self._pending = run, None
            return
        period = self._period(current)
        passes = math.ceil((now - current.start) / period)
        self._pending = _Run(text, run.strip, current.start + passes * period)

    def scrolls_at(self, t: float) -> bool:
        run = self._run_at(t)
        return run is not None and self._scrolls(run)

    def offset_at(self, t: float) -> int | None:
        """Where the text's left edge is, relative to the lane, at ``t``; None when blank."""
        run = self._run_at(t)
        if run is None or not run.text:
            return None
        width = run.strip.width
        if not self._scrolls(run):
            return 0 if self.align == "left" else (self.width - width) // 2
        step = math.floor((t - run.start) * self.speed + 1e-9)
        return self.width - step % (self.width + width)

    def draw(self, frame: Raster, x: int, y: int, t: float) -> None:
        """Onto ``frame``, which is of the kind the font draws (Pillow's or ``Bits``)."""
        run = self._run_at(t)
        offset = self.offset_at(t)
        if run is None or offset is None:
            return
        left = max(0, -offset)
        right = min(run.strip.width, self.width - offset)
        if right > left:
            piece = run.strip.crop((left, 0, right, GLYPH_HEIGHT))
            frame.paste(piece, (x + offset + left, y))  # type: ignore[arg-type]

    def next_change(self, t: float) -> float | None:
        """The next time after ``t`` the lane looks different, or None if it never will."""
        run = self._run_at(t)
        times = []
        if run is not None and self._scrolls(run):
            step = math.floor((t - run.start) * self.speed + 1e-9)
            times.append(run.start + (step + 1) / self.speed)
        if self._pending is not None and self._pending.start > t:
            times.append(self._pending.start)
        return min(times, default=None)

    def _scrolls(self, run: _Run) -> bool:
        return bool(run.text) and run.strip.width > self.width

    def _period(self, run: _Run) -> float:
        return (self.width + run.strip.width) / self.speed

    def _run_at(self, t: float) -> _Run | None:
        if self._pending is not None and t >= self._pending.start:
            return self._pending
        return self._current

    def _commit(self, now: float) -> None:
        if self._pending is not None and now >= self._pending.start:
            self._current, self._pending = self._pending, None
