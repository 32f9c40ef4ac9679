"""A 1-bit frame without Pillow, for window Pis that drive only serial LED strips.

Pillow costs a window Pi's agent ~2 MB of resident memory, and a strip behind a serial
controller needs nothing from it: its text is the bundled subset's pre-drawn glyphs, its
frame goes out as rows of bits. ``Bits`` does the few things the strip path does with a
mode-"1" ``PIL.Image`` (new, paste, fill a box, crop, bounding box, ``tobytes``) with the
same results, byte for byte (``tests/test_displays_bits.py`` renders both ways and compares),
so ``Marquee``, ``WindowStrip`` and the serial sink take either.

Each row is a Python int, pixel x at bit ``width - 1 - x`` (leftmost pixel highest, as in
Pillow's MSB-first rows).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Bits"]


class Bits:
    """A mode-"1" image as a list of row ints; only what the strip path uses."""

    mode = "1"

    __slots__ = ("height", "rows", "width")

    def __init__(self, size: tuple[int, int], rows: Sequence[int] | None = None) -> None:
        self.width, self.height = size
        self.rows = list(rows) if rows is not None else [0] * self.height

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    def __repr__(self) -> str:
        return f"Bits({self.width}x{self.height})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bits) and self.size == other.size and self.rows == other.rows

    __hash__ = None  # type: ignore[assignment]  # mutable, like an image

    @classmethod
    def frombytes(cls, size: tuple[int, int], data: bytes) -> Bits:
        """Rows packed MSB-first, each padded to a byte (Pillow's mode "1" ``tobytes``)."""
        width, height = size
        stride = (width + 7) // 8
        pad = stride * 8 - width
        return cls(
            size,
            [
                int.from_bytes(data[y * stride : (y + 1) * stride], "big") >> pad
                for y in range(height)
            ],
        )

    def tobytes(self) -> bytes:
        stride = (self.width + 7) // 8
        pad = stride * 8 - self.width
        return b"".join((row << pad).to_bytes(stride, "big") for row in self.rows)

    def crop(self, box: tuple[int, int, int, int]) -> Bits:
        """Pixels of ``box`` (left, top, right, bottom); outside the image they are off."""
        left, top, right, bottom = box
        width = max(0, right - left)
        mask = (1 << width) - 1
        shift = self.width - right
        rows = []
        for y in range(top, bottom):
            row = self.rows[y] if 0 <= y < self.height else 0
            rows.append((row >> shift if shift >= 0 else row << -shift) & mask)
        return Bits((width, max(0, bottom - top)), rows)

    def paste(self, src: Bits | int, box: tuple[int, int] | tuple[int, int, int, int]) -> None:
        """``src`` with its top-left at ``box`` (x, y), or the value 0/1 over a 4-tuple box;
        clipped to the image, as ``PIL.Image.paste`` does."""
        if isinstance(src, int):
            left, top, right, bottom = box  # type: ignore[misc]
            left, right = max(0, left), min(self.width, right)
            if right <= left:
                return
            mask = ((1 << (right - left)) - 1) << (self.width - right)
            for y in range(max(0, top), min(self.height, bottom)):
                self.rows[y] = self.rows[y] | mask if src else self.rows[y] & ~mask
            return
        x, y = box[0], box[1]
        piece = src.crop((max(0, -x), 0, min(src.width, self.width - x), src.height))
        x = max(0, x)
        if piece.width <= 0:
            return
        shift = self.width - x - piece.width
        mask = ((1 << piece.width) - 1) << shift
        for i, row in enumerate(piece.rows):
            at = y + i
            if 0 <= at < self.height:
                self.rows[at] = (self.rows[at] & ~mask) | (row << shift)

    def getbbox(self) -> tuple[int, int, int, int] | None:
        """(left, top, right, bottom) of the lit pixels, or None when none is lit."""
        lit = [y for y, row in enumerate(self.rows) if row]
        if not lit:
            return None
        union = 0
        for row in self.rows:
            union |= row
        left = self.width - union.bit_length()
        right = self.width - ((union & -union).bit_length() - 1)
        return (left, lit[0], right, lit[-1] + 1)
