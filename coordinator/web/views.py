"""JSON views of the hall, built from the engine at the moment of the request.

Each view fills its response model (``models.py``, which the OpenAPI document is made
from) and returns its JSON. The wire models already say what a window, queue, board and
KPI look like, so the views add only what a person needs beside them (names, materials,
a ticket's place in line).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from coordinator import suspension
from coordinator.engine import no_window_alert
from coordinator.web import models as api
from coordinator.web.desk import KIND_ZH, SEVERITY_ZH, AdviceBook, AlertBook, busy_s, hhmm
from coordinator.web.devices import DeviceSeen, faults
from coordinator.web.figures import DayFigures, FigureCache, day_figures, same_weekday_last_month
from coordinator.web.interface import HallService
from hallq.messages import NOT_WRITABLE, SHARED_ID, TicketState, WindowStatus

NOT_WRITABLE_ZH = "无法写入存储 (SD 卡只读或已满)"

AHEAD_STATES = frozenset({TicketState.WAITING})


def _iso(ts: float | None, tz: dt.tzinfo) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, tz).isoformat()


def _service(c: HallService, code: str, now: float) -> api.Service:
    svc = c.engine.services[code]
    queue = c.engine.queue_state(code, c.queue.seq, now)
    oldest = queue.oldest_wait_s
    return api.Service(
        code=code,
        name=svc.name,
        name_en=svc.name_en,
        prefix=svc.prefix,
        wait_target_min=svc.wait_target_min,
        materials=list(svc.materials),
        queue=queue,
        over_target=oldest is not None and oldest > svc.wait_target_min * 60.0,
        wait_text=api.WaitText.of(queue.wait),
    )


def service_json(c: HallService, code: str, now: float) -> dict[str, Any]:
    return _service(c, code, now).model_dump(mode="json")


def _device(d: DeviceSeen) -> api.Device:
    components = d.health.components if d.health is not None else []
    return api.Device(
        role=d.role,
        client=d.client,
        online=d.online,
        boot=d.boot,
        version=d.version,
        since=d.since,
        healthy=all(x.ok for x in components) if d.health is not None else None,
        components=list(components),
        health_at=d.health_at,
    )


def devices_json(c: HallService) -> list[dict[str, Any]]:
    return [_device(d).model_dump(mode="json") for d in c.devices.all()]


def _header(c: HallService) -> api.HallHeader:
    """The hall, and whether it is open now: at lunch and after hours the queues' "within
    1 min" and the last calls read as a hall at work (found by a taxpayer)."""
    day = c.engine.day
    local = dt.datetime.fromtimestamp(c.clock(), c.cfg.hall.tzinfo).time()
    hours = c.cfg.hall.open_hours
    is_open = c.cfg.hall.open_at(c.clock())
    later = [start for start, _ in hours if start > local]
    return api.HallHeader(
        id=c.cfg.hall.id,
        name=c.cfg.hall.name,
        name_en=c.cfg.hall.name_en,
        day=day.isoformat() if day else None,
        open=is_open,
        opens=None if is_open or not later else f"{min(later):%H:%M}",
        # past 12:00 the morning's queue is still called: the page said only 暂停办理
        # while window 46 called B0800 (found by a supervisor)
        calling=not is_open
        and any(
            w.status is WindowStatus.OPEN
            and (w.current is not None or any(c.engine.waiting(s) for s in w.skills))
            for w in c.engine.windows.values()
        ),
        places={z.id: z.name for z in c.cfg.zones} if len(c.cfg.sites) > 1 else {},
    )


def public_json(c: HallService) -> dict[str, Any]:
    """The hall as a taxpayer may see it (hall view, ticket and booking pages)."""
    now, rev = c.clock(), c.queue.seq
    board = c.board_state(rev)
    return api.PublicHall(
        hall=_header(c),
        rev=rev,
        now=_iso(now, c.cfg.hall.tzinfo),
        services=[_service(c, code, now) for code in c.engine.services],
        board=board,
        comfort=board.comfort,
    ).model_dump(mode="json")


