"""The device end of a simulated serial line: a pseudo-terminal behind a stable path.

The link opens ``path`` exactly as it would open /dev/ttyUSB0. The path is a symlink to
the pty's slave side, so "unplugging" (closing the pty) makes the link's reads fail like a
pulled USB adapter, and "replugging" (a new pty, the symlink moved onto it) lets the link
reopen the same path. The simulator keeps its own slave descriptor open so its master side
never sees EIO while the link is between opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Callable
from pathlib import Path

__all__ = ["PtyPort"]

log = logging.getLogger("firmware_bridge.sim.pty")


class PtyPort:
    def __init__(self, path: str | Path, on_data: Callable[[bytes], None]) -> None:
        self.path = Path(path)
        self._on_data = on_data
        self._master: int | None = None
        self._slave: int | None = None
        self._out = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def tty_name(self) -> str | None:
        return None if self._slave is None else os.ttyname(self._slave)

    def plug(self) -> None:
        """Open a new pty and point ``path`` at it (needs a running event loop)."""
        if self._master is not None:
            return
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        try:
            tty.setraw(master)
            tty.setraw(slave)
            os.set_blocking(master, False)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(os.ttyname(slave))
            os.replace(tmp, self.path)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master, self._slave = master, slave
        self._loop.add_reader(master, self._readable)
        log.debug("%s -> %s plugged", self.path, os.ttyname(slave))

    def unplug(self) -> None:
        """Close the pty: the other side's next read fails, and the path disappears."""
        master, slave = self._master, self._slave
        self._master = self._slave = None
        self._out.clear()
        if master is not None and self._loop is not None:
            self._loop.remove_reader(master)
            self._loop.remove_writer(master)
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_symlink():
                self.path.unlink()

    def close(self) -> None:
        self.unplug()

    def write(self, data: bytes) -> None:
        """Put bytes on the line; with the cable out they go nowhere, as on a real bus."""
        if self._master is None:
            return
        if self._out:
            self._out += data
            return
        try:
            sent = os.write(self._master, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            log.debug("%s: write failed: %s", self.path, exc)
            return
        if sent < len(data):
            self._out += data[sent:]
            assert self._loop is not None
            self._loop.add_writer(self._master, self._writable)

    def _writable(self) -> None:
        if self._master is None:
            return
        try:
            sent = os.write(self._master, self._out)
        except BlockingIOError:
            return
        except OSError:
            sent = len(self._out)
        del self._out[:sent]
        if not self._out and self._loop is not None:
            self._loop.remove_writer(self._master)

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("%s: read failed: %s", self.path, exc)
            return
        if data:
            self._on_data(data)
