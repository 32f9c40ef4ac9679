"""Where frames go: the small protocol every sink speaks, and the sink for a panel.

Sinks take finished 1-bit frames at the panel's size; they never draw and never know the
hall's state. ``HALLQ_DISPLAY_BACKEND=emulator`` (or ``backend="emulator"``) swaps any panel
for an ``EmulatorSink`` of the same size, so a board agent runs on a laptop unchanged.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Literal, Protocol, TypeGuard

from displays.errors import SinkError
from displays.layouts import PanelSpec, panel_size

if TYPE_CHECKING:
    from PIL import Image

    from displays.emulator import EmulatorSink
    from displays.max7219 import SpiBus
    from displays.serial_led import LedDriver

__all__ = ["BACKEND_ENV", "Sink", "is_emulator", "open_sink"]

BACKEND_ENV = "HALLQ_DISPLAY_BACKEND"
Backend = Literal["hardware", "emulator"]


class Sink(Protocol):
    @property
    def size(self) -> tuple[int, int]: ...

    def show(self, image: Image.Image) -> None:
        """Put a mode-"1" frame of ``size`` on the panel (or queue it, for slow links)."""

    def set_brightness(self, level: int) -> None:
        """0 (off) to 255."""

    def close(self) -> None: ...


def open_sink(
    panel: PanelSpec,
    *,
    backend: Backend | None = None,
    spi_bus: SpiBus | None = None,
    led_driver: LedDriver | None = None,
) -> Sink:
    """The sink for an LED panel.

    A serial panel needs its ``led_driver`` (the firmware_bridge LedController on
    the agent's SerialLink); the returned ``SerialLedSink`` must then be entered with
    ``async with`` to start sending.
    """
    chosen = backend or os.environ.get(BACKEND_ENV) or "hardware"
    if chosen not in ("hardware", "emulator"):
        raise SinkError(f"{BACKEND_ENV} must be 'hardware' or 'emulator', got {chosen!r}")
    width, height = panel_size(panel)
    if chosen == "emulator":
        from displays.emulator import EmulatorSink

        return EmulatorSink(width, height)
    if panel.driver == "max7219":
        from displays.max7219 import Max7219Sink

        return Max7219Sink(
            panel.width,
            panel.height,
            port=panel.spi_port,
            device=panel.spi_device,
            block_orientation=panel.block_orientation,
            rotate=panel.rotate,
            bus=spi_bus,
        )
    if led_driver is None:
        raise SinkError(f"panel {panel.name!r} is a serial LED controller: pass its led_driver")
    from displays.serial_led import SerialLedSink

    if (led_driver.width, led_driver.height) != (width, height):
        raise SinkError(
            f"panel {panel.name!r} is {width}x{height} but its driver is "
            f"{led_driver.width}x{led_driver.height}"
        )
    return SerialLedSink(led_driver)


def is_emulator(sink: object) -> TypeGuard[EmulatorSink]:
    """Whether ``sink`` is an ``EmulatorSink``, without importing the emulator (and Pillow)
    into an agent that drives only real panels: no emulator exists unless it was imported."""
    emulator = sys.modules.get("displays.emulator")
    return emulator is not None and isinstance(sink, emulator.EmulatorSink)
