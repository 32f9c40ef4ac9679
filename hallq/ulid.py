"""ULIDs for command and event ids: sortable by time, so logs and outboxes read in order.

Monotonic within one process: two ids made in the same millisecond still sort in the order
they were made (the random part is incremented), which keeps a device's commands ordered.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
_ULID_RE = re.compile(ULID_PATTERN)
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def _encode(value: int) -> str:
    """26 Crockford base32 characters of a 128-bit value, via the C-level base32 codec:
    160 bits encode to 32 characters, the last 26 of which hold the low 130 bits."""
    return base64.b32encode(value.to_bytes(20, "big")).translate(_TO_CROCKFORD)[6:].decode()


def new_ulid() -> str:
    """A new ULID string (26 Crockford base32 characters)."""
    global _last_ms, _last_rand
    ms = int(time.time() * 1000)
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            _last_ms = ms
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
        rand = _last_rand
    return _encode((ms << 80) | rand)


def ulid_time_ms(value: str) -> int:
    """The millisecond timestamp inside a ULID."""
    if not _ULID_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a ULID")
    number = 0
    for ch in value:
        number = (number << 5) | _ALPHABET.index(ch)
    return number >> 80
