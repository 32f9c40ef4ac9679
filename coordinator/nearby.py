"""Nearby halls: which hall of the city serves the same business with a clearly shorter
wait, for the ticket and booking pages.

The city bridge (``hallq bridge``, its own process) brings the queue summaries of the halls
the hall file lists (``[city] nearby``) into the hall's own broker under
``city/{hall}/...``, and keeps ``city/link`` at 1 while it is connected to the city. The coordinator
only listens: it keeps the latest summary per hall and service with the time it came, and
answers from them while the link is up. With the city link down nothing is suggested (the
figures would be old), and the hall itself is untouched: nothing here is on the path of a
ticket or a key press.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hallq import messages as m
from hallq.config import CityConfig

# A summary older than this is not shown even with the link up: its hall may have
# stopped publishing (its coordinator down) while the city broker keeps the retained copy.
# Halls republish a queue when its estimate moves, so a live hall's summary is younger.
STALE_S = 1800.0
# "clearly shorter": at most this share of this hall's wait, and nearby_gain_min less
MAX_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Seen:
    state: m.QueueState
    at: float  # the coordinator's clock when it arrived


class NearbyHalls:
    """The nearby halls' queue summaries as the city bridge delivers them."""

    def __init__(self, city: CityConfig, clock: Callable[[], float]) -> None:
        self.city = city
        self.clock = clock
        self.halls = {n.hall: n for n in city.nearby}
        self.queues: dict[tuple[str, str], Seen] = {}
        self.link: bool | None = None  # None: no bridge has said anything yet
        self.link_at: float | None = None

    def on_queue(self, hall: str, state: m.QueueState) -> None:
        if hall in self.halls:  # a hall no longer listed is ignored, not kept
            self.queues[(hall, state.service)] = Seen(state, self.clock())

    def on_link(self, up: bool) -> bool:
        """Record the link state; True if it changed."""
        changed = up != self.link
        self.link, self.link_at = up, self.clock()
        return changed

    @property
    def fresh(self) -> bool:
        return bool(self.link) and bool(self.halls)

    def suggest(self, service: str, wait_min: float | None) -> list[dict[str, Any]]:
        """Nearby halls serving ``service`` with an expected wait clearly below
        ``wait_min`` (this hall's), shortest first; none while the link is down."""
        if not self.fresh or wait_min is None:
            return []
        now = self.clock()
        limit = min(wait_min - self.city.nearby_gain_min, wait_min * MAX_SHARE)
        found = []
        for hall, info in self.halls.items():
            seen = self.queues.get((hall, service))
            if seen is None or now - seen.at > STALE_S:
                continue
            eta = seen.state.eta_min
            if eta is None or eta > limit:
                continue
            found.append(
                {
                    "hall": hall,
                    "name": info.name,
                    "district": info.district,
                    "distance_km": info.distance_km,
                    "eta_min": round(eta, 1),
                    "waiting": seen.state.waiting,
                    "age_s": round(max(0.0, now - seen.at), 1),
                }
            )
        return sorted(found, key=lambda h: (h["eta_min"], h["distance_km"] or 0.0, h["hall"]))
