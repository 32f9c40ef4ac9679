"""The coordinator's JSON API over a real Mosquitto: hall, tickets, devices, alerts, SSE."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hallq import messages as m
from hallq.topics import HallTopics

from .conftest import Mosquitto, until
from .coordinated import FakeClock, device, running
from .test_web_helpers import MATERIALS, PASSWORD, supervisor_auth, web_hall, web_running

pytestmark = pytest.mark.broker
T = HallTopics("test-hall")


async def _issue(dispenser: Any, service: str = "tax-filing", client: str = "pi-d1") -> str:
    reply = await dispenser.request(
        T.req(client), m.IssueRequest(kind="issue", service=service), timeout=10
    )
    assert reply.ok
    return str(reply.ticket.number)


async def _call(pad: Any, window: int = 1) -> str:
    reply = await pad.request(
        T.cmd("window", "pi-w1"), m.WindowAction(window=window, action="call"), timeout=10
    )
    assert reply.ok
    return str(reply.ticket)


async def _get(http: aiohttp.ClientSession, url: str, **kw: Any) -> Any:
    async with http.get(url, **kw) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_hall_summary_and_ticket_follow_the_engine(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (_c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
        aiohttp.ClientSession() as http,
    ):
        await dispenser.wait_connected(10)
        await pad.wait_connected(10)
        # window 1 alone serves tax-filing: the third ticket has two ahead of it at one
        # window (with three idle windows it would be called at once, and estimated so)
        auth = await supervisor_auth(http, url)
        for n in (3, 4):
            async with http.post(
                f"{url}/api/supervisor/windows/{n}", headers=auth, json={"action": "pause"}
            ) as r:
                assert r.status == 200, await r.text()
        numbers = [await _issue(dispenser) for _ in range(3)]
        third = await _get(http, f"{url}/api/tickets/{numbers[2]}")
        assert third["state"] == "waiting"
        assert third["people_ahead"] == 2
        assert third["materials"] == MATERIALS
        assert third["window"] is None
        assert third["eta_min"] > 0

        clock.now += 60
        assert await _call(pad) == numbers[0]
        called = await _get(http, f"{url}/api/tickets/{numbers[0]}")
        assert called["state"] == "called"
        assert called["window"] == 1
        assert (await _get(http, f"{url}/api/tickets/{numbers[2]}"))["people_ahead"] == 1

        hall = await _get(http, f"{url}/api/hall")
        assert hall["hall"]["id"] == "test-hall"
        filing = next(s for s in hall["services"] if s["code"] == "tax-filing")
        assert filing["queue"]["waiting"] == 2
        assert filing["materials"] == MATERIALS
        assert hall["board"]["calls"][0]["ticket"] == numbers[0]
        # the public view says nothing about staff, devices or KPIs
        assert not {"windows", "stats", "devices", "alerts"} & set(hall)
        async with http.get(f"{url}/api/supervisor/hall") as r:
            assert r.status == 401
        inside = await _get(
            http, f"{url}/api/supervisor/hall", headers=await supervisor_auth(http, url)
        )
        assert inside["windows"][0]["ticket"] == numbers[0]
        assert inside["stats"]["total"]["issued"] == 3
        assert inside["zones"]
        assert inside["windows"][0]["zone"] in inside["zones"]

        async with http.get(f"{url}/api/tickets/Z999") as r:
            assert r.status == 404
        # as a taxpayer types it: A1 and a001 are A001 (the page's example once had a
        # digit too few for four-digit services, and every lookup said "not today")
        assert numbers[0] == "A001"
        for typed in ("A1", "a01", "A0001"):
            assert (await _get(http, f"{url}/api/tickets/{typed}"))["number"] == "A001"


async def test_devices_presence_and_health_and_alerts(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        async with device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser:
            await dispenser.wait_connected(10)
            await dispenser.publish(
                T.health("dispenser", "pi-d1"),
                m.DeviceHealth(
                    rev=dispenser.next_rev(),
                    components=[m.ComponentHealth(name="printer-1", ok=False, status="paper_out")],
                ),
            )
            await until(lambda: any(d.health for d in c.devices.all()))
            devices = await _get(
                http, f"{url}/api/supervisor/devices", headers=await supervisor_auth(http, url)
            )
            d1 = next(d for d in devices if d["client"] == "pi-d1")
            assert d1["online"] is True
            assert d1["healthy"] is False
            assert d1["components"][0]["status"] == "paper_out"
        await until(lambda: any(d.client == "pi-d1" and d.online is False for d in c.devices.all()))
        # a stale will from an earlier boot must not flip a newer online back
        assert not c.devices.note_presence(
            m.Presence(state="offline", boot=0, role="dispenser", client="pi-d1")
        )
        async with http.get(f"{url}/api/alerts") as r:
            assert r.status == 404  # internal: only under /api/supervisor/
        alerts = await _get(
            http, f"{url}/api/supervisor/alerts", headers=await supervisor_auth(http, url)
        )
        kinds = {a["kind"] for a in alerts}
        assert {"device_offline", "device_unhealthy"} <= kinds


async def test_two_devices_with_one_id_are_shown_to_the_supervisor(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A Pi set up from a copy of another's card keeps its agent id: the broker drops one
    of the two whenever the other connects, and each device only logs that it lost the
    broker. The supervisor is told which id is in use twice."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
        device(cfg, "dispenser", "pi-d1", tmp_path / "first"),
        device(cfg, "dispenser", "pi-d1", tmp_path / "clone"),
    ):
        await until(lambda: bool(c.devices.shared_ids()), 30)
        alerts = await _get(
            http, f"{url}/api/supervisor/alerts", headers=await supervisor_auth(http, url)
        )
        shared = [a for a in alerts if a["kind"] == "device_shared_id"]
        assert [(a["client"], a["role"]) for a in shared] == [("pi-d1", "dispenser")]
        desk = await _get(
            http, f"{url}/api/supervisor/desk", headers=await supervisor_auth(http, url)
        )
        assert "device_shared_id" in {a["kind"] for a in desk["alerts"]}


async def test_boards_follow_a_coordinator_that_starts_a_new_event_log(
    mosquitto: Mosquitto, tmp_path: Path, inbox: Any
) -> None:
    """A hall's log wiped after a trial day (or a coordinator moved to a new server
    without it) counts its revisions from the start again, while the Pis run on: each
    device's session remembers the old log's higher revision, and a board that dropped
    every state below it showed the trial day until someone restarted it."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    board = inbox()
    async with (
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
        device(cfg, "board", "pi-b1", tmp_path) as watcher,
    ):
        await watcher.subscribe(T.board_state(), board)
        for log in ("trial.sqlite", "opening.sqlite"):
            clock = FakeClock()
            async with running(cfg, tmp_path / log, clock):
                for _ in range(2 if log == "opening.sqlite" else 6):
                    await _issue(dispenser)
                number = await _call(pad)
                if log == "opening.sqlite":  # a number the trial day's board never led with
                    clock.now += 60  # (its holder came and was served)
                    number = await _call(pad)
                await board.wait_for(
                    lambda states, n=number: (
                        bool(states[-1].calls) and states[-1].calls[0].ticket == n
                    )
                )
    revs = [state.rev for state in board.payloads]
    assert revs[-1] < max(revs), "the opening day's log counts from its start again"


