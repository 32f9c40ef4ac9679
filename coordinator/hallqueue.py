"""A hall's queue as the coordinator runs it: the engine, fed only through the event log.

``submit`` is the one way in: it answers a repeated command id with the stored result
(QoS 1 redelivery, device retries), checks that the sender may act for the window, opens
a new business day when one is due, applies the command and appends it to the log
before the caller publishes anything. ``recover`` rebuilds the same state from the log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from coordinator.engine import Engine, Outcome, reject
from coordinator.eventlog import EventLog
from hallq import messages as m
from hallq.config import HallConfig

log = logging.getLogger("hallq.coordinator")

KINDS: dict[str, Any] = {"window": m.WindowCommand, "ticket": m.TicketRequest}


def record_of(outcome: Outcome) -> dict[str, Any]:
    """The part of an outcome a repeated command must get back unchanged."""
    return {
        "ok": outcome.ok,
        "error": outcome.error.model_dump() if outcome.error else None,
        "ticket": outcome.ticket.number if outcome.ticket else None,
        "info": outcome.info.model_dump(mode="json") if outcome.info else None,
        "lease": list(outcome.lease) if outcome.lease else None,
    }


@dataclass
class Submitted:
    seq: int
    record: dict[str, Any]
    outcome: Outcome | None
    rollover: Outcome | None = None

    @property
    def duplicate(self) -> bool:
        return self.outcome is None


class HallQueue:
    def __init__(self, cfg: HallConfig, log_: EventLog, core_cls: type[Any]) -> None:
        self.cfg = cfg
        self.log = log_
        self.engine = Engine(cfg, core_cls)

    @property
    def seq(self) -> int:
        return self.log.last_seq()

    def recover(self) -> int:
        """Replay the current business day from the log; returns the entries replayed."""
        start, entries = self.log.current_day()
        if start is not None:
            self.engine.start_day(json.loads(start.payload))
        mismatches = 0
        for entry in entries:
            command = m.decode(KINDS[entry.kind], entry.payload)
            role, _, client = entry.source.partition("/")
            outcome = self._decide(role, client, command, entry.at)
            if entry.result is not None and record_of(outcome) != entry.result:
                mismatches += 1
                log.warning("replay of %s (seq %d) differs from the logged result: %s != %s",
                            entry.cmd_id, entry.seq, record_of(outcome), entry.result)
        if mismatches:
            log.warning("%d replayed command(s) differ from the log (was the hall config "
                        "changed?); the logged results stand for repeated ids", mismatches)
        return len(entries)

    def authorize(self, role: str, client: str, command: Any) -> Outcome | None:
        """A device acts only for what the hall config gives it; supervisors for any window."""
        if role == "supervisor":
            return None
        try:
            agent = self.cfg.agent(client)
        except KeyError:
            return reject("unknown_device", f"{client} is not an agent of hall {self.cfg.hall.id}")
        if agent.role != role:
            return reject("wrong_role", f"{client} is configured as a {agent.role}, not a {role}")
        if role == "window" and command.window not in self.cfg.windows_for_agent(client):
            return reject("not_your_window", f"{client} may not act for window {command.window}")
        return None

    def _decide(self, role: str, client: str, command: Any, now: float) -> Outcome:
        refused = self.authorize(role, client, command)
        return refused if refused is not None else self.engine.apply(command, now, client)

    def roll_over_if_due(self, now: float) -> Outcome | None:
        if not self.engine.due(now):
            return None
        snapshot, outcome = self.engine.roll_over(now)
        self.log.append(kind="day_open", cmd_id=None, day=snapshot["day"], at=now, source="",
                        payload=json.dumps(snapshot, ensure_ascii=False), result=None)
        keep_from = self.engine.business_day(now) - dt.timedelta(
            days=self.cfg.coordinator.retention_days)
        if dropped := self.log.prune(keep_from):
            log.info("event log: dropped %d entries from before %s", dropped, keep_from)
        log.info("business day %s opened (%d ticket(s) carried over)", snapshot["day"],
                 len(snapshot["carried"]))
        return outcome

    def submit(self, kind: str, role: str, client: str, command: Any, now: float) -> Submitted:
        seen = self.log.lookup(command.id)
        if seen is not None and seen.result is not None:
            return Submitted(seen.seq, seen.result, None)
        rollover = self.roll_over_if_due(now)
        outcome = self._decide(role, client, command, now)
        record = record_of(outcome)
        assert self.engine.day is not None
        seq = self.log.append(kind=kind, cmd_id=command.id, day=self.engine.day.isoformat(),
                              at=now, source=f"{role}/{client}", payload=m.encode(command).decode(),
                              result=record)
        return Submitted(seq, record, outcome, rollover)
