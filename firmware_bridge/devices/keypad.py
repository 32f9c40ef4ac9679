"""The dispenser keypad (取号机 keys): one key per service, numbered from 1 in hall-file order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from firmware_bridge.errors import FrameError
from firmware_bridge.link import SerialLink
from firmware_bridge.payloads import DeviceKind, EventType, split_key
from firmware_bridge.updates import DeviceEvent

from .base import FramedDevice

__all__ = ["Keypad", "ServiceKey"]


@dataclass(frozen=True, slots=True)
class ServiceKey(DeviceEvent):
    index: int  # 1-based key number
    service: str  # the service code that key issues tickets for


class Keypad(FramedDevice):
    kind = DeviceKind.KEYPAD

    def __init__(
        self,
        link: SerialLink,
        address: int,
        *,
        services: Sequence[str],
        device: str | None = None,
        reply_timeout: float | None = None,
    ) -> None:
        if not services:
            raise ValueError("a keypad needs at least one service")
        super().__init__(link, address, device=device, reply_timeout=reply_timeout)
        self.services = tuple(services)

    def decode_event(self, event: EventType, data: bytes) -> ServiceKey:
        if event != EventType.KEY:
            raise FrameError(f"a keypad does not send {event.name} events")
        index, argument = split_key(data)
        if argument:
            raise FrameError("keypad keys take no argument")
        if not 1 <= index <= len(self.services):
            raise FrameError(f"key {index} has no service (the keypad has {len(self.services)})")
        return ServiceKey(self.device, self.address, index, self.services[index - 1])
