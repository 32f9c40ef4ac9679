"""The hall layout: one TOML file per hall, validated once into typed models.

Every agent and the coordinator load the same file, so a mistake in it must stop a
process at start with a message a field engineer can act on: the key path in TOML
terms, what was expected and what was found. Secrets (broker password, the ID-card
hashing key) come from the environment or a separate file in production and are never
echoed back, not even in error messages. The checks of single values, and the problem
collector behind the messages, live in :mod:`hallq.config_checks`; the sections, the
cross-checks between them and loading live here.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StrictBool,
    ValidationError,
    model_validator,
)

from hallq.config_checks import (
    ClockTime,
    Collector,
    Intervals,
    Loc,
    PathT,
    Pin,
    Problems,
    Secret,
    Text,
    Weight,
    baud_rate,
    broker_url,
    date_list,
    deadlines,
    hash_key,
    http_url,
    id_check,
    int_range,
    led_side,
    log_level_name,
    positive_number,
    problem,
    serial_port,
    show,
    ticket_prefix,
    timezone_name,
    toml_path,
)
from hallq.errors import ConfigError

__all__ = [
    "DEVICE_CLASSES",
    "ENV_OVERRIDES",
    "Agent",
    "BrokerConfig",
    "CallPadDevice",
    "CoordinatorConfig",
    "Device",
    "EdgeConfig",
    "FramedDevice",
    "GpioButtonsDevice",
    "HallConfig",
    "HallInfo",
    "IdReaderDevice",
    "KeypadDevice",
    "LedDevice",
    "LedMax7219Device",
    "LedSerialDevice",
    "LedSize",
    "PadDevice",
    "PrinterDevice",
    "RatingPadDevice",
    "RuntimeConfig",
    "ScannerDevice",
    "SecurityConfig",
    "SerialPort",
    "Service",
    "SpeakerDevice",
    "SpiPort",
    "TlsConfig",
    "WebConfig",
    "WebUser",
    "Window",
    "Zone",
    "device_services",
    "device_window",
    "device_zone",
    "load_config",
    "parse_config",
]

ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "HALLQ_BROKER_URL": ("broker", "url"),
    "HALLQ_BROKER_USERNAME": ("broker", "username"),
    "HALLQ_BROKER_PASSWORD": ("broker", "password"),
    "HALLQ_ID_HASH_KEY": ("security", "id_hash_key"),
    "HALLQ_STATE_DIR": ("runtime", "state_dir"),
    "HALLQ_SUPERVISOR_PASSWORD": ("coordinator", "supervisor_password"),
}

_SECRET_KEYS = frozenset({"password", "id_hash_key", "supervisor_password"})


def _default_open_hours() -> list[tuple[time, time]]:
    return [(time(9, 0), time(12, 0)), (time(13, 30), time(17, 0))]


def _default_state_dir() -> Path:
    """systemd's StateDirectory= when run as a unit (ProtectHome hides ~), else the XDG spot."""
    systemd_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(systemd_dir) if systemd_dir else Path("~/.local/state/hallq").expanduser()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


# --- sections -----------------------------------------------------------------------------


class HallInfo(_Model):
    """Who the hall is and when it is open."""

    id: Annotated[str, BeforeValidator(id_check("hall id"))]
    name: Text
    name_en: Text | None = None
    timezone: Annotated[str, BeforeValidator(timezone_name)]
    reset_time: ClockTime = time(0, 0)
    open_hours: Intervals = Field(default_factory=_default_open_hours)

    public_url: Annotated[str, BeforeValidator(http_url)] = "http://127.0.0.1:8080"

    # The hall calendar, for the comfort index: holidays on days it would open, 调休
    # weekend days it opens, and 征期 deadlines moved from the 15th (by holidays or a
    # weekend). Dates of past years stay useful: the forecast is fitted on the history.
    closed_days: Annotated[list[date], BeforeValidator(date_list(False))] = Field(
        default_factory=list
    )
    extra_workdays: Annotated[list[date], BeforeValidator(date_list(True))] = Field(
        default_factory=list
    )
    filing_deadlines: Annotated[dict[str, int], BeforeValidator(deadlines)] = Field(
        default_factory=dict
    )

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def business_day(self, ts: float) -> date:
        """Local date counted from the daily reset (a 00:30 reset puts 00:10 in the day
        before); the coordinator and every dispenser must agree on it."""
        local = datetime.fromtimestamp(ts, self.tzinfo)
        reset = self.reset_time
        return (local - timedelta(hours=reset.hour, minutes=reset.minute)).date()

    def open_at(self, ts: float) -> bool:
        """Within the open hours at ``ts`` (not at lunch, not after hours)."""
        local = datetime.fromtimestamp(ts, self.tzinfo).time()
        return any(start <= local < end for start, end in self.open_hours)

    def ticket_url(self, number: str) -> str:
        """Where a ticket's QR code leads: the live status page of that ticket."""
        return f"{self.public_url.rstrip('/')}/t/{self.id}/{number}"

    @model_validator(mode="after")
    def _cross_check(self) -> HallInfo:
        problems = Collector()
        for start, end in self.open_hours:
            if start <= self.reset_time < end:
                problems.add(
                    f"{self.reset_time:%H:%M} is inside open hours "
                    f"({start:%H:%M}-{end:%H:%M}); numbers must not restart while people queue",
                    "reset_time",
                )
        # the calendar: no date both closed and open, no deadline on a closed day
        closed = set(self.closed_days)
        for i, day in enumerate(self.extra_workdays):
            if day in closed:
                problems.add(
                    f"{day} is also in hall.closed_days: a date is either closed or an extra "
                    "working day",
                    "extra_workdays",
                    i,
                )
        for month, day_of_month in self.filing_deadlines.items():
            deadline = date(int(month[:4]), int(month[5:]), day_of_month)
            if deadline in closed:
                problems.add(
                    f"{deadline} is in hall.closed_days: a deadline falls on a day the hall "
                    "is open (the 申报纳税期限 notice moves it past the holiday)",
                    "filing_deadlines",
                    month,
                )
        problems.raise_any()
        return self


class TlsConfig(_Model):
    ca_file: PathT | None = None
    cert_file: PathT | None = None
    key_file: PathT | None = None
    insecure: StrictBool = False

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            raise problem("a client certificate needs both cert_file and key_file", missing)
        return self