def summary_json(c: HallService) -> dict[str, Any]:
    """The supervisor's hall: everything, windows grouped by function hall."""
    now, rev, engine = c.clock(), c.queue.seq, c.engine
    return api.Hall(
        hall=_header(c),
        rev=rev,
        now=_iso(now, c.cfg.hall.tzinfo),
        services=[_service(c, code, now) for code in engine.services],
        zones={z.id: z.name for z in c.cfg.zones},
        windows=[engine.window_state(n, rev) for n in engine.windows],
        board=c.board_state(rev),
        stats=engine.stats_state(rev, now),
        devices=[_device(d) for d in c.devices.all()],
        alerts=len(alerts_json(c)),
    ).model_dump(mode="json")


_TYPED = re.compile(r"([A-Z]+)0*(\d{1,5})")


def typed_number(c: HallService, number: str) -> str:
    """A number as a taxpayer types it, as the hall prints it: A23 or A023 is A0023 where
    that service's numbers have four digits (the page's example, A023, was "not today"
    for every four-digit service)."""
    typed = _TYPED.fullmatch(number.strip().upper())
    if typed is None:
        return number
    prefix, digits = typed.groups()
    for service in c.cfg.services:
        if service.prefix == prefix and len(str(int(digits))) <= service.width:
            return f"{prefix}{int(digits):0{service.width}d}"
    return number


# a ticket's window is its holder's to know from its call on (a missed call's, a served
# one's: what they would name at the help desk, or rate)
CALLED_AT_WINDOW = frozenset(
    {TicketState.CALLED, TicketState.SERVING, TicketState.DONE, TicketState.NO_SHOW}
)


def _place(c: HallService, window: int | None) -> str | None:
    """The function hall a window is in, named: a hall of several floors or buildings has
    its windows numbered across them."""
    if window is None or window not in c.engine.windows:
        return None
    return c.cfg.zone(c.engine.windows[window].zone).name


def ticket_json(c: HallService, number: str) -> dict[str, Any] | None:
    t = c.engine.by_number.get(number) or c.engine.by_number.get(typed_number(c, number))
    if t is None:
        return None
    now, tz = c.clock(), c.cfg.hall.tzinfo
    svc = c.engine.services.get(t.service)
    waiting = t.state in AHEAD_STATES
    info = c.engine.ticket_info(t, now) if waiting else None
    return api.Ticket(
        number=t.number,
        service=t.service,
        service_name=svc.name if svc else t.service,
        materials=list(svc.materials) if svc else [],
        state=t.state,
        priority=t.priority,
        people_ahead=info.people_ahead if info else None,
        eta_min=info.eta_min if info else None,
        wait=info.wait if info else None,
        wait_text=api.WaitText.of(info.wait) if info else None,
        window=t.window if t.state in CALLED_AT_WINDOW else None,
        window_place=(
            _place(c, t.window)
            if t.state in CALLED_AT_WINDOW
            else _place(c, t.directed)
            if waiting
            else None
        ),
        directed_window=t.directed,
        site=c.engine.sites[t.site] if len(c.engine.sites) > 1 else None,
        issued_at=_iso(t.issued_at, tz),
        called_at=_iso(t.called_at, tz),
        recalls=t.recalls,
        rev=c.queue.seq,
    ).model_dump(mode="json")


