"""Noticing that this process stopped running for a while (a stall of its event loop).

A master that did not run during a reply window cannot tell a silent device from one it
did not get to hear: the answer may still be held by the USB adapter's latency timer, or,
in the demo where the simulated devices share the master's loop, not even sent yet. Its
own timer can fire on time after such a stall, so the lateness of the wake-up does not
show it; a light ticker does.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import ClassVar

__all__ = ["StallWatch"]

_TICK = 0.01  # seconds between ticks: 100 cheap callbacks a second while a link runs
_STALL = 0.02  # a tick this late means the loop did not run (a 16-byte frame at 9600 baud)


class StallWatch:
    """One per event loop (:meth:`of`); ticks while anyone uses it (:meth:`hold`)."""

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StallWatch]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._users = 0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.last_stall = float("-inf")  # loop time at which the last stall ended
        self.stalls = 0

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> StallWatch:
        watch = cls._by_loop.get(loop)
        if watch is None:
            watch = cls._by_loop[loop] = cls(loop)
        return watch

    def hold(self) -> None:
        self._users += 1
        if self._handle is None:
            self._schedule()

    def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def stalled_since(self, t: float) -> bool:
        """Whether the loop stood still for a while at some point after loop time ``t``."""
        return self.last_stall > t

    def _schedule(self) -> None:
        self._due = self._loop.time() + _TICK
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        if now - self._due > _STALL:
            self.last_stall = now
            self.stalls += 1
        self._schedule()
