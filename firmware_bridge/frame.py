"""The frame codec of the hall's RS-485 bus (see PROTOCOL.md for the byte layout).

Framing is kept apart from transport: this module turns frames into bytes and a byte
stream back into frames, and knows nothing of ports or timing. The decoder must survive
whatever a noisy multi-drop line delivers, so it never raises on input, keeps a bounded
buffer, and counts every frame it throws away by reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from firmware_bridge.crc import crc16_modbus
from firmware_bridge.errors import FrameError

__all__ = [
    "BROADCAST",
    "EOF",
    "ESC",
    "MAX_ADDRESS",
    "MAX_PAYLOAD",
    "MAX_WIRE_FRAME",
    "SOF",
    "Command",
    "DropReason",
    "Frame",
    "FrameDecoder",
    "encode",
]

log = logging.getLogger("firmware_bridge.frame")

SOF = 0x7E
EOF = 0x7F
ESC = 0x7D
_XOR = 0x20
_SPECIAL = frozenset({SOF, EOF, ESC})

BROADCAST = 0
MAX_ADDRESS = 247
MAX_PAYLOAD = 200
_FROM_DEVICE = 0x80
_HEADER = 4  # ADDR CMD SEQ LEN
_CRC = 2
MAX_BODY = _HEADER + MAX_PAYLOAD + _CRC
# Every body byte stuffed, plus SOF and EOF: the most bytes one frame can take on the wire.
MAX_WIRE_FRAME = 2 * MAX_BODY + 2


class Command(IntEnum):
    """The low seven bits of CMD; bit 7 says a device sent the frame."""

    POLL = 0x01
    EVENT = 0x02
    ACK = 0x03
    NACK = 0x04
    HELLO = 0x05
    STATUS = 0x06
    ATTENTION = 0x07
    DISPLAY = 0x10
    LED_FRAME = 0x11
    LED_DELTA = 0x12


# Which direction each command may travel in: (sent by master, sent by device).
_DIRECTIONS: dict[Command, tuple[bool, bool]] = {
    Command.POLL: (True, False),
    Command.EVENT: (False, True),
    Command.ACK: (True, True),
    Command.NACK: (False, True),
    Command.HELLO: (True, True),
    Command.STATUS: (True, True),
    Command.ATTENTION: (True, False),
    Command.DISPLAY: (True, False),
    Command.LED_FRAME: (True, False),
    Command.LED_DELTA: (True, False),
}


class DropReason(StrEnum):
    """Why the decoder threw bytes away; each is counted separately."""

    GARBAGE = "garbage"  # bytes outside any frame (one count per run of them)
    TRUNCATED = "truncated"  # a frame cut short: a new SOF came first, or fewer bytes than LEN says
    OVERSIZE = "oversize"  # LEN above 200, or no EOF before the buffer limit
    BAD_ESCAPE = "bad_escape"  # 0x7D not followed by a stuffed 0x5D/0x5E/0x5F
    BAD_LENGTH = "bad_length"  # more bytes than LEN says
    BAD_CRC = "bad_crc"
    UNKNOWN_COMMAND = "unknown_command"  # CMD not defined, or not valid in that direction
    WRONG_DIRECTION = "wrong_direction"  # e.g. a master hearing its own echo
    MISADDRESSED = "misaddressed"  # an address this side does not serve or poll


@dataclass(frozen=True, slots=True, repr=False)
class Frame:
    """One protocol frame. Its repr shows only the payload length: a payload can be an ID number."""

    address: int
    command: Command
    seq: int
    payload: bytes = b""
    from_device: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.address <= MAX_ADDRESS:
            raise FrameError(f"address must be 0..{MAX_ADDRESS}, got {self.address}")
        if self.from_device and self.address == BROADCAST:
            raise FrameError("a device cannot send from the broadcast address 0")
        if not 0 <= self.seq <= 0xFF:
            raise FrameError(f"seq must be 0..255, got {self.seq}")
        if len(self.payload) > MAX_PAYLOAD:
            raise FrameError(
                f"payload must be at most {MAX_PAYLOAD} bytes, got {len(self.payload)}"
            )
        by_master, by_device = _DIRECTIONS[Command(self.command)]
        if not (by_device if self.from_device else by_master):
            side = "a device" if self.from_device else "the master"
            raise FrameError(f"{self.command.name} is never sent by {side}")

    def __repr__(self) -> str:
        side = "device" if self.from_device else "master"
        return (
            f"Frame({side} addr={self.address} {self.command.name} seq={self.seq} "
            f"payload=<{len(self.payload)} bytes>)"
        )

    def encode(self) -> bytes:
        return encode(self)


def encode(frame: Frame) -> bytes:
    """SOF, the stuffed body and CRC, EOF: ready to write to the port."""
    cmd = frame.command | (_FROM_DEVICE if frame.from_device else 0)
    body = bytes((frame.address, cmd, frame.seq, len(frame.payload))) + frame.payload
    body += crc16_modbus(body).to_bytes(2, "little")
    stuffed = (
        body.replace(b"\x7d", b"\x7d\x5d")
        .replace(b"\x7e", b"\x7d\x5e")
        .replace(b"\x7f", b"\x7d\x5f")
    )
    return bytes((SOF,)) + stuffed + bytes((EOF,))


_HUNT, _IN_FRAME, _SKIP = 0, 1, 2


class FrameDecoder:
    """Streaming decoder: feed it whatever the port read, get back the complete good frames.

    ``addresses`` are the addresses this side accepts (None: any); the broadcast address
    is accepted only by a device-side decoder. ``from_device`` selects which direction is
    wanted: True on the master (devices' replies), False in a device (the master's
    commands), None for a bus sniffer.
    """

    def __init__(
        self,
        *,
        addresses: Collection[int] | Callable[[int], bool] | None = None,
        from_device: bool | None = True,
        name: str = "",
    ) -> None:
        if addresses is None or callable(addresses):
            self._accept = addresses
        else:
            wanted = frozenset(addresses)
            self._accept = wanted.__contains__
        self._from_device = from_device
        self._name = name
        self._buf = bytearray()
        self._state = _HUNT
        self._escaped = False
        self._garbage_run = False
        self.drops: Counter[DropReason] = Counter()
        self.frames = 0
        self.garbage_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished frame; never more than the largest valid body."""
        return len(self._buf)

    @property
    def hunting(self) -> bool:
        """True between frames: the next byte is line noise unless it is a SOF."""
        return self._state == _HUNT

    @property
    def receiving(self) -> bool:
        """True while a frame has started but not ended: the master extends its timeout then."""
        return self._state == _IN_FRAME

    def reset(self) -> None:
        """Forget a half-received frame, e.g. after the port was reopened."""
        self._buf.clear()
        self._state = _HUNT
        self._escaped = False
        self._garbage_run = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        out: list[Frame] = []
        buf = self._buf
        for byte in bytes(data):
            if byte == SOF:
                if self._state == _IN_FRAME and (buf or self._escaped):  # a lone 0x7D counts
                    self._drop(DropReason.TRUNCATED, f"new SOF after {len(buf)} bytes")
                buf.clear()
                self._state = _IN_FRAME
                self._escaped = False
                self._garbage_run = False
                continue
            if self._state == _SKIP:
                if byte == EOF:
                    self._state = _HUNT
                continue
            if self._state == _HUNT:
                self.garbage_bytes += 1
                if not self._garbage_run:
                    self._garbage_run = True
                    self._drop(DropReason.GARBAGE, "bytes outside a frame")
                continue
            # inside a frame
            if byte == EOF:
                self._state = _HUNT
                if self._escaped:
                    self._escaped = False
                    buf.clear()
                    self._drop(DropReason.BAD_ESCAPE, "0x7D right before EOF")
                    continue
                checked = self._check(buf)
                buf.clear()
                if isinstance(checked, Frame):
                    self.frames += 1
                    out.append(checked)
                else:
                    self._drop(*checked)
                continue
            if byte == ESC:
                if self._escaped:
                    self._abandon(DropReason.BAD_ESCAPE, "0x7D 0x7D")
                else:
                    self._escaped = True
                continue
            if self._escaped:
                self._escaped = False
                byte ^= _XOR
                if byte not in _SPECIAL:
                    self._abandon(DropReason.BAD_ESCAPE, f"0x7D followed by 0x{byte ^ _XOR:02X}")
                    continue
            buf.append(byte)
            if len(buf) > MAX_BODY:
                self._abandon(DropReason.OVERSIZE, f"no EOF within {MAX_BODY} bytes")
        return out

    def _abandon(self, reason: DropReason, detail: str) -> None:
        """Give up on this frame and ignore the rest of it, up to its EOF or the next SOF."""
        self._buf.clear()
        self._escaped = False
        self._state = _SKIP
        self._drop(reason, detail)

    def _check(self, body: bytearray) -> Frame | tuple[DropReason, str]:
        if len(body) < _HEADER + _CRC:
            return (DropReason.TRUNCATED, f"{len(body)}-byte body")
        addr, cmd, seq, length = body[0], body[1], body[2], body[3]
        if length > MAX_PAYLOAD:
            return (DropReason.OVERSIZE, f"LEN {length}")
        expected = _HEADER + length + _CRC
        if len(body) < expected:
            return (DropReason.TRUNCATED, f"LEN {length} but {len(body)}-byte body")
        if len(body) > expected:
            return (DropReason.BAD_LENGTH, f"LEN {length} but {len(body)}-byte body")
        got = body[-2] | body[-1] << 8
        if crc16_modbus(memoryview(body)[:-2]) != got:
            return (DropReason.BAD_CRC, f"addr {addr} cmd 0x{cmd:02X}")
        from_device = bool(cmd & _FROM_DEVICE)
        try:
            command = Command(cmd & ~_FROM_DEVICE)
        except ValueError:
            return (DropReason.UNKNOWN_COMMAND, f"cmd 0x{cmd:02X} from addr {addr}")
        if not _DIRECTIONS[command][1 if from_device else 0]:
            return (DropReason.UNKNOWN_COMMAND, f"{command.name} in the wrong direction")
        if self._from_device is not None and from_device != self._from_device:
            return (DropReason.WRONG_DIRECTION, f"{command.name} addr {addr}")
        if addr > MAX_ADDRESS or (addr == BROADCAST and from_device):
            return (DropReason.MISADDRESSED, f"address {addr}")
        broadcast_ok = addr == BROADCAST and self._from_device is not True
        if self._accept is not None and not broadcast_ok and not self._accept(addr):
            return (DropReason.MISADDRESSED, f"address {addr}")
        return Frame(addr, command, seq, bytes(body[_HEADER:-_CRC]), from_device)

    def _drop(self, reason: DropReason, detail: str) -> None:
        self.drops[reason] += 1
        log.debug(
            "%sdropped frame: %s (%s)", f"{self._name}: " if self._name else "", reason, detail
        )
