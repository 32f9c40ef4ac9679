"""hallq doctor against a simulated RS-485 bus on a pty, a real Mosquitto, and fake /dev nodes."""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path

import pytest
from pydantic import SecretStr
from rich.console import Console

from firmware_bridge.sim import BusSimulator, PrinterSimulator, SimCallPad, SimRatingPad
from hallq.bus import Session
from hallq.config import BrokerConfig, HallConfig
from hallqctl.doctor import (
    Check,
    Result,
    check_clock,
    check_disk,
    check_node,
    exit_code,
    render_checks,
    run_doctor,
)
from hallqctl.mosquitto import Mosquitto, free_port

from .halls import ONE_WINDOW_HALL, one_window_hall

AGENTS = """
[[agents]]
id = "win-01"
role = "window"
[[agents.devices]]
id = "pad-1"
kind = "call_pad"
window = 1
serial = {{ port = "{port}", address = 1 }}
[[agents.devices]]
id = "rate-1"
kind = "rating_pad"
window = 1
serial = {{ port = "{port}", address = 2 }}

[[agents]]
id = "disp-01"
role = "dispenser"
[[agents.devices]]
id = "prn"
kind = "printer"
serial = {{ port = "sim:printer", baud = 115200 }}

[[agents]]
id = "board-1"
role = "board"
host = "board-pi"
[[agents.devices]]
id = "led-1"
kind = "led_max7219"
zone = "z1"
spi = {{ port = 0, device = 0 }}
led = {{ width = 32, height = 8 }}
[[agents.devices]]
id = "keys"
kind = "speaker"
"""


def hall(tmp_path: Path, *, url: str | None = None, port: str | None = None) -> HallConfig:
    return one_window_hall(
        "doc-hall",
        AGENTS.format(port=port or "sim:rs485"),
        url or f"mqtt://127.0.0.1:{free_port()}",
        tmp_path / "state",
    )


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_devices_on_a_simulated_bus_answer(tmp_path: Path) -> None:
    cfg = hall(tmp_path)
    async with BusSimulator(tmp_path / "rs485", [SimCallPad(1), SimRatingPad(2)]):
        checks = by_name(
            await run_doctor(cfg, "win-01", timeout=2, sim_dir=tmp_path, check_network=False)
        )
    assert checks[f"serial {tmp_path / 'rs485'}"].result is Result.OK
    assert checks["device pad-1"].result is Result.OK, checks["device pad-1"]
    assert "call_pad" in checks["device pad-1"].detail
    assert checks["device rate-1"].result is Result.OK
    assert checks["disk"].result in (Result.OK, Result.WARN)


async def test_a_silent_device_and_a_device_at_the_wrong_address(tmp_path: Path) -> None:
    cfg = hall(tmp_path)
    # a rating pad answers where the call pad should be; nothing at address 2
    async with BusSimulator(tmp_path / "rs485", [SimRatingPad(1)]):
        checks = by_name(
            await run_doctor(cfg, "win-01", timeout=1, sim_dir=tmp_path, check_network=False)
        )
    wrong, silent = checks["device pad-1"], checks["device rate-1"]
    assert wrong.result is Result.FAIL
    assert "answers as rating_pad" in wrong.detail
    assert "address" in wrong.fix
    assert silent.result is Result.FAIL
    assert "no answer at address 2" in silent.detail
    assert "RS-485" in silent.fix
    assert exit_code(list(checks.values())) == 1


async def test_a_missing_port_says_to_plug_it_in(tmp_path: Path) -> None:
    missing = "/dev/ttyUSB-hallq-test-missing"
    cfg = hall(tmp_path, port=missing)
    checks = by_name(await run_doctor(cfg, "win-01", timeout=0.5, check_network=False))
    port = checks[f"serial {missing}"]
    assert port.result is Result.FAIL
    assert "not found" in port.detail
    assert "plug in" in port.fix
    assert "pad-1" in port.fix
    assert "device pad-1" not in checks  # not polled: one row for the port is enough
    assert exit_code(list(checks.values())) == 1


async def test_an_unknown_agent_lists_the_known_ones(tmp_path: Path) -> None:
    checks = await run_doctor(hall(tmp_path), "nope", check_network=False)
    assert checks[0].result is Result.FAIL
    assert "win-01" in checks[0].fix