def alerts_json(c: HallService) -> list[dict[str, Any]]:
    """What a supervisor should look at now: recent engine alerts, offline or unhealthy
    devices, services whose oldest ticket waits past the target."""
    now, tz = c.clock(), c.cfg.hall.tzinfo
    out: list[dict[str, Any]] = []
    for d in c.devices.offline():
        out.append(
            {
                "severity": "warning",
                "kind": "device_offline",
                "client": d.client,
                "role": d.role,
                "at": _iso(d.since, tz),
                "message": f"{d.client} ({d.role}) 离线",
            }
        )
    for d in c.devices.shared_ids():
        out.append(
            {
                "severity": "warning",
                "kind": "device_shared_id",
                "client": d.client,
                "role": d.role,
                "at": _iso(max([*d.restarts[-1:], d.health_at or -math.inf]), tz),
                "message": f"{d.client} ({d.role}) 有两台设备使用同一编号, 轮流掉线",
            }
        )
    for d in c.devices.unhealthy():
        bad = ", ".join(
            f"{x.name} {NOT_WRITABLE_ZH}" if x.status == NOT_WRITABLE else f"{x.name}:{x.status}"
            for x in faults(d.health)
        )
        out.append(
            {
                "severity": "warning",
                "kind": "device_unhealthy",
                "client": d.client,
                "role": d.role,
                "at": _iso(d.health_at, tz),
                "message": f"{d.client} 设备异常: {bad}",
            }
        )
    for code in c.engine.services:
        svc = service_json(c, code, now)
        if svc["over_target"]:
            minutes, target = svc["queue"]["oldest_wait_s"] / 60.0, svc["wait_target_min"]
            # "最长等候 15 分钟, 超过目标 15 分钟" read as a contradiction: a tenth then
            shown = (
                f"{minutes:.0f}"
                if round(minutes) > target
                else f"{math.ceil(minutes * 10) / 10:.1f}"
            )
            out.append(
                {
                    "severity": "warning",
                    "kind": "wait_over_target",
                    "service": code,
                    "at": _iso(now, tz),
                    "message": f"{svc['name']} 最长等候 {shown} 分钟, 超过目标 {target:g} 分钟",
                }
            )
    out += no_window_alerts(c, now)
    for at, event in c.alerts:
        if event.kind == "no_window":  # (standing, above, while it lasts)
            continue
        item = event.model_dump(mode="json", exclude_none=True)
        item.pop("v", None)
        item.update(at=_iso(at, tz))
        out.append(item)
    for item in out:  # named once, here: the pages kept their own lists, and fell behind
        item["kind_zh"] = KIND_ZH.get(item["kind"], item["kind"])
        item["severity_zh"] = SEVERITY_ZH.get(item["severity"], item["severity"])
    return [api.Alert.model_validate(item).model_dump(mode="json") for item in out]


def no_window_alerts(c: HallService, now: float) -> list[dict[str, Any]]:
    """People waiting where no open window of their building serves them (every one paused
    or closed): they are called nowhere else, and the desk showed the hall's figures,
    which looked fine (found by a supervisor who paused the branch's windows). Names the
    windows that could take them. Not at lunch or after hours, when all are meant shut."""
    if not c.cfg.hall.open_at(now):
        return []
    tz = c.cfg.hall.tzinfo
    return [
        no_window_alert(c.engine, gap).model_dump(
            mode="json", exclude_none=True, exclude={"v", "id", "ts"}
        )
        | {"at": _iso(now, tz)}
        for gap in c.engine.unserved()
    ]


def no_window_episodes(c: HallService) -> list[dict[str, Any]]:
    """Today's queues left without an open window, as the day report lists them: the
    desk's standing alert is gone once a window opens, and the report showed nothing of
    a branch left without one for an hour (found by a supervisor)."""
    tz, now = c.cfg.hall.tzinfo, c.clock()
    today = c.cfg.hall.business_day(now)
    still = {(g.service, c.engine.sites[g.site]) for g in c.engine.unserved()}
    out = []
    for at, e in c.alerts:
        if e.kind != "no_window" or c.cfg.hall.business_day(at) != today:
            continue
        open_now = (e.service, e.site or c.engine.sites[0]) in still
        out.append(
            {
                "first": hhmm(at, tz),
                "last": hhmm(now if open_now else at, tz),
                "kind_zh": KIND_ZH["no_window"],
                "text": e.message,
                "acked_by": "仍无窗口" if open_now else "已开窗",
            }
        )
    return out


