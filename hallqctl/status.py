"""``hallq status``: who in the hall is online, read from the broker's retained messages.

Every client keeps a retained presence (birth ``online``, will or goodbye ``offline``) and
agents a retained health summary, so one short subscription shows the whole hall without
asking anyone. Comparing with the hall file adds what the broker cannot know: a configured
agent that never connected ("never seen"), which is the usual state of a Pi nobody has
installed yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiomqtt
    from rich.console import Console

    from hallq.config import BrokerConfig, HallConfig
    from hallq.messages import DeviceHealth, Presence

__all__ = [
    "Row",
    "Seen",
    "StatusUnavailable",
    "broker_fix",
    "city_link_line",
    "collect_status",
    "render_status",
    "status_advice",
    "status_caveat",
    "status_exit_code",
]


class Seen(StrEnum):
    """A client's presence as the table shows it."""

    ONLINE = "online"
    OFFLINE = "offline"
    NEVER_SEEN = "never seen"


class StatusUnavailable(Exception):
    """The broker could not be asked (down, wrong credentials); the message says which."""


@dataclass(frozen=True, slots=True)
class Row:
    client: str
    role: str
    presence: Seen
    configured: bool
    health: str = ""
    health_ok: bool | None = None  # None: no health published
    last_seen: datetime | None = None

    @property
    def online(self) -> bool:
        return self.presence is Seen.ONLINE


def _health_summary(health: DeviceHealth) -> tuple[str, bool]:
    bad = [c for c in health.components if not c.ok]
    if not health.components:
        return "no components", True
    if not bad:
        return f"all ok ({len(health.components)})", True
    return "; ".join(f"{c.name}: {c.status}" for c in bad), False


