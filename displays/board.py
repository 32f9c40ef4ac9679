"""The main hall board (综合屏) and zone boards: the latest calls, newest first, and a ticker.

Layout, in 16-pixel rows: every row but the last shows calls, as many across as fit (the
whole "请A023号到15号窗口" wherever it fits, else "A023→15"); the last row is a ticker
(the notice, the comfort level, people waiting per service) that scrolls when it is wider
than the board. A one-row board shows calls only. A call that
arrives while the board is running blinks off three times so heads turn; calls already on
the board when it starts do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from PIL import Image

from displays.fonts import GLYPH_HEIGHT, BitmapFont, default_font
from displays.frame import OFFLINE_BLINK_PERIOD, blank, draw_offline_marker, paste_clipped
from displays.motion import (
    FLASH_PERIOD,
    FLASH_TIMES,
    Marquee,
    blink_next_change,
    flash_next_change,
    flash_visible,
)
from displays.texts import CALL_COMPACT, CALL_FULL, COMFORT, SEPARATOR, WAITING, WELCOME
from hallq.messages import BoardCall, BoardState, CallEvent

__all__ = ["BoardSpec", "CallBoard"]

CallStyle = Literal["auto", "full", "compact"]
_COLUMN_GAP = 8


@dataclass(frozen=True, slots=True)
class BoardSpec:
    """What a board is: its size in pixels, which zone it serves, how it names services.

    ``services`` are (code, name) pairs in the order the ticker lists them; a zone board
    lists only its zone's services. ``ticket_chars`` and ``window_digits`` are the longest
    ticket ("A0023": 5) and window number (47: 2) the hall uses, so the call grid keeps its
    columns when a long number arrives.
    """

    width: int
    height: int
    zone: str | None = None
    site: str | None = None  # its zone's 办税点, where the hall has several
    zones: frozenset[str] | None = None  # no zone: the zones it shows (None: every one)
    services: tuple[tuple[str, str], ...] = ()
    call_style: CallStyle = "auto"
    ticket_chars: int = 4
    window_digits: int = 2
    scroll_speed: float = 32.0
    max_calls: int | None = None

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < GLYPH_HEIGHT:
            raise ValueError(
                f"a call board needs at least 8x{GLYPH_HEIGHT} pixels for its "
                f"{GLYPH_HEIGHT}-px font, got {self.width}x{self.height}"
            )


def _call_key(call: BoardCall) -> tuple[str, int, str]:
    return (call.ticket, call.window, call.called_at.isoformat())


class CallBoard:
    """Renders a board from the retained ``BoardState`` the board agent passes in.

    ``now`` and ``t`` are seconds on the agent's monotonic clock; ``frame_at(t)`` is a pure
    function of the updates made so far and ``t``.
    """

    def __init__(self, spec: BoardSpec, font: BitmapFont | None = None) -> None:
        self.spec = spec
        self.font = font or default_font()
        self.size = (spec.width, spec.height)
        self.rows = spec.height // GLYPH_HEIGHT
        self.style, self.columns = self._grid()
        self.ticker = Marquee(self.font, spec.width, speed=spec.scroll_speed)
        self.online = True
        self.calls: list[BoardCall] = []
        self._seen: set[tuple[str, int, str]] | None = None  # None until the first state
        self._flash: dict[tuple[str, int], float] = {}

    def __repr__(self) -> str:
        where = (
            f"zone {self.spec.zone}"
            if self.spec.zone
            else f"zones {','.join(sorted(self.spec.zones))}"
            if self.spec.zones
            else "whole hall"
        )
        return (
            f"CallBoard({self.spec.width}x{self.spec.height}, {where}, "
            f"{self.style} x{self.columns})"
        )

    # --- input ----------------------------------------------------------------------

    def shows(self, zone: str) -> bool:
        if self.spec.zone is not None:
            return zone == self.spec.zone
        return self.spec.zones is None or zone in self.spec.zones

    def update(self, state: BoardState, now: float) -> None:
        calls = [c for c in state.calls if self.shows(c.zone)]
        keys = {_call_key(c) for c in calls}
        if self._seen is not None:
            for call in calls:
                if _call_key(call) not in self._seen:
                    self._start_flash((call.ticket, call.window), now)
        self._seen = keys
        self.calls = calls
        self._forget_flashes(now)
        text = self.ticker_text(state)
        self.ticker.set_text(text, now, wait=bool(text))

    def note_call(self, event: CallEvent, now: float) -> None:
        """A call event (a recall above all, which may leave BoardState unchanged) flashes."""
        if self.shows(event.zone):
            self._start_flash((event.ticket, event.window), now)

    def set_online(self, online: bool) -> None:
        self.online = online

    def ticker_text(self, state: BoardState) -> str:
        items = []
        if state.notice:
            items.append(state.notice.strip())
        if state.comfort:
            items.append(COMFORT.format(level=state.comfort))
        names = dict(self.spec.services)
        codes = list(names)
        waiting = state.waiting
        if self.spec.site is not None and self.spec.site in state.site_waiting:
            waiting = state.site_waiting[self.spec.site]  # its tickets are called only here
        if self.spec.zone is None and self.spec.zones is None:
            codes += [code for code in waiting if code not in names]
        for code in codes:
            if code in waiting:
                items.append(WAITING.format(service=names.get(code, code), count=waiting[code]))
        return SEPARATOR.join(item for item in items if item)

    # --- output ---------------------------------------------------------------------

    def frame_at(self, t: float) -> Image.Image:
        frame = blank(self.size)
        ticker_row = self._ticker_row()
        call_rows = self.rows - (1 if ticker_row is not None else 0)
        pitch = self.spec.width // self.columns
        shown = self._shown_calls(call_rows)
        for i, call in enumerate(shown):
            start = self._flash.get((call.ticket, call.window))
            if start is not None and not flash_visible(t - start):
                continue
            strip = self.font.render(self.call_text(call))
            row, col = divmod(i, self.columns)
            x = col * pitch + max(0, (pitch - strip.width) // 2)
            paste_clipped(frame, strip, x, row * GLYPH_HEIGHT, pitch)
        if not shown and call_rows > 0:
            strip = self.font.render(WELCOME)
            paste_clipped(
                frame, strip, max(0, (self.spec.width - strip.width) // 2), 0, self.spec.width
            )
        if ticker_row is not None:
            self.ticker.draw(frame, 0, ticker_row * GLYPH_HEIGHT, t)
        if not self.online:
            draw_offline_marker(frame, t)
        return frame

    def next_change(self, t: float) -> float | None:
        times = []
        if self._ticker_row() is not None and (at := self.ticker.next_change(t)) is not None:
            times.append(at)
        ticker_row = self._ticker_row()
        for call in self._shown_calls(self.rows - (1 if ticker_row is not None else 0)):
            start = self._flash.get((call.ticket, call.window))
            if start is not None and (delay := flash_next_change(t - start)) is not None:
                times.append(t + delay)
        if not self.online:
            times.append(blink_next_change(t, OFFLINE_BLINK_PERIOD))
        return min(times, default=None)

    def call_text(self, call: BoardCall | CallEvent) -> str:
        template = CALL_FULL if self.style == "full" else CALL_COMPACT
        return template.format(ticket=call.ticket, window=call.window)

    # --- inside ---------------------------------------------------------------------

    def _ticker_row(self) -> int | None:
        return self.rows - 1 if self.rows >= 2 and self.ticker.text else None

    def _shown_calls(self, call_rows: int) -> list[BoardCall]:
        limit = call_rows * self.columns
        if self.spec.max_calls is not None:
            limit = min(limit, self.spec.max_calls)
        return self.calls[: max(0, limit)]

    def _grid(self) -> tuple[str, int]:
        """The call style and column count: ``auto`` says the whole "请A023号到15号窗口"
        wherever one fits across, "A023→15" only on boards too narrow for it."""
        ticket = "A" + "0" * max(1, self.spec.ticket_chars - 1)
        window = "8" * max(1, self.spec.window_digits)
        width = self.spec.width
        fits = {}
        for style, template in (("full", CALL_FULL), ("compact", CALL_COMPACT)):
            needed = self.font.text_width(template.format(ticket=ticket, window=window))
            fits[style] = max(1, (width + _COLUMN_GAP) // (needed + _COLUMN_GAP))
            if needed > width:
                fits[style] = 0  # does not fit even once: clipped
        if self.spec.call_style != "auto":
            return self.spec.call_style, max(1, fits[self.spec.call_style])
        if fits["full"] > 0:  # the whole sentence wherever it fits, even once a row
            return "full", fits["full"]
        return "compact", max(1, fits["compact"])

    def _start_flash(self, key: tuple[str, int], now: float) -> None:
        start = self._flash.get(key)
        if start is None or not 0 <= now - start < FLASH_TIMES * FLASH_PERIOD:
            self._flash[key] = now

    def _forget_flashes(self, now: float) -> None:
        over = FLASH_TIMES * FLASH_PERIOD
        self._flash = {k: s for k, s in self._flash.items() if now - s < over}
