"""Drivers: one small module per kind of device; each returns typed events, none touches MQTT.

The names load on first use (PEP 562): a window Pi's agent imports its pads' and strips'
drivers, not the printer's, the ID reader's, the keypad's or the scanner's, and a
dispenser's the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hallq.lazy import lazy_names

if TYPE_CHECKING:
    from .base import FramedDevice
    from .call_pad import CallPad, PadKey, PadKeyPress, TransferTarget
    from .escpos import Ticket, ticket_bytes
    from .id_reader import IdCard, IdCardRejected, IdReader, hash_id_number
    from .keypad import Keypad, ServiceKey
    from .led_controller import LedController
    from .printer import PrintResult, TicketPrinter
    from .printer_status import PrinterCondition, PrinterStatus
    from .rating_pad import RATING_LABELS, Rating, RatingPad
    from .scanner import Scan, Scanner

__all__ = [
    "RATING_LABELS",
    "CallPad",
    "FramedDevice",
    "IdCard",
    "IdCardRejected",
    "IdReader",
    "Keypad",
    "LedController",
    "PadKey",
    "PadKeyPress",
    "PrintResult",
    "PrinterCondition",
    "PrinterStatus",
    "Rating",
    "RatingPad",
    "Scan",
    "Scanner",
    "ServiceKey",
    "Ticket",
    "TicketPrinter",
    "TransferTarget",
    "hash_id_number",
    "ticket_bytes",
]

_WHERE = {
    "FramedDevice": ".base",
    "CallPad": ".call_pad",
    "PadKey": ".call_pad",
    "PadKeyPress": ".call_pad",
    "TransferTarget": ".call_pad",
    "Ticket": ".escpos",
    "ticket_bytes": ".escpos",
    "IdCard": ".id_reader",
    "IdCardRejected": ".id_reader",
    "IdReader": ".id_reader",
    "hash_id_number": ".id_reader",
    "Keypad": ".keypad",
    "ServiceKey": ".keypad",
    "LedController": ".led_controller",
    "PrintResult": ".printer",
    "TicketPrinter": ".printer",
    "PrinterCondition": ".printer_status",
    "PrinterStatus": ".printer_status",
    "RATING_LABELS": ".rating_pad",
    "Rating": ".rating_pad",
    "RatingPad": ".rating_pad",
    "Scan": ".scanner",
    "Scanner": ".scanner",
}

__getattr__ = lazy_names(__name__, _WHERE)