def nearby_json(c: HallService, code: str, number: str | None) -> dict[str, Any] | None:
    """Nearby halls with a clearly shorter wait for service ``code`` than here: than the
    ticket ``number``'s remaining wait if it still waits, else than a new ticket's."""
    if code not in c.engine.services:
        return None
    now = c.clock()
    wait: float | None = None
    t = c.engine.by_number.get(number) if number else None
    if t is not None and t.service == code and t.state in AHEAD_STATES:
        wait = c.engine.ticket_info(t, now).eta_min
    elif t is None:
        wait = c.engine.queue_state(code, c.queue.seq, now).eta_min
    halls = c.nearby.suggest(code, wait)
    return api.Nearby(
        service=code,
        wait_min=None if wait is None else round(wait, 1),
        link=c.nearby.fresh,
        halls=[api.NearbyHall(**h) for h in halls],
    ).model_dump(mode="json")


# --- the supervisor desk ---------------------------------------------------------------------

PAPER = {"paper_near_end": "paper_low", "paper_out": "paper_out"}


def _offer(
    c: HallService, client: str, role: str, recent: dict[str, int] | None = None
) -> dict[str, Any]:
    """api.SuspendOffer's fields for ``client``: the tickets of a dispenser's last
    VOID_MINUTES suspending it may void (``recent``: counted for every device at once), and
    the windows of a window agent it pauses."""
    voids = None
    if role == "dispenser":
        since = c.clock() - suspension.VOID_MINUTES * 60
        voids = (
            recent.get(client, 0)
            if recent is not None
            else suspension.voidable(c.engine, client, since)
        )
    return {
        "voids": voids,
        "pauses": suspension.pauses(c.engine, client),
        "last_kiosk": _last_kiosk(c, client) if role == "dispenser" else None,
    }


def _last_kiosk(c: HallService, client: str) -> str | None:
    """The building ``client`` is the last working kiosk of, if it is: suspending the
    branch's only one left its taxpayers, told to take a new ticket, no kiosk at all."""
    agents = {a.id: a for a in c.cfg.agents}
    site = agents[client].site if client in agents else None
    if site is None and len(c.cfg.sites) > 1:
        return None
    others = [
        a.id
        for a in c.cfg.agents
        if a.role == "dispenser"
        and a.id != client
        and a.site == site
        and a.id not in c.engine.suspended
    ]
    return None if others else (site or c.cfg.hall.name)


def suspendable_roles(c: HallService) -> dict[str, str]:
    """The logins a supervisor may suspend, with their roles: the agents, and the
    supervisor consoles (coordinator.suspension)."""
    roles = {client: "supervisor" for client in c.cfg.security.supervisor_clients}
    return roles | {a.id: a.role for a in c.cfg.agents}


def _logins(c: HallService) -> list[api.Login]:
    """Every login a supervisor may suspend and has not: for the one an engineer names on
    the phone, which no alert may name (its password leaked, the Pi stolen)."""
    since = c.clock() - suspension.VOID_MINUTES * 60
    recent = suspension.voidable_by_device(c.engine, since)
    return [
        api.Login(client=client, role=role, **_offer(c, client, role, recent))
        for client, role in sorted(suspendable_roles(c).items())
        if client not in c.engine.suspended
    ]


