"""Window strips and boards behind a serial LED controller (``firmware_bridge``).

A 128x16 image is 256 bytes in two acknowledged LED_FRAME chunks; at 9600 baud on a
shared RS-485 line that is a few hundred milliseconds, far slower than a scrolling layout
draws. The controller driver sends only the changed rows once the controller holds an
image (LED_DELTA), which is what makes a call reach a zone board in a blink, but a busy
line can still lag a fast animation. So ``show`` never waits for the line: it leaves the
frame in a one-place mailbox and a background task sends whatever is newest when the
line is free. Frames in between are skipped (the right thing for a display), identical
frames are not resent, and a failed send is retried with the newest frame, not the stale
one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol, Self

from displays.bits import Bits
from displays.errors import SinkError
from firmware_bridge.errors import BridgeError
from firmware_bridge.led_frames import Bitmap
from hallq.aio import BackgroundTasks

if TYPE_CHECKING:
    from displays.fonts import Raster

__all__ = ["LedDriver", "SerialLedSink", "to_bitmap"]

log = logging.getLogger("displays.serial_led")


class LedDriver(Protocol):
    """``firmware_bridge.devices.led_controller.LedController`` as this sink uses it."""

    width: int
    height: int

    async def show(self, image: Bitmap) -> None: ...


def to_bitmap(image: Raster) -> Bitmap:
    """A rendered frame in the controller's layout (rows MSB-first, the same as Pillow's and
    ``displays.bits.Bits``).

    Non-1-bit images are thresholded at 50 %, without dithering: an LED is on or off.
    """
    if not isinstance(image, Bits) and image.mode != "1":
        image = image.convert("L").point(lambda v: 255 if v >= 128 else 0).convert("1")
    # Bitmap.from_image does the same, but its _Image1 protocol declares ``mode`` and ``size``
    # as writable attributes, which Pillow's read-only properties do not satisfy for mypy.
    return Bitmap(image.width, image.height, image.tobytes())


class SerialLedSink:
    """``async with SerialLedSink(controller) as sink: sink.show(frame)``; owns its sender task."""

    def __init__(self, driver: LedDriver, *, retry_delay: float = 1.0) -> None:
        self.driver = driver
        self.size = (driver.width, driver.height)
        self.retry_delay = retry_delay
        self.brightness = 255
        self.sent = 0
        self.failures = 0
        self._latest: Bitmap | None = None  # what should be on the panel
        self._delivered: Bitmap | None = None  # what the controller acknowledged
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._background = BackgroundTasks(f"led sender {driver!r}")
        self._closed = False

    def __repr__(self) -> str:
        return f"SerialLedSink({self.size[0]}x{self.size[1]}, {self.driver!r})"

    async def __aenter__(self) -> Self:
        if not self._background:
            self._background.spawn(self._sender())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self._background.close()

    def show(self, image: Raster) -> None:
        if self._closed:
            raise SinkError(f"{self}: closed")
        if image.size != self.size:
            raise SinkError(
                f"{self} takes {self.size[0]}x{self.size[1]} frames, got "
                f"{image.size[0]}x{image.size[1]}"
            )
        self._post(self._dark() if self.brightness == 0 else to_bitmap(image))

    def set_brightness(self, level: int) -> None:
        """Only on/off for now: the LED_FRAME protocol has no brightness command, so 0 blanks."""
        if not 0 <= level <= 255:
            raise ValueError(f"brightness must be 0-255, got {level}")
        was_off = self.brightness == 0
        self.brightness = level
        if level == 0 and not was_off:
            self._post(self._dark())

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def flush(self) -> None:
        """Wait until the newest frame shown has been acknowledged by the controller."""
        if not self._background:
            raise SinkError(f"{self} is not running: use it as 'async with'")
        await self._idle.wait()

    def _dark(self) -> Bitmap:
        width, height = self.size
        return Bitmap(width, height, bytes((width + 7) // 8 * height))

    def _post(self, bitmap: Bitmap) -> None:
        if bitmap == self._latest:
            return
        self._latest = bitmap
        if bitmap != self._delivered:
            self._idle.clear()
            self._wake.set()

    async def _sender(self) -> None:
        streak = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            bitmap = self._latest
            if bitmap is None or bitmap == self._delivered:
                self._idle.set()
                continue
            try:
                await self.driver.show(bitmap)
            except BridgeError as exc:
                self.failures += 1
                streak += 1
                # the line opening at start-up or a short blip is normal (and the link reports
                # its own health); a panel that stays dark deserves a warning, now and then
                level = logging.WARNING if streak == 4 or streak % 60 == 0 else logging.INFO
                log.log(
                    level, "%s: frame not delivered (%s, %d in a row); retrying", self, exc, streak
                )
                await asyncio.sleep(self.retry_delay)
                self._wake.set()
                continue
            self._delivered = bitmap
            self.sent += 1
            streak = 0
            if self._latest == bitmap:
                self._idle.set()
            else:
                self._wake.set()
