"""The demo: the example hall, every agent, simulated devices and traffic, at high speed;
and what a new user's machine may lack (Mosquitto, espeak-ng) or do wrong (a component that
fails, one that will not stop)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from hallq.config import load_config
from hallqctl.demo import (
    DEFAULT_CONFIG,
    DEMO_PASSWORD,
    DemoError,
    demo_day,
    login_hint,
    opening_time,
    run_demo,
    stop_components,
)
from hallqctl.demo import demo_config as make_demo_config

from .conftest import Mosquitto, until

# a whole simulated hall each: one worker runs them in turn (--dist loadgroup)
pytestmark = [pytest.mark.broker, pytest.mark.xdist_group("demo")]


@pytest.mark.timeout(180)
async def test_the_demo_issues_calls_serves_draws_boards_and_reports_kpis(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    def boards() -> list[str]:
        return sorted(p.name for p in (tmp_path / "state" / "boards").rglob("*.png"))

    def enough(engine: Any) -> bool:
        total = engine.stats_state(0).total
        return total.issued > 30 and total.served > 10 and bool(boards())

    # the morning from 09:30 (hall time holds while the parts start)
    lines = await run_demo(
        DEFAULT_CONFIG,
        speed=240,
        duration=120,
        broker_url=mosquitto.url,
        state_dir=tmp_path,
        live=False,
        volume=4000,
        http_port=0,
        after_open_min=30,
        until=enough,
    )
    counts = re.search(r"issued (\d+), served (\d+)", lines[0])
    assert counts is not None, lines
    issued, served = map(int, counts.groups())
    assert issued > 30, lines
    assert served > 10, lines
    assert any("average wait" in line for line in lines)
    assert any(name.startswith("board") or "main" in name for name in boards()), boards()


@pytest.mark.timeout(180)
async def test_on_a_bare_machine_the_demo_embeds_a_broker_goes_without_voice_and_leaves_the_halls_broker_alone(  # noqa: E501
    mosquitto: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import aiomqtt

    import hallqctl.mosquitto

    # the hall file's broker answers, but the demo must not write a fake hall into it
    monkeypatch.setenv("HALLQ_BROKER_URL", mosquitto.url)
    monkeypatch.setattr(hallqctl.mosquitto, "find_mosquitto", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no espeak-ng
    seen: list[str] = []
    end_topic = "hallq-test/end"
    listening, ended = asyncio.Event(), asyncio.Event()

    async def watch() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe("#")
            listening.set()
            async for message in client.messages:
                if str(message.topic) == end_topic:
                    ended.set()
                else:
                    seen.append(str(message.topic))

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(listening.wait(), 10)
        with caplog.at_level(logging.WARNING):
            # a demo that wrote to the hall's broker would have from its first connection:
            # every agent's presence, the coordinator's retained views, the tickets
            lines = await run_demo(
                DEFAULT_CONFIG,
                speed=240,
                duration=120,
                state_dir=tmp_path,
                live=False,
                volume=4000,
                http_port=0,
                after_open_min=30,
                until=lambda engine: engine.stats_state(0).total.issued > 10,
            )
        # the broker hands its messages to the watcher in order: once this one is in,
        # whatever reached the broker before it is in too
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish(end_topic, b"", qos=1)
        await asyncio.wait_for(ended.wait(), 10)
    finally:
        watcher.cancel()
    counts = re.search(r"issued (\d+), served (\d+)", lines[0])
    assert counts is not None, lines
    assert int(counts.group(1)) > 10, lines
    assert seen == []
    voice_off = [r for r in caplog.records if "voice off" in r.getMessage()]
    assert len(voice_off) == 1
    assert "apt-get install espeak-ng" in voice_off[0].getMessage()


@pytest.mark.timeout(60)
async def test_an_agent_failing_at_start_stops_the_demo_at_once_with_its_cause(
    mosquitto: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import edge.agent
    from displays.errors import VoiceError

    real = edge.agent.run_agent
    cfg = load_config(DEFAULT_CONFIG)
    broken = cfg.agents[len(cfg.agents) // 2].id

    async def run_agent(cfg: Any, agent_id: str, **kwargs: Any) -> None:
        if agent_id == broken:
            raise VoiceError("no voice here")
        await real(cfg, agent_id, **kwargs)

    monkeypatch.setattr(edge.agent, "run_agent", run_agent)
    started = time.monotonic()
    with pytest.raises(DemoError, match=rf"^agent {broken} failed at start: VoiceError: no voice"):
        await run_demo(
            DEFAULT_CONFIG,
            speed=60,
            duration=30,
            broker_url=mosquitto.url,
            state_dir=tmp_path,
            live=False,
            http_port=0,
        )
    assert time.monotonic() - started < 30
    errors = capsys.readouterr().err
    assert errors.startswith(f"hallq demo: error: agent {broken} failed at start"), errors
    assert asyncio.all_tasks() == {asyncio.current_task()}  # every component was stopped


async def test_stopping_names_a_component_that_will_not_stop() -> None:
    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                pass

    async def polite() -> None:
        await asyncio.sleep(10)

    tasks = {
        "agent pi-x": asyncio.create_task(stubborn()),
        "traffic": asyncio.create_task(polite()),
    }
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await stop_components(tasks, timeout=1.0) == ["agent pi-x"]
    assert time.monotonic() - started < 2
    assert tasks["traffic"].cancelled()
    tasks["agent pi-x"].get_coro().close()


@pytest.mark.timeout(60)
def test_a_service_that_will_not_stop_is_named_and_the_process_exits_non_zero(
    tmp_path: Path,
) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, os, signal
        from hallqctl.runner import run_bounded

        async def deaf() -> None:
            loop = asyncio.get_running_loop()
            loop.call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    pass

        run_bounded(deaf, stop_s=0.5)
    """)
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 70, proc
    assert "did not stop within" in proc.stderr, proc.stderr
    assert "deaf" in proc.stderr, proc.stderr
    assert time.monotonic() - started < 20


