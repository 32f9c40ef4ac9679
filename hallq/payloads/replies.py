"""The coordinator's replies to requests and commands.

Imported by :mod:`hallq.messages` on first use of one of its names."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    Field,
    StringConstraints,
    model_validator,
)
from typing_extensions import TypeAliasType

from hallq.messages import (
    Message,
    Priority,
    ServiceCode,
    ShortText,
    TicketNo,
    Ulid,
    WaitRange,
    Wire,
)


class Rejection(Wire):
    code: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,40}$")]
    message: ShortText


class TicketInfo(Wire):
    number: TicketNo
    service: ServiceCode
    priority: Priority
    issued_at: AwareDatetime
    people_ahead: int = Field(ge=0)
    eta_min: float = Field(ge=0, description="the likeliest wait (wait.p50_min), minutes")
    url: Annotated[str, StringConstraints(max_length=300)] | None = None
    wait: WaitRange | None = None


class _Reply(Message):
    corr: Ulid = Field(description="the id of the request this answers")
    ok: bool
    error: Rejection | None = None

    @model_validator(mode="after")
    def _error_iff_not_ok(self) -> _Reply:
        if self.ok == (self.error is not None):
            raise ValueError("error must be given exactly when ok is false")
        return self


class IssueReply(_Reply):
    kind: Literal["issue"]
    ticket: TicketInfo | None = None


class LeaseReply(_Reply):
    kind: Literal["lease"]
    service: ServiceCode
    day: dt.date | None = None
    first: int | None = Field(default=None, ge=1)
    last: int | None = Field(default=None, ge=1)


class CommandReply(_Reply):
    kind: Literal["command"]
    ticket: TicketNo | None = Field(default=None, description="the ticket the command acted on")
    happened: bool | None = Field(
        default=None,
        description="answer to a query: whether the command asked about "
        "changed the hall (then `ticket` is the one it acted on); false is final",
    )
    refused: Rejection | None = Field(
        default=None, description="answer to a query: why the command asked about was refused"
    )


Reply = TypeAliasType(
    "Reply",
    Annotated[IssueReply | LeaseReply | CommandReply, Field(discriminator="kind")],
)