async def test_without_an_agent_id_the_agents_of_this_host_are_checked(tmp_path: Path) -> None:
    cfg = hall(tmp_path)
    dev = tmp_path / "dev"
    dev.mkdir()
    here = await run_doctor(
        cfg,
        None,
        hostname="board-pi.hall.lan",
        dev_dir=dev,
        check_network=False,
        font_finder=lambda: None,
    )
    assert "spi led-1" in by_name(here)
    assert "device pad-1" not in by_name(here)
    server = await run_doctor(cfg, None, hostname="server", check_network=False)
    # no device of this host: only what any machine of the hall is asked, and that no
    # device was checked (a field engineer on a Pi whose host is free text saw "all ok")
    assert [c.name for c in server if c.name not in ("dispatch core", "mosquitto")] == [
        "agents",
        "clock",
        "disk",
        "hall calendar",
    ]
    assert by_name(server)["agents"].result is Result.UNKNOWN
    assert "this machine (server): no device checked" in by_name(server)["agents"].detail
    assert "--device" in by_name(server)["agents"].fix


async def test_an_id_reader_without_the_hash_key_fails_and_so_does_its_agent(
    tmp_path: Path,
) -> None:
    """Found following the field guide, which put the ID hash key on the server only: the
    dispenser's agent died with a traceback, ten times under systemd, and doctor said
    nothing. Doctor fails it, and the agent says what to put where."""
    from click.testing import CliRunner

    from hallqctl.cli import main as cli

    reader = 'id = "disp-01"\nrole = "dispenser"\n[[agents.devices]]\nid = "card"\n'
    reader += 'kind = "id_reader"\nserial = {{ port = "/dev/ttyNOPE", address = 3 }}\n'
    agents = AGENTS.replace('id = "disp-01"\nrole = "dispenser"\n', reader)
    cfg = one_window_hall("doc-hall", agents.format(port="sim:rs485"), "mqtt://127.0.0.1:1")
    checks = by_name(await run_doctor(cfg, "disp-01", check_network=False))
    assert checks["id key"].result is Result.FAIL
    assert "card of agent 'disp-01' reads ID cards" in checks["id key"].detail
    assert "HALLQ_ID_HASH_KEY" in checks["id key"].fix
    assert "id key" not in by_name(await run_doctor(cfg, "win-01", check_network=False))
    text = ONE_WINDOW_HALL.format(hall_id="doc-hall", broker_url="mqtt://127.0.0.1:1")
    hall_file = tmp_path / "hall.toml"
    hall_file.write_text(text + agents.format(port="sim:rs485"), encoding="utf-8")
    started = CliRunner().invoke(
        cli, ["agent", "--config", str(hall_file), "--device", "disp-01"], env={}
    )
    assert started.exit_code == 1, started.output
    assert "reads ID cards, and security.id_hash_key is not set" in started.output
    assert "Traceback" not in started.output


def test_no_permission_names_the_group_to_join(tmp_path: Path) -> None:
    node = tmp_path / "ttyUSB0"
    node.write_text("")
    node.chmod(0o660)
    os.chown(node, 0, 20) if os.geteuid() == 0 else None  # group dialout where we can
    check = check_node("serial", node, "plug it in", user="nobody")
    assert check.result is Result.FAIL
    group = check.fix.split("group ")[1].split(":")[0]
    assert f"add user nobody to group {group}" in check.fix
    pwd.getpwnam("nobody")  # the test relies on this account existing


async def test_gpio_and_spi_nodes(tmp_path: Path) -> None:
    cfg = hall(tmp_path)
    dev = tmp_path / "dev"
    dev.mkdir()
    checks = by_name(
        await run_doctor(cfg, "board-1", dev_dir=dev, check_network=False, font_finder=lambda: None)
    )
    spi = checks["spi led-1"]
    assert spi.result is Result.FAIL
    assert "raspi-config" in spi.fix
    assert checks["board font"].result is Result.WARN
    assert "fonts-unifont" in checks["board font"].fix
    (dev / "spidev0.0").write_text("")
    (dev / "spidev0.0").chmod(0o666)
    checks = by_name(
        await run_doctor(
            cfg,
            "board-1",
            dev_dir=dev,
            check_network=False,
            font_finder=lambda: tmp_path / "unifont.otf",
        )
    )
    assert checks["spi led-1"].result is Result.OK
    assert checks["board font"].result is Result.OK


