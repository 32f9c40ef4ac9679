"""The web server as ``hallq coordinator`` runs it: config, env override, start and stop."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest

from coordinator.service import serve
from hallq.aio import cancel_and_wait
from hallq.config import parse_config
from hallq.errors import ConfigError

from .conftest import Mosquitto, free_port
from .halls import small_hall_text
from .test_web_helpers import login


def test_supervisor_password_comes_from_the_environment_and_is_never_shown() -> None:
    text = small_hall_text(supervisor_user="desk")
    cfg = parse_config(text, environ={"HALLQ_SUPERVISOR_PASSWORD": "from-env-123"})
    assert cfg.coordinator.supervisor_password is not None
    assert cfg.coordinator.supervisor_password.get_secret_value() == "from-env-123"
    assert "from-env-123" not in repr(cfg.coordinator)
    assert cfg.coordinator.http_port == 8080
    assert cfg.coordinator.http_host == "127.0.0.1"
    with pytest.raises(ConfigError) as exc:
        parse_config(small_hall_text(http_port=70000, supervisor_password=""), environ={})
    assert "http_port" in str(exc.value)
    assert "supervisor_password" in str(exc.value)


def test_services_list_their_materials() -> None:
    text = small_hall_text().replace(
        "wait_target_min = 10\n", 'wait_target_min = 10\nmaterials = ["身份证"]\n', 1
    )
    cfg = parse_config(text, environ={})
    assert cfg.services[0].materials == ["身份证"]
    assert cfg.services[1].materials == []


@pytest.mark.broker
async def test_serve_runs_the_web_server_and_stops_it(mosquitto: Mosquitto, tmp_path: Path) -> None:
    port = free_port()
    text = small_hall_text(mosquitto.url, str(tmp_path / "state"), http_port=port)
    cfg = parse_config(text, environ={"HALLQ_SUPERVISOR_PASSWORD": "pw-for-test"})
    ready = asyncio.Event()
    task = asyncio.create_task(
        serve(cfg, log_path=tmp_path / "log.sqlite", dispatch="pure", ready=ready)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.wait_for(ready.wait(), 15)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/hall") as r:
                assert r.status == 200
                assert (await r.json())["hall"]["id"] == "test-hall"
            async with http.get(f"{url}/api/health") as r:
                assert r.status == 200
                assert (await r.json())["broker_connected"] is True
            # the first supervisor, from the environment, hashed in memory
            async with http.get(
                f"{url}/api/supervisor/whoami",
                headers=await login(http, url, "supervisor", "pw-for-test"),
            ) as r:
                assert r.status == 200
            # an open live stream must not hold up the shutdown
            stream = await http.get(f"{url}/api/stream")
            await stream.content.readline()
            await asyncio.wait_for(cancel_and_wait(task), 10)
            with contextlib.suppress(aiohttp.ClientError):
                await stream.read()
            stream.release()
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientConnectionError):
                await http.get(f"{url}/api/hall")
    finally:
        await cancel_and_wait(task)


@pytest.mark.broker
async def test_a_busy_port_does_not_stop_the_queue(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    cfg = parse_config(
        small_hall_text(mosquitto.url, str(tmp_path / "state"), http_port=port), environ={}
    )
    ready = asyncio.Event()
    task = asyncio.create_task(
        serve(cfg, log_path=tmp_path / "log.sqlite", dispatch="pure", ready=ready)
    )
    try:
        await asyncio.wait_for(ready.wait(), 15)
        assert "web dashboard not started" in caplog.text
    finally:
        await cancel_and_wait(task)
        blocker.close()
        await blocker.wait_closed()
