"""Payload models of the wire contract (pydantic v2).

Every payload carries ``v`` (schema version), ``id`` (a ULID: the idempotency key of a
command, the identity of an event) and ``ts`` (UTC, when it was made). Models forbid
unknown fields and validate strictly, so a typo or a wrong type on the wire is an error
naming the field, never a silently ignored value.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar, overload

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from hallq.errors import PayloadError
from hallq.logsetup import escape_controls, redact
from hallq.topics import ID_PATTERN
from hallq.ulid import ULID_PATTERN, new_ulid

SCHEMA_VERSION: Literal[1] = 1
MAX_PAYLOAD_BYTES = 16 * 1024

Ulid = Annotated[str, StringConstraints(pattern=ULID_PATTERN)]
Ident = Annotated[str, StringConstraints(pattern=ID_PATTERN.pattern)]
ServiceCode = Ident
TicketNo = Annotated[str, StringConstraints(pattern=r"^[A-Z][0-9]{2,5}$")]
WindowNo = Annotated[int, Field(ge=1, le=999)]
Rating = Annotated[int, Field(ge=1, le=4, description="4 非常满意, 3 满意, 2 基本满意, 1 不满意")]
IdentityHash = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="HMAC-SHA256 of the ID-card number with the deployment key, hex"),
]
AppointmentCode = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{4,16}$")]
ShortText = Annotated[str, StringConstraints(max_length=200)]
ComfortLevel = Literal["较少", "适中", "较多"]  # 办税舒适度: quiet, moderate, busy
Weight = Annotated[float, Field(gt=0, le=10)]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Priority(StrEnum):
    """Priority class of a ticket, strongest first (see coordinator/DISPATCH.md)."""

    GREEN = "green"
    APPOINTMENT = "appointment"
    ASSISTED = "assisted"
    NORMAL = "normal"


class TicketState(StrEnum):
    WAITING = "waiting"
    CALLED = "called"
    SERVING = "serving"
    DONE = "done"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"
    TRANSFERRED = "transferred"
    PARKED = "parked"
    VOIDED = "voided"


class WindowStatus(StrEnum):
    OPEN = "open"
    PAUSED = "paused"
    CLOSED = "closed"


class Wire(BaseModel):
    """Closed model for nested wire objects; :func:`decode` validates the wire strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Message(Wire):
    """Fields every top-level payload has."""

    v: Literal[1] = SCHEMA_VERSION
    id: Ulid = Field(default_factory=new_ulid, description="ULID; commands are idempotent on it")
    ts: AwareDatetime = Field(default_factory=_utcnow, description="when it was made (UTC)")

    @field_validator("v", mode="before")
    @classmethod
    def _version_is_an_integer(cls, value: Any) -> Any:
        # Literal[1] accepts True (True == 1 in Python), strict mode or not
        if isinstance(value, bool):
            raise ValueError("the schema version is an integer, not a boolean")
        return value


WIRE = {"wire": True}  # validation context of a payload that came over the network


def _id_required(schema: dict[str, Any]) -> None:
    schema["required"] = sorted({*schema.get("required", []), "id"})


class Command(Message):
    """A command or request to the coordinator. On the wire its ``id`` is required: it is
    the idempotency key, and one made up by the receiver would turn a retried request into
    a second ticket. (Built in Python, the id is still generated.)"""

    model_config = ConfigDict(json_schema_extra=_id_required)

    @model_validator(mode="after")
    def _wire_needs_an_id(self, info: ValidationInfo) -> Command:
        if info.context and info.context.get("wire") and "id" not in self.model_fields_set:
            raise PydanticCustomError(
                "id_missing", "Field required: the command's idempotency key (a ULID)"
            )
        return self


class Retained(Message):
    """Retained state; receivers apply a revision only if it is above the last one applied."""

    rev: int = Field(ge=0, description="monotonic revision of this topic's state")


# --- window commands: window agent (or supervisor) -> coordinator ---------------------------


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


WindowCommand = TypeAliasType(
    "WindowCommand",
    Annotated[
        WindowAction | TicketAction | Transfer | Finish | Rate | SetSkills | Query,
        Field(discriminator="action"),
    ],
)


# --- dispenser requests and replies -----------------------------------------------------


class OfflineIssue(Wire):
    """Set when a dispenser replays a ticket it issued from its leased block while offline."""

    number: TicketNo
    issued_at: AwareDatetime
    supersedes: Ulid | None = Field(
        default=None,
        description="id of the online request that timed out for this key press: if the "
        "coordinator issued a ticket for it, that ticket was never printed and is voided",
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


class Rejection(Wire):
    code: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,40}$")]
    message: ShortText


