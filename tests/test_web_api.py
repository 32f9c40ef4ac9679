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

from .conftest import Mosquitto
from .coordinated import FakeClock, device
from .test_web_helpers import MATERIALS, supervisor_auth, web_hall, web_running

pytestmark = pytest.mark.broker
T = HallTopics("test-hall")


async def _issue(dispenser: Any, service: str = "tax-filing") -> str:
    reply = await dispenser.request(T.req("pi-d1"), m.IssueRequest(kind="issue",
                                    service=service), timeout=10)
    assert reply.ok
    return str(reply.ticket.number)


async def _call(pad: Any, window: int = 1) -> str:
    reply = await pad.request(T.cmd("window", "pi-w1"), m.WindowAction(window=window,
                              action="call"), timeout=10)
    assert reply.ok
    return str(reply.ticket)


async def _get(http: aiohttp.ClientSession, url: str, **kw: Any) -> Any:
    async with http.get(url, **kw) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_hall_summary_and_ticket_follow_the_engine(mosquitto: Mosquitto,
                                                         tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with web_running(cfg, tmp_path / "log.sqlite", clock) as (_c, url), \
            device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser, \
            device(cfg, "window", "pi-w1", tmp_path) as pad, \
            aiohttp.ClientSession() as http:
        await dispenser.wait_connected(10)
        await pad.wait_connected(10)
        numbers = [await _issue(dispenser) for _ in range(3)]
        third = await _get(http, f"{url}/api/tickets/{numbers[2]}")
        assert third["state"] == "waiting" and third["people_ahead"] == 2
        assert third["materials"] == MATERIALS and third["window"] is None
        assert third["eta_min"] > 0

        clock.now += 60
        assert await _call(pad) == numbers[0]
        called = await _get(http, f"{url}/api/tickets/{numbers[0]}")
        assert called["state"] == "called" and called["window"] == 1
        assert (await _get(http, f"{url}/api/tickets/{numbers[2]}"))["people_ahead"] == 1

        hall = await _get(http, f"{url}/api/hall")
        assert hall["hall"]["id"] == "test-hall"
        filing = next(s for s in hall["services"] if s["code"] == "tax-filing")
        assert filing["queue"]["waiting"] == 2 and filing["materials"] == MATERIALS
        assert hall["windows"][0]["ticket"] == numbers[0]
        assert hall["board"]["calls"][0]["ticket"] == numbers[0]
        assert hall["stats"]["total"]["issued"] == 3

        async with http.get(f"{url}/api/tickets/Z999") as r:
            assert r.status == 404


async def test_devices_presence_and_health_and_alerts(mosquitto: Mosquitto,
                                                      tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with web_running(cfg, tmp_path / "log.sqlite", clock) as (c, url), \
            aiohttp.ClientSession() as http:
        async with device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser:
            await dispenser.wait_connected(10)
            await dispenser.publish(T.health("dispenser", "pi-d1"), m.DeviceHealth(
                rev=dispenser.next_rev(), components=[m.ComponentHealth(
                    name="printer-1", ok=False, status="paper_out")]))
            await _until(lambda: any(d.health for d in c.devices.all()))
            devices = await _get(http, f"{url}/api/devices")
            d1 = next(d for d in devices if d["client"] == "pi-d1")
            assert d1["online"] is True and d1["healthy"] is False
            assert d1["components"][0]["status"] == "paper_out"
        await _until(lambda: any(d.client == "pi-d1" and d.online is False
                                 for d in c.devices.all()))
        # a stale will from an earlier boot must not flip a newer online back
        assert not c.devices.note_presence(m.Presence(state="offline", boot=0, role="dispenser",
                                                      client="pi-d1"))
        alerts = await _get(http, f"{url}/api/alerts")
        kinds = {a["kind"] for a in alerts}
        assert {"device_offline", "device_unhealthy"} <= kinds


async def test_wait_target_and_engine_alerts_are_listed(mosquitto: Mosquitto,
                                                        tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with web_running(cfg, tmp_path / "log.sqlite", clock) as (c, url), \
            device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser, \
            aiohttp.ClientSession() as http:
        await dispenser.wait_connected(10)
        await _issue(dispenser)
        for _ in range(3):  # invoice warns at the 3rd ticket (warn_at = 3)
            await _issue(dispenser, "invoice")
        clock.now += 11 * 60  # tax-filing's target is 10 min
        await _until(lambda: bool(c.alerts))  # the reply goes out before the events
        alerts = await _get(http, f"{url}/api/alerts")
        kinds = [a["kind"] for a in alerts]
        assert "wait_over_target" in kinds and "daily_cap_near" in kinds


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


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


async def test_stream_sends_each_call_as_it_happens(mosquitto: Mosquitto,
                                                    tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with web_running(cfg, tmp_path / "log.sqlite", clock) as (_c, url), \
            device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser, \
            device(cfg, "window", "pi-w1", tmp_path) as pad, \
            aiohttp.ClientSession() as http:
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
                        assert calls[0]["ticket"] == number and calls[0]["window"] == 1
                        assert 1 in data["windows"]
                        break


async def test_board_png_is_rendered_by_the_displays_package(mosquitto: Mosquitto,
                                                             tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (_c, url), \
            aiohttp.ClientSession() as http:
        boards = await _get(http, f"{url}/api/boards")
        assert boards and all(b["png"].endswith(".png") for b in boards)
        async with http.get(url + boards[0]["png"]) as r:
            assert r.status == 200 and r.content_type == "image/png"
            assert (await r.read()).startswith(b"\x89PNG")
        async with http.get(f"{url}/api/boards/nope.png") as r:
            assert r.status == 404


async def test_openapi_document_is_valid_and_lists_every_api_route(mosquitto: Mosquitto,
                                                                   tmp_path: Path) -> None:
    from openapi_spec_validator import validate

    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url), \
            aiohttp.ClientSession() as http:
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
                assert any(r.canonical == path and route.method == method.upper()
                           for r in c.web.runner.app.router.resources() for route in r)


async def test_pages_are_served_locally(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (_c, url), \
            aiohttp.ClientSession() as http:
        for path in ("/", "/t/test-hall/A001", "/book", "/static/live.js", "/static/app.css"):
            async with http.get(url + path) as r:
                assert r.status == 200, path
                body = await r.text()
                assert "http://" not in body and "https://" not in body, path  # no CDN
        async with http.get(f"{url}/t/other-hall/A001") as r:
            assert r.status == 404
        async with http.get(f"{url}/supervisor", headers=await supervisor_auth(http, url)) as r:
            assert r.status == 200
