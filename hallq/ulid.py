"""ULIDs for command and event ids: sortable by time, so logs and outboxes read in order.

Monotonic within one process: two ids made in the same millisecond still sort in the order
they were made (the random part is incremented), which keeps a device's commands ordered.
"""

from __future__ import annotations

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


# every two-character string, by the 10 bits it encodes: an id is 13 lookups (Python
# 3.11's base32 codec is written in Python, ~4 µs an id; ids are made for every message)
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
_stem = ""  # the ids' first 24 characters while only the random part's last 10 bits change


def _pairs(value: int, count: int) -> str:
    """The low ``10 * count`` bits of ``value``, most significant first."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(10 * count - 10, -1, -10)])


def _encode(value: int) -> str:
    """26 Crockford base32 characters of a 128-bit value (the top 2 of its 130 bits 0)."""
    return _pairs(value, 13)


def new_ulid() -> str:
    """A new ULID string (26 Crockford base32 characters): 10 of the millisecond, 16 of
    the random part. Ids made in the same millisecond (a coordinator's replies, events and
    states: several a millisecond under load) differ in the increment: only its last two
    characters are encoded anew until it carries past them."""
    global _last_ms, _last_rand, _stem
    ms = int(time.time() * 1000)
    with _lock:
        if ms <= _last_ms:
            rand = _last_rand = (_last_rand + 1) & ((1 << 80) - 1)
            if rand & 1023 == 0:
                _stem = _stem[:10] + _pairs(rand >> 10, 7)
        else:
            _last_ms = ms
            rand = _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            _stem = _pairs(ms, 5) + _pairs(rand >> 10, 7)
        return _stem + _PAIRS[rand & 1023]


def ulid_time_ms(value: str) -> int:
    """The millisecond timestamp inside a ULID."""
    if not _ULID_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a ULID")
    number = 0
    for ch in value:
        number = (number << 5) | _ALPHABET.index(ch)
    return number >> 80
