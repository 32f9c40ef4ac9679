"""The coordinator's HTTP server: routes, the live stream, start and stop.

aiohttp runs in the coordinator's own event loop, so handlers read the engine directly
(no copies, no second process) and supervisor commands go through
:meth:`Coordinator.execute`, the path MQTT commands take.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import io
import ipaddress
import logging
import ssl
from pathlib import Path
from typing import Any, TypeVar, cast

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

from coordinator import suspension
from coordinator.eventlog import EventLog
from coordinator.shipmark import lag, mark_path, read_mark
from coordinator.web import desk, views
from coordinator.web import models as api
from coordinator.web.appointments import AddressLimiter, BookingError, booking_json
from coordinator.web.audit import AuditLog, default_audit_path
from coordinator.web.auth import (
    COOKIE,
    SAFE_METHODS,
    Gate,
    Session,
    lockout_message,
    same_origin,
)
from coordinator.web.boards import boards, render_png
from coordinator.web.desk import AUDIT_ZH, AdviceBook, AlertBook, error_zh, no_change
from coordinator.web.figures import FigureCache
from coordinator.web.interface import HallService
from coordinator.web.openapi import openapi_document
from coordinator.web.stream import StreamHub, is_close, sse_frame
from hallq import messages as m
from hallq.id_number import hash_id_number, hash_phone, id_number_problem, normalise_phone
from hallq.logsetup import redact

log = logging.getLogger("hallq.web")

STATIC = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0
SUPERVISOR_ACTIONS = frozenset({"open", "close", "pause", "resume", "set_skills", "finish"})

COORDINATOR: web.AppKey[HallService] = web.AppKey("coordinator", object)  # type: ignore[arg-type]
HUB: web.AppKey[StreamHub] = web.AppKey("hub", StreamHub)
GATE: web.AppKey[Gate] = web.AppKey("gate", Gate)
AUDIT: web.AppKey[AuditLog] = web.AppKey("audit", AuditLog)
# where the gate leaves the request's session (typed keys exist from aiohttp 3.14)
SESSION: Any = web.RequestKey("session", Session) if hasattr(web, "RequestKey") else "hallq.session"
# pages and scripts come from here only; no inline script anywhere, frames refused
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}
LIMITER: web.AppKey[AddressLimiter] = web.AppKey("limiter", AddressLimiter)
ALERTS: web.AppKey[AlertBook] = web.AppKey("alerts", AlertBook)
ADVICE: web.AppKey[AdviceBook] = web.AppKey("advice", AdviceBook)
FIGURES: web.AppKey[FigureCache] = web.AppKey("figures", FigureCache)


def _c(request: web.Request) -> HallService:
    return request.app[COORDINATOR]


_Sent = TypeVar("_Sent", web.StreamResponse, web.HTTPException)


def _error(status: int, code: str, message: str) -> web.Response:
    """An error answer; what it quotes of the request is ID-redacted (a ticket number
    field is where a taxpayer might type their ID-card number)."""
    body = api.Error(error=api.ErrorDetail(code=code, message=redact(message)))
    return web.json_response(body.model_dump(mode="json"), status=status)


def _json(data: Any) -> web.Response:
    """A view's JSON (its model already dumped), or a response model, never cached."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [x.model_dump(mode="json") if isinstance(x, BaseModel) else x for x in data]
    return web.json_response(data, headers={"Cache-Control": "no-store"})


# --- public API ---------------------------------------------------------------------------


async def hall(request: web.Request) -> web.Response:
    return _json(views.public_json(_c(request)))


async def health(request: web.Request) -> web.Response:
    """For probes and ``hallq doctor``: 200 while the broker link is up, else 503."""
    c = _c(request)
    connected = c.session is not None and c.session.connected
    body = api.Health(
        ok=connected,
        broker_connected=connected,
        seq=c.queue.seq,
        day=c.engine.day.isoformat() if c.engine.day else None,
        stream_clients=request.app[HUB].clients,
        city_link=city_link(c.queue.log),
    )
    return web.json_response(
        body.model_dump(mode="json"),
        status=200 if connected else 503,
        headers={"Cache-Control": "no-store"},
    )


def city_link(log: EventLog) -> api.CityLink | None:
    """The shipper's lag behind this log (None: no shipper has run here). Read from the mark
    the shipper leaves beside the log: the coordinator never talks to the city itself."""
    try:
        mark = read_mark(mark_path(log.path))
    except ValueError as exc:
        return api.CityLink(error=str(exc))
    return None if mark is None else api.CityLink(**lag(log, mark).as_json())


async def ticket(request: web.Request) -> web.Response:
    found = views.ticket_json(_c(request), request.match_info["number"])
    if found is None:
        return _error(404, "unknown_ticket", f"今天没有 {request.match_info['number']} 号")
    return _json(found)


async def nearby(request: web.Request) -> web.Response:
    """Quieter halls for the same business (``coordinator.nearby``), for the ticket and
    booking pages; empty while the city link is down."""
    service = request.query.get("service", "")
    found = views.nearby_json(_c(request), service, request.query.get("ticket") or None)
    if found is None:
        return _error(404, "unknown_service", f"no service {service[:40]!r} in this hall")
    return _json(found)


async def internal_hall(request: web.Request) -> web.Response:
    return _json(views.summary_json(_c(request)))


async def devices(request: web.Request) -> web.Response:
    return _json(views.devices_json(_c(request)))


async def alerts(request: web.Request) -> web.Response:
    return _json(views.alerts_json(_c(request)))


async def board_list(request: web.Request) -> web.Response:
    cfg = _c(request).cfg
    zones = {z.id: z for z in cfg.zones}
    items = []
    for b in boards(cfg):
        z = zones.get(b.zone) if b.zone is not None else None  # a taxpayer reads its hall,
        # not its device id; a zone-less board of a building shows that building's halls
        scope = cfg.scope_zones(b.id) if z is None else None
        covers = [zones[i] for i in zones if scope and i in scope]
        caption = "全厅" if not covers else "、".join(x.name for x in covers)
        caption_en = "Whole hall" if not covers else ", ".join(x.name_en or x.name for x in covers)
        items.append(
            api.BoardItem(
                id=b.id,
                zone=b.zone,
                caption=z.name if z is not None else caption,
                caption_en=(z.name_en or z.name) if z is not None else caption_en,
                width=b.width,
                height=b.height,
                png=f"/api/boards/{b.id}.png",
            )
        )
    return _json(items)


