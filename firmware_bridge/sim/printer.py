"""A simulated thermal ticket printer on its own pty: prints what it is sent, answers DLE EOT.

The paper model is the part tests need: a roll with ``paper_left`` tickets on it runs out
during the next one (that ticket is lost and the sensor then says out), near its end the
sensor says near end, and with the cover open or the paper out nothing is printed.
``answers = False`` makes the printer mute, as an unpowered one or one without real-time
status is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Self, cast

from .escpos_parser import EscPosParser, PrintedLine, PrintedTicket
from .pty_port import PtyPort

__all__ = ["PrinterSimulator"]

Paper = Literal["ok", "near_end", "out"]


class PrinterSimulator:
    def __init__(
        self,
        path: str | Path,
        *,
        paper: Paper = "ok",
        paper_left: int | None = None,
        near_end_at: int = 2,
        cover_open: bool = False,
        answers: bool = True,
    ) -> None:
        self.paper: Paper = paper
        self.paper_left = paper_left
        self.near_end_at = near_end_at
        self.cover_open = cover_open
        self.error = False
        self.answers = answers
        self.tickets: list[PrintedTicket] = []
        self.cuts = 0
        self.lost = 0  # tickets sent while the printer could not print them
        self.status_queries = 0
        self._page = PrintedTicket()
        self._parser = EscPosParser()
        self._port = PtyPort(path, self._on_bytes)
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def path(self) -> Path:
        return self._port.path

    @property
    def unknown_commands(self) -> list[bytes]:
        return self._parser.unknown

    async def __aenter__(self) -> Self:
        self._port.plug()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._port.close()

    def unplug(self) -> None:
        self._port.unplug()

    def replug(self) -> None:
        self._port.plug()

    def status_byte(self, n: int) -> int:
        """The answer to DLE EOT n for the current state (fixed bits 0x12)."""
        out = self.paper == "out"
        if n == 1:
            offline = out or self.cover_open or self.error
            return 0x12 | (0x08 if offline else 0)
        if n == 2:
            return (
                0x12
                | (0x04 if self.cover_open else 0)
                | (0x20 if out else 0)
                | (0x40 if self.error else 0)
            )
        if n == 4:
            return 0x12 | (0x0C if self.paper != "ok" else 0) | (0x60 if out else 0)
        return 0x12

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109  test-facing API: each test states its bound
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not predicate():
                waiter = loop.create_future()
                self._waiters.append(waiter)
                await waiter

    def _on_bytes(self, data: bytes) -> None:
        for op, value in self._parser.feed(data):
            if op == "status":
                self.status_queries += 1
                if self.answers:
                    self._port.write(bytes((self.status_byte(cast(int, value)),)))
            elif op == "line":
                self._page.lines.append(cast(PrintedLine, value))
            elif op == "qr":
                self._page.qr_codes.append(cast(str, value))
            elif op == "cut":
                self._cut()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _cut(self) -> None:
        self.cuts += 1
        page, self._page = self._page, PrintedTicket()
        if self.cover_open or self.paper == "out" or self.error:
            self.lost += 1
            return
        if self.paper_left is not None:
            if self.paper_left <= 0:
                self.paper = "out"  # ran out during this ticket
                self.lost += 1
                return
            self.paper_left -= 1
            if self.paper_left <= self.near_end_at:
                self.paper = "near_end"
        self.tickets.append(page)
