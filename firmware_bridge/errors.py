"""Errors of the serial side, under hallq's one root so callers can catch them together.

Each leaf also inherits the builtin it resembles: an agent that only cares that a device
did not answer catches ``TimeoutError``; one that cares it was this bridge catches
``BridgeError``.
"""

from __future__ import annotations

from hallq.errors import HallqError


class BridgeError(HallqError):
    """Root of every error firmware_bridge raises on purpose."""


class FrameError(BridgeError, ValueError):
    """A frame or payload cannot be built or parsed as the protocol defines it."""


class PortUnavailable(BridgeError, ConnectionError):
    """The serial port cannot be opened (missing, busy, unsupported URL)."""


class LinkDown(BridgeError, ConnectionError):
    """A command was given while the port is closed; commands are never queued for later."""


class DeviceTimeout(BridgeError, TimeoutError):
    """A device did not answer a command within its timeout and retries."""

    def __init__(self, address: int, command: str, attempts: int) -> None:
        self.address = address
        self.command = command
        self.attempts = attempts
        super().__init__(f"device {address} did not answer {command} ({attempts} attempts)")


class DeviceRejected(BridgeError):
    """A device answered NACK: it understood the frame and refused it."""

    def __init__(self, address: int, command: str, reason: str) -> None:
        self.address = address
        self.command = command
        self.reason = reason
        super().__init__(f"device {address} refused {command}: {reason}")
