"""The ID-card reader (实名制): the number is hashed the moment it is decoded.

Only the HMAC-SHA256 of the number under the deployment key leaves this module: it is
enough to count a person's tickets per day and match an appointment, and it cannot be
turned back into the number without the key (plain SHA-256 could, since ID numbers are
few enough to enumerate). Nothing here logs, stores or puts the number in a message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Protocol

from firmware_bridge.errors import FrameError
from firmware_bridge.link import SerialLink
from firmware_bridge.payloads import DeviceKind, EventType
from firmware_bridge.updates import DeviceEvent

from .base import FramedDevice

__all__ = ["IdCard", "IdCardRejected", "IdReader", "hash_id_number"]

_MIN_KEY = 16
_NUMBER = re.compile(r"[0-9]{17}[0-9X]")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


@dataclass(frozen=True, slots=True)
class IdCard(DeviceEvent):
    id_hash: str  # hex HMAC-SHA256 of the 18-character number


@dataclass(frozen=True, slots=True)
class IdCardRejected(DeviceEvent):
    """The reader sent something that is not a valid resident ID number (misread, other card)."""

    reason: str


def _key_bytes(key: bytes | str | _Secret) -> bytes:
    if not isinstance(key, bytes | str):
        key = key.get_secret_value()
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if len(raw) < _MIN_KEY:
        raise ValueError(f"the ID hash key must be at least {_MIN_KEY} bytes (value not shown)")
    return raw


def hash_id_number(number: str, key: bytes | str | _Secret) -> str:
    """The hash an ID reader reports for ``number``: for matching, e.g. against appointments."""
    return hmac.new(
        _key_bytes(key), number.strip().upper().encode("ascii"), hashlib.sha256
    ).hexdigest()


def _valid(number: str) -> str | None:
    """None when valid, else why not (never quoting the number)."""
    if not _NUMBER.fullmatch(number):
        return "not an 18-character resident ID number"
    total = sum(int(d) * w for d, w in zip(number, _WEIGHTS, strict=False))
    if _CHECK[total % 11] != number[17]:
        return "check digit does not match"
    return None


class IdReader(FramedDevice):
    kind = DeviceKind.ID_READER

    def __init__(
        self,
        link: SerialLink,
        address: int,
        *,
        key: bytes | str | _Secret,
        device: str | None = None,
        reply_timeout: float | None = None,
    ) -> None:
        self._key = _key_bytes(key)
        super().__init__(link, address, device=device, reply_timeout=reply_timeout)

    def decode_event(self, event: EventType, data: bytes) -> IdCard | IdCardRejected:
        if event != EventType.ID_CARD:
            raise FrameError(f"an ID reader does not send {event.name} events")
        try:
            number = data.decode("ascii").strip().upper()
        except UnicodeDecodeError:
            return IdCardRejected(self.device, self.address, "not ASCII")
        problem = _valid(number)
        if problem is not None:
            return IdCardRejected(self.device, self.address, problem)
        digest = hmac.new(self._key, number.encode("ascii"), hashlib.sha256).hexdigest()
        return IdCard(self.device, self.address, digest)
