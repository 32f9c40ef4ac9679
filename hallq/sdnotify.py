"""systemd's notify protocol, spoken directly: one datagram per message to ``$NOTIFY_SOCKET``.

Why not the ``sdnotify`` package: it swallows send errors unless ``debug=True``, and a
service whose READY=1 or WATCHDOG=1 silently goes nowhere gets killed by systemd with no
clue in its own log. Here every failed send is logged (once per kind of failure, so a
broken socket cannot flood the journal) and never raised: notifying is a courtesy to the
supervisor and must not take the service down.

Usage (``Type=notify`` unit)::

    notifier = Notifier.from_env()          # a no-op outside systemd
    ...hardware and MQTT up...
    notifier.ready("serving 12 windows")
    watchdog_task = asyncio.create_task(watchdog(notifier))
    ...
    notifier.stopping()

The watchdog pings from the event loop itself, so a blocked loop stops pinging and
systemd restarts the service (``WatchdogSec=``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

__all__ = ["Notifier", "ready_when", "watchdog", "watchdog_interval"]

log = logging.getLogger("hallq.sdnotify")


def _socket_address(raw: str) -> str | bytes:
    """``@name`` is Linux's abstract namespace: a leading NUL byte on the wire."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


class Notifier:
    """Sends notify messages to one socket; with no socket every call does nothing."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._reported: set[str] = set()
        self.sent = 0
        self.failures = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; True if it left. Never raises."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(_socket_address(self.address))
                sock.sendall(data)
        except OSError as exc:
            self.failures += 1
            kind = f"{type(exc).__name__}:{exc.errno}"
            if kind not in self._reported:
                self._reported.add(kind)
                log.warning(
                    "cannot notify systemd at %s (%s); further %s failures are not logged",
                    self.address,
                    exc,
                    type(exc).__name__,
                )
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is complete (hardware and broker up)."""
        fields = ["READY=1"]
        if status:
            fields.append(f"STATUS={_one_line(status)}")
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        """Free-form text shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self, status: str | None = None) -> bool:
        fields = ["STOPPING=1"]
        if status:
            fields.append(f"STATUS={_one_line(status)}")
        return self.notify(*fields)

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def ping(self) -> bool:
        return self.notify("WATCHDOG=1")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is ours.

    ``$WATCHDOG_PID`` set to another pid means the watchdog belongs to a different process
    (we were forked by it), so we must not ping on its behalf.
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and owner.strip() != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw)
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


async def watchdog(
    notifier: Notifier,
    *,
    interval: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Ping ``WATCHDOG=1`` at half the watchdog interval until cancelled.

    Runs as a task on the service's own event loop: if the loop is blocked the pings stop,
    which is the point. Returns at once when there is no socket or no watchdog for us.
    """
    every = interval if interval is not None else watchdog_interval(environ)
    if every is None or not notifier.enabled:
        return
    log.debug("systemd watchdog: pinging every %.3fs", every)
    while True:
        notifier.ping()
        await asyncio.sleep(every)


async def ready_when(
    notifier: Notifier,
    condition: Awaitable[object],
    *,
    status: str | Callable[[], str],
    grace: float = 30.0,
    waiting_status: str = "started; broker not reachable yet",
) -> bool:
    """Send READY=1 once ``condition`` completes, or after ``grace`` seconds regardless.

    Why the grace: with a broker down at boot, never sending READY would make systemd
    fail the start (TimeoutStartSec) and restart us until StartLimitBurst gives up for
    good; a running agent that keeps reconnecting is better. Returns True if the
    condition was met in time. Typical ``condition``: ``session.wait_connected()``.
    """
    try:
        async with asyncio.timeout(grace):
            await condition
    except TimeoutError:
        notifier.ready(waiting_status)
        return False
    notifier.ready(status() if callable(status) else status)
    return True


async def status_loop(
    notifier: Notifier, describe: Callable[[], str], *, every: float = 1.0
) -> None:
    """Keep ``STATUS=`` current for ``systemctl status`` (e.g. "online, 12 waiting"); sent
    only when the text changes, so at most one datagram a second."""
    if not notifier.enabled:
        return
    last = ""
    while True:
        text = describe()
        if text != last:
            notifier.status(text)
            last = text
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def supervised(
    notifier: Notifier,
    connected: Awaitable[object],
    describe: Callable[[], str],
) -> AsyncIterator[None]:
    """What a hallq service does for systemd while it runs: READY once connected (or after
    the grace period), WATCHDOG from the event loop, readable STATUS lines, STOPPING."""
    tasks = [
        asyncio.create_task(watchdog(notifier)),
        asyncio.create_task(ready_when(notifier, connected, status=describe)),
        asyncio.create_task(status_loop(notifier, describe)),
    ]
    try:
        yield
    finally:
        notifier.stopping()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
