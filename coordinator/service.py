"""The coordinator process: the hall queue wired to MQTT.

It subscribes to the hall's window commands and ticket requests, submits each to the
:class:`~coordinator.hallqueue.HallQueue` (logged before anything is published), then
publishes the reply, the events and the retained state that changed. On start it replays
the log; on every (re)connect it republishes every retained state and announces again the
calls still on, so boards and pads converge whatever the broker lost meanwhile.

Messages are rendered under the engine's lock and published after it is released, in the
order they were rendered (``_deliver``): a slow or dead broker never stalls the queue.

When the event log cannot be written the coordinator refuses every command with
``storage_failed`` ("系统存储故障"), leaves it unacknowledged for the broker to deliver
again, raises an alert, reports itself unhealthy (health topic, systemd STATUS) and tries
the disk again every second; once a write succeeds it reconnects, so the broker hands the
refused commands back (see docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import gc
import json
import logging
import math
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from coordinator.authz import (
    ISSUE_PACED,
    REPLAY_PACED,
    Authority,
    Refusal,
    flood_alert,
    refusal_alert,
)
from coordinator.dispatch import load_core
from coordinator.engine import Engine, Outcome, no_window_alert
from coordinator.eventlog import EventLog, StorageFailed
from coordinator.hallqueue import HallQueue, Submitted, checkpoint_every
from coordinator.nearby import NearbyHalls
from coordinator.snapshot import ChildFailed, call_forked, fork_bytes
from coordinator.suspension import REFUSED
from coordinator.web.appointments import AppointmentBook, default_book_path
from coordinator.web.devices import LINK_GRACE_S, DeviceBook
from hallq import messages as m
from hallq.aio import cancel_and_wait
from hallq.bus import Handed, Incoming, Session
from hallq.config import HallConfig
from hallq.errors import NotConnected, NotKept
from hallq.topics import ID_PATTERN

if TYPE_CHECKING:  # imported once serving: the simulation brings numpy
    from coordinator.eta import WaitEstimator

log = logging.getLogger("hallq.coordinator")
_T = TypeVar("_T")

STATS_INTERVAL_S = 1.0
ADVICE_EVERY_S = 60.0  # hall seconds between checks for express-window advice
ADVICE_REPEAT_S = 600.0
RECENT_ALERTS = 200
RECENT_ADVICE = 20
RECENT_REFUSED = 10_000
# more tickets than this issued online by one dispenser within ISSUE_BURST_S: a person takes
# one every few seconds at most (the key, the print), so a stuck key or a script using the
# dispenser's password; the supervisors are told (an alert, nothing refused)
ISSUE_BURST = 30
ISSUE_BURST_S = 60.0
SERVE_BURST = 4  # tickets ended at one window within ISSUE_BURST_S, likewise (minutes each)
EMERGENCY_BURST = 5  # emergency calls from one window Pi's login within ISSUE_BURST_S
ENDED = frozenset({m.TicketState.DONE, m.TicketState.NO_SHOW, m.TicketState.TRANSFERRED})
PER_ALERT = 5  # the recent alerts keep this many of one kind about one thing (RecentAlerts)
CONSOLE_BURST = 30  # commands from one supervisor console within ISSUE_BURST_S, likewise
# MQTT 5 expiry counts whole seconds twice (the sender rounds its wait up, the broker its
# clock down): a command the broker left L s of it has at least L - this left
EXPIRY_ROUNDING_S = 2
REPLY_MARGIN_S = 0.5  # of a sender's wait, left for the reply to reach it (deadline_s)
STALL_BEAT_S = 0.05  # a command's arrival counts this process's stalls (Session)
LINK_LOST = Refusal("link_lost", "the connection this command came on is gone")
STORAGE_FAILED = "系统存储故障"
Batch = list[tuple[str, m.Message]]
CLOCK_SKEW_S = 120.0  # an offline print time this far outside its bounds is only a clock
ETA_STALE_S = 30.0  # hall seconds: waits are re-simulated at least this often
# commands in their handlers at once: those that arrive together are applied in arrival
# order and share one commit of the event log (group commit)
COMMAND_CONCURRENCY = 256
# a checkpoint (its fork, the child's pickling, its blob written to the log beside the
# groups' commits) costs by the day's size, not by the entries it saves replaying: in a
# burst (thousands of commands a second) every checkpoint_every entries was several a
# second and ~25% of the coordinator's throughput. Spaced at least this far apart, a
# restart after a kill mid-burst replays at most this long of it (~5,600 entries, ~0.25 s)
CHECKPOINT_MIN_S = 1.0
GROUP_ROUNDS = 8  # loop rounds a group commit waits at most for commands already received
# the comfort index's simulated days run in a forked child (seconds of pure Python that a
# worker thread would run holding the GIL the loop needs): given up after this long
FORECAST_TIMEOUT_S = 600.0
ETA_TIMEOUT_S = 60.0  # a wait-estimate refresh's simulated hall (ms in a hall, ~1 s in a burst)
LEARN_DAY_TIMEOUT_S = 300.0  # likewise, replaying one day of the log for its counter times
GC_YOUNG = 20_000  # allocations between young collections (CPython's default: 700)
# a group this small, with nothing more received, is committed on the loop while the disk
# makes a group durable within QUIET_COMMIT_S (smoothed): a quiet hall's command skips two
# thread hand-offs; a slow disk (an SD card, a busy server) never stalls the loop
QUIET_GROUP = 1
QUIET_COMMIT_S = 0.002
# how long a thread may hold the GIL while another waits for it (CPython's default 5 ms):
# the loop waited up to that long behind a wait-estimate simulation in its worker thread,
# after every call that let the GIL go (a socket's send, the log's fsync): at 1 ms that was
# still most of a quiet hall's CALL -> board p99 beyond the broker's own (bench/e2e.py)
SWITCH_INTERVAL_S = 0.0002
# counter times for the wait estimates are learned from this many recent days of the log
# (a year's log would keep that worker busy for many minutes after every start)
LEARN_DAYS = 28

# Called after every published outcome (and each stats refresh) with a small summary of
# what changed; must not block (the web's live stream is one).
Listener = Callable[[dict[str, Any]], None]


def default_log_path(cfg: HallConfig) -> Path:
    return cfg.coordinator.log_path or cfg.runtime.state_dir / f"events-{cfg.hall.id}.sqlite"


def _reply(
    command: Any, record: dict[str, Any], day: dt.date | None, outcome: Outcome | None = None
) -> m.Message:
    """The reply to ``command`` from its logged ``record``; ``outcome``: the one it just
    had (its ticket info is taken as it is, not built again from the record)."""
    error = m.Rejection(**record["error"]) if record["error"] else None
    if isinstance(command, m.IssueRequest):
        info = outcome.info if outcome is not None else None
        if info is None and record["info"]:
            info = m.TicketInfo.model_validate(record["info"])
        return m.IssueReply(
            kind="issue", corr=command.id, ok=record["ok"], error=error, ticket=info
        )
    if isinstance(command, m.LeaseRequest):
        first, last = record.get("lease") or (None, None)
        return m.LeaseReply(
            kind="lease",
            corr=command.id,
            ok=record["ok"],
            error=error,
            service=command.service,
            day=day,
            first=first,
            last=last,
        )
    refused = record.get("refused")
    return m.CommandReply(
        kind="command",
        corr=command.id,
        ok=record["ok"],
        error=error,
        ticket=record["ticket"],
        happened=record.get("happened"),
        refused=m.Rejection(**refused) if refused else None,
    )


def _not_kept() -> Submitted:
    """A command the event log could not take: refused, nothing changed."""
    return Submitted(
        -1,
        {
            "ok": False,
            "ticket": None,
            "info": None,
            "lease": None,
            "error": {"code": "storage_failed", "message": STORAGE_FAILED},
        },
        None,
        kept=False,
    )


class Coordinator:
    """Owns one hall's queue; the only writer of its state."""

    def __init__(
        self,
        cfg: HallConfig,
        *,
        log_path: Path | None = None,
        dispatch: str = "auto",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.eventlog = EventLog(log_path or default_log_path(cfg))
        self.queue = HallQueue(cfg, self.eventlog, load_core(dispatch))
        self.bookings = AppointmentBook(default_book_path(self.eventlog.path), cfg)
        # the engine forgets appointments when a day starts; replay must already know them
        self.queue.engine.day_hooks.append(self.register_bookings)
        self.register_bookings()
        replayed = self.queue.recover()
        every = checkpoint_every(len(self.queue.engine.tickets))
        self._checkpoint_seq = self.queue.seq if replayed < every else 0
        self._checkpointing: asyncio.Future[bool] | None = None
        self._checkpoint_at = -math.inf  # time.monotonic() of the last one forked
        # the wait estimator starts once serving (``_start_estimating``); until then the
        # engine gives its queueing estimate
        self.eta: WaitEstimator | None = None
        self._eta_task: asyncio.Task[None] | None = None
        self._eta_dirty = True
        self._eta_shape: tuple[m.WindowStatus, ...] = ()  # the windows' status at a refresh
        self._eta_shown: dict[str, tuple[int, int]] = {}
        self._rev_seq = self._rev_sub = 0
        log.info(
            "recovered hall %s from %s: %d entries of the current day replayed",
            cfg.hall.id,
            self.eventlog.path,
            replayed,
        )
        self.session: Session | None = None
        self._stats_dirty = True
        self._stats_at = -math.inf  # time.monotonic() of the last KPIs published
        self._lock = asyncio.Lock()  # the engine and the log: never held across a publish
        # retained states changed by commands, rendered once per group commit (coalesced)
        self._dirty_windows: set[int] = set()
        self._dirty_services: set[str] = set()
        self._dirty_board = False
        self.storage_error: str | None = None
        self._reconnect_due = False
        # command id -> the earliest its sender may have sent it, when it was not kept
        # (time.monotonic()): a redelivered copy keeps the first copy's age
        self._refused_at: dict[str, float] = {}
        self._issues: dict[str, deque[float]] = {}  # role/client -> its last acts (_burst)
        self._told: dict[str, None] = {}  # command ids answered storage_failed, in order
        self._heard: dict[str, str] = {}  # online issue requests received: their sender
        self._converged_for = -1
        # a device cut off prints offline for up to a keepalive and a half before the broker
        # publishes its will, and a reply timeout before that (DeviceBook.link_gap)
        grace = 1.5 * cfg.broker.keepalive + cfg.edge.reply_timeout_s
        self.devices = DeviceBook(clock, max(LINK_GRACE_S, grace + 15.0))
        self.alerts = RecentAlerts(RECENT_ALERTS)
        self._unserved_seen: set[tuple[str, int]] = set()  # queues told 无窗口办理
        self._listeners: list[Listener] = []
        # the desk's audit log of a console's commands over MQTT (set by the web server)
        self.on_console: Callable[[str, Any, dict[str, Any]], None] | None = None
        self.web: Any = None  # coordinator.web.server.WebServer once started
        # built in a worker once serving (seconds over a long log; nothing waits for it)
        self.forecast: Any = None
        self._advised_at = float("-inf")
        self._advised: dict[tuple[str, int], float] = {}  # (service, its windows' site)
        # advice worth showing, newest first: the desk adopts it to be applied or dismissed
        self.advice: deque[tuple[float, Any]] = deque(maxlen=RECENT_ADVICE)
        self._refreshing: asyncio.Task[None] | None = None
        self.authz = Authority(cfg)
        self._alerting: set[asyncio.Task[None]] = set()
        # group commit: commands staged in the log wait here for the one commit that
        # makes them all durable (see _durable)
        # (the log's failure count when staged, told whether kept, what it publishes then)
        self._commit_waiters: list[tuple[int, asyncio.Future[bool], Batch]] = []
        self._committing: asyncio.Task[None] | None = None
        self.nearby = NearbyHalls(cfg.city, clock)
        # set when stopping: a worker thread reading the log ends at its next check
        self.stopping = threading.Event()

    def _in_child(self, timeout_s: float) -> Callable[[Callable[[], _T]], _T]:
        """A runner for a worker thread's long pure-Python work: in a forked child
        (``snapshot.call_forked``), given up after ``timeout_s`` or once stopping."""
        return functools.partial(call_forked, timeout_s=timeout_s, stop=self.stopping)

    def _forecast(self) -> Any:
        """The comfort index for the boards: from the event log's history, or (the demo)
        from a generated one when ``coordinator.comfort_synthetic`` allows it."""
        from coordinator.forecast.history import Stopped
        from coordinator.forecast.index import build_forecast

        try:
            forecast = build_forecast(
                self.cfg,
                log_path=self.eventlog.path,
                start=self.cfg.hall.business_day(self.clock()),
                stop=self.stopping,
                run=self._in_child(FORECAST_TIMEOUT_S),
            )
        except Stopped:
            return None
        except ChildFailed as exc:
            if not self.stopping.is_set():
                log.warning("comfort index: no forecast (boards show none): %s", exc)
            return None
        except Exception:
            log.exception("comfort index: no forecast (boards show none)")
            return None
        if not forecast.source.startswith("event log") and not (
            self.cfg.coordinator.comfort_synthetic
        ):
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
    def engine(self) -> Engine:
        return self.queue.engine

    def make_session(self, *, ack_after_handler: bool = True) -> Session:
        """The coordinator's session. A command is acknowledged to the broker only after
        its handler returned, i.e. once it is in the event log and answered: a coordinator
        killed before that gets the command again from its persistent session when it
        restarts, and answers it from the log if it was logged already."""
        cfg = self.cfg
        broker = cfg.broker.for_client(cfg.coordinator.client_id, cfg.coordinator.credentials)
        return Session(
            broker,
            hall=cfg.hall.id,
            role="coordinator",
            client_id=cfg.coordinator.client_id,
            state_dir=cfg.runtime.state_dir,
            outbox_max=cfg.runtime.outbox_max,
            ack_after_handler=ack_after_handler,
            stall_beat_s=STALL_BEAT_S,
            concurrency=COMMAND_CONCURRENCY,
            credentials=lambda: cfg.broker.for_client(
                cfg.coordinator.client_id, cfg.coordinator.credentials
            ),
        )

    async def run(self, session: Session, ready: asyncio.Event | None = None) -> None:
        """Serve until cancelled; ``session`` must be entered already."""
        await self.attach(session)
        await session.wait_connected()
        await self._converge()
        if ready is not None:
            ready.set()
        self._refresh_forecast()
        learning = asyncio.create_task(self._start_estimating())
        try:
            while True:
                await asyncio.sleep(STATS_INTERVAL_S)
                await self._tick()
        finally:
            self.stopping.set()
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
        session.on_connect(self._converge)
        session.on_shared_id(self._shared_id)
        await session.subscribe(topics.every("cmd", "window"), self._on_window_command)
        await session.subscribe(topics.every("cmd", "supervisor"), self._on_window_command)
        await session.subscribe(topics.every("req", "dispenser"), self._on_ticket_request)
        await session.subscribe(topics.every("status"), self._on_presence)
        await session.subscribe(topics.every("health"), self._on_health)
        if self.nearby.halls:
            await session.subscribe(topics.city_queues(), self._on_city_queue)
            await session.subscribe(topics.city_link(), self._on_city_link)

    def _on_city_queue(self, incoming: Incoming) -> None:
        """A nearby hall's queue, brought in by the city bridge (``coordinator.nearby``)."""
        assert incoming.parts.client is not None
        self.nearby.on_queue(incoming.parts.client, incoming.payload)

    def _on_city_link(self, incoming: Incoming) -> None:
        up = incoming.payload.root == 1
        if self.nearby.on_link(up):
            log.info(
                "city link %s: nearby halls %s",
                "up" if up else "down",
                "shown" if up else "hidden until it is back",
            )
            self._notify({"type": "city", "link": up})

    async def _tick(self) -> None:
        batch: Batch = []
        async with self._lock:
            if self.storage_error is not None:
                batch += self._retry_storage()
            try:
                rollover = (
                    self.queue.roll_over_if_due(self.clock())
                    if self.storage_error is None
                    else None
                )
            except StorageFailed as exc:
                rollover = None
                batch += self._storage_failed(exc)
            if rollover is not None:
                batch += self._outcome_batch(rollover, self.queue.seq)
                self._refresh_forecast()
            batch += self._stats()
            batch += self._advise()
            batch += self._unserved()
            self._estimate_waits()
        await self._deliver(batch)

    def _unserved(self) -> Batch:
        """无窗口办理 once when a queue is left with no open window of its building, so the
        day keeps it (the desk's standing alert is gone once a window opens, and the day
        report showed nothing of a branch left without one for an hour)."""
        now = self.clock()
        gaps = self.engine.unserved() if self.cfg.hall.open_at(now) else []
        keys = {(g.service, g.site) for g in gaps}
        batch: Batch = []
        for gap in gaps:
            if (gap.service, gap.site) in self._unserved_seen:
                continue
            alert = no_window_alert(self.engine, gap)
            self.alerts.appendleft((now, alert))
            batch.append((self._topics.event("alert"), alert))
        self._unserved_seen = keys
        return batch

    def _stats(self) -> Batch:
        """Today's KPIs, at most every STATS_INTERVAL_S while anything changes; only where
        the engine is exactly the log (nothing staged). The tick finds that in a quiet
        hall; under load the log is in the middle of a group at almost every tick, so a
        group commit publishes them too, once its own messages have left: before, a burst
        left them unpublished for seconds, and their fold of the tickets finished
        meanwhile then stalled the loop (18-22 ms for 5 s of a burst)."""
        now = time.monotonic()
        if not self._stats_dirty or self.eventlog.staged or now - self._stats_at < STATS_INTERVAL_S:
            return []
        self._stats_dirty, self._stats_at = False, now
        rev = self.queue.seq
        batch: Batch = [(self._topics.stats_state(), self.engine.stats_state(rev))]
        self._notify({"type": "stats", "rev": rev})
        return batch

    def _estimate_waits(self) -> None:
        """Wait estimates (``coordinator.eta``): after a change, once the last refresh's
        cost allows (at most 5% of a core), the hall is captured here and played forward
        in a worker thread; the queues whose shown range moved are republished."""
        eta, now = self.eta, self.clock()
        if eta is None:
            return
        eta.keep_up(now)
        snap = eta.snapshot
        stale = snap is None or now - snap.at > ETA_STALE_S
        # windows paused, resumed, opened or closed: every estimate is off at once (a
        # break's first minute read "within 1 min" with 17 waiting), so not put off
        shape = tuple(w.status for w in self.engine.windows.values())
        if not (self._eta_dirty or stale) or not (eta.due() or shape != self._eta_shape):
            return
        if self._eta_task is not None and not self._eta_task.done():
            return
        self._eta_dirty, self._eta_shape = False, shape
        state = eta.capture(now)
        self._eta_task = asyncio.create_task(self._simulate_waits(eta, state))

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

    async def _start_estimating(self) -> None:
        """The wait estimator, once the queue answers: importing the simulation (numpy) and
        building its hall model are no part of a restart's first reply. Then its counter
        times are learned from the log."""

        def build() -> WaitEstimator:
            # the first tick's express-window advice needs the simulation too, and learning
            # the counter times its module (rich's tables with it: ~40 ms): loaded here,
            # not in the loop, where a restart's first commands wait
            import coordinator.advice
            import coordinator.simulation.learn  # noqa: F401
            from coordinator.eta import WaitEstimator

            return WaitEstimator(self.queue.engine)

        try:
            eta = await asyncio.to_thread(build)
        except Exception:  # the queue serves on with the engine's queueing estimate
            log.exception("wait estimates: the estimator could not be started")
            return
        eta.engine = self.queue.engine  # a storage failure's rebuild may have replaced it
        self.eta = self.queue.engine.estimator = eta
        await self._learn_counter_times(eta)

    async def _learn_counter_times(self, eta: WaitEstimator) -> None:
        """The wait estimates draw each service's counter times from its history in the
        event log's last LEARN_DAYS where there is enough of it, else from today's. Each
        closed day is replayed once; its sums are kept beside the log. The days are read
        in a worker thread and replayed in a forked child: the open day is replayed at
        every start, ~1 s of pure Python for a busy one, which a thread would run holding
        the GIL the loop needs while it answers a restart's waiting devices."""
        from coordinator.simulation.learn import LearnError, learn_counter_times

        since = self.cfg.hall.business_day(self.clock()) - dt.timedelta(days=LEARN_DAYS)
        try:
            fits = await asyncio.to_thread(
                learn_counter_times,
                self.eventlog.path,
                self.cfg,
                since=since,
                stop=self.stopping,
                cache=self.eventlog.path.with_name(f"{self.eventlog.path.stem}-counter-times.json"),
                run=self._in_child(LEARN_DAY_TIMEOUT_S),
            )
        except LearnError as exc:
            log.info("wait estimates: counter times from today only (%s)", exc)
            return
        except ChildFailed as exc:
            if not self.stopping.is_set():
                log.warning("wait estimates: counter times from today only (%s)", exc)
            return
        except Exception:
            log.exception("wait estimates: learning counter times failed")
            return
        eta.fits = fits
        log.info(
            "wait estimates: counter times learned for %s",
            ", ".join(sorted(eta.fits)) or "no service (too little history)",
        )

    async def _simulate_waits(self, eta: WaitEstimator, state: dict[str, Any]) -> None:
        try:
            snapshot = await asyncio.to_thread(
                eta.simulate,
                state,
                self._in_child(ETA_TIMEOUT_S),
            )
        except ChildFailed as exc:
            if not self.stopping.is_set():
                log.warning("wait estimates: the simulation gave nothing (%s)", exc)
            return
        except Exception:
            log.exception("wait estimates: the simulation failed (queueing estimate shown)")
            return
        async with self._lock:
            eta.install(snapshot)
            rev, now = self.queue.seq, self.clock()
            changed = []
            for code in self.engine.services:
                shown = self.engine.eta_range(None, code, now).bounds()
                if self._eta_shown.get(code) != shown:
                    self._eta_shown[code] = shown
                    changed.append(code)
            batch: Batch = []
            if changed and self.eventlog.staged:  # rendered with the group being committed
                self._dirty_services.update(changed)
            elif changed and self.session is not None:
                qrev = self._queue_rev(rev, bump=True)
                batch = [
                    (self._topics.queue_state(code), self.engine.queue_state(code, qrev, now))
                    for code in changed
                ]
            if changed:
                self._notify({"type": "estimates", "rev": rev, "services": changed})
        await self._deliver(batch)

    def _advise(self) -> Batch:
        """Express-window advice (快速办理专窗) for supervisors: when a service's predicted
        wait passes its target, an alert names windows to switch and for how long. The
        queueing estimate finds it, cheaply, every hall minute; the advice published gets
        its predicted effect from a short simulation of the hall from now (a few ms on the
        compiled loop). Each service is advised again only after ADVICE_REPEAT_S."""
        now = self.clock()
        if now - self._advised_at < ADVICE_EVERY_S:
            return []
        self._advised_at = now
        batch: Batch = []
        from coordinator.advice import advice_alert, advise, worth_it
        from coordinator.advice.live import with_simulated_effect

        try:
            advice = advise(self.engine, now, simulate=False)
        except Exception:
            log.exception("express-window advice failed")
            return []
        for item in advice:
            key = (item.service, self.engine.window_site[item.windows[0]])  # (a building's)
            if now - self._advised.get(key, -ADVICE_REPEAT_S) < ADVICE_REPEAT_S:
                continue
            try:
                item = with_simulated_effect(self.engine, now, item)
            except Exception:
                log.exception("express-window advice: simulating the effect failed")
            if not worth_it(item):  # looked at again next minute, as the queue grows
                continue
            self._advised[key] = now
            self.advice.appendleft((now, item))
            alert = advice_alert(item)
            self.alerts.appendleft((now, alert))
            batch.append((self._topics.event("alert"), alert))
            self._notify(
                {
                    "type": "outcome",
                    "rev": self.queue.seq,
                    "events": [alert.model_dump(mode="json", exclude_none=True)],
                    "windows": [],
                    "services": [item.service],
                    "board": False,
                }
            )
        return batch

    @property
    def _topics(self) -> Any:
        assert self.session is not None
        return self.session.topics

    async def _publish(self, topic: str, message: m.Message) -> None:
        assert self.session is not None
        try:
            await self.session.publish(topic, message)
        except NotConnected as exc:
            log.warning(
                "not published (the broker is away; state is republished on reconnect): %s", exc
            )

    async def _deliver(self, batch: Batch) -> None:
        """Publish rendered messages in render order, outside the engine's lock: handed to
        paho in this order at once (so batches delivered one after another leave in that
        order too), then their PUBACKs awaited together. Batches do not wait for each
        other's PUBACKs: under load they overlap."""
        handed = self._hand_over(batch)
        if handed is not None:
            await self._acked(handed)
        elif self._reconnect_due and self.session is not None:
            self._reconnect_due = False
            self.session.reconnect()

    def _hand_over(self, batch: Batch, *, now: bool = False) -> Handed | None:
        """Hand a batch to paho, in order, now (see :meth:`_deliver`); None if empty or
        not sent (the broker is away). ``now``: onto the socket before returning."""
        if not batch:
            return None
        assert self.session is not None
        try:
            return self.session.hand_over(batch, now=now)
        except NotConnected as exc:
            self._not_published(exc)
        return None

    async def _acked(self, handed: Handed) -> None:
        """Wait for a handed batch's PUBACKs; then, after a storage failure is over,
        connect again so the broker hands back the commands refused meanwhile."""
        try:
            await handed.acked()
        except NotConnected as exc:
            self._not_published(exc)
        if self._reconnect_due and self.session is not None:
            self._reconnect_due = False
            self.session.reconnect()

    @staticmethod
    def _not_published(exc: NotConnected) -> None:
        log.warning(
            "not published (the broker is away; state is republished on reconnect): %s", exc
        )

    def _all_state(self) -> Batch:
        """Every retained state from the engine, and a call event for every call still on
        (the voice and the boards' flash act on events, which the broker does not keep)."""
        rev, now, t, engine = self.queue.seq, self.clock(), self._topics, self.engine
        batch: Batch = [(t.window_state(n), engine.window_state(n, rev)) for n in engine.windows]
        qrev = self._queue_rev(rev)
        batch += [(t.queue_state(c), engine.queue_state(c, qrev, now)) for c in engine.services]
        batch += [
            (t.board_state(), self.board_state(rev)),
            (t.stats_state(), engine.stats_state(rev)),
        ]
        if self.forecast is not None:
            today = self.cfg.hall.business_day(now)
            batch.append((t.comfort_state(), self.forecast.comfort_state(rev, today)))
        batch.append((t.health("coordinator", self.cfg.coordinator.client_id), self._health()))
        for win in engine.windows.values():
            ticket = win.current
            if ticket is not None and ticket.state is m.TicketState.CALLED:
                batch.append(
                    (
                        t.event("call"),
                        m.CallEvent(
                            ticket=ticket.number,
                            service=ticket.service,
                            window=win.number,
                            zone=win.zone,
                            recall=ticket.recalls,
                        ),
                    )
                )
        return batch

    async def publish_all(self) -> None:
        """Every retained state, from the engine (and the calls still on)."""
        waiting = self._durable(self.queue.seq)  # what is staged now is shown once kept
        if waiting is not None:
            await waiting
        async with self._lock:
            batch = self._all_state()
        await self._deliver(batch)

    async def _converge(self) -> None:
        """After each (re)connect, once: whatever the broker lost or kept stale, the hall's
        views become the engine's again."""
        session = self.session
        if session is None or self._converged_for == session.connects:
            return
        self._converged_for = session.connects
        self.devices.watch_afresh()  # what the devices did while this was cut off is unknown
        await self.publish_all()

    def _health(self) -> m.DeviceHealth:
        assert self.session is not None
        ok = self.storage_error is None
        components = [
            m.ComponentHealth(
                name="eventlog",
                ok=ok,
                status="ok" if ok else "storage_failed",
                detail=None if ok else (self.storage_error or "")[:200],
            )
        ]
        if self.session.shared_id_suspected:
            components.append(
                m.ComponentHealth(
                    name="mqtt",
                    ok=False,
                    status=m.SHARED_ID,
                    detail="another coordinator is connected with this one's client id",
                )
            )
        if self.engine.suspended:
            components.append(
                m.ComponentHealth(
                    name=m.SUSPENDED,
                    ok=True,
                    status="by_supervisor",
                    detail=" ".join(sorted(self.engine.suspended))[:200],
                )
            )
        return m.DeviceHealth(rev=self.session.next_rev(), components=components)

    def _shared_id(self, suspected: bool) -> Awaitable[None] | None:
        """A second coordinator of this hall on another machine (the hall file copied to
        a spare server, a test run against the hall's broker) takes turns with this one
        on the broker, each serving some of the commands into its own log. Its desk shows
        it at once, whatever reaches the broker: with its own health, as a device's."""
        assert self.session is not None
        client = self.cfg.coordinator.client_id
        health = self._health()
        self.devices.note_health("coordinator", client, health)
        self._notify({"type": "device", "client": client})
        if not self.session.connected:
            return None  # (published with every state on the next connect: _converge)
        return self._deliver([(self._topics.health("coordinator", client), health)])

    def _storage_failed(self, exc: StorageFailed) -> Batch:
        """The log cannot be written: say so once, loudly (alert, health, systemd status)."""
        if self.storage_error is not None:
            return []
        self.storage_error = str(exc)
        log.critical("event log cannot be written; refusing every command until it can: %s", exc)
        alert = m.AlertEvent(
            severity="critical",
            kind="storage_failed",
            message=f"{STORAGE_FAILED}：事件日志无法写入，暂停受理",
        )
        self.alerts.appendleft((self.clock(), alert))
        self._notify(
            {
                "type": "outcome",
                "rev": self.queue.seq,
                "events": [alert.model_dump(mode="json", exclude_none=True)],
                "windows": [],
                "services": [],
                "board": False,
            }
        )
        t = self._topics
        return [
            (t.event("alert"), alert),
            (t.health("coordinator", self.cfg.coordinator.client_id), self._health()),
        ]

    def _retry_storage(self) -> Batch:
        """One real write; if the log takes it, back to serving (and what to publish)."""
        try:
            self.eventlog.probe(self.clock())
        except StorageFailed as exc:
            self.storage_error = str(exc)
            return []
        log.warning("event log writable again; serving commands (%s)", self.storage_error)
        self.storage_error = None
        alert = m.AlertEvent(
            severity="info", kind="storage_recovered", message="事件日志恢复写入，恢复受理"
        )
        self.alerts.appendleft((self.clock(), alert))
        t, session = self._topics, self.session
        batch: Batch = [
            (t.event("alert"), alert),
            (t.health("coordinator", self.cfg.coordinator.client_id), self._health()),
        ]
        # the commands refused meanwhile come back from the broker on a new connection
        self._reconnect_due = session is not None and session.unacked > 0
        return batch

    def _refresh_forecast(self) -> None:
        """A new day: yesterday joins the history. The comfort index is rebuilt off the
        loop (the log's history read in a worker thread, its simulated days, seconds of
        pure Python, in a forked child) and published when ready; the queue keeps serving
        meanwhile."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._rebuild_forecast())

    async def _rebuild_forecast(self) -> None:
        self.forecast = await asyncio.to_thread(self._forecast)
        if self.forecast is not None and self.session is not None:
            async with self._lock:
                rev, today = self.queue.seq, self.cfg.hall.business_day(self.clock())
                batch: Batch = [
                    (self._topics.board_state(), self.board_state(rev)),
                    (self._topics.comfort_state(), self.forecast.comfort_state(rev, today)),
                ]
            await self._deliver(batch)

    def _outcome_batch(
        self, outcome: Outcome, rev: int, later: list[dict[str, Any]] | None = None
    ) -> Batch:
        """The outcome's events; the retained states it changed are marked, and rendered
        once for every command of a group when the group is durable (``_dirty_states``)."""
        t, now = self._topics, self.clock()
        batch: Batch = []
        for event in outcome.events:
            kind = {m.CallEvent: "call", m.TicketEvent: "ticket", m.AlertEvent: "alert"}[
                type(event)
            ]
            batch.append((t.event(kind), event))
        self._dirty_windows |= outcome.windows
        self._dirty_services |= outcome.services
        self._dirty_board = self._dirty_board or outcome.board_changed
        if self.eventlog.staged == 0:  # durable already (a day's roll-over): render now
            batch += self._dirty_states()
        self._stats_dirty = True
        self._eta_dirty = True
        for event in outcome.events:
            if isinstance(event, m.AlertEvent):
                self.alerts.appendleft((now, event))
        if not self._listeners:  # (the web's live stream: dumped only when it listens)
            return batch
        notice = {
            "type": "outcome",
            "rev": rev,
            "events": [e.model_dump(mode="json", exclude_none=True) for e in outcome.events],
            "windows": sorted(outcome.windows),
            "services": sorted(outcome.services),
            "board": outcome.board_changed,
        }
        if later is not None:  # told once the command is durable
            later.append(notice)
        else:
            self._notify(notice)
        return batch

    def deadline_s(self, command: Any) -> float:
        """How long after its arrival a command is still applied: its sender's wait for the
        reply, less the time the reply needs to reach it (REPLY_MARGIN_S, at most a third
        of the wait). One applied later is answered after its sender gave up: a dispenser
        has then printed an offline ticket for the same key press, and the ticket issued
        here, which nobody holds, can be called before that replay voids it."""
        edge = self.cfg.edge
        wait = (
            edge.reply_timeout_s if isinstance(command, m.IssueRequest) else edge.command_timeout_s
        )
        return wait - min(REPLY_MARGIN_S, wait / 3)

    @staticmethod
    def expires(command: Any) -> bool:
        """Offline replays and voids report what already happened: they never expire."""
        return not isinstance(command, m.VoidRequest) and not (
            isinstance(command, m.IssueRequest) and command.offline is not None
        )

    def due(self, incoming: Incoming, sent: float) -> float:
        """When (``time.monotonic()``) this command stops being applied, judged without the
        sender's clock, only from facts fixed when it arrived (``Incoming``): ``sent``, the
        earliest its sender may have sent it (its arrival, less what it may have waited at
        the broker for us: our own clock, unknown across a restart), plus its deadline
        (``deadline_s``). MQTT 5 expiry (whole seconds) adds what the broker proves: a
        command it left L s of still has L - EXPIRY_ROUNDING_S (a long wait, a restart), and
        one it left little of has no more than that (a sender that stood still first)."""
        command = incoming.payload
        arrived = incoming.arrived_at
        if arrived is None:
            arrived = time.monotonic() - incoming.held_s
        due = sent + self.deadline_s(command)
        left = incoming.expiry_left_s
        if left is not None:
            due = max(due, arrived + left - EXPIRY_ROUNDING_S - REPLY_MARGIN_S)
            due = min(due, arrived + left - min(REPLY_MARGIN_S, left / 3))
        return due

    def _sent_at(self, incoming: Incoming) -> float:
        """The earliest its sender may have sent it (see ``due``)."""
        arrived = incoming.arrived_at
        if arrived is None:
            arrived = time.monotonic() - incoming.held_s
        sent = arrived - (incoming.waited_s or 0.0)
        return min(sent, self._refused_at.get(incoming.payload.id, sent))

    async def submit(self, kind: str, incoming: Incoming) -> Submitted | None:
        """A command from MQTT: checked by :mod:`coordinator.authz` first (a refused one is
        answered with the reason and goes no further: None), then judged against its
        sender's deadline, then executed; one the log could not keep raises NotKept."""
        parts = incoming.parts
        role, client, command = parts.role, parts.client or "", incoming.payload
        refusal = self.authz.check(kind, role, client, command, retained=incoming.retained)
        if refusal is None:
            owner = self.queue.log.lookup(command.id)
            refusal = self.authz.claim(owner.source if owner else None, role, client)
            if (
                refusal is None
                and owner is None  # a copy delivered again is answered as the first was
                and isinstance(command, m.IssueRequest)
                and client not in self.engine.suspended  # refused as that, and said so
                and (command.offline is None or command.offline.number not in self.engine.by_number)
            ):
                replay = command.offline is not None
                refusal = self.authz.pace_issue(client, self.clock(), replay=replay)
        if refusal is not None:
            await self._refuse(role, client, command, refusal)
            return None
        # its life counts from its arrival here, or from its first arrival when it was not
        # kept then (a full disk, a lost link) and the broker delivered it again
        first = self._sent_at(incoming)
        due = None
        if self.expires(command):  # (its sender told it failed: at once, see below)
            due = -math.inf if command.id in self._told else self.due(incoming, first)
        if isinstance(command, m.IssueRequest) and command.offline is None:
            self._heard[command.id] = client
            if len(self._heard) > RECENT_REFUSED:
                del self._heard[next(iter(self._heard))]
        done = await self.execute(kind, role, client, command, due=due, over_mqtt=True)
        if done.kept and isinstance(command, m.IssueRequest) and command.offline is None:
            await self._watch_issues(client, done)
        elif done.kept and isinstance(command, m.IssueRequest) and done.record["ok"]:
            await self._watch_replay(client, command)
        elif done.kept and role == "supervisor" and not isinstance(command, m.Query):
            if self.on_console is not None:
                try:
                    self.on_console(client, command, done.record)
                except Exception:  # the audit's disk must not stop the hall
                    log.exception("console command of %s not audited", client)
            await self._watch_console(client, done)
        elif done.kept and role == "window":
            await self._watch_window(client, command, done)
        error = done.record["error"]
        if (
            error
            and error["code"] == REFUSED
            and self.authz.should_alert(f"{role}/{client}", REFUSED)
        ):
            # (once a minute: not logged in the event log, and a thief may keep sending)
            log.warning(
                "%s/%s is suspended by a supervisor: its commands are refused (still "
                "sending: is its password in other hands? rotate it, then resume it)",
                role,
                client,
            )
        if not done.kept:
            # A sender answered "storage_failed" acts on it (a dispenser prints from its
            # lease, a pad shows the failure): the copy the broker delivers again once the
            # disk is back is refused as expired, however young. One that got no answer
            # (its connection was gone) may still be waited for.
            self._refused_at[command.id] = first
            if done.record["error"]["code"] == "storage_failed":
                self._told[command.id] = None
            for recent in (self._refused_at, self._told):
                while len(recent) > RECENT_REFUSED:
                    del recent[next(iter(recent))]
            raise NotKept(done.record["error"]["message"])
        return done

    def _burst(self, key: str, limit: int, window_s: float) -> tuple[int, float] | None:
        """Count one more act of ``key``: (how many, over how long) once more than ``limit``
        came within ``window_s``, else None."""
        times = self._issues.get(key)
        if times is None:
            if len(self._issues) > 1_000:  # only configured senders get this far
                self._issues.clear()
            times = self._issues[key] = deque(maxlen=limit + 1)
        now = self.clock()
        times.append(now)
        if len(times) <= limit or now - times[0] > window_s:
            return None
        return len(times), now - times[0]

    async def _watch_issues(self, client: str, done: Submitted) -> None:
        """Tell the supervisors when one dispenser issues faster than people can take
        tickets (ISSUE_BURST): the queue fills with tickets nobody holds, and a service's
        daily cap runs out. Nothing is refused: a burst of people is possible, a few
        seconds each."""
        await self._watch_burst(
            "dispenser",
            client,
            done,
            "issue_burst",
            ISSUE_BURST,
            "tickets issued online: a stuck key, or its password in other hands",
            "{client} {span:.0f} 秒内取号 {n} 张: 按键卡住, 或设备密码被他人使用",
        )

    async def _watch_console(self, client: str, done: Submitted) -> None:
        """A supervisor console (MQTT) may cancel, call or move any ticket: a person at one
        does a few a minute. Faster is a script with its password: named to the desk,
        which may suspend it (nothing is refused)."""
        await self._watch_burst(
            "supervisor",
            client,
            done,
            "console_burst",
            CONSOLE_BURST,
            "commands from a supervisor console: its password in other hands?",
            "{client} {span:.0f} 秒内操作 {n} 次: 主管台密码被他人使用?",
        )

    async def _watch_window(self, client: str, command: Any, done: Submitted) -> None:
        """A counter takes minutes a taxpayer. A window Pi's login that ends one at a window
        every few seconds (each CALL finishing, skipping or moving the last once
        call_hold_s has passed) takes the queue away while nobody was served, and no
        supervisor can bring a served one back: more than SERVE_BURST ended at one window
        within ISSUE_BURST_S is named to them; so are more than EMERGENCY_BURST emergency
        calls from one login (they buried the other alerts). Nothing is refused."""
        if done.outcome is None:
            return
        events = done.outcome.events
        if any(isinstance(e, m.AlertEvent) and e.kind == "emergency" for e in events):
            await self._watch_burst(
                "window",
                client,
                done,
                "emergency_burst",
                EMERGENCY_BURST,
                "emergency calls",
                "{client} {span:.0f} 秒内紧急呼叫 {n} 次: 按键卡住, 或叫号器密码被他人使用?",
            )
        if not any(isinstance(e, m.TicketEvent) and e.state in ENDED for e in events):
            return
        window = command.window
        await self._watch_burst(
            "window",
            client,
            done,
            "serve_burst",
            SERVE_BURST,
            f"tickets ended (served, missed or moved on) at window {window}",
            f"{{client}} 的 {window}号窗口 {{span:.0f}} 秒内结束 {{n}} 个号 (办结、过号或转出), "
            "快于任何人能办完: 叫号器密码被他人使用?",
            about=str(window),
        )

    async def _watch_burst(
        self,
        role: str,
        client: str,
        done: Submitted,
        kind: str,
        limit: int,
        said: str,
        zh: str,
        about: str = "",
    ) -> None:
        """More than ``limit`` of ``client``'s commands done within ISSUE_BURST_S (counted
        apart for each ``about``, a window say): a warning in the log and an alert ``kind``
        naming it (at most once a minute)."""
        if not done.record.get("ok") or done.duplicate:
            return
        burst = self._burst(f"{role}/{client}/{about}", limit, ISSUE_BURST_S)
        if burst is None or not self.authz.should_alert(f"{role}/{client}", kind):
            return
        n, span = burst
        log.warning("%s %s: %d %s within %.0f s", role, client, n, said, span)
        await self._name_device(kind, client, zh.format(client=client, span=span, n=n))

    async def _watch_replay(self, client: str, command: m.IssueRequest) -> None:
        """A dispenser prints offline when its request got no answer: its link was down
        (presence shows a gap then: DeviceBook.link_gap) or it was answered too late or
        refused (that request was heard here). A ticket printed while this dispenser was
        connected all along, for a request never heard, has a print time somebody made up:
        a login in other hands backdating tickets to the head of the queue (the print time
        places it). Named to the supervisors, who may suspend it; nothing is refused."""
        offline = command.offline
        assert offline is not None
        printed = offline.issued_at.timestamp()
        placed = self.engine.by_number.get(offline.number)
        if placed is not None and placed.offline and abs(placed.issued_at - printed) > CLOCK_SKEW_S:
            if self.authz.should_alert(f"dispenser/{client}", "offline_time_impossible"):
                at = dt.datetime.fromtimestamp(placed.issued_at, self.cfg.hall.tzinfo)
                said = offline.issued_at.isoformat(timespec="minutes")
                log.warning(
                    "dispenser %s replayed %s as printed offline at %s, before today's opening "
                    "or after its arrival: queued as of %s",
                    client,
                    offline.number,
                    said,
                    f"{at:%H:%M:%S}",
                )
                await self._name_device(
                    "offline_while_connected",
                    client,
                    f"{client} 交来离线票 {offline.number}, 称 {said} 打印, 不在今天开门之后、"
                    f"交来之前: 已按 {at:%H:%M} 排队。设备时钟错误, 或密码被他人使用?",
                )
            return
        if self.devices.link_gap("dispenser", client, printed):
            return
        if self._asked_online(client, offline.supersedes):
            return
        if not self.authz.should_alert(f"dispenser/{client}", "offline_while_connected"):
            return
        at = dt.datetime.fromtimestamp(printed, self.cfg.hall.tzinfo)
        log.warning(
            "dispenser %s replayed %s as printed offline at %s, while connected since before "
            "then and with no request of it heard: a made-up print time?",
            client,
            offline.number,
            f"{at:%H:%M:%S}",
        )
        await self._name_device(
            "offline_while_connected",
            client,
            f"{client} 交来离线票 {offline.number}, 称 {at:%H:%M} 打印, 但它当时"
            "一直在线: 时间可能是伪造的, 设备密码被他人使用?",
        )

    def _asked_online(self, client: str, asked: str | None) -> bool:
        """Was ``asked`` an online issue request of this same dispenser (one it may print
        offline for, its answer late or lost)? Any id in the log once passed, so naming
        its own lease request hid a made-up replay from the supervisors."""
        if asked is None:
            return False
        if self._heard.get(asked) == client:
            return True
        entry = self.queue.log.lookup(asked)
        if entry is None or entry.source != f"dispenser/{client}":
            return False
        try:
            body = json.loads(entry.payload)
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("kind") == "issue" and not body.get("offline")

    async def _name_device(self, kind: str, client: str, message: str) -> None:
        """A warning to the supervisors naming a device that may be in other hands (the
        desk offers to suspend it: coordinator.web.views.SUSPEND_FOR)."""
        await self._raise_alert(
            m.AlertEvent(severity="warning", kind=kind, client=client, message=message)
        )

    async def _refuse(self, role: str, client: str, command: Any, refusal: Refusal) -> None:
        """Answer the sender with the reason; tell the log and the supervisors once a
        minute per sender and reason (a script keeps sending)."""
        await self._publish(
            self._topics.reply(role, client), _reply(command, refusal.record(), self.engine.day)
        )
        if not self.authz.should_alert(f"{role}/{client}", refusal.code):
            return
        if refusal is ISSUE_PACED or refusal is REPLAY_PACED:
            rate = self.cfg.security.issue_rate_per_min
            log.warning(
                "dispenser %s issues more than %g tickets a minute: refused until it slows "
                "(security.issue_rate_per_min; a stuck key, or its password in other hands)",
                client,
                rate,
            )
            await self._name_device(
                "issue_burst",
                client,
                f"{client} 取号超过每分钟 {rate:g} 张, 多出的已拒绝: "
                "按键卡住, 或设备密码被他人使用",
            )
            return
        log.warning(
            "%s %s/%s refused: %s: %s",
            getattr(command, "action", "request"),
            role,
            client,
            refusal.code,
            refusal.message,
        )
        await self._raise_alert(refusal_alert(role, client, refusal))

    def _admit(self, topic: str) -> bool:
        """The per-client rate limit, before a message is parsed (see Authority.admit)."""
        if self.authz.admit(topic):
            return True
        levels = topic.split("/")
        role, client = levels[3], levels[4]
        if self.authz.should_alert(f"{role}/{client}", "flood"):
            log.warning(
                "%s %s floods the coordinator: dropping what is over %g/s",
                role[:32],
                client[:32],
                self.cfg.security.client_rate_per_s,
            )
            named = client if ID_PATTERN.fullmatch(client) else "unknown"
            task = asyncio.create_task(
                self._raise_alert(
                    flood_alert(
                        role if ID_PATTERN.fullmatch(role) else "client",
                        named,
                        self.cfg.security.client_rate_per_s,
                    )
                )
            )
            self._alerting.add(task)
            task.add_done_callback(self._alerting.discard)
        return False

    async def _raise_alert(self, alert: m.AlertEvent) -> None:
        self.alerts.appendleft((self.clock(), alert))
        await self._publish(self._topics.event("alert"), alert)
        self._notify(
            {
                "type": "outcome",
                "rev": self.queue.seq,
                "events": [alert.model_dump(mode="json", exclude_none=True)],
                "windows": [],
                "services": [],
                "board": False,
            }
        )

    async def execute(
        self,
        kind: str,
        role: str,
        client: str,
        command: Any,
        *,
        reply: bool = True,
        late: bool = False,
        due: float | None = None,
        over_mqtt: bool = False,
    ) -> Submitted:
        """The one path a command takes, from a device over MQTT or a supervisor on the web:
        logged by the queue, then its reply (unless the caller answers itself) and outcome
        published. ``kept`` is False when the log could not take it, or when it came
        ``over_mqtt`` on a connection that is gone by now (its reply could not be sent, and
        a sender with no reply acts as if nothing happened: a dispenser prints an offline
        ticket); nothing changed then, and the broker delivers it again if it kept it.
        ``due``: the ``time.monotonic()`` after which the sender no longer waits (expired
        if reached)."""
        batch: Batch = []
        notices: list[dict[str, Any]] = []
        async with self._lock:
            now = self.clock()
            if self.storage_error is not None:
                batch += self._retry_storage()
            # judged here, under the lock: waiting for it (a storage probe, a slow outcome)
            # spends the sender's deadline too
            late = late or (due is not None and time.monotonic() > due)
            unanswerable = over_mqtt and not (self.session is not None and self.session.link_up)
            try:
                if unanswerable:
                    done = Submitted(-1, LINK_LOST.record(), None, kept=False)
                elif isinstance(command, m.Query):  # read only: answered even on a bad disk
                    done = Submitted(self.queue.seq, self.queue.answer(role, client, command), None)
                elif self.storage_error is not None and not late:
                    raise StorageFailed(self.storage_error)
                else:
                    done = self.queue.submit(
                        kind, role, client, command, now, late=late, defer=True
                    )
            except StorageFailed as exc:
                batch += self._storage_failed(exc)
                done = _not_kept()
            if reply and not unanswerable:
                batch.insert(
                    0,
                    (
                        self._topics.reply(role, client),
                        _reply(command, done.record, self.engine.day, done.outcome),
                    ),
                )
            if done.rollover is not None:
                batch += self._outcome_batch(done.rollover, done.seq, notices)
                self._refresh_forecast()
            if done.outcome is not None and done.outcome.ok:
                batch += self._outcome_batch(done.outcome, done.seq, notices)
                if kind == "device":  # `hallq status` reads the suspended from its health
                    me = self.cfg.coordinator.client_id
                    batch.append((self._topics.health("coordinator", me), self._health()))
            waiting = self._durable(done.seq, batch) if done.kept else None
        if waiting is not None:
            if await waiting:
                batch = []  # published with its group, once the group was durable
            else:
                # its group's commit failed: nothing of it happened, nothing was published
                done = _not_kept()
                batch = [(self._topics.reply(role, client), _reply(command, done.record, None))]
                batch = batch if reply else []
                notices = []
        for notice in notices:
            self._notify(notice)
        await self._deliver(batch)
        if not done.kept:
            log.warning(
                "%s from %s not applied: %s",
                getattr(command, "action", "request"),
                client,
                "its connection is gone" if unanswerable else "the event log cannot be written",
            )
        elif isinstance(command, m.Query):
            log.info(
                "%s asked whether %s happened: %s",
                client,
                command.about,
                done.record.get("happened"),
            )
        elif done.duplicate:
            log.info("repeated command %s from %s: answered from the log", command.id, client)
        elif not done.record["ok"]:
            log.info(
                "%s from %s refused: %s",
                getattr(command, "action", "request"),
                client,
                done.record["error"]["message"],
            )
        return done

    def _dirty_states(self) -> Batch:
        """Each retained state changed since the last render, rendered (and serialized)
        once, at the log's current revision. Only where the engine is exactly the log:
        nothing staged (a state must never show what a failed commit would take back)."""
        t, rev, now = self._topics, self.queue.seq, self.clock()
        batch: Batch = [
            (t.window_state(n), self.engine.window_state(n, rev))
            for n in sorted(self._dirty_windows)
        ]
        if self._dirty_services:
            qrev = self._queue_rev(rev)
            batch += [
                (t.queue_state(code), self.engine.queue_state(code, qrev, now))
                for code in sorted(self._dirty_services)
            ]
        if self._dirty_board:
            batch.append((t.board_state(), self.board_state(rev)))
        self._dirty_windows, self._dirty_services, self._dirty_board = set(), set(), False
        return batch

    def _durable(self, seq: int, batch: Batch | None = None) -> asyncio.Future[bool] | None:
        """None if entry ``seq`` is durable already, else a future that the next group
        commit resolves: True once it is in the log and ``batch`` (the command's reply and
        events) handed to the broker with the group's, False if its group was lost (then
        nothing of ``batch`` was sent)."""
        if self.eventlog.staged == 0 or seq < 0:
            return None
        future = asyncio.get_running_loop().create_future()
        self._commit_waiters.append((self.eventlog.failures, future, batch or []))
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._group_commit())
        return future

    async def _group_commit(self) -> None:
        """Commit what the commands read so far staged: one transaction, one fsync. The
        write runs in the log's writer thread under the lock: meanwhile the loop reads,
        parses and checks the next commands (they wait for the lock and form the next,
        larger group) and delivers the last group's messages; it runs again while
        commands wait. A lone command with nothing more received (a quiet hall, most of the
        day) is committed on the loop instead while the disk is quick (QUIET_COMMIT_S): the
        hand-off to the writer thread and back cost ~0.4 ms at p50 and tens of ms at p99
        under load (each thread waiting for the GIL), more than the loop could do
        meanwhile; a slow disk's fsync would stall the loop (web, devices) instead. After a
        failure every waiter staged before it is told so: the log kept none of them, and
        the engine was rebuilt. The states the group changed are rendered once, here,
        where the engine is exactly the log. The group's replies and events, in arrival
        order, then its states go to the broker in one batch before any of its commands is
        told it is kept (so before their PUBACKs)."""
        while self._commit_waiters:
            await asyncio.sleep(0)  # the commands already read join this group...
            for _ in range(GROUP_ROUNDS):  # ...and those the broker has handed over
                if self.session is None or not self.session.backlog:
                    break
                await asyncio.sleep(0)
            after: Batch = []  # a storage alert, the states
            async with self._lock:
                waiters, self._commit_waiters = self._commit_waiters, []
                quiet = (
                    len(waiters) <= QUIET_GROUP
                    and self.eventlog.write_s <= QUIET_COMMIT_S
                    and not (self.session is not None and self.session.backlog)
                )
                try:
                    if quiet:  # nothing to read meanwhile: the hand-offs cost more
                        self.queue.commit()
                    else:
                        await self.queue.commit_off_loop()
                except StorageFailed as exc:
                    after += self._storage_failed(exc)
                failures = self.eventlog.failures
                seq = self.queue.seq
                every = checkpoint_every(len(self.engine.tickets))
                checkpoint_due = (
                    seq - self._checkpoint_seq >= every
                    and time.monotonic() - self._checkpoint_at >= CHECKPOINT_MIN_S
                    and self.storage_error is None
                )
                if self.session is not None:
                    after += self._dirty_states()
            batch = [item for g, _, sent in waiters if g == failures for item in sent] + after
            handed = self._hand_over(batch, now=quiet)  # a quiet hall's: no loop pass later
            if checkpoint_due:  # after the group's messages left: its fork delays none of them;
                self._checkpoint(seq)  # nothing awaited since the lock, the engine is the log
            if quiet:  # the WAL's, likewise, where the disk is quick (WAL_CHECKPOINT_COMMITS);
                self.eventlog.checkpoint_wal()  # else SQLite's, in the writer thread's commits
            for generation, future, _ in waiters:
                if not future.done():
                    future.set_result(generation == failures)
            self._track(handed)
            if self.session is not None:  # nothing awaited since the lock: still the log
                self._track(self._hand_over(self._stats(), now=quiet))

    def _track(self, handed: Handed | None) -> None:
        """Wait for a handed batch's PUBACKs in a task of its own (:meth:`_acked`)."""
        if handed is not None:
            task = asyncio.create_task(self._acked(handed))
            self._alerting.add(task)
            task.add_done_callback(self._alerting.discard)

    def _checkpoint(self, seq: int) -> None:
        """Every ``checkpoint_every`` entries, and at most every CHECKPOINT_MIN_S: the
        state is pickled in a forked child (``coordinator.snapshot``: the loop pauses for
        the fork, ~1-3 ms, not for the pickling, ~30 ms for a 10,000-ticket day) and
        written by a worker thread; where the process cannot fork, pickled here, under the
        lock."""
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        self._checkpoint_seq, self._checkpoint_at = seq, time.monotonic()
        day = self.queue.checkpoint_day()
        child = fork_bytes(self.queue.checkpoint)
        made_here = self.queue.checkpoint() if child is None else b""
        collect = child.collect if child is not None else lambda: made_here

        def save() -> bool:
            made = collect()
            return made is not None and self.queue.save_checkpoint(seq, made, day)

        self._checkpointing = asyncio.ensure_future(asyncio.to_thread(save))

    async def book_appointment(
        self,
        service: str,
        day: dt.date,
        start: float,
        *,
        booked_by: str = "taxpayer",
        note: str | None = None,
        person: str | None = None,
    ) -> Any:
        """Book durably, then let the engine know when the booking is for today."""
        async with self._lock:
            now = self.clock()
            booking = self.bookings.book(
                service,
                day,
                start,
                now,
                self.checked_in(),
                booked_by=booked_by,
                note=note,
                person=person,
            )
            day = self.engine.day or self.cfg.hall.business_day(now)
            if booking.day == day.isoformat():  # other days: registered when they open
                self.engine.register_appointment(
                    booking.code, booking.service, booking.start, booking.end
                )
        return booking

    async def cancel_appointment(self, code: str, person: str) -> Any:
        """Cancel durably; the engine forgets the code, so a later check-in with it is an
        ordinary ticket, as replay (which never registers a cancelled booking) has it."""
        async with self._lock:
            booking = self.bookings.cancel(code, person, self.clock(), self.checked_in())
            self.engine.appointments.pop(booking.code, None)
        return booking

    def checked_in(self) -> set[str]:
        """Appointment codes its holder checked in with today (a voided ticket's may check
        in again)."""
        voided = m.TicketState.VOIDED
        return {code for code, t in self.engine.checked_in.items() if t.state is not voided}

    async def _on_presence(self, incoming: Incoming) -> None:
        parts, presence = incoming.parts, incoming.payload
        if (presence.role, presence.client) != (parts.role, parts.client):
            log.warning(
                "presence on %s claims to be %s/%s: ignored",
                incoming.topic,
                presence.role[:32],
                presence.client[:32],
            )
            # its own software never does this: a login in other hands hiding a device
            # that goes offline (the session does not count it towards that one's boots)
            if parts.client and self.authz.should_alert(f"{parts.role}/{parts.client}", "forged"):
                await self._name_device(
                    "presence_forged",
                    parts.client,
                    f"{parts.client} 发布的在线状态冒充 {presence.client[:32]}: "
                    "设备密码被他人使用?",
                )
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
        if self.storage_error is not None:
            return f"UNHEALTHY: {STORAGE_FAILED}, refusing commands ({self.storage_error})"
        link = "online" if self.session is not None and self.session.connected else "broker lost"
        waiting = sum(engine.waiting(c) for c in engine.service_idx)
        open_ = sum(1 for w in engine.windows.values() if w.status.value == "open")
        return f"{link}, {waiting} waiting, {open_}/{len(engine.windows)} windows open"

    def close(self) -> None:
        """A clean stop leaves a checkpoint, so the next start replays nothing. Work in
        worker threads and their forked children (the comfort forecast started by a day's
        first command, say) is told to stop: a closed coordinator whose loop shuts down
        its executor must not wait for a child still simulating days, at a low priority on
        a busy machine, for minutes."""
        self.stopping.set()
        try:
            self.queue.commit()  # staged, never answered: the broker delivers them again
        except StorageFailed as exc:
            log.warning("event log: the last staged commands were not kept: %s", exc)
        seq = self.queue.seq
        if seq > self._checkpoint_seq and self.storage_error is None:
            self.queue.save_checkpoint(seq, self.queue.checkpoint())
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

    def load() -> None:  # in a worker: the loop answers devices meanwhile
        import coordinator.web.server  # noqa: F401

    await asyncio.to_thread(load)
    from coordinator.web.server import start_web

    try:
        web = await start_web(coordinator, settings.http_host, settings.http_port)
    except OSError as exc:
        log.error(
            "web dashboard not started on %s:%d: %s (set coordinator.http_port; 0 turns it off)",
            settings.http_host,
            settings.http_port,
            exc,
        )
        yield None
        return
    try:
        yield web
    finally:
        await web.stop()