def test_the_demo_prints_its_own_login_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hallq.config import BrokerConfig

    broker = BrokerConfig(url="mqtt://127.0.0.1:1")
    base = load_config(DEFAULT_CONFIG)
    assert DEMO_PASSWORD in login_hint(base, make_demo_config(base, broker, tmp_path, 0))
    monkeypatch.setenv("HALLQ_SUPERVISOR_PASSWORD", "the-real-one")
    base = load_config(DEFAULT_CONFIG)
    cfg = make_demo_config(base, broker, tmp_path, 0)
    hint = login_hint(base, cfg)
    assert DEMO_PASSWORD not in hint
    assert "the-real-one" not in hint
    assert cfg.coordinator.supervisor_password is not None
    assert cfg.coordinator.supervisor_password.get_secret_value() == "the-real-one"


def test_the_demo_s_tickets_lead_to_its_own_dashboard(tmp_path: Path) -> None:
    """Found by a taxpayer: the demo's printed QR codes led to the example hall's own
    server (http://queue.liwan.hall.lan:8080), which no phone reaches."""
    from hallq.config import BrokerConfig
    from hallqctl.mosquitto import free_port

    base = load_config(DEFAULT_CONFIG)
    port = free_port()
    cfg = make_demo_config(base, BrokerConfig(url="mqtt://127.0.0.1:1"), tmp_path, port)
    assert cfg.hall.ticket_url("A0001").startswith(f"http://127.0.0.1:{port}/t/")


