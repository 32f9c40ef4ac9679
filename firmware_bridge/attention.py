"""ATTENTION: one broadcast asks a whole group of devices "who has an event?" (PROTOCOL.md).

Polling 10 pads one by one costs 10 transactions, so with pads and scrolling strips on one
line a pressed key waits for a whole round. An ATTENTION frame lists the addresses asked;
each listed device answers with a single byte in its own time slot, its slot index with
the high bit set when it has an event waiting. The master then polls only those, so a key
is served within one short cycle however many devices share the line. The answer bytes
are never 0x7D..0x7F, so a receiver cannot mistake them for framing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from firmware_bridge.errors import FrameError

__all__ = [
    "ATTENTION_MAX",
    "PENDING",
    "AttentionAnswers",
    "AttentionRequest",
    "slot_answer",
]

ATTENTION_MAX = 64  # addresses one ATTENTION frame may list: slot indexes 0..63
PENDING = 0x80  # answer bit: "I have an event waiting"
_INDEX = 0x3F


@dataclass(frozen=True, slots=True)
class AttentionRequest:
    """``SLOT (1)`` in character times (>= 2), then the listed addresses in slot order."""

    slot_chars: int
    addresses: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 2 <= self.slot_chars <= 255:
            raise FrameError(f"ATTENTION slot must be 2..255 characters, got {self.slot_chars}")
        if not 1 <= len(self.addresses) <= ATTENTION_MAX:
            raise FrameError(
                f"ATTENTION lists 1..{ATTENTION_MAX} addresses, got {len(self.addresses)}"
            )
        if not all(1 <= a <= 247 for a in self.addresses):
            raise FrameError("ATTENTION addresses must be 1..247")
        if len(set(self.addresses)) != len(self.addresses):
            raise FrameError("ATTENTION lists an address twice")

    def encode(self) -> bytes:
        return bytes((self.slot_chars, *self.addresses))

    @classmethod
    def decode(cls, payload: bytes) -> AttentionRequest:
        if len(payload) < 2:
            raise FrameError(f"ATTENTION payload must be at least 2 bytes, got {len(payload)}")
        return cls(payload[0], tuple(payload[1:]))

    def slot_of(self, address: int) -> int | None:
        """The slot a device answers in, None when it is not asked."""
        try:
            return self.addresses.index(address)
        except ValueError:
            return None

    def slot_end(self, index: int) -> int:
        """Character times from the end of the ATTENTION frame to the end of slot ``index``'s
        answer byte: one character of turnaround, ``SLOT`` per earlier slot, the byte itself."""
        return 1 + index * self.slot_chars + 1

    def wire_chars(self) -> int:
        """Character times the answers take after the frame, when every slot is used."""
        return self.slot_end(len(self.addresses) - 1)


def slot_answer(index: int, pending: bool) -> int:
    """The byte a device sends in slot ``index``."""
    if not 0 <= index < ATTENTION_MAX:
        raise FrameError(f"slot index must be 0..{ATTENTION_MAX - 1}, got {index}")
    return index | (PENDING if pending else 0)


class AttentionAnswers:
    """The master's collector for one ATTENTION: slot bytes in, which devices to poll out.

    Bytes that cannot be an answer (an index beyond the list or already heard, bits a slot
    byte never has) are counted as noise and left to the frame decoder; a device whose
    slot stays empty is polled directly, so noise can delay a key by one poll, never lose it.
    """

    def __init__(self, request: AttentionRequest) -> None:
        self.request = request
        self.answers: dict[int, bool] = {}  # address -> pending
        self.noise = 0

    @property
    def complete(self) -> bool:
        return len(self.answers) == len(self.request.addresses)

    def take(self, byte: int) -> bool:
        """Record ``byte`` if it is an answer for a slot not yet heard; False otherwise."""
        index = byte & _INDEX
        if byte & ~(PENDING | _INDEX) or index >= len(self.request.addresses):
            self.noise += 1
            return False
        address = self.request.addresses[index]
        if address in self.answers:
            self.noise += 1
            return False
        self.answers[address] = bool(byte & PENDING)
        return True

    def feed(self, data: Iterable[int]) -> None:
        for byte in data:
            self.take(byte)

    def to_poll(self) -> list[int]:
        """Addresses that said they have an event, or did not answer, in slot order."""
        return [a for a in self.request.addresses if self.answers.get(a, True)]

    def silent(self) -> list[int]:
        return [a for a in self.request.addresses if a not in self.answers]
