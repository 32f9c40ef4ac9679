"""The HTTP API's responses (and request bodies) as pydantic models.

The views build these, so a response cannot carry a field its model lacks, and the
OpenAPI document (``openapi.py``) is generated from the same models' JSON schemas: the
document and what the API answers cannot drift apart. Where the wire contract already
says what a window, queue, board or KPI looks like, the model reuses that message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hallq import messages as m

__all__ = [
    "RESPONSE_MODELS",
    "AckRequest",
    "AdviceView",
    "Alert",
    "AuditEntry",
    "BoardItem",
    "Booked",
    "Booking",
    "BookingRequest",
    "CancelRequest",
    "CityLink",
    "CommandResult",
    "Desk",
    "DeskAlert",
    "DeskService",
    "DeskWindow",
    "DeskZone",
    "Device",
    "DeviceProblem",
    "Done",
    "Error",
    "Hall",
    "HallHeader",
    "Health",
    "Impact",
    "ImpactRequest",
    "Invitation",
    "Invitations",
    "InviteCandidate",
    "InviteRequest",
    "KpiCompare",
    "LoginRequest",
    "Nearby",
    "NearbyHall",
    "PublicHall",
    "QuietSlot",
    "Service",
    "Slot",
    "Slots",
    "SupervisorBooking",
    "SupervisorCommand",
    "Ticket",
    "TicketCommand",
    "WhoAmI",
]

ComfortLevel = Literal["较少", "适中", "较多"]
BookingState = Literal["booked", "checked_in", "no_show", "cancelled"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Out):
    code: str
    message: str


class Error(_Out):
    ok: Literal[False] = False
    error: ErrorDetail


class WaitText(_Out):
    """A wait range as every public page words it (``WaitRange.zh`` / ``en``)."""

    zh: str = Field(description='e.g. "约 8–12 分钟"')
    en: str = Field(description='e.g. "about 8–12 min"')

    @classmethod
    def of(cls, wait: m.WaitRange | None) -> WaitText | None:
        return None if wait is None else cls(zh=wait.zh(), en=wait.en())


class Service(_Out):
    code: str
    name: str
    name_en: str | None
    prefix: str
    wait_target_min: float
    materials: list[str]
    queue: m.QueueState
    over_target: bool
    wait_text: WaitText | None = Field(default=None, description="queue.wait in words")


class Device(_Out):
    role: str
    client: str
    online: bool | None
    boot: int | None
    version: str | None
    since: float | None = Field(description="when the presence last changed (epoch s)")
    healthy: bool | None
    components: list[m.ComponentHealth]
    health_at: float | None = Field(description="when health was last reported (epoch s)")


class HallHeader(_Out):
    id: str
    name: str
    name_en: str | None = None
    day: str | None = Field(description="the business day the engine is on")
    open: bool = Field(default=True, description="within the hall's open hours now")
    opens: str | None = Field(
        default=None, description="closed now: when it opens again today (HH:MM), else null"
    )
    calling: bool = Field(
        default=False,
        description="closed now, but windows are still calling those who took a ticket "
        "before it closed",
    )
    places: dict[str, str] = Field(
        default_factory=dict,
        description="zone -> its name, where the hall has several 办税点 (buildings): a call "
        "says which one its window is in",
    )


class PublicHall(_Out):
    """What anyone in the hall may see: the boards, the queues with their estimates and
    the comfort level now; nothing about staff, devices or KPIs."""

    hall: HallHeader
    rev: int
    now: str | None
    services: list[Service]
    board: m.BoardState
    comfort: ComfortLevel | None = Field(
        default=None, description="the comfort index's level now (None: no index)"
    )


class Hall(_Out):
    """The supervisor's view: the public one plus windows, KPIs, devices and alerts."""

    hall: HallHeader
    rev: int
    now: str | None
    services: list[Service]
    zones: dict[str, str] = Field(
        description="function hall id -> name, in the hall file's order (the window table's groups)"
    )
    windows: list[m.WindowState]
    board: m.BoardState
    stats: m.StatsState
    devices: list[Device]
    alerts: int = Field(description="how many alerts are open")


