"""Retained state of windows, queues and call boards.

Imported by :mod:`hallq.messages` on first use of one of its names."""

from __future__ import annotations

from pydantic import (
    AwareDatetime,
    Field,
)

from hallq.messages import (
    ComfortLevel,
    Ident,
    Retained,
    ServiceCode,
    ShortText,
    TicketNo,
    WaitRange,
    Weight,
    WindowNo,
    WindowStatus,
    Wire,
)


class WindowState(Retained):
    window: WindowNo
    zone: Ident
    status: WindowStatus
    ticket: TicketNo | None = None
    service: ServiceCode | None = None
    since: AwareDatetime | None = None
    skills: dict[ServiceCode, Weight] = Field(default_factory=dict)
    withdrawn: TicketNo | None = Field(
        default=None,
        description="a ticket this window had called, voided since: its key press was "
        "issued offline instead, so nobody holds it (the pad says so); cleared by the "
        "window's next command",
    )
    closing: bool = Field(
        default=False,
        description="closed with a ticket at the counter: paused until that ticket is "
        "done (or moved on), then closed",
    )


class BoardCall(Wire):
    ticket: TicketNo
    window: WindowNo
    zone: Ident
    called_at: AwareDatetime


class BoardState(Retained):
    calls: list[BoardCall] = Field(default_factory=list, max_length=50, description="newest first")
    waiting: dict[ServiceCode, int] = Field(default_factory=dict)
    site_waiting: dict[Ident, dict[ServiceCode, int]] = Field(
        default_factory=dict,
        description="waiting per service at each 办税点 (site), only where the hall has "
        "more than one: its tickets are called only there, so a zone board shows its "
        "own site's counts, not the hall's",
    )
    notice: ShortText | None = None
    comfort: ComfortLevel | None = None


class QueueState(Retained):
    service: ServiceCode
    waiting: int = Field(ge=0)
    next: list[TicketNo] = Field(default_factory=list, max_length=20)
    eta_min: float | None = Field(
        default=None,
        ge=0,
        description="the likeliest wait for a ticket issued now (wait.p50_min), minutes",
    )
    oldest_wait_s: float | None = Field(default=None, ge=0)
    wait: WaitRange | None = None
