"""The queue engine: a hall's tickets and windows, changed only by commands. No I/O.

Every change goes through :meth:`Engine.apply` with the time it happens, so replaying the
event log with the recorded times rebuilds exactly the same state. Rejections are values
(an :class:`Outcome` with a :class:`~hallq.messages.Rejection`), never exceptions.
Which ticket a window calls is decided by the dispatch core (``DISPATCH.md``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import math
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hallq import messages as m
from hallq.config import HallConfig, Service
from hallq.messages import Priority, Rejection, TicketState, WindowStatus

CLASS_OF = {Priority.GREEN: 0, Priority.APPOINTMENT: 1, Priority.ASSISTED: 2, Priority.NORMAL: 3}
OPEN_STATES = frozenset(
    {
        TicketState.WAITING,
        TicketState.CALLED,
        TicketState.SERVING,
        TicketState.NO_SHOW,
        TicketState.PARKED,
    }
)
AT_WINDOW = frozenset({TicketState.CALLED, TicketState.SERVING})
# states a ticket never leaves (for the KPIs: its figures are final)
FINAL_STATES = frozenset({TicketState.DONE, TicketState.CANCELLED, TicketState.VOIDED})
RECENT_SERVICE_TIMES = 20


@dataclass
class Ticket:
    idx: int
    number: str
    service: str
    priority: Priority
    issued_at: float
    seq: int
    state: TicketState = TicketState.WAITING
    window: int | None = None
    directed: int | None = None
    called_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    recalls: int = 0
    rating: int | None = None
    identity: str | None = None
    appointment: str | None = None
    appt_start: float = 0.0
    appt_end: float = 0.0
    offline: bool = False
    source: str = ""
    withdrawn_from: int | None = None  # the window whose call of it was withdrawn
    site: int = 0  # the 办税点 it is called in (Engine.sites): its dispenser's
    # when it reached the coordinator: an offline ticket's issued_at is its print time,
    # the dispenser's word (coordinator.suspension voids what a device sent lately by this)
    arrived_at: float = 0.0

    @property
    def wait_s(self) -> float | None:
        return None if self.called_at is None else self.called_at - self.issued_at

    @property
    def service_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return self.finished_at - (self.started_at or self.called_at or self.finished_at)


@dataclass
class WindowRec:
    number: int
    idx: int
    zone: str
    skills: dict[str, float]
    status: WindowStatus = WindowStatus.OPEN
    current: Ticket | None = None
    last_done: Ticket | None = None
    since: float | None = None
    withdrawn: str | None = None  # its call withdrawn, shown until the window's next command
    closing: bool = False  # closed with someone at the counter: paused, closed once freed


@dataclass(frozen=True)
class Unserved:
    """A queue no open window serves: its service, site, people waiting, and the windows
    of its site that could take them."""

    service: str
    site: int
    waiting: int
    could: list[int]


def no_window_alert(engine: Engine, gap: Unserved) -> m.AlertEvent:
    """无窗口办理, as the desk lists it and the log keeps it."""
    several = len(engine.sites) > 1
    where = f"{engine.sites[gap.site]} " if several else ""
    fix = (
        f", 可恢复或开 {'、'.join(map(str, gap.could[:8]))}号窗口" if gap.could else ", 无窗口可办"
    )
    return m.AlertEvent(
        severity="warning",
        kind="no_window",
        service=gap.service,
        site=engine.sites[gap.site] if several else None,
        message=f"{where}{engine.services[gap.service].name} {gap.waiting} 人等候, "
        f"无开放窗口办理{fix}",
    )


@dataclass
class Outcome:
    """What a command did: the reply, the events to publish, the state that changed."""

    ok: bool
    error: Rejection | None = None
    ticket: Ticket | None = None
    info: m.TicketInfo | None = None
    lease: tuple[int, int] | None = None
    withdrawn: dict[str, Any] | None = None  # a call withdrawn by it (logged with its result)
    events: list[m.Message] = field(default_factory=list)
    windows: set[int] = field(default_factory=set)
    services: set[str] = field(default_factory=set)

    @property
    def board_changed(self) -> bool:
        return bool(self.services) or any(isinstance(e, m.CallEvent) for e in self.events)


# The queueing estimate's range: this share of it below and above (bench/eta.py: it held
# the real call 78-92% of the time on the average, busier and peak days).
QUEUEING_LOW, QUEUEING_HIGH = 0.5, 1.6


def widened(
    p50_min: float,
    *,
    basis: str,
    low: float = QUEUEING_LOW,
    high: float = QUEUEING_HIGH,
    floor_min: float = 0.0,
) -> m.WaitRange:
    """A range around a point estimate, never below ``floor_min``."""
    p50 = max(p50_min, floor_min)
    return m.WaitRange(
        p50_min=round(p50, 1),
        low_min=round(max(p50 * low, floor_min), 1),
        high_min=round(p50 * high, 1),
        basis=basis,  # type: ignore[arg-type]
    )


def reject(code: str, message: str) -> Outcome:
    return Outcome(ok=False, error=Rejection(code=code, message=message))


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


# window actions that take the ticket at the window away from it (see Engine.held)
TAKES_CURRENT = frozenset({"call", "call_ticket", "skip", "finish", "park", "transfer"})


class Engine:
    """One hall's queue state; the single writer of it."""

    def __init__(self, cfg: HallConfig, core_cls: type[Any], *, by_site: bool = True) -> None:
        """``by_site=False``: one hall-wide queue per service whatever the sites (the
        simulator's days, which play services, not lanes)."""
        self.cfg = cfg
        self.tz = cfg.hall.tzinfo
        self.settings = cfg.coordinator
        self.services: dict[str, Service] = {s.code: s for s in cfg.services}
        self.service_idx = {s.code: i for i, s in enumerate(cfg.services)}
        # A queue per service and 办税点 (building): a ticket is called only to a window of
        # the site it was issued in (a taxpayer at the branch was called to the main
        # building's windows). The core's queues are these lanes: service i at site k is
        # lane i * len(sites) + k, so a one-site hall's lanes are its services.
        self.sites = cfg.sites if by_site else cfg.sites[:1]
        self.site_idx = {site: k if by_site else 0 for k, site in enumerate(cfg.sites)}
        self.lanes = {
            code: [i * len(self.sites) + k for k in range(len(self.sites))]
            for code, i in self.service_idx.items()
        }
        self._core_cls = core_cls
        self.windows: dict[int, WindowRec] = {
            w.number: WindowRec(w.number, i, w.zone, dict(w.weights()))
            for i, w in enumerate(cfg.windows)
        }
        self.window_site = {w.number: self.site_idx[cfg.zone(w.zone).site] for w in cfg.windows}
        self.day: dt.date | None = None
        self.day_hooks: list[Callable[[], None]] = []
        # client id -> when a supervisor suspended it (coordinator.suspension): kept
        # across business days, like the windows' status
        self.suspended: dict[str, float] = {}
        # the wait estimator (``coordinator.eta.WaitEstimator``) when one runs: anything
        # with ``estimate(engine, ticket | None, service, now) -> WaitRange | None``
        self.estimator: Any = None
        self._day_second: int | None = None  # the second business_day last worked out
        self._day_of_second = dt.date.min
        self._new_day_state()

    # --- day lifecycle -------------------------------------------------------------------

    def _new_day_state(self) -> None:
        self.core = self._core_cls(len(self.services) * len(self.sites), len(self.windows), 1024)
        self.core.set_boost(self.settings.overdue_boost)
        for code, lanes in self.lanes.items():
            for lane in lanes:
                self.core.set_service(lane, self.services[code].wait_target_min * 60.0)
        for win in self.windows.values():
            self.push_skills(win)
        self.tickets: list[Ticket] = []
        self.by_number: dict[str, Ticket] = {}
        self.counters: Counter[str] = Counter()
        self.issued: Counter[str] = Counter()
        self.leases: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self.lease_floor: dict[str, int] = {}
        self.per_person: Counter[str] = Counter()
        self.recent: dict[str, deque[float]] = {
            code: deque(maxlen=RECENT_SERVICE_TIMES) for code in self.services
        }
        self._means: dict[str, tuple[deque[float], float]] = {}  # (of which deque, its mean)
        self.calls: deque[m.BoardCall] = deque(maxlen=self.settings.board_calls)
        self.appointments: dict[str, tuple[str, float, float]] = {}
        # appointment code -> the ticket its holder checked in with today: one booking, one
        # ticket ahead of the queue (a code scanned again, by its holder or a login in other
        # hands, is refused unless that ticket was voided)
        self.checked_in: dict[str, Ticket] = {}
        self.called_last: dict[str, float] = {}  # service -> its last ticket's call
        self.seq = 0
        self._heaps: dict[str, list[tuple[float, int, int]]] = {}
        self._heaps_for: list[Ticket] | None = None  # the ticket list they index
        # today's KPIs: tickets in a final state folded into running tallies (stats_state)
        self._kpi_for: list[Ticket] | None = None
        self._kpi_final: _Groups
        self._kpi_open: list[int] = []
        self._kpi_seen = 0

    def push_skills(self, win: WindowRec) -> None:
        """Give the core the skills the engine holds for ``win`` (also to undo a simulated
        day's changes)."""
        codes = [c for c in win.skills if c in self.service_idx]
        site = self.window_site[win.number]
        self.core.set_skills(
            win.idx, [self.lanes[c][site] for c in codes], [float(win.skills[c]) for c in codes]
        )

    def serving(self, service: str, site: int | None = None) -> bool:
        """Whether an open window (of ``site``; None: any) serves ``service`` now."""
        return any(
            w.status is WindowStatus.OPEN
            and service in w.skills
            and (site is None or self.window_site[n] == site)
            for n, w in self.windows.items()
        )

    def unserved(self) -> list[Unserved]:
        """The queues with people waiting and no open window of their site serving them
        (all paused or closed): nobody else calls them."""
        out = []
        for code, lanes in self.lanes.items():
            for k, lane in enumerate(lanes):
                waiting = int(self.core.waiting(lane))
                if waiting and not self.serving(code, k):
                    could = [
                        n
                        for n, w in self.windows.items()
                        if code in w.skills and self.window_site[n] == k
                    ]
                    out.append(Unserved(code, k, waiting, could))
        return out

    def waiting(self, service: str, site: int | None = None) -> int:
        """Tickets of ``service`` waiting, at ``site`` (None: at every site)."""
        if site is not None:
            return int(self.core.waiting(self.lanes[service][site]))
        return sum(self.core.waiting(lane) for lane in self.lanes[service])

    def business_day(self, now: float) -> dt.date:
        """The hall's business day at ``now``, worked out once a second (asked for every
        command): days change at a whole minute of a whole-minute UTC offset, so every
        instant of one second is in the same day."""
        second = math.floor(now)
        if second != self._day_second:
            self._day_of_second = self.cfg.hall.business_day(now)
            self._day_second = second
        return self._day_of_second

    def due(self, now: float) -> bool:
        return self.day != self.business_day(now)

    def roll_over(self, now: float) -> tuple[dict[str, Any], Outcome]:
        """Close the day: waiting tickets are closed out or carried over; numbers restart.

        Returns the snapshot the new day starts from (logged, so recovery replays only the
        current day) and the events of the close-out.
        """
        outcome = Outcome(ok=True)
        carried: list[Ticket] = []
        for t in self.tickets:
            if t.state not in OPEN_STATES:
                continue
            if self.settings.carry_over and t.state is TicketState.WAITING:
                carried.append(t)
                continue
            final = TicketState.DONE if t.state in AT_WINDOW else TicketState.CANCELLED
            t.state = final
            outcome.events.append(
                m.TicketEvent(
                    ticket=t.number,
                    service=t.service,
                    state=final,
                    window=t.window,
                    reason="day closed",
                )
            )
        snapshot = {
            "day": self.business_day(now).isoformat(),
            "carried": [self._ticket_snapshot(t) for t in sorted(carried, key=lambda t: t.seq)],
            "windows": {
                str(n): {"status": w.status.value, "skills": w.skills}
                for n, w in self.windows.items()
            },
            "suspended": dict(self.suspended),
        }
        self.start_day(snapshot)
        outcome.windows = set(self.windows)
        outcome.services = set(self.services)
        return snapshot, outcome

    def _ticket_snapshot(self, t: Ticket) -> dict[str, Any]:
        return {
            "number": t.number,
            "service": t.service,
            "priority": t.priority.value,
            "issued_at": t.issued_at,
            "identity": t.identity,
            "appointment": t.appointment,
            "site": self.sites[t.site],
        }

    def start_day(self, snapshot: dict[str, Any]) -> None:
        """Begin a business day from a snapshot made by :meth:`roll_over`."""
        self.day = dt.date.fromisoformat(snapshot["day"])
        self.suspended = {str(c): float(at) for c, at in snapshot.get("suspended", {}).items()}
        for number, state in snapshot.get("windows", {}).items():
            win = self.windows.get(int(number))
            if win is not None:
                win.status = WindowStatus(state["status"])
                win.skills = {c: float(v) for c, v in state["skills"].items() if c in self.services}
                win.current = win.last_done = None
                win.since = None
        self._new_day_state()
        for item in snapshot.get("carried", []):
            if item["service"] not in self.services:
                continue
            t = self._new_ticket(
                item["service"],
                item["number"],
                Priority(item["priority"]),
                item["issued_at"],
                item.get("identity"),
                item.get("appointment"),
            )
            t.site = self.site_idx.get(item.get("site") or "", 0)
            digits = int(t.number[1:])
            self.counters[t.service] = max(self.counters[t.service], digits)
            self._enqueue(t)
        for hook in self.day_hooks:
            hook()

    # --- apply ----------------------------------------------------------------------------

    def apply(self, command: Any, now: float, source: str = "") -> Outcome:
        """Apply one validated command at time ``now`` (epoch seconds)."""
        if isinstance(command, m.IssueRequest):
            return self.issue(command, now, source)
        if isinstance(command, m.LeaseRequest):
            return self.lease(command, source)
        if isinstance(command, m.VoidRequest):
            return self.void(command, source)
        window = self.windows.get(command.window)
        if window is None:
            return reject("unknown_window", f"window {command.window} is not configured")
        handler = getattr(self, f"_do_{command.action}")
        outcome: Outcome = handler(window, command, now)
        if outcome.ok:
            window.withdrawn = None  # seen: the staff acted after it
            outcome.windows.add(window.number)
            self._close_if_freed(window, now, outcome)
        return outcome

    def _close_if_freed(self, win: WindowRec, now: float, out: Outcome) -> None:
        """A window closed while serving closes once its counter is free."""
        if win.closing and win.current is None:
            win.closing = False
            win.status = WindowStatus.CLOSED
            win.since = now
            out.windows.add(win.number)
            out.services |= set(win.skills)

    # --- issuing ----------------------------------------------------------------------------

    def hours_of(self, service: Service) -> list[tuple[dt.time, dt.time]]:
        return service.hours or self.cfg.hall.open_hours

    def lease(self, req: m.LeaseRequest, source: str) -> Outcome:
        """Reserve a block of numbers a dispenser may issue from while it cannot reach us.

        Blocks are taken from the top of the number space (A999 downwards), so the day's
        online numbers run on undisturbed from A001 and never reach a leased one.

        A block is at most the hall's ``edge.lease_size``, and a dispenser holds at most
        two blocks and its low water unused (``edge.lease_cap``): a dispenser asks again only
        when it is down to its low water, and the second block is room for offline
        tickets not replayed yet, or a book lost with its card. Without a bound, anyone
        with one dispenser's password (or a dispenser asking in a loop) reserved a
        service's whole number space in two requests, and nobody could take a ticket for
        it all day (``numbers_exhausted``)."""
        service = self.services.get(req.service)
        if service is None:
            return reject("unknown_service", f"unknown service {req.service!r}")
        edge = self.cfg.edge
        size = min(req.size, edge.lease_size)
        unused = self.unused_leased(source, service)
        cap = edge.lease_cap
        if unused + size > cap:
            return reject(
                "lease_not_needed",
                f"{source} still holds {unused} unused {service.name} numbers (at most "
                f"{cap}): it asks again once it is down to its low water and its offline "
                "tickets are in",
            )
        last = self.lease_floor.get(service.code, 10**service.width) - 1
        first = last - size + 1
        if first <= self.counters[service.code]:
            return reject("numbers_exhausted", f"{service.name} 号码不足以预留 {size} 个")
        self.lease_floor[service.code] = first
        self.leases.setdefault((source, service.code), []).append((first, last))
        return Outcome(ok=True, lease=(first, last))

    def unused_leased(self, source: str, service: Service) -> int:
        """Numbers leased to ``source`` today that no ticket has (one issued offline is
        known once its replay is in)."""
        return sum(
            1
            for first, last in self.leases.get((source, service.code), [])
            for n in range(first, last + 1)
            if f"{service.prefix}{n:0{service.width}d}" not in self.by_number
        )

    def void(self, req: m.VoidRequest, source: str) -> Outcome:
        t = self.by_number.get(req.number)
        if t is None:
            return reject("unknown_ticket", f"今天没有 {req.number} 号")
        if t.source != source:
            return reject("not_your_ticket", f"{req.number} was not issued by {source}")
        if t.state is not TicketState.WAITING:
            return reject("ticket_not_waiting", f"{t.number} 当前状态为 {t.state.value}")
        self.core.remove(t.idx)
        t.state = TicketState.VOIDED
        self._unissue(t)
        out = Outcome(ok=True, ticket=t, services={t.service})
        out.events.append(
            m.TicketEvent(
                ticket=t.number, service=t.service, state=TicketState.VOIDED, reason=req.reason
            )
        )
        return out

    def _unissue(self, t: Ticket) -> None:
        """A voided ticket was in nobody's hands: it takes no place under the service's
        daily cap or its holder's daily limit (a flood voided by a supervisor, a ticket
        that did not print and was pressed for again), nor counts as issued in the KPIs."""
        if self.issued[t.service] > 0:
            self.issued[t.service] -= 1
        if t.identity and self.per_person[t.identity] > 0:
            self.per_person[t.identity] -= 1

    def withdraw(self, number: str, source: str, reason: str, now: float) -> Outcome:
        """Void ``number``, issued by ``source`` for a key press the dispenser then issued
        offline instead (its reply was lost): nobody holds it, whatever became of it since.

        Waiting, it is voided as :meth:`void` does. Already called (the coordinator could
        not know sooner), its call is withdrawn: the window holding it is freed and told
        (``WindowState.withdrawn`` until its next command), the board forgets the call, and
        the ticket keeps no wait, window or counter time for the KPIs (nobody waited for it
        or was served: not a no-show, not served; ``withdrawn_from`` names the window). A
        ticket skipped, parked or finished since is voided the same way (a window pressing
        CALL again finishes the one nobody came for). ``outcome.withdrawn`` says what was
        withdrawn, for the log. Voided or cancelled already: nothing to do."""
        t = self.by_number.get(number)
        if t is None:
            return reject("unknown_ticket", f"今天没有 {number} 号")
        if t.source != source:
            return reject("not_your_ticket", f"{number} was not issued by {source}")
        if t.state in (TicketState.VOIDED, TicketState.CANCELLED):
            return Outcome(ok=True, ticket=t)
        if t.state is TicketState.WAITING:
            return self.void(m.VoidRequest(kind="void", number=number, reason=reason), source)
        was = t.state
        out = Outcome(ok=True, ticket=t, services={t.service})
        window = t.window
        win = self.windows.get(window) if window is not None else None
        if win is not None and win.current is t:  # called or being served: free the window
            win.current = None
            win.since = now
            win.withdrawn = number
            out.windows.add(win.number)
            self._close_if_freed(win, now, out)
        if was is TicketState.DONE and t.finished_at is not None:
            took = t.finished_at - (t.started_at or t.finished_at)
            with contextlib.suppress(ValueError):  # (the very figure _finish appended)
                self.recent[t.service].remove(took)
            self._means.pop(t.service, None)
            self._kpi_for = None  # its figures were folded as final: the KPIs start over
        for w in self.windows.values():
            if w.last_done is t:
                w.last_done = None  # nobody to rate it
        if any(c.ticket == number for c in self.calls):
            self.calls = deque((c for c in self.calls if c.ticket != number), self.calls.maxlen)
        t.state = TicketState.VOIDED
        self._unissue(t)
        t.withdrawn_from = window
        t.window = None
        t.called_at = t.started_at = t.finished_at = None
        t.rating = None
        out.withdrawn = {"ticket": number, "was": was.value, "window": window}
        out.events.append(
            m.TicketEvent(
                ticket=number,
                service=t.service,
                state=TicketState.VOIDED,
                window=window,
                reason=reason,
            )
        )
        return out

    def _check_offline(
        self, service: Service, offline: m.OfflineIssue, source: str
    ) -> Outcome | None:
        number = offline.number
        if number[0] != service.prefix or len(number) != service.width + 1:
            return reject("not_leased", f"{number} is not a {service.name} number")
        n = int(number[1:])
        blocks = self.leases.get((source, service.code), [])
        if not any(first <= n <= last for first, last in blocks):
            return reject("not_leased", f"{number} was not leased to {source} today")
        if number in self.by_number:
            return reject("number_used", f"{number} was already issued")
        return None

    def offline_time(self, offline: m.OfflineIssue, now: float) -> float:
        """An offline ticket's place: its print time, the dispenser's word, held between
        today's opening and its replay's arrival. Outside that it is a clock gone wrong or
        made up (a login in other hands): printed "0001-01-01" it headed its queue, and the
        day's average wait read 16 billion seconds on the hall page and the city's."""
        assert self.day is not None
        opening = dt.datetime.combine(self.day, self.cfg.hall.open_hours[0][0], self.tz)
        return min(max(offline.issued_at.timestamp(), opening.timestamp()), now)

    def issue(self, req: m.IssueRequest, now: float, source: str = "") -> Outcome:
        service = self.services.get(req.service)
        if service is None:
            return reject("unknown_service", f"unknown service {req.service!r}")
        used = self.checked_in.get(req.appointment or "")  # its booking's ticket today
        if used is not None and used.state is TicketState.VOIDED:
            used = None  # (it did not print: its holder scans again)
        if req.offline is not None:
            # Issued and printed already: only the lease decides; hours and caps were the
            # dispenser's to apply when it handed the ticket out.
            if (refused := self._check_offline(service, req.offline, source)) is not None:
                return refused
            number = req.offline.number
            issued_at = self.offline_time(req.offline, now)
        else:
            local = dt.datetime.fromtimestamp(now, self.tz).time()
            hours = self.hours_of(service)
            if not any(start <= local < end for start, end in hours):
                spans = ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in hours)
                return reject("service_closed", f"{service.name} 取号时间 {spans}")
            if service.daily_cap is not None and self.issued[service.code] >= service.daily_cap:
                return reject("daily_cap_reached", f"{service.name} 今日号已取完")
            limit = self.settings.person_daily_limit
            if req.identity and limit is not None and self.per_person[req.identity] >= limit:
                return reject("person_limit_reached", f"每人每天最多取号 {limit} 次")
            if used is not None:
                return reject("appointment_used", f"此预约今日已取号 {used.number}")
            ceiling = self.lease_floor.get(service.code, 10**service.width)
            if self.counters[service.code] + 1 >= ceiling:
                return reject("numbers_exhausted", f"{service.name} 号码已用完")
            self.counters[service.code] += 1
            number = f"{service.prefix}{self.counters[service.code]:0{service.width}d}"
            issued_at = now
        self.issued[service.code] += 1
        priority = Priority.GREEN if service.priority == "green" else req.priority
        # a booking used already: an offline replay (printed: it queues as a normal ticket)
        slot = self.appointments.get(req.appointment or "") if used is None else None
        if slot is not None and slot[0] == service.code and priority is not Priority.GREEN:
            priority = Priority.APPOINTMENT
        elif priority is Priority.APPOINTMENT:
            priority = Priority.NORMAL
        t = self._new_ticket(
            service.code, number, priority, issued_at, req.identity, req.appointment
        )
        if priority is Priority.APPOINTMENT and slot is not None:
            t.appt_start, t.appt_end = slot[1], slot[2]
            self.checked_in[str(req.appointment)] = t
        t.offline = req.offline is not None
        t.source = source
        t.arrived_at = now
        t.site = self.site_idx[self.cfg.site_of_source(source)]
        if req.identity:
            self.per_person[req.identity] += 1
        self._enqueue(t)
        outcome = Outcome(ok=True, ticket=t, services={t.service})
        outcome.info = self.ticket_info(t, now)
        outcome.events.append(
            m.TicketEvent(ticket=number, service=t.service, state=TicketState.WAITING)
        )
        if service.warn_at is not None and self.issued[service.code] == service.warn_at:
            outcome.events.append(
                m.AlertEvent(
                    severity="warning",
                    kind="daily_cap_near",
                    message=f"{service.name} 已发 {service.warn_at} 号, 上限 {service.daily_cap}",
                )
            )
        return outcome

    def _new_ticket(
        self,
        service: str,
        number: str,
        priority: Priority,
        issued_at: float,
        identity: str | None,
        appointment: str | None,
    ) -> Ticket:
        t = Ticket(
            idx=len(self.tickets),
            number=number,
            service=service,
            priority=priority,
            issued_at=issued_at,
            seq=self.seq,
            identity=identity,
            appointment=appointment,
        )
        self.seq += 1
        self.tickets.append(t)
        self.by_number[number] = t
        return t

    def register_appointment(self, code: str, service: str, start: float, end: float) -> None:
        """A booked slot a taxpayer checks in to at the dispenser with ``code``."""
        self.appointments[code] = (service, start, end)

    def _enqueue(self, t: Ticket, *, behind_head: bool = False) -> None:
        t.state = TicketState.WAITING
        cls = CLASS_OF[t.priority]
        if cls == CLASS_OF[Priority.APPOINTMENT] and not t.appt_end:
            cls = CLASS_OF[Priority.NORMAL]
        s = self.lanes[t.service][t.site]
        if t.directed is None:
            heapq.heappush(self._waiting_heaps()[t.service], (t.issued_at, t.seq, t.idx))
        if t.directed is not None:
            self.core.add_directed(t.idx, self.windows[t.directed].idx, s, cls, t.issued_at, t.seq)
        elif behind_head:
            self.core.add_behind_head(t.idx, s, cls, t.issued_at, t.seq)
        else:
            self.core.add(t.idx, s, cls, t.issued_at, t.seq, t.appt_start, t.appt_end)

    # --- estimates --------------------------------------------------------------------------

    def avg_service_s(self, service: str) -> float:
        """The mean of the service's recent counter times: kept until one is added or
        taken back (every window's share asks it of every service, several times a
        command), and only for the deque it was taken of (a restored checkpoint's is
        another)."""
        recent = self.recent[service]
        kept = self._means.get(service)
        if kept is not None and kept[0] is recent:
            return kept[1]
        mean = statistics.fmean(recent) if recent else self.settings.default_service_min * 60
        self._means[service] = (recent, mean)
        return mean

    def serving_windows(self, service: str, site: int | None = None) -> int:
        """Open windows serving ``service`` (at ``site``; None: anywhere)."""
        return sum(
            1
            for n, w in self.windows.items()
            if w.status is WindowStatus.OPEN
            and service in w.skills
            and (site is None or self.window_site[n] == site)
        )

    def window_share(self, service: str) -> float:
        """How many windows' worth of counter time ``service`` gets: each open window
        serving it counts for the part of its queued work that is this service's (a window
        serving three busy services gives each about a third, not all of itself). With
        nothing queued at a window, its services share it equally."""
        work = {c: self.waiting(c) * self.avg_service_s(c) for c in self.service_idx}
        share = 0.0
        for w in self.windows.values():
            if w.status is not WindowStatus.OPEN or service not in w.skills:
                continue
            total = sum(work.get(c, 0.0) for c in w.skills)
            share += work[service] / total if total > 0 else 1.0 / len(w.skills)
        return share

    def eta_min(self, service: str, people_ahead: int) -> float:
        """The queueing estimate: people ahead x mean counter time / the windows' worth
        serving the service (``window_share``). The wait estimator
        (``coordinator.eta``) replaces it where it runs; this is its fallback."""
        if people_ahead <= 0:
            return 0.0
        share = self.window_share(service)
        if share <= 0:
            return 999.0
        return round(min(999.0, people_ahead * self.avg_service_s(service) / share / 60.0), 1)

    def _waiting_heaps(self) -> dict[str, list[tuple[float, int, int]]]:
        """Per service, the tickets that entered its queue, oldest first: (issue time, seq,
        index) in a heap whose stale entries (called, transferred, cancelled since) are
        dropped when they reach the top. Built from the tickets when the list is not the one
        they index (a checkpoint restored, a new day), then kept as tickets are queued."""
        if self._heaps_for is not self.tickets:
            self._heaps = {code: [] for code in self.services}
            for t in self.tickets:
                if t.state is TicketState.WAITING and t.directed is None:
                    self._heaps[t.service].append((t.issued_at, t.seq, t.idx))
            for heap in self._heaps.values():
                heapq.heapify(heap)
            self._heaps_for = self.tickets
        return self._heaps

    def oldest_waiting(self, service: str) -> Ticket | None:
        """The longest-waiting ticket in ``service``'s queue (directed ones excluded), in
        amortised O(log n): what every queue publish needs, without a pass over the day."""
        heap = self._waiting_heaps()[service]
        while heap:
            t = self.tickets[heap[0][2]]
            if t.state is TicketState.WAITING and t.directed is None and t.service == service:
                return t
            heapq.heappop(heap)
        return None

    def oldest_wait_min(self, service: str, now: float, site: int | None = None) -> float:
        """Age of the longest-waiting ticket of ``service`` (at ``site``), 0 when none
        waits. A site's is a pass over the service's queue (the express-window advice's,
        once a minute), not the amortised heap."""
        if site is None:
            t = self.oldest_waiting(service)
            return 0.0 if t is None else max(0.0, now - t.issued_at) / 60.0
        issued = [
            self.tickets[i].issued_at
            for _, _, i in self._waiting_heaps()[service]
            if (t := self.tickets[i]).state is TicketState.WAITING
            and t.directed is None
            and t.service == service
            and t.site == site
        ]
        return max(0.0, now - min(issued)) / 60.0 if issued else 0.0

    def stalled_min(self, service: str, now: float) -> float:
        """How long ``service``'s queue has stood still with someone in it: since its last
        call, or its oldest ticket's issue if later (0 when none waits). Windows that call
        nobody (staff away, a pad broken) are no part of any estimate, and this shows
        them: a ticket issued now waits at least as long again. The oldest ticket's own
        wait would not do: after a stall, or for a ticket transferred in with its first
        issue time, it is history, while the queue moves at the pace estimated."""
        t = self.oldest_waiting(service)
        if t is None:
            return 0.0
        since = max(t.issued_at, self.called_last.get(service, t.issued_at))
        return max(0.0, now - since) / 60.0

    def eta_range(
        self, t: Ticket | None, service: str, now: float, site: int | None = None
    ) -> m.WaitRange:
        """The wait shown for ``t`` (or for a ticket of ``service`` issued now): the wait
        estimator's when one is attached, else the queueing estimate widened by its
        typical error. A ticket issued now never reads less than its queue has stood
        still (``stalled_min``). Where no open window of its site serves it (a break, the
        branch's only windows for it closed), no time is promised: a ticket at the head of
        such a queue read "within 1 min" for 42 minutes (found by a supervisor)."""
        if t is None:
            open_ = self.serving(service, site)
        elif t.state is not TicketState.WAITING:
            open_ = True
        elif t.directed is not None:  # sent to one window: that one
            open_ = self.windows[t.directed].status is WindowStatus.OPEN
        else:
            open_ = self.serving(service, t.site)
        if not open_:
            stood = round(min(999.0, self.stalled_min(service, now)), 1)
            return m.WaitRange(p50_min=stood, low_min=stood, high_min=stood, basis="no_window")
        if self.estimator is not None:
            est: m.WaitRange | None = self.estimator.estimate(self, t, service, now, site)
            if est is not None:
                return est
        if t is None:
            ahead = self.waiting(service, site)
        else:
            ahead = self.core.position(t.idx, now) if self.core.queued(t.idx) else 0
        floor = self.stalled_min(service, now) if t is None else 0.0
        return widened(self.eta_min(service, ahead), basis="queueing", floor_min=floor)

    def ticket_info(self, t: Ticket, now: float) -> m.TicketInfo:
        ahead = self.core.position(t.idx, now) if self.core.queued(t.idx) else 0
        wait = self.eta_range(t, t.service, now)
        return m.TicketInfo(
            number=t.number,
            service=t.service,
            priority=t.priority,
            issued_at=_utc(t.issued_at),
            people_ahead=ahead,
            eta_min=wait.p50_min,
            wait=wait,
        )

    # --- window operations -----------------------------------------------------------------

    def _ready(self, win: WindowRec) -> Outcome | None:
        if win.status is WindowStatus.CLOSED:
            return reject("window_closed", f"{win.number}号窗口已关闭")
        if win.status is WindowStatus.PAUSED:
            return reject("window_paused", f"{win.number}号窗口暂停服务")
        return None

    def _current(self, win: WindowRec) -> Ticket | Outcome:
        if win.current is None:
            return reject("no_current_ticket", f"{win.number}号窗口没有正在办理的号")
        return win.current

    def held(self, command: Any, now: float) -> Outcome | None:
        """Refused if ``command`` would take the ticket at its window away (finish it, skip
        it, call past it, park or transfer it) less than ``call_hold_s`` after its call:
        its holder has had no time to come. Asked for a pad's commands (HallQueue), so a
        pad's login cannot call the queue away in seconds, each call finishing the last;
        a supervisor, and the simulations, are not held."""
        action = getattr(command, "action", None)
        if action not in TAKES_CURRENT:
            return None
        # (only a Transfer has a ticket field: asked of another model, pydantic's
        # __getattr__ raised and caught an AttributeError on every pad command)
        if action == "transfer" and command.ticket is not None:
            return None  # a named ticket, not the one at the window
        win = self.windows.get(command.window)
        t, hold = (win.current if win else None), self.settings.call_hold_s
        if t is None or t.called_at is None or now - t.called_at >= hold:
            return None
        left = math.ceil(hold - (now - t.called_at))
        # (on the pad's 32-column display: "A00001 刚叫号 600秒后再操作" is 27)
        return reject("called_just_now", f"{t.number} 刚叫号 {left}秒后再操作")

    def _ticket(self, number: str) -> Ticket | Outcome:
        t = self.by_number.get(number)
        if t is None:
            return reject("unknown_ticket", f"今天没有 {number} 号")
        return t

    def _finish(
        self, win: WindowRec, t: Ticket, now: float, out: Outcome, rating: int | None = None
    ) -> None:
        t.state = TicketState.DONE
        t.finished_at = now
        t.started_at = t.started_at or t.called_at
        t.rating = rating
        self.recent[t.service].append(now - (t.started_at or now))
        self._means.pop(t.service, None)
        win.current = None
        win.last_done = t
        win.since = now
        out.events.append(
            m.TicketEvent(
                ticket=t.number, service=t.service, state=TicketState.DONE, window=win.number
            )
        )

    def _call(self, win: WindowRec, t: Ticket, now: float, out: Outcome) -> None:
        t.state = TicketState.CALLED
        t.window = win.number
        t.directed = None
        t.called_at = now
        self.called_last[t.service] = now
        t.started_at = None  # a transferred ticket's start belongs to its first window
        t.recalls = 0
        win.current = t
        win.since = now
        call = m.CallEvent(ticket=t.number, service=t.service, window=win.number, zone=win.zone)
        self.calls.appendleft(
            m.BoardCall(ticket=t.number, window=win.number, zone=win.zone, called_at=_utc(now))
        )
        out.ticket = t
        out.services.add(t.service)
        out.events += [
            call,
            m.TicketEvent(
                ticket=t.number, service=t.service, state=TicketState.CALLED, window=win.number
            ),
        ]

    def _do_call(self, win: WindowRec, cmd: m.WindowAction, now: float) -> Outcome:
        if (blocked := self._ready(win)) is not None:
            return blocked
        idx = self.core.peek_next(win.idx, now)
        if idx < 0:
            return reject("no_one_waiting", "没有等候的号")
        out = Outcome(ok=True)
        if win.current is not None:
            self._finish(win, win.current, now, out)
        self.core.call_next(win.idx, now)
        self._call(win, self.tickets[idx], now, out)
        return out

    def _do_call_ticket(self, win: WindowRec, cmd: m.TicketAction, now: float) -> Outcome:
        if (blocked := self._ready(win)) is not None:
            return blocked
        t = self._ticket(cmd.ticket)
        if isinstance(t, Outcome):
            return t
        if t.state not in (TicketState.WAITING, TicketState.NO_SHOW, TicketState.PARKED):
            return reject("ticket_not_waiting", f"{t.number} 当前状态为 {t.state.value}")
        out = Outcome(ok=True)
        if win.current is not None:
            self._finish(win, win.current, now, out)
        self.core.remove(t.idx)
        self._call(win, t, now, out)
        return out

    _do_unpark = _do_call_ticket

    def _do_recall(self, win: WindowRec, cmd: m.WindowAction, now: float) -> Outcome:
        t = self._current(win)
        if isinstance(t, Outcome):
            return t
        if t.recalls >= self.settings.max_recalls:
            return reject("recall_limit", f"{t.number} 已重呼 {t.recalls} 次")
        t.recalls += 1
        out = Outcome(ok=True, ticket=t)
        out.events.append(
            m.CallEvent(
                ticket=t.number,
                service=t.service,
                window=win.number,
                zone=win.zone,
                recall=t.recalls,
            )
        )
        self.calls.appendleft(
            m.BoardCall(ticket=t.number, window=win.number, zone=win.zone, called_at=_utc(now))
        )
        return out

    def _do_skip(self, win: WindowRec, cmd: m.WindowAction, now: float) -> Outcome:
        t = self._current(win)
        if isinstance(t, Outcome):
            return t
        if t.state is not TicketState.CALLED:
            return reject("ticket_not_called", f"{t.number} 已在办理, 不能过号")
        t.state = TicketState.NO_SHOW
        win.current = None
        win.since = now
        out = Outcome(ok=True, ticket=t)
        out.events.append(
            m.TicketEvent(
                ticket=t.number, service=t.service, state=TicketState.NO_SHOW, window=win.number
            )
        )
        return out

    def _do_reinstate(self, win: WindowRec, cmd: m.TicketAction, now: float) -> Outcome:
        t = self._ticket(cmd.ticket)
        if isinstance(t, Outcome):
            return t
        if t.state is not TicketState.NO_SHOW:
            return reject("ticket_not_skipped", f"{t.number} 不是过号状态")
        self._enqueue(t, behind_head=True)
        out = Outcome(ok=True, ticket=t, services={t.service})
        out.events.append(
            m.TicketEvent(
                ticket=t.number, service=t.service, state=TicketState.WAITING, reason="reinstated"
            )
        )
        return out

    def _do_start(self, win: WindowRec, cmd: m.WindowAction, now: float) -> Outcome:
        t = self._current(win)
        if isinstance(t, Outcome):
            return t
        if t.state is not TicketState.CALLED:
            return reject("ticket_not_called", f"{t.number} 已在办理")
        t.state = TicketState.SERVING
        t.started_at = now
        out = Outcome(ok=True, ticket=t)
        out.events.append(
            m.TicketEvent(
                ticket=t.number, service=t.service, state=TicketState.SERVING, window=win.number
            )
        )
        return out

    def _do_finish(self, win: WindowRec, cmd: m.Finish, now: float) -> Outcome:
        t = self._current(win)
        if isinstance(t, Outcome):
            return t
        out = Outcome(ok=True, ticket=t)
        self._finish(win, t, now, out, cmd.rating)
        return out

    def _do_rate(self, win: WindowRec, cmd: m.Rate, now: float) -> Outcome:
        t = win.last_done
        if t is None or t.number != cmd.ticket:
            return reject("not_served_here", f"{cmd.ticket} 不是本窗口刚办完的号")
        t.rating = cmd.rating
        return Outcome(ok=True, ticket=t)

    def _do_transfer(self, win: WindowRec, cmd: m.Transfer, now: float) -> Outcome:
        t = self._ticket(cmd.ticket) if cmd.ticket else self._current(win)
        if isinstance(t, Outcome):
            return t
        if t.state not in (TicketState.WAITING, *AT_WINDOW):
            return reject("ticket_finished", f"{t.number} 当前状态为 {t.state.value}, 不能转移")
        if t.state in AT_WINDOW and t.window != win.number:
            return reject("not_your_ticket", f"{t.number} 正在 {t.window}号窗口办理")
        if cmd.to_service is not None and cmd.to_service not in self.services:
            return reject("unknown_service", f"unknown service {cmd.to_service!r}")
        if cmd.to_window is not None and cmd.to_window not in self.windows:
            return reject("unknown_window", f"window {cmd.to_window} is not configured")
        if cmd.to_window is not None and self.windows[cmd.to_window].status is WindowStatus.CLOSED:
            # nobody calls there today: its holder read "next, within 1 min" for good
            return reject("window_closed", f"{cmd.to_window}号窗口已关闭, 不能转入")
        out = Outcome(ok=True, ticket=t, services={t.service})
        if t.state in AT_WINDOW:
            win.current = None
            win.since = now
        else:
            self.core.remove(t.idx)
        if cmd.to_service is not None:
            t.service = cmd.to_service
            t.directed = None
            target = f"to {cmd.to_service}"
        else:
            assert cmd.to_window is not None  # (m.Transfer names one or the other)
            t.directed = cmd.to_window
            t.site = self.window_site[cmd.to_window]  # (its holder walks there)
            target = f"to window {cmd.to_window}"
            out.windows.add(cmd.to_window)
        t.window = None
        self._enqueue(t)
        out.services.add(t.service)
        out.events.append(
            m.TicketEvent(
                ticket=t.number,
                service=t.service,
                state=TicketState.TRANSFERRED,
                window=win.number,
                reason=target,
            )
        )
        return out

    def _do_cancel(self, win: WindowRec, cmd: m.TicketAction, now: float) -> Outcome:
        t = self._ticket(cmd.ticket)
        if isinstance(t, Outcome):
            return t
        if t.state not in (TicketState.WAITING, TicketState.NO_SHOW, TicketState.PARKED):
            return reject("ticket_not_waiting", f"{t.number} 当前状态为 {t.state.value}")
        self.core.remove(t.idx)
        t.state = TicketState.CANCELLED
        out = Outcome(ok=True, ticket=t, services={t.service})
        out.events.append(
            m.TicketEvent(ticket=t.number, service=t.service, state=TicketState.CANCELLED)
        )
        return out

    def _do_park(self, win: WindowRec, cmd: m.WindowAction, now: float) -> Outcome:
        t = self._current(win)
        if isinstance(t, Outcome):
            return t
        t.state = TicketState.PARKED
        win.current = None
        win.since = now
        out = Outcome(ok=True, ticket=t)
        out.events.append(
            m.TicketEvent(
                ticket=t.number, service=t.service, state=TicketState.PARKED, window=win.number
            )
        )
        return out

    def _set_status(self, win: WindowRec, status: WindowStatus, now: float) -> Outcome:
        # closed at the end of a shift with someone at the counter: they are served first
        # (the desk refused it, and the supervisor had to pause, wait and come back)
        win.closing = status is WindowStatus.CLOSED and win.current is not None
        win.status = WindowStatus.PAUSED if win.closing else status
        win.since = now
        return Outcome(ok=True, services={c for c in win.skills})

    def _do_pause(self, win: WindowRec, cmd: m.WindowAction, now: float) -> Outcome:
        return self._set_status(win, WindowStatus.PAUSED, now)

    def _do_resume(self, win: WindowRec, cmd: m.WindowAction, now: float) -> Outcome:
        return self._set_status(win, WindowStatus.OPEN, now)

    _do_open = _do_resume

    def _do_close(self, win: WindowRec, cmd: m.WindowAction, now: float) -> Outcome:
        return self._set_status(win, WindowStatus.CLOSED, now)

    def _do_emergency(self, win: WindowRec, cmd: m.WindowAction, now: float) -> Outcome:
        out = Outcome(ok=True)
        out.events.append(
            m.AlertEvent(
                severity="critical",
                kind="emergency",
                window=win.number,
                message=f"{win.number}号窗口紧急呼叫",
            )
        )
        return out

    def _do_set_skills(self, win: WindowRec, cmd: m.SetSkills, now: float) -> Outcome:
        unknown = sorted(set(cmd.skills) - set(self.services))
        if unknown:
            return reject("unknown_service", f"unknown service(s): {', '.join(unknown)}")
        before = set(win.skills)
        win.skills = dict(cmd.skills)
        self.push_skills(win)
        return Outcome(ok=True, services=before | set(win.skills))

    # --- views for publishing ---------------------------------------------------------------

    def waiting_in_queues(self) -> list[Ticket]:
        """Every ticket waiting in a service's queue (none directed to a window), in issue
        order, read off the queues' heaps: the waiting, not the day."""
        found: dict[int, Ticket] = {}  # a ticket queued again may be in twice
        for code, heap in self._waiting_heaps().items():
            live = []
            for entry in heap:
                t = self.tickets[entry[2]]
                if t.state is TicketState.WAITING and t.directed is None and t.service == code:
                    live.append(entry)
                    found[t.idx] = t
            if len(heap) > 2 * len(live) + 64:  # mostly stale: this pass paid for keeping
                heap[:] = live  # only the live (a call off the top pops; others stay)
                heapq.heapify(heap)
        return sorted(found.values(), key=lambda t: (t.issued_at, t.seq))

    def window_state(self, number: int, rev: int) -> m.WindowState:
        w = self.windows[number]
        t = w.current
        return m.WindowState(
            rev=rev,
            window=number,
            zone=w.zone,
            status=w.status,
            ticket=t.number if t else None,
            service=t.service if t else None,
            since=_utc(w.since) if w.since is not None else None,
            skills=w.skills,
            withdrawn=w.withdrawn,
            closing=w.closing,
        )

    def queue_state(self, service: str, rev: int, now: float) -> m.QueueState:
        ordered = [
            self.tickets[i]
            for lane in self.lanes[service]
            for i in self.core.upcoming(lane, now, 20)
        ][:20]
        first = self.oldest_waiting(service)
        oldest = first.issued_at if first is not None else None
        wait = self.eta_range(None, service, now)
        return m.QueueState(
            rev=rev,
            service=service,
            waiting=self.waiting(service),
            next=[t.number for t in ordered],
            eta_min=wait.p50_min,
            wait=wait,
            oldest_wait_s=max(0.0, now - oldest) if oldest is not None else None,
        )

    def board_state(self, rev: int) -> m.BoardState:
        waiting = {code: self.waiting(code) for code in self.service_idx}
        by_site = (
            {
                site: {code: self.core.waiting(lanes[k]) for code, lanes in self.lanes.items()}
                for k, site in enumerate(self.sites)
            }
            if len(self.sites) > 1
            else {}
        )
        return m.BoardState(rev=rev, calls=list(self.calls), waiting=waiting, site_waiting=by_site)

    def stats_state(self, rev: int, now: float | None = None) -> m.StatsState:
        """Today's KPIs (the coordinator publishes this every second while anything
        changes). A ticket that reached a final state (done, cancelled, voided) never
        changes its figures again: it is folded once into running tallies, and only the
        open tickets are gone over each time, so the cost follows the queues, not the day.
        Before the first ticket, "today" is the hall's business day, not the machine's
        calendar date (a UTC Pi at 00:30 in Beijing...)."""
        day = self.day or self.business_day(time.time() if now is None else now)
        self._fold_final()
        total, by_service, by_window = (
            _Tally(),
            {code: _Tally() for code in self.services},
            {n: _Tally() for n in self.windows},
        )
        for i in self._kpi_open:
            _count(self.tickets[i], total, by_service, by_window)
        final_total, final_service, final_window = self._kpi_final
        return m.StatsState(
            rev=rev,
            day=day,
            total=final_total.kpi(total),
            per_service={code: final_service[code].kpi(k) for code, k in by_service.items()},
            per_window={str(n): final_window[n].kpi(k) for n, k in by_window.items()},
        )

    def called_and_no_shows(self) -> tuple[int, int]:
        """How many of today's tickets were called, and how many of those did not come (the
        wait estimates' no-show rate), off the running tallies: the open tickets, not the
        day."""
        self._fold_final()
        final = self._kpi_final[0]
        called, no_shows = len(final.waits), final.no_show
        for i in self._kpi_open:
            t = self.tickets[i]
            called += t.called_at is not None
            no_shows += t.state is TicketState.NO_SHOW
        return called, no_shows

    def _fold_final(self) -> None:
        """Each ticket that reached a final state is folded into the running tallies once;
        the open ones stay listed in ``_kpi_open``."""
        if self._kpi_for is not self.tickets:  # a new day, or a restored checkpoint
            self._kpi_for = self.tickets
            self._kpi_final = (
                _Tally(keep_sorted=True),
                {code: _Tally(keep_sorted=True) for code in self.services},
                {n: _Tally(keep_sorted=True) for n in self.windows},
            )
            self._kpi_open, self._kpi_seen = [], 0
        self._kpi_open.extend(range(self._kpi_seen, len(self.tickets)))
        self._kpi_seen = len(self.tickets)
        still_open = []
        for i in self._kpi_open:
            t = self.tickets[i]
            if t.state in FINAL_STATES:
                _count(t, *self._kpi_final)
            else:
                still_open.append(i)
        self._kpi_open = still_open


