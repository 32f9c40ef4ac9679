"""The serial LED controller behind a window strip (LED条屏) or a small board.

An image goes out as LED_FRAME chunks, each acknowledged; if the controller lost track
(it rebooted mid-image and answers OUT_OF_ORDER) the image is sent once more from the
start under a new frame id.
"""

from __future__ import annotations

import logging

from firmware_bridge.errors import DeviceRejected, FrameError
from firmware_bridge.frame import Command
from firmware_bridge.led_frames import Bitmap, led_chunks
from firmware_bridge.link import SerialLink
from firmware_bridge.payloads import DeviceKind

from .base import FramedDevice

__all__ = ["LedController"]

log = logging.getLogger("firmware_bridge.devices.led")


class LedController(FramedDevice):
    kind = DeviceKind.LED_CONTROLLER

    def __init__(
        self,
        link: SerialLink,
        address: int,
        *,
        width: int,
        height: int,
        device: str | None = None,
        reply_timeout: float | None = None,
    ) -> None:
        super().__init__(link, address, device=device, reply_timeout=reply_timeout)
        self.width = width
        self.height = height

    async def show(self, image: Bitmap) -> None:
        """Send a whole 1-bit image; returns once the controller has acknowledged every chunk."""
        if (image.width, image.height) != (self.width, self.height):
            raise FrameError(
                f"{self.device} is {self.width}x{self.height}, "
                f"the image is {image.width}x{image.height}"
            )
        for attempt in (1, 2):
            try:
                for chunk in led_chunks(image, self.link.next_led_frame_id()):
                    await self.link.request(self.address, Command.LED_FRAME, chunk)
                return
            except DeviceRejected as exc:
                if attempt == 2 or exc.reason != "out_of_order":
                    raise
                log.info("%s lost the image midway; sending it again", self.device)
