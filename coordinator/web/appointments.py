"""Appointments (双向预约): taxpayers book a slot, supervisors invite on a taxpayer's behalf.

Bookings live in their own SQLite file next to the event log (the log stays a log of
commands) and are registered into the engine for the business day they fall on, so a
dispenser check-in with the code gets the appointment priority. A booking whose slot ended
without a ticket issued under its code is a no-show and no longer takes capacity.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.forecast.hall_calendar import Calendar
from hallq.config import HallConfig

if TYPE_CHECKING:  # the API's models load with the web server, after the first reply
    from coordinator.web import models as api

OPEN_WEEKDAYS = range(5)  # Monday to Friday, unless the hall calendar says otherwise
WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")

# no 0/O, 1/I: the code is read out and typed in at the dispenser
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LEN = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS appointments (
    code TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    day TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    booked_at REAL NOT NULL,
    booked_by TEXT NOT NULL DEFAULT 'taxpayer',
    note TEXT
);
CREATE INDEX IF NOT EXISTS appointments_slot ON appointments (service, start);
"""
# added for real-name booking; a book from before gains them empty (its bookings anonymous)
_COLUMNS = {"person": "TEXT", "cancelled_at": "REAL"}
_LIVE = "cancelled_at IS NULL"


class BookingError(ValueError):
    """A booking refused; ``code`` is stable for clients, the message is for people:
    Chinese, then English on a second line (the public pages' language policy)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Booking:
    code: str
    service: str
    day: str
    start: float
    end: float
    booked_at: float
    booked_by: str
    note: str | None
    person: str | None = None  # keyed hash of the ID or phone number, never the number
    cancelled_at: float | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    start: float
    end: float
    label: str


def default_book_path(log_path: Path) -> Path:
    return log_path.with_name(f"{log_path.stem}-appointments.sqlite")


class AppointmentBook:
    def __init__(self, path: Path, cfg: HallConfig) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.cfg = cfg
        self.calendar = Calendar.of(cfg)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(appointments)")}
        for name, kind in _COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE appointments ADD COLUMN {name} {kind}")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS appointments_person ON appointments (person, day)"
        )

    def close(self) -> None:
        self._db.close()

    # --- slots -------------------------------------------------------------------------

    def slots(self, service: str, day: dt.date) -> list[Slot]:
        """The day's bookable slots: whole slot lengths inside the service's hours."""
        svc = next((s for s in self.cfg.services if s.code == service), None)
        if svc is None:
            raise BookingError("unknown_service", f"unknown service {service!r}")
        length = dt.timedelta(minutes=self.cfg.coordinator.appointment_slot_min)
        tz = self.cfg.hall.tzinfo
        out: list[Slot] = []
        for opens, closes in svc.hours or self.cfg.hall.open_hours:
            start = dt.datetime.combine(day, opens, tz)
            end_of = dt.datetime.combine(day, closes, tz)
            while start + length <= end_of:
                end = start + length
                out.append(Slot(start.timestamp(), end.timestamp(), f"{start:%H:%M}-{end:%H:%M}"))
                start = end
        return out

    def bookable_days(self, now: float) -> list[dt.date]:
        """The open days among the next ``appointment_days``: not a holiday of the hall
        calendar, and a weekday or a 调休 working day."""
        today = self.cfg.hall.business_day(now)
        days = (today + dt.timedelta(days=i) for i in range(self.cfg.coordinator.appointment_days))
        return [d for d in days if self.refusal(d) is None]

    def refusal(self, day: dt.date) -> BookingError | None:
        """Why ``day`` cannot be booked whatever the slot, or None. A hall that keeps a
        calendar but has not entered ``day``'s year cannot say whether it is a holiday,
        so that year is not bookable until it is entered."""
        weekday = WEEKDAYS_ZH[day.weekday()]
        if not self.calendar.is_open(day, OPEN_WEEKDAYS):
            return BookingError(
                "hall_closed", f"{day} {weekday} 办税服务厅不办公\nThe hall is closed that day"
            )
        if self.calendar and self.calendar.uncovered_years(day, day):
            return BookingError(
                "calendar_missing",
                f"{day.year} 年的节假日安排尚未公布, 暂不能预约\n"
                f"The hall's {day.year} calendar is not published yet",
            )
        return None

    def slot_at(self, service: str, day: dt.date, hhmm: str) -> Slot:
        """The slot starting at ``hh:mm``; a time outside the service's hours is refused
        with those hours, one inside them but off the slot grid as unknown."""
        found = self.slots(service, day)
        slot = next((s for s in found if s.label[:5] == hhmm), None)
        if slot is not None:
            return slot
        svc = next(s for s in self.cfg.services if s.code == service)
        hours = "、".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in svc.hours or self.cfg.hall.open_hours)
        inside = any(s.label[:5] <= hhmm < s.label[6:] for s in found)
        if not inside:
            raise BookingError(
                "outside_hours",
                f"{svc.name} 的预约时间为 {hours}, 所选时间不在其内\n"
                f"Bookings for this service: {hours}",
            )
        raise BookingError("unknown_slot", "没有这个预约时段\nNo such slot")

    # --- bookings ----------------------------------------------------------------------

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Booking]:
        return [
            Booking(*row)
            for row in self._db.execute(
                "SELECT code, service, day, start, end, booked_at, booked_by, note, person, "
                "cancelled_at FROM appointments " + sql,
                args,
            )
        ]

    def get(self, code: str) -> Booking | None:
        found = self._rows("WHERE code = ?", (code,))
        return found[0] if found else None

    def on_day(self, day: dt.date) -> list[Booking]:
        return self._rows(
            f"WHERE day = ? AND {_LIVE} ORDER BY start, booked_at", (day.isoformat(),)
        )

    def in_slot(self, service: str, start: float) -> list[Booking]:
        return self._rows(f"WHERE service = ? AND start = ? AND {_LIVE}", (service, start))

    def by_person(self, person: str, service: str, day: str) -> list[Booking]:
        return self._rows(
            f"WHERE person = ? AND service = ? AND day = ? AND {_LIVE}", (person, service, day)
        )

    def noted(self, note: str, since: dt.date) -> list[Booking]:
        """Bookings carrying ``note`` from ``since`` on, cancelled ones too (the desk's
        invitations and what came of them)."""
        return self._rows(
            "WHERE note = ? AND day >= ? ORDER BY day, start", (note, since.isoformat())
        )

    def taken(self, service: str, slot: Slot, now: float, checked_in: set[str]) -> int:
        """Bookings that still hold a place: a no-show's place is given back."""
        return sum(
            1
            for b in self.in_slot(service, slot.start)
            if not (slot.end <= now and b.code not in checked_in)
        )

    def book(
        self,
        service: str,
        day: dt.date,
        start: float,
        now: float,
        checked_in: set[str],
        *,
        booked_by: str = "taxpayer",
        note: str | None = None,
        person: str | None = None,
    ) -> Booking:
        """``person`` is the keyed hash of the booker's ID or phone number: at most
        ``appointment_per_person_day`` bookings of one service a day each."""
        refused = self.refusal(day)
        if refused is not None:
            raise refused
        if day not in self.bookable_days(now):
            raise BookingError(
                "day_not_bookable", f"{day} 不在可预约的日期内\nThat day cannot be booked"
            )
        slot = next((s for s in self.slots(service, day) if s.start == start), None)
        if slot is None:
            raise BookingError("unknown_slot", "没有这个预约时段\nNo such slot")
        if slot.end <= now:
            raise BookingError("slot_past", f"{slot.label} 时段已过\nThat slot is over")
        capacity = self.cfg.coordinator.appointment_capacity
        limit = self.cfg.coordinator.appointment_per_person_day
        # the checks and the insert in one transaction: two bookers never share the last
        # place, one person's two tabs never both get under the limit
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if (
                person is not None
                and len(self.by_person(person, service, day.isoformat())) >= limit
            ):
                raise BookingError(
                    "person_limit",
                    f"每人每天每项业务限约 {limit} 次\nAt most {limit} per person, service and day",
                )
            if self.taken(service, slot, now, checked_in) >= capacity:
                raise BookingError("slot_full", f"{slot.label} 时段已约满\nThat slot is full")
            code = self._new_code()
            self._db.execute(
                "INSERT INTO appointments (code, service, day, start, end, booked_at, "
                "booked_by, note, person) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    code,
                    service,
                    day.isoformat(),
                    slot.start,
                    slot.end,
                    now,
                    booked_by,
                    note,
                    person,
                ),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        booking = self.get(code)
        assert booking is not None
        return booking

    def cancel(self, code: str, person: str, now: float, checked_in: set[str]) -> Booking:
        """Cancel with the same ID or phone as booked with; a checked-in or finished booking
        stays (replay would otherwise give its ticket a different priority)."""
        found = self.get(code)
        # a wrong proof and an unknown code answer alike: the code cannot be probed
        if (
            found is None
            or found.cancelled_at is not None
            or found.person is None
            or (not hmac.compare_digest(found.person, person))
        ):
            raise BookingError(
                "unknown_appointment",
                "预约码或证件号/手机号不符\nCode and ID or phone do not match",
            )
        if found.code in checked_in:
            raise BookingError("checked_in", "已取号, 不能取消\nAlready checked in")
        if found.end <= now:
            raise BookingError("slot_past", "预约时段已过\nThat slot is over")
        self._db.execute(
            "UPDATE appointments SET cancelled_at = ? WHERE code = ?", (now, found.code)
        )
        cancelled = self.get(found.code)
        assert cancelled is not None
        return cancelled

    def _new_code(self) -> str:
        while True:
            code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LEN))
            if self.get(code) is None:
                return code