def _device_problems(c: HallService) -> list[api.DeviceProblem]:
    """Suspended devices, offline ones and printers short of paper, worst first."""
    tz = c.cfg.hall.tzinfo
    out: list[api.DeviceProblem] = []

    def problem(d: Any, kind: str, text: str, at: float | None, suspendable: bool = False) -> None:
        out.append(
            api.DeviceProblem(
                client=d.client,
                role=d.role,
                problem=kind,  # type: ignore[arg-type]
                text=f"{d.client} {text}",
                since=hhmm(at, tz),
                suspendable=suspendable and d.client in agents,
                **(_offer(c, d.client, d.role) if suspendable else {}),
            )
        )

    suspended = c.engine.suspended
    roles = suspendable_roles(c)
    agents = set(roles)
    for client, at in suspended.items():
        seen = DeviceSeen(roles.get(client, ""), client)
        problem(seen, "suspended", "已停用: 其请求一律拒绝, 直到恢复", at)
    for d in c.devices.all():
        if d.client in suspended:
            continue
        if d.online is False:
            problem(d, "offline", "离线", d.since)
            continue
        for x in d.health.components if d.health is not None else []:
            paper = PAPER.get(x.status)
            if paper is not None:
                words = "缺纸" if paper == "paper_out" else "打印纸将尽"
                problem(d, paper, f"{x.name} {words}", d.health_at)
            elif not x.ok and x.status == SHARED_ID:
                text = "设备编号重复: 另有客户端使用此编号连接"
                problem(d, "unhealthy", text, d.health_at, suspendable=True)
            elif not x.ok and x.status == NOT_WRITABLE:
                problem(d, "unhealthy", f"{x.name} {NOT_WRITABLE_ZH}", d.health_at)
            elif not x.ok:
                problem(d, "unhealthy", f"{x.name} 异常: {x.status}", d.health_at)
    order = {"suspended": 0, "offline": 1, "paper_out": 2, "unhealthy": 3, "paper_low": 4}
    return sorted(out, key=lambda p: (order[p.problem], p.client))


ROLE_ZH = {"dispenser": "取号机", "window": "窗口机", "board": "显示屏", "supervisor": "主管台"}
# what a refused command was, as the supervisor reads it (coordinator.authz's codes)
REFUSAL_ZH = {
    "wrong_role": "不属于它角色的指令",
    "not_your_window": "别的窗口的指令",
    "not_a_pad_action": "叫号器不会发的主管操作",
    "not_your_service": "不归它发号的业务",
    "priority_not_allowed": "它无权发放的优先号",
    "unknown_device": "本厅未登记设备的指令",
    "not_a_supervisor": "未登记主管台的指令",
    "retained_command": "保留(retained)指令",
    "id_taken": "重复使用别人指令号的指令",
}
# the wire's English (coordinator.authz.refusal_alert, flood_alert): role, client, the rest
_REFUSED = re.compile(r"(\w+) (\S+): (\w+): ")
_FLOOD = re.compile(r"(\w+) (\S+) sends more than ([\d.]+) messages a second")


def _alert_text(c: HallService, item: dict[str, Any]) -> str:
    """The alert's message with names for the codes it carries, in Chinese where the wire
    carries the coordinator's English (a refused command, a flood)."""
    names = {code: s.name for code, s in c.engine.services.items()}
    text = str(item.get("message", ""))
    said = _REFUSED.match(text) if item.get("kind") == "command_refused" else None
    if said is not None:
        role, client, code = said.groups()
        what = REFUSAL_ZH.get(code, "被拒绝的指令")
        known = suspendable_roles(c).get(client)
        who = f"{client} ({ROLE_ZH.get(known, known) if known else '未登记'})"
        claimed = f"以{ROLE_ZH.get(role, role)}身份" if known and role != known else ""
        return f"{who} {claimed}发来{what}, 已拒绝 ({code}): 它自己的软件不会这样发"
    said = _FLOOD.match(text) if item.get("kind") == "client_flood" else None
    if said is not None:
        role, client, rate = said.groups()
        return f"{client} ({ROLE_ZH.get(role, role)}) 每秒发送超过 {rate} 条消息, 多余的已丢弃"
    for code, name in names.items():
        text = text.replace(f"{code} ", f"{name} ")
    window = item.get("window")
    if window is not None and f"{window}号" not in text:
        text = f"{window}号窗口: {text}"
    return text


# alerts that may mean a device's password is in the wrong hands: the desk offers 停用. A
# device's own software never floods, nor sends what its role may not (command_refused is
# raised for those, not for a clerk's key pressed too soon)
SUSPEND_FOR = frozenset(
    {
        "issue_burst",
        "device_shared_id",
        "command_refused",
        "client_flood",
        "offline_while_connected",
        "console_burst",
        "presence_forged",
        "serve_burst",
        "emergency_burst",
    }
)


