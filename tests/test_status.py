"""hallq status against a real Mosquitto, with sessions publishing presence and health."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from hallq.bus import Session
from hallq.config import BrokerConfig, HallConfig
from hallq.messages import ComponentHealth, DeviceHealth
from hallqctl.mosquitto import Mosquitto, free_port
from hallqctl.status import (
    Seen,
    StatusUnavailable,
    collect_status,
    render_status,
    status_caveat,
    status_exit_code,
)

from .halls import one_window_hall

pytestmark = pytest.mark.broker

AGENTS = """
[[agents]]
id = "win-01"
role = "window"
[[agents.devices]]
id = "pad-1"
kind = "call_pad"
window = 1
serial = { port = "sim", address = 1 }

[[agents]]
id = "disp-01"
role = "dispenser"
[[agents.devices]]
id = "printer"
kind = "printer"
serial = { port = "/dev/ttyUSB1" }
"""


def hall(url: str) -> HallConfig:
    return one_window_hall("st-hall", AGENTS, url)


def session(url: str, role: str, client: str, tmp_path: Path) -> Session:
    return Session(
        BrokerConfig(url=url, keepalive=5),
        hall="st-hall",
        role=role,
        client_id=client,
        state_dir=tmp_path / client,
        backoff_initial=0.05,
        backoff_max=0.5,
    )


async def test_status_of_a_hall_in_every_state(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = hall(mosquitto.url)
    coord = session(mosquitto.url, "coordinator", "coordinator", tmp_path)
    window = session(mosquitto.url, "window", "win-01", tmp_path)
    stray = session(mosquitto.url, "board", "board-9", tmp_path)
    async with coord, window:
        await coord.wait_connected(10)
        await window.wait_connected(10)
        await window.publish(
            window.topics.health("window", "win-01"),
            DeviceHealth(
                rev=window.next_rev(),
                components=[
                    ComponentHealth(name="pad-1", ok=True, status="ok"),
                    ComponentHealth(name="link", ok=False, status="link_down", detail="ttyUSB0"),
                ],
            ),
        )
        async with stray:
            await stray.wait_connected(10)
        rows = {r.client: r for r in await collect_status(cfg, timeout=2)}

        assert [r.client for r in rows.values()][:3] == ["coordinator", "win-01", "disp-01"]
        assert rows["coordinator"].presence is Seen.ONLINE
        assert rows["win-01"].presence is Seen.ONLINE
        assert rows["win-01"].health == "link: link_down"
        assert rows["win-01"].health_ok is False
        assert rows["disp-01"].presence is Seen.NEVER_SEEN
        assert rows["disp-01"].last_seen is None
        assert rows["board-9"].presence is Seen.OFFLINE
        assert not rows["board-9"].configured
        assert status_exit_code(list(rows.values())) == 1  # disp-01 never seen

        console = Console(record=True, width=160)
        render_status(list(rows.values()), console)
        out = console.export_text()
        assert "never seen" in out
        assert "link: link_down" in out
        assert "not in hall file" in out

    rows = {r.client: r for r in await collect_status(cfg, timeout=2)}
    assert rows["coordinator"].presence is Seen.OFFLINE
    assert rows["win-01"].presence is Seen.OFFLINE  # clean goodbye
    assert rows["win-01"].health_ok is False  # last health stays retained


async def test_all_online_exits_zero(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = hall(mosquitto.url)
    clients = [
        session(mosquitto.url, "coordinator", "coordinator", tmp_path),
        session(mosquitto.url, "window", "win-01", tmp_path),
        session(mosquitto.url, "dispenser", "disp-01", tmp_path),
    ]
    async with clients[0], clients[1], clients[2]:
        for c in clients:
            await c.wait_connected(10)
        rows = await collect_status(cfg, timeout=2)
    assert all(r.online for r in rows)
    assert status_exit_code(rows) == 0


def test_caveat_for_an_agents_credentials() -> None:
    cfg = hall("mqtt://127.0.0.1:1883")
    assert status_caveat(cfg) is None
    cfg.broker.username = "win-01"
    caveat = status_caveat(cfg)
    assert caveat is not None
    assert "coordinator's credentials" in caveat


def test_an_unreachable_broker_raises_a_clear_error() -> None:
    import asyncio

    cfg = hall(f"mqtt://127.0.0.1:{free_port()}")
    with pytest.raises(StatusUnavailable, match="cannot read the hall's status"):
        asyncio.run(collect_status(cfg, timeout=1))
