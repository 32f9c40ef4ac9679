"""1-bit images for the serial LED controllers, and how they are cut into LED_FRAME chunks.

A 128x16 window strip is 256 bytes, more than one frame's 200-byte payload, so an image
travels as a run of chunks that each say which image, its size and their byte offset. The
controller shows the image only when the last byte has arrived, so a link that dies
mid-image leaves the old picture up rather than half a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from firmware_bridge.errors import FrameError
from firmware_bridge.frame import MAX_PAYLOAD
from firmware_bridge.payloads import NackReason

__all__ = [
    "CHUNK_DATA",
    "Bitmap",
    "ChunkRejected",
    "LedAssembler",
    "LedChunk",
    "led_chunks",
]

_CHUNK_HEADER = 7  # frame id (1), width (2 LE), height (2 LE), offset (2 LE)
CHUNK_DATA = MAX_PAYLOAD - _CHUNK_HEADER
_MAX_SIDE = 1024
_MAX_BYTES = 0xFFFF


class _Image1(Protocol):
    """What Bitmap.from_image needs of a Pillow image (mode "1"), without importing Pillow."""

    mode: str
    size: tuple[int, int]

    def tobytes(self) -> bytes: ...


@dataclass(frozen=True, slots=True, repr=False)
class Bitmap:
    """Rows top to bottom, each packed MSB-first (leftmost pixel in bit 7) and padded to a byte.

    That is the layout of Pillow's mode "1" ``tobytes()``, so a rendered board converts
    without a copy loop.
    """

    width: int
    height: int
    rows: bytes

    def __post_init__(self) -> None:
        if not (1 <= self.width <= _MAX_SIDE and 1 <= self.height <= _MAX_SIDE):
            raise FrameError(f"bitmap must be 1..{_MAX_SIDE} pixels a side, got {self}")
        if len(self.rows) != self.stride * self.height:
            raise FrameError(
                f"{self} needs {self.stride * self.height} bytes of rows, got {len(self.rows)}"
            )
        if len(self.rows) > _MAX_BYTES:
            raise FrameError(f"{self} is larger than one LED image may be ({_MAX_BYTES} bytes)")

    def __repr__(self) -> str:
        return f"Bitmap({self.width}x{self.height})"

    @property
    def stride(self) -> int:
        return (self.width + 7) // 8

    def pixel(self, x: int, y: int) -> bool:
        return bool(self.rows[y * self.stride + x // 8] & (0x80 >> (x % 8)))

    @classmethod
    def from_image(cls, image: _Image1) -> Bitmap:
        if image.mode != "1":
            raise FrameError(f"LED images must be mode '1' (1 bit per pixel), got {image.mode!r}")
        width, height = image.size
        return cls(width, height, image.tobytes())

    @classmethod
    def from_art(cls, lines: Sequence[str], on: str = "#") -> Bitmap:
        """A bitmap from rows of text, for tests and demos: ``on`` marks a lit pixel."""
        width = max((len(line) for line in lines), default=0)
        stride = (width + 7) // 8
        rows = bytearray(stride * len(lines))
        for y, line in enumerate(lines):
            for x, ch in enumerate(line):
                if ch == on:
                    rows[y * stride + x // 8] |= 0x80 >> (x % 8)
        return cls(width, len(lines), bytes(rows))

    def to_art(self, on: str = "#", off: str = ".") -> list[str]:
        return [
            "".join(on if self.pixel(x, y) else off for x in range(self.width))
            for y in range(self.height)
        ]


@dataclass(frozen=True, slots=True)
class LedChunk:
    frame_id: int
    width: int
    height: int
    offset: int
    data: bytes

    def encode(self) -> bytes:
        return (
            bytes((self.frame_id,))
            + self.width.to_bytes(2, "little")
            + self.height.to_bytes(2, "little")
            + self.offset.to_bytes(2, "little")
            + self.data
        )

    @classmethod
    def decode(cls, payload: bytes) -> LedChunk:
        if len(payload) <= _CHUNK_HEADER:
            raise FrameError(f"LED_FRAME payload must be over {_CHUNK_HEADER} bytes")
        return cls(
            payload[0],
            int.from_bytes(payload[1:3], "little"),
            int.from_bytes(payload[3:5], "little"),
            int.from_bytes(payload[5:7], "little"),
            payload[_CHUNK_HEADER:],
        )


def led_chunks(bitmap: Bitmap, frame_id: int, max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """The LED_FRAME payloads for one image, to be sent in order, each acknowledged.

    ``max_payload`` below 200 makes shorter frames, so a slow line can ask its pads for keys
    between them (``LinkTiming.command_payload``).
    """
    if not 0 <= frame_id <= 0xFF:
        raise FrameError(f"frame id must be 0..255, got {frame_id}")
    size = min(max_payload, MAX_PAYLOAD) - _CHUNK_HEADER
    if size < 1:
        raise FrameError(f"an LED_FRAME payload of {max_payload} bytes holds no image data")
    return [
        LedChunk(
            frame_id, bitmap.width, bitmap.height, offset, bitmap.rows[offset : offset + size]
        ).encode()
        for offset in range(0, len(bitmap.rows), size)
    ]


class ChunkRejected(FrameError):
    """The controller refuses a chunk; ``reason`` is what it puts in its NACK."""

    def __init__(self, reason: NackReason, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class LedAssembler:
    """What an LED controller's firmware does with chunks; the simulator runs it.

    A chunk already taken (the master resends it when the ACK was lost) is acknowledged
    again and ignored; a gap is refused with OUT_OF_ORDER so the master starts the image
    over.
    """

    def __init__(self) -> None:
        self._key: tuple[int, int, int] | None = None
        self._buf = bytearray()
        self._complete = False

    def feed(self, payload: bytes) -> Bitmap | None:
        try:
            chunk = LedChunk.decode(payload)
        except FrameError as exc:
            raise ChunkRejected(NackReason.BAD_PAYLOAD, str(exc)) from None
        stride = (chunk.width + 7) // 8
        total = stride * chunk.height
        if not (1 <= chunk.width <= _MAX_SIDE and 1 <= chunk.height <= _MAX_SIDE) or (
            chunk.offset + len(chunk.data) > total
        ):
            raise ChunkRejected(NackReason.BAD_PAYLOAD, "chunk outside the image")
        key = (chunk.frame_id, chunk.width, chunk.height)
        end = chunk.offset + len(chunk.data)
        if (
            key == self._key
            and end <= len(self._buf)
            and not (self._complete and chunk.offset == 0)
        ):
            return None
        if chunk.offset == 0:
            self._key, self._buf, self._complete = key, bytearray(), False
        elif key != self._key or self._complete or chunk.offset != len(self._buf):
            raise ChunkRejected(
                NackReason.OUT_OF_ORDER, f"chunk at offset {chunk.offset} out of order"
            )
        self._buf += chunk.data
        if len(self._buf) < total:
            return None
        self._complete = True
        return Bitmap(chunk.width, chunk.height, bytes(self._buf))