class RecentAlerts:
    """The coordinator's recent alerts, newest first, at most ``size``, and at most
    PER_ALERT of one kind about one thing (a window, a device, else its text): one login's
    220 emergency calls in 14 s pushed the 取号过快 alert naming a stolen dispenser out of
    the list, and no desk open then ever saw it (coordinator.web.desk.AlertBook keeps
    what a desk has seen)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: deque[tuple[float, m.AlertEvent]] = deque()
        self._per: Counter[tuple[str, object]] = Counter()

    @staticmethod
    def _key(alert: m.AlertEvent) -> tuple[str, object]:
        return alert.kind, alert.window or alert.client or alert.message

    def appendleft(self, item: tuple[float, m.AlertEvent]) -> None:
        key = self._key(item[1])
        if self._per[key] >= PER_ALERT:  # its own oldest goes, not somebody else's
            for k in range(len(self._items) - 1, -1, -1):
                if self._key(self._items[k][1]) == key:
                    del self._items[k]
                    self._per[key] -= 1
                    break
        self._items.appendleft(item)
        self._per[key] += 1
        while len(self._items) > self._size:
            _, gone = self._items.pop()
            self._per[self._key(gone)] -= 1

    def __iter__(self) -> Iterator[tuple[float, m.AlertEvent]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def settle_heap() -> None:
    """Once started (the modules, the config, the replayed day): what exists now lives as
    long as the process, so the collector stops walking it (``gc.freeze``), and young
    collections come every GC_YOUNG allocations instead of 700. Under load ~30 commands
    are in flight, each holding hundreds of objects for a few milliseconds: with 700 the
    collector ran several times a command and promoted what was in flight, for full
    collections over the whole day's heap to walk again. And the loop waits at most
    SWITCH_INTERVAL_S for the GIL behind a worker thread (a wait-estimate simulation, the
    log's writer), not CPython's 5 ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    sys.setswitchinterval(SWITCH_INTERVAL_S)


async def serve(
    cfg: HallConfig,
    *,
    log_path: Path | None = None,
    dispatch: str = "auto",
    ready: asyncio.Event | None = None,
) -> None:
    """Run a coordinator until cancelled (SIGTERM/SIGINT in the CLI)."""
    from hallq.sdnotify import Notifier, supervised

    coordinator = Coordinator(cfg, log_path=log_path, dispatch=dispatch)
    settle_heap()
    try:
        async with (
            coordinator.make_session() as session,
            supervised(Notifier.from_env(), session.wait_connected(), coordinator.status_line),
        ):
            # devices first: the dashboard (aiohttp's import, its routes) starts once the
            # queue answers over MQTT, so a restart's first reply does not wait for it
            serving = asyncio.Event()
            runner = asyncio.create_task(coordinator.run(session, serving))
            try:
                waiter = asyncio.create_task(serving.wait())
                await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if runner.done():
                    await runner
                async with web_dashboard(coordinator):
                    if ready is not None:
                        ready.set()
                    await runner
            finally:
                await cancel_and_wait(runner)
    finally:
        coordinator.close()
