"""Which layout a configured LED device gets, and what every layout offers the board agent.

A device with ``window`` is that window's strip; otherwise it is a call board for its
``zone``, or for the whole hall when it has none (as ``examples/liwan.toml`` describes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from PIL import Image

from displays.board import BoardSpec, CallBoard, CallStyle
from displays.fonts import BitmapFont
from displays.strip import StripSpec, WindowStrip
from hallq.config import Device, HallConfig
from hallq.messages import CallEvent

__all__ = ["Layout", "frames", "make_layout", "panel_size"]

_LED_KINDS = ("led_max7219", "led_serial")


class Layout(Protocol):
    """What a board agent drives; ``update(state, now)`` differs (BoardState or WindowState)."""

    @property
    def size(self) -> tuple[int, int]: ...

    def frame_at(self, t: float) -> Image.Image: ...

    def next_change(self, t: float) -> float | None: ...

    def set_online(self, online: bool) -> None: ...

    def note_call(self, event: CallEvent, now: float) -> None: ...


def panel_size(device: Device) -> tuple[int, int]:
    """The size frames are drawn at: the panel's, turned when a MAX7219 chain is rotated."""
    if device.kind not in _LED_KINDS or device.led is None:
        raise ValueError(f"device {device.id!r} ({device.kind}) is not an LED panel")
    width, height = device.led.width, device.led.height
    if device.spi is not None and device.spi.rotate in (1, 3):
        width, height = height, width
    return width, height


def make_layout(
    hall: HallConfig,
    device: Device,
    *,
    font: BitmapFont | None = None,
    message: str | None = None,
    call_style: CallStyle = "auto",
    scroll_speed: float = 32.0,
) -> CallBoard | WindowStrip:
    width, height = panel_size(device)
    ticket_chars = 1 + max(s.width for s in hall.services)
    if device.window is not None:
        return WindowStrip(
            StripSpec(
                width,
                height,
                device.window,
                message=message,
                ticket_chars=ticket_chars,
                scroll_speed=scroll_speed,
            ),
            font,
        )
    windows = [w for w in hall.windows if device.zone is None or w.zone == device.zone]
    served: set[str] = set()
    for window in windows:
        served.update(window.weights())
    services = tuple(
        (s.code, s.name) for s in hall.services if device.zone is None or s.code in served
    )
    spec = BoardSpec(
        width,
        height,
        zone=device.zone,
        services=services,
        call_style=call_style,
        ticket_chars=ticket_chars,
        window_digits=len(str(max((w.number for w in windows), default=1))),
        scroll_speed=scroll_speed,
    )
    return CallBoard(spec, font)


def frames(layout: Layout, start: float, stop: float, fps: float) -> Iterator[Image.Image]:
    """Frames at a fixed rate from ``start`` up to ``stop``: for GIFs, tests and the demo."""
    if not fps > 0:
        raise ValueError(f"fps must be above 0, got {fps}")
    count = max(0, round((stop - start) * fps))
    for i in range(count):
        yield layout.frame_at(start + i / fps)
