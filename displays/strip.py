"""The LED strip above one window (LED条屏): the number being served there.

Open with a ticket: "请A023号", blinking off three times when the number changes (or is
recalled). Open with no ticket: the window's own number. Paused: "暂停服务", once the
ticket called there is done (its holder is still on the way). Closed: dark.
A configured message (e.g. "一窗通办") scrolls beside the number on a one-row strip, or
under it on a two-row one; it is hidden while the window is closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic

from displays.fonts import GLYPH_HEIGHT, BitmapFont, R, default_font
from displays.frame import OFFLINE_BLINK_PERIOD, draw_offline_marker
from displays.motion import (
    FLASH_PERIOD,
    FLASH_TIMES,
    Marquee,
    blink_next_change,
    flash_next_change,
    flash_visible,
)
from displays.texts import IDLE, PAUSED, SERVING
from hallq.messages import WindowStatus

if TYPE_CHECKING:
    from hallq.messages import CallEvent, WindowState

__all__ = ["StripSpec", "WindowStrip"]

log = logging.getLogger("displays.strip")
_GAP = 8
_MIN_MESSAGE_LANE = 32


@dataclass(frozen=True, slots=True)
class StripSpec:
    width: int
    height: int
    window: int
    message: str | None = None
    ticket_chars: int = 4
    scroll_speed: float = 32.0

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < GLYPH_HEIGHT:
            raise ValueError(
                f"a window strip needs at least 8x{GLYPH_HEIGHT} pixels, "
                f"got {self.width}x{self.height}"
            )


class WindowStrip(Generic[R]):
    """Renders one window's strip from its retained ``WindowState``; same clock rules as boards."""

    def __init__(self, spec: StripSpec, font: BitmapFont[R] | None = None) -> None:
        self.spec = spec
        self.font: BitmapFont[R] = font or default_font()  # type: ignore[assignment]
        self.size = (spec.width, spec.height)
        self.online = True
        self.status: WindowStatus | None = None
        self.ticket: str | None = None
        self._flash_start: float | None = None
        two_rows = spec.height >= 2 * GLYPH_HEIGHT
        widest = self.font.text_width(SERVING.format(ticket="A" + "0" * (spec.ticket_chars - 1)))
        beside = min(spec.width, widest)  # the number's width when the message is beside it
        lane = spec.width if two_rows else spec.width - beside - _GAP
        self.message: Marquee | None = None
        if spec.message and lane >= _MIN_MESSAGE_LANE:
            self.message = Marquee(self.font, lane, speed=spec.scroll_speed)
            self.message.set_text(spec.message, 0.0)
        elif spec.message:
            log.warning(
                "window %d: a %dx%d strip has no room for the message %r; it is not shown",
                spec.window,
                spec.width,
                spec.height,
                spec.message,
            )
        self._two_rows = two_rows
        self._main_width = beside if self.message is not None and not two_rows else spec.width
        self.main = Marquee(self.font, self._main_width, speed=spec.scroll_speed, align="center")
        self.main.set_text(IDLE.format(window=spec.window), 0.0, wait=False)

    def __repr__(self) -> str:
        return f"WindowStrip(window {self.spec.window}, {self.spec.width}x{self.spec.height})"

    # --- input ----------------------------------------------------------------------

    def update(self, state: WindowState, now: float) -> None:
        if state.window != self.spec.window:
            raise ValueError(
                f"the strip of window {self.spec.window} was given window {state.window}'s state"
            )
        ticket = state.ticket if state.status != WindowStatus.CLOSED else None
        if self.status is not None and ticket is not None and ticket != self.ticket:
            self._start_flash(now)
        self.status, self.ticket = state.status, ticket
        self.main.set_text(self.main_text(), now, wait=False)

    def note_call(self, event: CallEvent, now: float) -> None:
        if event.window == self.spec.window:
            self._start_flash(now)

    def set_online(self, online: bool) -> None:
        self.online = online

    def main_text(self) -> str:
        if self.status == WindowStatus.CLOSED:
            return ""
        if self.status == WindowStatus.PAUSED and not self.ticket:
            return PAUSED
        if self.ticket:
            return SERVING.format(ticket=self.ticket)
        return IDLE.format(window=self.spec.window)

    # --- output ---------------------------------------------------------------------

    def frame_at(self, t: float) -> R:
        """The frame at ``t``, of the font's kind: a Pillow image, or ``Bits`` from a font
        made with ``pillow=False`` (the same pixels)."""
        frame = self.font.new_image(self.size)
        if self._flash_start is None or flash_visible(t - self._flash_start):
            self.main.draw(frame, 0, 0, t)
        if self.message is not None and self.status != WindowStatus.CLOSED:
            if self._two_rows:
                self.message.draw(frame, 0, GLYPH_HEIGHT, t)
            else:
                self.message.draw(frame, self._main_width + _GAP, 0, t)
        if not self.online:
            draw_offline_marker(frame, t)
        return frame

    def next_change(self, t: float) -> float | None:
        times: list[float | None] = [self.main.next_change(t)]
        if self.message is not None and self.status != WindowStatus.CLOSED:
            times.append(self.message.next_change(t))
        if self._flash_start is not None:
            delay = flash_next_change(t - self._flash_start)
            times.append(None if delay is None else t + delay)
        if not self.online:
            times.append(blink_next_change(t, OFFLINE_BLINK_PERIOD))
        return min((at for at in times if at is not None), default=None)

    def _start_flash(self, now: float) -> None:
        start = self._flash_start
        if start is None or not 0 <= now - start < FLASH_TIMES * FLASH_PERIOD:
            self._flash_start = now
