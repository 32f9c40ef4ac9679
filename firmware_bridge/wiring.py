"""From a list of serial devices, in plain values, to running links, drivers and printers.

An agent turns its hall-file devices into ``SerialDevice`` values (``edge.hall_devices``),
calls ``wire_devices(devices, id_hash_key=...)`` and gets one SerialLink per RS-485 line
(devices sharing a port share a link), a driver per framed device keyed by its id, and a
TicketPrinter per printer. Devices that are not serial (GPIO buttons, MAX7219 boards,
speakers) never reach this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, Self

from firmware_bridge.link import SerialLink
from firmware_bridge.port import resolve_port
from firmware_bridge.seqstore import EventSeqStore
from firmware_bridge.timing import LinkTiming

if TYPE_CHECKING:
    from firmware_bridge.devices import FramedDevice, TicketPrinter

__all__ = ["FRAMED_KINDS", "SerialDevice", "Wiring", "wire_devices"]

SerialKind = Literal[
    "call_pad", "rating_pad", "keypad", "scanner", "id_reader", "led_serial", "printer"
]
FRAMED_KINDS = frozenset({"call_pad", "rating_pad", "keypad", "scanner", "id_reader", "led_serial"})


@dataclass(frozen=True, slots=True)
class SerialDevice:
    """One device on a serial port: what the drivers and simulators need, nothing more."""

    id: str
    kind: SerialKind
    port: str
    baud: int = 9600
    address: int = 1  # a device alone on its line may leave it unset: 1
    window: int | None = None  # pads
    services: tuple[str, ...] = ()  # keypads
    width: int = 0  # LED controllers
    height: int = 0


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


@dataclass
class Wiring:
    links: dict[str, SerialLink] = field(default_factory=dict)  # by resolved port
    drivers: dict[str, FramedDevice] = field(default_factory=dict)  # by device id
    printers: dict[str, TicketPrinter] = field(default_factory=dict)  # by device id
    seq_store: EventSeqStore | None = None  # closed with the wiring

    async def __aenter__(self) -> Self:
        for link in self.links.values():
            link.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for link in self.links.values():
            await link.close()
        for printer in self.printers.values():
            await printer.close()
        if self.seq_store is not None:
            self.seq_store.close()


def wire_devices(
    devices: Iterable[SerialDevice],
    *,
    id_hash_key: bytes | str | _Secret | None = None,
    timing: LinkTiming | None = None,
    sim_dir: str | Path | None = None,
    simulate_all: bool = False,
    seq_store: EventSeqStore | None = None,
) -> Wiring:
    """Build (not start) the serial side of one agent; enter the result to start its links.

    ``seq_store`` keeps each device's last event SEQ across agent restarts (see
    ``firmware_bridge.seqstore``); the agent passes one in its state directory.
    """
    wiring = Wiring(seq_store=seq_store)
    for dev in devices:
        port = resolve_port(dev.port, sim_dir, simulate_all=simulate_all)
        if dev.kind == "printer":
            from firmware_bridge.devices.printer import TicketPrinter

            settle = (timing or LinkTiming()).print_settle
            wiring.printers[dev.id] = TicketPrinter(
                port, baudrate=dev.baud, device=dev.id, settle=settle
            )
            continue
        link = wiring.links.get(port)
        if link is None:
            link = wiring.links[port] = SerialLink(
                port, baudrate=dev.baud, timing=timing, seq_store=seq_store
            )
        wiring.drivers[dev.id] = _driver(dev, link, id_hash_key)
    return wiring


def _driver(dev: SerialDevice, link: SerialLink, key: bytes | str | _Secret | None) -> FramedDevice:
    """Each kind's driver module is imported for the first device of that kind only."""
    address = dev.address
    match dev.kind:
        case "call_pad":
            from firmware_bridge.devices.call_pad import CallPad

            return CallPad(link, address, window=dev.window, device=dev.id)
        case "rating_pad":
            from firmware_bridge.devices.rating_pad import RatingPad

            return RatingPad(link, address, window=dev.window, device=dev.id)
        case "keypad":
            from firmware_bridge.devices.keypad import Keypad

            return Keypad(link, address, services=list(dev.services), device=dev.id)
        case "scanner":
            from firmware_bridge.devices.scanner import Scanner

            return Scanner(link, address, device=dev.id)
        case "id_reader":
            if key is None:
                raise ValueError(
                    f"device {dev.id!r} is an ID reader: set security.id_hash_key "
                    "(HALLQ_ID_HASH_KEY) so card numbers can be hashed"
                )
            from firmware_bridge.devices.id_reader import IdReader

            return IdReader(link, address, key=key, device=dev.id)
        case "led_serial":
            from firmware_bridge.devices.led_controller import LedController

            return LedController(link, address, width=dev.width, height=dev.height, device=dev.id)
    raise ValueError(f"device {dev.id!r}: {dev.kind} is not a framed serial device")
