"""``hallq bureau``: the city dashboard -- every hall's live load, the quietest hall per
service now, KPIs by hall/day/service/hour and the monthly comfort index.

Live figures come from the city broker (the halls' bridged summaries, a QoS 0 viewer: it
needs no JetStream consumer); history from the city database's hourly rollup. Both are
read-only here: the bureau can see every hall and act in none. It runs anywhere that
reaches the city broker and database, never in a hall.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import json
import logging
import ssl
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coordinator.web.auth import COOKIE, Gate, Session, same_origin
from hallq import messages as m
from hallq.errors import PayloadError, TopicError
from hallq.topics import ID_PATTERN, parse

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("hallq.bureau")


@dataclass
class HallLive:
    hall: str
    queues: dict[str, m.QueueState] = field(default_factory=dict)
    windows: dict[int, m.WindowState] = field(default_factory=dict)
    stats: m.StatsState | None = None
    updated: float = 0.0  # wall clock of the last summary
    revs: dict[str, int] = field(default_factory=dict)

    @property
    def waiting(self) -> int:
        return sum(q.waiting for q in self.queues.values())

    @property
    def windows_open(self) -> int:
        return sum(1 for w in self.windows.values() if w.status == m.WindowStatus.OPEN)

    def as_json(self) -> dict[str, Any]:
        return {
            "hall": self.hall,
            "waiting": self.waiting,
            "windows_open": self.windows_open,
            "windows": len(self.windows),
            "updated": self.updated,
            "queues": {
                s: {"waiting": q.waiting, "eta_min": q.eta_min}
                for s, q in sorted(self.queues.items())
            },
            "served_today": self.stats.total.served if self.stats else None,
            "avg_wait_min": (
                round(self.stats.total.avg_wait_s / 60, 1)
                if self.stats and self.stats.total.avg_wait_s is not None
                else None
            ),
        }


class LiveCity:
    """The halls' retained summaries as they arrive; a summary not above the last ``rev``
    seen for its topic is dropped (a replay, or an older copy from another node)."""

    def __init__(self) -> None:
        self.halls: dict[str, HallLive] = {}
        self.version = 0  # rises with every summary applied; the page's stream follows it
        self._waiters: set[asyncio.Event] = set()
        self.closing = False

    def watch(self) -> asyncio.Event:
        """An event set at every change, for one stream (``unwatch`` it when done)."""
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)

    def close(self) -> None:
        """End every stream (the server is stopping: it need not wait for a keepalive)."""
        self.closing = True
        for event in self._waiters:
            event.set()

    def apply(self, topic: str, payload: bytes, now: float | None = None) -> bool:
        try:
            parts = parse(topic)
        except TopicError:
            return False
        if parts.role != "state":
            return False
        kind = parts.action  # state/<kind>[/<key>]
        model: type[m.Retained]
        if kind == "queue":
            model = m.QueueState
        elif kind == "window":
            model = m.WindowState
        elif kind == "stats":
            model = m.StatsState
        else:
            return False
        try:
            msg = m.decode(model, payload)
        except PayloadError as exc:
            log.warning("%s: %s", topic, exc)
            return False
        hall = self.halls.setdefault(parts.hall, HallLive(parts.hall))
        if msg.rev <= hall.revs.get(topic, -1):
            return False
        hall.revs[topic] = msg.rev
        if isinstance(msg, m.QueueState):
            hall.queues[msg.service] = msg
        elif isinstance(msg, m.WindowState):
            hall.windows[msg.window] = msg
        elif isinstance(msg, m.StatsState):
            hall.stats = msg
        hall.updated = time.time() if now is None else now
        self.version += 1
        for event in self._waiters:
            event.set()
        return True

    def least_crowded(
        self, service: str, stale_s: float = 300.0, now: float | None = None
    ) -> list[dict[str, Any]]:
        """Halls serving ``service`` now, the shortest expected wait first (halls silent for
        ``stale_s`` are left out: their figures may be old)."""
        now = time.time() if now is None else now
        found = []
        for hall in self.halls.values():
            q = hall.queues.get(service)
            if q is None or now - hall.updated > stale_s:
                continue
            found.append(
                {
                    "hall": hall.hall,
                    "waiting": q.waiting,
                    "eta_min": q.eta_min if q.eta_min is not None else 0.0,
                }
            )
        return sorted(found, key=lambda h: (h["eta_min"], h["waiting"], h["hall"]))

    def services(self) -> list[str]:
        return sorted({s for h in self.halls.values() for s in h.queues})


@dataclass(frozen=True)
class CityBrokerLink:
    host: str
    port: int
    username: str | None
    password: str | None
    cafile: Path | None


async def follow(live: LiveCity, links: list[CityBrokerLink], stop: asyncio.Event) -> None:
    """Subscribe to every hall's summaries; on a lost node go to the next, until ``stop``."""
    import aiomqtt

    delay = 1.0
    turn = 0
    while not stop.is_set():
        link = links[turn % len(links)]
        turn += 1
        context = ssl.create_default_context(cafile=str(link.cafile)) if link.cafile else None
        try:
            async with aiomqtt.Client(
                link.host,
                link.port,
                identifier=f"bureau-{time.time_ns()}",
                username=link.username,
                password=link.password,
                tls_context=context,
                protocol=aiomqtt.ProtocolVersion.V311,
            ) as client:
                await client.subscribe("hallq/v1/+/state/#", qos=0)
                delay = 1.0
                async for message in client.messages:
                    live.apply(str(message.topic), bytes(message.payload))
        except aiomqtt.MqttError as exc:
            log.warning(
                "city broker %s:%d: %s (retrying in %.0f s)", link.host, link.port, exc, delay
            )
            if turn % len(links) == 0:  # every node tried: wait before the next round
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
                delay = min(delay * 2, 30.0)


