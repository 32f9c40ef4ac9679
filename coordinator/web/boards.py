"""The hall's LED call boards as PNG, drawn by the same renderer the board agents use.

So the dashboard shows what the hall sees (font, layout, which calls fit), each request
builds the board afresh from the engine's current ``BoardState``; no flash or scroll
state is kept (frame at t=0). A hall with no LED board configured gets one default
whole-hall board, so the hall view always has a picture.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from hallq.config import HallConfig

DEFAULT_SIZE = (192, 64)
SCALE = 3


@dataclass(frozen=True, slots=True)
class BoardInfo:
    id: str
    zone: str | None
    width: int
    height: int


def _board_devices(cfg: HallConfig) -> list[Any]:
    return [d for agent in cfg.agents for d in agent.devices
            if d.kind in ("led_max7219", "led_serial") and d.window is None]


def boards(cfg: HallConfig) -> list[BoardInfo]:
    found = []
    for d in _board_devices(cfg):
        led = d.led
        width, height = (led.width, led.height) if led is not None else DEFAULT_SIZE
        found.append(BoardInfo(d.id, d.zone, width, height))
    return found or [BoardInfo("hall", None, *DEFAULT_SIZE)]


def render_png(cfg: HallConfig, board_id: str, state: Any) -> bytes | None:
    """PNG of one board showing ``state``; None for an unknown board id.

    Raises ImportError when the displays package is not usable (the API answers 503).
    """
    from displays.board import BoardSpec, CallBoard
    from displays.emulator import led_look
    from displays.layouts import make_layout

    device = next((d for d in _board_devices(cfg) if d.id == board_id), None)
    if device is not None:
        layout: Any = make_layout(cfg, device)
    elif board_id == "hall" and not _board_devices(cfg):
        layout = CallBoard(BoardSpec(
            *DEFAULT_SIZE, services=tuple((s.code, s.name) for s in cfg.services),
            ticket_chars=1 + max(s.width for s in cfg.services),
            window_digits=len(str(max((w.number for w in cfg.windows), default=1)))))
    else:
        return None
    layout.update(state, 0.0)
    picture = led_look(layout.frame_at(0.0), scale=SCALE)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=False)
    return out.getvalue()
