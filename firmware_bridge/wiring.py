"""From an agent's device list in the hall file to running links, drivers and printers.

An agent calls ``wire_devices(agent.devices, id_hash_key=...)`` and gets one SerialLink
per RS-485 line (devices sharing a port share a link), a driver per framed device keyed
by its hall-file id, and a TicketPrinter per printer. Devices that are not serial (GPIO
buttons, MAX7219 boards, speakers) are left to their own modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self

from firmware_bridge.devices import (
    CallPad,
    FramedDevice,
    IdReader,
    Keypad,
    LedController,
    RatingPad,
    Scanner,
    TicketPrinter,
)
from firmware_bridge.link import SerialLink
from firmware_bridge.port import resolve_port
from firmware_bridge.seqstore import EventSeqStore
from firmware_bridge.timing import LinkTiming

if TYPE_CHECKING:
    from hallq.config import Device

__all__ = ["FRAMED_KINDS", "Wiring", "wire_devices"]

FRAMED_KINDS = frozenset({"call_pad", "rating_pad", "keypad", "scanner", "id_reader", "led_serial"})


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
    devices: Iterable[Device],
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
        if dev.serial is None or (dev.kind not in FRAMED_KINDS and dev.kind != "printer"):
            continue
        port = resolve_port(dev.serial.port, sim_dir, simulate_all=simulate_all)
        if dev.kind == "printer":
            settle = (timing or LinkTiming()).print_settle
            wiring.printers[dev.id] = TicketPrinter(port, baudrate=dev.serial.baud, device=dev.id,
                                                    settle=settle)
            continue
        link = wiring.links.get(port)
        if link is None:
            link = wiring.links[port] = SerialLink(port, baudrate=dev.serial.baud, timing=timing,
                                                   seq_store=seq_store)
        wiring.drivers[dev.id] = _driver(dev, link, id_hash_key)
    return wiring


def _driver(dev: Device, link: SerialLink, key: bytes | str | _Secret | None) -> FramedDevice:
    assert dev.serial is not None
    address = dev.serial.address or 1  # a device alone on its line may leave it unset
    match dev.kind:
        case "call_pad":
            return CallPad(link, address, window=dev.window, device=dev.id)
        case "rating_pad":
            return RatingPad(link, address, window=dev.window, device=dev.id)
        case "keypad":
            return Keypad(link, address, services=dev.services or [], device=dev.id)
        case "scanner":
            return Scanner(link, address, device=dev.id)
        case "id_reader":
            if key is None:
                raise ValueError(
                    f"device {dev.id!r} is an ID reader: set security.id_hash_key "
                    "(HALLQ_ID_HASH_KEY) so card numbers can be hashed"
                )
            return IdReader(link, address, key=key, device=dev.id)
        case "led_serial":
            assert dev.led is not None
            return LedController(
                link, address, width=dev.led.width, height=dev.led.height, device=dev.id
            )
    raise ValueError(f"device {dev.id!r}: {dev.kind} is not a framed serial device")