class CityDb:
    """One connection, used from a worker thread one query at a time (the dashboard's
    load is a few people, not the halls')."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.Connection | None = None
        self._lock = asyncio.Lock()

    def _connection(self) -> psycopg.Connection:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        return self._conn

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:

            def call() -> Any:
                import psycopg

                try:
                    return fn(self._connection(), *args, **kwargs)
                except psycopg.OperationalError:
                    if self._conn is not None:
                        self._conn.close()
                    raise

            return await asyncio.to_thread(call)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class CityMapError(ValueError):
    """The city file cannot be used; the message names the file and the entry."""


class HallPlace(BaseModel):
    """A hall on the bureau's map-like grid (the city file's ``[[halls]]``)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN.pattern)
    name: str = Field(min_length=1, max_length=80)
    district: str | None = Field(default=None, max_length=40)
    grid: tuple[int, int] | None = Field(default=None, description="[column, row] from the NW")


def load_city_map(path: Path) -> dict[str, HallPlace]:
    """The city file: one ``[[halls]]`` table per hall (id, name, district, grid), the same
    district and grid cell as each hall file's ``[city]``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CityMapError(f"{path}: {exc}") from None
    entries = data.get("halls")
    if set(data) != {"halls"} or not isinstance(entries, list):
        raise CityMapError(f"{path}: expected only [[halls]] tables")
    places: dict[str, HallPlace] = {}
    for i, entry in enumerate(entries):
        try:
            place = HallPlace.model_validate(entry)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise CityMapError(f"{path}: halls[{i}].{where}: {err['msg']}") from None
        if place.id in places:
            raise CityMapError(f"{path}: halls[{i}]: hall {place.id!r} is listed twice")
        places[place.id] = place
    return places


def snapshot(
    live: LiveCity, places: dict[str, HallPlace], now: float | None = None
) -> dict[str, Any]:
    """What the dashboard's page shows, as one JSON object: every hall known from the city
    file or the broker, with its grid cell, and the three quietest halls per service."""
    now = time.time() if now is None else now
    halls = []
    for hall_id in sorted(set(places) | set(live.halls)):
        place = places.get(hall_id)
        h = live.halls.get(hall_id)
        item: dict[str, Any] = h.as_json() if h is not None else {"hall": hall_id, "updated": None}
        item["age_s"] = round(now - h.updated, 1) if h is not None else None
        item["name"] = place.name if place else hall_id
        item["district"] = place.district if place else None
        item["grid"] = list(place.grid) if place and place.grid else None
        halls.append(item)
    least = {s: live.least_crowded(s, now=now)[:3] for s in live.services()}
    return {"version": live.version, "halls": halls, "least": least}


LIVE: web.AppKey[LiveCity] = web.AppKey("live", LiveCity)
PLACES: web.AppKey[dict[str, HallPlace]] = web.AppKey("places", dict)
GATE: web.AppKey[Gate | None] = web.AppKey("gate", object)  # type: ignore[arg-type]
STREAM_COALESCE_S = 0.5  # at most two pushes a second, whatever the city's rate
STREAM_KEEPALIVE_S = 15.0
DB: web.AppKey[CityDb | None] = web.AppKey("db", object)  # type: ignore[arg-type]


# The bureau's halls keep China Standard Time; the bureau's server may run on UTC, where
# "today" would turn over at 08:00 in the halls.
CITY_TZ = ZoneInfo("Asia/Shanghai")


def _today() -> dt.date:
    return dt.datetime.now(CITY_TZ).date()


def _month(request: web.Request) -> dt.date:
    text = request.query.get("month") or _today().strftime("%Y-%m")
    try:
        if len(text) != 7:
            raise ValueError(text)
        return dt.date.fromisoformat(f"{text}-01")
    except ValueError:
        raise web.HTTPBadRequest(text=f"month: {text!r} is not YYYY-MM") from None


def _date(request: web.Request, name: str, default: dt.date) -> dt.date:
    text = request.query.get(name)
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: {text!r} is not YYYY-MM-DD") from None


def _db(request: web.Request) -> CityDb:
    db = request.app[DB]
    if db is None:
        raise web.HTTPServiceUnavailable(text="no city database configured (--dsn)")
    return db


async def halls(request: web.Request) -> web.Response:
    return web.json_response(snapshot(request.app[LIVE], request.app[PLACES])["halls"])


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the whole snapshot now and after every change, coalesced to
    at most one push per ``STREAM_COALESCE_S`` (the page redraws from it)."""
    live, places = request.app[LIVE], request.app[PLACES]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    changed = live.watch()
    try:
        while not live.closing:
            changed.clear()
            data = json.dumps(snapshot(live, places), ensure_ascii=False, separators=(",", ":"))
            await response.write(f"event: city\ndata: {data}\n\n".encode())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STREAM_KEEPALIVE_S):
                    await changed.wait()
            await asyncio.sleep(STREAM_COALESCE_S)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        live.unwatch(changed)
    return response


