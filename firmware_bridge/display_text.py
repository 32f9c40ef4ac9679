"""The DISPLAY payload: text for a pad's small display, in GB18030.

Pad displays of this kind carry a GB2312/GBK font ROM indexed by the character's
GB code, so the firmware copies GB bytes straight to the glyph lookup: no UTF-8 decoder
on the microcontroller, and the byte count equals the screen columns used (one for ASCII,
two for a Chinese character). Characters that need GB18030's four-byte form are not in
such a ROM, so they are refused here rather than shown as boxes.
"""

from __future__ import annotations

from enum import IntFlag

from firmware_bridge.errors import FrameError

__all__ = ["DISPLAY_COLUMNS", "DisplayFlag", "decode_display", "encode_display"]

DISPLAY_COLUMNS = 32  # bytes of GB18030 text, '\n' included


class DisplayFlag(IntFlag):
    BEEP = 0x01
    BLINK = 0x02


def encode_display(text: str, *, beep: bool = False, blink: bool = False) -> bytes:
    """Flags byte, then the text; raises FrameError naming what the pad cannot show."""
    out = bytearray()
    for ch in text:
        if ch != "\n" and (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0):
            raise FrameError(f"display text has control character {ch!r}")
        encoded = ch.encode("gb18030")
        if len(encoded) > 2:
            raise FrameError(f"{ch!r} is outside the pad's GBK font")
        out += encoded
    if len(out) > DISPLAY_COLUMNS:
        raise FrameError(
            f"display text takes {len(out)} columns, the pad has {DISPLAY_COLUMNS} "
            "(a Chinese character takes two)"
        )
    flags = (DisplayFlag.BEEP if beep else 0) | (DisplayFlag.BLINK if blink else 0)
    return bytes((flags,)) + bytes(out)


def decode_display(payload: bytes) -> tuple[str, DisplayFlag]:
    """What the pad firmware does with a DISPLAY payload; used by the simulator."""
    if not payload or len(payload) > 1 + DISPLAY_COLUMNS:
        raise FrameError(f"DISPLAY payload must be 1..{1 + DISPLAY_COLUMNS} bytes")
    try:
        text = payload[1:].decode("gb18030")
    except UnicodeDecodeError:
        raise FrameError("DISPLAY text is not valid GB18030") from None
    return text, DisplayFlag(payload[0] & 0x03)
