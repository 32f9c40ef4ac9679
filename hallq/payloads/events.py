"""Events the coordinator publishes: calls, ticket changes, alerts.

Imported by :mod:`hallq.messages` on first use of one of its names."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from hallq.messages import (
    Ident,
    Message,
    ServiceCode,
    ShortText,
    TicketNo,
    TicketState,
    WindowNo,
)


class CallEvent(Message):
    ticket: TicketNo
    service: ServiceCode
    window: WindowNo
    zone: Ident
    recall: int = Field(default=0, ge=0, description="0 for the first call, n for the n-th recall")


class TicketEvent(Message):
    ticket: TicketNo
    service: ServiceCode
    state: TicketState
    window: WindowNo | None = None
    reason: ShortText | None = None


class AlertEvent(Message):
    severity: Literal["info", "warning", "critical"]
    kind: Ident
    message: ShortText
    window: WindowNo | None = None
    client: Ident | None = None
    service: ServiceCode | None = Field(default=None, description="the queue it is about")
    site: Ident | None = Field(
        default=None, description="the 办税点 (building) of that queue, where the hall has several"
    )
