"""The coordinator process: the hall queue wired to MQTT.

It subscribes to the hall's window commands and ticket requests, submits each to the
:class:`~coordinator.hallqueue.HallQueue` (logged before anything is published), then
publishes the reply, the events and the retained state that changed. On start it replays
the log and republishes every retained state, so boards are right at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coordinator.dispatch import load_core
from coordinator.engine import Outcome
from coordinator.eventlog import EventLog
from coordinator.hallqueue import HallQueue, Submitted
from hallq import messages as m
from hallq.bus import Incoming, Session
from hallq.config import HallConfig
from hallq.errors import NotConnected

log = logging.getLogger("hallq.coordinator")

STATS_INTERVAL_S = 1.0


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
        replayed = self.queue.recover()
        log.info("recovered hall %s from %s: %d entries of the current day replayed",
                 cfg.hall.id, self.eventlog.path, replayed)
        self.session: Session | None = None
        self._stats_dirty = True
        self._lock = asyncio.Lock()

    @property
    def engine(self) -> Any:
        return self.queue.engine

    def make_session(self) -> Session:
        cfg = self.cfg
        return Session(cfg.broker, hall=cfg.hall.id, role="coordinator",
                       client_id=cfg.coordinator.client_id, state_dir=cfg.runtime.state_dir,
                       outbox_max=cfg.runtime.outbox_max)

    async def run(self, session: Session, ready: asyncio.Event | None = None) -> None:
        """Serve until cancelled; ``session`` must be entered already."""
        self.session = session
        topics = session.topics
        await session.subscribe(topics.every("cmd", "window"), self._on_window_command)
        await session.subscribe(topics.every("cmd", "supervisor"), self._on_window_command)
        await session.subscribe(topics.every("req", "dispenser"), self._on_ticket_request)
        await session.wait_connected()
        await self.publish_all()
        if ready is not None:
            ready.set()
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            await self._tick()

    async def _tick(self) -> None:
        async with self._lock:
            rollover = self.queue.roll_over_if_due(self.clock())
            if rollover is not None:
                await self._publish_outcome(rollover, self.queue.seq)
            if self._stats_dirty:
                await self._publish(self._topics.stats_state(),
                                    self.engine.stats_state(self.queue.seq))
                self._stats_dirty = False

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
            await self._publish(t.queue_state(code), self.engine.queue_state(code, rev, now))
        await self._publish(t.board_state(), self.engine.board_state(rev))
        await self._publish(t.stats_state(), self.engine.stats_state(rev))

    async def _publish_outcome(self, outcome: Outcome, rev: int) -> None:
        t, now = self._topics, self.clock()
        for event in outcome.events:
            kind = {m.CallEvent: "call", m.TicketEvent: "ticket", m.AlertEvent: "alert"}[
                type(event)]
            await self._publish(t.event(kind), event)
        for number in sorted(outcome.windows):
            await self._publish(t.window_state(number), self.engine.window_state(number, rev))
        for code in sorted(outcome.services):
            await self._publish(t.queue_state(code), self.engine.queue_state(code, rev, now))
        if outcome.board_changed:
            await self._publish(t.board_state(), self.engine.board_state(rev))
        self._stats_dirty = True

    async def submit(self, kind: str, incoming: Incoming) -> Submitted:
        parts = incoming.parts
        command = incoming.payload
        async with self._lock:
            done = self.queue.submit(kind, parts.role, parts.client or "", command, self.clock())
            await self._publish(self._topics.reply(parts.role, parts.client or ""),
                                _reply(command, done.record, self.engine.day))
            if done.rollover is not None:
                await self._publish_outcome(done.rollover, done.seq)
            if done.outcome is not None and done.outcome.ok:
                await self._publish_outcome(done.outcome, done.seq)
        if done.duplicate:
            log.info("repeated command %s from %s: answered from the log", command.id,
                     parts.client)
        elif not done.record["ok"]:
            log.info("%s from %s refused: %s", getattr(command, "action", "request"),
                     parts.client, done.record["error"]["message"])
        return done

    async def _on_window_command(self, incoming: Incoming) -> None:
        await self.submit("window", incoming)

    async def _on_ticket_request(self, incoming: Incoming) -> None:
        await self.submit("ticket", incoming)

    def close(self) -> None:
        self.eventlog.close()


async def serve(cfg: HallConfig, *, log_path: Path | None = None, dispatch: str = "auto",
                ready: asyncio.Event | None = None) -> None:
    """Run a coordinator until cancelled (SIGTERM/SIGINT in the CLI)."""
    coordinator = Coordinator(cfg, log_path=log_path, dispatch=dispatch)
    try:
        async with coordinator.make_session() as session:
            await coordinator.run(session, ready)
    finally:
        coordinator.close()
