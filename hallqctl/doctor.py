"""``hallq doctor``: everything a field engineer checks by hand, in one table with the fix.

A service that will not start usually fails for a reason outside the code: an adapter
not plugged in, the service user not in ``dialout``, SPI not enabled, the broker password
wrong, the coordinator down. Each check here answers one such question and says, in one
line, what to do about it, so the engineer does not have to read a traceback.

Results: ``ok``; ``warn`` (works, but degraded); ``unknown`` (could not tell, e.g. no
timedatectl); ``fail`` (the service cannot do its job). :func:`exit_code` is non-zero
only for ``fail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from hallq.config import (
    FramedDevice,
    GpioButtonsDevice,
    LedMax7219Device,
    PrinterDevice,
)

if TYPE_CHECKING:
    from rich.console import Console

    from firmware_bridge import SerialLink
    from hallq.config import Agent, BrokerConfig, HallConfig
    from hallq.messages import Presence

__all__ = ["Check", "Result", "exit_code", "render_checks", "run_doctor"]

SERVICE_USER = "hallq"
# What the agent unit adds with SupplementaryGroups= (systemd/hallq-agent@.service).
UNIT_GROUPS = ("dialout", "gpio", "spi", "audio")
# config device kind -> the kind number its firmware says in HELLO (firmware_bridge.payloads)
_FIRMWARE_KIND = {
    "call_pad": 1,
    "rating_pad": 2,
    "keypad": 3,
    "scanner": 4,
    "id_reader": 5,
    "led_serial": 6,
}


class Result(StrEnum):
    OK = "ok"
    WARN = "warn"
    UNKNOWN = "unknown"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    """One answer: what was checked, the verdict, what was seen, and the fix if not ok."""

    name: str
    result: Result
    detail: str
    fix: str = ""


def exit_code(checks: Sequence[Check]) -> int:
    """1 when anything blocks service (a ``fail``); warnings and unknowns do not."""
    return 1 if any(c.result is Result.FAIL for c in checks) else 0


# --- local files and devices ----------------------------------------------------------------


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _user_can_rw(st: os.stat_result, user: str) -> bool | None:
    """Whether ``user`` may open the node read-write by its mode bits; None if no such user."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    if entry.pw_uid == 0:
        return True
    groups = set(os.getgrouplist(user, entry.pw_gid))
    if user == SERVICE_USER:  # the unit grants these even before usermod
        for name in UNIT_GROUPS:
            with contextlib.suppress(KeyError):
                groups.add(grp.getgrnam(name).gr_gid)
    if st.st_uid == entry.pw_uid:
        bits = (st.st_mode >> 6) & 0o6
    elif st.st_gid in groups:
        bits = (st.st_mode >> 3) & 0o6
    else:
        bits = st.st_mode & 0o6
    return bits == 0o6