@pytest.mark.broker
async def test_broker_and_coordinator_online_then_broker_stopped(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = hall(tmp_path, url=mosquitto.url)
    checks = by_name(await run_doctor(cfg, None, timeout=2))
    assert checks["broker"].result is Result.OK
    assert checks["coordinator"].result is Result.FAIL
    assert "never seen" in checks["coordinator"].detail
    assert "systemctl start hallq-coordinator" in checks["coordinator"].fix

    broker = BrokerConfig(url=mosquitto.url, keepalive=5)
    async with Session(
        broker,
        hall="doc-hall",
        role="coordinator",
        client_id="coordinator",
        state_dir=tmp_path / "coord",
    ) as session:
        await session.wait_connected(10)
        checks = by_name(await run_doctor(cfg, None, timeout=2))
    assert checks["coordinator"].result is Result.OK, checks["coordinator"]
    checks = by_name(await run_doctor(cfg, None, timeout=2))
    assert checks["coordinator"].result is Result.FAIL
    assert "offline" in checks["coordinator"].detail

    mosquitto.stop()
    checks = by_name(await run_doctor(cfg, None, timeout=1))
    assert checks["broker"].result is Result.FAIL
    assert "systemctl status mosquitto" in checks["broker"].fix
    assert "coordinator" not in checks  # cannot tell without a broker
    assert exit_code(list(checks.values())) == 1


@pytest.mark.broker
async def test_wrong_password_points_at_the_credentials(tmp_path: Path) -> None:
    import subprocess

    workdir = tmp_path / "broker"
    workdir.mkdir()
    passwd = workdir / "passwd"

    await asyncio.to_thread(
        subprocess.run, ["mosquitto_passwd", "-c", "-b", str(passwd), "win-01", "right"], check=True
    )
    broker = Mosquitto(workdir, extra=f"allow_anonymous false\npassword_file {passwd}")
    broker.start()
    try:
        cfg = hall(tmp_path, url=broker.url, port="sim")
        wrong = cfg.broker.model_copy(update={"username": "win-01", "password": SecretStr("wrong")})
        cfg = cfg.model_copy(update={"broker": wrong})
        checks = by_name(await run_doctor(cfg, None, timeout=2))
    finally:
        broker.kill()
    assert checks["broker"].result is Result.FAIL
    assert "win-01 logs in with its `hallq provision` password" in checks["broker"].fix


def test_clock_states(tmp_path: Path) -> None:
    fake = tmp_path / "timedatectl"
    fake.write_text("#!/bin/sh\necho no\n")
    fake.chmod(0o755)
    assert check_clock([str(fake)]).result is Result.WARN
    fake.write_text("#!/bin/sh\necho yes\n")
    assert check_clock([str(fake)]).result is Result.OK
    fake.write_text("#!/bin/sh\necho 'System has not been booted with systemd' >&2\nexit 1\n")
    unknown = check_clock([str(fake)])
    assert unknown.result is Result.UNKNOWN
    assert "booted" in unknown.detail
    assert check_clock(["no-such-timedatectl"]).result is Result.UNKNOWN
    assert exit_code([unknown]) == 0


def test_disk_space(tmp_path: Path) -> None:
    assert check_disk(tmp_path / "not" / "yet", min_free_mb=0, warn_free_mb=0).result is Result.OK
    full = check_disk(tmp_path, min_free_mb=10**12)
    assert full.result is Result.FAIL
    assert "MB free" in full.detail


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root")
def test_a_read_only_card_fails_the_disk_check(tmp_path: Path) -> None:
    from .test_read_only_card import read_only

    (tmp_path / "state").mkdir()
    with read_only(tmp_path / "state"):
        check = check_disk(tmp_path / "state", min_free_mb=0, warn_free_mb=0)
    assert check.result is Result.FAIL
    assert "read-only file system" in check.detail
    assert "replace the card" in check.fix


def test_render_shows_the_fix() -> None:
    console = Console(record=True, width=200)
    render_checks(
        [
            Check(
                "serial /dev/ttyUSB0",
                Result.FAIL,
                "no permission",
                "add user hallq to group dialout",
            )
        ],
        console,
    )
    out = console.export_text()
    assert "add user hallq to group dialout" in out
    assert "fail" in out


async def test_a_port_held_by_the_running_agent_says_stop_it_first(tmp_path: Path) -> None:
    import serial

    cfg = hall(tmp_path)
    async with BusSimulator(tmp_path / "rs485", [SimCallPad(1), SimRatingPad(2)]):
        held = serial.Serial(str(tmp_path / "rs485"), exclusive=True)  # the agent's lock
        try:
            checks = by_name(
                await run_doctor(cfg, "win-01", timeout=0.5, sim_dir=tmp_path, check_network=False)
            )
        finally:
            held.close()
    bus = checks[f"bus {tmp_path / 'rs485'}"]
    assert bus.result is Result.FAIL, bus
    assert "lock" in bus.detail.lower(), bus
    assert "not polled: pad-1, rate-1" in bus.detail
    assert "systemctl stop hallq-agent@win-01" in bus.fix


@pytest.mark.parametrize(
    ("state", "result", "words"),
    [
        ({}, Result.OK, "ready"),
        ({"paper": "near_end"}, Result.WARN, "new roll"),
        ({"paper": "out"}, Result.FAIL, "load a new roll"),
        ({"cover_open": True}, Result.FAIL, "close the printer cover"),
        ({"answers": False}, Result.FAIL, "baud (115200 configured)"),
    ],
)
async def test_the_ticket_printer_status(
    tmp_path: Path, state: dict[str, object], result: Result, words: str
) -> None:
    cfg = hall(tmp_path)
    async with PrinterSimulator(tmp_path / "printer", **state):  # type: ignore[arg-type]
        checks = by_name(
            await run_doctor(cfg, "disp-01", timeout=0.3, sim_dir=tmp_path, check_network=False)
        )
    printer = checks["printer prn"]
    assert printer.result is result, printer
    assert words in printer.detail + printer.fix


async def test_a_printer_port_held_by_the_agent(tmp_path: Path) -> None:
    import serial

    cfg = hall(tmp_path)
    async with PrinterSimulator(tmp_path / "printer"):
        held = serial.Serial(str(tmp_path / "printer"), exclusive=True)
        try:
            checks = by_name(
                await run_doctor(cfg, "disp-01", timeout=0.3, sim_dir=tmp_path, check_network=False)
            )
        finally:
            held.close()
    bus = checks[f"bus {tmp_path / 'printer'}"]
    assert "lock" in bus.detail.lower()
    assert "hallq-agent@disp-01" in bus.fix


def test_doctor_warns_when_the_hall_calendar_stops_before_the_days_ahead() -> None:
    import datetime as dt

    from hallq.config import load_config
    from hallqctl.doctor import check_calendar

    cfg = load_config(Path(__file__).resolve().parent.parent / "examples" / "liwan.toml")
    assert {d.year for d in cfg.hall.closed_days} == {2026}
    late = check_calendar(cfg, dt.date(2026, 12, 4))
    assert late.result == "warn"
    assert "2027" in late.detail
    assert "2027-01-03" in late.detail
    assert "hall.closed_days" in late.fix
    assert check_calendar(cfg, dt.date(2026, 6, 1)).result == "ok"


# --- what a bare machine lacks: each is a warning with its fix, never a failure ------------


def test_a_speaker_without_espeak_is_a_warning_naming_the_package(tmp_path: Path) -> None:
    from hallqctl.doctor import check_voice

    cfg = hall(tmp_path)  # board-1 has a speaker
    missing = check_voice(cfg.agents, which=lambda name: None)
    assert missing is not None
    assert missing.result is Result.WARN
    assert missing.fix == "sudo apt-get install espeak-ng"
    assert "show calls" in missing.detail
    found = check_voice(cfg.agents, which=lambda name: "/usr/bin/espeak-ng")
    assert found is not None
    assert found.result is Result.OK
    assert check_voice([], which=lambda name: None) is None  # no speaker here: not asked


def test_a_pure_dispatch_core_is_a_warning_naming_the_compiler() -> None:
    from hallqctl.doctor import check_dispatch_core

    pure = check_dispatch_core(lambda: "pure")
    assert pure is not None
    assert pure.result is Result.WARN
    assert "build-essential" in pure.fix
    compiled = check_dispatch_core(lambda: "compiled")
    assert compiled is not None
    assert compiled.result is Result.OK


def test_no_mosquitto_where_the_halls_broker_is_local(tmp_path: Path) -> None:
    from hallqctl.doctor import check_local_broker

    cfg = hall(tmp_path)  # mqtt://127.0.0.1:...
    missing = check_local_broker(cfg, finder=lambda: None)
    assert missing is not None
    assert missing.result is Result.WARN
    assert missing.fix == "sudo apt-get install mosquitto"
    remote = hall(tmp_path, url="mqtt://broker.hall.lan:1883")
    assert check_local_broker(remote, finder=lambda: None) is None


@pytest.mark.broker
async def test_a_broker_nobody_configured_is_checked_but_flagged(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = hall(tmp_path, url=mosquitto.url)
    unnamed = cfg.model_copy(
        update={"broker": BrokerConfig.model_construct(_fields_set=set(), **dict(cfg.broker))}
    )
    checks = by_name(await run_doctor(unnamed, None, timeout=2))
    assert checks["broker"].result is Result.WARN
    assert "HALLQ_BROKER_URL" in checks["broker"].fix
