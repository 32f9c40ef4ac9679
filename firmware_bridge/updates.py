"""What a link hands to its agent: device events, and link and device health.

They arrive on one ordered stream, so an agent sees a device go offline before it sees
the link come back, and never a key press from a device it has not yet seen come online.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.payloads import DeviceStatus, Identity

__all__ = ["DeviceEvent", "DeviceState", "LinkState", "Update"]


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Base of every typed event a driver produces; ``device`` is the hall file's device id."""

    device: str
    address: int


@dataclass(frozen=True, slots=True)
class LinkState:
    """The serial port opened (``up``) or went away; ``reason`` is for the log and the dashboard."""

    port: str
    up: bool
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceState:
    """A device started or stopped answering, rebooted, or reported different health."""

    port: str
    device: str
    address: int
    online: bool
    reason: str
    identity: Identity | None = None
    status: DeviceStatus | None = None


Update = DeviceEvent | LinkState | DeviceState
