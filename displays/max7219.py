"""MAX7219 8x8 matrix chains on the Pi's SPI bus, driven through luma.led_matrix.

Wiring and sizes, as luma handles them:

- Give luma ``width`` and ``height`` and never ``cascaded``: luma reads ``cascaded`` as
  "one row of that many modules" and overrides the size to ``cascaded*8 x 8``, so a
  192x32 board would silently become 768x8. The hall file's ``spi.cascaded`` is only a
  cross-check (the hall file's loader verifies width*height/64 against it).
- A 16- or 32-pixel-high board is two or four rows of 8-pixel modules on one chain. luma
  expects the chain to start at the top-left module, run along the top row to the right,
  then continue at the left end of the next row down (a "Z", not a snake).
- ``block_orientation`` turns each 8x8 block (-90 for the common FC-16 modules);
  ``rotate`` (0-3, quarter turns) turns the whole panel, and then frames are drawn at the
  turned size (``displays.layouts.panel_size``).

The SPI bus is built with ``gpio=noop()`` so luma never imports RPi.GPIO (absent on a Pi 5);
``spidev`` is imported only when no bus object is passed, i.e. only on the Pi.
"""

from __future__ import annotations

from typing import Any, Protocol

from PIL import Image

from displays.errors import SinkError

__all__ = ["Max7219Sink", "SpiBus"]


class SpiBus(Protocol):
    """What luma needs of a ``spidev.SpiDev``; tests pass a recorder."""

    max_speed_hz: int

    def open(self, bus: int, device: int) -> None: ...

    def writebytes(self, data: list[int]) -> None: ...

    def close(self) -> None: ...


def _device_class() -> Any:
    """luma's max7219 with a ``display`` that reads pixels through ``tobytes()``.

    luma.led_matrix 1.9 reads them with ``Image.getdata()``, deprecated since Pillow 12.1
    and gone in Pillow 14; this is the same loop over the same pixels, so hallq need not
    hold Pillow back for luma's sake. Built on first use: luma is imported only on a board.
    """
    from luma.led_matrix.device import max7219

    class Max7219Device(max7219):  # type: ignore[misc]  # luma ships no types
        def display(self, image: Image.Image) -> None:
            assert image.mode == self.mode
            assert image.size == self.size
            image = self.preprocess(image)
            pix = image.convert("L").tobytes()  # one byte per pixel, 0 or 255
            step = 2 * self.cascaded
            buf = bytearray(8 * step)
            i = 0
            for digit in range(8):
                for first in self._offsets:
                    byte = 0
                    idx = first + digit
                    for y in self._rows:
                        if pix[idx]:
                            byte |= 1 << y
                        idx += self._w
                    buf[i] = digit + self._const.DIGIT_0
                    buf[i + 1] = byte
                    i += 2
            for start in range(0, len(buf), step):
                self.data(list(buf[start : start + step]))

    return Max7219Device


def _spidev() -> Any:
    try:
        import spidev
    except ImportError as exc:
        raise SinkError(
            "a MAX7219 board needs spidev: install the Pi extra (pip install 'hallq[pi]') "
            "and enable SPI (raspi-config, or dtparam=spi=on)"
        ) from exc
    return spidev.SpiDev()


class Max7219Sink:
    def __init__(
        self,
        width: int,
        height: int,
        *,
        port: int = 0,
        device: int = 0,
        block_orientation: int = 0,
        rotate: int = 0,
        reverse_blocks: bool = False,
        bus: SpiBus | None = None,
        bus_speed_hz: int = 8_000_000,
        brightness: int = 0x70,
    ) -> None:
        from luma.core.error import DeviceNotFoundError
        from luma.core.interface.serial import noop, spi

        if width % 8 or height % 8 or width <= 0 or height <= 0:
            raise SinkError(f"a MAX7219 panel is whole 8x8 modules, got {width}x{height}")
        self.where = f"SPI {port}.{device}"
        try:
            serial = spi(
                spi=bus if bus is not None else _spidev(),
                gpio=noop(),
                port=port,
                device=device,
                bus_speed_hz=bus_speed_hz,
            )
            self.device = _device_class()(
                serial,
                width=width,
                height=height,
                rotate=rotate,
                block_orientation=block_orientation,
                blocks_arranged_in_reverse_order=reverse_blocks,
                contrast=brightness,
            )
        except DeviceNotFoundError as exc:
            raise SinkError(f"{self.where}: no SPI device; is SPI enabled on this Pi?") from exc
        except PermissionError as exc:
            raise SinkError(f"{self.where}: permission denied (add the user to 'spi')") from exc
        self.size: tuple[int, int] = self.device.size
        self.closed = False

    def __repr__(self) -> str:
        return f"Max7219Sink({self.size[0]}x{self.size[1]}, {self.where})"

    def show(self, image: Image.Image) -> None:
        if self.closed:
            raise SinkError(f"{self}: closed")
        if image.mode != "1" or image.size != self.size:
            raise SinkError(
                f"{self} takes {self.size[0]}x{self.size[1]} mode '1' frames, got "
                f"{image.size[0]}x{image.size[1]} mode {image.mode!r}"
            )
        try:
            self.device.display(image)
        except OSError as exc:
            raise SinkError(f"{self}: SPI write failed: {exc}") from exc

    def set_brightness(self, level: int) -> None:
        """0-255; a MAX7219 has 16 steps (level // 16), and 0 switches the LEDs off."""
        if not 0 <= level <= 255:
            raise ValueError(f"brightness must be 0-255, got {level}")
        if level == 0:
            self.device.hide()
        else:
            self.device.contrast(level)
            self.device.show()

    def close(self) -> None:
        """Blank and power down the chain, then release the SPI device."""
        if not self.closed:
            self.closed = True
            self.device.cleanup()
