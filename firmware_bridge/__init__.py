"""Serial link to the hall's microcontroller devices: framing, polling, drivers, simulators.

The agent makes a SerialLink per RS-485 line, a driver per device on it (which attaches
itself), enters the link, and reads ``link.updates()``: typed device events and link and
device health, in order. The ticket printer is separate (ESC/POS on its own port).
Nothing here reads the hall file: ports, addresses and sizes arrive as plain values
(``wiring.SerialDevice``), which the agent makes from its config. See PROTOCOL.md for the
bytes.
"""

from firmware_bridge.errors import (
    BridgeError,
    DeviceRejected,
    DeviceTimeout,
    FrameError,
    LinkDown,
    PortUnavailable,
)
from firmware_bridge.frame import Command, DropReason, Frame, FrameDecoder, encode
from firmware_bridge.led_frames import Bitmap
from firmware_bridge.link import LinkStats, SerialLink
from firmware_bridge.port import resolve_port
from firmware_bridge.timing import LinkTiming
from firmware_bridge.updates import DeviceEvent, DeviceState, LinkState, Update

__all__ = [
    "Bitmap",
    "BridgeError",
    "Command",
    "DeviceEvent",
    "DeviceRejected",
    "DeviceState",
    "DeviceTimeout",
    "DropReason",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "LinkDown",
    "LinkState",
    "LinkStats",
    "LinkTiming",
    "PortUnavailable",
    "SerialLink",
    "Update",
    "encode",
    "resolve_port",
]
