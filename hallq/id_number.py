"""Resident ID numbers and phone numbers, keyed-hashed: the one function both the
dispenser's ID reader and the booking page use, so a booking and a card tap of the same
person give the same hash.

Only the HMAC-SHA256 under the deployment key (``security.id_hash_key``) is kept: enough
to count a person's tickets or bookings per day, and it cannot be turned back into the
number without the key (plain SHA-256 could, since ID numbers are few enough to
enumerate). Nothing here logs the number or puts it in a message; the reasons a number is
refused never quote it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Protocol

__all__ = ["hash_id_number", "hash_phone", "id_number_problem", "key_bytes", "normalise_phone"]

MIN_KEY = 16
_NUMBER = re.compile(r"[0-9]{17}[0-9X]")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_MOBILE = re.compile(r"1[3-9][0-9]{9}")


class Secret(Protocol):
    def get_secret_value(self) -> str: ...


def key_bytes(key: bytes | str | Secret) -> bytes:
    if not isinstance(key, bytes | str):
        key = key.get_secret_value()
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if len(raw) < MIN_KEY:
        raise ValueError(f"the ID hash key must be at least {MIN_KEY} bytes (value not shown)")
    return raw


def id_number_problem(number: str) -> str | None:
    """None when ``number`` (stripped, upper case) is a valid 18-character resident ID
    number, else why not -- never quoting it."""
    if not _NUMBER.fullmatch(number):
        return "not an 18-character resident ID number"
    total = sum(int(d) * w for d, w in zip(number, _WEIGHTS, strict=False))
    if _CHECK[total % 11] != number[17]:
        return "check digit does not match"
    return None


def hash_id_number(number: str, key: bytes | str | Secret) -> str:
    """The hash an ID reader reports for ``number``: for matching, e.g. against bookings."""
    return hmac.new(
        key_bytes(key), number.strip().upper().encode("ascii"), hashlib.sha256
    ).hexdigest()


def normalise_phone(phone: str) -> str | None:
    """A mainland mobile number's 11 digits (spaces, dashes and +86 dropped), or None."""
    digits = re.sub(r"[\s\-]", "", phone)
    if digits.startswith("+86"):
        digits = digits[3:]
    return digits if _MOBILE.fullmatch(digits) else None


def hash_phone(digits: str, key: bytes | str | Secret) -> str:
    """A phone number's hash, in its own namespace so it never equals an ID number's."""
    return hmac.new(key_bytes(key), b"tel:" + digits.encode("ascii"), hashlib.sha256).hexdigest()