def desk_alerts(c: HallService, book: AlertBook) -> list[api.DeskAlert]:
    tz, now = c.cfg.hall.tzinfo, c.clock()
    standing = [
        a
        for a in alerts_json(c)
        if a["kind"]
        in (
            "device_offline",
            "device_unhealthy",
            "device_shared_id",
            "wait_over_target",
            "no_window",
        )
    ]
    events = [
        (at, e.model_dump(mode="json", exclude_none=True))
        for at, e in c.alerts
        # the advice box shows these, with their buttons; a queue left without a window
        # is the standing alert while it lasts, and the day report's episode after
        if e.kind not in ("express_advice", "no_window")
    ]
    out = []
    roles = suspendable_roles(c)
    agents = set(roles) - set(c.engine.suspended)
    for s in book.update(standing, events, now):
        item = s.item
        kind = str(item["kind"])
        named = item.get("client") if kind in SUSPEND_FOR else None
        out.append(
            api.DeskAlert(
                key=s.key,
                severity=item["severity"],
                severity_zh=SEVERITY_ZH.get(item["severity"], item["severity"]),
                kind=kind,
                kind_zh=KIND_ZH.get(kind, kind),
                text=_alert_text(c, item),
                count=s.count,
                first=hhmm(s.first, tz),
                last=hhmm(s.last, tz),
                acked_by=s.acked_by,
                acked_at=hhmm(s.acked_at, tz),
                suspend=named if named in agents else None,
                **(_offer(c, named, roles[named]) if named in agents else {}),
            )
        )
    return out


KPIS: list[tuple[str, str, str, str]] = [
    ("issued", "取号", "人", "higher"),
    ("served", "已办结", "人", "higher"),
    ("avg_wait", "平均等候", "分钟", "lower"),
    ("p90_wait", "90% 等候", "分钟", "lower"),
    ("avg_service", "平均办理", "分钟", "lower"),
    ("no_show", "过号", "人", "lower"),
    ("rating", "满意度", "/4", "higher"),
]


def _kpi_value(f: DayFigures | None, key: str) -> float | None:
    if f is None:
        return None
    value: float | None = {
        "issued": float(f.issued),
        "served": float(f.served),
        "no_show": float(f.no_show),
        "avg_wait": None if f.avg_wait_s is None else round(f.avg_wait_s / 60, 1),
        "p90_wait": None if f.p90_wait_s is None else round(f.p90_wait_s / 60, 1),
        "avg_service": None if f.avg_service_s is None else round(f.avg_service_s / 60, 1),
        "rating": f.rating,
    }[key]
    return value


