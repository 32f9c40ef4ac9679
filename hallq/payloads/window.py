"""Window commands: a window agent's pads (or a supervisor) to the coordinator.

Imported by :mod:`hallq.messages` on first use of one of its names."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)
from typing_extensions import TypeAliasType

from hallq.messages import (
    Command,
    Rating,
    ServiceCode,
    TicketNo,
    Ulid,
    Weight,
    WindowNo,
)


class _WindowCommand(Command):
    window: WindowNo


class WindowAction(_WindowCommand):
    """A key press that needs no argument."""

    action: Literal[
        "call", "recall", "skip", "start", "pause", "resume", "open", "close", "park", "emergency"
    ]


class TicketAction(_WindowCommand):
    """An action on a named ticket of today."""

    action: Literal["call_ticket", "reinstate", "unpark", "cancel"]
    ticket: TicketNo


class Transfer(_WindowCommand):
    """Move a ticket (the one being served when ``ticket`` is omitted) to a service or window."""

    action: Literal["transfer"]
    ticket: TicketNo | None = None
    to_service: ServiceCode | None = None
    to_window: WindowNo | None = Field(default=None, validate_default=True)

    # On a field, not the model: a model validator's error has no location, and the error
    # report would name no field.
    @field_validator("to_window")
    @classmethod
    def _one_target(cls, to_window: int | None, info: ValidationInfo) -> int | None:
        if "to_service" not in info.data:  # to_service itself was wrong: that error is enough
            return to_window
        if (info.data["to_service"] is None) == (to_window is None):
            raise ValueError("give exactly one of to_service or to_window")
        return to_window


class Finish(_WindowCommand):
    action: Literal["finish"]
    rating: Rating | None = None


class Rate(_WindowCommand):
    """A rating key pressed after service; tied to the ticket just served at that window."""

    action: Literal["rate"]
    ticket: TicketNo
    rating: Rating


class SetSkills(_WindowCommand):
    """Change the services a window serves and their weights, live."""

    action: Literal["set_skills"]
    skills: dict[ServiceCode, Weight] = Field(min_length=1, max_length=64)


class Query(_WindowCommand):
    """ "Did my last command happen?": asked by a pad whose command got no reply within its
    deadline. Past that deadline the coordinator's answer is final: a command it has not
    applied by then it never will (see docs/delivery.md)."""

    action: Literal["query"]
    about: Ulid = Field(description="the id of the command asked about")


# What a window Pi's login may ask for: what its pads send (keys CALL RECALL SKIP TRANSFER
# PAUSE RESUME FINISH EMERGENCY, a rating pad, a pad asking about its last command), and
# start, open and close, which take nobody's ticket. Calling or transferring a named
# ticket, cancelling, reinstating, parking and unparking and changing skills are a
# supervisor's: with a pad's password they let anyone cancel every ticket of the hall by
# number, or pull any of them to its window.
PAD_ACTIONS = frozenset(
    {"call", "recall", "skip", "transfer", "pause", "resume", "finish", "emergency"}
    | {"rate", "query", "start", "open", "close"}
)


def pad_may_send(command: object) -> bool:
    """Whether a window Pi may send ``command`` (PAD_ACTIONS; a transfer of the ticket
    at its window, not of one named)."""
    if getattr(command, "action", None) not in PAD_ACTIONS:
        return False
    return not (isinstance(command, Transfer) and command.ticket is not None)


WindowCommand = TypeAliasType(
    "WindowCommand",
    Annotated[
        WindowAction | TicketAction | Transfer | Finish | Rate | SetSkills | Query,
        Field(discriminator="action"),
    ],
)
