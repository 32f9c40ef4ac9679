"""The coordinator process: the hall queue wired to MQTT.

It subscribes to the hall's window commands and ticket requests, submits each to the
:class:`~coordinator.hallqueue.HallQueue` (logged before anything is published), then
publishes the reply, the events and the retained state that changed. On start it replays
the log and republishes every retained state, so boards are right at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from coordinator.authz import Authority, Refusal, flood_alert, refusal_alert
from coordinator.dispatch import load_core
from coordinator.engine import Outcome
from coordinator.eta import WaitEstimator
from coordinator.eventlog import EventLog
from coordinator.hallqueue import HallQueue, Submitted
from coordinator.web.appointments import AppointmentBook, default_book_path
from coordinator.web.devices import DeviceBook
from hallq import messages as m
from hallq.aio import cancel_and_wait
from hallq.bus import Incoming, Session
from hallq.config import HallConfig
from hallq.errors import NotConnected
from hallq.topics import ID_PATTERN

log = logging.getLogger("hallq.coordinator")

STATS_INTERVAL_S = 1.0
ADVICE_EVERY_S = 60.0  # hall seconds between checks for express-window advice
ADVICE_REPEAT_S = 600.0
RECENT_ALERTS = 200
ETA_STALE_S = 30.0     # hall seconds: waits are re-simulated at least this often

# Called after every published outcome (and each stats refresh) with a small summary of
# what changed; must not block (the web's live stream is one).
Listener = Callable[[dict[str, Any]], None]


def default_log_path(cfg: HallConfig) -> Path:
    return cfg.coordinator.log_path or cfg.runtime.state_dir / f"events-{cfg.hall.id}.sqlite"


def _reply(command: Any, record: dict[str, Any], day: dt.date | None) -> m.Message:
    error = m.Rejection(**record["error"]) if record["error"] else None
    if isinstance(command, m.IssueRequest):
        info = m.TicketInfo.model_validate(record["info"]) if record["info"] else None
        return m.IssueReply(kind="issue", corr=command.id, ok=record["ok"], error=error,
                            ticket=info)
    if isinstance(command, m.LeaseRequest):
        first, last = record.get("lease") or (None, None)
        return m.LeaseReply(kind="lease", corr=command.id, ok=record["ok"], error=error,
                            service=command.service, day=day, first=first, last=last)
    return m.CommandReply(kind="command", corr=command.id, ok=record["ok"], error=error,
                          ticket=record["ticket"])


class Coordinator:
    """Owns one hall's queue; the only writer of its state."""

    def __init__(self, cfg: HallConfig, *, log_path: Path | None = None,
                 dispatch: str = "auto", clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.eventlog = EventLog(log_path or default_log_path(cfg))
        self.queue = HallQueue(cfg, self.eventlog, load_core(dispatch))
        self.bookings = AppointmentBook(default_book_path(self.eventlog.path), cfg)
        # the engine forgets appointments when a day starts; replay must already know them
        self.queue.engine.day_hooks.append(self.register_bookings)
        self.register_bookings()
        replayed = self.queue.recover()
        self.eta = WaitEstimator(self.queue.engine)
        self.queue.engine.estimator = self.eta
        self._eta_task: asyncio.Task[None] | None = None
        self._eta_dirty = True
        self._eta_shown: dict[str, tuple[int, int]] = {}
        self._rev_seq = self._rev_sub = 0
        log.info("recovered hall %s from %s: %d entries of the current day replayed",
                 cfg.hall.id, self.eventlog.path, replayed)
        self.session: Session | None = None
        self._stats_dirty = True
        self._lock = asyncio.Lock()
        self.devices = DeviceBook(clock)
        self.alerts: deque[tuple[float, m.AlertEvent]] = deque(maxlen=RECENT_ALERTS)
        self._listeners: list[Listener] = []
        self.web: Any = None  # coordinator.web.server.WebServer once started
        self.forecast = self._forecast()
        self._advised_at = float("-inf")
        self._advised: dict[str, float] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self.authz = Authority(cfg)
        self._alerting: set[asyncio.Task[None]] = set()

    def _forecast(self) -> Any:
        """The comfort index for the boards: from the event log's history, or (the demo)
        from a generated one when ``coordinator.comfort_synthetic`` allows it."""
        from coordinator.forecast import build_forecast

        try:
            forecast = build_forecast(self.cfg, log_path=self.eventlog.path,
                                      start=self.cfg.hall.business_day(self.clock()))
        except Exception:
            log.exception("comfort index: no forecast (boards show none)")
            return None
        if not forecast.source.startswith("event log") and not (
                self.cfg.coordinator.comfort_synthetic):
            log.info("comfort index not shown: %s", forecast.source)
            return None
        return forecast

    def board_state(self, rev: int) -> m.BoardState:
        """The engine's board summary with today's comfort level (办税舒适度) when known."""
        state = self.engine.board_state(rev)
        if self.forecast is None:
            return state
        try:
            level = self.forecast.today_level(self.clock())
        except ValueError:
            # the forecast's days are over (a daily rebuild failed): retry in the
            # background, never here -- this runs on every board publish
            with contextlib.suppress(RuntimeError):  # no running loop: a later call retries
                self._refresh_forecast()
            return state
        return state.model_copy(update={"comfort": level})

    def register_bookings(self) -> None:
        engine = self.queue.engine
        day = engine.day or self.cfg.hall.business_day(self.clock())
        for b in self.bookings.on_day(day):
            engine.register_appointment(b.code, b.service, b.start, b.end)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, change: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # a broken listener must not stop the hall
                log.exception("change listener %r failed", listener)

    @property
    def engine(self) -> Any:
        return self.queue.engine

    def make_session(self, *, ack_after_handler: bool = True) -> Session:
        """The coordinator's session. A command is acknowledged to the broker only after
        its handler returned, i.e. once it is in the event log and answered: a coordinator
        killed before that gets the command again from its persistent session when it
        restarts, and answers it from the log if it was logged already."""
        cfg = self.cfg
        broker = cfg.broker.for_client(cfg.coordinator.client_id, cfg.coordinator.credentials)
        return Session(broker, hall=cfg.hall.id, role="coordinator",
                       client_id=cfg.coordinator.client_id, state_dir=cfg.runtime.state_dir,
                       outbox_max=cfg.runtime.outbox_max, ack_after_handler=ack_after_handler)

    async def run(self, session: Session, ready: asyncio.Event | None = None) -> None:
        """Serve until cancelled; ``session`` must be entered already."""
        await self.attach(session)
        await session.wait_connected()
        await self.publish_all()
        if ready is not None:
            ready.set()
        learning = asyncio.create_task(self._learn_counter_times())
        try:
            while True:
                await asyncio.sleep(STATS_INTERVAL_S)
                await self._tick()
        finally:
            if self._refreshing is not None:
                await cancel_and_wait(self._refreshing)
            if self._eta_task is not None:
                await cancel_and_wait(self._eta_task)
            await cancel_and_wait(learning)

    async def attach(self, session: Session) -> None:
        """Route what the coordinator listens to into its handlers; the fuzz suite feeds a
        session attached so, without a broker, at the rate validation can go."""
        self.session = session
        session.admit = self._admit
        topics = session.topics
        await session.subscribe(topics.every("cmd", "window"), self._on_window_command)
        await session.subscribe(topics.every("cmd", "supervisor"), self._on_window_command)
        await session.subscribe(topics.every("req", "dispenser"), self._on_ticket_request)
        await session.subscribe(topics.every("status"), self._on_presence)
        await session.subscribe(topics.every("health"), self._on_health)

    async def _tick(self) -> None:
        async with self._lock:
            rollover = self.queue.roll_over_if_due(self.clock())
            if rollover is not None:
                await self._publish_outcome(rollover, self.queue.seq)
                self._refresh_forecast()
            if self._stats_dirty:
                await self._publish(self._topics.stats_state(),
                                    self.engine.stats_state(self.queue.seq))
                self._stats_dirty = False
                self._notify({"type": "stats", "rev": self.queue.seq})
            await self._advise()
            self._estimate_waits()

    def _estimate_waits(self) -> None:
        """Wait estimates (``coordinator.eta``): after a change, once the last refresh's
        cost allows (at most 5% of a core), the hall is captured here and played forward
        in a worker thread; the queues whose shown range moved are republished."""
        now = self.clock()
        snap = self.eta.snapshot
        stale = snap is None or now - snap.at > ETA_STALE_S
        if not (self._eta_dirty or stale) or not self.eta.due():
            return
        if self._eta_task is not None and not self._eta_task.done():
            return
        self._eta_dirty = False
        state = self.eta.capture(now)
        self._eta_task = asyncio.create_task(self._simulate_waits(state))

    def _queue_rev(self, seq: int, *, bump: bool = False) -> int:
        """A queue topic's revision: the log's sequence number in the high bits, and in
        the low 16 how many times its wait estimate was republished since that entry, so
        a republished estimate is newer than the state it updates and older than the next
        change (receivers drop a revision not above the last)."""
        if seq != self._rev_seq:
            self._rev_seq, self._rev_sub = seq, 0
        if bump:
            self._rev_sub = min(self._rev_sub + 1, 0xFFFF)
        return seq << 16 | self._rev_sub

    async def _learn_counter_times(self) -> None:
        """The wait estimates draw each service's counter times from its history in the
        event log where there is enough of it (``learn_demand``), else from today's."""
        from coordinator.simulation.learn import LearnError, learn_demand

        try:
            learned = await asyncio.to_thread(learn_demand, self.eventlog.path, self.cfg)
        except LearnError as exc:
            log.info("wait estimates: counter times from today only (%s)", exc)
            return
        except Exception:
            log.exception("wait estimates: learning counter times failed")
            return
        self.eta.fits = {c: (f.mu, f.sigma) for c, f in learned.services.items()
                         if f.learned and f.mu is not None and f.sigma is not None}
        log.info("wait estimates: counter times learned for %s",
                 ", ".join(sorted(self.eta.fits)) or "no service (too little history)")

    async def _simulate_waits(self, state: dict[str, Any]) -> None:
        try:
            snapshot = await asyncio.to_thread(self.eta.simulate, state)
        except Exception:
            log.exception("wait estimates: the simulation failed (queueing estimate shown)")
            return
        async with self._lock:
            self.eta.install(snapshot)
            rev, now = self.queue.seq, self.clock()
            changed = []
            for code in self.engine.services:
                shown = self.engine.eta_range(None, code, now).bounds()
                if self._eta_shown.get(code) != shown:
                    self._eta_shown[code] = shown
                    changed.append(code)
            if changed and self.session is not None:
                qrev = self._queue_rev(rev, bump=True)
                for code in changed:
                    await self._publish(self._topics.queue_state(code),
                                        self.engine.queue_state(code, qrev, now))
            if changed:
                self._notify({"type": "estimates", "rev": rev, "services": changed})

    async def _advise(self) -> None:
        """Express-window advice (快速办理专窗) for supervisors: when a service's predicted
        wait passes its target, an alert names windows to switch and for how long. The
        queueing estimate finds it, cheaply, every hall minute; the advice published gets
        its predicted effect from a short simulation of the hall from now (a few ms on the
        compiled loop). Each service is advised again only after ADVICE_REPEAT_S."""
        now = self.clock()
        if now - self._advised_at < ADVICE_EVERY_S:
            return
        self._advised_at = now
        from coordinator.advice import advice_alert, advise
        from coordinator.advice.live import with_simulated_effect

        try:
            advice = advise(self.engine, now, simulate=False)
        except Exception:
            log.exception("express-window advice failed")
            return
        for item in advice:
            if now - self._advised.get(item.service, -ADVICE_REPEAT_S) < ADVICE_REPEAT_S:
                continue
            try:
                item = with_simulated_effect(self.engine, now, item)
            except Exception:
                log.exception("express-window advice: simulating the effect failed")
            self._advised[item.service] = now
            alert = advice_alert(item)
            self.alerts.appendleft((now, alert))
            await self._publish(self._topics.event("alert"), alert)
            self._notify({"type": "outcome", "rev": self.queue.seq,
                          "events": [alert.model_dump(mode="json", exclude_none=True)],
                          "windows": [], "services": [item.service], "board": False})

    @property
    def _topics(self) -> Any:
        assert self.session is not None
        return self.session.topics

    async def _publish(self, topic: str, message: m.Message) -> None:
        assert self.session is not None
        try:
            await self.session.publish(topic, message)
        except NotConnected as exc:
            log.warning("not published (the broker is away; state is republished on "
                        "reconnect): %s", exc)

    async def publish_all(self) -> None:
        """Every retained state, from the recovered engine."""
        rev, now, t = self.queue.seq, self.clock(), self._topics
        for number in self.engine.windows:
            await self._publish(t.window_state(number), self.engine.window_state(number, rev))
        for code in self.engine.services:
            await self._publish(t.queue_state(code),
                                self.engine.queue_state(code, self._queue_rev(rev), now))
        await self._publish(t.board_state(), self.board_state(rev))
        await self._publish(t.stats_state(), self.engine.stats_state(rev))
        await self._publish_comfort(rev)

    def _refresh_forecast(self) -> None:
        """A new day: yesterday joins the history. The comfort index is rebuilt in a
        worker thread (its simulated days take a fraction of a second compiled, seconds
        pure) and published when ready; the queue keeps serving meanwhile."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._rebuild_forecast())

    async def _rebuild_forecast(self) -> None:
        self.forecast = await asyncio.to_thread(self._forecast)
        await self._publish_comfort(self.queue.seq)

    async def _publish_comfort(self, rev: int) -> None:
        """The comfort index, retained, from today on (nothing while there is none)."""
        if self.forecast is not None:
            today = self.cfg.hall.business_day(self.clock())
            await self._publish(self._topics.comfort_state(),
                                self.forecast.comfort_state(rev, today))

    async def _publish_outcome(self, outcome: Outcome, rev: int) -> None:
        t, now = self._topics, self.clock()
        for event in outcome.events:
            kind = {m.CallEvent: "call", m.TicketEvent: "ticket", m.AlertEvent: "alert"}[
                type(event)]
            await self._publish(t.event(kind), event)
        for number in sorted(outcome.windows):
            await self._publish(t.window_state(number), self.engine.window_state(number, rev))
        for code in sorted(outcome.services):
            await self._publish(t.queue_state(code),
                                self.engine.queue_state(code, self._queue_rev(rev), now))
        if outcome.board_changed:
            await self._publish(t.board_state(), self.board_state(rev))
        self._stats_dirty = True
        self._eta_dirty = True
        for event in outcome.events:
            if isinstance(event, m.AlertEvent):
                self.alerts.appendleft((now, event))
        self._notify({
            "type": "outcome", "rev": rev,
            "events": [e.model_dump(mode="json", exclude_none=True) for e in outcome.events],
            "windows": sorted(outcome.windows), "services": sorted(outcome.services),
            "board": outcome.board_changed,
        })

    async def submit(self, kind: str, incoming: Incoming) -> Submitted | None:
        """A command from MQTT: checked by :mod:`coordinator.authz` first; a refused one
        is answered with the reason and goes no further (None)."""
        parts = incoming.parts
        role, client, command = parts.role, parts.client or "", incoming.payload
        refusal = self.authz.check(kind, role, client, command, retained=incoming.retained)
        if refusal is None:
            owner = self.queue.log.lookup(command.id)
            refusal = self.authz.claim(owner.source if owner else None, role, client)
        if refusal is not None:
            await self._refuse(role, client, command, refusal)
            return None
        return await self.execute(kind, role, client, command)

    async def _refuse(self, role: str, client: str, command: Any, refusal: Refusal) -> None:
        log.warning("%s %s/%s refused: %s: %s", getattr(command, "action", "request"), role,
                    client, refusal.code, refusal.message)
        await self._publish(self._topics.reply(role, client),
                            _reply(command, refusal.record(), self.engine.day))
        if self.authz.should_alert(f"{role}/{client}", refusal.code):
            await self._raise_alert(refusal_alert(role, client, refusal))

    def _admit(self, topic: str) -> bool:
        """The per-client rate limit, before a message is parsed (see Authority.admit)."""
        if self.authz.admit(topic):
            return True
        levels = topic.split("/")
        role, client = levels[3], levels[4]
        if self.authz.should_alert(f"{role}/{client}", "flood"):
            log.warning("%s %s floods the coordinator: dropping what is over %g/s",
                        role[:32], client[:32], self.cfg.security.client_rate_per_s)
            named = client if ID_PATTERN.fullmatch(client) else "unknown"
            task = asyncio.create_task(self._raise_alert(
                flood_alert(role if ID_PATTERN.fullmatch(role) else "client", named,
                            self.cfg.security.client_rate_per_s)))
            self._alerting.add(task)
            task.add_done_callback(self._alerting.discard)
        return False

    async def _raise_alert(self, alert: m.AlertEvent) -> None:
        self.alerts.appendleft((self.clock(), alert))
        await self._publish(self._topics.event("alert"), alert)
        self._notify({"type": "outcome", "rev": self.queue.seq,
                      "events": [alert.model_dump(mode="json", exclude_none=True)],
                      "windows": [], "services": [], "board": False})

    async def execute(self, kind: str, role: str, client: str, command: Any, *,
                      reply: bool = True) -> Submitted:
        """The one path a command takes, from a device over MQTT or a supervisor on the web:
        logged by the queue, then its reply (unless the caller answers itself) and outcome
        published."""
        async with self._lock:
            done = self.queue.submit(kind, role, client, command, self.clock())
            if reply:
                await self._publish(self._topics.reply(role, client),
                                    _reply(command, done.record, self.engine.day))
            if done.rollover is not None:
                await self._publish_outcome(done.rollover, done.seq)
                self._refresh_forecast()
            if done.outcome is not None and done.outcome.ok:
                await self._publish_outcome(done.outcome, done.seq)
            elif done.duplicate:
                await self._announce_again(command, done.record)
        if done.duplicate:
            log.info("repeated command %s from %s: answered from the log", command.id,
                     client)
        elif not done.record["ok"]:
            log.info("%s from %s refused: %s", getattr(command, "action", "request"),
                     client, done.record["error"]["message"])
        return done

    async def _announce_again(self, command: Any, record: dict[str, Any]) -> None:
        """A call answered from the log is announced once more if it is still on.

        Pads never repeat a command, so a window command comes back only from the broker,
        after a coordinator that logged it died before its PUBACK -- maybe before it
        published the call too. Retained state is republished at start; the call event,
        which the voice and the boards' flash act on, is not: without this the taxpayer
        would never hear the number. Announced twice at worst, never not at all.
        """
        action = getattr(command, "action", None)
        if not record.get("ok") or action not in ("call", "call_ticket", "unpark"):
            return
        t = self.engine.by_number.get(record.get("ticket") or "")
        win = self.engine.windows.get(command.window)
        if t is None or win is None or win.current is not t or (
                t.state is not m.TicketState.CALLED):
            return
        await self._publish(self._topics.event("call"), m.CallEvent(
            ticket=t.number, service=t.service, window=win.number, zone=win.zone))

    async def book_appointment(self, service: str, day: dt.date, start: float, *,
                               booked_by: str = "taxpayer", note: str | None = None) -> Any:
        """Book durably, then let the engine know when the booking is for today."""
        async with self._lock:
            now = self.clock()
            booking = self.bookings.book(service, day, start, now, self.checked_in(),
                                         booked_by=booked_by, note=note)
            day = self.engine.day or self.cfg.hall.business_day(now)
            if booking.day == day.isoformat():  # other days: registered when they open
                self.engine.register_appointment(booking.code, booking.service,
                                                 booking.start, booking.end)
        return booking

    def checked_in(self) -> set[str]:
        """Appointment codes a ticket was issued under today."""
        return {t.appointment for t in self.engine.tickets if t.appointment}

    async def _on_presence(self, incoming: Incoming) -> None:
        parts, presence = incoming.parts, incoming.payload
        if (presence.role, presence.client) != (parts.role, parts.client):
            log.warning("presence on %s claims to be %s/%s: ignored", incoming.topic,
                        presence.role, presence.client)
            return
        if self.devices.note_presence(incoming.payload):
            self._notify({"type": "device", "client": incoming.payload.client})

    async def _on_health(self, incoming: Incoming) -> None:
        parts = incoming.parts
        self.devices.note_health(parts.role, parts.client or "", incoming.payload)
        self._notify({"type": "device", "client": parts.client})

    async def _on_window_command(self, incoming: Incoming) -> None:
        await self.submit("window", incoming)

    async def _on_ticket_request(self, incoming: Incoming) -> None:
        await self.submit("ticket", incoming)

    def status_line(self) -> str:
        """One line for ``systemctl status``: is it connected, how busy is the hall."""
        engine = self.engine
        link = "online" if self.session is not None and self.session.connected else "broker lost"
        waiting = sum(engine.core.waiting(i) for i in engine.service_idx.values())
        open_ = sum(1 for w in engine.windows.values() if w.status.value == "open")
        return f"{link}, {waiting} waiting, {open_}/{len(engine.windows)} windows open"

    def close(self) -> None:
        self.bookings.close()
        self.eventlog.close()


@contextlib.asynccontextmanager
async def web_dashboard(coordinator: Coordinator) -> AsyncIterator[Any]:
    """The dashboard and API beside the queue (None when off or its port is taken: the
    queue must run even when the dashboard cannot)."""
    settings = coordinator.cfg.coordinator
    if not settings.http_port:
        yield None
        return
    from coordinator.web.server import start_web

    try:
        web = await start_web(coordinator, settings.http_host, settings.http_port)
    except OSError as exc:
        log.error("web dashboard not started on %s:%d: %s (set coordinator.http_port; "
                  "0 turns it off)", settings.http_host, settings.http_port, exc)
        yield None
        return
    try:
        yield web
    finally:
        await web.stop()


async def serve(cfg: HallConfig, *, log_path: Path | None = None, dispatch: str = "auto",
                ready: asyncio.Event | None = None) -> None:
    """Run a coordinator until cancelled (SIGTERM/SIGINT in the CLI)."""
    from hallq.sdnotify import Notifier, supervised

    coordinator = Coordinator(cfg, log_path=log_path, dispatch=dispatch)
    try:
        async with web_dashboard(coordinator), coordinator.make_session() as session, \
                supervised(Notifier.from_env(), session.wait_connected(),
                           coordinator.status_line):
            await coordinator.run(session, ready)
    finally:
        coordinator.close()
