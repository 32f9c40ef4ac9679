"""Run simulated devices: ``python -m firmware_bridge.sim --dir /tmp/hallq-sim``.

One bus (pad 1, rating pad 11, LED strip 21) and a printer; ``hallq sim-devices --config
hall.toml --device pi-w01 --sim-dir DIR`` serves one agent's serial devices from the hall
file the same way, at the paths that agent opens with the same ``--sim-dir``. Type
commands to act as a person at the devices (``help`` lists them); without a terminal it
just serves.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import signal
import sys
import threading
from pathlib import Path

from firmware_bridge.devices.call_pad import TransferTarget

from .bus import BusSimulator
from .devices import SimCallPad, SimLedController, SimRatingPad
from .hall import SimulatedHall
from .printer import PrinterSimulator

HELP = """commands:
  press ADDR KEY [W15|S3]   pad key (CALL RECALL SKIP TRANSFER PAUSE RESUME FINISH EMERGENCY)
  press ADDR N              keypad key N
  rate ADDR 1-4 | scan ADDR TEXT | swipe ADDR NUMBER
  mute ADDR | unmute ADDR | reboot ADDR
  unplug | replug           every bus and printer
  paper ok|near_end|out | cover open|closed | answers on|off
  show | help | quit"""


def _default_hall(sim_dir: Path) -> SimulatedHall:
    sim_dir.mkdir(parents=True, exist_ok=True)
    bus = BusSimulator(sim_dir / "bus", [SimCallPad(1), SimRatingPad(11), SimLedController(21)])
    return SimulatedHall(
        buses={str(bus.path): bus}, printers={"printer": PrinterSimulator(sim_dir / "printer")}
    )


def _show(hall: SimulatedHall) -> None:
    for bus in hall.buses.values():
        print(f"{bus.path}: {'plugged' if bus.plugged else 'UNPLUGGED'}")
        for address, device in sorted(bus.devices.items()):
            extra = ""
            if isinstance(device, SimCallPad):
                extra = f" display={device.display!r}"
            elif isinstance(device, SimLedController) and device.frames:
                extra = f" frames={len(device.frames)}\n" + "\n".join(device.frames[-1].to_art())
            muted = " (muted)" if device.muted else ""
            print(f"  {address:3d} {type(device).__name__}{muted}{extra}")
    for name, printer in hall.printers.items():
        print(
            f"{name}: paper={printer.paper} cover_open={printer.cover_open} "
            f"tickets={len(printer.tickets)} lost={printer.lost}"
        )
        if printer.tickets:
            print("  last: " + printer.tickets[-1].text.replace("\n", " | "))


def _bus_of(hall: SimulatedHall, address: int) -> BusSimulator:
    for bus in hall.buses.values():
        if address in bus.devices:
            return bus
    raise KeyError(f"no simulated device at address {address}")


def _command(hall: SimulatedHall, words: list[str]) -> bool:
    cmd, args = words[0].lower(), words[1:]
    printers = list(hall.printers.values())
    if cmd == "quit":
        return False
    if cmd in ("press", "rate", "scan", "swipe", "mute", "unmute", "reboot"):
        address = int(args[0])
        bus = _bus_of(hall, address)
        if cmd == "press":
            key = args[1]
            target = None
            if len(args) > 2:
                number = int(args[2][1:])
                if args[2][0].upper() == "W":
                    target = TransferTarget("window", number)
                else:
                    target = TransferTarget("service", number)
            bus.press(address, int(key) if key.isdigit() else key, target)
        elif cmd == "rate":
            bus.rate(address, int(args[1]))
        elif cmd == "scan":
            bus.scan(address, " ".join(args[1:]))
        elif cmd == "swipe":
            bus.swipe_id(address, args[1])
        elif cmd == "reboot":
            bus[address].reboot()
        else:
            bus[address].muted = cmd == "mute"
    elif cmd in ("unplug", "replug"):
        for bus in hall.buses.values():
            bus.unplug() if cmd == "unplug" else bus.replug()
        for printer in printers:
            printer.unplug() if cmd == "unplug" else printer.replug()
    elif cmd == "paper":
        for printer in printers:
            printer.paper = args[0]  # type: ignore[assignment]
    elif cmd == "cover":
        for printer in printers:
            printer.cover_open = args[0] == "open"
    elif cmd == "answers":
        for printer in printers:
            printer.answers = args[0] == "on"
    elif cmd == "show":
        _show(hall)
    else:
        print(HELP)
    return True


def _lines() -> asyncio.Queue[str]:
    """stdin's lines ('' at its end), read by a daemon thread: a worker thread of the loop
    blocked in readline kept Ctrl-C from ending the program until Enter was pressed."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        while True:
            line = sys.stdin.readline()
            loop.call_soon_threadsafe(lines.put_nowait, line)
            if not line:
                return

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return lines


async def serve(hall: SimulatedHall) -> None:
    """Start the simulators, print where they are, then take commands from stdin; SIGTERM
    ends it as Ctrl-C does, taking the pty links away (an agent would open a dead one)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    # Ctrl-C as SIGTERM: the task cancelled through the loop. Left to asyncio.run's own
    # SIGINT handling, one CI run in many hung here for 20 s after Ctrl-C (not reproduced)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    async with hall:
        for bus in hall.buses.values():
            print(f"bus {bus.path}: addresses {sorted(bus.devices)}", flush=True)
        for name, printer in hall.printers.items():
            print(f"printer {name}: {printer.path}", flush=True)
        if not sys.stdin.isatty():
            await asyncio.Event().wait()  # serve until killed
        lines = _lines()
        while True:
            line = await lines.get()
            if not line:
                await asyncio.Event().wait()
            try:
                words = shlex.split(line)
                if words and not _command(hall, words):
                    return
            except (KeyError, ValueError, IndexError, TypeError) as exc:
                print(f"error: {exc}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m firmware_bridge.sim", description=__doc__)
    parser.add_argument("--dir", required=True, help="where the pty links are made")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        asyncio.run(serve(_default_hall(Path(args.dir))))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass


if __name__ == "__main__":
    main()