class Ticket(_Out):
    number: str
    service: str
    service_name: str
    materials: list[str]
    state: m.TicketState
    priority: m.Priority
    people_ahead: int | None
    eta_min: float | None
    wait: m.WaitRange | None = None
    wait_text: WaitText | None = Field(default=None, description="wait in words")
    window: int | None = Field(
        description="the window that called it: while called or served, and after (done, "
        "no-show), so its holder can say where"
    )
    window_place: str | None = Field(
        default=None,
        description="where that window (or, while it waits, the window it was sent to) "
        "is: its function hall (zone) by name",
    )
    directed_window: int | None = Field(description="a transfer sent it to this window")
    site: str | None = Field(
        default=None,
        description="the 办税点 (building) it is called in, where the hall has several",
    )
    issued_at: str | None
    called_at: str | None
    recalls: int
    rev: int


class Alert(BaseModel):
    """Engine alerts carry their own fields (``AlertEvent``) beside these."""

    model_config = ConfigDict(extra="allow")

    severity: Literal["info", "warning", "critical"]
    kind: str
    message: str
    at: str | None
    kind_zh: str | None = Field(default=None, description="the kind as the desk names it")
    severity_zh: str | None = None


class CityLink(_Out):
    """How far the event log's shipping to the city lags, from the shipper's mark."""

    events: int | None = None
    seconds: float | None = None
    shipped_seq: int | None = None
    error: str | None = None
    updated: float | None = Field(default=None, description="epoch s of the shipper's last try")


class Health(_Out):
    ok: bool
    broker_connected: bool
    seq: int
    day: str | None
    stream_clients: int
    city_link: CityLink | None = Field(
        default=None, description="null where no shipper has run (a hall without the city)"
    )


class BoardItem(_Out):
    id: str
    zone: str | None
    caption: str = Field(description="what the public page writes under it: its hall's name")
    caption_en: str
    width: int
    height: int
    png: str


class Slot(_Out):
    slot: str
    start: str
    free: int
    open: bool
    comfort: ComfortLevel | None = Field(description="the comfort index's level for that half hour")


class Slots(_Out):
    service: str
    day: str
    capacity: int
    days: list[str]
    slots: list[Slot]


class Booking(_Out):
    code: str = Field(pattern="^[A-Z0-9]{4,16}$")
    service: str
    day: str
    start: str
    end: str
    slot: str
    state: BookingState
    booked_by: str


class Booked(Booking):
    ok: Literal[True] = True


class SupervisorBooking(Booking):
    note: str | None


class CommandResult(_Out):
    ok: bool
    error: m.Rejection | None
    seq: int
    id: str


class WhoAmI(_Out):
    """The logged-in session (``/api/login``, ``/api/session``, ``/api/supervisor/whoami``)."""

    ok: Literal[True] = True
    user: str
    role: Literal["supervisor", "viewer"]
    csrf: str = Field(description="send as X-CSRF-Token with every change")
    may_act: bool
    expires_at: float = Field(description="epoch seconds, if left idle")


class LoginRequest(_Out):
    user: str = Field(max_length=64)
    password: str


class Done(_Out):
    ok: Literal[True] = True


class AuditEntry(_Out):
    id: int
    at: float = Field(description="epoch seconds, the hall's clock (in a hall, the wall clock)")
    when: str = Field(description="at, in the hall's time zone: MM-DD HH:MM:SS")
    user: str
    role: str | None
    action: str = Field(
        description="login, logout, denied, open, close, pause, resume, set_skills, finish,"
        " invite, invite_declined, ack, advice_apply, advice_dismiss, advice_restore,"
        " suspend_device, resume_device; a console's (role console): its window action"
    )
    action_zh: str = Field(description="the action as the desk names it")
    target: str | None
    target_zh: str | None = Field(default=None, description="the target (and its detail) in words")
    ok: bool
    result: str | None
    result_zh: str | None = Field(description="a refusal's code as the desk says it")
    detail: dict[str, object] | str | None
    client: str | None = Field(description="the client's address")


class BookingRequest(_Out):
    service: str
    day: str | None = Field(default=None, description="YYYY-MM-DD; default: today")
    start: str = Field(pattern="^[0-2][0-9]:[0-5][0-9]$")
    note: str | None = Field(default=None, description="supervisor invitations only")
    id_number: str | None = Field(
        default=None,
        description="taxpayers: an 18-character resident ID number (or phone); "
        "keyed-hashed on arrival, never stored",
    )
    phone: str | None = Field(default=None, description="taxpayers: a mainland mobile number")


class CancelRequest(_Out):
    id_number: str | None = Field(default=None, description="the ID number booked with")
    phone: str | None = Field(default=None, description="or the phone number booked with")


class SupervisorCommand(_Out):
    action: Literal["open", "close", "pause", "resume", "set_skills", "finish"]
    skills: dict[str, float] | None = Field(
        default=None, description="set_skills only: service code -> weight"
    )


