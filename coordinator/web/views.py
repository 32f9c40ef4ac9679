"""JSON views of the hall, built from the engine at the moment of the request.

Each view fills its response model (``models.py``, which the OpenAPI document is made
from) and returns its JSON. The wire models already say what a window, queue, board and
KPI look like, so the views add only what a person needs beside them (names, materials,
a ticket's place in line).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from coordinator.web import models as api
from coordinator.web.devices import DeviceSeen
from coordinator.web.interface import HallService
from hallq.messages import TicketState

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
    day = c.engine.day
    return api.HallHeader(
        id=c.cfg.hall.id,
        name=c.cfg.hall.name,
        name_en=c.cfg.hall.name_en,
        day=day.isoformat() if day else None,
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


def ticket_json(c: HallService, number: str) -> dict[str, Any] | None:
    t = c.engine.by_number.get(number)
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
        window=t.window if t.state in (TicketState.CALLED, TicketState.SERVING) else None,
        directed_window=t.directed,
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
    for d in c.devices.unhealthy():
        components = d.health.components if d.health is not None else []
        bad = ", ".join(f"{x.name}:{x.status}" for x in components if not x.ok)
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
            minutes = svc["queue"]["oldest_wait_s"] / 60.0
            out.append(
                {
                    "severity": "warning",
                    "kind": "wait_over_target",
                    "service": code,
                    "at": _iso(now, tz),
                    "message": f"{svc['name']} 最长等候 {minutes:.0f} 分钟, "
                    f"超过目标 {svc['wait_target_min']:g} 分钟",
                }
            )
    for at, event in c.alerts:
        item = event.model_dump(mode="json", exclude_none=True)
        item.pop("v", None)
        item.update(at=_iso(at, tz))
        out.append(item)
    return [api.Alert.model_validate(item).model_dump(mode="json") for item in out]


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
