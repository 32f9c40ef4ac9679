"""Freshness rules for retained topics, so a late or replayed message never rolls state back.

State topics carry ``rev``: apply only a revision above the last one applied. Presence
carries ``boot``: an ``offline`` will from an earlier boot must not hide a newer ``online``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hallq.messages import Presence


class RevisionGate:
    """Remembers the last revision applied per topic."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def accept(self, topic: str, rev: int) -> bool:
        last = self._last.get(topic)
        if last is not None and rev <= last:
            return False
        self._last[topic] = rev
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