class BrokerConfig(_Model):
    url: Annotated[str, BeforeValidator(broker_url)] = "mqtt://127.0.0.1:1883"
    username: Text | None = None
    password: Secret | None = None
    password_file: PathT | None = None
    tls: TlsConfig = Field(default_factory=TlsConfig)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    keepalive: Annotated[int, BeforeValidator(int_range(5, 600))] = 30
    session_expiry_s: Annotated[int, BeforeValidator(int_range(0, 7 * 86400))] = 3600
    # `hallq provision` output as copied to this machine: one directory per client id
    # (CREDENTIALS/pi-w01/password, ca.crt); a client with one logs in as its own id
    credentials_dir: PathT | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_password_source(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("password") is not None
            and (data.get("password_file") is not None)
        ):
            raise problem("give either password or password_file, not both", "password_file")
        return data

    @model_validator(mode="after")
    def _read_password_file(self) -> BrokerConfig:
        if self.password_file is not None:
            where = str(self.password_file)
            try:
                text = self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise problem(
                    f"cannot read {where!r}: {exc.strerror or exc}", "password_file"
                ) from exc
            except UnicodeDecodeError:
                raise problem(f"{where!r} is not UTF-8 text", "password_file") from None
            if not text:
                raise problem(f"{where!r} is empty", "password_file")
            self.password = SecretStr(text)
        if self.password is not None and self.username is None:
            raise problem("a password is set but no username", "username")
        return self

    def for_client(self, client_id: str, credentials: Path | None = None) -> BrokerConfig:
        """How ``client_id`` logs in: with its provisioned credentials directory (given, or
        ``credentials_dir/client_id`` when that exists) the user name is the client id
        (the broker binds the two), the password is the directory's ``password``, its
        ``ca.crt`` verifies the broker and its ``client.crt``/``client.key``, when there,
        prove the client; without one, this config as it is."""
        if credentials is None and self.credentials_dir is not None:
            candidate = self.credentials_dir / client_id
            credentials = candidate if candidate.is_dir() else None
        if credentials is None:
            return self
        where = credentials / "password"
        try:
            secret = where.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                str(where),
                [
                    f"cannot read the broker password of {client_id!r}: "
                    f"{getattr(exc, 'strerror', None) or exc} (copy the directory `hallq "
                    f"provision` wrote for {client_id} to {credentials})"
                ],
            ) from None
        if not secret:
            raise ConfigError(str(where), [f"the broker password of {client_id!r} is empty"])
        tls = self.tls
        ca = credentials / "ca.crt"
        if tls.ca_file is None and ca.is_file():
            tls = tls.model_copy(update={"ca_file": ca})
        cert, key = credentials / "client.crt", credentials / "client.key"
        if tls.cert_file is None and cert.is_file() and key.is_file():
            tls = tls.model_copy(update={"cert_file": cert, "key_file": key})
        return self.model_copy(
            update={
                "username": client_id,
                "password": SecretStr(secret),
                "password_file": None,
                "tls": tls,
            }
        )

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None
        return host

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def use_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts" or self.tls.ca_file is not None


class RuntimeConfig(_Model):
    state_dir: PathT = Field(default_factory=_default_state_dir)
    outbox_max: Annotated[int, BeforeValidator(int_range(10))] = 10_000
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(log_level_name)
    ] = "INFO"
    pin_factory: Literal["lgpio", "rpigpio", "native", "mock"] | None = None


class SecurityConfig(_Model):
    id_hash_key: Annotated[SecretStr, BeforeValidator(hash_key)] | None = None
    # MQTT client ids of supervisor consoles: the only senders of supervisor/<id>/cmd the
    # coordinator obeys (a device never is one); `hallq provision` gives each a login
    supervisor_clients: list[Annotated[str, BeforeValidator(id_check("supervisor client id"))]] = (
        Field(default_factory=list)
    )
    # per client: messages a second it may send the coordinator, and the burst above that
    client_rate_per_s: Annotated[float, BeforeValidator(positive_number(10_000))] = 20.0
    client_burst: Annotated[int, BeforeValidator(int_range(1, 100_000))] = 60
    # per dispenser: tickets a minute (hall time) it may issue online, and the burst above
    # that. A person at a kiosk takes one every few seconds at most (a key, a print, a cut):
    # more is a stuck key or a script with its password, emptying a service's numbers
    issue_rate_per_min: Annotated[float, BeforeValidator(positive_number(100_000))] = 30.0
    issue_burst: Annotated[int, BeforeValidator(int_range(1, 100_000))] = 20


class EdgeConfig(_Model):
    """How the agents on the Pis behave when the coordinator is slow or away."""

    reply_timeout_s: Annotated[float, BeforeValidator(positive_number(30))] = 1.5
    command_timeout_s: Annotated[float, BeforeValidator(positive_number(30))] = 3.0
    lease_size: Annotated[int, BeforeValidator(int_range(1, 500))] = 50
    lease_low_water: Annotated[int, BeforeValidator(int_range(0, 500))] = 10

    @property
    def lease_cap(self) -> int:
        """Leased numbers one dispenser may hold unused for a service: it asks again only
        when down to its low water, and a second block is room for offline tickets whose
        replays are not in yet, or a book lost with its card (coordinator: Engine.lease)."""
        return 2 * self.lease_size + self.lease_low_water


class CoordinatorConfig(_Model):
    """How the coordinator runs the hall's queues."""

    client_id: Annotated[str, BeforeValidator(id_check("coordinator client id"))] = "coordinator"
    # its broker credentials (`hallq provision` wrote them); default as for agents
    credentials: PathT | None = None
    log_path: PathT | None = None
    carry_over: StrictBool = False
    person_daily_limit: Annotated[int, BeforeValidator(int_range(1, 50))] | None = None
    max_recalls: Annotated[int, BeforeValidator(int_range(0, 10))] = 3
    # a ticket called from a pad stays at its window at least this long before the pad
    # finishes, skips (过号), transfers or calls past it: its holder has heard the call and
    # had time to come, and a pad (or its password in other hands) cannot call the queue
    # away in seconds, each call finishing the last; 0 lets it go at once. The desk is
    # not held.
    call_hold_s: Annotated[int, BeforeValidator(int_range(0, 600))] = 10
    board_calls: Annotated[int, BeforeValidator(int_range(1, 50))] = 10
    overdue_boost: Annotated[float, BeforeValidator(positive_number(10)), Field(ge=1.0)] = 2.0
    default_service_min: Annotated[float, BeforeValidator(positive_number(120))] = 1.63
    retention_days: Annotated[int, BeforeValidator(int_range(1, 3650))] = 400
    comfort_synthetic: StrictBool = False
    # web dashboard, ticket pages and API (coordinator/web); port 0 turns it off
    http_host: Text = "127.0.0.1"
    http_port: Annotated[int, BeforeValidator(int_range(0, 65535))] = 8080
    # a first supervisor from HALLQ_SUPERVISOR_PASSWORD (environment only, hashed at start);
    # the users of [web] and its users file are the lasting way (`hallq user add`)
    supervisor_user: Annotated[str, BeforeValidator(id_check("supervisor user"))] = "supervisor"
    supervisor_password: Secret | None = None
    # appointments (双向预约): slot length and how many bookings one slot takes
    appointment_slot_min: Annotated[int, BeforeValidator(int_range(5, 240))] = 30
    appointment_capacity: Annotated[int, BeforeValidator(int_range(1, 500))] = 4
    appointment_days: Annotated[int, BeforeValidator(int_range(1, 60))] = 7
    # real-name booking: one person's bookings per service per day, and one client
    # address's booking attempts per hour (so neither can fill a slot)
    appointment_per_person_day: Annotated[int, BeforeValidator(int_range(1, 20))] = 1
    appointment_per_address_hour: Annotated[int, BeforeValidator(int_range(1, 10_000))] = 10