class WaitRange(Wire):
    """A predicted wait until the call, as a taxpayer should read it: a range that holds
    the call 8 times in 10 (``low_min``..``high_min``) around the likeliest wait
    (``p50_min``). ``basis``: ``simulation`` (the hall played forward from now with its
    real dispatch policy) or ``queueing`` (people ahead x counter time / windows' worth,
    between simulations or where none runs)."""

    p50_min: float = Field(ge=0)
    low_min: float = Field(ge=0)
    high_min: float = Field(ge=0)
    basis: Literal["simulation", "queueing"] = "queueing"

    @model_validator(mode="after")
    def _ordered(self) -> WaitRange:
        if not self.low_min <= self.p50_min <= self.high_min:
            raise ValueError("expected low_min <= p50_min <= high_min")
        return self

    def bounds(self) -> tuple[int, int]:
        """Whole minutes as shown: the low end rounded down, the high end up, at least
        one apart once the wait is a minute or more."""
        lo = int(self.low_min)
        hi = max(lo, int(-(-self.high_min // 1)))
        if hi == lo and self.high_min >= 1:
            hi = lo + 1
        return lo, hi

    def zh(self, dash: str = "–") -> str:
        """``dash="-"`` for printers whose font is GB2312 only (no en dash)."""
        lo, hi = self.bounds()
        return "1 分钟内" if self.high_min < 1 else f"约 {lo}{dash}{hi} 分钟"

    def en(self) -> str:
        lo, hi = self.bounds()
        return "within 1 min" if self.high_min < 1 else f"about {lo}–{hi} min"


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
TAGGED_UNIONS: frozenset[Any] = frozenset({WindowCommand, TicketRequest, Reply})


# --- events -----------------------------------------------------------------------------


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


# --- retained state ---------------------------------------------------------------------


class WindowState(Retained):
    window: WindowNo
    zone: Ident
    status: WindowStatus
    ticket: TicketNo | None = None
    service: ServiceCode | None = None
    since: AwareDatetime | None = None
    skills: dict[ServiceCode, Weight] = Field(default_factory=dict)


class BoardCall(Wire):
    ticket: TicketNo
    window: WindowNo
    zone: Ident
    called_at: AwareDatetime


class BoardState(Retained):
    calls: list[BoardCall] = Field(default_factory=list, max_length=50, description="newest first")
    waiting: dict[ServiceCode, int] = Field(default_factory=dict)
    notice: ShortText | None = None
    comfort: ComfortLevel | None = None


class ComfortDay(Wire):
    """One day of the comfort index: its level, and by hour from ``first_hour`` the level
    (``null``: closed that hour, e.g. lunch) and forecast arrivals -- columns, so a month
    fits well inside one message."""

    day: dt.date
    open: bool
    level: ComfortLevel
    first_hour: int = Field(default=0, ge=0, le=23)
    hours: list[ComfortLevel | None] = Field(default_factory=list, max_length=24)
    expected: list[int] = Field(default_factory=list, max_length=24)

    @model_validator(mode="after")
    def _columns_agree(self) -> ComfortDay:
        if len(self.hours) != len(self.expected):
            raise ValueError(f"{len(self.hours)} hour levels but {len(self.expected)} counts")
        if self.first_hour + len(self.hours) > 24:
            raise ValueError("hours run past midnight")
        return self


class ComfortState(Retained):
    """办税舒适度指数: the forecast's next days by hour, for boards, the dashboard and the
    bureau's WeChat publisher. Levels are bands of expected wait (by default the mean
    wait of simulated days at the forecast's arrivals, ``method``); the two rates are the
    arrivals per hour at which the wait reaches each band edge, for reference."""

    source: ShortText
    quiet_below_per_hour: float = Field(ge=0)
    busy_from_per_hour: float = Field(ge=0)
    method: ShortText
    days: list[ComfortDay] = Field(default_factory=list, max_length=62)


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


class CityLinkState(RootModel[Annotated[int, Field(strict=True, ge=0, le=1)]]):
    """The hall broker's city bridge: 1 connected, 0 not. Mosquitto itself publishes it
    (bridge notifications, retained, local only), hence a bare number, not a message."""


class Kpi(Wire):
    issued: int = Field(ge=0)
    served: int = Field(ge=0)
    no_show: int = Field(default=0, ge=0)
    avg_wait_s: float | None = None
    p90_wait_s: float | None = None
    avg_service_s: float | None = None


class StatsState(Retained):
    day: dt.date
    total: Kpi
    per_service: dict[ServiceCode, Kpi] = Field(default_factory=dict)
    per_window: dict[Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,2}$")], Kpi] = Field(
        default_factory=dict
    )


# --- every client's own topics -----------------------------------------------------------


class Presence(Message):
    """Birth and will. ``boot`` rises on every connect, so a stale will can be recognised."""

    state: Literal["online", "offline"]
    boot: int = Field(ge=0)
    role: Ident
    client: Ident
    version: Annotated[str, StringConstraints(max_length=40)] | None = None


class ComponentHealth(Wire):
    name: Ident
    ok: bool
    status: Ident = Field(description="e.g. ok, link_down, paper_near_end, paper_out, cover_open")
    detail: ShortText | None = None


class DeviceHealth(Retained):
    components: list[ComponentHealth] = Field(default_factory=list, max_length=32)


RejectCode = Literal[
    "oversize", "invalid_json", "invalid_payload", "bad_topic", "handler_failed", "refused"
]


class ErrorReport(Message):
    """What a client rejected: the topic it came on, a code, and the field at fault."""

    topic: Annotated[str, StringConstraints(max_length=300)]
    code: RejectCode
    message: Annotated[str, StringConstraints(max_length=1000)]
    field: Annotated[str, StringConstraints(max_length=200)] | None = None


# --- encoding and decoding --------------------------------------------------------------

T = TypeVar("T")
_adapters: dict[Any, TypeAdapter[Any]] = {}


def adapter(payload_type: Any) -> TypeAdapter[Any]:
    """A cached TypeAdapter, so a discriminated union decodes as fast as a model."""
    found = _adapters.get(payload_type)
    if found is None:
        found = _adapters[payload_type] = TypeAdapter(payload_type)
    return found


def encode(message: BaseModel) -> bytes:
    data = message.model_dump_json(exclude_none=True).encode()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"{type(message).__name__} encodes to {len(data)} bytes, over the "
            f"{MAX_PAYLOAD_BYTES}-byte limit",
            model=type(message).__name__,
        )
    return data


def _type_name(payload_type: Any) -> str:
    return str(getattr(payload_type, "__name__", payload_type))


FIELD_SHOWN = 80  # characters of a field path an error quotes
INPUT_SHOWN = 60  # characters of a rejected value an error quotes


def _quote(text: str, limit: int) -> str:
    """What an error may say about client text: identity numbers masked, control
    characters escaped, cut to ``limit`` -- so a report always fits its own schema and
    never carries an ID number or a forged log line."""
    text = escape_controls(redact(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(error: ValidationError, *, tagged: bool = False) -> tuple[str, str]:
    """(dotted field path, message) of the first error, for logs and error reports.

    For a tagged union the first location level is the tag value; it is dropped so the path
    names the field as it appears in the JSON. Both parts are bounded and redacted
    (:func:`_quote`): a field name is client text too.
    """
    first = error.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    if tagged and loc:
        loc = loc[1:]
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append(str(first.get("ctx", {}).get("discriminator", "")).strip("'"))
    if first["type"] == "id_missing":
        loc.append("id")
    field = _quote(".".join(loc), FIELD_SHOWN) or "(payload)"
    got = first.get("input")
    message = first["msg"]
    if isinstance(got, (str, int, float, bool)) or got is None:
        message += f" (got {_quote(repr(got), INPUT_SHOWN)})"
    more = error.error_count() - 1
    return field, message + (f" (+{more} more)" if more else "")


@overload
def decode(payload_type: type[T], data: bytes | str) -> T: ...
@overload
def decode(payload_type: Any, data: bytes | str) -> Any: ...  # a union or Annotated form


def decode(payload_type: Any, data: bytes | str) -> Any:
    """Validate a raw payload strictly; raise ``PayloadError`` naming the size or the field.

    Strict JSON validation: "15" is not a window number and a naive timestamp is not a time.
    """
    name = _type_name(payload_type)
    size = len(data)
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"{name}: payload of {size} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit",
            model=name,
            code="oversize",
        )
    try:
        return adapter(payload_type).validate_json(data, strict=True, context=WIRE)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            reason = _quote(exc.errors(include_url=False)[0]["msg"], 200)
            raise PayloadError(f"{name}: {reason}", model=name, code="invalid_json") from None
        field, message = describe(exc, tagged=payload_type in TAGGED_UNIONS)
        raise PayloadError(f"{name}: field {field}: {message}", field=field, model=name) from None
