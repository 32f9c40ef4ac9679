"""ESC/POS bytes for a queue ticket, for the thermal printers Chinese dispensers use.

Built as plain bytes with no printer library, so the exact stream is testable and the
simulator can parse it back. Chinese text goes out as GB18030 after FS & (Chinese mode);
the QR code is rendered by the printer itself (GS ( k, model 2), so only its text travels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from firmware_bridge.errors import FrameError

__all__ = [
    "CHINESE_OFF",
    "CHINESE_ON",
    "CUT",
    "INIT",
    "Ticket",
    "align",
    "bold",
    "feed",
    "qr_code",
    "size",
    "status_query",
    "text",
    "ticket_bytes",
]

ESC, GS, FS, DLE, EOT, LF = 0x1B, 0x1D, 0x1C, 0x10, 0x04, 0x0A

INIT = bytes((ESC, 0x40))  # ESC @
CHINESE_ON = bytes((FS, 0x26))  # FS &
CHINESE_OFF = bytes((FS, 0x2E))  # FS .
CUT = bytes((GS, 0x56, 0x42, 0x00))  # GS V 66 0: feed to the cutter, then partial cut

_QR_ECC = {"L": 48, "M": 49, "Q": 50, "H": 51}


def align(where: str) -> bytes:
    """ESC a n: left, center or right."""
    return bytes((ESC, 0x61, {"left": 0, "center": 1, "right": 2}[where]))


def bold(on: bool) -> bytes:
    return bytes((ESC, 0x45, 1 if on else 0))


def size(width: int, height: int) -> bytes:
    """GS ! n: character magnification, 1..8 each way."""
    if not (1 <= width <= 8 and 1 <= height <= 8):
        raise ValueError(f"character size must be 1..8 each way, got {width}x{height}")
    return bytes((GS, 0x21, (width - 1) << 4 | (height - 1)))


def feed(lines: int) -> bytes:
    return bytes((ESC, 0x64, lines))


def text(line: str) -> bytes:
    """One line of text in GB18030, ended by LF (the printer must be in Chinese mode)."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in line):
        raise FrameError("ticket text must not contain control characters")
    return line.encode("gb18030") + bytes((LF,))


def qr_code(data: str, *, module: int = 6, ecc: str = "M") -> bytes:
    """GS ( k: select model 2, module size, error correction, store the data, print it."""
    payload = data.encode("utf-8")
    if not payload or len(payload) > 7089:
        raise ValueError("QR data must be 1..7089 bytes")
    if not 1 <= module <= 16:
        raise ValueError(f"QR module size must be 1..16, got {module}")
    store_len = len(payload) + 3

    def gs_k(*body: int) -> bytes:
        n = len(body)
        return bytes((GS, 0x28, 0x6B, n & 0xFF, n >> 8, *body))

    return (
        gs_k(0x31, 0x41, 0x32, 0x00)  # fn 65: model 2
        + gs_k(0x31, 0x43, module)  # fn 67: module size
        + gs_k(0x31, 0x45, _QR_ECC[ecc])  # fn 69: error correction level
        + bytes((GS, 0x28, 0x6B, store_len & 0xFF, store_len >> 8, 0x31, 0x50, 0x30))
        + payload  # fn 80: store
        + gs_k(0x31, 0x51, 0x30)  # fn 81: print
    )


def status_query(n: int) -> bytes:
    """DLE EOT n: real-time status (1 printer, 2 offline cause, 3 error, 4 paper roll)."""
    if n not in (1, 2, 3, 4):
        raise ValueError(f"DLE EOT takes 1..4, got {n}")
    return bytes((DLE, EOT, n))


@dataclass(frozen=True, slots=True)
class Ticket:
    """What goes on a queue ticket (what the coordinator's issue reply provides)."""

    hall: str
    service: str
    number: str
    people_ahead: int
    wait_minutes: int | None
    issued_at: datetime
    status_url: str
    note: str | None = "请留意叫号，过号请重新取号"
    wait_text: str | None = None  # the range as the coordinator gives it ("约 8-12 分钟")
    badge: str | None = None  # a guide's ticket class ("导税"), under the service


def ticket_bytes(ticket: Ticket, *, number_scale: int = 4, qr_module: int = 6) -> bytes:
    """The complete stream for one ticket, from ESC @ to the cut."""
    wait = ticket.wait_text or (
        "暂无" if ticket.wait_minutes is None else f"约 {ticket.wait_minutes} 分钟"
    )
    badge = [size(1, 1), bold(True), text(f"【{ticket.badge}】"), bold(False)]
    out = [
        INIT,
        CHINESE_ON,
        align("center"),
        bold(True),
        text(ticket.hall),
        bold(False),
        size(2, 2),
        text(ticket.service),
        *(badge if ticket.badge else []),
        size(number_scale, number_scale),
        text(ticket.number),
        size(1, 1),
        text(f"前面还有 {ticket.people_ahead} 人"),
        text(f"预计等待 {wait}"),
        text(f"取号时间 {ticket.issued_at:%Y-%m-%d %H:%M}"),
        qr_code(ticket.status_url, module=qr_module),
        text("扫码查看排队进度"),
    ]
    if ticket.note:
        out.append(text(ticket.note))
    out += [feed(3), CHINESE_OFF, CUT]
    return b"".join(out)