PASSWORD_HASH = re.compile(r"\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")


def _password_hash(value: object) -> str:
    """Only an argon2id hash is accepted: a clear password must never sit in a hall file."""
    if not isinstance(value, str) or not PASSWORD_HASH.fullmatch(value.strip()):
        raise problem(
            "expected an argon2id hash as `hallq user add` writes it "
            '("$argon2id$v=19$m=...") (value not shown)'
        )
    return value.strip()


def _ip_list(value: object) -> list[str]:
    if not isinstance(value, list):
        raise problem(f"expected an array of IP addresses, got {show(value)}")
    out = []
    for item in value:
        try:
            out.append(str(ipaddress.ip_address(item if isinstance(item, str) else "")))
        except ValueError:
            raise problem(f"expected an IP address, got {show(item)}") from None
    return out


class WebUser(_Model):
    """Someone who may log into the supervisor desk: a supervisor acts, a viewer only looks."""

    name: Annotated[str, BeforeValidator(id_check("web user name"))]
    role: Literal["supervisor", "viewer"]
    password_hash: Annotated[str, BeforeValidator(_password_hash)]


class WebConfig(_Model):
    """The supervisor desk's logins, sessions and TLS (the web server itself is
    ``coordinator.http_host``/``http_port``)."""

    # users beside the ones listed here; `hallq user add` writes this file (hashes only).
    # Default, when loaded from a file: <hall file stem>.users.toml next to it.
    users_file: PathT | None = None
    users: list[WebUser] = Field(default_factory=list)
    # served by the coordinator itself, for halls with no reverse proxy in front
    tls_cert_file: PathT | None = None
    tls_key_file: PathT | None = None
    session_idle_min: Annotated[int, BeforeValidator(int_range(1, 24 * 60))] = 30
    session_max_h: Annotated[int, BeforeValidator(int_range(1, 72))] = 12
    # failed logins before a lockout, per user name and per client address, counted over
    # lockout_min; the lockout lasts lockout_min from the last failure
    login_failures_per_user: Annotated[int, BeforeValidator(int_range(1, 100))] = 5
    login_failures_per_address: Annotated[int, BeforeValidator(int_range(1, 1000))] = 20
    lockout_min: Annotated[int, BeforeValidator(int_range(1, 24 * 60))] = 15
    # reverse proxies whose X-Forwarded-For / -Proto are believed (their addresses); from
    # anyone else those headers are ignored, so a client cannot pick its own address
    trusted_proxies: Annotated[list[str], BeforeValidator(_ip_list)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> WebConfig:
        problems = Collector()
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            missing = "tls_key_file" if self.tls_key_file is None else "tls_cert_file"
            problems.add("TLS needs both tls_cert_file and tls_key_file", missing)
        _unique(problems, "users", "name", [u.name for u in self.users], "user name")
        problems.raise_any()
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


class NearbyHall(_Model):
    """Another hall of the city that this hall's ticket and booking pages may suggest."""

    hall: Annotated[str, BeforeValidator(id_check("nearby hall id"))]
    name: Text
    district: Text | None = None
    distance_km: Annotated[float, BeforeValidator(positive_number(500))] | None = None


class CityConfig(_Model):
    """Where the hall stands in the city (``docs/city.md``). ``nearby``: the halls whose
    queue summaries the city bridge brings in (``hallq bridge``); a nearby hall is
    suggested on the ticket and booking pages when its expected wait for the same service
    is at least ``nearby_gain_min`` shorter and at most half of this hall's."""

    district: Text | None = None
    # the hall's cell on the bureau's map-like grid: [column, row], from the north-west
    grid: (
        tuple[
            Annotated[int, BeforeValidator(int_range(0, 99))],
            Annotated[int, BeforeValidator(int_range(0, 99))],
        ]
        | None
    ) = None
    nearby: list[NearbyHall] = Field(default_factory=list, max_length=20)
    nearby_gain_min: Annotated[float, BeforeValidator(positive_number(240))] = 15.0

    @model_validator(mode="after")
    def _check(self) -> CityConfig:
        problems = Collector()
        _unique(problems, "nearby", "hall", [n.hall for n in self.nearby], "nearby hall")
        problems.raise_any()
        return self


class Zone(_Model):
    """A function hall (功能厅); ``site`` says which 办税点 (building) it is in."""

    id: Annotated[str, BeforeValidator(id_check("zone id"))]
    name: Text
    name_en: Text | None = None
    site: Annotated[str, BeforeValidator(id_check("site id"))]


class Service(_Model):
    code: Annotated[str, BeforeValidator(id_check("service code"))]
    name: Text
    name_en: Text | None = None
    prefix: Annotated[str, BeforeValidator(ticket_prefix)]
    width: Annotated[int, BeforeValidator(int_range(2, 5))] = 3
    priority: Literal["green", "normal"] = "normal"
    wait_target_min: Annotated[float, BeforeValidator(positive_number(480))] = 15.0
    hours: Intervals | None = None
    daily_cap: Annotated[int, BeforeValidator(int_range(1))] | None = None
    warn_at: Annotated[int, BeforeValidator(int_range(1))] | None = None
    # 一次性告知: the documents to bring, listed on the ticket and booking pages
    materials: list[Text] = Field(default_factory=list, max_length=30)

    @model_validator(mode="after")
    def _caps(self) -> Service:
        problems = Collector()
        if self.daily_cap is not None:
            if self.warn_at is not None and self.warn_at >= self.daily_cap:
                problems.add(
                    f"must be below daily_cap ({self.daily_cap}), got {self.warn_at}", "warn_at"
                )
            biggest = 10**self.width - 1
            if self.daily_cap > biggest:
                problems.add(
                    f"{self.daily_cap} does not fit in {self.width} digits "
                    f"(largest number {self.prefix}{biggest}); raise width",
                    "daily_cap",
                )
        problems.raise_any()
        return self


class Window(_Model):
    number: Annotated[int, BeforeValidator(int_range(1, 999))]
    zone: Text
    name: Text | None = None
    skills: dict[str, Weight] = Field(default_factory=dict)
    all_services: StrictBool = False
    express: StrictBool = False

    _service_codes: tuple[str, ...] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _serves_something(self) -> Window:
        if not self.skills and not self.all_services:
            raise problem(
                "window serves nothing: give skills = { <service> = <weight>, ... } "
                "or all_services = true",
                "skills",
            )
        return self

    def weights(self) -> dict[str, float]:
        """Effective weights: an 一窗通办 window serves every service at 1.0 unless overridden."""
        if not self.all_services:
            return dict(self.skills)
        if self._service_codes is None:
            raise RuntimeError(
                f"window {self.number} has all_services = true; its weights are known only "
                "once it belongs to a HallConfig"
            )
        return {code: self.skills.get(code, 1.0) for code in self._service_codes}


class SerialPort(_Model):
    port: Annotated[str, BeforeValidator(serial_port)]
    baud: Annotated[int, BeforeValidator(baud_rate)] = 9600
    address: Annotated[int, BeforeValidator(int_range(1, 247))] | None = None


class SpiPort(_Model):
    port: Annotated[int, BeforeValidator(int_range(0, 1))] = 0
    device: Annotated[int, BeforeValidator(int_range(0, 1))] = 0
    cascaded: Annotated[int, BeforeValidator(int_range(1, 4096))] | None = None
    block_orientation: Literal[0, 90, -90, 180] = 0
    rotate: Annotated[int, BeforeValidator(int_range(0, 3))] = 0


class LedSize(_Model):
    width: Annotated[int, BeforeValidator(led_side)]
    height: Annotated[int, BeforeValidator(led_side)]


DeviceKind = Literal[
    "call_pad",
    "rating_pad",
    "keypad",
    "scanner",
    "id_reader",
    "printer",
    "gpio_buttons",
    "led_max7219",
    "led_serial",
    "speaker",
]
AgentRole = Literal["window", "dispenser", "board"]

_ROLE_KINDS: dict[str, tuple[str, ...]] = {
    "window": ("call_pad", "rating_pad", "gpio_buttons", "led_serial", "led_max7219"),
    "dispenser": ("keypad", "scanner", "id_reader", "printer", "gpio_buttons"),
    "board": ("led_max7219", "led_serial", "speaker"),
}
_PAD_KINDS = frozenset({"call_pad", "rating_pad", "gpio_buttons"})
# BCM pins an SPI bus takes over once a MAX7219 chain is wired to it.
_SPI_PINS = {0: frozenset({7, 8, 9, 10, 11}), 1: frozenset({16, 17, 18, 19, 20, 21})}


WindowNumber = Annotated[int, BeforeValidator(int_range(1, 999))]


class _DeviceBase(_Model):
    """What every device has; each kind below adds the fields it needs, required or not, so
    the type checker knows a call pad has a serial port and a speaker has none."""

    id: Annotated[str, BeforeValidator(id_check("device id"))]

    @model_validator(mode="after")
    def _fields_agree(self) -> _DeviceBase:
        problems = Collector()
        window, zone = getattr(self, "window", None), getattr(self, "zone", None)
        if window is not None and zone is not None:
            problems.add("give either window or zone, not both", "zone")
        services: list[str] | None = getattr(self, "services", None)
        if services is not None:
            if not services:
                problems.add("list at least one service", "services")
            for i, code in enumerate(services):
                if code in services[:i]:
                    problems.add(f"service {code!r} is listed twice", "services", i)
        gpio: dict[str, int] | None = getattr(self, "gpio", None)
        if gpio is not None and not gpio:
            problems.add("map at least one button name to a BCM pin", "gpio")
        problems.raise_any()
        return self


class _Framed(_DeviceBase):
    """On an RS-485 line (or, for the printer, its own serial port)."""

    serial: SerialPort


class CallPadDevice(_Framed):
    kind: Literal["call_pad"]
    window: WindowNumber


class RatingPadDevice(_Framed):
    kind: Literal["rating_pad"]
    window: WindowNumber


GuidedPriority = Literal["green", "assisted"]


class KeypadDevice(_Framed):
    kind: Literal["keypad"]
    services: list[Text]
    # the guide's keypad: its keys issue tickets of this class (its agent's priorities)
    priority: GuidedPriority | None = None


class ScannerDevice(_Framed):
    kind: Literal["scanner"]


ID_KEY_FIX = "put HALLQ_ID_HASH_KEY=... in /etc/hallq/hallq.env on this Pi (the coordinator's key)"


class IdReaderDevice(_Framed):
    kind: Literal["id_reader"]


class PrinterDevice(_Framed):
    kind: Literal["printer"]


class GpioButtonsDevice(_DeviceBase):
    kind: Literal["gpio_buttons"]
    gpio: dict[str, Pin]
    window: WindowNumber | None = None
    services: list[Text] | None = None
    priority: GuidedPriority | None = None  # a dispenser's, as a keypad's


class LedMax7219Device(_DeviceBase):
    kind: Literal["led_max7219"]
    spi: SpiPort
    led: LedSize
    window: WindowNumber | None = None
    zone: Text | None = None

    @model_validator(mode="after")
    def _chain_fits(self) -> LedMax7219Device:
        modules = self.led.width * self.led.height // 64
        if self.spi.cascaded is not None and self.spi.cascaded != modules:
            raise problem(
                f"a {self.led.width}x{self.led.height} matrix is {modules} 8x8 modules, "
                f"got {self.spi.cascaded}",
                "spi",
                "cascaded",
            )
        return self


class LedSerialDevice(_Framed):
    kind: Literal["led_serial"]
    led: LedSize
    window: WindowNumber | None = None
    zone: Text | None = None


class SpeakerDevice(_DeviceBase):
    kind: Literal["speaker"]
    zone: Text | None = None


FramedDevice = (
    CallPadDevice
    | RatingPadDevice
    | KeypadDevice
    | ScannerDevice
    | IdReaderDevice
    | PrinterDevice
    | LedSerialDevice
)
LedDevice = LedMax7219Device | LedSerialDevice
PadDevice = CallPadDevice | RatingPadDevice | GpioButtonsDevice
Device = Annotated[
    FramedDevice | GpioButtonsDevice | LedMax7219Device | SpeakerDevice,
    Field(discriminator="kind"),
]
DEVICE_CLASSES: dict[str, type[_DeviceBase]] = {
    "call_pad": CallPadDevice,
    "rating_pad": RatingPadDevice,
    "keypad": KeypadDevice,
    "scanner": ScannerDevice,
    "id_reader": IdReaderDevice,
    "printer": PrinterDevice,
    "gpio_buttons": GpioButtonsDevice,
    "led_max7219": LedMax7219Device,
    "led_serial": LedSerialDevice,
    "speaker": SpeakerDevice,
}
_DEVICE_FIELDS = frozenset(f for cls in DEVICE_CLASSES.values() for f in cls.model_fields)


def device_window(dev: Device) -> int | None:
    """The window a device acts for, whatever its kind (None: not a window's device)."""
    window: int | None = getattr(dev, "window", None)
    return window


def device_zone(dev: Device) -> str | None:
    zone: str | None = getattr(dev, "zone", None)
    return zone


def device_services(dev: Device) -> list[str] | None:
    services: list[str] | None = getattr(dev, "services", None)
    return services


class Agent(_Model):
    """One Raspberry Pi agent process, which is one MQTT client."""

    id: Annotated[str, BeforeValidator(id_check("agent id"))]
    role: AgentRole
    host: Text | None = None  # the Pi's hostname: `hallq doctor` there checks this agent
    # this agent's broker credentials (a `hallq provision` device directory) on its Pi;
    # default: broker.credentials_dir/ID when that exists
    credentials: PathT | None = None
    devices: list[Device] = Field(min_length=1)
    # priority classes a dispenser may issue beyond normal: the kiosk a 导税 guide works at,
    # who decides who is assisted (elderly, disabled, pregnant) or green-channel. Empty: its
    # tickets are normal (appointments go by their booked code), so a dispenser's login in
    # other hands cannot hand out places at the head of every queue
    priorities: list[GuidedPriority] = Field(default_factory=list)
    # the 办税点 (building: its zones' ``site``) a dispenser or a board agent stands in: a
    # dispenser's tickets are called only to windows there, and a board or speaker with no
    # zone shows and says that building's calls. Needed for both where the hall has several
    site: Annotated[str, BeforeValidator(id_check("site id"))] | None = None

    @model_validator(mode="after")
    def _fits_role(self) -> Agent:
        problems = Collector()
        if self.priorities and self.role != "dispenser":
            problems.add("only a dispenser issues tickets; remove it", "priorities")
        allowed = _ROLE_KINDS[self.role]
        pins: dict[int, str] = {}
        spi_used: dict[tuple[int, int], str] = {}
        has_pad = False
        for i, dev in enumerate(self.devices):
            if dev.kind not in allowed:
                problems.add(
                    f"a {self.role} agent cannot drive a {dev.kind}; "
                    f"it may have: {', '.join(allowed)}",
                    "devices",
                    i,
                    "kind",
                )
                continue
            window = device_window(dev)
            if self.role == "window":
                has_pad = has_pad or dev.kind in ("call_pad", "gpio_buttons")
                if window is None:
                    problems.add(
                        "required: say which window this device serves", "devices", i, "window"
                    )
                if isinstance(dev, GpioButtonsDevice) and dev.services is not None:
                    problems.add("not used by window buttons; remove it", "devices", i, "services")
            elif self.role == "dispenser" and window is not None:
                problems.add(
                    "a dispenser's device does not act for a window", "devices", i, "window"
                )
            priority = getattr(dev, "priority", None)
            if priority is not None and self.role != "dispenser":
                problems.add("only a dispenser's keys issue tickets", "devices", i, "priority")
            elif priority is not None and priority not in self.priorities:
                problems.add(
                    f"its keys would issue {priority} tickets, which this agent may not: add "
                    f'"{priority}" to its priorities (a guide\'s kiosk only)',
                    "devices",
                    i,
                    "priority",
                )
            if isinstance(dev, LedMax7219Device):
                key = (dev.spi.port, dev.spi.device)
                if key in spi_used:
                    problems.add(
                        f"SPI {key[0]}.{key[1]} is already used by {spi_used[key]!r}",
                        "devices",
                        i,
                        "spi",
                    )
                spi_used[key] = dev.id
            for name, pin in _gpio(dev).items():
                if pin in pins:
                    problems.add(
                        f"BCM pin {pin} is already used by {pins[pin]}", "devices", i, "gpio", name
                    )
                pins[pin] = f"{dev.id}.{name}"
        for i, dev in enumerate(self.devices):
            for name, pin in _gpio(dev).items():
                for (port, _), user in spi_used.items():
                    if pin in _SPI_PINS[port]:
                        problems.add(
                            f"BCM pin {pin} belongs to SPI bus {port}, used by {user!r}",
                            "devices",
                            i,
                            "gpio",
                            name,
                        )
        if self.role == "window" and not has_pad:
            problems.add("a window agent needs a call_pad or gpio_buttons device", "devices")
        problems.raise_any()
        return self


class HallConfig(_Model):
    """A whole hall; cross-references between sections are checked here."""

    hall: HallInfo
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    coordinator: CoordinatorConfig = Field(default_factory=CoordinatorConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    zones: list[Zone] = Field(min_length=1)
    services: list[Service] = Field(min_length=1)
    windows: list[Window] = Field(min_length=1)
    agents: list[Agent] = Field(default_factory=list)
    city: CityConfig = Field(default_factory=CityConfig)

    _services: dict[str, Service] = PrivateAttr(default_factory=dict)
    _windows: dict[int, Window] = PrivateAttr(default_factory=dict)
    _zones: dict[str, Zone] = PrivateAttr(default_factory=dict)
    _agents: dict[str, Agent] = PrivateAttr(default_factory=dict)
    # agent id -> (its windows, its services): asked for every command the coordinator takes
    _scope: dict[str, tuple[list[int], list[str]]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_check(self) -> HallConfig:
        problems = Collector()
        _unique(problems, "zones", "id", [z.id for z in self.zones], "zone id")
        _unique(problems, "services", "code", [s.code for s in self.services], "service code")
        _unique(problems, "services", "prefix", [s.prefix for s in self.services], "prefix")
        _unique(problems, "windows", "number", [w.number for w in self.windows], "window number")
        _unique(problems, "agents", "id", [a.id for a in self.agents], "agent id")
        agent_ids = {a.id for a in self.agents}
        for i, near in enumerate(self.city.nearby):
            if near.hall == self.hall.id:
                problems.add("a hall is not its own neighbour", "city", "nearby", i, "hall")
        if self.coordinator.client_id in agent_ids:
            problems.add(
                f"{self.coordinator.client_id!r} is also an agent id: every client "
                "needs its own broker identity",
                "coordinator",
                "client_id",
            )
        for i, sup in enumerate(self.security.supervisor_clients):
            if sup in self.security.supervisor_clients[:i]:
                problems.add(
                    f"duplicate supervisor client id {sup!r}", "security", "supervisor_clients", i
                )
            elif sup in agent_ids or sup == self.coordinator.client_id:
                problems.add(
                    f"{sup!r} is a device's or the coordinator's id: a supervisor "
                    "console needs its own broker identity",
                    "security",
                    "supervisor_clients",
                    i,
                )
        desk: list[tuple[str, tuple[str | int, ...]]] = [
            (u.name, ("web", "users", i, "name")) for i, u in enumerate(self.web.users)
        ]
        if self.coordinator.supervisor_password is not None:
            desk.append((self.coordinator.supervisor_user, ("coordinator", "supervisor_user")))
        for name, where in desk:
            taken = self.device_login(name)
            if taken is not None:
                problems.add(f"desk user {name!r} {taken}", *where)
        zones = {z.id: z for z in self.zones}
        services = {s.code: s for s in self.services}
        windows = {w.number: w for w in self.windows}
        for i, win in enumerate(self.windows):
            if win.zone not in zones:
                problems.add(_unknown("zone", win.zone, zones), "windows", i, "zone")
            for code in win.skills:
                if code not in services:
                    problems.add(_unknown("service", code, services), "windows", i, "skills", code)
        self._check_devices(problems, zones, services, windows)
        sites = list(dict.fromkeys(z.site for z in self.zones))
        for i, agent in enumerate(self.agents):
            whole_hall = [
                d.id
                for d in agent.devices
                if getattr(d, "zone", None) is None
                and getattr(d, "window", None) is None
                and d.kind in ("led_max7219", "led_serial", "speaker")
            ]
            if agent.site is not None and agent.role not in ("dispenser", "board"):
                problems.add(
                    "only a dispenser's tickets and a board agent's boards have a site; remove it",
                    "agents",
                    i,
                    "site",
                )
            elif agent.site is not None and agent.site not in sites:
                problems.add(
                    f"no zone is in site {agent.site!r} (sites: {', '.join(sites)})",
                    "agents",
                    i,
                    "site",
                )
            elif agent.role == "dispenser" and agent.site is None and len(sites) > 1:
                problems.add(
                    f"this hall has {len(sites)} sites ({', '.join(sites)}): say which this "
                    "dispenser stands in, as its tickets are called only to windows there",
                    "agents",
                    i,
                    "site",
                )
            elif agent.site is None and whole_hall and len(sites) > 1:
                problems.add(
                    f"this hall has {len(sites)} sites ({', '.join(sites)}): say which this "
                    f"agent stands in, or give {', '.join(whole_hall)} a zone; a board with "
                    "neither would show and call the other building's tickets",
                    "agents",
                    i,
                    "site",
                )
        problems.raise_any()

        codes = tuple(services)
        for win in self.windows:
            win._service_codes = codes
        self._services = services
        self._windows = windows
        self._zones = zones
        self._agents = {a.id: a for a in self.agents}
        if len(sites) > 1:  # a site's tickets are called only there: somebody must serve them
            served = {(c, zones[w.zone].site) for w in self.windows for c in w.weights()}
            for i, agent in enumerate(self.agents):
                lost = [c for c in self._services_of(agent) if (c, agent.site) not in served]
                if lost:
                    problems.add(
                        f"no window of site {agent.site!r} serves {', '.join(lost)}: the "
                        "tickets this dispenser issues there would never be called",
                        "agents",
                        i,
                        "site",
                    )
            problems.raise_any()
        return self

    def _check_devices(
        self,
        problems: Collector,
        zones: dict[str, Zone],
        services: dict[str, Service],
        windows: dict[int, Window],
    ) -> None:
        device_agent: dict[str, str] = {}
        pad_agent: dict[int, str] = {}
        pads_seen: set[tuple[int, str]] = set()
        buses: dict[str, list[tuple[Loc, _Framed]]] = defaultdict(list)
        for a, agent in enumerate(self.agents):
            for d, dev in enumerate(agent.devices):
                at: Loc = ("agents", a, "devices", d)
                if dev.id in device_agent:
                    problems.add(
                        f"duplicate device id {dev.id!r} (also in agent {device_agent[dev.id]!r})",
                        *at,
                        "id",
                    )
                device_agent.setdefault(dev.id, agent.id)
                window, zone = device_window(dev), device_zone(dev)
                if window is not None and window not in windows:
                    problems.add(f"window {window} is not configured in [[windows]]", *at, "window")
                elif window is not None and agent.role == "window" and dev.kind in _PAD_KINDS:
                    owner = pad_agent.setdefault(window, agent.id)
                    if owner != agent.id:
                        problems.add(
                            f"window {window} already has pads on agent {owner!r}; "
                            "one agent per window",
                            *at,
                            "window",
                        )
                    if (window, dev.kind) in pads_seen and dev.kind != "gpio_buttons":
                        problems.add(f"window {window} already has a {dev.kind}", *at, "window")
                    pads_seen.add((window, dev.kind))
                if zone is not None and zone not in zones:
                    problems.add(_unknown("zone", zone, zones), *at, "zone")
                for k, code in enumerate(device_services(dev) or []):
                    if code not in services:
                        problems.add(_unknown("service", code, services), *at, "services", k)
                if isinstance(dev, _Framed):
                    port = dev.serial.port
                    # A device path names a line on one Pi; a network port is one line for all.
                    buses[port if "://" in port else f"{agent.id} {port}"].append((at, dev))
        for members in buses.values():
            _check_bus(problems, members)

    def service(self, code: str) -> Service:
        try:
            return self._services[code]
        except KeyError:
            raise KeyError(
                f"unknown service {code!r} in hall {self.hall.id!r} "
                f"(known: {', '.join(self._services)})"
            ) from None

    @property
    def sites(self) -> list[str]:
        """The hall's 办税点 (buildings), in the order their zones come."""
        return list(dict.fromkeys(z.site for z in self.zones))

    def scope_zones(self, device_id: str) -> frozenset[str] | None:
        """The zones a board or speaker with no zone of its own covers: those of its
        agent's site, where the hall has several; None for the whole hall."""
        for agent in self.agents:
            if agent.site is not None and any(d.id == device_id for d in agent.devices):
                if len(self.sites) > 1:
                    return frozenset(z.id for z in self.zones if z.site == agent.site)
        return None

    def site_of_source(self, source: str) -> str:
        """Where a ticket from ``source`` (a client id, as the engine's commands name their
        sender) is called: its dispenser's site; the hall's first site for any other
        source (the desk, a console)."""
        client = source.rpartition("/")[2]
        agent = self._agents.get(client)
        if agent is not None and agent.site is not None:
            return agent.site
        return self.zones[0].site

    def zone(self, zone_id: str) -> Zone:
        try:
            return self._zones[zone_id]
        except KeyError:
            raise KeyError(
                f"unknown zone {zone_id!r} in hall {self.hall.id!r} "
                f"(known: {', '.join(self._zones)})"
            ) from None

    def window(self, number: int) -> Window:
        try:
            return self._windows[number]
        except KeyError:
            raise KeyError(
                f"window {number!r} is not configured in hall {self.hall.id!r}"
            ) from None

    def device_login(self, name: str) -> str | None:
        """Why a desk user may not be called ``name``, or None. A supervisor can suspend
        the broker login of an agent or a console (coordinator.suspension), and the desk's
        commands carry their user's name where a console's carry its client id: a user
        named like a suspended console would be refused with it, and could not resume it."""
        if name in self.security.supervisor_clients:
            return "is also a supervisor console's client id (security.supervisor_clients)"
        if any(a.id == name for a in self.agents) or name == self.coordinator.client_id:
            return "is also a device's client id: the event log would not tell them apart"
        return None

    def missing_id_key(self, agent_id: str) -> str | None:
        """Why ``agent_id`` cannot start without ``security.id_hash_key``: it reads ID
        cards, and a card number is hashed with that key at the edge, never sent. The
        hall file is valid without it (a window Pi has no key), so this is asked of the
        agent that starts, and of its doctor."""
        if self.security.id_hash_key is not None:
            return None
        readers = [d.id for d in self.agent(agent_id).devices if d.kind == "id_reader"]
        if not readers:
            return None
        return (
            f"{', '.join(readers)} of agent {agent_id!r} reads ID cards, and "
            "security.id_hash_key is not set"
        )

    def agent(self, agent_id: str) -> Agent:
        try:
            return self._agents[agent_id]
        except KeyError:
            raise KeyError(
                f"unknown agent {agent_id!r} in hall {self.hall.id!r} "
                f"(known: {', '.join(self._agents) or 'none'})"
            ) from None

    def windows_for_agent(self, agent_id: str) -> list[int]:
        """The windows an agent's pads may act for: what the coordinator checks commands against."""
        return list(self._agent_scope(agent_id)[0])

    def services_for_agent(self, agent_id: str) -> list[str]:
        """The services a dispenser issues for: its keys' services, or every service when
        none of its devices names any (a scanner or ID reader alone)."""
        return list(self._agent_scope(agent_id)[1])

    def _agent_scope(self, agent_id: str) -> tuple[list[int], list[str]]:
        scope = self._scope.get(agent_id)
        if scope is None:
            agent = self.agent(agent_id)
            scope = self._scope[agent_id] = (
                self._windows_of(agent),
                self._services_of(agent),
            )
        return scope

    def _windows_of(self, agent: Agent) -> list[int]:
        if agent.role != "window":
            return []
        return sorted(
            {
                d.window
                for d in agent.devices
                if isinstance(d, CallPadDevice | RatingPadDevice | GpioButtonsDevice)
                and d.window is not None
            }
        )

    def _services_of(self, agent: Agent) -> list[str]:
        if agent.role != "dispenser":
            return []
        named = {code for d in agent.devices for code in (device_services(d) or [])}
        return sorted(named or self._services)


def _unknown(what: str, value: str, known: Mapping[str, object]) -> str:
    return f"unknown {what} {value!r} (known: {', '.join(known)})"


def _unique(problems: Collector, table: str, key: str, values: list[Any], what: str) -> None:
    first: dict[Any, int] = {}
    for i, value in enumerate(values):
        if value in first:
            problems.add(
                f"duplicate {what} {value!r} (first used by {table}[{first[value]}])", table, i, key
            )
        else:
            first[value] = i


def _gpio(dev: Device) -> dict[str, int]:
    return dev.gpio if isinstance(dev, GpioButtonsDevice) else {}


def _check_bus(problems: Collector, members: list[tuple[Loc, _Framed]]) -> None:
    """Devices sharing one serial line must agree on the baud rate and be addressable."""
    if len(members) < 2:
        return
    first = members[0][1]
    port, baud = first.serial.port, first.serial.baud
    addresses: dict[int, str] = {}
    for at, dev in members:
        if dev.serial.baud != baud:
            problems.add(
                f"{port} runs at {baud} baud for {first.id!r}; every device on one bus must match",
                *at,
                "serial",
                "baud",
            )
        addr = dev.serial.address
        if addr is None:
            problems.add(
                f"required: {len(members)} devices share {port}, so each needs its RS-485 address",
                *at,
                "serial",
                "address",
            )
        elif addr in addresses:
            problems.add(
                f"duplicate RS-485 address {addr} on {port} (also used by {addresses[addr]!r})",
                *at,
                "serial",
                "address",
            )
        else:
            addresses[addr] = dev.id


# --- loading ------------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> HallConfig:
    """Every process starts here, so all see one validated hall, with HALLQ_* taking precedence.

    Any problem, from a missing file to a bad env value, is one ConfigError listing them all.
    """
    p = Path(path)
    source = str(p)
    try:
        raw = p.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(source, [f"no such file (looked for {p.absolute()})"]) from exc
    except IsADirectoryError as exc:
        raise ConfigError(source, ["is a directory, not a TOML file"]) from exc
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"not UTF-8 text (bad byte at offset {exc.start})"]) from exc
    return _parse(text, source, p.parent, environ, p.parent / f"{p.stem}.users.toml")


def parse_config(
    text: str,
    source: str = "<string>",
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> HallConfig:
    """Like load_config for text already in memory; relative paths resolve against base_dir."""
    return _parse(text, source, Path(base_dir) if base_dir is not None else None, environ)


def _parse(
    text: str,
    source: str,
    base_dir: Path | None,
    environ: Mapping[str, str] | None,
    users_file: Path | None = None,
) -> HallConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [_syntax_problem(exc, text)]) from exc
    section = data.get("coordinator")
    early = []
    if isinstance(section, dict) and "supervisor_password" in section:
        early.append(
            "coordinator.supervisor_password: a clear password does not belong in the hall "
            "file; add users with `hallq user add NAME --role supervisor` (stores an argon2 "
            "hash), or set HALLQ_SUPERVISOR_PASSWORD for a first supervisor"
        )
        del section["supervisor_password"]
    env_locs = _apply_env(data, os.environ if environ is None else environ)
    try:
        cfg = HallConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        from hallq.config_lines import key_lines

        problems = early + _problems_from(exc, data, env_locs, key_lines(text))
    else:
        if not early:
            if cfg.web.users_file is None:
                cfg.web.users_file = users_file
            return cfg
        problems = early
    raise ConfigError(source, problems)


def _syntax_problem(exc: tomllib.TOMLDecodeError, text: str) -> str:
    msg = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", msg)
    if m:
        return f"line {m.group(1)}, column {m.group(2)}: TOML syntax error: {msg[: m.start()]}"
    m = re.search(r"\s*\(at end of document\)\s*$", msg)
    if m:  # a file cut short: say where it ends, so nobody hunts for the line
        last = text.rsplit("\n", 1)[-1]
        return (
            f"line {text.count(chr(10)) + 1}, column {len(last) + 1}: TOML syntax "
            f"error: {msg[: m.start()]} (the file ends there)"
        )
    return f"TOML syntax error: {msg}"


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[Loc, str]:
    """Overlay HALLQ_* variables onto the parsed file; returns which keys they set."""
    used: dict[Loc, str] = {}
    for var, (section, key) in ENV_OVERRIDES.items():
        value = environ.get(var)
        if value is None:
            continue
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            continue
        if key == "state_dir" and value.strip():
            value = os.path.abspath(os.path.expanduser(value))
        table[key] = value
        if key == "password":
            table.pop("password_file", None)
        used[(section, key)] = var
    return used


def _problems_from(
    exc: ValidationError,
    data: dict[str, Any],
    env_locs: dict[Loc, str],
    lines: dict[Loc, int] | None = None,
) -> list[str]:
    out: list[str] = []
    for err in exc.errors():
        loc, kind = _device_tag_out(tuple(err["loc"]), err["type"])
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, Problems):
            items = [((*loc, *sub), msg) for sub, msg in inner.problems]
        elif kind is not None and err["type"] == "missing":
            items = [(loc, f"required for a {kind} device")]
        elif kind is not None and err["type"] == "extra_forbidden" and loc[-1] in _DEVICE_FIELDS:
            items = [(loc, f"not used by a {kind} device; remove it")]
        else:
            items = [(loc, _message(err, loc, DEVICE_CLASSES.get(kind or "")))]
        for at, msg in items:
            line = f"{_label(at, data, env_locs, lines or {})}: {msg}"
            if line not in out:
                out.append(line)
    return out


