"""The example hall's agents, wired from the hall file onto simulators of their own devices."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.hall_devices import serial_devices
from firmware_bridge import DeviceState, LinkTiming, resolve_port
from firmware_bridge.devices import CallPad, IdCard, IdReader, Keypad, ServiceKey, Ticket
from firmware_bridge.sim import SimCallPad
from firmware_bridge.sim.hall import simulate_devices
from firmware_bridge.wiring import wire_devices
from hallq.config import HallConfig, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "liwan.toml"
KEY = "example-hall-id-hash-key-0123456789"
FAST = LinkTiming(reply_timeout=0.25, poll_interval=0.01, status_interval=3600)


@pytest.fixture(scope="module")
def hall_config() -> HallConfig:
    return load_config(EXAMPLE, environ={"HALLQ_ID_HASH_KEY": KEY})


def test_ports_resolve_to_simulator_paths(tmp_path: Path) -> None:
    assert resolve_port("/dev/ttyUSB0") == "/dev/ttyUSB0"
    assert resolve_port("sim", tmp_path) == str(tmp_path / "bus")
    assert resolve_port("sim:w1", tmp_path) == str(tmp_path / "w1")
    assert resolve_port("/dev/ttyUSB0", tmp_path, simulate_all=True) == str(tmp_path / "ttyUSB0")


async def test_a_window_cabinet_runs_on_its_simulated_bus(
    tmp_path: Path, hall_config: HallConfig
) -> None:
    devices = serial_devices(hall_config.agent("pi-w01").devices)
    sims = simulate_devices(devices, tmp_path)
    wiring = wire_devices(devices, timing=FAST, sim_dir=tmp_path, simulate_all=True)
    assert len(wiring.links) == 1
    assert len(wiring.drivers) == 18
    [link] = wiring.links.values()
    pad = wiring.drivers["pad-04"]
    assert isinstance(pad, CallPad)
    assert pad.window == 4
    assert pad.address == 4
    async with sims, wiring:
        online: set[str] = set()
        async with asyncio.timeout(20):
            while len(online) < 18:
                update = await link.next_update()
                if isinstance(update, DeviceState) and update.online:
                    online.add(update.device)
        bus, address = sims.devices["pad-04"]
        bus.press(address, "CALL")
        while True:
            update = await link.next_update(10)
            if not isinstance(update, DeviceState):
                break
        assert update.device == "pad-04"  # type: ignore[union-attr]
        await pad.show("A023")
        assert bus.device(address, SimCallPad).display == "A023"


async def test_a_dispenser_keypad_id_reader_and_printer(
    tmp_path: Path, hall_config: HallConfig
) -> None:
    devices = serial_devices(hall_config.agent("pi-d01").devices)
    sims = simulate_devices(devices, tmp_path)
    wiring = wire_devices(
        devices,
        id_hash_key=hall_config.security.id_hash_key,
        timing=FAST,
        sim_dir=tmp_path,
        simulate_all=True,
    )
    keypad, reader = wiring.drivers["keys-d01"], wiring.drivers["idcard-d01"]
    assert isinstance(keypad, Keypad)
    assert isinstance(reader, IdReader)
    assert keypad.link is not reader.link  # each on its own port
    printer = wiring.printers["printer-d01"]
    printer.settle = 0
    async with sims, wiring:
        bus, address = sims.devices["keys-d01"]
        bus.press(address, 2)
        while not isinstance(event := await keypad.link.next_update(10), ServiceKey):
            pass
        assert event.service == "invoice"
        bus, address = sims.devices["idcard-d01"]
        bus.swipe_id(address, "11010519491231002X")
        while not isinstance(card := await reader.link.next_update(10), IdCard):
            pass
        assert card.device == "idcard-d01"
        ticket = Ticket(
            "荔湾区办税服务厅",
            "发票业务",
            "B007",
            2,
            4,
            datetime(2024, 5, 6, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")),
            "https://q.example.cn/t/B007",
        )
        result = await printer.print_ticket(ticket)
        assert result.confirmed
        assert "B007" in sims.printers["printer-d01"].tickets[0].text


def test_an_id_reader_without_a_key_is_a_clear_error(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, environ={})
    if config.security.id_hash_key is not None:
        pytest.skip("the example hall sets a key")
    with pytest.raises(ValueError, match="HALLQ_ID_HASH_KEY"):
        wire_devices(
            serial_devices(config.agent("pi-d01").devices), sim_dir=tmp_path, simulate_all=True
        )