def check_node(name: str, path: Path, missing_fix: str, user: str = SERVICE_USER) -> Check:
    """A /dev node exists and both we and the service user may read and write it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return Check(name, Result.FAIL, f"{path} not found", missing_fix)
    except OSError as exc:
        return Check(name, Result.FAIL, f"{path}: {exc.strerror}", missing_fix)
    group = _group_name(st.st_gid)
    group_fix = f"add user {user} to group {group}: sudo usermod -aG {group} {user}"
    if not os.access(path, os.R_OK | os.W_OK):
        return Check(
            name,
            Result.FAIL,
            f"{path}: no read/write permission for this user (group {group})",
            f"run as {user} (sudo -u {user} hallq doctor ...) or {group_fix}",
        )
    service_ok = _user_can_rw(st, user)
    if service_ok is False:
        return Check(name, Result.FAIL, f"{path}: user {user} may not open it", group_fix)
    kind = "char device" if stat.S_ISCHR(st.st_mode) else "not a char device"
    return Check(name, Result.OK, f"{path} ({kind}, group {group})")


def _local_port(url: str, sim_dir: Path | None) -> str | None:
    """The path to open for a configured port; None for one this host cannot check."""
    if url == "sim" or url.startswith("sim:"):
        if sim_dir is None:
            return None
        from firmware_bridge.port import resolve_port

        return resolve_port(url, sim_dir)
    return url


def _serial_checks(agent: Agent, sim_dir: Path | None) -> list[Check]:
    checks: list[Check] = []
    seen: set[str] = set()
    for dev in agent.devices:
        if not isinstance(dev, FramedDevice) or dev.serial.port in seen:
            continue
        seen.add(dev.serial.port)
        url = _local_port(dev.serial.port, sim_dir)
        if url is None:
            checks.append(
                Check(
                    f"serial {dev.serial.port}",
                    Result.UNKNOWN,
                    "simulated port and no --sim-dir: not checked",
                )
            )
            continue
        if "://" in url:
            checks.append(Check(f"serial {url}", Result.OK, "network port: checked by the poll"))
            continue
        fix = (
            "plug in the USB adapter (ls -l /dev/serial/by-id/) or correct "
            f"serial.port of device {dev.id} in the hall file"
        )
        checks.append(check_node(f"serial {url}", Path(url), fix))
    return checks


def _gpio_spi_checks(agent: Agent, dev_dir: Path) -> list[Check]:
    checks: list[Check] = []
    if any(isinstance(d, GpioButtonsDevice) for d in agent.devices):
        chips = sorted(dev_dir.glob("gpiochip*"))
        if not chips:
            checks.append(
                Check(
                    "gpio",
                    Result.FAIL,
                    f"no {dev_dir}/gpiochip* found",
                    "run on the Pi itself; a kernel without the GPIO character device "
                    "needs updating",
                )
            )
        else:
            checks.append(check_node("gpio", chips[0], "", SERVICE_USER))
    for dev in agent.devices:
        if not isinstance(dev, LedMax7219Device):
            continue
        node = dev_dir / f"spidev{dev.spi.port}.{dev.spi.device}"
        fix = (
            "enable SPI: sudo raspi-config nonint do_spi 0 (or dtparam=spi=on in "
            "/boot/firmware/config.txt), then reboot"
        )
        checks.append(check_node(f"spi {dev.id}", node, fix))
    return checks


def check_font(
    agent: Agent | None, finder: Callable[[], Path | None] | None = None
) -> Check | None:
    """The system Unifont, for notices beyond the bundled subset (boards only)."""
    if agent is None or not any(d.kind.startswith("led_") for d in agent.devices):
        return None
    from displays.errors import FontError

    if finder is None:
        from displays.fonts import find_unifont

        finder = find_unifont
    try:
        path = finder()
    except FontError as exc:  # a bad $HALLQ_UNIFONT
        return Check(
            "board font", Result.FAIL, str(exc), "unset HALLQ_UNIFONT or point it at unifont.otf"
        )
    if path is None:
        return Check(
            "board font",
            Result.WARN,
            "system Unifont not installed: only the bundled subset's characters will show",
            "sudo apt-get install fonts-unifont",
        )
    return Check("board font", Result.OK, str(path))


# --- what this machine may lack: each has a fallback, and a fix -----------------------------


def check_voice(
    agents: Sequence[Agent], which: Callable[[str], str | None] = shutil.which
) -> Check | None:
    """Speakers need espeak-ng (or recorded clips); without it calls are shown, not spoken."""
    if not any(d.kind == "speaker" for a in agents for d in a.devices):
        return None
    found = which("espeak-ng")
    if found:
        return Check("voice", Result.OK, f"espeak-ng at {found}")
    return Check(
        "voice",
        Result.WARN,
        "no espeak-ng and no voice clips: boards show calls, nobody speaks them",
        "sudo apt-get install espeak-ng",
    )


def check_dispatch_core(kind: Callable[[], str] | None = None) -> Check | None:
    """Where the coordinator is installed: is its dispatch core compiled, or the pure twin?"""
    import importlib.util

    if kind is None:
        if importlib.util.find_spec("aiohttp") is None:  # no coordinator role here
            return None
        from coordinator.dispatch import active_kind

        kind = active_kind
    try:
        found = kind()
    except (ImportError, ValueError) as exc:
        return Check("dispatch core", Result.FAIL, str(exc), "unset HALLQ_DISPATCH")
    if found == "compiled":
        return Check("dispatch core", Result.OK, "compiled (Cython)")
    return Check(
        "dispatch core",
        Result.WARN,
        "pure Python (installed without a C compiler): same picks, ~35x slower",
        "sudo apt-get install build-essential python3-dev, then reinstall hallq "
        "(pip install --force-reinstall --no-deps ...)",
    )


def check_local_broker(
    cfg: HallConfig, finder: Callable[[], str | None] | None = None
) -> Check | None:
    """When the hall's broker is this machine: is Mosquitto installed here at all?"""
    if cfg.broker.host not in ("127.0.0.1", "localhost", "::1", socket.gethostname()):
        return None
    if finder is None:
        from hallqctl.mosquitto import find_mosquitto

        finder = find_mosquitto
    found = finder()
    if found:
        return Check("mosquitto", Result.OK, f"installed ({found})")
    return Check(
        "mosquitto",
        Result.WARN,
        f"not installed, yet the hall's broker is this machine ({cfg.broker.url}); "
        "`hallq demo` runs an embedded broker instead",
        "sudo apt-get install mosquitto",
    )


