"""Nearby halls on the ticket and booking pages: the coordinator keeps what the city bridge
brings into the hall's broker (``city/{hall}/queue/{service}`` and ``city/link``) and the
pages suggest a clearly quicker hall only while the link is up.

A real Mosquitto and coordinator; a plain MQTT client publishes what the hall broker's
bridge would (``tests/test_city_bridge.py`` shows the bridge does so with a real NATS
city), and headless Chromium shows the box come and go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hallq import messages as m
from hallq.config import CityConfig, HallConfig, NearbyHall
from hallq.topics import HallTopics

from .conftest import Mosquitto, until
from .coordinated import FakeClock, device
from .test_web_browser import CHROMIUM, FLAGS, WAIT_MS, Shots, _playwright
from .test_web_helpers import web_hall, web_running

pytestmark = pytest.mark.broker
T = HallTopics("test-hall")
NEAR = [
    NearbyHall(hall="haizhu", name="海珠区办税服务厅", district="海珠区", distance_km=3.2),
    NearbyHall(hall="yuexiu", name="越秀区办税服务厅", district="越秀区"),
]


def nearby_hall(mosquitto: Mosquitto, tmp_path: Path) -> HallConfig:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    # the small hall's waits are minutes, not the half hours that would make a trip worth it
    return cfg.model_copy(update={"city": CityConfig(nearby=NEAR, nearby_gain_min=1.0)})


class Bridge:
    """Publishes into the hall's broker what its city bridge would."""

    def __init__(self, mosquitto: Mosquitto) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="city-bridge-stand-in", protocol=paho.MQTTv311
        )
        self.client.connect("127.0.0.1", mosquitto.port)
        self.client.loop_start()
        self.rev = 0

    def link(self, up: bool) -> None:
        self.client.publish(T.city_link(), b"1" if up else b"0", 1, retain=True).wait_for_publish(5)

    def queue(self, hall: str, eta_min: float, waiting: int, service: str = "tax-filing") -> None:
        self.rev += 1
        state = m.QueueState(rev=self.rev, service=service, waiting=waiting, eta_min=eta_min)
        self.client.publish(T.city_queue(hall, service), m.encode(state), 1, retain=True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _nearby(http: aiohttp.ClientSession, url: str, query: str) -> Any:
    async with http.get(f"{url}/api/nearby?{query}") as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_nearby_halls_are_suggested_only_when_quicker_and_the_link_is_up(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = nearby_hall(mosquitto, tmp_path)
    bridge = Bridge(mosquitto)
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        aiohttp.ClientSession() as http,
    ):
        await dispenser.wait_connected(10)
        numbers = []
        for _ in range(8):
            reply = await dispenser.request(
                T.req("pi-d1"), m.IssueRequest(kind="issue", service="tax-filing"), timeout=10
            )
            numbers.append(str(reply.ticket.number))
        last = numbers[-1]
        own = (await _nearby(http, url, f"service=tax-filing&ticket={last}"))["wait_min"]
        assert own is not None
        assert own > 2, own

        bridge.queue("haizhu", eta_min=0.5, waiting=1)
        bridge.queue("yuexiu", eta_min=own - 0.5, waiting=9)  # not clearly quicker
        bridge.queue("tianhe", eta_min=0.0, waiting=0)  # not listed: never suggested
        # nothing is suggested until the bridge says the link is up
        await until(lambda: ("haizhu", "tax-filing") in c.nearby.queues, 10)
        body = await _nearby(http, url, f"service=tax-filing&ticket={last}")
        assert body["link"] is False
        assert body["halls"] == []

        bridge.link(True)
        await until(lambda: c.nearby.link is True, 10)
        body = await _nearby(http, url, f"service=tax-filing&ticket={last}")
        assert [h["hall"] for h in body["halls"]] == ["haizhu"]
        first = body["halls"][0]
        assert first["name"] == "海珠区办税服务厅"
        assert first["district"] == "海珠区"
        assert first["distance_km"] == 3.2
        assert first["eta_min"] == 0.5
        assert first["waiting"] == 1
        assert first["age_s"] >= 0
        # the first in line has almost no wait here: no trip is worth it
        assert (await _nearby(http, url, f"service=tax-filing&ticket={numbers[0]}"))["halls"] == []
        # a new ticket's wait (the booking page) is compared the same way
        assert (await _nearby(http, url, "service=tax-filing"))["halls"][0]["hall"] == "haizhu"
        async with http.get(f"{url}/api/nearby?service=no-such") as r:
            assert r.status == 404

        bridge.link(False)  # the city link is cut: the figures may be old, nothing is shown
        await until(lambda: c.nearby.link is False, 10)
        body = await _nearby(http, url, f"service=tax-filing&ticket={last}")
        assert body["link"] is False
        assert body["halls"] == []
        # and the hall keeps serving
        reply = await dispenser.request(
            T.req("pi-d1"), m.IssueRequest(kind="issue", service="tax-filing"), timeout=10
        )
        assert reply.ok
    bridge.close()


async def test_the_ticket_and_booking_pages_show_a_quieter_hall_while_the_city_is_linked(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async_playwright = _playwright()
    shots = Shots()
    cfg = nearby_hall(mosquitto, tmp_path)
    bridge = Bridge(mosquitto)
    async with (
        web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        await dispenser.wait_connected(10)
        for _ in range(8):
            reply = await dispenser.request(
                T.req("pi-d1"), m.IssueRequest(kind="issue", service="tax-filing"), timeout=10
            )
        number = str(reply.ticket.number)
        bridge.queue("haizhu", eta_min=0.5, waiting=1)
        bridge.link(True)
        await until(lambda: c.nearby.fresh and bool(c.nearby.queues), 10)

        async with async_playwright() as p:
            browser = await p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                locale="zh-CN",
                viewport={"width": 390, "height": 844},
            )
            browser.set_default_timeout(WAIT_MS)
            try:
                page = await browser.new_page()
                await page.goto(f"{url}/t/test-hall/{number}")
                await page.wait_for_selector("#live.on")
                await page.wait_for_selector('#nearby-card:not([hidden]) li[data-hall="haizhu"]')
                text = await page.locator("#nearby-card").inner_text()
                assert "海珠区办税服务厅" in text
                assert "3.2 km" in text
                assert "about 1 min, 1 waiting" in text
                await shots.take(page, "ticket-nearby")

                book = await browser.new_page()
                await book.goto(f"{url}/book")
                await book.wait_for_selector('#nearby-card:not([hidden]) li[data-hall="haizhu"]')
                await shots.take(book, "book-nearby")

                bridge.link(False)  # city link down: the box goes, live (SSE), on both pages
                await page.wait_for_selector("#nearby-card", state="hidden")
                await book.wait_for_selector("#nearby-card", state="hidden")
                assert await page.locator("#status").inner_text()  # the ticket page goes on
                await shots.take(page, "ticket-city-down")
            finally:
                await browser.close()
    bridge.close()