async def least_crowded(request: web.Request) -> web.Response:
    service = request.query.get("service", "")
    return web.json_response(
        {"service": service, "halls": request.app[LIVE].least_crowded(service)}
    )


async def kpi(request: web.Request) -> web.Response:
    from city.kpi import kpis

    by = request.query.get("by", "hall")
    if by not in ("hall", "day", "service", "hour"):
        raise web.HTTPBadRequest(text=f"by: {by!r} is not hall, day, service or hour")
    end = _date(request, "to", _today())
    start = _date(request, "from", end.replace(day=1))
    db = _db(request)
    try:
        rows = await db.run(
            kpis,
            by,
            start,
            end,
            hall=request.query.get("hall"),
            service=request.query.get("service"),
        )
    except Exception as exc:  # the database down must not take the live view with it
        raise web.HTTPServiceUnavailable(text=f"city database: {exc}") from None
    return web.json_response(
        {"by": by, "from": start.isoformat(), "to": end.isoformat(), "rows": rows}
    )


async def comfort_csv(request: web.Request) -> web.Response:
    from city.kpi import comfort_csv as to_csv
    from city.kpi import comfort_month

    month = _month(request)
    months = await _db(request).run(comfort_month, month)
    return web.Response(
        body=to_csv(months).encode(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="comfort-{month:%Y-%m}.csv"'},
    )


async def comfort_png(request: web.Request) -> web.Response:
    from city.kpi import comfort_month
    from city.kpi import comfort_png as to_png

    month = _month(request)
    months = await _db(request).run(comfort_month, month)
    body = await asyncio.to_thread(to_png, months, f"办税舒适度 {month:%Y-%m}")
    return web.Response(body=body, content_type="image/png")


def _shipping(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT hall_id, shipped_seq, shipped_at, updated FROM halls ORDER BY hall_id"
    ).fetchall()


async def page(request: web.Request) -> web.Response:
    """The dashboard: a map-like grid of the halls (their cells from the city file), the
    quietest halls per service, drawn by ``bureau.js`` from the live stream; this month's
    KPIs by hall from the database, rendered here."""
    e = html.escape
    kpi_rows: list[str] = []
    db = request.app[DB]
    if db is not None:
        from city.kpi import kpis

        today = _today()
        try:
            for r in await db.run(kpis, "hall", today.replace(day=1), today):
                kpi_rows.append(
                    f"<tr><td>{e(r['hall'])}</td><td>{r['issued']}</td><td>{r['finished']}</td>"
                    f"<td>{r['avg_wait_min']}</td><td>{r['max_wait_min']}</td></tr>"
                )
        except Exception as exc:
            kpi_rows.append(f'<tr><td colspan="5">city database: {e(str(exc))}</td></tr>')
    session = _session(request)
    who = (
        f'{e(session.user)} · <form method="post" action="/logout" style="display:inline">'
        "<button>退出 · Log out</button></form>"
        if session is not None
        else ""
    )
    body = f"""<!doctype html><html lang="zh"><head><meta charset="utf-8">
<title>hallq bureau</title><style>{PAGE_CSS}</style></head><body>
<header><h1>hallq bureau: <span id="count">0</span> halls live</h1>
<span id="live" class="off">connecting</span> <span class="who">{who}</span></header>
<div id="map" class="map"></div><div id="unplaced" class="grid"></div>
<h2>Least crowded hall now, per service</h2><table id="least">
<tr><th>service</th><th>halls</th></tr></table>
<h2>This month by hall</h2><table><tr><th>hall</th><th>issued</th><th>finished</th>
<th>mean wait min</th><th>worst wait min</th></tr>{"".join(kpi_rows)}</table>
<p><a href="/api/comfort.csv">comfort index CSV</a> · <a href="/api/comfort.png">PNG</a> ·
<a href="/api/kpi?by=day">KPIs by day</a> · <a href="/api/kpi?by=service">by service</a> ·
<a href="/api/kpi?by=hour">by hour</a></p><script src="/bureau.js"></script></body></html>"""
    return web.Response(text=body, content_type="text/html")


PAGE_CSS = """body{font-family:sans-serif;margin:1em}
header{display:flex;gap:1em;align-items:center}
.map{display:grid;grid-auto-columns:160px;grid-auto-rows:minmax(90px,auto);gap:6px;
background:#f3f5f7;padding:6px;width:max-content;border-radius:6px}
.grid{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}
.hall{border:1px solid #999;padding:6px;width:146px;display:flex;flex-direction:column}
.hall small{color:#555} .quiet{background:#d8f5dd} .moderate{background:#fbefc4}
.busy{background:#f8d0cc} .silent{background:#eee} .stale{opacity:.5}
#live.on{color:#2e7d32} #live.off{color:#c62828} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px}"""

# The page's script: redraws the grid and the table from each pushed snapshot.
BUREAU_JS = """"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, ...kids) => { const n = document.createElement(tag);
    if (cls) n.className = cls; n.append(...kids.map((k) => String(k ?? ""))); return n; };
  function card(h) {
    const load = h.updated == null ? "silent" : h.waiting < 20 ? "quiet" :
      h.waiting >= 100 ? "busy" : "moderate";
    const c = el("div", `hall ${load}${h.age_s != null && h.age_s > 300 ? " stale" : ""}`);
    c.dataset.hall = h.hall;
    const b = el("b", "", h.name);
    c.append(b, el("small", "", [h.district, h.hall].filter(Boolean).join(" · ")));
    if (h.updated == null) c.append(el("span", "", "no live data"));
    else c.append(el("span", "waiting", `${h.waiting} waiting`),
                  el("span", "", `${h.windows_open}/${h.windows} windows open`),
                  el("small", "", `${Math.round(h.age_s)} s ago`));
    if (h.grid) { c.style.gridColumn = h.grid[0] + 1; c.style.gridRow = h.grid[1] + 1; }
    return c;
  }
  function draw(s) {
    const live = s.halls.filter((h) => h.updated != null);
    $("count").textContent = live.length;
    $("map").replaceChildren(...s.halls.filter((h) => h.grid).map(card));
    $("unplaced").replaceChildren(...s.halls.filter((h) => !h.grid).map(card));
    const name = Object.fromEntries(s.halls.map((h) => [h.hall, h.name]));
    const rows = Object.entries(s.least).map(([svc, best]) => {
      const tr = el("tr", "", ); tr.append(el("td", "", svc), el("td", "",
        best.map((b) => `${name[b.hall] || b.hall} (${Math.round(b.eta_min)} min, ` +
                        `${b.waiting} waiting)`).join(", "))); return tr; });
    $("least").replaceChildren($("least").rows[0], ...rows);
  }
  const es = new EventSource("/api/stream");
  es.addEventListener("city", (ev) => {
    $("live").className = "on"; $("live").textContent = "live"; draw(JSON.parse(ev.data)); });
  es.onerror = () => { $("live").className = "off"; $("live").textContent = "reconnecting"; };
})();
"""


async def bureau_js(request: web.Request) -> web.Response:
    return web.Response(text=BUREAU_JS, content_type="application/javascript")


# --- login: the supervisor desk's sessions, lockout and same-origin rule, reused ------------

LOGIN_PAGE = """<!doctype html><html lang="zh"><head><meta charset="utf-8">
<title>hallq bureau: log in</title></head><body><h1>hallq bureau</h1>
<form method="post" action="/login"><p><label>用户 · User <input name="user" id="user"
autocomplete="username"></label></p><p><label>密码 · Password <input name="password"
id="password" type="password" autocomplete="current-password"></label></p>
<p><button id="submit">登录 · Log in</button></p></form><p id="error">{error}</p></body></html>"""


def _session(request: web.Request) -> Session | None:
    gate = request.app[GATE]
    return gate.session_of(request) if gate is not None else None


@web.middleware
async def gatekeeper(request: web.Request, handler: Any) -> web.StreamResponse:
    """With users configured (``--users``), everything but the login page needs a session;
    a page request is sent to log in, an API request gets 401."""
    gate = request.app[GATE]
    if gate is None or request.path == "/login" or gate.session_of(request) is not None:
        return await handler(request)  # type: ignore[no-any-return]
    if request.path.startswith("/api/") or request.path.endswith(".js"):
        raise web.HTTPUnauthorized(text="log in first (/login)")
    raise web.HTTPFound("/login")


def _login_page(error: str = "", status: int = 200) -> web.Response:
    return web.Response(
        text=LOGIN_PAGE.format(error=html.escape(error)), content_type="text/html", status=status
    )


async def login_form(request: web.Request) -> web.Response:
    return _login_page()


async def login(request: web.Request) -> web.Response:
    gate = request.app[GATE]
    if gate is None:
        raise web.HTTPFound("/")
    if not same_origin(request, f"http://{request.host}"):
        raise web.HTTPForbidden(text="login from another site refused")
    form = await request.post()
    name, password = str(form.get("user", ""))[:64], str(form.get("password", ""))[:256]
    address = request.remote or "?"
    attempt = await gate.attempt(name, password, address)
    if attempt.user is None:
        if attempt.locked_until is not None:
            minutes = max(1, round((attempt.locked_until - gate.clock()) / 60))
            return _login_page(f"too many failed logins: try again in {minutes} min", 429)
        return _login_page("wrong user or password", 401)
    session = gate.sessions.open(attempt.user, address)
    response = web.HTTPFound("/")
    response.set_cookie(
        COOKIE, session.token, httponly=True, samesite="Strict", secure=request.secure, path="/"
    )
    log.info("bureau: %s logged in from %s", attempt.user.name, address)
    raise response


async def logout(request: web.Request) -> web.Response:
    gate = request.app[GATE]
    if gate is not None and same_origin(request, f"http://{request.host}"):
        gate.sessions.close(request.cookies.get(COOKIE, ""))
    response = web.HTTPFound("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


def make_app(
    live: LiveCity,
    db: CityDb | None,
    places: dict[str, HallPlace] | None = None,
    users_file: Path | None = None,
) -> web.Application:
    """``users_file``: who may log in (``hallq user add --users-file``'s format: argon2id
    hashes); without it the dashboard is open (run it on the bureau's network only)."""
    app = web.Application(middlewares=[gatekeeper])
    app[LIVE] = live
    app[DB] = db
    app[PLACES] = places or {}
    app[GATE] = (
        Gate(
            None,
            users_file=users_file,
            # beside the users: a restarted dashboard keeps its logins (token hashes only)
            sessions_path=users_file.with_name(f"{users_file.stem}-sessions.sqlite"),
        )
        if users_file is not None
        else None
    )

    async def end_streams(app: web.Application) -> None:
        app[LIVE].close()

    async def close_sessions(app: web.Application) -> None:
        gate = app[GATE]
        if gate is not None:
            gate.sessions.shutdown()

    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(close_sessions)
    r = app.router
    r.add_get("/", page)
    r.add_get("/bureau.js", bureau_js)
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/api/stream", stream)
    r.add_get("/api/halls", halls)
    r.add_get("/api/least-crowded", least_crowded)
    r.add_get("/api/kpi", kpi)
    r.add_get("/api/comfort.csv", comfort_csv)
    r.add_get("/api/comfort.png", comfort_png)
    return app


async def serve(
    host: str,
    port: int,
    links: list[CityBrokerLink],
    dsn: str | None,
    stop: asyncio.Event,
    places: dict[str, HallPlace] | None = None,
    users_file: Path | None = None,
) -> None:
    live = LiveCity()
    db = CityDb(dsn) if dsn else None
    if users_file is None:
        log.warning("bureau: no --users file, the dashboard is open to whoever reaches it")
    runner = web.AppRunner(make_app(live, db, places, users_file), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("bureau dashboard on http://%s:%d/", host, port)
    followers = [asyncio.ensure_future(follow(live, links, stop))] if links else []
    try:
        await stop.wait()
    finally:
        for f in followers:
            f.cancel()
        await runner.cleanup()
        if db is not None:
            db.close()