def _device_tag_out(loc: Loc, kind: str) -> tuple[Loc, str | None]:
    """pydantic puts a device's kind into the path (``devices.0.call_pad.serial``); people
    wrote ``devices[0].serial``. Returns the path without it, and the kind."""
    for i in range(2, len(loc)):
        if loc[i - 2] == "devices" and isinstance(loc[i - 1], int):
            if isinstance(loc[i], str) and loc[i] in DEVICE_CLASSES:
                return (*loc[:i], *loc[i + 1 :]), str(loc[i])
            if kind.startswith("union_tag"):
                return (*loc[:i], "kind"), None
    if kind.startswith("union_tag") and len(loc) >= 2 and loc[-2] == "devices":
        return (*loc, "kind"), None
    return loc, None


def _message(err: Any, loc: Loc, model: type[BaseModel] | None = None) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    secret = any(seg in _SECRET_KEYS for seg in loc)
    got = "" if secret else f", got {show(value)}"
    if kind in ("missing", "union_tag_not_found"):
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"expected one of {', '.join(map(repr, DEVICE_CLASSES))}, got {ctx.get('tag')!r}"
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        model = model or _model_at(loc[:-1])
        if model is None:
            return "unknown key"
        allowed = list(model.model_fields)
        import difflib  # only for a mistake in the file

        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key{hint} (allowed: {', '.join(allowed)})"
    if kind == "string_type":
        return f"expected a string{got}"
    if kind == "bool_type":
        return f"expected true or false{got}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a table{got}"
    if kind == "list_type":
        return f"expected an array{got}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"needs at least {n} {'entry' if n == 1 else 'entries'}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}{got}"
    if kind == "value_error" and isinstance(ctx.get("error"), Exception):
        return str(ctx["error"])
    return str(err["msg"])


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the table at ``loc``, for listing its allowed keys."""
    tp: Any = HallConfig
    for seg in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(seg))
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) is list and isinstance(seg, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


_ENTRY_LABELS = {
    "zones": ("zone", "id"),
    "services": ("service", "code"),
    "windows": ("window", "number"),
    "agents": ("agent", "id"),
    "devices": ("device", "id"),
}


def _label(loc: Loc, data: Any, env_locs: dict[Loc, str], lines: dict[Loc, int]) -> str:
    """The key path, plus whichever entry it is in and the file's line, since nobody counts
    [[windows]] by hand."""
    path = toml_path(loc) or "(top level)"
    for env_loc, var in env_locs.items():
        if loc[: len(env_loc)] == env_loc:
            return f"{path} (from {var})"
    names: list[str] = []
    node = data
    for i, seg in enumerate(loc):
        if isinstance(node, dict) and isinstance(seg, str):
            node = node.get(seg)
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            node = node[seg]
            parent = loc[i - 1] if i else None
            if isinstance(parent, str) and parent in _ENTRY_LABELS and isinstance(node, dict):
                word, key = _ENTRY_LABELS[parent]
                ident = node.get(key)
                if isinstance(ident, str | int) and not isinstance(ident, bool):
                    names.append(f"{word} {ident}")
        else:
            break
    from hallq.config_lines import line_of

    line = line_of(lines, loc)
    if line is not None:
        names.append(f"line {line}")
    return f"{path} ({', '.join(names)})" if names else path


# --- summary ------------------------------------------------------------------------------
