"""Drivers: one small module per kind of device; each returns typed events, none touches MQTT."""

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
