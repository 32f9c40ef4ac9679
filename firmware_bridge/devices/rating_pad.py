"""The rating pad (评价器) at a window: the taxpayer presses one of four keys after service."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.errors import FrameError
from firmware_bridge.payloads import DeviceKind, EventType
from firmware_bridge.updates import DeviceEvent

from .base import WindowDevice

__all__ = ["RATING_LABELS", "Rating", "RatingPad"]

RATING_LABELS: dict[int, str] = {4: "非常满意", 3: "满意", 2: "基本满意", 1: "不满意"}


@dataclass(frozen=True, slots=True)
class Rating(DeviceEvent):
    window: int | None
    score: int  # 4 best .. 1 worst

    @property
    def label(self) -> str:
        return RATING_LABELS[self.score]


class RatingPad(WindowDevice):
    kind = DeviceKind.RATING_PAD
    poll_period = 0.25  # a rating may wait a quarter second; a call pad's key may not

    def decode_event(self, event: EventType, data: bytes) -> Rating:
        if event != EventType.RATING:
            raise FrameError(f"a rating pad does not send {event.name} events")
        if len(data) != 1 or data[0] not in RATING_LABELS:
            raise FrameError("a rating is one byte, 1..4")
        return Rating(self.device, self.address, self.window, data[0])
