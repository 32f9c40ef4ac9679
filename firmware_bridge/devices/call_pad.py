"""The window call pad (呼叫器): staff keys in, a short text display out.

TRANSFER carries its target as typed on the pad: ``W`` and a window number, or ``S`` and
a service index (the pad firmware's TRANSFER, [*], digits, CALL sequence). Checking that
the window or service exists is the coordinator's job; the driver only checks the shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from firmware_bridge.display_text import encode_display
from firmware_bridge.errors import FrameError
from firmware_bridge.frame import Command
from firmware_bridge.payloads import DeviceKind, EventType, PadKey, split_key
from firmware_bridge.updates import DeviceEvent

from .base import WindowDevice

__all__ = ["CallPad", "PadKey", "PadKeyPress", "TransferTarget"]

_TARGET = re.compile(r"([WS])([0-9]{1,4})")


@dataclass(frozen=True, slots=True)
class TransferTarget:
    kind: Literal["window", "service"]
    number: int

    def encode(self) -> str:
        """The KEY argument a pad sends for this target."""
        return f"{'W' if self.kind == 'window' else 'S'}{self.number}"


@dataclass(frozen=True, slots=True)
class PadKeyPress(DeviceEvent):
    window: int | None
    key: PadKey
    target: TransferTarget | None = None


class CallPad(WindowDevice):
    kind = DeviceKind.CALL_PAD

    def decode_event(self, event: EventType, data: bytes) -> PadKeyPress:
        if event != EventType.KEY:
            raise FrameError(f"a call pad does not send {event.name} events")
        code, argument = split_key(data)
        try:
            key = PadKey(code)
        except ValueError:
            raise FrameError(f"unknown call pad key code 0x{code:02X}") from None
        target = None
        if key == PadKey.TRANSFER:
            m = _TARGET.fullmatch(argument)
            if m is None:
                raise FrameError(f"TRANSFER needs W<window> or S<service index>, got {argument!r}")
            target = TransferTarget("window" if m[1] == "W" else "service", int(m[2]))
        elif argument:
            raise FrameError(f"{key.name} takes no argument, got {argument!r}")
        return PadKeyPress(self.device, self.address, self.window, key, target)

    async def show(self, text: str, *, beep: bool = False, blink: bool = False) -> None:
        """Put text on the pad's display (32 columns; a Chinese character takes two).

        Raises FrameError before sending if the pad could not show it, LinkDown,
        DeviceTimeout or DeviceRejected if it was not shown.
        """
        payload = encode_display(text, beep=beep, blink=blink)
        await self.link.request(self.address, Command.DISPLAY, payload)
