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

from hallq.config import HallConfig, LedMax7219Device, LedSerialDevice

DEFAULT_SIZE = (192, 64)
SCALE = 3


@dataclass(frozen=True, slots=True)
class BoardInfo:
    id: str
    zone: str | None
    width: int
    height: int


def boards(cfg: HallConfig) -> list[BoardInfo]:
    """The hall's call boards (LED panels not on a window), or one default whole-hall board."""
    found = [
        BoardInfo(d.id, d.zone, d.led.width, d.led.height)
        for agent in cfg.agents
        for d in agent.devices
        if isinstance(d, LedMax7219Device | LedSerialDevice) and d.window is None
    ]
    return found or [BoardInfo("hall", None, *DEFAULT_SIZE)]


def render_png(cfg: HallConfig, board_id: str, state: Any) -> bytes | None:
    """PNG of one board showing ``state``; None for an unknown board id.

    Raises ImportError when the displays package is not usable (the API answers 503).
    """
    from displays.emulator import led_look
    from displays.layouts import HallListing, PanelSpec, make_layout

    board = next((b for b in boards(cfg) if b.id == board_id), None)
    if board is None:
        return None
    # drawn as the panel's own pixels, unturned: the picture is of the board, not its wiring
    panel = PanelSpec(
        board.id,
        board.width,
        board.height,
        "serial",
        zone=board.zone,
        zones=cfg.scope_zones(board.id) if board.zone is None else None,
    )
    layout: Any = make_layout(panel, HallListing.of(cfg.services, cfg.windows, cfg.zones))
    layout.update(state, 0.0)
    picture = led_look(layout.frame_at(0.0), scale=SCALE)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=False)
    return out.getvalue()
