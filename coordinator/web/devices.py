"""Presence and health of every client of the hall, as the coordinator last heard them.

Retained ``status`` and ``health`` topics arrive on (re)subscribe and on change; a will
from an earlier boot must not mark a device offline that is back already, hence the
:class:`~hallq.retained.PresenceBook` in front of the table.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hallq import messages as m
from hallq.retained import PresenceBook

log = logging.getLogger("hallq.coordinator.devices")

# two births within this long, each with a new id and a boot no higher than the presence
# before it, and a client id is taken to be in use twice; flagged this long after the last
SHARED_ID_WINDOW_S = 600.0
# a device may print offline this long before the broker publishes its will (keepalive
# x 1.5), or before it reconnects; also the clock difference between a Pi and the server.
# At least this; the coordinator gives more for a long keepalive
LINK_GRACE_S = 60.0


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
    birth_id: str | None = None  # the id of the last birth seen (the same birth may repeat)
    restarts: list[float] = field(default_factory=list)  # births that counted boots again
    first_seen: float | None = None  # this process's first presence of it
    down_at: float | None = None  # its will, while it is offline
    # (from, to): when it may have been cut off, each ending at a birth (see link_gap)
    gaps: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=64))


class DeviceBook:
    """Latest presence and health per (role, client); fed by the coordinator's routes."""

    def __init__(self, clock: Callable[[], float], link_grace_s: float = LINK_GRACE_S) -> None:
        self._clock = clock
        self._grace = link_grace_s  # see LINK_GRACE_S; the broker's keepalive may need more
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
        self._note_gap(entry, online, presence.boot)
        if online:
            last = entry.boot if entry.birth_id not in (None, presence.id) else None
            if last is not None and presence.boot <= last and not boots_in_memory(entry.health):
                self._counted_again(entry, presence.boot)
            entry.birth_id = presence.id
        if entry.online != online or entry.boot != presence.boot:
            entry.since = self._clock()
        entry.online, entry.boot, entry.version = online, presence.boot, presence.version
        return True

    def _note_gap(self, entry: DeviceSeen, online: bool, boot: int) -> None:
        """A new connection ends a time it may have been cut off: from its will, or (taken
        over by its own next connection, the broker publishes no will) from a little before
        this birth."""
        now = self._clock()
        if entry.first_seen is None:
            entry.first_seen = now
        if not online:
            if entry.online is not False:
                entry.down_at = now
            return
        if entry.online is True and entry.boot == boot:
            return  # the same connection's birth, again
        start = entry.down_at if entry.online is False and entry.down_at is not None else now
        entry.gaps.append((start - self._grace, now))
        entry.down_at = None

    def watch_afresh(self) -> None:
        """This process was cut off from the broker (or just connected): it cannot say
        who was connected meanwhile, so no earlier time counts as watched."""
        now = self._clock()
        for entry in self._seen.values():
            entry.first_seen = now
            entry.gaps.clear()

    def link_gap(self, role: str, client: str, at: float) -> bool:
        """Whether ``client`` may have been cut off from the broker at ``at`` (its clock,
        give or take the grace): offline then, or reconnecting soon after, or before
        this process knew of it. False: connected all along, as far as presence says."""
        entry = self._seen.get((role, client))
        if entry is None or entry.first_seen is None or at < entry.first_seen + self._grace:
            return True
        if (
            entry.online is False
            and entry.down_at is not None
            and at >= entry.down_at - self._grace
        ):
            return True
        return any(start <= at <= end + self._grace for start, end in entry.gaps)

    def _counted_again(self, entry: DeviceSeen, boot: int) -> None:
        """A new birth whose boot is no higher than the last presence's: not the
        successor of that connection (a client's next connection counts on). Once, a
        device counting afresh (a new SD card, a wiped state directory); again and again,
        two devices or processes with one client id (a cloned card, one hall file's id
        on two Pis): the broker drops whichever was connected each time the other
        connects (Mosquitto publishes no will then), so both keep reconnecting, and each
        only logs that it lost the broker."""
        now = self._clock()
        entry.restarts = [t for t in entry.restarts if now - t < SHARED_ID_WINDOW_S] + [now]
        if len(entry.restarts) == 2:
            log.warning(
                "%s/%s is connected twice: a birth from boot %d after boot %s, again; two "
                "devices or processes use this id (a cloned SD card keeps its agent's id), "
                "and the broker drops one whenever the other connects. Give each device "
                "its own agent id in the hall file",
                entry.role,
                entry.client,
                boot,
                entry.boot,
            )
        elif len(entry.restarts) == 1:
            log.info(
                "%s/%s counts its boots again (boot %d after boot %s): a new card or "
                "state directory",
                entry.role,
                entry.client,
                boot,
                entry.boot,
            )

    def shared_ids(self) -> list[DeviceSeen]:
        """Devices whose id more than one client has been using lately: seen here (births
        from both), or said by the device itself (its health: the broker keeps pushing it
        off, whoever does it announcing nothing, as a client with a stolen password)."""
        now = self._clock()
        return [
            d
            for d in self.all()
            if len([t for t in d.restarts if now - t < SHARED_ID_WINDOW_S]) >= 2
            or says_shared_id(d.health)
        ]

    def note_health(self, role: str, client: str, health: m.DeviceHealth) -> None:
        entry = self._entry(role, client)
        entry.health, entry.health_at = health, self._clock()

    def seen(self, role: str, client: str) -> DeviceSeen | None:
        return self._seen.get((role, client))

    def all(self) -> list[DeviceSeen]:
        return [self._seen[k] for k in sorted(self._seen)]

    def offline(self) -> list[DeviceSeen]:
        return [d for d in self.all() if d.online is False]

    def unhealthy(self) -> list[DeviceSeen]:
        """Devices with a component at fault, but for a shared id (see shared_ids)."""
        return [d for d in self.all() if faults(d.health)]


def faults(health: m.DeviceHealth | None) -> list[m.ComponentHealth]:
    """The components at fault, but for a shared id (shown as such, see shared_ids)."""
    if health is None:
        return []
    return [c for c in health.components if not c.ok and c.status != m.SHARED_ID]


def says_shared_id(health: m.DeviceHealth | None) -> bool:
    return health is not None and any(
        not c.ok and c.status == m.SHARED_ID for c in health.components
    )


def boots_in_memory(health: m.DeviceHealth | None) -> bool:
    """Its state file cannot be written (a card gone read-only): each start counts on from
    what the file last held, so a restart's birth repeats a boot, as a twin's would."""
    return health is not None and any(
        c.name == "state" and c.status == m.NOT_WRITABLE for c in health.components
    )