async def board_png(request: web.Request) -> web.Response:
    c = _c(request)
    try:
        png = render_png(c.cfg, request.match_info["board"], c.board_state(c.queue.seq))
    except ImportError as exc:  # the displays package is optional for the API
        return _error(503, "renderer_unavailable", f"board renderer not available: {exc}")
    if png is None:
        return _error(404, "unknown_board", f"no board {request.match_info['board']!r}")
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "no-store"})


async def comfort_png(request: web.Request) -> web.Response:
    c = _c(request)
    if c.forecast is None:
        return _error(404, "no_forecast", "no comfort index for this hall yet (too little history)")
    from coordinator.forecast.export import png_bytes

    return web.Response(
        body=png_bytes(c.forecast),
        content_type="image/png",
        headers={"Cache-Control": "max-age=600"},
    )


async def comfort(request: web.Request) -> web.Response:
    """The comfort index as data, from today: the retained ``state/comfort`` message's
    payload, for the bureau's WeChat publisher or anything else that fetches over HTTP."""
    c = _c(request)
    if c.forecast is None:
        return _error(404, "no_forecast", "no comfort index for this hall yet (too little history)")
    today = c.cfg.hall.business_day(c.clock())
    state = c.forecast.comfort_state(c.queue.seq, today)
    return web.json_response(text=state.model_dump_json(), headers={"Cache-Control": "max-age=600"})


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document(_c(request).cfg))


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: a ``hello`` with the current revision, then every change."""
    hub = request.app[HUB]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    queue = hub.open()
    try:
        await response.prepare(request)
        await response.write(sse_frame("hello", {"rev": _c(request).queue.seq}))
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    item = await queue.get()
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if is_close(item):
                break
            await response.write(sse_frame("change", item))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.close(queue)
    return response


# --- appointments ----------------------------------------------------------------------


def _day(text: object, c: HallService) -> dt.date:
    if not text:
        return c.cfg.hall.business_day(c.clock())
    try:
        return dt.date.fromisoformat(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a JSON body may give a number or a list
        raise BookingError("bad_day", f"day must be YYYY-MM-DD, got {text!r}") from None


async def slots(request: web.Request) -> web.Response:
    c = _c(request)
    service = request.query.get("service", "")
    try:
        day = _day(request.query.get("day"), c)
        found = c.bookings.slots(service, day)
    except BookingError as exc:
        return _error(400, exc.code, str(exc))
    now, checked_in = c.clock(), c.checked_in()
    capacity = c.cfg.coordinator.appointment_capacity
    days = c.bookings.bookable_days(now)
    return _json(
        api.Slots(
            service=service,
            day=day.isoformat(),
            capacity=capacity,
            days=[d.isoformat() for d in days],
            slots=[
                api.Slot(
                    slot=s.label,
                    start=s.label[:5],
                    free=max(0, capacity - c.bookings.taken(service, s, now, checked_in)),
                    open=s.end > now and day in days,
                    comfort=_comfort_at(c, day, s.label[:5]),
                )
                for s in found
            ],
        )
    )


def _comfort_at(c: HallService, day: dt.date, hhmm: str) -> api.ComfortLevel | None:
    """The comfort level forecast for the half hour starting ``hh:mm`` (None when there is
    no index, or it does not reach that day): a booking shows how busy the hall will be."""
    if c.forecast is None:
        return None
    hour, minute = int(hhmm[:2]), int(hhmm[3:5])
    try:
        level: str = c.forecast.slot_level(day, hour * 60 + minute // 30 * 30)
    except ValueError:  # outside the forecast's days, or a half hour it has as closed
        return None
    return cast("api.ComfortLevel", level)  # the Slot model checks it is one of the three


def _person(body: dict[str, Any], c: HallService, *, required: bool) -> str | None:
    """The keyed hash of the ``id_number`` or ``phone`` in ``body`` (the same hash the
    dispenser's ID reader makes); the number itself goes no further than this function."""
    id_number = str(body.get("id_number") or "").strip().upper()
    phone = str(body.get("phone") or "").strip()
    if not id_number and not phone:
        if required:
            raise BookingError(
                "identity_required", "请填写身份证号或手机号\nEnter your ID or mobile number"
            )
        return None
    key = c.cfg.security.id_hash_key
    if key is None:
        raise BookingError(
            "real_name_unavailable", "本厅暂未开通实名预约\nReal-name booking is not set up here"
        )
    if id_number:
        problem = id_number_problem(id_number)
        if problem is not None:
            raise BookingError("bad_id_number", f"身份证号无效\nInvalid ID number: {problem}")
        return hash_id_number(id_number, key)
    digits = normalise_phone(phone)
    if digits is None:
        raise BookingError("bad_phone", "手机号无效\nNot an 11-digit mobile number")
    return hash_phone(digits, key)


async def _body(request: web.Request, model: type[BaseModel]) -> dict[str, Any]:
    """The JSON body, checked against the model the OpenAPI document shows for it; the
    refusal names the field and never quotes its value (it may be an ID number)."""
    try:
        body = await request.json()
    except ValueError:
        raise BookingError("invalid_json", "body must be JSON") from None
    if not isinstance(body, dict):
        raise BookingError("invalid_json", "body must be a JSON object")
    try:
        model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "body"
        code = "bad_day" if field == "day" else "invalid_body"  # bad_day: as before
        raise BookingError(code, f"{field}: {err['msg']}") from None
    return body


def _status(exc: BookingError) -> int:
    return {
        "slot_full": 409,
        "person_limit": 409,
        "checked_in": 409,
        "unknown_appointment": 404,
        "rate_limited": 429,
        "real_name_unavailable": 503,
    }.get(exc.code, 400)


async def _book(request: web.Request, booked_by: str) -> tuple[web.Response, Any]:
    """The answer, and the booking made (None when refused)."""
    c = _c(request)
    taxpayer = booked_by == "taxpayer"
    try:
        if taxpayer:
            request.app[LIMITER].take(request.remote or "?", c.clock())
        body = await _body(request, api.BookingRequest)
        person = _person(body, c, required=taxpayer)
        service, start_text = str(body.get("service", "")), str(body.get("start", ""))
        day = _day(body.get("day"), c)
        slot = c.bookings.slot_at(service, day, start_text)
        note = body.get("note") if not taxpayer else None
        booking = await c.book_appointment(
            service,
            day,
            slot.start,
            booked_by=booked_by,
            note=redact(str(note))[:100] if note else None,
            person=person,
        )
    except BookingError as exc:
        return _error(_status(exc), exc.code, str(exc)), None
    log.info("appointment %s booked by %s: %s %s", booking.code, booked_by, service, slot.label)
    data = booking_json(booking, c.cfg, c.clock(), c.checked_in())
    return web.json_response(
        api.Booked(**data.model_dump()).model_dump(mode="json"), status=201
    ), booking


async def book(request: web.Request) -> web.Response:
    return (await _book(request, "taxpayer"))[0]


async def appointment(request: web.Request) -> web.Response:
    c = _c(request)
    found = c.bookings.get(request.match_info["code"].upper())
    if found is None:
        return _error(404, "unknown_appointment", "没有这个预约码")
    return _json(booking_json(found, c.cfg, c.clock(), c.checked_in()))


async def cancel_appointment(request: web.Request) -> web.Response:
    """Cancel with the code and the same ID or phone number as proof."""
    c = _c(request)
    try:
        request.app[LIMITER].take(request.remote or "?", c.clock())
        person = _person(await _body(request, api.CancelRequest), c, required=True)
        assert person is not None
        booking = await c.cancel_appointment(request.match_info["code"].upper(), person)
    except BookingError as exc:
        return _error(_status(exc), exc.code, str(exc))
    log.info("appointment %s cancelled", booking.code)
    return _json(booking_json(booking, c.cfg, c.clock(), c.checked_in()))


def qr_svg(text: str) -> bytes:
    """A standalone SVG document (an ``<img>`` needs the namespace) of ``text`` as QR."""
    import segno

    out = io.BytesIO()
    segno.make_qr(text, error="m").save(
        out, kind="svg", scale=8, border=4, dark="#111", xmldecl=False
    )
    return out.getvalue()


async def appointment_qr(request: web.Request) -> web.Response:
    """The booking code as a QR code: shown on the taxpayer's phone, read by the
    dispenser's scanner, which checks the booking in with the next key press."""
    c = _c(request)
    found = c.bookings.get(request.match_info["code"].upper())
    if found is None:
        return _error(404, "unknown_appointment", "没有这个预约码")
    return web.Response(
        body=qr_svg(found.code),
        content_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=86400"},
    )


# --- supervisor ------------------------------------------------------------------------


def _session(request: web.Request) -> Session:
    session: Session = request[SESSION]  # the middleware let the request through
    return session


def _client(request: web.Request) -> str:
    """The client's address: the TCP peer, or what a trusted proxy says it forwarded for
    (the last X-Forwarded-For entry, the one that proxy added)."""
    peer = request.remote or "?"
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and peer in _c(request).cfg.web.trusted_proxies:
        last = forwarded.rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return peer
    return peer


def _secure(request: web.Request) -> bool:
    """Whether the browser reached us over TLS: ours, or a trusted proxy's."""
    if request.secure:
        return True
    return (
        request.remote in _c(request).cfg.web.trusted_proxies
        and request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    )


def _audit(
    request: web.Request,
    action: str,
    *,
    target: str | None = None,
    ok: bool = True,
    result: str | None = None,
    detail: dict[str, Any] | None = None,
    session: Session | None = None,
    user: str | None = None,
) -> None:
    session = session or request.get(SESSION)
    request.app[AUDIT].record(
        user or (session.user if session else "?"),
        action,
        role=session.role if session else None,
        target=target,
        ok=ok,
        result=result,
        detail=detail,
        client=_client(request),
    )


def _guarded(path: str) -> bool:
    """The desk's pages (``/supervisor`` and anything under it) and API."""
    return (
        path == "/supervisor"
        or path.startswith(("/supervisor/", "/api/supervisor/"))
        or path == "/api/logout"
    )


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Same-origin check on every state-changing request; a session (and, to change
    anything, its CSRF token and the supervisor role) on the desk's routes."""
    unsafe = request.method not in SAFE_METHODS
    if unsafe and not same_origin(request, _c(request).cfg.hall.public_url):
        return _secured(_error(403, "bad_origin", "请求来源不是本站 cross-site request refused"))
    if _guarded(request.path):
        g = request.app[GATE]
        session = g.session_of(request)
        if session is None:
            if not request.path.startswith("/api/"):  # a desk page: back to it after login
                raise _secured(web.HTTPSeeOther(f"/login?next={request.path}"))
            return _secured(_error(401, "unauthorized", "请先登录 login required"))
        request[SESSION] = session
        if unsafe and not g.csrf_ok(request, session):
            _audit(request, "denied", target=request.path, ok=False, result="csrf")
            return _secured(_error(403, "csrf", "缺少或错误的 CSRF 令牌 CSRF token missing"))
        if unsafe and not session.may_act and request.path != "/api/logout":
            _audit(request, "denied", target=request.path, ok=False, result="viewer")
            return _secured(_error(403, "forbidden", "只读账号不能操作 a viewer may only look"))
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        raise _secured(exc) from None
    return _secured(response)


def _secured(response: _Sent) -> _Sent:
    if getattr(response, "prepared", False):  # a stream: its headers are already sent
        return response
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def login(request: web.Request) -> web.Response:
    c, g = _c(request), request.app[GATE]
    if request.content_type != "application/json":
        return _error(415, "json_required", "body must be JSON")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "invalid_json", "body must be JSON")
    if not isinstance(body, dict):
        return _error(400, "invalid_json", "body must be a JSON object")
    name = str(body.get("user", "")).strip()[:64]
    password = str(body.get("password", ""))[:1024]
    client = _client(request)
    outcome = await g.attempt(name, password, client)
    if outcome.user is not None:
        session = g.sessions.open(outcome.user, client)
        _audit(request, "login", session=session)
        log.info("desk login: %s (%s) from %s", session.user, session.role, client)
        response = _json(_session_json(g, session))
        response.set_cookie(
            COOKIE,
            session.token,
            httponly=True,
            samesite="Strict",
            secure=_secure(request),
            path="/",
        )
        return response
    until = outcome.locked_until
    if outcome.failed:
        known = g.directory.get(name) is not None
        # an unknown name is not stored: it is often a password typed in the wrong box
        _audit(
            request,
            "login",
            ok=False,
            user=name if known else "(unknown)",
            result="locked" if until else "bad_credentials",
        )
        if until is None:
            return _error(401, "bad_credentials", "用户名或密码错误 wrong user name or password")
        log.warning(
            "desk login locked for %s / %s after repeated failures",
            name if known else "(unknown user)",
            client,
        )
    assert until is not None
    now = g.clock()
    response = _error(429, "locked", lockout_message(until, now, c.cfg))
    response.headers["Retry-After"] = str(max(1, int(until - now + 0.999)))
    return response


