"""What every device on the framed bus shares: an address on a link, and a way to read events.

A driver attaches itself to its link when made, so the link polls it; it turns the raw
event bytes into a typed event and sends commands through the link. Drivers never touch
MQTT: the agent decides what an event means for the hall.
"""

from __future__ import annotations

from typing import ClassVar

from firmware_bridge.errors import FrameError
from firmware_bridge.link import SerialLink
from firmware_bridge.payloads import DeviceKind, EventType
from firmware_bridge.updates import DeviceEvent

__all__ = ["FramedDevice", "WindowDevice"]


class FramedDevice:
    """Base of the drivers for devices on the RS-485 bus."""

    kind: ClassVar[DeviceKind]
    poll_period: ClassVar[float] = 0.0  # see EventSource.poll_period; 0: polled every round

    def __init__(
        self,
        link: SerialLink,
        address: int,
        *,
        device: str | None = None,
        reply_timeout: float | None = None,
    ) -> None:
        self.link = link
        self.address = address
        self.device = device or f"{self.kind.name.lower()}-{address}"
        link.attach(self, reply_timeout=reply_timeout)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.device!r}, address={self.address}, "
            f"port={self.link.port!r})"
        )

    def decode_event(self, event: EventType, data: bytes) -> DeviceEvent | None:
        raise FrameError(f"a {self.kind.name.lower()} does not send {event.name} events")


class WindowDevice(FramedDevice):
    """A device that belongs to one service window (call pad, rating pad): its events say
    which window they came from."""

    def __init__(
        self,
        link: SerialLink,
        address: int,
        *,
        window: int | None = None,
        device: str | None = None,
        reply_timeout: float | None = None,
    ) -> None:
        super().__init__(link, address, device=device, reply_timeout=reply_timeout)
        self.window = window
