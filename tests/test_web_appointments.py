"""Appointments: booking, capacity, invitations, check-in, no-shows, restarts."""

from __future__ import annotations

import datetime as dt
import io
import itertools
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import segno

from hallq import messages as m
from hallq.id_number import hash_id_number, hash_phone
from hallq.topics import HallTopics

from .conftest import Mosquitto, until
from .coordinated import FakeClock, device
from .halls import at
from .test_web_helpers import ID_HASH_KEY, supervisor_auth, web_hall, web_running

pytestmark = pytest.mark.broker
T = HallTopics("test-hall")
TODAY, TOMORROW = "2026-11-30", "2026-12-01"


_phones = itertools.count(13800000000)


async def _book(
    http: aiohttp.ClientSession,
    url: str,
    status: int = 201,
    path: str = "/api/appointments",
    **body: Any,
) -> Any:
    """Book; a taxpayer's booking gives a fresh phone number unless the test gives one."""
    if path == "/api/appointments" and "id_number" not in body:
        body.setdefault("phone", str(next(_phones)))
    headers = await supervisor_auth(http, url) if path.startswith("/api/supervisor/") else {}
    async with http.post(url + path, json=body, headers=headers) as r:
        data = await r.json()
        assert r.status == status, data
        return data


async def _slots(http: aiohttp.ClientSession, url: str, service: str, day: str) -> Any:
    async with http.get(
        f"{url}/api/appointments/slots", params={"service": service, "day": day}
    ) as r:
        assert r.status == 200
        return {s["start"]: s for s in (await r.json())["slots"]}


async def test_booking_fills_a_slot_up_to_its_capacity(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))  # capacity 2, 30-min slots
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (_c, url),
        aiohttp.ClientSession() as http,
    ):
        slots = await _slots(http, url, "invoice", TODAY)
        assert slots["08:00"]["open"] is False
        assert slots["10:30"]["free"] == 2
        assert slots["17:30"]["slot"] == "17:30-18:00"
        assert "18:00" not in slots
        first = await _book(http, url, service="invoice", day=TODAY, start="10:30")
        assert first["slot"] == "10:30-11:00"
        assert first["state"] == "booked"
        assert (
            m.IssueRequest(kind="issue", service="invoice", appointment=first["code"]).appointment
            == first["code"]
        )
        second = await _book(http, url, service="invoice", day=TODAY, start="10:30")
        assert second["code"] != first["code"]
        full = await _book(http, url, 409, service="invoice", day=TODAY, start="10:30")
        assert full["error"]["code"] == "slot_full"
        assert (await _slots(http, url, "invoice", TODAY))["10:30"]["free"] == 0
        # another slot, another service: not affected
        await _book(http, url, service="tax-filing", day=TODAY, start="10:30")
        await _book(http, url, service="invoice", day=TOMORROW, start="10:30")

        past = await _book(http, url, 400, service="invoice", day=TODAY, start="09:00")
        assert past["error"]["code"] == "slot_past"
        bad = await _book(http, url, 400, service="invoice", day=TODAY, start="10:10")
        assert bad["error"]["code"] == "unknown_slot"
        far = await _book(http, url, 400, service="invoice", day="2027-03-01", start="10:30")
        assert far["error"]["code"] == "day_not_bookable"
        # 2026-12-05 is a Saturday: the hall is closed, and the refusal says so
        closed = await _book(http, url, 400, service="invoice", day="2026-12-05", start="10:30")
        assert closed["error"]["code"] == "hall_closed"
        assert "2026-12-05 周六" in closed["error"]["message"]
        async with http.get(f"{url}/api/appointments/slots?service=invoice") as r:
            days = (await r.json())["days"]
        assert "2026-12-05" not in days
        assert "2026-12-06" not in days
        assert len(days) == 5
        green = await _slots(http, url, "green", TODAY)  # the service's own hours
        assert min(green) == "09:00"
        assert max(green) == "11:30"

        async with http.get(f"{url}/api/appointments/{first['code']}") as r:
            assert (await r.json())["service"] == "invoice"
        async with http.get(f"{url}/api/appointments/{first['code'].lower()}/qr.svg") as r:
            assert r.status == 200
            assert r.content_type == "image/svg+xml"
            svg = await r.read()
        want = io.BytesIO()
        segno.make_qr(first["code"], error="m").save(
            want, kind="svg", scale=8, border=4, dark="#111", xmldecl=False
        )
        assert svg == want.getvalue(), "the QR holds the code the dispenser expects"
        assert b'xmlns="http://www.w3.org/2000/svg"' in svg  # an <img> shows only this
        async with http.get(f"{url}/api/appointments/ZZZZZZ/qr.svg") as r:
            assert r.status == 404


