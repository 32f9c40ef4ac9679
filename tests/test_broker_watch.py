"""The hall broker's watchdog against a real Mosquitto: a live broker is left alone, a
stopped one is systemd's (refused, not hung), and one that accepts connections but never
answers (SIGSTOP: the kernel still completes the TCP handshake, as for Mosquitto 2.0.11
spinning in its keepalive check) is reported hung after the given misses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hallq.config import BrokerConfig
from hallqctl.brokerwatch import HUNG_EXIT, Probe, probe, watch
from hallqctl.mosquitto import Mosquitto

from .halls import small_hall_text

pytestmark = pytest.mark.broker


async def test_a_live_broker_answers_and_a_stopped_one_is_refused_not_hung(
    mosquitto: Mosquitto,
) -> None:
    broker = BrokerConfig(url=mosquitto.url)
    live = await probe(broker, 5.0)
    assert (live.answered, live.hung) == (True, False)
    mosquitto.stop()
    down = await probe(broker, 5.0)
    assert (down.answered, down.hung) == (False, False)
    assert down.reason.startswith("refused")


async def test_a_broker_that_accepts_but_never_answers_is_hung_after_the_misses(
    mosquitto: Mosquitto,
) -> None:
    broker = BrokerConfig(url=mosquitto.url)
    assert mosquitto.proc is not None
    seen: list[Probe] = []
    os.kill(mosquitto.proc.pid, signal.SIGSTOP)
    try:
        async with asyncio.timeout(30):
            verdict = await watch(
                broker, every=0.05, answer_within=0.3, misses=3, on_probe=seen.append
            )
    finally:
        os.kill(mosquitto.proc.pid, signal.SIGCONT)
    assert [p.hung for p in seen] == [True, True, True]
    assert "hung" in verdict
    assert "no CONNACK within 0.3 s" in verdict


async def test_the_watch_starts_counting_again_when_the_broker_answers(
    mosquitto: Mosquitto,
) -> None:
    broker = BrokerConfig(url=mosquitto.url)
    assert mosquitto.proc is not None
    pid = mosquitto.proc.pid
    seen: list[Probe] = []

    def on_probe(result: Probe) -> None:
        seen.append(result)
        if len(seen) == 2:  # two silent probes, then the broker comes back for one
            os.kill(pid, signal.SIGCONT)
        if len(seen) == 3:
            os.kill(pid, signal.SIGSTOP)

    os.kill(pid, signal.SIGSTOP)
    try:
        async with asyncio.timeout(30):
            await watch(broker, every=0.05, answer_within=0.3, misses=3, on_probe=on_probe)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert [p.hung for p in seen] == [True, True, False, True, True, True]


def test_the_command_exits_3_naming_the_hung_broker(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """What the unit's ExecStopPost restarts the broker on."""
    hall = tmp_path / "hall.toml"
    hall.write_text(small_hall_text(mosquitto.url, str(tmp_path / "state")), encoding="utf-8")
    assert mosquitto.proc is not None
    os.kill(mosquitto.proc.pid, signal.SIGSTOP)
    try:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "hallqctl.cli", "broker-watch", "--config", str(hall)),
                *("--every", "0.1", "--timeout", "0.3", "--misses", "2"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.kill(mosquitto.proc.pid, signal.SIGCONT)
    assert done.returncode == HUNG_EXIT, done.stderr
    assert f"broker {mosquitto.url} accepted no MQTT session 2 times in a row" in done.stderr
