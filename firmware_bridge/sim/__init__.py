"""Simulated devices that own the far end of a pseudo-terminal and speak the real bytes.

Used by the tests and the demo in place of hardware: the link opens the simulator's path
as it would open /dev/ttyUSB0.
"""

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
from .escpos_parser import EscPosParser, PrintedLine, PrintedTicket
from .printer import PrinterSimulator
from .pty_port import PtyPort

__all__ = [
    "BusSimulator",
    "EscPosParser",
    "PrintedLine",
    "PrintedTicket",
    "PrinterSimulator",
    "PtyPort",
    "SimCallPad",
    "SimDevice",
    "SimIdReader",
    "SimKeypad",
    "SimLedController",
    "SimRatingPad",
    "SimScanner",
]