async def test_slots_show_the_comfort_index_for_their_half_hour(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A taxpayer choosing a slot sees how busy the hall is forecast to be then."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"), comfort_synthetic=True)
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        # built in a worker once the coordinator serves
        await until(lambda: c.forecast is not None, timeout=30)
        slots = await _slots(http, url, "invoice", TOMORROW)
        day = dt.date.fromisoformat(TOMORROW)
        for start, slot in slots.items():
            minute = int(start[:2]) * 60 + int(start[3:])
            assert slot["comfort"] == c.forecast.slot_level(day, minute), start
        assert {s["comfort"] for s in slots.values()} <= {"较少", "适中", "较多"}
        far = await _slots(http, url, "invoice", "2027-03-01")  # beyond the forecast
        assert {s["comfort"] for s in far.values()} == {None}


async def test_a_supervisor_invites_and_the_taxpayer_checks_in(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (_c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            f"{url}/api/supervisor/appointments", json={"service": "tax-filing", "start": "10:00"}
        ) as r:
            assert r.status == 401
        invited = await _book(
            http,
            url,
            path="/api/supervisor/appointments",
            service="tax-filing",
            start="10:00",
            note="王先生 138****",
        )
        assert invited["booked_by"] == "supervisor/supervisor"
        auth = await supervisor_auth(http, url)
        async with http.get(
            f"{url}/api/supervisor/appointments", headers=auth, params={"day": TODAY}
        ) as r:
            listed = await r.json()
        assert [(b["code"], b["note"]) for b in listed] == [(invited["code"], "王先生 138****")]

        await dispenser.wait_connected(10)
        reply = await dispenser.request(
            T.req("pi-d1"),
            m.IssueRequest(kind="issue", service="tax-filing", appointment=invited["code"]),
            timeout=10,
        )
        assert reply.ok
        assert reply.ticket.priority == "appointment"
        async with http.get(f"{url}/api/appointments/{invited['code']}") as r:
            assert (await r.json())["state"] == "checked_in"


async def test_a_no_show_gives_its_place_back(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (_c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        aiohttp.ClientSession() as http,
    ):
        came = await _book(http, url, service="invoice", day=TODAY, start="10:00")
        missed = await _book(http, url, service="invoice", day=TODAY, start="10:00")
        assert (await _slots(http, url, "invoice", TODAY))["10:00"]["free"] == 0
        await dispenser.wait_connected(10)
        reply = await dispenser.request(
            T.req("pi-d1"),
            m.IssueRequest(kind="issue", service="invoice", appointment=came["code"]),
            timeout=10,
        )
        assert reply.ok
        clock.now = at(10, 30)
        assert (await _slots(http, url, "invoice", TODAY))["10:00"]["free"] == 1
        async with http.get(f"{url}/api/appointments/{missed['code']}") as r:
            assert (await r.json())["state"] == "no_show"
        async with http.get(f"{url}/api/appointments/{came['code']}") as r:
            assert (await r.json())["state"] == "checked_in"


async def test_bookings_survive_a_restart_and_reach_the_engine(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    log_path = tmp_path / "log.sqlite"
    async with (
        web_running(cfg, log_path, clock) as (c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        aiohttp.ClientSession() as http,
    ):
        today = await _book(http, url, service="invoice", day=TODAY, start="11:00")
        checked = await _book(http, url, service="invoice", day=TODAY, start="11:00")
        tomorrow = await _book(http, url, service="tax-filing", day=TOMORROW, start="09:00")
        assert today["code"] in c.engine.appointments
        assert tomorrow["code"] not in c.engine.appointments  # not today's
        await dispenser.wait_connected(10)
        first = await dispenser.request(
            T.req("pi-d1"),
            m.IssueRequest(kind="issue", service="invoice", appointment=checked["code"]),
            timeout=10,
        )
        assert first.ticket.priority == "appointment"

    async with (
        web_running(cfg, log_path, clock) as (c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        aiohttp.ClientSession() as http,
    ):
        # replay saw the booking: the checked-in ticket kept its appointment priority
        assert c.engine.by_number[first.ticket.number].priority == "appointment"
        assert today["code"] in c.engine.appointments
        async with http.get(f"{url}/api/appointments/{today['code']}") as r:
            assert r.status == 200
            assert (await r.json())["state"] == "booked"
        assert (await _slots(http, url, "invoice", TODAY))["11:00"]["free"] == 0
        await dispenser.wait_connected(10)
        # and that its code was used: one booking, one ticket ahead of the queue
        again = await dispenser.request(
            T.req("pi-d1"),
            m.IssueRequest(kind="issue", service="invoice", appointment=checked["code"]),
            timeout=10,
        )
        assert again.error.code == "appointment_used"
        assert again.error.message == f"此预约今日已取号 {first.ticket.number}"
        reply = await dispenser.request(
            T.req("pi-d1"),
            m.IssueRequest(kind="issue", service="invoice", appointment=today["code"]),
            timeout=10,
        )
        assert reply.ticket.priority == "appointment"

        # the next business day opens: tomorrow's booking is registered then
        clock.now = at(9, 0, day=31)
        reply = await dispenser.request(
            T.req("pi-d1"),
            m.IssueRequest(kind="issue", service="tax-filing", appointment=tomorrow["code"]),
            timeout=10,
        )
        assert reply.ok
        assert reply.ticket.priority == "appointment"
        assert str(c.engine.day) == TOMORROW


ID_NUMBER = "11010519491231002X"  # check digit valid


async def test_real_name_booking_limits_a_person_and_cancels_with_proof(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One ID (or phone) gets one booking per service and day, hashed like the ID
    reader's; the number is never stored, logged or echoed; the code plus the same ID
    cancels, and the place is free again."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"), appointment_per_address_hour=50)
    caplog.set_level("DEBUG")
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        none = await _book(http, url, 400, service="invoice", day=TOMORROW, start="10:30", phone="")
        assert none["error"]["code"] == "identity_required"
        wrong = ID_NUMBER[:-1] + "5"
        bad = await _book(
            http, url, 400, service="invoice", day=TOMORROW, start="10:30", id_number=wrong
        )
        assert bad["error"]["code"] == "bad_id_number"
        assert wrong not in str(bad)
        assert (
            await _book(
                http, url, 400, service="invoice", day=TOMORROW, start="10:30", phone="12345"
            )
        )["error"]["code"] == "bad_phone"

        mine = await _book(
            http, url, service="invoice", day=TOMORROW, start="10:30", id_number=ID_NUMBER.lower()
        )
        assert ID_NUMBER not in str(mine)
        again = await _book(
            http, url, 409, service="invoice", day=TOMORROW, start="11:00", id_number=ID_NUMBER
        )
        assert again["error"]["code"] == "person_limit"
        # another service the same day, or the same service another day: allowed
        await _book(
            http, url, service="tax-filing", day=TOMORROW, start="10:30", id_number=ID_NUMBER
        )
        by_phone = await _book(
            http, url, service="invoice", day=TOMORROW, start="10:30", phone="+86 139-0000-1111"
        )
        assert (
            await _book(
                http, url, 409, service="invoice", day=TOMORROW, start="14:00", phone="13900001111"
            )
        )["error"]["code"] == "person_limit"
        assert (await _slots(http, url, "invoice", TOMORROW))["10:30"]["free"] == 0

        # the book holds the reader's hash, not the number
        stored = c.bookings.get(mine["code"])
        assert stored is not None
        assert stored.person == hash_id_number(ID_NUMBER, ID_HASH_KEY)
        assert stored.person != hash_phone("13900001111", ID_HASH_KEY)
        raw = (
            c.bookings.path.read_bytes()
            + c.bookings.path.with_name(c.bookings.path.name + "-wal").read_bytes()
        )
        assert ID_NUMBER.encode() not in raw
        assert b"13900001111" not in raw

        cancel = f"{url}/api/appointments/{mine['code']}/cancel"
        async with http.post(cancel, json={"phone": "13900001111"}) as r:
            assert r.status == 404  # someone else's proof: as if there were no such code
        async with http.post(cancel, json={"id_number": ID_NUMBER}) as r:
            assert r.status == 200
            assert (await r.json())["state"] == "cancelled"
        async with http.get(f"{url}/api/appointments/{mine['code']}") as r:
            assert (await r.json())["state"] == "cancelled"
        async with http.post(cancel, json={"id_number": ID_NUMBER}) as r:
            assert r.status == 404
        assert (await _slots(http, url, "invoice", TOMORROW))["10:30"]["free"] == 1
        # cancelled, the person may book again
        await _book(http, url, service="invoice", day=TOMORROW, start="11:00", id_number=ID_NUMBER)
        assert by_phone["state"] == "booked"
    assert ID_NUMBER not in caplog.text
    assert "13900001111" not in caplog.text


async def test_hours_outside_the_service_and_an_unentered_year_are_refused(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    hall = cfg.hall.model_copy(update={"closed_days": [dt.date(2026, 12, 2)]})
    cfg = cfg.model_copy(update={"hall": hall})
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (_c, url),
        aiohttp.ClientSession() as http,
    ):
        early = await _book(http, url, 400, service="green", day=TOMORROW, start="08:00")
        assert early["error"]["code"] == "outside_hours"
        assert "09:00-12:00" in early["error"]["message"]
        holiday = await _book(http, url, 400, service="invoice", day="2026-12-02", start="10:30")
        assert holiday["error"]["code"] == "hall_closed"
        assert "周三" in holiday["error"]["message"]
        async with http.get(f"{url}/api/appointments/slots?service=invoice") as r:
            assert "2026-12-02" not in (await r.json())["days"]


async def test_one_address_cannot_fill_the_slots(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = web_hall(
        mosquitto.url,
        str(tmp_path / "state"),
        appointment_per_address_hour=3,
        appointment_capacity=50,
    )
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (_c, url),
        aiohttp.ClientSession() as http,
    ):
        for _ in range(3):
            await _book(http, url, service="invoice", day=TOMORROW, start="10:30")
        limited = await _book(http, url, 429, service="invoice", day=TOMORROW, start="10:30")
        assert limited["error"]["code"] == "rate_limited"
        # supervisors inviting on a taxpayer's behalf are not limited
        await _book(
            http,
            url,
            path="/api/supervisor/appointments",
            service="invoice",
            day=TOMORROW,
            start="10:30",
        )
        clock.now += 3601
        await _book(http, url, service="invoice", day=TOMORROW, start="10:30")