def _count(
    t: Ticket, total: _Tally, by_service: dict[str, _Tally], by_window: dict[int, _Tally]
) -> None:
    """Add one ticket to a group of tallies: the hall's, its service's, its window's."""
    if t.state is TicketState.VOIDED:
        return  # nobody held it (Engine._unissue)
    if t.called_at is None and t.finished_at is None and t.state is TicketState.WAITING:
        total.issued += 1  # most open tickets: waiting, never called
        if (kpi := by_service.get(t.service)) is not None:
            kpi.issued += 1
        if t.window is not None and (kpi := by_window.get(t.window)) is not None:
            kpi.issued += 1
        return
    wait = None if t.called_at is None else t.called_at - t.issued_at
    took = (
        None
        if t.finished_at is None
        else t.finished_at - (t.started_at or t.called_at or t.finished_at)
    )
    total.add(t.state, wait, took)
    if (kpi := by_service.get(t.service)) is not None:
        kpi.add(t.state, wait, took)
    if t.window is not None and (kpi := by_window.get(t.window)) is not None:
        kpi.add(t.state, wait, took)


_Groups = tuple["_Tally", dict[str, "_Tally"], dict[int, "_Tally"]]  # all, by service, by window


class _Tally:
    """One group's tickets as the KPIs need them: counts, waits, counter times. A running
    tally (``keep_sorted``) keeps its waits summed as they come and sorted by the time a KPI
    is asked, so a KPI of it with the few open tickets added costs the open tickets, not
    the day. They are sorted then, all that came since at once: list.sort merges them into
    the sorted run in one pass, where an insort each moved half the day's list (a burst's
    second of finished tickets took 22 ms at ~35,000 tickets, growing with the day)."""

    __slots__ = (
        "issued",
        "keep_sorted",
        "no_show",
        "served",
        "sorted_upto",
        "took",
        "took_sum",
        "wait_sum",
        "waits",
    )

    def __init__(self, *, keep_sorted: bool = False) -> None:
        self.issued = self.served = self.no_show = 0
        self.keep_sorted = keep_sorted
        self.waits: list[float] = []
        self.sorted_upto = 0  # waits[:sorted_upto] are in order
        self.wait_sum = 0.0
        self.took = 0
        self.took_sum = 0.0

    def add(self, state: TicketState, wait: float | None, took: float | None) -> None:
        self.issued += 1
        if state is TicketState.DONE:
            self.served += 1
        elif state is TicketState.NO_SHOW:
            self.no_show += 1
        if wait is not None:
            self.waits.append(wait)
            self.wait_sum += wait
        if took is not None:
            self.took += 1
            self.took_sum += took

    def kpi(self, more: _Tally) -> m.Kpi:
        """The KPIs of this (running) group with ``more``, the same group's open tickets."""
        if self.keep_sorted and self.sorted_upto < len(self.waits):
            self.waits.sort()
            self.sorted_upto = len(self.waits)
        extra = sorted(more.waits)
        n = len(self.waits) + len(extra)
        took, took_sum = self.took + more.took, self.took_sum + more.took_sum
        return m.Kpi(
            issued=self.issued + more.issued,
            served=self.served + more.served,
            no_show=self.no_show + more.no_show,
            avg_wait_s=round((self.wait_sum + more.wait_sum) / n, 1) if n else None,
            p90_wait_s=round(_kth(self.waits, extra, min(n - 1, int(0.9 * n))), 1) if n else None,
            avg_service_s=round(took_sum / took, 1) if took else None,
        )


def _kth(a: list[float], b: list[float], k: int) -> float:
    """The ``k``-th smallest (from 0) of two sorted lists together, without merging them:
    ``b`` (open tickets) is short and ``a`` (the day) long, so the split is looked for
    over ``b``."""
    take = k + 1
    for j in range(max(0, take - len(a)), min(len(b), take) + 1):
        i = take - j  # i from a and j from b are the first k + 1
        if (j == 0 or i == len(a) or b[j - 1] <= a[i]) and (
            i == 0 or j == len(b) or a[i - 1] <= b[j]
        ):
            return max(a[i - 1] if i else -math.inf, b[j - 1] if j else -math.inf)
    raise AssertionError("unreachable: some split of two sorted lists is ordered")
