"""What every layout draws the same way: the blank frame and the offline marker.

Rectangles are filled with ``Image.paste``, not ``ImageDraw``, which loads FreeType
(~1.5 MB) on a Pi that has no other use for it; the marker is drawn the same way on a
``displays.bits.Bits`` frame (a window Pi's serial strips, without Pillow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from displays.motion import blink_on

if TYPE_CHECKING:
    from PIL import Image

    from displays.fonts import Raster

__all__ = ["OFFLINE_BLINK_PERIOD", "blank", "draw_offline_marker", "paste_clipped"]

OFFLINE_BLINK_PERIOD = 2.0


def blank(size: tuple[int, int]) -> Image.Image:
    from PIL import Image

    return Image.new("1", size)


def draw_offline_marker(frame: Raster, t: float) -> None:
    """A 2x2 dot blinking in the top-right corner: the board has lost the coordinator.

    Small enough not to hide a number, but a supervisor looking at the board sees that the
    calls on it may be stale. The 3x3 corner is cleared in both phases so the dot is not
    confused with a glyph's pixels.
    """
    width = frame.width
    frame.paste(0, (width - 3, 0, width, 3))
    if blink_on(t, OFFLINE_BLINK_PERIOD):
        frame.paste(1, (width - 2, 0, width, 2))


def paste_clipped(frame: Raster, strip: Raster, x: int, y: int, width: int) -> None:
    """Paste ``strip`` at (x, y), cut to ``width`` pixels so it cannot spill into a neighbour
    (both of one kind: Pillow images or ``Bits``)."""
    if strip.width > width:
        strip = strip.crop((0, 0, width, strip.height))
    frame.paste(strip, (x, y))  # type: ignore[arg-type]