def _session_json(g: Gate, session: Session) -> api.WhoAmI:
    return api.WhoAmI(
        user=session.user,
        role=cast(Any, session.role),
        csrf=session.csrf,
        may_act=session.may_act,
        expires_at=g.sessions.expires_at(session),
    )


async def logout(request: web.Request) -> web.Response:
    session = _session(request)
    request.app[GATE].sessions.close(session.token)
    _audit(request, "logout")
    response = _json(api.Done())
    response.del_cookie(COOKIE, path="/")
    return response


async def session_info(request: web.Request) -> web.Response:
    g = request.app[GATE]
    session = g.session_of(request)
    if session is None:
        return _error(401, "unauthorized", "请先登录 login required")
    return _json(_session_json(g, session))


async def audit_log(request: web.Request) -> web.Response:
    if not _session(request).may_act:
        return _error(403, "forbidden", "审计日志仅值班长可见 supervisors only")
    try:
        limit = min(500, max(1, int(request.query.get("limit", "100"))))
        before = int(request.query["before"]) if "before" in request.query else None
        console = {None: None, "0": False, "1": True}[request.query.get("console")]
    except (ValueError, KeyError):
        return _error(400, "bad_query", "limit and before must be integers, console 0 or 1")
    from coordinator.web.report import target_zh

    cfg = _c(request).cfg
    tz = cfg.hall.tzinfo  # the hall's, not the browser's: a remote desk too
    names = {s.code: s.name for s in cfg.services}
    return _json(
        [
            api.AuditEntry(
                **e,
                action_zh=AUDIT_ZH.get(e["action"], e["action"]),
                target_zh=target_zh(e["target"], names, e.get("detail")),
                when=f"{dt.datetime.fromtimestamp(e['at'], tz):%m-%d %H:%M:%S}",
                result_zh=None if e["ok"] or not e["result"] else error_zh(e["result"], ""),
            )
            for e in request.app[AUDIT].recent(limit, before, console)
        ]
    )


