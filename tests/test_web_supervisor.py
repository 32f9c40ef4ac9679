"""The supervisor desk: Basic auth, and window commands taking the pads' path."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from hallq import messages as m
from hallq.topics import HallTopics

from .conftest import Inbox, Mosquitto
from .coordinated import FakeClock, device
from .test_web_helpers import PASSWORD, basic, supervisor_auth, web_hall, web_running

pytestmark = pytest.mark.broker
T = HallTopics("test-hall")


async def test_supervisor_routes_need_the_right_credentials(mosquitto: Mosquitto,
                                                            tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    async with web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (c, url), \
            aiohttp.ClientSession() as http:
        for headers in ({}, basic("supervisor", "wrong"), basic("someone", PASSWORD),
                        {"Authorization": "Basic !!notbase64"}):
            for method, path in (("GET", "/supervisor"), ("GET", "/api/supervisor/whoami"),
                                 ("POST", "/api/supervisor/windows/1")):
                async with http.request(method, url + path, headers=headers,
                                        json={"action": "pause"}) as r:
                    assert r.status == 401, (path, headers)
                    assert r.headers["WWW-Authenticate"].startswith("Basic ")
        assert c.engine.windows[1].status == "open"
        async with http.get(f"{url}/api/supervisor/whoami", headers=supervisor_auth()) as r:
            assert r.status == 200 and (await r.json())["user"] == "supervisor"


async def test_no_password_configured_means_nobody_gets_in(mosquitto: Mosquitto,
                                                           tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    cfg.coordinator.supervisor_password = None
    async with web_running(cfg, tmp_path / "log.sqlite", FakeClock()) as (_c, url), \
            aiohttp.ClientSession() as http, \
            http.get(f"{url}/api/supervisor/whoami", headers=supervisor_auth()) as r:
        assert r.status == 401


async def test_a_supervisor_command_is_logged_and_published_like_a_pads(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    log_path = tmp_path / "log.sqlite"
    window2 = inbox()
    async with web_running(cfg, log_path, FakeClock()) as (c, url), \
            device(cfg, "board", "board-1", tmp_path) as board, \
            aiohttp.ClientSession() as http:
        await board.subscribe(T.window_state(2), window2)
        await window2.wait_for(lambda ps: bool(ps))
        auth = supervisor_auth()
        async with http.post(f"{url}/api/supervisor/windows/2", headers=auth,
                             json={"action": "pause"}) as r:
            assert r.status == 200 and (await r.json())["ok"]
        assert c.engine.windows[2].status == "paused"
        await window2.wait_for(lambda ps: ps[-1].status == "paused")

        async with http.post(f"{url}/api/supervisor/windows/2", headers=auth,
                             json={"action": "set_skills",
                                   "skills": {"invoice": 1.0, "tax-filing": 2.0}}) as r:
            assert r.status == 200
        await window2.wait_for(lambda ps: ps[-1].skills == {"invoice": 1.0, "tax-filing": 2.0})

        async with http.post(f"{url}/api/supervisor/windows/2", headers=auth,
                             json={"action": "call"}) as r:
            assert r.status == 400  # not a supervisor action here
        async with http.post(f"{url}/api/supervisor/windows/2", headers=auth,
                             json={"action": "set_skills", "skills": {"nope": 1.0}}) as r:
            assert r.status == 409
            assert (await r.json())["error"]["code"] == "unknown_service"
        async with http.post(f"{url}/api/supervisor/windows/99", headers=auth,
                             json={"action": "open"}) as r:
            assert r.status == 409
        # found by tests/test_fuzz_http.py: these were 500s
        async with http.post(f"{url}/api/supervisor/windows/2", headers=auth,
                             json={"action": []}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "bad_action"
        async with http.post(f"{url}/api/supervisor/appointments", headers=auth,
                             json={"service": "tax-filing", "start": "09:00", "day": 5}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "bad_day"
    with sqlite3.connect(log_path) as db:
        rows = db.execute("SELECT source, payload FROM entries WHERE kind = 'window'").fetchall()
    assert [(src, json.loads(p)["action"]) for src, p in rows][:2] == [
        ("supervisor/supervisor", "pause"), ("supervisor/supervisor", "set_skills")]
    assert PASSWORD not in (tmp_path / "log.sqlite").read_bytes().decode("latin1")


async def test_a_closed_window_survives_a_restart(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = web_hall(mosquitto.url, str(tmp_path / "state"))
    log_path = tmp_path / "log.sqlite"
    async with web_running(cfg, log_path, FakeClock()) as (_c, url), \
            aiohttp.ClientSession() as http, \
            http.post(f"{url}/api/supervisor/windows/1", headers=supervisor_auth(),
                      json={"action": "close"}) as r:
        assert r.status == 200
    async with web_running(cfg, log_path, FakeClock()) as (c, url):
        assert c.engine.windows[1].status == "closed"
        # and the pads are refused on a closed window, through the same engine
        async with device(cfg, "window", "pi-w1", tmp_path) as pad:
            await pad.wait_connected(10)
            reply = await pad.request(T.cmd("window", "pi-w1"), m.WindowAction(
                window=1, action="call"), timeout=10)
            assert not reply.ok and reply.error.code == "window_closed"
