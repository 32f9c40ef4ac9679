"""A device agent's health on the bus: one retained DeviceHealth, republished on change.

Components are the agent's lines, devices and printer; the dashboard and `hallq status`
read them, and a field engineer sees "printer paper_near_end" without walking over.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable

from hallq import messages as m
from hallq.bus import Session
from hallq.errors import NotConnected

log = logging.getLogger("hallq.edge")

MQTT_COMPONENT = "mqtt"
STATE_COMPONENT = "state"  # the session's file: boots and the outbox
SHARED_ID_DETAIL = (
    "the broker keeps dropping this device's connection as soon as it is made: another "
    "client is connected with its id (a copied SD card, or its password in other hands)"
)


def component_name(raw: str) -> str:
    """A device id or port path as a health component name (an id: a-z 0-9 _ -)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-_")[:32]
    return name or "component"


class Health:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._components: dict[str, m.ComponentHealth] = {}
        session.on_shared_id(self._shared_id)

    def _shared_id(self, suspected: bool) -> Awaitable[None] | None:
        """The broker keeps pushing this device off (Session.on_shared_id): the client
        that does it may announce nothing, so the device says it in its health, which the
        desk shows (published on the next connect, or now when it clears)."""
        if not self.set(
            MQTT_COMPONENT,
            not suspected,
            m.SHARED_ID if suspected else "ok",
            SHARED_ID_DETAIL if suspected else None,
            quiet=True,  # the session has said it in the log, once
        ):
            return None
        return self.publish()

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
        error = self.session.state_error  # (logged by the session)
        if error is not None or STATE_COMPONENT in self._components:
            ok = error is None
            self.set(STATE_COMPONENT, ok, "ok" if ok else m.NOT_WRITABLE, error, quiet=True)
        return m.DeviceHealth(
            rev=self.session.next_rev(), components=list(self._components.values())[:32]
        )

    async def publish(self) -> None:
        topic = self.session.topics.health(self.session.role, self.session.client_id)
        try:
            await self.session.publish(topic, self.message())
        except NotConnected:
            pass  # republished on every connect

    async def update(
        self, name: str, ok: bool, status: str, detail: str | None = None, *, quiet: bool = False
    ) -> None:
        if self.set(name, ok, status, detail, quiet=quiet):
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
