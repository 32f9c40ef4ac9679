"""A device agent's health on the bus: one retained DeviceHealth, republished on change.

Components are the agent's lines, devices and printer; the dashboard and `hallq status`
read them, and a field engineer sees "printer paper_near_end" without walking over.
"""

from __future__ import annotations

import logging
import re

from hallq import messages as m
from hallq.bus import Session
from hallq.errors import NotConnected

log = logging.getLogger("hallq.edge")


def component_name(raw: str) -> str:
    """A device id or port path as a health component name (an id: a-z 0-9 _ -)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-_")[:32]
    return name or "component"


class Health:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._components: dict[str, m.ComponentHealth] = {}

    def components(self) -> list[m.ComponentHealth]:
        return list(self._components.values())

    def get(self, name: str) -> m.ComponentHealth | None:
        return self._components.get(component_name(name))

    def set(
        self, name: str, ok: bool, status: str, detail: str | None = None, *, quiet: bool = False
    ) -> bool:
        """Record a component's state; True when it changed (and should be published).
        ``quiet``: the caller has logged the fault already (once for many agents)."""
        item = m.ComponentHealth(
            name=component_name(name),
            ok=ok,
            status=component_name(status),
            detail=detail and detail[:200],
        )
        if self._components.get(item.name) == item:
            return False
        if not ok and not quiet:
            log.warning(
                "%s: %s %s%s",
                self.session.client_id,
                item.name,
                item.status,
                f" ({detail})" if detail else "",
            )
        self._components[item.name] = item
        return True

    def message(self) -> m.DeviceHealth:
        return m.DeviceHealth(
            rev=self.session.next_rev(), components=list(self._components.values())[:32]
        )

    async def publish(self) -> None:
        topic = self.session.topics.health(self.session.role, self.session.client_id)
        try:
            await self.session.publish(topic, self.message())
        except NotConnected:
            pass  # republished on every connect

    async def update(self, name: str, ok: bool, status: str, detail: str | None = None) -> None:
        if self.set(name, ok, status, detail):
            await self.publish()


async def report_link_health(health: Health, update: object) -> bool:
    """Lines and devices going up and down, as every agent reports them; True if handled."""
    from firmware_bridge import DeviceState, LinkState

    if isinstance(update, LinkState):
        await health.update(
            f"line-{update.port.rsplit('/', 1)[-1]}",
            update.up,
            "ok" if update.up else "link_down",
            update.reason,
        )
        return True
    if isinstance(update, DeviceState):
        await health.update(
            update.device, update.online, "ok" if update.online else "offline", update.reason
        )
        return True
    return False