async def _no_icon(_request: web.Request) -> web.Response:
    """Browsers ask every page's /favicon.ico: no content, rather than a 404 a log shows."""
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


def _refusal(status: int, code: str, message: str, command_id: str = "") -> web.Response:
    """A refused desk command: the machine-readable code, the message in Chinese."""
    body = api.CommandResult(
        ok=False, error=m.Rejection(code=code, message=message[:200]), seq=-1, id=command_id
    )
    return web.json_response(body.model_dump(mode="json"), status=status)


async def _window_command(
    request: web.Request, window: int, body: dict[str, Any]
) -> tuple[web.Response, str | None]:
    """One supervisor command for a window, checked, refused in Chinese or executed through
    the coordinator (logged and published like a pad's), and audited. Also the path an
    applied piece of advice takes. The code refused with, None when done."""
    c = _c(request)
    target = f"window {window}"
    action = body.get("action")
    if not isinstance(action, str) or action not in SUPERVISOR_ACTIONS:  # [] is unhashable
        _audit(request, "window", target=target, ok=False, result="bad_action")
        refusal = "不支持的操作 (开窗/暂停/恢复/关窗/改业务/办结)"
        return _error(400, "bad_action", refusal), "bad_action"
    try:
        command = m.adapter(m.WindowCommand).validate_python({**body, "window": window})
    except ValidationError as exc:
        field, _message = m.describe(exc, tagged=True)
        _audit(request, action, target=target, ok=False, result="invalid_command")
        code = (
            "no_skills"
            if field.startswith("skills") and not body.get("skills")
            else ("bad_weight" if field.startswith("skills") else "invalid_command")
        )
        return _error(400, code, f"{error_zh(code, '', window)} ({field})"), code
    skills = command.skills if command.action == "set_skills" else None
    same = no_change(c.engine, window, command.action, skills)
    if same is not None:
        return _refusal(409, same[0], same[1], command.id), same[0]
    detail = {"skills": command.skills} if command.action == "set_skills" else None
    return await _desk_execute(request, command, target, window, detail)


async def _desk_execute(
    request: web.Request,
    command: Any,
    target: str,
    window: int,
    detail: dict[str, Any] | None,
) -> tuple[web.Response, str | None]:
    """A desk's window command through the coordinator (logged and published like a
    pad's), audited against ``target``, answered with the engine's refusal in Chinese.
    The code refused with, None when done."""
    user = _session(request).user
    done = await _c(request).execute("window", "supervisor", user, command, reply=False)
    ok, error = bool(done.record["ok"]), done.record["error"]
    result_code = None if error is None else error["code"]
    _audit(request, command.action, target=target, ok=ok, result=result_code, detail=detail)
    log.info("supervisor %s: %s %s -> %s", user, command.action, target, result_code or "ok")
    if error is not None:
        error = {
            "code": error["code"],
            "message": error_zh(error["code"], error["message"], window),
        }
    result = api.CommandResult(ok=ok, error=error, seq=done.seq, id=command.id)
    response = web.json_response(result.model_dump(mode="json"), status=200 if ok else 409)
    return response, result_code


