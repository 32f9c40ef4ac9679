"""Freshness rules for retained topics, so a late or replayed message never rolls state back.

State topics carry ``rev``: apply only a revision above the last one applied, or one below
it made later (its publisher counts from the start again). Presence carries ``boot``: an
``offline`` will from an earlier boot must not hide a newer ``online``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from hallq.messages import Presence


class RevisionGate:
    """Remembers the last revision applied per topic, and when its message was made.

    A lower revision made after the last one applied is taken too: its publisher started
    counting again (the coordinator's revision is its event log's sequence, and a hall
    whose log was wiped after a trial day, or that moved to a new server without it,
    starts from 1 while the Pis run on). A late or replayed message was made before the
    one applied, and is still refused. A message "made" after its arrival counts as made
    on arrival: a login's health at revision 2^62 stamped in 9999 froze that device's
    health (its real agent's were all refused) until the coordinator restarted."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, datetime | None]] = {}

    def accept(self, topic: str, rev: int, made: datetime | None = None) -> bool:
        last = self._last.get(topic)
        if last is not None and rev <= last[0]:
            counts_again = (
                rev < last[0] and made is not None and last[1] is not None and made > last[1]
            )
            if not counts_again:
                return False
        if made is not None:
            made = min(made, datetime.now(UTC))
        self._last[topic] = (rev, made)
        return True

    def forget(self, topic: str) -> None:
        self._last.pop(topic, None)


@dataclass(frozen=True, slots=True)
class Seen:
    boot: int
    online: bool


class PresenceBook:
    """Latest presence per client; stale wills (lower boot) are refused.

    A birth (``online``) is always taken, whatever its boot: only a client connected at
    that moment publishes one, so it is never stale. A lower boot there means a device
    that starts counting again (a new SD card, a lost state directory) or a second device
    with the same id; refused, the first would look offline until its count passed the
    old one, and the second would be invisible."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], Seen] = {}

    def accept(self, presence: Presence) -> bool:
        key = (presence.role, presence.client)
        last = self._seen.get(key)
        if last is not None and presence.boot < last.boot and presence.state == "offline":
            return False
        self._seen[key] = Seen(presence.boot, presence.state == "online")
        return True

    def online(self, role: str, client: str) -> bool | None:
        """True/False once anything was seen for that client, else None (unknown)."""
        seen = self._seen.get((role, client))
        return None if seen is None else seen.online
