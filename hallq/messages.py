"""Payload models of the wire contract (pydantic v2).

Every payload carries ``v`` (schema version), ``id`` (a ULID: the idempotency key of a
command, the identity of an event) and ``ts`` (UTC, when it was made). Models forbid
unknown fields and validate strictly, so a typo or a wrong type on the wire is an error
naming the field, never a silently ignored value.

This module holds what every client uses (the field types, the bases, presence, health,
error reports, the codec); the models of each topic group live in :mod:`hallq.payloads`
and are imported on first use of their name here (``m.WindowState``, ``from
hallq.messages import Reply``), so an agent creates only the models of its own topics.
Class creation is most of what the models cost a process (~1 MB for all of them).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args, get_origin, overload

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hallq.errors import PayloadError
from hallq.lazy import lazy_names
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
    """Retained state; receivers apply a revision only if it is above the last one applied,
    or below it and made later (its publisher counts again: a new event log)."""

    rev: int = Field(ge=0, description="monotonic revision of this topic's state")


class WaitRange(Wire):
    """A predicted wait until the call, as a taxpayer should read it: a range that holds
    the call 8 times in 10 (``low_min``..``high_min``) around the likeliest wait
    (``p50_min``). ``basis``: ``simulation`` (the hall played forward from now with its
    real dispatch policy), ``queueing`` (people ahead x counter time / windows' worth,
    between simulations or where none runs) or ``no_window`` (no open window of its site
    serves it now, every one paused or closed: no time can be promised, and the minutes
    are only how long its queue has stood still)."""

    p50_min: float = Field(ge=0)
    low_min: float = Field(ge=0)
    high_min: float = Field(ge=0)
    basis: Literal["simulation", "queueing", "no_window"] = "queueing"

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
        if self.basis == "no_window":
            return "暂无窗口办理, 开窗后叫号"
        lo, hi = self.bounds()
        return "1 分钟内" if self.high_min < 1 else f"约 {lo}{dash}{hi} 分钟"

    def en(self) -> str:
        if self.basis == "no_window":
            return "no window open for it now; called once one opens"
        lo, hi = self.bounds()
        return "within 1 min" if self.high_min < 1 else f"about {lo}–{hi} min"


# --- every client's own topics -----------------------------------------------------------


class Presence(Message):
    """Birth and will. ``boot`` rises on every connect, so a stale will can be recognised."""

    state: Literal["online", "offline"]
    boot: int = Field(ge=0)
    role: Ident
    client: Ident
    version: Annotated[str, StringConstraints(max_length=40)] | None = None


# a component's status when the broker keeps dropping the client's connections as soon as
# they are made: another client connected with the same id (a copied card, a stolen password)
SHARED_ID = "shared_id"
# a component's status when its file cannot be written (a Pi's SD card gone read-only);
# for component ``state`` (the session's file) its boots are counted in memory since
NOT_WRITABLE = "not_writable"
# the coordinator's component listing the logins a supervisor suspended (ok: no fault of
# its own), space-separated in its detail; `hallq status` marks their rows
SUSPENDED = "suspended"


class ComponentHealth(Wire):
    name: Ident
    ok: bool
    status: Ident = Field(
        description="e.g. ok, link_down, paper_near_end, paper_out, cover_open; "
        f"{SHARED_ID} (component mqtt: another client is connected with this one's id), "
        f"{NOT_WRITABLE} (its file cannot be written)"
    )
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


# --- the topic groups' models, imported on first use ---------------------------------------

if TYPE_CHECKING:
    from hallq.payloads.dispenser import IssueRequest as IssueRequest
    from hallq.payloads.dispenser import LeaseRequest as LeaseRequest
    from hallq.payloads.dispenser import OfflineIssue as OfflineIssue
    from hallq.payloads.dispenser import TicketRequest as TicketRequest
    from hallq.payloads.dispenser import VoidRequest as VoidRequest
    from hallq.payloads.events import AlertEvent as AlertEvent
    from hallq.payloads.events import CallEvent as CallEvent
    from hallq.payloads.events import TicketEvent as TicketEvent
    from hallq.payloads.replies import CommandReply as CommandReply
    from hallq.payloads.replies import IssueReply as IssueReply
    from hallq.payloads.replies import LeaseReply as LeaseReply
    from hallq.payloads.replies import Rejection as Rejection
    from hallq.payloads.replies import Reply as Reply
    from hallq.payloads.replies import TicketInfo as TicketInfo
    from hallq.payloads.state import BoardCall as BoardCall
    from hallq.payloads.state import BoardState as BoardState
    from hallq.payloads.state import QueueState as QueueState
    from hallq.payloads.state import WindowState as WindowState
    from hallq.payloads.stats import CityLinkState as CityLinkState
    from hallq.payloads.stats import ComfortDay as ComfortDay
    from hallq.payloads.stats import ComfortState as ComfortState
    from hallq.payloads.stats import Kpi as Kpi
    from hallq.payloads.stats import StatsState as StatsState
    from hallq.payloads.window import Finish as Finish
    from hallq.payloads.window import Query as Query
    from hallq.payloads.window import Rate as Rate
    from hallq.payloads.window import SetSkills as SetSkills
    from hallq.payloads.window import TicketAction as TicketAction
    from hallq.payloads.window import Transfer as Transfer
    from hallq.payloads.window import WindowAction as WindowAction
    from hallq.payloads.window import WindowCommand as WindowCommand

GROUPS: dict[str, tuple[str, ...]] = {
    "hallq.payloads.window": (
        "WindowAction",
        "TicketAction",
        "Transfer",
        "Finish",
        "Rate",
        "SetSkills",
        "Query",
        "WindowCommand",
    ),
    "hallq.payloads.dispenser": (
        "OfflineIssue",
        "IssueRequest",
        "LeaseRequest",
        "VoidRequest",
        "TicketRequest",
    ),
    "hallq.payloads.replies": (
        "Rejection",
        "TicketInfo",
        "IssueReply",
        "LeaseReply",
        "CommandReply",
        "Reply",
    ),
    "hallq.payloads.events": ("CallEvent", "TicketEvent", "AlertEvent"),
    "hallq.payloads.state": ("WindowState", "BoardCall", "BoardState", "QueueState"),
    "hallq.payloads.stats": ("ComfortDay", "ComfortState", "CityLinkState", "Kpi", "StatsState"),
}
_HOME = {name: module for module, names in GROUPS.items() for name in names}


# a topic group's model, its group imported on first use (PEP 562)
__getattr__ = lazy_names(__name__, _HOME)


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


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
    # the model's serializer itself: model_dump_json's bytes made a str, and back
    data = type(message).__pydantic_serializer__.to_json(message, exclude_none=True)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"{type(message).__name__} encodes to {len(data)} bytes, over the "
            f"{MAX_PAYLOAD_BYTES}-byte limit",
            model=type(message).__name__,
        )
    return data


def _tagged(payload_type: Any) -> bool:
    """A discriminated union (``WindowCommand``...): its errors start with the tag value."""
    target = getattr(payload_type, "__value__", None)
    return get_origin(target) is Annotated and any(
        getattr(meta, "discriminator", None) for meta in get_args(target)[1:]
    )


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
        field, message = describe(exc, tagged=_tagged(payload_type))
        raise PayloadError(f"{name}: field {field}: {message}", field=field, model=name) from None
