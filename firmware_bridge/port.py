"""Open a serial port named by URL as an asyncio connection that says when it is gone.

Ports come from the hall file, so tests and the demo swap in a pseudo-terminal path or a
``socket://`` serial server without code changes. pyserial-asyncio-fast drives the port
from the event loop's file-descriptor watcher, which is why URLs without a descriptor
(``loop://``, ``rfc2217://``) are refused here with a reason instead of failing obscurely.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import serial
import serial_asyncio_fast

from firmware_bridge.errors import PortUnavailable

__all__ = ["PortConnection", "open_port", "resolve_port"]

log = logging.getLogger("firmware_bridge.port")

_UNSUPPORTED = {
    "loop": "loop:// has no file descriptor for asyncio; use a pty (firmware_bridge.sim)",
    "rfc2217": "rfc2217:// is not supported by the asyncio driver; use socket://host:port",
    "spy": "spy:// is not supported by the asyncio driver",
    "hwgrep": "hwgrep:// is not supported; name the device path",
    "alt": "alt:// is not supported; name the device path",
}


def resolve_port(url: str, sim_dir: str | Path | None = None, *, simulate_all: bool = False) -> str:
    """The path or URL to open for a port named in the hall file.

    ``sim`` / ``sim:NAME`` name a simulator's pty link in ``sim_dir``; with
    ``simulate_all`` (the demo) every port does, so a real hall file runs on simulators:
    ``/dev/ttyUSB0`` becomes ``sim_dir/ttyUSB0``. Other URLs are returned unchanged.
    """
    simulated = url == "sim" or url.startswith("sim:")
    if not (simulated or simulate_all):
        return url
    if sim_dir is None:
        raise PortUnavailable(f"{url}: a simulated port needs a simulator directory")
    if simulated:
        name = url.partition(":")[2] or "bus"
    else:
        name = re.sub(
            r"[^A-Za-z0-9_.-]+",
            "_",
            url.rsplit("/", 1)[-1] if "://" not in url else url.split("://", 1)[1],
        )
    return str(Path(sim_dir) / name)


class _Protocol(asyncio.Protocol):
    def __init__(self, on_data: Callable[[bytes], None], closed: asyncio.Future[None]) -> None:
        self._on_data = on_data
        self._closed = closed

    def data_received(self, data: bytes) -> None:
        try:
            self._on_data(data)
        except Exception:  # a consumer bug must not take the port down with it
            log.exception("serial data handler failed")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            if exc is None:
                self._closed.set_result(None)
            else:
                self._closed.set_exception(exc)


class PortConnection:
    """One open port. ``closed`` completes when the port goes away, with the reason as its error."""

    def __init__(self, url: str, transport: asyncio.BaseTransport, closed: asyncio.Future[None]):
        self.url = url
        self._transport = cast(asyncio.WriteTransport, transport)
        self.closed = closed

    @property
    def is_open(self) -> bool:
        return not self.closed.done() and not self._transport.is_closing()

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109  public API: the caller bounds each wait
        """Wait until the bytes have left our buffers and the UART's; False if they did not in time.

        A printer with hardware flow control stops taking bytes when it is out of paper,
        so "written" must mean drained, not merely handed to the transport.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        port = self._transport.get_extra_info("serial")
        while self.is_open:
            pending = self._transport.get_write_buffer_size()
            if pending == 0 and isinstance(port, serial.Serial) and port.is_open:
                try:
                    pending = port.out_waiting
                except (serial.SerialException, OSError):
                    pending = 0  # not a real UART (socket, pty): nothing more to wait for
            if pending == 0:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return False

    def bytes_waiting(self) -> int:
        """Bytes the OS has received but the loop has not yet handed over (0 when unknown).

        Lets the master tell a late answer from none when the process, not the device,
        was slow.
        """
        port = self._transport.get_extra_info("serial")
        if not (isinstance(port, serial.Serial) and port.is_open and self.is_open):
            return 0
        try:
            return int(port.in_waiting)
        except (serial.SerialException, OSError):
            return 0

    def close_reason(self) -> str:
        if not self.closed.done():
            return "open"
        if self.closed.cancelled():
            return "closed"
        exc = self.closed.exception()
        return "closed" if exc is None else f"{type(exc).__name__}: {exc}"

    async def close(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109  public API: the caller bounds each wait
        """Drop unsent bytes and close; waits until the driver has let go of the descriptor."""
        if not self._transport.is_closing():
            self._transport.abort()
        await asyncio.wait({self.closed}, timeout=timeout)
        if not self.closed.done():
            log.warning("%s: port did not report closing within %.1fs", self.url, timeout)


async def open_port(url: str, *, baudrate: int, on_data: Callable[[bytes], None]) -> PortConnection:
    """Open ``url`` (a device path, a pty path or socket://host:port); raise PortUnavailable."""
    scheme = urlsplit(url).scheme
    if scheme in _UNSUPPORTED:
        raise PortUnavailable(f"{url}: {_UNSUPPORTED[scheme]}")
    if scheme not in ("", "socket"):
        raise PortUnavailable(f"{url}: unsupported port URL scheme {scheme!r}")
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    # Retrieved so a port that dies before anyone awaits it does not log "never retrieved".
    closed.add_done_callback(lambda f: f.cancelled() or f.exception())
    kwargs: dict[str, Any] = {"baudrate": baudrate}
    if scheme == "":
        kwargs["exclusive"] = True  # a second agent on the same line fails loudly
    try:
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop, lambda: _Protocol(on_data, closed), url, **kwargs
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PortUnavailable(f"{url}: {exc}") from exc
    return PortConnection(url, transport, closed)
