"""Payload layouts of EVENT, HELLO, STATUS and NACK frames (PROTOCOL.md, "Payloads").

The codes here are what the device firmware compiles in: changing one is a protocol
change, pinned by exact-bytes tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

from firmware_bridge.errors import FrameError

__all__ = [
    "DeviceKind",
    "DeviceStatus",
    "EventType",
    "Identity",
    "NackReason",
    "PadKey",
    "StatusFlag",
    "join_event",
    "key_event",
    "split_event",
    "split_key",
]


class EventType(IntEnum):
    """First byte of an EVENT payload."""

    BOOT = 0x00  # first event after power-up; data is the HELLO identity
    KEY = 0x01  # key code, then optional ASCII argument (pad TRANSFER target)
    SCAN = 0x02  # scanner text, UTF-8 (in practice ASCII)
    ID_CARD = 0x03  # ID-card number, ASCII digits and X
    RATING = 0x04  # one byte, 1..4


class DeviceKind(IntEnum):
    """What a device says it is in HELLO; lets the master catch a pad wired at an LED's address."""

    CALL_PAD = 1
    RATING_PAD = 2
    KEYPAD = 3
    SCANNER = 4
    ID_READER = 5
    LED_CONTROLLER = 6


class NackReason(IntEnum):
    BAD_PAYLOAD = 1
    UNSUPPORTED = 2
    BUSY = 3
    OUT_OF_ORDER = 4

    @classmethod
    def describe(cls, payload: bytes) -> str:
        if not payload:
            return "no reason given"
        try:
            return cls(payload[0]).name.lower()
        except ValueError:
            return f"reason code {payload[0]}"


class StatusFlag(IntFlag):
    KEY_STUCK = 0x01
    DISPLAY_FAULT = 0x02
    LOW_VOLTAGE = 0x04
    TAMPER = 0x08
    LED_FAULT = 0x10


class PadKey(IntEnum):
    """Key codes of the window call pad (呼叫器)."""

    CALL = 0x01
    RECALL = 0x02
    SKIP = 0x03
    TRANSFER = 0x04
    PAUSE = 0x05
    RESUME = 0x06
    FINISH = 0x07
    EMERGENCY = 0x08


_MODEL_MAX = 32


@dataclass(frozen=True, slots=True)
class Identity:
    """A device's answer to HELLO, also carried by its BOOT event."""

    kind: int
    firmware: tuple[int, int]
    boot_id: int
    model: str = ""

    @property
    def kind_name(self) -> str:
        try:
            return DeviceKind(self.kind).name.lower()
        except ValueError:
            return f"kind {self.kind}"

    def encode(self) -> bytes:
        model = self.model.encode("ascii", "replace")[:_MODEL_MAX]
        major, minor = self.firmware
        return bytes((self.kind, major, minor)) + self.boot_id.to_bytes(2, "little") + model

    @classmethod
    def decode(cls, payload: bytes) -> Identity:
        if len(payload) < 5 or len(payload) > 5 + _MODEL_MAX:
            raise FrameError(f"identity must be 5..{5 + _MODEL_MAX} bytes, got {len(payload)}")
        model = payload[5:].decode("ascii", "replace")
        return cls(
            payload[0], (payload[1], payload[2]), int.from_bytes(payload[3:5], "little"), model
        )


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device's health, answered to STATUS."""

    flags: StatusFlag
    uptime_s: int
    rx_errors: int

    @property
    def ok(self) -> bool:
        return not self.flags

    def encode(self) -> bytes:
        return (
            bytes((int(self.flags),))
            + self.uptime_s.to_bytes(4, "little")
            + self.rx_errors.to_bytes(2, "little")
        )

    @classmethod
    def decode(cls, payload: bytes) -> DeviceStatus:
        if len(payload) != 7:
            raise FrameError(f"status must be 7 bytes, got {len(payload)}")
        return cls(
            StatusFlag(payload[0]),
            int.from_bytes(payload[1:5], "little"),
            int.from_bytes(payload[5:7], "little"),
        )


def join_event(event: EventType, data: bytes = b"") -> bytes:
    return bytes((event,)) + data


def split_event(payload: bytes) -> tuple[EventType, bytes]:
    if not payload:
        raise FrameError("empty EVENT payload")
    try:
        return EventType(payload[0]), payload[1:]
    except ValueError:
        raise FrameError(f"unknown event type 0x{payload[0]:02X}") from None


def key_event(code: int, argument: str = "") -> bytes:
    """A KEY event's payload: what a pad's firmware sends for one key (plus typed digits)."""
    if not 0 <= code <= 0xFF:
        raise FrameError(f"key code must be 0..255, got {code}")
    return join_event(EventType.KEY, bytes((code,)) + argument.encode("ascii"))


def split_key(data: bytes) -> tuple[int, str]:
    """(key code, argument) of a KEY event's data."""
    if not data:
        raise FrameError("KEY event without a key code")
    try:
        argument = data[1:].decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("KEY argument is not ASCII") from None
    return data[0], argument
