"""The ID-card reader (实名制): the number is hashed the moment it is decoded.

Only the HMAC-SHA256 of the number under the deployment key leaves this module: it is
enough to count a person's tickets per day and match an appointment, and it cannot be
turned back into the number without the key (plain SHA-256 could, since ID numbers are
few enough to enumerate). Nothing here logs, stores or puts the number in a message.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.errors import FrameError
from firmware_bridge.link import SerialLink
from firmware_bridge.payloads import DeviceKind, EventType
from firmware_bridge.updates import DeviceEvent
from hallq.id_number import Secret as _Secret
from hallq.id_number import hash_id_number
from hallq.id_number import id_number_problem as _valid
from hallq.id_number import key_bytes as _key_bytes

from .base import FramedDevice

__all__ = ["IdCard", "IdCardRejected", "IdReader", "hash_id_number"]


@dataclass(frozen=True, slots=True)
class IdCard(DeviceEvent):
    id_hash: str  # hex HMAC-SHA256 of the 18-character number


@dataclass(frozen=True, slots=True)
class IdCardRejected(DeviceEvent):
    """The reader sent something that is not a valid resident ID number (misread, other card)."""

    reason: str


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
        return IdCard(self.device, self.address, hash_id_number(number, self._key))
