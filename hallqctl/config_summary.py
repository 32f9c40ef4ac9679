"""The summary ``hallq config check`` prints: what a field engineer checks before deploying."""

from __future__ import annotations

from collections import Counter
from datetime import time

from rich.console import RenderableType

from hallq.config import HallConfig


def _ranges(numbers: list[int]) -> str:
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _hours(intervals: list[tuple[time, time]]) -> str:
    return ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in intervals)


def _calendar(cfg: HallConfig) -> str:
    """One line on the hall calendar the comfort index uses."""
    hall = cfg.hall
    bits = []
    if hall.closed_days:
        span = f"{hall.closed_days[0]} to {hall.closed_days[-1]}"
        bits.append(f"{len(hall.closed_days)} closed days ({span})")
    if hall.extra_workdays:
        bits.append(
            f"{len(hall.extra_workdays)} extra working days (调休): "
            + ", ".join(map(str, hall.extra_workdays))
        )
    if hall.filing_deadlines:
        bits.append(
            "filing deadlines (else the 15th): "
            + ", ".join(f"{m}-{d:02d}" for m, d in hall.filing_deadlines.items())
        )
    return "calendar: " + "; ".join(bits)


def _web_line(cfg: HallConfig) -> str:
    """Who can log into the desk: a hall whose desk nobody can open is worth a warning."""
    from coordinator.web.users import UsersFileError, read_users_file

    web = cfg.web
    users: list[str] = [u.role for u in web.users]
    where = ""
    if web.users_file is not None:
        try:
            users += [u.role for u in read_users_file(web.users_file)]
            where = f" (hall file and {web.users_file})"
        except UsersFileError as exc:
            where = f" (users file unreadable: {exc})"
    if cfg.coordinator.supervisor_password is not None:
        users.append("supervisor")
        where += " + HALLQ_SUPERVISOR_PASSWORD"
    port = cfg.coordinator.http_port
    served = (
        "off"
        if not port
        else (f"{'https' if web.tls else 'http'}://{cfg.coordinator.http_host}:{port}")
    )
    return (
        f"web {served}; desk users: {users.count('supervisor')} supervisor(s), "
        f"{users.count('viewer')} viewer(s){where}"
    )


def lease_warnings(cfg: HallConfig) -> list[str]:
    """Services whose numbers the dispensers' leases may take (edge.lease_cap each, from
    the top down) together with the daily cap, so that online issuing ends early with
    numbers_exhausted."""
    out = []
    dispensers = [a.id for a in cfg.agents if a.role == "dispenser"]
    for s in cfg.services:
        issuing = [d for d in dispensers if s.code in cfg.services_for_agent(d)]
        leased = len(issuing) * cfg.edge.lease_cap
        numbers = 10**s.width - 1
        online = s.daily_cap if s.daily_cap is not None else 0
        if issuing and leased + online > numbers:
            out.append(
                f"service {s.code}: {len(issuing)} dispenser(s) may hold {leased} leased "
                f"numbers (edge.lease_cap {cfg.edge.lease_cap} each)"
                + (f" and its daily cap is {s.daily_cap}" if s.daily_cap else "")
                + f", more than {s.width} digits give ({numbers}): raise width or lower "
                "edge.lease_size"
            )
    return out


def render_summary(cfg: HallConfig) -> RenderableType:
    """What a field engineer checks before deploying: layout, coverage, whether secrets are set."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text as RichText

    hall = cfg.hall
    broker = cfg.broker
    title = f"Hall {hall.id}: {hall.name}" + (f" ({hall.name_en})" if hall.name_en else "")
    head = RichText.assemble(
        (title, "bold"),
        f"\ntime zone {hall.timezone}; open {_hours(hall.open_hours)}; "
        f"numbers reset at {hall.reset_time:%H:%M}",
        f"\nbroker {broker.url} (TLS {'on' if broker.use_tls else 'off'}, "
        f"MQTT {broker.protocol}); username {broker.username or 'not set'}; "
        f"password {'set' if broker.password is not None else 'not set'}",
        f"\nID hash key {'set' if cfg.security.id_hash_key is not None else 'not set'}; "
        f"state dir {cfg.runtime.state_dir}; log level {cfg.runtime.log_level}",
        f"\n{_web_line(cfg)}",
    )

    import time as clock

    from hallqctl.doctor import calendar_gaps

    gap = calendar_gaps(cfg, cfg.hall.business_day(clock.time()))
    if gap is not None:
        head.append(f"\nwarning: {gap}", style="yellow")
    if cfg.security.id_hash_key is None and cfg.coordinator.http_port:
        head.append(
            "\nwarning: security.id_hash_key is not set: taxpayers cannot book "
            "appointments (real-name booking hashes their ID or phone with it)",
            style="yellow",
        )

    for warning in lease_warnings(cfg):
        head.append(f"\nwarning: {warning}", style="yellow")

    serving = Counter(code for w in cfg.windows for code in w.weights())
    services = Table(title=f"Services ({len(cfg.services)})", title_justify="left")
    for col in ("code", "ticket", "name", "priority", "target", "windows", "notes"):
        services.add_column(col, overflow="fold", no_wrap=col in ("code", "ticket"))
    for s in cfg.services:
        notes = []
        if s.hours:
            notes.append(f"hours {_hours(s.hours)}")
        if s.daily_cap is not None:
            notes.append(f"cap {s.daily_cap}" + (f", warn at {s.warn_at}" if s.warn_at else ""))
        services.add_row(
            s.code,
            f"{s.prefix}{1:0{s.width}d}",
            s.name,
            s.priority,
            f"{s.wait_target_min:g} min",
            str(serving[s.code]),
            "; ".join(notes),
        )

    windows = Table(title=f"Windows ({len(cfg.windows)})", title_justify="left")
    for col in ("zone", "name", "site", "windows", "count", "一窗通办", "express"):
        windows.add_column(col, overflow="fold", no_wrap=col in ("zone", "site"))
    for z in cfg.zones:
        mine = [w for w in cfg.windows if w.zone == z.id]
        windows.add_row(
            z.id,
            z.name,
            z.site,
            _ranges([w.number for w in mine]),
            str(len(mine)),
            str(sum(w.all_services for w in mine)),
            str(sum(w.express for w in mine)),
        )
    windows.add_row(
        "total",
        "",
        "",
        "",
        str(len(cfg.windows)),
        str(sum(w.all_services for w in cfg.windows)),
        str(sum(w.express for w in cfg.windows)),
    )

    agents = Table(title=f"Agents ({len(cfg.agents)})", title_justify="left")
    for col in ("agent", "role", "devices", "windows", "host"):
        agents.add_column(col, overflow="fold", no_wrap=col in ("agent", "role"))
    for a in cfg.agents:
        kinds = Counter(d.kind for d in a.devices)
        agents.add_row(
            a.id,
            a.role,
            ", ".join(k if n == 1 else f"{n} {k}" for k, n in kinds.items()),
            _ranges(cfg.windows_for_agent(a.id)),
            a.host or "",
        )

    parts: list[RenderableType] = [head]
    if hall.closed_days or hall.extra_workdays or hall.filing_deadlines:
        parts.append(RichText(_calendar(cfg)))
    parts += [services, windows, agents]
    if cfg.agents:
        covered = {w for a in cfg.agents for w in cfg.windows_for_agent(a.id)}
        uncovered = [w.number for w in cfg.windows if w.number not in covered]
        if uncovered:
            parts.append(RichText(f"windows without a pad: {_ranges(uncovered)}", style="yellow"))
    return Group(*parts)
