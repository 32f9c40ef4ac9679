"""Dispenser requests: ticket issue, number-block lease, void.

Imported by :mod:`hallq.messages` on first use of one of its names."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    Field,
)
from typing_extensions import TypeAliasType

from hallq.messages import (
    AppointmentCode,
    Command,
    IdentityHash,
    Priority,
    ServiceCode,
    ShortText,
    TicketNo,
    Ulid,
    Wire,
)


class OfflineIssue(Wire):
    """Set when a dispenser replays a ticket it issued from its leased block while offline."""

    number: TicketNo
    issued_at: AwareDatetime
    supersedes: Ulid | None = Field(
        default=None,
        description="id of the online request that timed out for this key press: if the "
        "coordinator issued a ticket for it, that ticket was never printed and is voided; "
        "one a window called meanwhile has its call withdrawn (the window's state says "
        "`withdrawn`)",
    )


class IssueRequest(Command):
    kind: Literal["issue"]
    service: ServiceCode
    priority: Priority = Priority.NORMAL
    appointment: AppointmentCode | None = None
    identity: IdentityHash | None = None
    offline: OfflineIssue | None = None


class LeaseRequest(Command):
    """Ask for a block of numbers to issue from while the coordinator cannot be reached."""

    kind: Literal["lease"]
    service: ServiceCode
    size: int = Field(ge=1, le=500)


class VoidRequest(Command):
    """Withdraw a ticket the dispenser could not print, so no ghost number waits in the queue."""

    kind: Literal["void"]
    number: TicketNo
    reason: ShortText


TicketRequest = TypeAliasType(
    "TicketRequest",
    Annotated[IssueRequest | LeaseRequest | VoidRequest, Field(discriminator="kind")],
)