def broker_fix(broker: BrokerConfig, where: str, exc: BaseException) -> tuple[str, str]:
    """What went wrong reaching the broker, and what to do about it (doctor and status)."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    login = broker.username or "this client"
    refused = ("not authori", "bad user", "password", "code:4", "code:5", "code:134", "code:135")
    if any(word in low for word in refused):
        fix = (
            f"{login} logs in with its `hallq provision` password: copy devices/{login}/ "
            f"from the server to broker.credentials_dir/{login}/ again; on the server run "
            "hallq provision (adds new clients) and systemctl reload mosquitto"
        )
    elif any(word in low for word in ("ssl", "certificate", "tls")):
        fix = (
            "check the CA (credentials ca.crt or broker.tls.ca_file) and that the broker "
            "certificate names the host in broker.url (hallq provision --host)"
        )
    else:
        fix = (
            f"start the broker (sudo systemctl status mosquitto) or correct broker.url "
            f"({broker.url}); check the network to {where}"
        )
    return text, fix


def probe_client(broker: BrokerConfig, name: str, timeout: float) -> aiomqtt.Client:
    """A short-lived client for a look at the broker, under its own id (``NAME-PID``): never
    an agent's id, which would take over (and disconnect) that agent's session."""
    import aiomqtt

    from hallq.bus import broker_client

    v5 = broker.protocol == "5"
    return broker_client(
        broker,
        f"{name}-{os.getpid()}",
        aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        timeout=timeout,
        keepalive=max(5, int(timeout * 2)),
    )


async def _read_retained(
    cfg: HallConfig,
    timeout: float,  # noqa: ASYNC109  each check is bounded by --timeout
    quiet: float,
) -> tuple[dict[tuple[str, str], Presence], dict[tuple[str, str], DeviceHealth]]:
    import aiomqtt

    from hallq.acl import OPERATOR
    from hallq.errors import ConfigError, PayloadError, TopicError
    from hallq.messages import DeviceHealth, Presence, decode
    from hallq.topics import HallTopics, parse

    try:
        broker = cfg.broker.for_client(OPERATOR)  # provisioned read-only login, when present
    except ConfigError as exc:
        raise StatusUnavailable(str(exc).splitlines()[-1].strip(" -")) from None
    if cfg.broker.credentials_dir is not None and broker is cfg.broker:
        raise StatusUnavailable(
            f"no read-only login on this machine: {cfg.broker.credentials_dir / OPERATOR} is "
            f"missing\n  fix: copy devices/{OPERATOR}/ from `hallq provision --out DIR` on the "
            f"server to {cfg.broker.credentials_dir / OPERATOR}/ (status never logs in as a "
            "device or the coordinator: the broker would drop that client for it)"
        )
    topics = HallTopics(cfg.hall.id)
    presence: dict[tuple[str, str], Presence] = {}
    health: dict[tuple[str, str], DeviceHealth] = {}
    client = probe_client(broker, "status", timeout)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout * 2 + 1):
            async with client:
                await client.subscribe([(topics.every("status"), 1), (topics.every("health"), 1)])
                deadline = loop.time() + timeout
                messages = client.messages
                while (left := deadline - loop.time()) > 0:
                    # Retained messages come at once; stop after a quiet spell.
                    try:
                        async with asyncio.timeout(min(left, quiet)):
                            message = await anext(messages)
                    except TimeoutError:
                        break
                    with contextlib.suppress(PayloadError, TopicError, TypeError):
                        parts = parse(str(message.topic))
                        if parts.client is None:
                            continue
                        key = (parts.role, parts.client)
                        raw = bytes(message.payload)
                        if parts.action == "status":
                            presence[key] = decode(Presence, raw)
                        elif parts.action == "health":
                            health[key] = decode(DeviceHealth, raw)
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        where = f"{broker.host}:{broker.port}"
        text, fix = broker_fix(broker, where, exc if str(exc) else TimeoutError("timeout"))
        raise StatusUnavailable(
            f"cannot read the hall's status from {where}: {text}\n  fix: {fix}"
        ) from exc
    return presence, health


async def collect_status(cfg: HallConfig, *, timeout: float = 2.0, quiet: float = 0.3) -> list[Row]:  # noqa: ASYNC109  bounded by `hallq status --timeout`
    """One row per configured client (coordinator first, then agents), then any other
    client the broker knows of. Raises StatusUnavailable when the broker cannot be read."""
    presence, health = await _read_retained(cfg, timeout, quiet)
    expected = [("coordinator", cfg.coordinator.client_id)] + [(a.role, a.id) for a in cfg.agents]
    rows = [_row(key, presence, health, configured=True) for key in expected]
    for key in sorted(set(presence) | set(health)):
        if key not in expected:
            rows.append(_row(key, presence, health, configured=False))
    suspended = _suspended(health.get(expected[0]))
    return [
        dataclasses.replace(
            r, health=f"suspended by a supervisor; {r.health or '-'}", health_ok=False
        )
        if r.client in suspended and r.role != "coordinator"
        else r
        for r in rows
    ]


def _suspended(coordinator: DeviceHealth | None) -> set[str]:
    """The logins a supervisor suspended, as the coordinator's health lists them."""
    from hallq.messages import SUSPENDED

    for c in coordinator.components if coordinator is not None else []:
        if c.name == SUSPENDED and c.detail:
            return set(c.detail.split())
    return set()


def _row(
    key: tuple[str, str],
    presence: dict[tuple[str, str], Presence],
    health: dict[tuple[str, str], DeviceHealth],
    *,
    configured: bool,
) -> Row:
    role, client = key
    seen = presence.get(key)
    state = Seen.NEVER_SEEN if seen is None else Seen(seen.state)
    summary, ok = ("", None)
    stamps = [seen.ts] if seen is not None else []
    if key in health:
        summary, ok = _health_summary(health[key])
        stamps.append(health[key].ts)
    return Row(client, role, state, configured, summary, ok, max(stamps) if stamps else None)


