"""The hall file's devices as the plain values drivers and renderers take.

``firmware_bridge`` and ``displays`` never read the hall file (like luma and gpiozero, they
take ports, addresses and sizes); this module is where an agent, the coordinator's hall
view or a tool turns a validated ``hallq.config`` device into those values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from firmware_bridge.wiring import SerialDevice
from hallq.config import (
    CallPadDevice,
    Device,
    FramedDevice,
    HallConfig,
    KeypadDevice,
    LedMax7219Device,
    LedSerialDevice,
    RatingPadDevice,
)

if TYPE_CHECKING:  # displays (Pillow, layouts): imported by the callers that draw, not by
    # a dispenser's agent, which only needs serial_devices
    from displays.board import CallBoard
    from displays.layouts import HallListing, PanelSpec
    from displays.strip import WindowStrip

__all__ = ["hall_listing", "layout_for", "panel_spec", "serial_devices"]


def serial_devices(devices: Iterable[Device]) -> list[SerialDevice]:
    """The devices on serial ports (RS-485 lines and printers), in the drivers' terms."""
    out: list[SerialDevice] = []
    for dev in devices:
        if isinstance(dev, FramedDevice):
            out.append(_serial_device(dev))
    return out


def _serial_device(dev: FramedDevice) -> SerialDevice:
    window = dev.window if isinstance(dev, CallPadDevice | RatingPadDevice) else None
    services = tuple(dev.services) if isinstance(dev, KeypadDevice) else ()
    width, height = (dev.led.width, dev.led.height) if isinstance(dev, LedSerialDevice) else (0, 0)
    return SerialDevice(
        id=dev.id,
        kind=dev.kind,
        port=dev.serial.port,
        baud=dev.serial.baud,
        address=dev.serial.address or 1,
        window=window,
        services=services,
        width=width,
        height=height,
    )


def panel_spec(dev: Device, zones: frozenset[str] | None = None) -> PanelSpec:
    """An LED device as its panel (``zones``: ``HallConfig.scope_zones``); any other kind
    is a ValueError naming it."""
    from displays.layouts import PanelSpec

    if isinstance(dev, LedMax7219Device):
        return PanelSpec(
            dev.id,
            dev.led.width,
            dev.led.height,
            "max7219",
            window=dev.window,
            zone=dev.zone,
            zones=zones,
            spi_port=dev.spi.port,
            spi_device=dev.spi.device,
            block_orientation=dev.spi.block_orientation,
            rotate=dev.spi.rotate,
        )
    if isinstance(dev, LedSerialDevice):
        return PanelSpec(
            dev.id,
            dev.led.width,
            dev.led.height,
            "serial",
            window=dev.window,
            zone=dev.zone,
            zones=zones,
        )
    raise ValueError(f"device {dev.id!r} ({dev.kind}) is not an LED panel")


def hall_listing(cfg: HallConfig) -> HallListing:
    from displays.layouts import HallListing

    return HallListing.of(cfg.services, cfg.windows, cfg.zones)


def layout_for(cfg: HallConfig, dev: Device, **options: Any) -> CallBoard | WindowStrip:
    """The layout an LED device of the hall file shows (``options``: make_layout's)."""
    from displays.layouts import make_layout

    return make_layout(panel_spec(dev, cfg.scope_zones(dev.id)), hall_listing(cfg), **options)