async def test_wait_target_and_engine_alerts_are_listed(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        aiohttp.ClientSession() as http,
    ):
        await dispenser.wait_connected(10)
        await _issue(dispenser)
        for _ in range(3):  # invoice warns at the 3rd ticket (warn_at = 3)
            await _issue(dispenser, "invoice")
        clock.now += 10 * 60 + 12  # tax-filing's target is 10 min
        await until(lambda: bool(c.alerts))  # the reply goes out before the events
        auth = await supervisor_auth(http, url)
        alerts = await _get(http, f"{url}/api/supervisor/alerts", headers=auth)
        kinds = [a["kind"] for a in alerts]
        assert "wait_over_target" in kinds
        assert "daily_cap_near" in kinds

        def over() -> str:
            return next(str(a["message"]) for a in alerts if a["kind"] == "wait_over_target")

        # not "最长等候 10 分钟, 超过目标 10 分钟"
        assert over() == "申报纳税 最长等候 10.2 分钟, 超过目标 10 分钟"
        clock.now += 60
        alerts = await _get(http, f"{url}/api/supervisor/alerts", headers=auth)
        assert over() == "申报纳税 最长等候 11 分钟, 超过目标 10 分钟"


async def test_an_acknowledged_alert_stays_acknowledged_after_a_restart(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Restarted mid-shift (systemd after a crash), the desk does not hand the supervisor
    the alerts they already worked: today's acknowledgements come back from the audit log."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()

    async def desk_alerts(url: str, http: aiohttp.ClientSession) -> dict[str, Any]:
        auth = await supervisor_auth(http, url)
        desk = await _get(http, f"{url}/api/supervisor/desk", headers=auth)
        return {a["key"]: a for a in desk["alerts"]}

    async with device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser:
        async with web_running(cfg, tmp_path / "log.sqlite", clock) as (_, url):
            async with aiohttp.ClientSession() as http:
                await dispenser.wait_connected(10)
                await _issue(dispenser)
                clock.now += 11 * 60  # tax-filing's target is 10 min: a standing alert
                key = "wait_over_target:tax-filing"
                assert key in await desk_alerts(url, http)
                async with http.post(
                    f"{url}/api/supervisor/alerts/ack",
                    headers=await supervisor_auth(http, url),
                    json={"key": key},
                ) as r:
                    assert r.status == 200, await r.text()
        clock.now += 60
        async with web_running(cfg, tmp_path / "log.sqlite", clock) as (_, url):
            async with aiohttp.ClientSession() as http:
                alerts = await desk_alerts(url, http)
                assert alerts[key]["acked_by"] == "supervisor"


async def test_an_applied_advice_can_still_be_switched_back_after_a_restart(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A supervisor applied express-window advice, then the coordinator restarted: the desk
    still shows who applied it and, when its time is up, offers to switch the window back
    to what it served before (the restore the supervisor would otherwise have to recall)."""
    from coordinator.advice.live import Advice

    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()

    async def desk_advice(url: str, http: aiohttp.ClientSession) -> dict[str, Any]:
        auth = await supervisor_auth(http, url)
        desk = await _get(http, f"{url}/api/supervisor/desk", headers=auth)
        return {a["id"]: a for a in desk["advice"]}

    async with web_running(cfg, tmp_path / "log.sqlite", clock) as (c, url):
        before = dict(c.engine.windows[2].skills)
        assert before != {"tax-filing": 1.0}
        c.advice.appendleft(
            (
                clock.now,
                Advice(
                    service="tax-filing",
                    windows=(2,),
                    restore={2: before},
                    duration_min=20,
                    waiting=30,
                    target_min=10,
                    predicted_wait_min=25.0,
                    before_min=25.0,
                    after_min=14.0,
                    others_before_min=3.0,
                    others_after_min=4.0,
                    basis="simulation",
                ),
            )
        )
        async with aiohttp.ClientSession() as http:
            (advice_id,) = await desk_advice(url, http)
            async with http.post(
                f"{url}/api/supervisor/advice/{advice_id}/apply",
                headers=await supervisor_auth(http, url),
            ) as r:
                assert r.status == 200, await r.text()
        await until(lambda: c.engine.windows[2].skills == {"tax-filing": 1.0})
    clock.now += 25 * 60
    async with web_running(cfg, tmp_path / "log.sqlite", clock) as (c, url):
        assert c.engine.windows[2].skills == {"tax-filing": 1.0}  # the switch is in the log
        async with aiohttp.ClientSession() as http:
            advice = (await desk_advice(url, http))[advice_id]
            assert advice["state"] == "applied"
            assert advice["by"] == "supervisor"
            assert advice["due_restore"] is True
            async with http.post(
                f"{url}/api/supervisor/advice/{advice_id}/restore",
                headers=await supervisor_auth(http, url),
            ) as r:
                assert r.status == 200, await r.text()
            await until(lambda: c.engine.windows[2].skills == before)
            assert (await desk_advice(url, http))[advice_id]["state"] == "restored"


async def _events(response: aiohttp.ClientResponse) -> Any:
    """(event, data) pairs of a Server-Sent Events body."""
    event, data = None, []
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif not line and event is not None:
            yield event, json.loads("\n".join(data))
            event, data = None, []


async def test_stream_sends_each_call_as_it_happens(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (_c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
        aiohttp.ClientSession() as http,
    ):
        await dispenser.wait_connected(10)
        await pad.wait_connected(10)
        number = await _issue(dispenser)
        async with http.get(f"{url}/api/stream") as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            events = _events(stream)
            async with asyncio.timeout(15):
                first = await anext(events)
                assert first[0] == "hello"
                await _call(pad)
                async for kind, data in events:
                    calls = [e for e in data.get("events", []) if "zone" in e]
                    if kind == "change" and calls:
                        assert calls[0]["ticket"] == number
                        assert calls[0]["window"] == 1
                        assert 1 in data["windows"]
                        break


async def test_board_png_is_rendered_by_the_displays_package(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (_c, url),
        aiohttp.ClientSession() as http,
    ):
        boards = await _get(http, f"{url}/api/boards")
        assert boards
        assert all(b["png"].endswith(".png") for b in boards)
        zones = {z.id: z.name for z in cfg.zones}  # a taxpayer reads a hall, not "board-1"
        assert [b["caption"] for b in boards] == [zones.get(b["zone"], "全厅") for b in boards]
        async with http.get(url + boards[0]["png"]) as r:
            assert r.status == 200
            assert r.content_type == "image/png"
            assert (await r.read()).startswith(b"\x89PNG")
        async with http.get(f"{url}/api/boards/nope.png") as r:
            assert r.status == 404


async def test_openapi_document_is_valid_and_lists_every_api_route(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    from openapi_spec_validator import validate

    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        aiohttp.ClientSession() as http,
    ):
        doc = await _get(http, f"{url}/api/openapi.json")
        validate(doc)
        routes = set()
        for resource in c.web.runner.app.router.resources():
            path = resource.canonical
            if path.startswith("/api/"):
                routes.add(path)
        assert routes <= set(doc["paths"]), routes - set(doc["paths"])
        for path, item in doc["paths"].items():
            for method in item:
                assert any(
                    r.canonical == path and route.method == method.upper()
                    for r in c.web.runner.app.router.resources()
                    for route in r
                )


async def test_pages_are_served_locally(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (_c, url),
        aiohttp.ClientSession() as http,
    ):
        for path in ("/", "/t/test-hall/A001", "/book", "/static/live.js", "/static/app.css"):
            async with http.get(url + path) as r:
                assert r.status == 200, path
                body = await r.text()
                assert "http://" not in body, path  # no CDN
                assert "https://" not in body, path
        async with http.get(f"{url}/t/other-hall/A001") as r:
            assert r.status == 404
        async with http.get(f"{url}/supervisor", headers=await supervisor_auth(http, url)) as r:
            assert r.status == 200


async def test_real_responses_validate_against_the_openapi_document(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Every JSON answer of the API, with devices, alerts, tickets in several states,
    bookings and supervisor commands in it, is what the document says (its schemas forbid
    fields they do not name, so a view that adds one without its model fails here)."""
    from jsonschema import Draft202012Validator

    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    checked: list[tuple[str, str, int]] = []
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
        aiohttp.ClientSession() as http,
    ):
        doc = await _get(http, f"{url}/api/openapi.json")

        async def check(method: str, path: str, template: str, status: int = 200, **kw: Any) -> Any:
            async with http.request(method, f"{url}{path}", **kw) as r:
                assert r.status == status, await r.text()
                body = await r.json()
            media = doc["paths"][template][method.lower()]["responses"][str(status)]["content"]
            schema = {**media["application/json"]["schema"], "components": doc["components"]}
            errors = [
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in Draft202012Validator(schema).iter_errors(body)
            ]
            assert errors == [], (method, path, errors)
            checked.append((method, template, status))
            return body

        await dispenser.wait_connected(10)
        await pad.wait_connected(10)
        numbers = [await _issue(dispenser) for _ in range(3)]
        await dispenser.publish(
            T.health("dispenser", "pi-d1"),
            m.DeviceHealth(
                rev=dispenser.next_rev(),
                components=[m.ComponentHealth(name="printer-1", ok=False, status="paper_out")],
            ),
        )
        await until(lambda: any(d.health for d in c.devices.all()))
        clock.now += 11 * 60  # past tax-filing's 10 min target: an alert
        await _call(pad)

        auth = await supervisor_auth(http, url)
        hall = await check("GET", "/api/hall", "/api/hall")
        assert hall["services"][0]["name_en"] is None
        inside = await check("GET", "/api/supervisor/hall", "/api/supervisor/hall", headers=auth)
        assert inside["devices"]
        called = await check("GET", f"/api/tickets/{numbers[0]}", "/api/tickets/{number}")
        assert called["state"] == "called"
        assert called["recalls"] == 0
        await check("GET", f"/api/tickets/{numbers[2]}", "/api/tickets/{number}")
        await check("GET", "/api/tickets/Z999", "/api/tickets/{number}", 404)
        devices = await check(
            "GET", "/api/supervisor/devices", "/api/supervisor/devices", headers=auth
        )
        assert any(d["healthy"] is False for d in devices)
        alerts = await check(
            "GET", "/api/supervisor/alerts", "/api/supervisor/alerts", headers=auth
        )
        assert {"device_unhealthy", "wait_over_target"} <= {a["kind"] for a in alerts}
        await check("GET", "/api/health", "/api/health")
        await check("GET", "/api/boards", "/api/boards")
        await check("GET", "/api/openapi.json", "/api/openapi.json")

        slots = await check(
            "GET", "/api/appointments/slots?service=tax-filing", "/api/appointments/slots"
        )
        start = next(s["start"] for s in slots["slots"] if s["open"] and s["free"])
        booked = await check(
            "POST",
            "/api/appointments",
            "/api/appointments",
            201,
            json={
                "service": "tax-filing",
                "day": slots["day"],
                "start": start,
                "phone": "13800000000",
            },
        )
        await check("GET", f"/api/appointments/{booked['code']}", "/api/appointments/{code}")
        await check("POST", "/api/appointments", "/api/appointments", 400, json=[])
        await check(
            "POST",
            f"/api/appointments/{booked['code']}/cancel",
            "/api/appointments/{code}/cancel",
            404,
            json={"phone": "13900000000"},
        )
        await check(
            "POST",
            f"/api/appointments/{booked['code']}/cancel",
            "/api/appointments/{code}/cancel",
            json={"phone": "13800000000"},
        )
        await check(
            "POST",
            "/api/login",
            "/api/login",
            401,
            json={"user": "supervisor", "password": "wrong"},
        )
        login = await check(
            "POST", "/api/login", "/api/login", json={"user": "supervisor", "password": PASSWORD}
        )
        auth = await supervisor_auth(http, url)
        await check("GET", "/api/session", "/api/session", headers=auth)
        assert login["role"] == "supervisor"
        await check("GET", "/api/supervisor/whoami", "/api/supervisor/whoami", headers=auth)
        await check("GET", "/api/supervisor/whoami", "/api/supervisor/whoami", 401)
        await check(
            "POST",
            "/api/supervisor/appointments",
            "/api/supervisor/appointments",
            201,
            headers=auth,
            json={"service": "tax-filing", "day": slots["day"], "start": start, "note": "回访"},
        )
        listed = await check(
            "GET",
            f"/api/supervisor/appointments?day={slots['day']}",
            "/api/supervisor/appointments",
            headers=auth,
        )
        assert {b["note"] for b in listed} == {"回访"}  # the cancelled booking is gone
        await check(
            "POST",
            "/api/supervisor/windows/2",
            "/api/supervisor/windows/{window}",
            headers=auth,
            json={"action": "pause"},
        )
        await check(
            "POST",
            "/api/supervisor/windows/99",
            "/api/supervisor/windows/{window}",
            409,
            headers=auth,
            json={"action": "pause"},
        )
        await check(
            "POST",
            "/api/supervisor/windows/2",
            "/api/supervisor/windows/{window}",
            403,
            headers={"Cookie": auth["Cookie"]},
            json={"action": "resume"},
        )
        refused = await check(
            "POST",
            "/api/supervisor/windows/2",
            "/api/supervisor/windows/{window}",
            409,
            headers=auth,
            json={"action": "pause"},
        )
        assert refused["error"]["code"] == "no_change"
        desk = await check("GET", "/api/supervisor/desk", "/api/supervisor/desk", headers=auth)
        assert {a["kind"] for a in desk["alerts"]} >= {"device_unhealthy", "wait_over_target"}
        await check(
            "POST",
            "/api/supervisor/windows/1/impact",
            "/api/supervisor/windows/{window}/impact",
            headers=auth,
            json={"action": "set_skills", "skills": {"invoice": 1.0}},
        )
        key = desk["alerts"][0]["key"]
        await check(
            "POST",
            "/api/supervisor/alerts/ack",
            "/api/supervisor/alerts/ack",
            headers=auth,
            json={"key": key},
        )
        await check(
            "POST",
            "/api/supervisor/alerts/ack",
            "/api/supervisor/alerts/ack",
            404,
            headers=auth,
            json={"key": "nothing:here"},
        )
        await check(
            "POST",
            "/api/supervisor/advice/a99/apply",
            "/api/supervisor/advice/{id}/{verb}",
            404,
            headers=auth,
        )
        audit = await check("GET", "/api/supervisor/audit", "/api/supervisor/audit", headers=auth)
        assert audit[0] == {
            **audit[0],
            "action": "ack",
            "target": "alert nothing:here",
            "ok": False,
        }
        assert audit[1] == {**audit[1], "action": "ack", "target": f"alert {key}", "ok": True}
        assert audit[2]["action"] == "denied"
        assert any(a["target"] == "window 99" for a in audit)
        await check("POST", "/api/logout", "/api/logout", headers=auth)
        await check("GET", "/api/session", "/api/session", 401, headers=auth)
    assert len(checked) == 35


async def test_people_no_open_window_serves_raise_an_alert_naming_the_windows(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A supervisor paused every window of a service and the desk looked fine: the hall's
    average wait, no alert. Those waiting are called nowhere else; the desk says so and
    which windows would take them, and their page promises no time."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (_c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        aiohttp.ClientSession() as http,
    ):
        await dispenser.wait_connected(10)
        auth = await supervisor_auth(http, url)

        async def window(n: int, action: str) -> None:
            async with http.post(
                f"{url}/api/supervisor/windows/{n}", headers=auth, json={"action": action}
            ) as r:
                assert r.status == 200, await r.text()

        for n in (1, 3, 4):  # every window serving tax-filing
            await window(n, "pause")
        number = await _issue(dispenser)
        ticket = await _get(http, f"{url}/api/tickets/{number}")
        assert ticket["wait_text"]["zh"] == "暂无窗口办理, 开窗后叫号"
        alerts = await _get(http, f"{url}/api/supervisor/alerts", headers=auth)
        (alert,) = [a for a in alerts if a["kind"] == "no_window"]
        assert alert["message"] == "申报纳税 1 人等候, 无开放窗口办理, 可恢复或开 1、3、4号窗口"
        assert alert["kind_zh"] == "无窗口办理"  # (the hall page showed "no_window")
        await window(3, "resume")
        alerts = await _get(http, f"{url}/api/supervisor/alerts", headers=auth)
        assert not [a for a in alerts if a["kind"] == "no_window"]
        ticket = await _get(http, f"{url}/api/tickets/{number}")
        assert ticket["wait_text"]["zh"] != "暂无窗口办理, 开窗后叫号"


async def test_the_help_desk_acts_on_one_ticket_and_refuses_what_makes_no_sense(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        aiohttp.ClientSession() as http,
    ):
        await dispenser.wait_connected(10)
        auth = await supervisor_auth(http, url)
        number = await _issue(dispenser)

        async def act(body: dict[str, Any], who: str = number) -> tuple[int, Any]:
            async with http.post(
                f"{url}/api/supervisor/tickets/{who}", headers=auth, json=body
            ) as r:
                return r.status, await r.json()

        status, said = await act({"action": "reinstate"})  # it waits: nothing to reinstate
        assert (status, said["error"]["code"]) == (409, "ticket_not_skipped")
        assert (await act({"action": "call"}))[0] == 400  # a window's work, not the desk's
        assert (await act({"action": "cancel"}, "Z999"))[0] == 404
        status, said = await act({"action": "transfer", "to_service": "invoice"})
        assert status == 200, said
        assert c.engine.by_number[number].service == "invoice"
        assert (await act({"action": "cancel"}))[0] == 200
        assert c.engine.by_number[number].state == "cancelled"
        async with http.get(f"{url}/api/supervisor/audit", headers=auth) as r:
            rows = await r.json()
        assert {(row["action"], row["target"]) for row in rows} >= {
            ("transfer", f"ticket {number}"),
            ("cancel", f"ticket {number}"),
        }
        moved = next(row for row in rows if row["action"] == "transfer")
        assert moved["target_zh"] == f"号码 {number} → 发票办理"  # where to, not just which


async def test_the_desk_counts_each_buildings_queue_and_names_it_in_an_alert(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A supervisor saw 申报纳税 72 人 while the branch's own queue, served by its windows
    alone, stood still: the desk splits the count by building, and the alert names it."""
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"), two_sites=True)
    clock = FakeClock()
    async with (
        web_running(cfg, tmp_path / "log.sqlite", clock) as (_c, url),
        device(cfg, "dispenser", "pi-d2", tmp_path) as branch_kiosk,
        aiohttp.ClientSession() as http,
    ):
        await branch_kiosk.wait_connected(10)
        auth = await supervisor_auth(http, url)
        async with http.post(
            f"{url}/api/supervisor/windows/4", headers=auth, json={"action": "pause"}
        ) as r:
            assert r.status == 200, await r.text()  # the branch's one window
        for _ in range(2):
            await _issue(branch_kiosk, client="pi-d2")
        desk = await _get(http, f"{url}/api/supervisor/desk", headers=auth)
        filing = next(s for s in desk["services"] if s["code"] == "tax-filing")
        assert filing["waiting"] == 2
        assert filing["waiting_by_site"] == {"main": 0, "branch": 2}
        assert filing["wait_by_site"]["branch"] == "暂无窗口办理, 开窗后叫号"
        # the branch's one kiosk: its 停用 says nobody there could take a ticket
        offers = {login["client"]: login for login in desk["logins"]}
        assert offers["pi-d2"]["last_kiosk"] == "branch"
        assert offers["pi-w1"]["last_kiosk"] is None
        assert filing["wait_by_site"]["main"] != filing["wait_by_site"]["branch"]
        alerts = await _get(http, f"{url}/api/supervisor/alerts", headers=auth)
        (alert,) = [a for a in alerts if a["kind"] == "no_window"]
        assert alert["message"] == "branch 申报纳税 2 人等候, 无开放窗口办理, 可恢复或开 4号窗口"
        # the coordinator says it once, so the day keeps it; the desk lists it once
        await until(lambda: any(e.kind == "no_window" for _, e in _c.alerts), 10)
        desk = await _get(http, f"{url}/api/supervisor/desk", headers=auth)
        assert [a["kind"] for a in desk["alerts"]].count("no_window") == 1
        async with http.post(
            f"{url}/api/supervisor/windows/4", headers=auth, json={"action": "resume"}
        ) as r:
            assert r.status == 200
        async with http.get(f"{url}/supervisor/report", headers=auth) as r:
            report = await r.text()
        assert "无窗口办理" in report  # after the window opened again
        assert "branch 申报纳税 2 人等候" in report
        assert "已开窗" in report
        desk = await _get(http, f"{url}/api/supervisor/desk", headers=auth)
        assert "no_window" not in [a["kind"] for a in desk["alerts"]]
        # the main building's zone-less board is captioned as what it shows
        boards = {b["id"]: b for b in await _get(http, f"{url}/api/boards")}
        assert boards["main-board"]["caption"] == "第一办税厅"
        # the public page's calls say which building their window is in
        hall = await _get(http, f"{url}/api/hall")
        assert hall["hall"]["places"] == {"hall-1": "第一办税厅", "branch-1": "分办税点"}