def check_clock(
    command: Sequence[str] = ("timedatectl", "show", "-p", "NTPSynchronized", "--value"),
) -> Check:
    """An unsynchronised clock misdates tickets and the daily reset; unknown is no failure."""
    if shutil.which(command[0]) is None:
        return Check("clock", Result.UNKNOWN, f"{command[0]} not available", "")
    try:
        out = subprocess.run(list(command), capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("clock", Result.UNKNOWN, f"{command[0]} failed: {exc}", "")
    value = out.stdout.strip().lower()
    if out.returncode != 0 or value not in ("yes", "no"):
        why = (out.stderr.strip() or value or f"exit {out.returncode}").splitlines()[0]
        return Check("clock", Result.UNKNOWN, f"cannot tell: {why}", "")
    if value == "yes":
        return Check("clock", Result.OK, "NTP synchronised")
    return Check(
        "clock",
        Result.WARN,
        "not NTP synchronised: ticket times and the daily reset may be off",
        "sudo timedatectl set-ntp true; check the hall LAN reaches an NTP server",
    )


FORECAST_DAYS = 30  # the comfort index's days ahead


def calendar_gaps(cfg: HallConfig, today: date) -> str | None:
    """Why the hall calendar does not cover the comfort index's and the bookings' days
    ahead, or ``None`` when it does."""
    from coordinator.forecast.hall_calendar import Calendar

    ahead = max(FORECAST_DAYS, cfg.coordinator.appointment_days)
    last = today + timedelta(days=ahead)
    years = Calendar.of(cfg).uncovered_years(today, last)
    if not years:
        return None
    listed = ", ".join(str(y) for y in years)
    return (
        f"hall.closed_days names no holiday in {listed}, but the comfort index and "
        f"bookings reach {last}: its holidays would be forecast as open, and "
        f"taxpayers cannot book its days until it is entered"
    )


def check_calendar(cfg: HallConfig, today: date | None = None) -> Check:
    gap = calendar_gaps(cfg, today or cfg.hall.business_day(time.time()))
    if gap is None:
        return Check("hall calendar", Result.OK, "covers the days forecast and bookable")
    return Check(
        "hall calendar",
        Result.WARN,
        gap,
        "add the year's public holidays to hall.closed_days (and its 调休 working "
        "weekends to hall.extra_workdays) in the hall file",
    )


def check_event_log(path: Path) -> Check | None:
    """On the coordinator's machine (its event log is here): whether a coordinator writes
    the log now. None elsewhere."""
    from coordinator.eventlog import writer_of

    if not path.exists():
        return None
    pid = writer_of(path)
    if pid is None:
        return Check(
            "event log",
            Result.WARN,
            f"{path}: no coordinator writes it now",
            "sudo systemctl start hallq-coordinator "
            "(journalctl -u hallq-coordinator -n 50 says why it stopped)",
        )
    return Check("event log", Result.OK, f"{path}: written by the coordinator (pid {pid})")


def check_disk(state_dir: Path, *, min_free_mb: int = 100, warn_free_mb: int = 500) -> Check:
    """The outbox and the event log live in the state dir; a full disk loses them."""
    probe = state_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError as exc:
        return Check("disk", Result.UNKNOWN, f"{state_dir}: {exc.strerror}", "")
    free_mb = usage.free // (1024 * 1024)
    detail = f"{free_mb} MB free for {state_dir}"
    if os.statvfs(probe).f_flag & os.ST_RDONLY:
        return Check(
            "disk",
            Result.FAIL,
            f"{state_dir} is on a read-only file system",
            "a failing SD card is remounted read-only by the kernel (dmesg | grep -iE "
            "'mmc|remount|EXT4-fs error'): replace the card. Meanwhile the agent serves "
            "online but issues no ticket offline",
        )
    fix = "free space: sudo journalctl --vacuum-size=100M; remove old files under /var/log"
    if free_mb < min_free_mb:
        return Check("disk", Result.FAIL, detail, fix)
    if free_mb < warn_free_mb:
        return Check("disk", Result.WARN, detail, fix)
    if state_dir.exists() and not os.access(state_dir, os.W_OK):
        return Check(
            "disk",
            Result.WARN,
            f"{detail}; not writable by this user",
            f"run as {SERVICE_USER}, or let systemd create it (StateDirectory=hallq)",
        )
    return Check("disk", Result.OK, detail)


# --- the RS-485 line ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Probe:
    """A driver stand-in: lets the link accept the device's answers, ignores its events."""

    address: int
    device: str
    kind: int
    poll_period: float = 0.0

    def decode_event(self, event: object, data: bytes) -> None:
        return None


async def check_bus(
    url: str,
    baudrate: int,
    devices: Sequence[FramedDevice],
    *,
    timeout: float,  # noqa: ASYNC109  each check is bounded by --timeout
    agent_id: str = "ID",
) -> list[Check]:
    """Open the line briefly and ask each configured device HELLO."""
    from firmware_bridge import Command, LinkTiming, SerialLink
    from firmware_bridge.errors import BridgeError
    from firmware_bridge.payloads import Identity

    timing = LinkTiming(reopen_initial=0.05, reopen_max=0.2, status_interval=3600.0)
    link = SerialLink(url, baudrate=baudrate, timing=timing)
    for dev in devices:
        link.attach(_Probe(dev.serial.address or 1, dev.id, _FIRMWARE_KIND.get(dev.kind, 0)))
    checks: list[Check] = []
    async with link:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not link.is_up and loop.time() < deadline:  # noqa: ASYNC110  the updates queue is read below, for the probes
            await asyncio.sleep(0.02)
        if not link.is_up:
            reason = await _link_down_reason(link)
            return [_port_failure(url, devices, reason, agent_id)]
        for dev in devices:
            name = f"device {dev.id}"
            try:
                async with asyncio.timeout(timeout):
                    reply = await link.request(dev.serial.address or 1, Command.HELLO, retries=2)
            except (BridgeError, TimeoutError) as exc:
                checks.append(
                    Check(
                        name,
                        Result.FAIL,
                        f"no answer at address {dev.serial.address} on {url}: {exc or 'timeout'}",
                        "check the device's power, its address switch, and A/B wiring and "
                        "termination of the RS-485 pair",
                    )
                )
                continue
            try:
                identity = Identity.decode(reply.payload)
            except ValueError:
                checks.append(
                    Check(
                        name,
                        Result.WARN,
                        "answers, but with an unreadable identity",
                        "update the device firmware",
                    )
                )
                continue
            want = _FIRMWARE_KIND.get(dev.kind)
            if want is not None and identity.kind != want:
                checks.append(
                    Check(
                        name,
                        Result.FAIL,
                        f"address {dev.serial.address} answers as {identity.kind_name}, "
                        f"configured {dev.kind}",
                        "set the device's address switch, or fix serial.address in the hall file",
                    )
                )
            else:
                checks.append(
                    Check(
                        name,
                        Result.OK,
                        f"answers ({identity.kind_name}, "
                        f"firmware {identity.firmware[0]}.{identity.firmware[1]})",
                    )
                )
    return checks


def _port_failure(url: str, devices: Sequence[FramedDevice], reason: str, agent_id: str) -> Check:
    if "lock" in reason.lower() or "busy" in reason.lower():
        fix = f"another process holds the port: sudo systemctl stop hallq-agent@{agent_id} first"
    else:
        fix = "plug in the adapter or correct serial.port in the hall file"
    ids = ", ".join(d.id for d in devices)
    return Check(f"bus {url}", Result.FAIL, f"did not open ({reason}); not polled: {ids}", fix)


async def _link_down_reason(link: SerialLink) -> str:
    """The reason the link gave for being down (its first LinkState update)."""
    from firmware_bridge import LinkState

    with contextlib.suppress(TimeoutError):
        while True:
            update = await link.next_update(timeout=0.05)
            if isinstance(update, LinkState) and not update.up:
                return update.reason
    return "timed out"


_PRINTER_FIX = {
    "cover_open": ("cover open", "close the printer cover until it clicks"),
    "paper_out": ("out of paper", "load a new roll, thermal side towards the head"),
    "error": ("reports an error (cutter jam or head overheated)", "clear the jam, power-cycle it"),
    "offline": ("offline", "press the printer's online/feed button; check the cover and paper"),
}


async def check_printer(
    url: str,
    dev: PrinterDevice,
    *,
    timeout: float,  # noqa: ASYNC109  each check is bounded by --timeout
    agent_id: str = "ID",
) -> Check:
    """Ask the ESC/POS printer its DLE EOT status; no answer is a failure, never "ok"."""
    from firmware_bridge.devices.printer import TicketPrinter
    from firmware_bridge.errors import PortUnavailable
    from firmware_bridge.port import open_port

    name = f"printer {dev.id}"
    try:  # TicketPrinter would report a locked port as mere silence
        conn = await open_port(url, baudrate=dev.serial.baud, on_data=lambda data: None)
    except PortUnavailable as exc:
        return _port_failure(url, [dev], str(exc), agent_id)
    await conn.close()
    async with TicketPrinter(url, baudrate=dev.serial.baud, status_timeout=timeout) as printer:
        status = await printer.status()
    condition = status.condition.value
    if not status.answered:
        return Check(
            name,
            Result.FAIL,
            f"no answer to a status query on {url}",
            f"check its power and cable, and that its baud ({dev.serial.baud} configured) "
            "matches the self-test page",
        )
    if condition in _PRINTER_FIX:
        what, fix = _PRINTER_FIX[condition]
        return Check(name, Result.FAIL, what, fix)
    if condition == "paper_near_end":
        return Check(name, Result.WARN, "paper near end", "put a new roll in soon")
    return Check(name, Result.OK, "ready, paper ok")


def _bus_groups(agent: Agent, sim_dir: Path | None) -> dict[tuple[str, int], list[FramedDevice]]:
    groups: dict[tuple[str, int], list[FramedDevice]] = defaultdict(list)
    for dev in agent.devices:
        if (
            not isinstance(dev, FramedDevice)
            or dev.serial.address is None
            or isinstance(dev, PrinterDevice)
        ):
            continue
        url = _local_port(dev.serial.port, sim_dir)
        if url is not None:
            groups[(url, dev.serial.baud)].append(dev)
    return groups


# --- the broker and the coordinator ---------------------------------------------------------


async def check_broker(
    cfg: HallConfig,
    *,
    timeout: float,  # noqa: ASYNC109  each check is bounded by --timeout
    presence_window: float = 1.0,
    agents: Sequence[Agent] = (),
) -> list[Check]:
    """Connect as a throw-away client id. Where ``hallq provision`` credentials are, log
    in with them: the server's read-only ``operator``, else the first agent checked here
    (the broker binds the client id to that login, so a running agent would be bumped
    once: the doctor is run with the agent stopped)."""
    import aiomqtt

    from hallq.acl import OPERATOR
    from hallq.errors import ConfigError, PayloadError
    from hallq.messages import Presence, decode
    from hallq.topics import HallTopics, Role
    from hallqctl.status import probe_client

    try:
        broker = cfg.broker.for_client(OPERATOR)
        if broker is cfg.broker and agents:
            broker = cfg.broker.for_client(agents[0].id, agents[0].credentials)
    except ConfigError as exc:
        return [
            Check(
                "broker",
                Result.FAIL,
                str(exc).splitlines()[-1].strip(" -"),
                "copy the device's directory from `hallq provision` again",
            )
        ]
    where = f"{broker.host}:{broker.port}"
    try:
        client = probe_client(broker, "doctor", timeout)
    except (OSError, ValueError) as exc:
        return [Check("broker", Result.FAIL, f"TLS setup: {exc}", "check broker.tls.* file paths")]
    topic_filter = HallTopics(cfg.hall.id).every("status", Role.COORDINATOR)
    seen: dict[str, Presence] = {}
    try:
        async with asyncio.timeout(timeout + presence_window + 1):
            async with client:
                await client.subscribe(topic_filter, qos=1)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(presence_window):
                        async for message in client.messages:
                            with contextlib.suppress(PayloadError):
                                raw = bytes(message.payload)
                                presence: Presence = decode(Presence, raw)
                                seen[presence.client] = presence
                            if cfg.coordinator.client_id in seen:
                                break
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        return [_broker_failure(broker, where, exc)]
    connected = f"connected to {where}" + (f" as {broker.username}" if broker.username else "")
    if "url" in broker.model_fields_set:
        checks = [Check("broker", Result.OK, connected)]
    else:  # a bench default: whatever answers on this port may well be another hall's broker
        checks = [
            Check(
                "broker",
                Result.WARN,
                f"{connected}, the default: neither the hall file nor "
                "HALLQ_BROKER_URL names the hall's broker, so this one may not be it",
                "set broker.url in the hall file, or HALLQ_BROKER_URL",
            )
        ]
    checks.append(_coordinator_check(cfg.coordinator.client_id, seen, cfg.hall.tzinfo))
    return checks


def _broker_failure(broker: BrokerConfig, where: str, exc: BaseException) -> Check:
    from hallqctl.status import broker_fix

    text, fix = broker_fix(broker, where, exc)
    return Check("broker", Result.FAIL, f"cannot connect to {where}: {text}", fix)


def _coordinator_check(client_id: str, seen: Mapping[str, Presence], tz: tzinfo) -> Check:
    presence = seen.get(client_id)
    fix = (
        "on the coordinator host: sudo systemctl start hallq-coordinator; "
        "journalctl -u hallq-coordinator"
    )
    if presence is None:
        return Check("coordinator", Result.FAIL, f"{client_id} never seen on the broker", fix)
    if presence.state != "online":
        return Check(
            "coordinator",
            Result.FAIL,
            f"{client_id} offline since {presence.ts.astimezone(tz):%Y-%m-%d %H:%M}",
            fix,
        )
    return Check("coordinator", Result.OK, f"{client_id} online (boot {presence.boot})")


# --- entry point ----------------------------------------------------------------------------


def _agents_for(cfg: HallConfig, agent_id: str | None, hostname: str) -> list[Agent] | Check:
    """The named agent; without a name, the agents whose ``host`` is this machine."""
    if agent_id is None:
        short = hostname.split(".")[0]
        return [a for a in cfg.agents if a.host is not None and a.host in (hostname, short)]
    try:
        return [cfg.agent(agent_id)]
    except KeyError:
        known = ", ".join(a.id for a in cfg.agents) or "none"
        return Check(
            "agent", Result.FAIL, f"no agent {agent_id!r} in the hall file", f"use one of: {known}"
        )


async def run_doctor(
    cfg: HallConfig,
    agent_id: str | None,
    *,
    timeout: float = 3.0,  # noqa: ASYNC109  each check is bounded by --timeout
    dev_dir: Path = Path("/dev"),
    sim_dir: Path | None = None,
    check_network: bool = True,
    font_finder: Callable[[], Path | None] | None = None,
    clock_command: Sequence[str] | None = None,
    hostname: str | None = None,
) -> list[Check]:
    """Every check for this host, never raising for a failed one.

    Hardware checks run for ``agent_id``, or without it for every agent whose ``host`` in
    the hall file is this machine (none on a server without agents). Then the board font,
    broker and coordinator, clock and disk. The serial ports are opened briefly, so stop
    the agent first (the check says so when the port is locked).
    """
    host = hostname or socket.gethostname()
    agents = _agents_for(cfg, agent_id, host)
    if isinstance(agents, Check):
        return [agents]
    checks: list[Check] = []
    if agent_id is None and not agents and cfg.agents:
        checks.append(
            Check(
                "agents",
                Result.UNKNOWN,
                f"no agent's host in the hall file is this machine ({host}): no device checked",
                "on a Pi: --device ID (or set that agent's host to this hostname)",
            )
        )
    from hallq.config import ID_KEY_FIX

    for agent in agents:
        missing = cfg.missing_id_key(agent.id)
        if missing is not None:
            checks.append(Check("id key", Result.FAIL, missing, ID_KEY_FIX))
        checks += _serial_checks(agent, sim_dir)
        for (url, baud), devices in _bus_groups(agent, sim_dir).items():
            if "://" not in url and not await asyncio.to_thread(Path(url).exists):
                continue  # the serial check above already says so
            checks += await check_bus(url, baud, devices, timeout=timeout, agent_id=agent.id)
        for dev in agent.devices:
            if not isinstance(dev, PrinterDevice):
                continue
            path = _local_port(dev.serial.port, sim_dir)
            if path and ("://" in path or await asyncio.to_thread(Path(path).exists)):
                checks.append(await check_printer(path, dev, timeout=timeout, agent_id=agent.id))
        checks += _gpio_spi_checks(agent, dev_dir)
        font = check_font(agent, font_finder)
        if font is not None:
            checks.append(font)
    voice = check_voice(agents)
    if voice is not None:
        checks.append(voice)
    for machine in (check_dispatch_core(), check_local_broker(cfg)):
        if machine is not None:
            checks.append(machine)
    if check_network:
        checks += await check_broker(cfg, timeout=timeout, agents=agents)
    checks.append(check_clock(clock_command) if clock_command else check_clock())
    checks.append(check_disk(cfg.runtime.state_dir))
    from coordinator.service import default_log_path

    writer = check_event_log(default_log_path(cfg))
    if writer is not None:
        checks.append(writer)
    checks.append(check_calendar(cfg))
    return checks


_STYLE = {Result.OK: "green", Result.WARN: "yellow", Result.UNKNOWN: "dim", Result.FAIL: "bold red"}


def render_checks(checks: Sequence[Check], console: Console | None = None) -> None:
    """A table: check, result, what was seen, and the one-line fix."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="hallq doctor", show_lines=False)
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail")
    table.add_column("fix")
    for check in checks:
        style = _STYLE[check.result]
        table.add_row(check.name, f"[{style}]{check.result.value}[/]", check.detail, check.fix)
    (console or Console()).print(table)
