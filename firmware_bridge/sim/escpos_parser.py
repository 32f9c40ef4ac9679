"""Reads an ESC/POS stream back into what a printer would put on paper.

Written from the command set, not from our builder, so a ticket test checks the bytes a
real printer would see: text only decodes as Chinese after FS &, the QR code is whatever
GS ( k stored, and the number is LARGE only if GS ! said so before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EscPosParser", "Op", "PrintedLine", "PrintedTicket"]

_ALIGN = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}
# Commands with a fixed number of argument bytes: prefix byte, command byte -> count.
_FIXED = {
    (0x1B, 0x40): 0,  # ESC @ (handled)
    (0x1B, 0x32): 0,  # ESC 2 default line spacing
    (0x1B, 0x33): 1,  # ESC 3 n line spacing
    (0x1B, 0x61): 1,  # ESC a n align (handled)
    (0x1B, 0x45): 1,  # ESC E n bold (handled)
    (0x1B, 0x47): 1,  # ESC G n double strike
    (0x1B, 0x2D): 1,  # ESC - n underline
    (0x1B, 0x21): 1,  # ESC ! n print mode
    (0x1B, 0x64): 1,  # ESC d n feed lines
    (0x1B, 0x4A): 1,  # ESC J n feed dots
    (0x1B, 0x74): 1,  # ESC t n code table
    (0x1B, 0x52): 1,  # ESC R n character set
    (0x1B, 0x4D): 1,  # ESC M n font
    (0x1B, 0x7B): 1,  # ESC { n upside down
    (0x1D, 0x21): 1,  # GS ! n size (handled)
    (0x1D, 0x42): 1,  # GS B n reverse
    (0x1D, 0x48): 1,  # GS H n HRI position
    (0x1D, 0x68): 1,  # GS h n barcode height
    (0x1D, 0x77): 1,  # GS w n barcode width
    (0x1D, 0x4C): 2,  # GS L nL nH left margin
    (0x1D, 0x57): 2,  # GS W nL nH print area width
    (0x1C, 0x26): 0,  # FS & Chinese mode on (handled)
    (0x1C, 0x2E): 0,  # FS . Chinese mode off (handled)
    (0x1C, 0x21): 1,  # FS ! n Chinese print mode
    (0x1C, 0x2D): 1,  # FS - n Chinese underline
    (0x1C, 0x43): 1,  # FS C n code system
    (0x1C, 0x57): 1,  # FS W n Chinese quadruple size
}


@dataclass(frozen=True, slots=True)
class PrintedLine:
    text: str
    width: int  # character magnification from GS !
    height: int
    bold: bool
    align: str


@dataclass(slots=True)
class PrintedTicket:
    lines: list[PrintedLine] = field(default_factory=list)
    qr_codes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


# What the parser saw, in order, for the printer model to act on.
Op = tuple[str, object]  # ("line", PrintedLine) | ("qr", str) | ("cut", None) | ("status", int)


class EscPosParser:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._line = bytearray()
        self._line_style: tuple[int, int, bool, str, bool] | None = None
        self._qr_data = b""
        self.unknown: list[bytes] = []
        self._reset()

    def _reset(self) -> None:
        self.width = self.height = 1
        self.bold = False
        self.align = "left"
        self.chinese = False

    def feed(self, data: bytes) -> list[Op]:
        self._buf += data
        ops: list[Op] = []
        while self._buf:
            used = self._one(ops)
            if used == 0:
                break  # an incomplete command: wait for the rest
            del self._buf[:used]
        return ops

    def _one(self, ops: list[Op]) -> int:
        buf = self._buf
        b = buf[0]
        if b >= 0x20:
            if self._line_style is None:
                self._line_style = (self.width, self.height, self.bold, self.align, self.chinese)
            self._line.append(b)
            return 1
        if b == 0x0A:
            ops.append(("line", self._end_line()))
            return 1
        if b == 0x0D:
            return 1
        if b == 0x10:  # DLE: real-time commands
            if len(buf) < 3:
                return 0
            if buf[1] == 0x04:
                ops.append(("status", buf[2]))
            else:
                self.unknown.append(bytes(buf[:3]))
            return 3
        if b in (0x1B, 0x1D, 0x1C):
            if len(buf) < 2:
                return 0
            return self._command(ops)
        self.unknown.append(bytes(buf[:1]))
        return 1

    def _command(self, ops: list[Op]) -> int:
        buf = self._buf
        prefix, cmd = buf[0], buf[1]
        if (prefix, cmd) == (0x1D, 0x56):  # GS V m [n]: cut
            if len(buf) < 3:
                return 0
            need = 4 if buf[2] in (65, 66, 97, 98, 103, 104) else 3
            if len(buf) < need:
                return 0
            ops.append(("cut", None))
            return need
        if (prefix, cmd) == (0x1D, 0x28):  # GS ( x pL pH ...
            if len(buf) < 5:
                return 0
            need = 5 + (buf[3] | buf[4] << 8)
            if len(buf) < need:
                return 0
            if buf[2] == 0x6B:
                self._qr(bytes(buf[5:need]), ops)
            return need
        count = _FIXED.get((prefix, cmd))
        if count is None:
            self.unknown.append(bytes(buf[:2]))
            return 2
        if len(buf) < 2 + count:
            return 0
        arg = buf[2] if count else 0
        match (prefix, cmd):
            case (0x1B, 0x40):
                self._reset()
            case (0x1B, 0x61):
                self.align = _ALIGN.get(arg, "left")
            case (0x1B, 0x45):
                self.bold = bool(arg & 1)
            case (0x1D, 0x21):
                self.width, self.height = (arg >> 4) + 1, (arg & 0x07) + 1
            case (0x1C, 0x26):
                self.chinese = True
            case (0x1C, 0x2E):
                self.chinese = False
        return 2 + count

    def _qr(self, body: bytes, ops: list[Op]) -> None:
        if len(body) < 2 or body[0] != 0x31:  # cn 49: QR code
            return
        fn = body[1]
        if fn == 0x50:  # store: m, then the data
            self._qr_data = body[3:]
        elif fn == 0x51:  # print what was stored
            ops.append(("qr", self._qr_data.decode("utf-8", "replace")))

    def _end_line(self) -> PrintedLine:
        width, height, bold, align, chinese = self._line_style or (
            self.width,
            self.height,
            self.bold,
            self.align,
            self.chinese,
        )
        raw = bytes(self._line)
        text = raw.decode("gb18030", "replace") if chinese else raw.decode("cp437", "replace")
        self._line.clear()
        self._line_style = None
        return PrintedLine(text, width, height, bold, align)