class TicketCommand(_Out):
    """The help desk's work on one ticket (``POST /api/supervisor/tickets/{number}``)."""

    action: Literal["reinstate", "cancel", "transfer"]
    to_window: int | None = Field(default=None, description="transfer: to this window")
    to_service: str | None = Field(default=None, description="transfer: or to this service")


class Impact(_Out):
    """What an action will do to the hall, as the desk's confirmation says it."""

    window: int
    action: str
    text: str = Field(description='one line, e.g. "关闭后 7 人转到其他窗口"')
    lines: list[str] = Field(description="per service: waiting, windows left, estimate change")
    people: int = Field(default=0, description="people waiting for the services affected")
    unserved: list[str] = Field(
        default_factory=list, description="services no open window would serve afterwards"
    )
    blocked: bool = Field(default=False, description="the engine will refuse it as things are")


class DeskService(_Out):
    code: str
    name: str
    waiting: int
    oldest_wait_min: float | None = Field(description="longest wait now")
    eta_min: float | None = Field(description="estimated wait for a ticket issued now")
    wait_text: str | None
    target_min: float
    windows: int = Field(description="open windows serving it")
    windows_by_zone: dict[str, int] = Field(description="function hall -> open windows serving it")
    waiting_by_site: dict[str, int] = Field(
        default_factory=dict,
        description="办税点 -> people waiting there, where the hall has several: each is "
        "served only by its own building's windows",
    )
    wait_by_site: dict[str, str] = Field(
        default_factory=dict,
        description="办税点 -> the wait of a ticket issued there now, in words (several only)",
    )
    over_target: bool
    issued: int
    served: int


class DeskWindow(_Out):
    window: int
    zone: str
    status: m.WindowStatus
    ticket: str | None
    service: str | None
    since: str | None = Field(description="hh:mm of the last status change")
    closing: bool = Field(default=False, description="paused until its ticket is done, then closed")
    skills: dict[str, float]
    served: int
    busy_min: float = Field(description="counter time today")
    actions: list[Literal["open", "close", "pause", "resume", "finish"]] = Field(
        description="what would change something, in the order the desk shows them"
    )


class DeskZone(_Out):
    id: str
    name: str
    site: str | None = Field(default=None, description="its 办税点 (building)")
    open: int
    paused: int
    closed: int
    serving: int = Field(description="windows with a ticket at the counter now")
    busy_min: float = Field(description="counter time today, all its windows")
    served: int


class KpiCompare(_Out):
    key: str
    label: str
    unit: str
    better: Literal["higher", "lower"]
    today: float | None
    yesterday: float | None
    last_month: float | None = Field(description="the same weekday four weeks ago")


class SuspendOffer(_Out):
    """What suspending a login the desk offers 停用 for would do, as its confirmation says."""

    voids: int | None = Field(
        default=None,
        description="a dispenser: its waiting tickets of the last Desk.void_minutes, "
        "which suspending it may void",
    )
    pauses: list[int] = Field(
        default_factory=list, description="a window agent: the open windows suspending it pauses"
    )
    last_kiosk: str | None = Field(
        default=None,
        description="a dispenser that is the last one not suspended in its 办税点 (building): "
        "that building, where nobody could take a ticket while it is suspended",
    )


class Login(SuspendOffer):
    """A login the desk may suspend (an agent's or a console's), not suspended now."""

    client: str
    role: str


class DeviceProblem(SuspendOffer):
    client: str
    role: str
    problem: Literal["suspended", "offline", "paper_low", "paper_out", "unhealthy"]
    text: str
    since: str | None = None
    suspendable: bool = Field(
        default=False, description="its login may be in the wrong hands: the desk offers 停用"
    )


class AdviceView(_Out):
    id: str
    service: str
    service_name: str
    windows: list[int]
    duration_min: int
    waiting: int
    target_min: float
    before_min: float
    after_min: float
    others_before_min: float
    others_after_min: float
    gain_min: float
    basis: str
    state: Literal["open", "applied", "dismissed", "restored", "expired"]
    by: str | None
    at: str = Field(description="hh:mm (hall time) it was advised")
    acted_at: str | None = Field(description="hh:mm it was applied or dismissed")
    until: str | None = Field(description="hh:mm the switch is due to end")
    due_restore: bool = Field(description="its time is up: the windows may be switched back")
    realised_min: float | None = Field(
        description="mean wait of its service's tickets called while it ran (min)"
    )
    realised_tickets: int
    text: str


