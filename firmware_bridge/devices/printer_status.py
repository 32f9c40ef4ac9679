"""What a printer's DLE EOT answers mean, and what no answer means: unknown, never "ok".

python-escpos reports "adequate" paper when the printer says nothing; a dispenser that
trusted that would issue tickets into a dead printer all day.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["PrinterCondition", "PrinterStatus", "is_status_byte"]


class PrinterCondition(StrEnum):
    OK = "ok"
    PAPER_NEAR_END = "paper_near_end"
    PAPER_OUT = "paper_out"
    COVER_OPEN = "cover_open"
    ERROR = "error"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


def is_status_byte(byte: int) -> bool:
    """Every DLE EOT answer has the fixed bits 0xx1xx10; anything else is line noise."""
    return byte & 0x93 == 0x12


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    answered: bool
    offline: bool = False
    cover_open: bool = False
    paper_out: bool = False
    paper_near_end: bool = False
    error: bool = False

    @classmethod
    def unknown(cls) -> PrinterStatus:
        return cls(answered=False)

    @classmethod
    def from_bytes(cls, printer: int, offline_cause: int, paper: int) -> PrinterStatus:
        """The answers to DLE EOT 1, 2 and 4."""
        return cls(
            answered=True,
            offline=bool(printer & 0x08),
            cover_open=bool(offline_cause & 0x04),
            paper_out=bool(offline_cause & 0x20) or bool(paper & 0x60),
            paper_near_end=bool(paper & 0x0C),
            error=bool(offline_cause & 0x40),
        )

    @property
    def condition(self) -> PrinterCondition:
        """The one condition to show a person, worst first."""
        if not self.answered:
            return PrinterCondition.UNKNOWN
        if self.cover_open:
            return PrinterCondition.COVER_OPEN
        if self.paper_out:
            return PrinterCondition.PAPER_OUT
        if self.error:
            return PrinterCondition.ERROR
        if self.offline:
            return PrinterCondition.OFFLINE
        if self.paper_near_end:
            return PrinterCondition.PAPER_NEAR_END
        return PrinterCondition.OK

    @property
    def ready(self) -> bool:
        """Known to be able to print now (near end still prints)."""
        return self.condition in (PrinterCondition.OK, PrinterCondition.PAPER_NEAR_END)
