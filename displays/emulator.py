"""A board on screen: the last frame as an LED-looking PNG, a frame sequence as a GIF.

Used by the tests, the demo and the web dashboard (``png_bytes()``), and as the sink of a
board whose hardware is absent (``HALLQ_DISPLAY_BACKEND=emulator``). Images are palette
images of three colours (background, unlit LED, lit LED), which keeps PNGs and GIFs small
and makes the LED look a few table look-ups rather than per-pixel Python.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageChops

from displays.errors import SinkError

__all__ = ["EmulatorSink", "led_look"]

_BACKGROUND = (12, 8, 8)
_UNLIT = (48, 16, 12)
_LIT = (255, 64, 16)  # the red-orange of common P10/MAX7219 modules


def _dot_mask(width: int, height: int, scale: int) -> Image.Image:
    """Mode "1": a round dot per pixel cell, so the scaled frame looks like an LED matrix."""
    cell = Image.new("1", (scale, scale))
    if scale >= 3:
        from PIL import ImageDraw  # it loads FreeType: only where panels are emulated

        ImageDraw.Draw(cell).ellipse((0, 0, scale - 2, scale - 2), fill=1)
    else:
        cell.paste(1, (0, 0, scale, scale))
    row = Image.new("1", (width * scale, scale))
    for x in range(width):
        row.paste(cell, (x * scale, 0))
    mask = Image.new("1", (width * scale, height * scale))
    for y in range(height):
        mask.paste(row, (0, y * scale))
    return mask


_masks: dict[tuple[int, int, int], Image.Image] = {}


def led_look(frame: Image.Image, *, scale: int = 4, brightness: int = 255) -> Image.Image:
    """A palette image ``scale`` times larger: lit pixels as bright dots, unlit as dim ones."""
    if frame.mode != "1":
        raise SinkError(f"frames are 1-bit (mode '1'), got mode {frame.mode!r}")
    if not 1 <= scale <= 32:
        raise ValueError(f"scale must be 1-32, got {scale}")
    key = (frame.width, frame.height, scale)
    mask = _masks.get(key)
    if mask is None:
        mask = _masks[key] = _dot_mask(frame.width, frame.height, scale)
    big = frame.resize((frame.width * scale, frame.height * scale), Image.Resampling.NEAREST)
    lit = ImageChops.logical_and(big, mask)
    # index = dot (0/1) + lit dot (0/1): 0 background, 1 unlit LED, 2 lit LED.
    index = ImageChops.add(
        mask.convert("L").point([0] + [1] * 255), lit.convert("L").point([0] + [1] * 255)
    )
    index = index.convert("P")
    level = max(0, min(255, brightness)) / 255
    shown = tuple(
        round(_UNLIT[i] + (_LIT[i] - _UNLIT[i]) * (0.25 + 0.75 * level)) for i in range(3)
    )
    index.putpalette([*_BACKGROUND, *_UNLIT, *shown] + [0, 0, 0] * 253)
    return index


class EmulatorSink:
    """Keeps the last frame shown; renders it as PNG on demand, never on ``show``."""

    def __init__(self, width: int, height: int, *, scale: int = 4, led: bool = True) -> None:
        self.size = (width, height)
        self.scale = scale
        self.led = led
        self.brightness = 255
        self.frame: Image.Image = Image.new("1", self.size)
        self.shown = 0  # frames received, for tests and the dashboard
        self.closed = False

    def __repr__(self) -> str:
        return f"EmulatorSink({self.size[0]}x{self.size[1]}, shown={self.shown})"

    def show(self, image: Image.Image) -> None:
        if self.closed:
            raise SinkError("the emulator sink is closed")
        if image.mode != "1" or image.size != self.size:
            raise SinkError(
                f"emulator is {self.size[0]}x{self.size[1]} mode '1', got "
                f"{image.size[0]}x{image.size[1]} mode {image.mode!r}"
            )
        self.frame = image.copy()
        self.shown += 1

    def set_brightness(self, level: int) -> None:
        if not 0 <= level <= 255:
            raise ValueError(f"brightness must be 0-255, got {level}")
        self.brightness = level

    def close(self) -> None:
        self.closed = True

    def picture(self, frame: Image.Image | None = None) -> Image.Image:
        frame = self.frame if frame is None else frame
        if self.led:
            return led_look(frame, scale=self.scale, brightness=self.brightness)
        if self.brightness == 0:
            frame = Image.new("1", frame.size)
        size = (frame.width * self.scale, frame.height * self.scale)
        return frame.resize(size, Image.Resampling.NEAREST)

    def png_bytes(self) -> bytes:
        """The last frame as PNG: what the web dashboard serves for this board."""
        out = io.BytesIO()
        self.picture().save(out, format="PNG", optimize=True)
        return out.getvalue()

    def save_png(self, path: str | Path) -> None:
        Path(path).write_bytes(self.png_bytes())

    def gif_bytes(self, frames: Iterable[Image.Image], frame_ms: int = 50) -> bytes:
        """An animated GIF of a frame sequence (e.g. ``layouts.frames(layout, 0, 4, 20)``)."""
        pictures = [self.picture(f) for f in frames]
        if not pictures:
            raise ValueError("a GIF needs at least one frame")
        out = io.BytesIO()
        pictures[0].save(
            out,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=frame_ms,
            loop=0,
            optimize=False,
            disposal=1,
        )
        return out.getvalue()

    def save_gif(self, path: str | Path, frames: Iterable[Image.Image], frame_ms: int = 50) -> None:
        Path(path).write_bytes(self.gif_bytes(frames, frame_ms))