def status_caveat(cfg: HallConfig) -> str | None:
    """A warning to print above the table when these credentials cannot see the whole hall.

    The hall ACL (``hallq provision``) lets a device's user read only its own status and the
    coordinator's; the broker still grants the subscription, so everyone else would look
    "never seen". Devices log in with user name = agent id, which is how this is spotted.
    """
    from hallq.acl import OPERATOR

    broker = cfg.broker.for_client(OPERATOR)
    user = broker.username
    if user is not None and user in {a.id for a in cfg.agents}:
        return (
            f"broker user {user!r} is an agent's: the hall ACL lets it see only its own and "
            f"the coordinator's status. Run on the server, where `hallq provision` made the "
            f"read-only {OPERATOR!r} login (broker.credentials_dir/{OPERATOR}/)."
        )
    if "url" not in broker.model_fields_set:
        return (
            f"broker.url is not set (hall file or HALLQ_BROKER_URL): this is the default "
            f"{broker.host}:{broker.port}, which may not be the hall's broker."
        )
    return None


def status_advice(rows: Sequence[Row]) -> list[str]:
    """What the person reading the table does next about who is missing."""
    out = []
    coordinator = next((r for r in rows if r.role == "coordinator" and r.configured), None)
    if coordinator is not None and not coordinator.online:
        out.append(
            f"the coordinator is {coordinator.presence.value}: the hall issues and calls "
            "nothing online. On its host: sudo systemctl start hallq-coordinator; "
            "journalctl -u hallq-coordinator"
        )
    for seen, fix in (
        (
            Seen.NEVER_SEEN,
            "Not installed yet, or its hall file names another broker: `hallq doctor` on that "
            "Pi says which",
        ),
        (
            Seen.OFFLINE,
            "On that Pi: systemctl status 'hallq-agent@*'; journalctl -u hallq-agent@ID",
        ),
    ):
        agents = [
            r.client for r in rows if r.configured and r.presence is seen and r is not coordinator
        ]
        if agents:
            more = f" and {len(agents) - 5} more" if len(agents) > 5 else ""
            out.append(f"{seen.value}: {', '.join(agents[:5])}{more}. {fix}")
    return out


def status_exit_code(rows: Sequence[Row]) -> int:
    """1 if the coordinator or any configured agent is not online."""
    return 1 if any(r.configured and not r.online for r in rows) else 0


_PRESENCE_STYLE = {
    Seen.ONLINE: "green",
    Seen.OFFLINE: "bold red",
    Seen.NEVER_SEEN: "yellow",
}


def render_status(
    rows: Sequence[Row], console: Console | None = None, *, tz: object = None
) -> None:
    """Coloured table: device, role, presence, health, last seen (local time of ``tz``)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="hallq status")
    for column in ("device", "role", "presence", "health", "last seen"):
        table.add_column(column)
    for row in rows:
        name = row.client if row.configured else f"{row.client} [dim](not in hall file)[/]"
        health = row.health or "-"
        if row.health and not row.online:  # what it said before it went, not how it is
            health = f"[dim]last: {health}[/]"
        elif row.health_ok is True:
            health = f"[green]{health}[/]"
        elif row.health_ok is False:
            health = f"[red]{health}[/]"
        last = "-"
        if row.last_seen is not None:
            last = row.last_seen.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[arg-type]
        style = _PRESENCE_STYLE[row.presence]
        table.add_row(name, row.role, f"[{style}]{row.presence.value}[/]", health, last)
    (console or Console()).print(table)


def city_link_line(cfg: HallConfig, log_path: Path | None = None) -> str | None:
    """One line on shipping the event log to the city: how many entries and seconds behind,
    and the last error. None where no shipper has run (a hall without the city link).
    Read from the shipper's mark beside the log, so it answers with the city down."""
    from coordinator.eventlog import EventLog
    from coordinator.service import default_log_path
    from coordinator.shipmark import lag, mark_path, read_mark

    path = log_path or default_log_path(cfg)
    try:
        mark = read_mark(mark_path(path))
    except ValueError as exc:
        return f"city link: {exc}"
    if mark is None or not path.exists():
        return None
    log = EventLog.reader(path)
    try:
        behind = lag(log, mark)
    finally:
        log.close()
    text = (
        f"city link ({mark.target}): {behind.events} event(s), {behind.seconds:.0f} s behind"
        f" (shipped to #{behind.shipped_seq})"
    )
    if mark.error:
        text += f"; last attempt failed: {mark.error}"
    return text
