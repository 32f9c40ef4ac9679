"""The serial LED controller behind a window strip (LED条屏) or a zone board.

The driver remembers the image the controller acknowledged and sends only the rows that
changed (LED_DELTA, run-length packed); a whole image (LED_FRAME chunks) goes out when the
controller's image is unknown: at start, after a failed transfer, or when the controller
refuses a delta because it rebooted. Firmware without LED_DELTA (it answers UNSUPPORTED)
gets whole images from then on.
"""

from __future__ import annotations

import logging

from firmware_bridge.errors import DeviceRejected, FrameError
from firmware_bridge.frame import Command
from firmware_bridge.led_delta import led_deltas
from firmware_bridge.led_frames import Bitmap, led_chunks
from firmware_bridge.link import SerialLink
from firmware_bridge.payloads import DeviceKind

from .base import FramedDevice

__all__ = ["LedController"]

log = logging.getLogger("firmware_bridge.devices.led")


class LedController(FramedDevice):
    kind = DeviceKind.LED_CONTROLLER
    poll_period = 1.0  # it has no keys: a poll only finds a reboot, which a delta finds too

    def __init__(
        self,
        link: SerialLink,
        address: int,
        *,
        width: int,
        height: int,
        device: str | None = None,
        reply_timeout: float | None = None,
        deltas: bool = True,
    ) -> None:
        super().__init__(link, address, device=device, reply_timeout=reply_timeout)
        self.width = width
        self.height = height
        self.deltas = deltas
        self.previous_base = True  # False: firmware that patches only its current image
        self.whole_images = 0
        self.delta_images = 0
        self._shown: tuple[Bitmap, int] | None = None  # acknowledged image and its frame id
        self._before: tuple[Bitmap, int] | None = None  # the one the controller showed before

    async def show(self, image: Bitmap) -> None:
        """Put ``image`` up; returns once the controller has acknowledged all of it."""
        if (image.width, image.height) != (self.width, self.height):
            raise FrameError(
                f"{self.device} is {self.width}x{self.height}, "
                f"the image is {image.width}x{image.height}"
            )
        shown, self._shown = self._shown, None  # unknown until this transfer is acknowledged
        before, self._before = self._before, None
        if shown is not None and shown[0] == image:
            self._shown, self._before = shown, before
            return
        if shown is not None and self.deltas and await self._send_delta(shown, before, image):
            return
        for attempt in (1, 2):
            frame_id = self.link.next_led_frame_id()
            try:
                for chunk in led_chunks(image, frame_id, self.link.command_payload):
                    await self.link.request(self.address, Command.LED_FRAME, chunk)
            except DeviceRejected as exc:
                if attempt == 2 or exc.reason != "out_of_order":
                    raise
                log.info("%s lost the image midway; sending it again", self.device)
                continue
            self._shown = (image, frame_id)
            self.whole_images += 1
            return

    def _new_id(self, *held: tuple[Bitmap, int] | None) -> int:
        """A frame id that is neither image the controller holds."""
        taken = {h[1] for h in held if h is not None}
        while (frame_id := self.link.next_led_frame_id()) in taken:
            pass
        return frame_id

    async def _send_delta(
        self, shown: tuple[Bitmap, int], before: tuple[Bitmap, int] | None, image: Bitmap
    ) -> bool:
        """False when a whole image must go instead (the delta is no smaller, or was refused).

        The delta is taken against the controller's current image or, when smaller, the
        one it showed before (a blinking call going back on is then a delta of no rows).
        """
        frame_id = self._new_id(shown, before)
        payloads = led_deltas(shown[0], image, shown[1], frame_id, self.link.command_payload)
        from_before = False
        if before is not None and self.previous_base:
            other = led_deltas(before[0], image, before[1], frame_id, self.link.command_payload)
            if sum(map(len, other)) < sum(map(len, payloads)):
                payloads, from_before = other, True
        if sum(map(len, payloads)) >= len(image.rows):
            return False
        try:
            for payload in payloads:
                await self.link.request(self.address, Command.LED_DELTA, payload)
        except DeviceRejected as exc:
            if exc.reason == "unsupported":
                log.info("%s has no LED_DELTA (older firmware); sending whole images", self.device)
                self.deltas = False
                return False
            if exc.reason == "out_of_order" and from_before:
                # Firmware that keeps no previous image, or a reboot: try the current one.
                self.previous_base = False
                if await self._send_delta(shown, None, image):
                    log.info(
                        "%s keeps no previous image (older firmware); deltas from the "
                        "current one only",
                        self.device,
                    )
                    return True
                self.previous_base = True  # it had rebooted: the whole image goes now
                return False
            if exc.reason == "out_of_order":
                log.info(
                    "%s does not hold the image a delta needs (rebooted?); resending it",
                    self.device,
                )
                return False
            raise
        self._shown, self._before = (image, frame_id), shown
        self.delta_images += 1
        return True
