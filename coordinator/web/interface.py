"""What the web layer needs of the coordinator, as a Protocol.

The web handlers reach the hall only through this interface, so a change to
:class:`coordinator.service.Coordinator` that breaks a page is a type error, and a test
can serve the API from anything that has these members.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from hallq import messages as m

if TYPE_CHECKING:
    from coordinator.engine import Engine
    from coordinator.eventlog import EventLog
    from coordinator.hallqueue import HallQueue, Submitted
    from coordinator.nearby import NearbyHalls
    from coordinator.web.appointments import AppointmentBook, Booking
    from coordinator.web.devices import DeviceBook
    from hallq.bus import Session
    from hallq.config import HallConfig

__all__ = ["HallService", "Listener"]

Listener = Callable[[dict[str, Any]], None]


class HallService(Protocol):
    @property
    def cfg(self) -> HallConfig: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def queue(self) -> HallQueue: ...
    @property
    def eventlog(self) -> EventLog: ...  # the desk's audit log is kept next to it
    @property
    def session(self) -> Session | None: ...
    @property
    def devices(self) -> DeviceBook: ...
    @property
    def alerts(self) -> Iterable[tuple[float, m.AlertEvent]]: ...  # newest first
    @property
    def advice(self) -> deque[tuple[float, Any]]: ...  # (at, advice.Advice), newest first
    @property
    def bookings(self) -> AppointmentBook: ...
    @property
    def nearby(self) -> NearbyHalls: ...
    @property
    def forecast(self) -> Any: ...  # coordinator.forecast.Forecast, or None: no history yet

    web: Any  # the running WebServer, set by start_web
    # the desk's audit of a console's command over MQTT: (client, command, its record)
    on_console: Callable[[str, Any, dict[str, Any]], None] | None

    def board_state(self, rev: int) -> m.BoardState: ...

    def checked_in(self) -> set[str]: ...

    def add_listener(self, listener: Listener) -> None: ...

    def remove_listener(self, listener: Listener) -> None: ...

    async def execute(
        self, kind: str, role: str, client: str, command: Any, *, reply: bool = True
    ) -> Submitted: ...

    async def book_appointment(
        self,
        service: str,
        day: dt.date,
        start: float,
        *,
        booked_by: str = "taxpayer",
        note: str | None = None,
        person: str | None = None,
    ) -> Booking: ...

    async def cancel_appointment(self, code: str, person: str) -> Booking: ...
