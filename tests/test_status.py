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
    status_advice,
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
    # a field engineer read "offline │ all ok" for a killed coordinator, and no next step
    console = Console(record=True, width=160)
    render_status(list(rows.values()), console)
    assert "last: link: link_down" in console.export_text()
    advice = status_advice(list(rows.values()))
    assert advice[0].startswith("the coordinator is offline: the hall issues and calls nothing")
    assert "sudo systemctl start hallq-coordinator" in advice[0]
    assert advice[1].startswith("never seen: disp-01. Not installed yet")
    assert advice[2].startswith("offline: win-01. On that Pi: systemctl status")


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
    assert "read-only 'operator' login (broker.credentials_dir/operator/)" in caveat


def test_an_unreachable_broker_raises_a_clear_error_with_its_fix(tmp_path: Path) -> None:
    """Found by a new user and a field engineer: "Connection refused" with no next step;
    without the operator's credentials on the machine, CERTIFICATE_VERIFY_FAILED."""
    import asyncio

    port = free_port()
    cfg = hall(f"mqtt://127.0.0.1:{port}")
    with pytest.raises(StatusUnavailable) as refused:
        asyncio.run(collect_status(cfg, timeout=1))
    said = str(refused.value)
    assert said.startswith(f"cannot read the hall's status from 127.0.0.1:{port}: ")
    assert "fix: start the broker (sudo systemctl status mosquitto)" in said
    (tmp_path / "creds" / "pi-w01").mkdir(parents=True)
    cfg.broker.credentials_dir = tmp_path / "creds"
    with pytest.raises(StatusUnavailable) as no_login:
        asyncio.run(collect_status(cfg, timeout=1))
    assert str(no_login.value).startswith(
        f"no read-only login on this machine: {tmp_path}/creds/operator is missing"
    )
    assert "copy devices/operator/ from `hallq provision --out DIR`" in str(no_login.value)


def test_the_default_broker_is_said_to_be_a_guess() -> None:
    from hallq.config import parse_config

    cfg = parse_config(  # a hall file naming no broker at all
        '[hall]\nid = "st-hall"\nname = "x"\ntimezone = "Asia/Shanghai"\n'
        '[[zones]]\nid = "z1"\nname = "z"\nsite = "main"\n'
        '[[services]]\ncode = "tax"\nname = "t"\nprefix = "A"\n'
        '[[windows]]\nnumber = 1\nzone = "z1"\nall_services = true\n',
        "hall.toml",
    )
    caveat = status_caveat(cfg)
    assert caveat is not None
    assert "broker.url is not set" in caveat
