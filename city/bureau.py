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
import logging
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web

from hallq import messages as m
from hallq.errors import PayloadError, TopicError
from hallq.topics import parse

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
                    await asyncio.wait_for(stop.wait(), delay)
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


LIVE: web.AppKey[LiveCity] = web.AppKey("live", LiveCity)
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
    live = request.app[LIVE]
    return web.json_response([h.as_json() for _, h in sorted(live.halls.items())])


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
    """One page, no script: a grid of halls, the quietest hall per service, this month's
    KPIs by hall; it reloads itself every 10 s."""
    live = request.app[LIVE]
    now = time.time()
    e = html.escape
    cards = []
    for name, h in sorted(live.halls.items()):
        age = now - h.updated
        load = "quiet" if h.waiting < 20 else "busy" if h.waiting >= 100 else "moderate"
        cards.append(
            f'<div class="hall {load}{" stale" if age > 300 else ""}"><b>{e(name)}</b>'
            f"<span>{h.waiting} waiting</span><span>{h.windows_open}/{len(h.windows)} "
            f"windows open</span><small>{age:.0f} s ago</small></div>"
        )
    rows = []
    for service in live.services():
        best = live.least_crowded(service)[:3]
        rows.append(
            f"<tr><td>{e(service)}</td><td>"
            + ", ".join(
                f"{e(b['hall'])} ({b['eta_min']:.0f} min, {b['waiting']} waiting)" for b in best
            )
            + "</td></tr>"
        )
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
    body = f"""<!doctype html><html lang="zh"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="10"><title>hallq bureau</title><style>
body{{font-family:sans-serif;margin:1em}} .grid{{display:flex;flex-wrap:wrap;gap:6px}}
.hall{{border:1px solid #999;padding:6px;width:150px;display:flex;flex-direction:column}}
.quiet{{background:#d8f5dd}} .moderate{{background:#fbefc4}} .busy{{background:#f8d0cc}}
.stale{{opacity:.5}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px}}
</style></head><body><h1>hallq bureau: {len(live.halls)} halls live</h1>
<div class="grid">{"".join(cards) or "no hall has reported yet"}</div>
<h2>Least crowded hall now, per service</h2><table><tr><th>service</th><th>halls</th></tr>
{"".join(rows)}</table>
<h2>This month by hall</h2><table><tr><th>hall</th><th>issued</th><th>finished</th>
<th>mean wait min</th><th>worst wait min</th></tr>{"".join(kpi_rows)}</table>
<p><a href="/api/comfort.csv">comfort index CSV</a> · <a href="/api/comfort.png">PNG</a> ·
<a href="/api/kpi?by=day">KPIs by day</a> · <a href="/api/kpi?by=service">by service</a> ·
<a href="/api/kpi?by=hour">by hour</a></p></body></html>"""
    return web.Response(text=body, content_type="text/html")


def make_app(live: LiveCity, db: CityDb | None) -> web.Application:
    app = web.Application()
    app[LIVE] = live
    app[DB] = db
    r = app.router
    r.add_get("/", page)
    r.add_get("/api/halls", halls)
    r.add_get("/api/least-crowded", least_crowded)
    r.add_get("/api/kpi", kpi)
    r.add_get("/api/comfort.csv", comfort_csv)
    r.add_get("/api/comfort.png", comfort_png)
    return app


async def serve(
    host: str, port: int, links: list[CityBrokerLink], dsn: str | None, stop: asyncio.Event
) -> None:
    live = LiveCity()
    db = CityDb(dsn) if dsn else None
    runner = web.AppRunner(make_app(live, db))
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