async def supervisor_command(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        window = int(request.match_info["window"])
    except ValueError:
        return _error(400, "invalid_json", "请求格式错误: 须为 JSON, 窗口号须为数字")
    if not isinstance(body, dict):
        return _error(400, "invalid_json", "请求格式错误: 须为 JSON 对象")
    return (await _window_command(request, window, body))[0]


async def supervisor_ticket(request: web.Request) -> web.Response:
    """The help desk's work on one ticket: a missed one back in its queue (its page sends
    its holder "to the help desk to rejoin", and the desk could not), a waiting one sent to
    another window or service, or cancelled. Executed as the window command a console
    would send, through the coordinator, and audited."""
    c = _c(request)
    number = views.typed_number(c, request.match_info["number"][:16])
    target = f"ticket {number}"
    try:
        req = api.TicketCommand.model_validate(await request.json())
    except (ValueError, ValidationError):
        _audit(request, "ticket", target=target, ok=False, result="bad_action")
        return _error(400, "bad_action", "不支持的操作 (恢复排队/转移/取消)")
    t = c.engine.by_number.get(number)
    if t is None:
        return _refusal(404, "unknown_ticket", f"今天没有 {number} 号")
    # a command names a window; for a named ticket it only says where it was acted on
    window = req.to_window or t.window or min(c.engine.windows)
    fields = req.model_dump(exclude_none=True, exclude={"action"})
    action = req.action
    try:
        command = m.adapter(m.WindowCommand).validate_python(
            {"action": action, "window": window, "ticket": number, **fields}
        )
    except ValidationError as exc:
        field, _message = m.describe(exc, tagged=True)
        _audit(request, action, target=target, ok=False, result="invalid_command")
        return _error(400, "invalid_command", f"请求格式错误 ({field})")
    return (await _desk_execute(request, command, target, window, fields or None))[0]


async def supervisor_device(request: web.Request) -> web.Response:
    """Suspend a device whose password is in the wrong hands (every command of its login
    refused until resumed; a stolen dispenser's recent fake tickets voided with it), or
    resume it. Logged in the event log like a window command, and audited."""
    c, client = _c(request), request.match_info["client"][:64]  # (an id is shorter)
    target = f"device {client}"
    try:
        req = api.DeviceRequest.model_validate(await request.json())
    except (ValueError, ValidationError):
        _audit(request, "device", target=target, ok=False, result="invalid_body")
        return _error(400, "invalid_body", "请求格式错误: action 为 suspend 或 resume")
    since = c.clock() - req.void_minutes * 60 if req.void_minutes else None
    command = suspension.DeviceCommand(
        kind="device",
        action=req.action,
        client=client,
        void_since=None if since is None else dt.datetime.fromtimestamp(since, dt.UTC),
    )
    user = _session(request).user
    done = await c.execute("device", "supervisor", user, command, reply=False)
    ok, error = bool(done.record["ok"]), done.record["error"]
    voided = len(done.outcome.events) if ok and done.outcome is not None else 0
    paused = sorted(done.outcome.windows) if ok and done.outcome is not None else []
    detail: dict[str, Any] = {"void_minutes": req.void_minutes, "voided": voided} if voided else {}
    if paused:
        detail["paused"] = paused
    _audit(
        request,
        f"{req.action}_device",
        target=target,
        ok=ok,
        result=None if ok else error["code"],
        detail=detail or None,
    )
    log.warning(
        "supervisor %s: %s device %s -> %s%s",
        user,
        req.action,
        client,
        "ok" if ok else error["code"],
        f" ({voided} waiting ticket(s) voided)" if voided else "",
    )
    result = api.DeviceResult(
        ok=ok, error=error, seq=done.seq, id=command.id, voided=voided, paused=paused
    )
    return web.json_response(result.model_dump(mode="json"), status=200 if ok else 409)


async def supervisor_impact(request: web.Request) -> web.Response:
    """What an action would do to the hall, for the desk's confirmation; changes nothing."""
    c = _c(request)
    try:
        window = int(request.match_info["window"])
        body = await request.json()
        req = api.ImpactRequest.model_validate(body)
    except (ValueError, ValidationError):
        return _error(400, "invalid_body", "请求格式错误: action 与 skills")
    return _json(desk.impact(c.engine, window, req.action, req.skills, c.clock()))


async def supervisor_desk(request: web.Request) -> web.Response:
    c, app = _c(request), request.app
    view = views.desk_json(c, app[ALERTS], app[ADVICE], app[FIGURES])
    return _json({**view, "audit_last": app[AUDIT].last_id()})


def _audit_console(audit: AuditLog, client: str, command: Any, record: dict[str, Any]) -> None:
    """A supervisor console's command over MQTT, kept in the event log: in the desk's audit
    log too, where the desk's own actions are (whose hands a console's password is in is
    a question asked there)."""
    detail = {
        key: value
        for key in ("ticket", "to_service", "to_window", "skills")
        if (value := getattr(command, key, None)) is not None
    }
    ok = bool(record["ok"])
    audit.record(
        client,
        command.action,
        role="console",
        target=f"window {command.window}",
        ok=ok,
        result=None if ok else record["error"]["code"],
        detail=detail or None,
        client="mqtt",
        synced=False,
    )


async def supervisor_ack(request: web.Request) -> web.Response:
    """A named supervisor acknowledges an alert (audited); it stays acknowledged until it
    happens again."""
    c = _c(request)
    try:
        req = api.AckRequest.model_validate(await request.json())
    except (ValueError, ValidationError):
        return _error(400, "invalid_body", "请求格式错误: 需要告警的 key")
    user = _session(request).user
    seen = request.app[ALERTS].ack(req.key, user, c.clock())
    _audit(
        request,
        "ack",
        target=f"alert {req.key}",
        ok=seen is not None,
        result=None if seen else "unknown_alert",
        # what a restart needs to keep it acknowledged (hall-clock times)
        detail=None
        if seen is None
        else {"at": seen.acked_at, "last": seen.acked_last, "standing": seen.standing},
    )
    if seen is None:
        return _error(404, "unknown_alert", "这条告警已不存在 (情况已恢复)")
    return _json(api.Done())


async def supervisor_advice(request: web.Request) -> web.Response:
    """Apply (the switch as logged supervisor set_skills commands), dismiss, or restore
    (switch the windows back) a piece of express-window advice."""
    c, book = _c(request), request.app[ADVICE]
    book.take(getattr(c, "advice", ()), c.clock())
    entry = book.entries.get(request.match_info["id"])
    verb = request.match_info["verb"]
    if entry is None:
        return _error(404, "unknown_advice", "没有这条建议")
    allowed = {"apply": ("open",), "dismiss": ("open",), "restore": ("applied",)}
    if verb not in allowed:
        return _error(404, "unknown_advice", "没有这个操作")
    if entry.state not in allowed[verb]:
        state = {
            "applied": "已采纳",
            "dismissed": "已忽略",
            "expired": "已过期",
            "restored": "已恢复",
            "open": "未处理",
        }[entry.state]
        return _error(409, "advice_" + entry.state, f"这条建议{state}")
    user, a = _session(request).user, entry.advice
    target = f"advice {entry.id} {a.service}"
    if verb == "dismiss":
        entry.state, entry.by, entry.acted_at = "dismissed", user, c.clock()
        _audit(request, "advice_dismiss", target=target, detail=book.record(entry))
        return _json(book.view(c.engine, entry, c.clock()))
    bodies = (
        [(w, {"action": "set_skills", "skills": {a.service: 1.0}}) for w in a.windows]
        if verb == "apply"
        else [(w, {"action": "set_skills", "skills": a.restore[w]}) for w in a.windows]
    )
    failed = []
    for w, body in bodies:
        _response, refused = await _window_command(request, w, body)
        if refused not in (None, "no_change"):
            failed.append(w)
    done = not failed or len(failed) < len(bodies)
    if done and verb == "apply":
        entry.state, entry.by, entry.acted_at = "applied", user, c.clock()
    elif done:
        entry.state, entry.restored_by = "restored", user
    _audit(
        request,
        f"advice_{verb}",
        target=target,
        ok=not failed,
        detail={**book.record(entry), "failed": failed, "applied": done},
    )
    if not done:
        return _error(409, "advice_failed", f"{'、'.join(f'{w}号' for w in failed)}窗口未能切换")
    return _json(book.view(c.engine, entry, c.clock()))


async def supervisor_invite(request: web.Request) -> web.Response:
    response, booking = await _book(request, f"supervisor/{_session(request).user}")
    if booking is not None:
        _audit(
            request,
            "invite",
            target=f"appointment {booking.code}",
            detail={"service": booking.service, "day": booking.day},
        )
    else:
        _audit(request, "invite", ok=False, result=str(response.status))
    return response


async def supervisor_appointments(request: web.Request) -> web.Response:
    c = _c(request)
    try:
        day = _day(request.query.get("day"), c)
    except BookingError as exc:
        return _error(400, exc.code, str(exc))
    now, checked_in = c.clock(), c.checked_in()
    return _json(
        [
            api.SupervisorBooking(
                **booking_json(b, c.cfg, now, checked_in).model_dump(), note=b.note
            )
            for b in c.bookings.on_day(day)
        ]
    )


async def report(request: web.Request) -> web.Response:
    """The day report (``?day=YYYY-MM-DD``, default today) or the month's (``?month=YYYY-MM``),
    as printable HTML."""
    from coordinator.web.figures import day_figures
    from coordinator.web.report import day_report_html, month_report_html

    c, cache = _c(request), request.app[FIGURES]
    tz, now = c.cfg.hall.tzinfo, c.clock()
    today = c.engine.day or c.cfg.hall.business_day(now)
    generated = dt.datetime.fromtimestamp(now, tz).strftime("%Y-%m-%d %H:%M")

    async def figures(day: dt.date) -> Any:
        if day == today:
            return day_figures(day, c.engine.tickets, tz)
        return await cache.figures(day) if day < today else None

    try:
        if "month" in request.query:
            first = dt.date.fromisoformat(request.query["month"][:7] + "-01")
        else:
            day = dt.date.fromisoformat(request.query.get("day") or today.isoformat())
    except ValueError:
        return _error(400, "bad_day", "日期格式应为 YYYY-MM-DD, 月份为 YYYY-MM")
    if "month" in request.query:
        days = []
        d = first
        while d.month == first.month and d <= today:
            found = await figures(d)
            if found is not None and found.issued:
                days.append(found)
            d += dt.timedelta(days=1)
        html = month_report_html(c.cfg, first, days, generated=generated)
        return web.Response(
            text=html, content_type="text/html", headers={"Cache-Control": "no-store"}
        )
    found = await figures(day)
    if found is None:
        from coordinator.web.figures import DayFigures

        found = DayFigures(day=day)
    start = dt.datetime.combine(
        day, dt.time(), tz
    ).timestamp()  # the audit log's clock is the hall's
    actions = [
        {**e, "time": dt.datetime.fromtimestamp(e["at"], tz).strftime("%H:%M")}
        for e in request.app[AUDIT].between(start, start + 86400)
    ]
    alerts = views.desk_alerts(c, request.app[ALERTS]) if day == today else []
    episodes = views.no_window_episodes(c) if day == today else []
    html = day_report_html(
        c.cfg, found, actions, [a.model_dump() for a in alerts] + episodes, generated=generated
    )
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


INVITED: web.AppKey[dict[str, str]] = web.AppKey("invited", dict)


def _quiet_slots(c: HallService, service: str, n: int = 3) -> list[api.QuietSlot]:
    """Free slots from tomorrow on, the quiet ones (comfort 较少) only when there is an
    index, one a day, earliest first."""
    now, checked_in = c.clock(), c.checked_in()
    capacity = c.cfg.coordinator.appointment_capacity
    today = c.cfg.hall.business_day(now)
    out: list[api.QuietSlot] = []
    for day in c.bookings.bookable_days(now):
        if day <= today:
            continue
        for s in c.bookings.slots(service, day):
            comfort = _comfort_at(c, day, s.label[:5])
            if c.forecast is not None and comfort != "较少":
                continue
            free = capacity - c.bookings.taken(service, s, now, checked_in)
            if free > 0:
                out.append(
                    api.QuietSlot(
                        day=day.isoformat(),
                        start=s.label[:5],
                        slot=s.label,
                        comfort=comfort,
                        free=free,
                    )
                )
                break
        if len(out) >= n:
            break
    return out


async def supervisor_invitations(request: web.Request) -> web.Response:
    """Whom to invite (complex business in the log's last weeks, by identity hash only),
    on which quiet slots, and the invitations made with what came of them."""
    from coordinator.web.invite import INVITE_NOTE, LOOKBACK_DAYS, complex_candidates, reason

    c, cache = _c(request), request.app[FIGURES]
    now = c.clock()
    today = c.engine.day or c.cfg.hall.business_day(now)
    names = {code: s.name for code, s in c.engine.services.items()}
    since = today - dt.timedelta(days=LOOKBACK_DAYS)
    invited = c.bookings.noted(INVITE_NOTE, since)
    pending = {
        b.person
        for b in invited
        if b.person and b.cancelled_at is None and b.day >= today.isoformat()
    }
    days = []
    for i in range(1, LOOKBACK_DAYS + 1):
        day = today - dt.timedelta(days=i)
        past = await cache.get(day)
        if past:
            days.append((day, past))
    found = complex_candidates(days, exclude={p for p in pending if p})
    refs = request.app[INVITED]
    candidates = []
    for cand in found:
        if cand.service not in names:
            continue
        refs[cand.ref] = cand.person
        candidates.append(
            api.InviteCandidate(
                ref=cand.ref,
                label=cand.person[:6],
                reason=reason(cand, names),
                service=cand.service,
                service_name=names[cand.service],
                visits=len(cand.days),
                last=cand.last.isoformat() if cand.last else None,
                slots=_quiet_slots(c, cand.service),
            )
        )
    came: dict[str, set[str]] = {}
    for b in invited:
        if b.day == today.isoformat():
            came[b.day] = c.checked_in()
        elif b.day < today.isoformat() and b.day not in came:
            past = await cache.get(dt.date.fromisoformat(b.day))
            came[b.day] = {t.appointment for t in past or [] if t.appointment}
    rows = []
    for b in invited:
        if b.cancelled_at is not None:
            state = "declined"
        elif b.code in came.get(b.day, set()):
            state = "accepted"
        elif b.end <= now:
            state = "no_show"
        else:
            state = "offered"
        start = dt.datetime.fromtimestamp(b.start, c.cfg.hall.tzinfo)
        end = dt.datetime.fromtimestamp(b.end, c.cfg.hall.tzinfo)
        rows.append(
            api.Invitation(
                code=b.code,
                label=(b.person or "")[:6],
                service=b.service,
                service_name=names.get(b.service, b.service),
                day=b.day,
                slot=f"{start:%H:%M}-{end:%H:%M}",
                state=state,  # type: ignore[arg-type]
                by=b.booked_by.removeprefix("supervisor/"),
            )
        )
    return _json(
        api.Invitations(
            candidates=candidates,
            invited=rows,
            comfort=c.forecast is not None,
            lookback_days=LOOKBACK_DAYS,
        )
    )


async def supervisor_invite_person(request: web.Request) -> web.Response:
    """Book the slot for a candidate, under their identity hash (note 主动预约)."""
    from coordinator.web.invite import INVITE_NOTE

    c = _c(request)
    try:
        req = api.InviteRequest.model_validate(await request.json())
        person = request.app[INVITED].get(req.ref)
        if person is None:
            raise BookingError("unknown_candidate", "候选人已失效, 请刷新候选名单")
        day = _day(req.day, c)
        slot = c.bookings.slot_at(req.service, day, req.start)
        booking = await c.book_appointment(
            req.service,
            day,
            slot.start,
            booked_by=f"supervisor/{_session(request).user}",
            note=INVITE_NOTE,
            person=person,
        )
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, BookingError):
            _audit(request, "invite", ok=False, result=exc.code)
            return _error(
                404 if exc.code == "unknown_candidate" else _status(exc),
                exc.code,
                str(exc).split("\n")[0],
            )
        return _error(400, "invalid_body", "请求格式错误: ref, service, day, start")
    _audit(
        request,
        "invite",
        target=f"appointment {booking.code}",
        detail={"service": booking.service, "day": booking.day, "invited": person[:6]},
    )
    data = booking_json(booking, c.cfg, c.clock(), c.checked_in())
    return web.json_response(api.Booked(**data.model_dump()).model_dump(mode="json"), status=201)


