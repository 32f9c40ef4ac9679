"""The dispenser's ticket printer: ESC/POS on its own serial port, outside the framed bus.

A ticket counts as printed only when its bytes drained to the printer and the printer,
asked afterwards, reports neither paper out, cover open nor an error. The agent voids the
ticket otherwise. When the printer does not answer at all the print is reported done but
unconfirmed: voiding a ticket someone may be holding is worse than one no-show.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Self

from firmware_bridge.errors import PortUnavailable
from firmware_bridge.port import PortConnection, open_port

from .escpos import Ticket, status_query, ticket_bytes
from .printer_status import PrinterStatus, is_status_byte

__all__ = ["PrintResult", "TicketPrinter"]

log = logging.getLogger("firmware_bridge.devices.printer")


@dataclass(frozen=True, slots=True)
class PrintResult:
    written: bool  # every byte drained to the printer
    status: PrinterStatus  # asked after printing (before, when nothing was sent)
    reason: str

    @property
    def done(self) -> bool:
        """Keep the ticket; False means void it (and show the fault)."""
        s = self.status
        return self.written and not (s.paper_out or s.cover_open or s.error)

    @property
    def confirmed(self) -> bool:
        """Done, and the printer said so rather than saying nothing."""
        return self.done and self.status.answered


class TicketPrinter:
    """``async with TicketPrinter("/dev/ttyUSB1") as printer: await printer.print_ticket(t)``.

    The port is opened lazily and reopened on the next call after it fails, so an
    unplugged printer costs one failed ticket, not a restart.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        device: str | None = None,
        status_timeout: float = 0.5,
        write_timeout: float = 10.0,
        settle: float = 0.5,
        number_scale: int = 4,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.device = device or "printer"
        self.status_timeout = status_timeout
        self.write_timeout = write_timeout
        self.settle = settle  # DLE EOT is answered at once, so let the ticket print first
        self.number_scale = number_scale
        self._conn: PortConnection | None = None
        self._rx = bytearray()
        self._rx_event = asyncio.Event()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"TicketPrinter({self.device!r}, port={self.port!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def status(self) -> PrinterStatus:
        async with self._lock:
            try:
                conn = await self._open()
            except PortUnavailable as exc:
                log.warning("%s: %s", self.device, exc)
                return PrinterStatus.unknown()
            return await self._status(conn)

    async def print_ticket(self, ticket: Ticket) -> PrintResult:
        return await self.print_bytes(ticket_bytes(ticket, number_scale=self.number_scale))

    async def print_bytes(self, data: bytes) -> PrintResult:
        async with self._lock:
            try:
                conn = await self._open()
            except PortUnavailable as exc:
                return PrintResult(False, PrinterStatus.unknown(), str(exc))
            before = await self._status(conn)
            if before.answered and not before.ready:
                return PrintResult(False, before, f"not printed: {before.condition}")
            conn.write(data)
            if not await conn.drain(self.write_timeout):
                reason = (
                    "port lost while printing"
                    if not conn.is_open
                    else "printer stopped taking data"
                )
                return PrintResult(False, await self._status(conn), reason)
            if self.settle > 0:
                await asyncio.sleep(self.settle)
            after = await self._status(conn)
            result = PrintResult(True, after, str(after.condition))
            if not result.done:
                log.warning("%s: ticket not printed properly: %s", self.device, after.condition)
            elif not after.answered:
                log.warning(
                    "%s: printer gave no status after printing; assuming printed", self.device
                )
            return result

    async def _open(self) -> PortConnection:
        if self._conn is not None and self._conn.is_open:
            return self._conn
        if self._conn is not None:
            await self._conn.close()
        self._conn = await open_port(self.port, baudrate=self.baudrate, on_data=self._on_data)
        return self._conn

    def _on_data(self, data: bytes) -> None:
        self._rx += data
        del self._rx[:-64]  # only the latest answers matter
        self._rx_event.set()

    async def _status(self, conn: PortConnection) -> PrinterStatus:
        answers: list[int] = []
        for n in (1, 2, 4):
            byte = await self._ask(conn, n)
            if byte is None:
                return PrinterStatus.unknown()
            answers.append(byte)
        return PrinterStatus.from_bytes(*answers)

    async def _ask(self, conn: PortConnection, n: int) -> int | None:
        self._rx.clear()
        self._rx_event.clear()
        if not conn.is_open:
            return None
        conn.write(status_query(n))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.status_timeout
        while True:
            for byte in self._rx:
                if is_status_byte(byte):
                    return byte
            self._rx.clear()
            self._rx_event.clear()
            remaining = deadline - loop.time()
            if remaining <= 0 or not conn.is_open:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await self._rx_event.wait()
            except TimeoutError:
                return None
