"""The coordinator and an agent, run as `hallq` processes, speak sd_notify to systemd."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.hall_devices import serial_devices
from firmware_bridge.sim.hall import simulate_devices

from .conftest import Mosquitto
from .halls import small_hall, small_hall_text

pytestmark = pytest.mark.broker


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


async def messages_until(sock: socket.socket, wanted: set[str], timeout: float) -> list[str]:  # noqa: ASYNC109  test helper: each test states its bound
    """Datagram fields received until every ``wanted`` field (e.g. READY=1) has been seen."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while not all(any(f.startswith(w) for f in seen) for w in wanted):
            data = await loop.sock_recv(sock, 4096)
            seen += data.decode().splitlines()
    return seen


def run_hallq(args: list[str], sock: socket.socket, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": sock.getsockname(), "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    with (tmp_path / "service.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hallqctl.cli", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


@pytest.mark.parametrize("role", ["coordinator", "agent"])
async def test_ready_status_watchdog_and_stopping_reach_the_notify_socket(
    role: str, mosquitto: Mosquitto, tmp_path: Path, notify_socket: socket.socket
) -> None:
    config = tmp_path / "hall.toml"
    config.write_text(small_hall_text(mosquitto.url, str(tmp_path / "state"), http_port=0))
    if role == "coordinator":
        args = ["coordinator", "--config", str(config), "--log", str(tmp_path / "log.sqlite")]
        sims = None
    else:
        sim_dir = tmp_path / "sim"
        sims = simulate_devices(serial_devices(small_hall().agent("pi-w1").devices), sim_dir)
        await sims.__aenter__()
        args = [
            "agent",
            "--config",
            str(config),
            "--device",
            "pi-w1",
            "--sim-dir",
            str(sim_dir),
            "--simulate-all",
        ]
    proc = run_hallq(args, notify_socket, tmp_path)
    try:
        seen = await messages_until(
            notify_socket, {"READY=1", "WATCHDOG=1", "STATUS=online"}, timeout=30
        )
        pings_before = sum(f == "WATCHDOG=1" for f in seen)
        seen += await messages_until(notify_socket, {"WATCHDOG=1"}, timeout=5)
        assert sum(f == "WATCHDOG=1" for f in seen) > pings_before, "the watchdog keeps going"
        proc.terminate()
        seen += await messages_until(notify_socket, {"STOPPING=1"}, timeout=15)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if sims is not None:
            await sims.__aexit__(None, None, None)
    assert seen.index("READY=1") < seen.index("STOPPING=1")
    assert any(f.startswith("STATUS=online") for f in seen), seen