class AddressLimiter:
    """Booking attempts per client address in a sliding hour: one client (a script, a
    scalper) cannot fill slots by trying many IDs or phones. Memory is bounded by pruning
    addresses whose attempts have all aged out."""

    WINDOW_S = 3600.0

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._seen: dict[str, deque[float]] = {}

    def take(self, address: str, now: float) -> None:
        if len(self._seen) > 10_000:
            self._seen = {a: q for a, q in self._seen.items() if q and q[-1] > now - self.WINDOW_S}
        attempts = self._seen.setdefault(address, deque())
        while attempts and attempts[0] <= now - self.WINDOW_S:
            attempts.popleft()
        if len(attempts) >= self.per_hour:
            wait = int(attempts[0] + self.WINDOW_S - now) // 60 + 1
            raise BookingError(
                "rate_limited",
                f"操作过于频繁, 请 {wait} 分钟后再试\nToo many attempts, try again in {wait} min",
            )
        attempts.append(now)


def booking_json(b: Booking, cfg: HallConfig, now: float, checked_in: set[str]) -> api.Booking:
    from coordinator.web import models as api

    tz = cfg.hall.tzinfo
    start = dt.datetime.fromtimestamp(b.start, tz)
    end = dt.datetime.fromtimestamp(b.end, tz)
    state: api.BookingState
    if b.cancelled_at is not None:
        state = "cancelled"
    elif b.code in checked_in:
        state = "checked_in"
    elif b.end <= now:
        state = "no_show"
    else:
        state = "booked"
    return api.Booking(
        code=b.code,
        service=b.service,
        day=b.day,
        start=start.isoformat(),
        end=end.isoformat(),
        slot=f"{start:%H:%M}-{end:%H:%M}",
        state=state,
        booked_by=b.booked_by,
    )