class DeskAlert(SuspendOffer):
    key: str
    severity: Literal["info", "warning", "critical"]
    severity_zh: str
    kind: str
    kind_zh: str
    text: str = Field(description="with service and window names")
    count: int
    first: str | None
    last: str | None
    acked_by: str | None
    acked_at: str | None
    suspend: str | None = Field(
        default=None,
        description="the device this alert names, whose login the desk offers to suspend "
        "(a flood of tickets, its id in use twice); none once it is suspended",
    )


class Desk(_Out):
    """Everything the supervisor desk shows, in one answer per live update."""

    hall: HallHeader
    rev: int
    now: str | None
    services: list[DeskService]
    zones: list[DeskZone]
    windows: list[DeskWindow]
    service_names: dict[str, str]
    kpis: list[KpiCompare]
    compare_days: dict[str, str | None] = Field(description="yesterday, last_month: their dates")
    devices: list[DeviceProblem]
    alerts: list[DeskAlert]
    advice: list[AdviceView]
    void_minutes: int = Field(description="how far back a suspension offers to void tickets")
    logins: list[Login] = Field(
        default_factory=list,
        description="every login the desk may suspend (停用其他设备), for one no alert names",
    )
    audit_last: int = Field(default=0, description="the audit log's newest id (it changed: read)")


class QuietSlot(_Out):
    day: str
    start: str
    slot: str
    comfort: ComfortLevel | None = Field(description="null: no comfort index (earliest free)")
    free: int


class InviteCandidate(_Out):
    ref: str = Field(description="what the desk sends back to invite (a hash prefix)")
    label: str = Field(description="the identity as the desk shows it (a short hash prefix)")
    reason: str
    service: str
    service_name: str
    visits: int
    last: str | None
    slots: list[QuietSlot]


class Invitation(_Out):
    code: str
    label: str
    service: str
    service_name: str
    day: str
    slot: str
    state: Literal["offered", "accepted", "declined", "no_show"]
    by: str


class Invitations(_Out):
    candidates: list[InviteCandidate]
    invited: list[Invitation]
    comfort: bool = Field(description="whether the comfort index chose the slots")
    lookback_days: int


class InviteRequest(_Out):
    ref: str = Field(max_length=64)
    service: str
    day: str
    start: str = Field(pattern="^[0-2][0-9]:[0-5][0-9]$")


class AckRequest(_Out):
    key: str = Field(max_length=200)


class DeviceRequest(_Out):
    """Suspend or resume one device's login (``/api/supervisor/devices/{client}``)."""

    action: Literal["suspend", "resume"]
    void_minutes: int = Field(
        default=0,
        ge=0,
        le=1440,
        description="with suspend: void the still-waiting tickets it issued in these last minutes",
    )


class DeviceResult(CommandResult):
    voided: int = Field(default=0, description="tickets voided with the suspension")
    paused: list[int] = Field(default_factory=list, description="windows paused with it")


class ImpactRequest(_Out):
    action: Literal["open", "close", "pause", "resume", "set_skills", "finish"]
    skills: dict[str, float] | None = None


class NearbyHall(_Out):
    hall: str
    name: str
    district: str | None = None
    distance_km: float | None = None
    eta_min: float = Field(description="its expected wait for a ticket issued now, minutes")
    waiting: int
    age_s: float = Field(description="seconds since its summary reached this hall")


class Nearby(_Out):
    """Nearby halls serving the same business with a clearly shorter wait: only while the
    city link is up (``link``); otherwise ``halls`` is empty and the pages show nothing."""

    service: str
    wait_min: float | None = Field(
        description="this hall's expected wait compared: the ticket's own, or a new ticket's"
    )
    link: bool = Field(description="the city bridge is connected and nearby halls are listed")
    halls: list[NearbyHall]


RESPONSE_MODELS: list[type[BaseModel]] = [
    Error,
    Service,
    Device,
    PublicHall,
    Hall,
    Ticket,
    Alert,
    Health,
    BoardItem,
    Slots,
    Booking,
    Booked,
    SupervisorBooking,
    CommandResult,
    WhoAmI,
    BookingRequest,
    SupervisorCommand,
    TicketCommand,
    CancelRequest,
    LoginRequest,
    Done,
    AuditEntry,
    Nearby,
    m.ComfortState,
    Impact,
    Desk,
    AdviceView,
    AckRequest,
    ImpactRequest,
    DeviceRequest,
    DeviceResult,
    Invitations,
    InviteRequest,
]
