"""Appointments (双向预约): taxpayers book a slot, supervisors invite on a taxpayer's behalf.

Bookings live in their own SQLite file next to the event log (the log stays a log of
commands) and are registered into the engine for the business day they fall on, so a
dispenser check-in with the code gets the appointment priority. A booking whose slot ended
without a ticket issued under its code is a no-show and no longer takes capacity.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.forecast.hall_calendar import Calendar
from coordinator.web import models as api
from hallq.config import HallConfig

OPEN_WEEKDAYS = range(5)   # Monday to Friday, unless the hall calendar says otherwise
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


class BookingError(ValueError):
    """A booking refused; ``code`` is stable for clients, the message is for people."""

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
                out.append(Slot(start.timestamp(), end.timestamp(),
                                f"{start:%H:%M}-{end:%H:%M}"))
                start = end
        return out

    def bookable_days(self, now: float) -> list[dt.date]:
        """The open days among the next ``appointment_days``: not a holiday of the hall
        calendar, and a weekday or a 调休 working day."""
        today = self.cfg.hall.business_day(now)
        days = (today + dt.timedelta(days=i) for i in range(self.cfg.coordinator.appointment_days))
        return [d for d in days if self.calendar.is_open(d, OPEN_WEEKDAYS)]

    # --- bookings ----------------------------------------------------------------------

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Booking]:
        return [Booking(*row) for row in self._db.execute(
            "SELECT code, service, day, start, end, booked_at, booked_by, note "
            "FROM appointments " + sql, args)]

    def get(self, code: str) -> Booking | None:
        found = self._rows("WHERE code = ?", (code,))
        return found[0] if found else None

    def on_day(self, day: dt.date) -> list[Booking]:
        return self._rows("WHERE day = ? ORDER BY start, booked_at", (day.isoformat(),))

    def in_slot(self, service: str, start: float) -> list[Booking]:
        return self._rows("WHERE service = ? AND start = ?", (service, start))

    def taken(self, service: str, slot: Slot, now: float, checked_in: set[str]) -> int:
        """Bookings that still hold a place: a no-show's place is given back."""
        return sum(1 for b in self.in_slot(service, slot.start)
                   if not (slot.end <= now and b.code not in checked_in))

    def book(self, service: str, day: dt.date, start: float, now: float,
             checked_in: set[str], *, booked_by: str = "taxpayer",
             note: str | None = None) -> Booking:
        if day not in self.bookable_days(now):
            if not self.calendar.is_open(day, OPEN_WEEKDAYS):
                raise BookingError("hall_closed",
                                   f"{day} {WEEKDAYS_ZH[day.weekday()]} 办税服务厅不办公")
            raise BookingError("day_not_bookable", f"{day} 不在可预约的日期内")
        slot = next((s for s in self.slots(service, day) if s.start == start), None)
        if slot is None:
            raise BookingError("unknown_slot", "没有这个预约时段")
        if slot.end <= now:
            raise BookingError("slot_past", f"{slot.label} 时段已过")
        capacity = self.cfg.coordinator.appointment_capacity
        # the check and the insert in one transaction: two bookers never share the last place
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self.taken(service, slot, now, checked_in) >= capacity:
                raise BookingError("slot_full", f"{slot.label} 时段已约满")
            code = self._new_code()
            self._db.execute(
                "INSERT INTO appointments (code, service, day, start, end, booked_at, "
                "booked_by, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (code, service, day.isoformat(), slot.start, slot.end, now, booked_by, note))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        booking = self.get(code)
        assert booking is not None
        return booking

    def _new_code(self) -> str:
        while True:
            code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LEN))
            if self.get(code) is None:
                return code


def booking_json(b: Booking, cfg: HallConfig, now: float, checked_in: set[str]) -> api.Booking:
    tz = cfg.hall.tzinfo
    start = dt.datetime.fromtimestamp(b.start, tz)
    end = dt.datetime.fromtimestamp(b.end, tz)
    state: api.BookingState
    if b.code in checked_in:
        state = "checked_in"
    elif b.end <= now:
        state = "no_show"
    else:
        state = "booked"
    return api.Booking(code=b.code, service=b.service, day=b.day, start=start.isoformat(),
                       end=end.isoformat(), slot=f"{start:%H:%M}-{end:%H:%M}", state=state,
                       booked_by=b.booked_by)
