"""Presence and health of every client of the hall, as the coordinator last heard them.

Retained ``status`` and ``health`` topics arrive on (re)subscribe and on change; a will
from an earlier boot must not mark a device offline that is back already, hence the
:class:`~hallq.retained.PresenceBook` in front of the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hallq import messages as m
from hallq.retained import PresenceBook


@dataclass
class DeviceSeen:
    role: str
    client: str
    online: bool | None = None
    boot: int | None = None
    version: str | None = None
    since: float | None = None
    health: m.DeviceHealth | None = None
    health_at: float | None = None


class DeviceBook:
    """Latest presence and health per (role, client); fed by the coordinator's routes."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._presence = PresenceBook()
        self._seen: dict[tuple[str, str], DeviceSeen] = {}

    def _entry(self, role: str, client: str) -> DeviceSeen:
        key = (role, client)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = DeviceSeen(role, client)
        return found

    def note_presence(self, presence: m.Presence) -> bool:
        """Record a birth or will; False when it is stale (an older boot's will)."""
        if not self._presence.accept(presence):
            return False
        entry = self._entry(presence.role, presence.client)
        online = presence.state == "online"
        if entry.online != online or entry.boot != presence.boot:
            entry.since = self._clock()
        entry.online, entry.boot, entry.version = online, presence.boot, presence.version
        return True

    def note_health(self, role: str, client: str, health: m.DeviceHealth) -> None:
        entry = self._entry(role, client)
        entry.health, entry.health_at = health, self._clock()

    def all(self) -> list[DeviceSeen]:
        return [self._seen[k] for k in sorted(self._seen)]

    def offline(self) -> list[DeviceSeen]:
        return [d for d in self.all() if d.online is False]

    def unhealthy(self) -> list[DeviceSeen]:
        return [
            d
            for d in self.all()
            if d.health is not None and not all(c.ok for c in d.health.components)
        ]
