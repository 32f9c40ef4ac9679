"""Simulators for an agent's serial devices (``SerialDevice`` values): the demo's hardware.

Each serial line becomes a BusSimulator (or a PrinterSimulator) at the path
``resolve_port`` gives the agent, so agent and simulators meet without configuration. A
bus models its line's time on the wire at the line's ``baud`` from the hall file (devices
on one line share it; the hall file check enforces that).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from firmware_bridge.port import resolve_port
from firmware_bridge.wiring import SerialDevice

from .bus import BusSimulator
from .devices import (
    SimCallPad,
    SimDevice,
    SimIdReader,
    SimKeypad,
    SimLedController,
    SimRatingPad,
    SimScanner,
)
from .printer import PrinterSimulator

__all__ = ["SimulatedHall", "simulate_devices"]

_SIM_KINDS: dict[str, type[SimDevice]] = {
    "call_pad": SimCallPad,
    "rating_pad": SimRatingPad,
    "keypad": SimKeypad,
    "scanner": SimScanner,
    "id_reader": SimIdReader,
    "led_serial": SimLedController,
}


@dataclass
class SimulatedHall:
    buses: dict[str, BusSimulator] = field(default_factory=dict)  # by path
    printers: dict[str, PrinterSimulator] = field(default_factory=dict)  # by device id
    devices: dict[str, tuple[BusSimulator, int]] = field(default_factory=dict)  # id -> bus, addr

    async def __aenter__(self) -> Self:
        for bus in self.buses.values():
            bus.start()
        for printer in self.printers.values():
            await printer.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for bus in self.buses.values():
            bus.close()
        for printer in self.printers.values():
            await printer.__aexit__()


def simulate_devices(
    devices: Iterable[SerialDevice], sim_dir: str | Path, *, simulate_all: bool = True
) -> SimulatedHall:
    hall = SimulatedHall()
    Path(sim_dir).mkdir(parents=True, exist_ok=True)
    for dev in devices:
        if not simulate_all and not dev.port.startswith("sim"):
            continue
        path = resolve_port(dev.port, sim_dir, simulate_all=simulate_all)
        if dev.kind == "printer":
            hall.printers[dev.id] = PrinterSimulator(path)
            continue
        kind = _SIM_KINDS.get(dev.kind)
        if kind is None:
            continue
        bus = hall.buses.get(path)
        if bus is None:
            bus = hall.buses[path] = BusSimulator(path, baudrate=dev.baud)
        address = dev.address
        bus.add(kind(address))
        hall.devices[dev.id] = (bus, address)
    return hall