def test_a_dashboard_port_asked_for_and_taken_stops_the_demo_saying_so() -> None:
    """Found by a new user: `--http-port 8092` with 8092 in use (another demo) ran a demo
    with no dashboard, its one hint naming a hall-file key."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "hallqctl.cli",
                "demo",
                "--duration",
                "5",
                "--http-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1, proc
    first = proc.stderr.splitlines()[0]
    assert first == (
        f"hallq demo: error: port {port} is in use (another demo?): choose another --http-port"
    ), proc.stderr


@pytest.mark.timeout(240)
def test_ctrl_c_at_a_terminal_stops_the_demo_quietly_with_its_kpis() -> None:
    """Found by a new user: a terminal's Ctrl-C signals its whole foreground group, so the
    private Mosquitto and espeak-ng got it too. The broker went first, and the demo's
    stop printed ~40 lines of its clients losing it and announcements failing."""
    import json
    import os
    import signal
    import urllib.request

    from hallqctl.mosquitto import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hallqctl.cli", "demo", "--http-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a shell makes for a command
    )
    try:
        deadline = time.monotonic() + 120
        calls: list[Any] = []
        while not calls:  # the hall is calling: every part has started
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the demo made no call in 120 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/hall", timeout=5) as r:
                    calls = json.load(r)["board"]["calls"]
            except OSError:
                pass
            time.sleep(0.2)  # (polling a page from another process: nothing to wait on)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err
    assert "average wait" in out, out
    # into a pipe, progress lines instead of a redrawn table (nothing came until the end)
    assert re.search(r"^\d\d:\d\d hall time: issued \d+, waiting \d+", out, re.M), out
    assert "lost the broker" not in err, err
    assert "failed on" not in err, err  # an announcement's espeak-ng killed under it
    assert " ERROR " not in err, err


@pytest.mark.timeout(120)
async def test_ctrl_c_ends_the_day_with_its_kpis(
    mosquitto: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during the day: the KPIs, and nothing the demo started runs on. The web side is
    on with a live stream open (as the hall view keeps one): a task left behind with nobody
    to cancel it again once hung the loop's shutdown for good (this check was the browser
    demo test's, which now runs the demo in a process of its own)."""
    import aiohttp

    from hallqctl.mosquitto import free_port

    port = free_port()
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    demo = asyncio.create_task(
        run_demo(
            DEFAULT_CONFIG,
            speed=240,
            broker_url=mosquitto.url,
            state_dir=tmp_path,
            live=False,
            http_port=port,
            on_ready=ready.set_result,
        )
    )
    coordinator = await asyncio.wait_for(asyncio.shield(ready), 60)
    async with aiohttp.ClientSession() as http:
        stream = await http.get(f"http://127.0.0.1:{port}/api/stream")
        assert stream.status == 200
        await asyncio.wait_for(stream.content.readline(), 10)  # the stream is live
        await until(lambda: bool(coordinator.engine.tickets), timeout=30)  # the day is under way
        demo.cancel()  # what SIGINT does through hallqctl.runner
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(demo, 20)
        stream.close()
    out = capsys.readouterr().out
    assert "today's KPIs" in out, out
    assert re.search(r"issued \d+, served \d+", out), out
    me = asyncio.current_task()
    await until(lambda: asyncio.all_tasks() == {me}, timeout=10)


def test_the_demo_plays_a_day_the_hall_opens() -> None:
    """Run on a Sunday, the demo played a full hall on the day its own comfort index
    called 休息. It plays the next day the hall opens, by the hall file's calendar."""
    cfg = load_config(DEFAULT_CONFIG, environ={})
    d = dt.date
    assert demo_day(cfg, d(2026, 12, 7)) == d(2026, 12, 7)  # a Monday: today
    assert demo_day(cfg, d(2026, 12, 5)) == d(2026, 12, 7)  # Saturday, Sunday: Monday
    assert demo_day(cfg, d(2026, 9, 30)) == d(2026, 9, 30)  # the eve of 国庆节
    assert demo_day(cfg, d(2026, 10, 1)) == d(2026, 10, 8)  # its seven days closed
    assert demo_day(cfg, d(2026, 9, 19)) == d(2026, 9, 20)  # a 调休 Sunday opens
    assert dt.datetime.fromtimestamp(opening_time(cfg, 3.0), cfg.hall.tzinfo).date() == (
        demo_day(cfg, dt.datetime.now(cfg.hall.tzinfo).date())
    )