def desk_json(
    c: HallService, alerts: AlertBook, advice: AdviceBook, past: FigureCache
) -> dict[str, Any]:
    """The desk in one answer: queues, function halls, windows, KPIs against yesterday and
    the same weekday last month (at the same hour), device problems, alerts, advice."""
    now, rev, engine, tz = c.clock(), c.queue.seq, c.engine, c.cfg.hall.tzinfo
    stats = engine.stats_state(rev, now)
    busy = busy_s(engine, now)
    zone_names = {z.id: z.name for z in c.cfg.zones}
    services = []
    for code, svc in engine.services.items():
        q = engine.queue_state(code, rev, now)
        by_zone: dict[str, int] = {}
        for w in engine.windows.values():
            if w.status is WindowStatus.OPEN and code in w.skills:
                by_zone[w.zone] = by_zone.get(w.zone, 0) + 1
        k = stats.per_service.get(code)
        services.append(
            api.DeskService(
                code=code,
                name=svc.name,
                waiting=q.waiting,
                oldest_wait_min=None if q.oldest_wait_s is None else round(q.oldest_wait_s / 60, 1),
                eta_min=q.eta_min,
                wait_text=q.wait.zh() if q.wait is not None and q.waiting else None,
                target_min=svc.wait_target_min,
                windows=sum(by_zone.values()),
                windows_by_zone=by_zone,
                waiting_by_site=(
                    {site: engine.waiting(code, k) for k, site in enumerate(engine.sites)}
                    if len(engine.sites) > 1
                    else {}
                ),
                # one hall-wide range read "1 分钟内" while the branch, no window open,
                # had 225 waiting (found by a supervisor): each building's own
                wait_by_site=(
                    {
                        site: engine.eta_range(None, code, now, k).zh()
                        for k, site in enumerate(engine.sites)
                        if engine.waiting(code, k) or engine.serving(code, k)
                    }
                    if len(engine.sites) > 1
                    else {}
                ),
                over_target=q.oldest_wait_s is not None
                and q.oldest_wait_s > svc.wait_target_min * 60.0,
                issued=k.issued if k else 0,
                served=k.served if k else 0,
            )
        )
    windows = []
    for n, w in engine.windows.items():
        k = stats.per_window.get(str(n))
        status = w.status.value
        actions: list[Any] = {
            "open": ["pause", "close"],
            "paused": ["resume", "close"],
            "closed": ["open"],
        }[status]
        if w.current is not None:  # nothing else ends it if its pad cannot
            actions = [*actions, "finish"]
        windows.append(
            api.DeskWindow(
                window=n,
                zone=w.zone,
                status=w.status,
                ticket=w.current.number if w.current else None,
                service=w.current.service if w.current else None,
                since=hhmm(w.since, tz),
                closing=w.closing,
                skills=dict(w.skills),
                served=k.served if k else 0,
                busy_min=round(busy.get(n, 0.0) / 60, 1),
                actions=actions,
            )
        )
    zones = []
    for zid in [z.id for z in c.cfg.zones] + sorted({w.zone for w in windows} - set(zone_names)):
        ws = [w for w in windows if w.zone == zid]
        if not ws:
            continue
        zones.append(
            api.DeskZone(
                id=zid,
                name=zone_names.get(zid, zid),
                site=next((z.site for z in c.cfg.zones if z.id == zid), None),
                open=sum(w.status == "open" for w in ws),
                paused=sum(w.status == "paused" for w in ws),
                closed=sum(w.status == "closed" for w in ws),
                serving=sum(w.ticket is not None for w in ws),
                busy_min=round(sum(w.busy_min for w in ws), 1),
                served=sum(w.served for w in ws),
            )
        )
    today = stats.day
    yesterday, last_month = today - dt.timedelta(days=1), same_weekday_last_month(today)
    local = dt.datetime.fromtimestamp(now, tz)

    def cutoff(day: dt.date) -> float:
        return dt.datetime.combine(day, local.timetz()).timestamp()

    figures_today = day_figures(today, engine.tickets, tz)
    compare = {}
    for key, day in (("yesterday", yesterday), ("last_month", last_month)):
        past.warm(day)
        compare[key] = past.ready(day, cutoff(day))
    kpis = [
        api.KpiCompare(
            key=key,
            label=label,
            unit=unit,
            better=better,  # type: ignore[arg-type]
            today=_kpi_value(figures_today, key),
            yesterday=_kpi_value(compare["yesterday"], key),
            last_month=_kpi_value(compare["last_month"], key),
        )
        for key, label, unit, better in KPIS
    ]
    advice.take(getattr(c, "advice", ()), now)
    return api.Desk(
        hall=_header(c),
        rev=rev,
        now=_iso(now, tz),
        services=services,
        zones=zones,
        windows=windows,
        service_names={code: s.name for code, s in engine.services.items()},
        kpis=kpis,
        compare_days={"yesterday": yesterday.isoformat(), "last_month": last_month.isoformat()},
        devices=_device_problems(c),
        alerts=desk_alerts(c, alerts),
        advice=[advice.view(engine, e, now) for e in reversed(advice.entries.values())],
        void_minutes=suspension.VOID_MINUTES,
        logins=_logins(c),
    ).model_dump(mode="json")
