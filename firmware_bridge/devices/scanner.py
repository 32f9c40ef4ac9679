"""The QR/barcode scanner on a dispenser: reads appointment codes (预约码) off phones and slips."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.errors import FrameError
from firmware_bridge.payloads import DeviceKind, EventType
from firmware_bridge.updates import DeviceEvent

from .base import FramedDevice

__all__ = ["Scan", "Scanner"]


@dataclass(frozen=True, slots=True)
class Scan(DeviceEvent):
    text: str


class Scanner(FramedDevice):
    kind = DeviceKind.SCANNER

    def decode_event(self, event: EventType, data: bytes) -> Scan:
        if event != EventType.SCAN:
            raise FrameError(f"a scanner does not send {event.name} events")
        try:
            text = data.decode("utf-8").strip("\r\n")
        except UnicodeDecodeError:
            raise FrameError("scanned text is not UTF-8") from None
        if not text or not text.isprintable():
            raise FrameError("scanned text is empty or has control characters")
        return Scan(self.device, self.address, text)