async def supervisor_invite_decline(request: web.Request) -> web.Response:
    """The taxpayer said no: the invitation's booking is cancelled (its place freed)."""
    from coordinator.web.invite import INVITE_NOTE

    c = _c(request)
    found = c.bookings.get(request.match_info["code"].upper())
    if found is None or found.note != INVITE_NOTE or found.person is None:
        return _error(404, "unknown_appointment", "没有这条邀约")
    try:
        booking = await c.cancel_appointment(found.code, found.person)
    except BookingError as exc:
        return _error(_status(exc), exc.code, str(exc).split("\n")[0])
    _audit(request, "invite_declined", target=f"appointment {booking.code}")
    return _json(booking_json(booking, c.cfg, c.clock(), c.checked_in()))


async def whoami(request: web.Request) -> web.Response:
    return _json(_session_json(request.app[GATE], _session(request)))


# --- pages -----------------------------------------------------------------------------


def _page(name: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return handler


async def ticket_page(request: web.Request) -> web.StreamResponse:
    if request.match_info["hall"] != _c(request).cfg.hall.id:
        raise web.HTTPNotFound(text="unknown hall")
    return web.FileResponse(STATIC / "ticket.html", headers={"Cache-Control": "no-cache"})


def make_app(coordinator: HallService) -> web.Application:
    app = web.Application(middlewares=[gate], client_max_size=64 * 1024)
    hub = StreamHub()
    app[COORDINATOR] = coordinator
    app[HUB] = hub
    log_path = coordinator.eventlog.path
    app[GATE] = Gate(
        coordinator.cfg, sessions_path=log_path.with_name(f"{log_path.stem}-sessions.sqlite")
    )
    app[AUDIT] = AuditLog(  # on the hall's clock (the wall clock in a hall; the demo's runs
        default_audit_path(coordinator.eventlog.path),  # faster): read by the hall's day
        retention_days=coordinator.cfg.coordinator.retention_days,
        clock=coordinator.clock,
    )
    app[LIMITER] = AddressLimiter(coordinator.cfg.coordinator.appointment_per_address_hour)
    now, day = coordinator.clock(), coordinator.cfg.hall.business_day
    audited = app[AUDIT].between(now - 86400, now + 1, limit=5000)
    app[ALERTS] = AlertBook(AlertBook.from_audit(audited, day, now))
    app[INVITED] = {}
    app[ADVICE] = AdviceBook(AdviceBook.from_audit(audited, day, now))
    app[FIGURES] = FigureCache(
        coordinator.cfg,
        coordinator.eventlog.path,
        type(coordinator.engine.core),
        today=lambda: (
            coordinator.engine.day or coordinator.cfg.hall.business_day(coordinator.clock())
        ),
        # a past day replayed: the desks showing "—" for it refresh
        on_ready=lambda day: hub.notify({"type": "figures", "day": day.isoformat()}),
    )
    coordinator.add_listener(hub.notify)
    coordinator.on_console = functools.partial(_audit_console, app[AUDIT])

    async def on_shutdown(app: web.Application) -> None:
        coordinator.remove_listener(hub.notify)
        coordinator.on_console = None
        hub.shutdown()

    async def on_cleanup(app: web.Application) -> None:
        app[AUDIT].close()
        app[FIGURES].close()
        app[GATE].sessions.shutdown()

    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    r = app.router
    r.add_get("/api/hall", hall)
    r.add_get("/api/health", health)
    r.add_get("/api/tickets/{number}", ticket)
    r.add_get("/api/nearby", nearby)
    r.add_get("/api/boards", board_list)
    r.add_get("/api/boards/{board}.png", board_png)
    r.add_get("/api/stream", stream)
    r.add_get("/api/comfort.png", comfort_png)
    r.add_get("/api/comfort", comfort)
    r.add_get("/api/openapi.json", openapi)
    r.add_get("/api/appointments/slots", slots)
    r.add_post("/api/appointments", book)
    r.add_get("/api/appointments/{code}", appointment)
    r.add_get("/api/appointments/{code}/qr.svg", appointment_qr)
    r.add_post("/api/appointments/{code}/cancel", cancel_appointment)
    r.add_post("/api/supervisor/windows/{window}", supervisor_command)
    r.add_post("/api/supervisor/tickets/{number}", supervisor_ticket)
    r.add_post("/api/supervisor/windows/{window}/impact", supervisor_impact)
    r.add_post("/api/supervisor/devices/{client}", supervisor_device)
    r.add_get("/api/supervisor/desk", supervisor_desk)
    r.add_get("/api/supervisor/invitations", supervisor_invitations)
    r.add_post("/api/supervisor/invitations", supervisor_invite_person)
    r.add_post("/api/supervisor/invitations/{code}/decline", supervisor_invite_decline)
    r.add_post("/api/supervisor/alerts/ack", supervisor_ack)
    r.add_post("/api/supervisor/advice/{id}/{verb}", supervisor_advice)
    r.add_post("/api/supervisor/appointments", supervisor_invite)
    r.add_get("/api/supervisor/appointments", supervisor_appointments)
    r.add_get("/api/supervisor/whoami", whoami)
    r.add_get("/api/supervisor/audit", audit_log)
    r.add_post("/api/login", login)
    r.add_post("/api/logout", logout)
    r.add_get("/api/session", session_info)
    r.add_get("/login", _page("login.html"))
    r.add_get("/api/supervisor/hall", internal_hall)
    r.add_get("/api/supervisor/devices", devices)
    r.add_get("/api/supervisor/alerts", alerts)
    r.add_get("/", _page("hall.html"))
    r.add_get("/favicon.ico", _no_icon)
    r.add_get("/book", _page("book.html"))
    r.add_get("/supervisor", _page("supervisor.html"))
    r.add_get("/supervisor/hall", _page("internal.html"))
    r.add_get("/supervisor/report", report)
    r.add_get("/t/{hall}/{number}", ticket_page)
    r.add_static("/static/", STATIC)
    return app


class WebServer:
    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self.runner = runner
        self.url = url

    async def stop(self) -> None:
        await self.runner.cleanup()


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2+ with the certificate and key from the hall file's ``[web]``; an error names
    both files (OSError, so a bad certificate stops the dashboard, never the queue)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise OSError(
            f"cannot load web.tls_cert_file {str(cert)!r} with web.tls_key_file "
            f"{str(key)!r}: {exc.strerror or exc}"
        ) from None
    return context


async def start_web(coordinator: HallService, host: str, port: int) -> WebServer:
    """Serve until :meth:`WebServer.stop`; ``port`` 0 picks a free one (tests). HTTPS
    when ``[web]`` names a certificate."""
    settings = coordinator.cfg.web
    context = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        context = tls_context(settings.tls_cert_file, settings.tls_key_file)
    runner = web.AppRunner(
        make_app(coordinator), handle_signals=False, access_log=None, shutdown_timeout=2.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0]
    url = f"{'https' if context else 'http'}://{host}:{bound[1]}"
    coordinator.web = server = WebServer(runner, url)
    log.info("web dashboard and API on %s", url)
    return server
