"""A hall's queue as the coordinator runs it: the engine, fed only through the event log.

``submit`` is the one way in: it answers a repeated command id with the stored result
(QoS 1 redelivery, device retries), refuses one that outlived its sender's deadline (not
logged: it changes nothing), checks that the sender may act for the window, opens
a new business day when one is due, applies the command and appends it to the log
before the caller publishes anything. ``recover`` rebuilds the same state from the log.

Log first, or not at all: when the append fails (:class:`StorageFailed`) the engine is
rebuilt from the log before the error goes up, so memory never holds a change the log
lost -- no number consumed, no ticket a window could call that a restart would forget.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import pickle
import sqlite3
import zlib
from dataclasses import dataclass
from typing import Any

from coordinator import suspension
from coordinator.authz import Grants
from coordinator.engine import Engine, Outcome, reject
from coordinator.eventlog import EventLog, StorageFailed
from hallq import messages as m
from hallq.config import HallConfig

log = logging.getLogger("hallq.coordinator")

KINDS: dict[str, Any] = {
    "window": m.WindowCommand,
    "ticket": m.TicketRequest,
    "device": suspension.DeviceCommand,
}
CHECKPOINT_EVERY = 500  # entries between checkpoints, at least (see checkpoint_every)
CHECKPOINT_SHARE = 8  # and at least the day's tickets / this
# 2: a superseded ticket's call withdrawn (older days replayed); 3: compressed;
# 4: suspended devices; 5: appointments checked in; 6: each queue's last call;
# 7: an offline ticket's arrival beside its print time; 8: a queue per service and site;
# 9: a window closing once its counter is free
CHECKPOINT_FORMAT = 9
# zlib's fastest level: a day's pickle ~6x smaller for ~1.2 µs a ticket in the child. The
# blob is written into the log beside the groups' commits, holding its write lock: at
# 1.7 MB (6,700 tickets) those commits waited 35-48 ms, once a second under load
CHECKPOINT_ZLIB_LEVEL = 1
# the engine's state in a checkpoint (the rest of it comes from the hall config)
ENGINE_STATE = (
    "windows",
    "day",
    "tickets",
    "by_number",
    "counters",
    "issued",
    "leases",
    "lease_floor",
    "per_person",
    "recent",
    "calls",
    "appointments",
    "seq",
    "suspended",
    "checked_in",
    "called_last",
)


def config_fingerprint(cfg: HallConfig) -> str:
    """What a replay's result depends on, so what a checkpoint (or anything else derived
    from replaying the log) is only valid for: this state format, code and hall config."""
    from hallq import __version__

    hall = cfg.model_dump_json(
        include={"hall", "coordinator", "zones", "services", "windows", "agents"}
    )
    text = f"{CHECKPOINT_FORMAT}|{__version__}|{hall}"
    return hashlib.sha256(text.encode()).hexdigest()


def record_of(outcome: Outcome) -> dict[str, Any]:
    """The part of an outcome a repeated command must get back unchanged; ``withdrawn``
    only when a call was (the log's evidence of it, absent from every other entry)."""
    return {
        "ok": outcome.ok,
        "error": outcome.error.model_dump() if outcome.error else None,
        "ticket": outcome.ticket.number if outcome.ticket else None,
        "info": outcome.info.model_dump(mode="json") if outcome.info else None,
        "lease": list(outcome.lease) if outcome.lease else None,
    } | ({"withdrawn": outcome.withdrawn} if outcome.withdrawn else {})


def checkpoint_every(tickets: int) -> int:
    """Entries between checkpoints with ``tickets`` tickets in the day. A checkpoint
    pickles the whole day on the event loop (~28 ms at 10,000 tickets); every 500 entries
    that cost grew with the day to ~56 µs a command at its end, and stalled the loop as
    often. Spaced by a share of the day instead (~2.8 µs of pickling per ticket), it stays
    ~2.8 µs x CHECKPOINT_SHARE (~22 µs) a command however long the day; a restart after a
    kill replays at most that many entries."""
    return max(CHECKPOINT_EVERY, tickets // CHECKPOINT_SHARE)


@dataclass
class Submitted:
    seq: int
    record: dict[str, Any]
    outcome: Outcome | None
    rollover: Outcome | None = None
    kept: bool = True  # False: refused because the log could not take it

    @property
    def duplicate(self) -> bool:
        return self.outcome is None and self.kept


class HallQueue:
    def __init__(self, cfg: HallConfig, log_: EventLog, core_cls: type[Any]) -> None:
        self.cfg = cfg
        self.log = log_
        self._core_cls = core_cls
        self.engine = Engine(cfg, core_cls)
        self._issued_for: dict[str, str] = {}  # request id -> ticket number (this process)
        self._superseded: set[str] = set()  # online request ids replaced by offline issues
        self._asked: set[str] = set()  # command ids a pad asked about before they arrived
        self.replay_mismatches = 0  # of the last recover(): replayed results unlike the log's
        self._grants = Grants(cfg)
        # the logins a supervisor may suspend: the agents, and the supervisor consoles (not
        # the desk's users, who act as "supervisor" too and must be able to resume them)
        self._consoles = set(cfg.security.supervisor_clients)
        self._devices = {a.id for a in cfg.agents} | self._consoles

    @property
    def seq(self) -> int:
        return self.log.last_seq()

    @functools.cached_property
    def fingerprint(self) -> str:
        return config_fingerprint(self.cfg)

    def save_checkpoint(self, seq: int, data: bytes, day: str | None = None) -> bool:
        """Store ``data`` (from :meth:`checkpoint` after entry ``seq``, on business ``day``:
        the engine's now if not given); safe in a worker thread. False if it could not be
        written: a checkpoint only saves time."""
        if day is None:
            day = self.checkpoint_day()
        try:
            EventLog.save_checkpoint(self.log.path, seq, day, self.fingerprint, data)
        except (sqlite3.Error, OSError) as exc:
            log.warning("event log: checkpoint at seq %d not written: %s", seq, exc)
            return False
        return True

    def checkpoint_day(self) -> str:
        return self.engine.day.isoformat() if self.engine.day else ""

    def checkpoint(self) -> bytes:
        """The whole state after the last entry, to restore instead of replaying the day."""
        state: dict[str, Any] = {k: getattr(self.engine, k) for k in ENGINE_STATE}
        state["core"] = self.engine.core.export_state()
        state["queue"] = (self._issued_for, self._superseded, self._asked)
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        return zlib.compress(data, CHECKPOINT_ZLIB_LEVEL)

    def _restore(self, data: bytes) -> None:
        state = pickle.loads(zlib.decompress(data))  # our own file, written by checkpoint()
        self.engine.core.import_state(state.pop("core"))
        self._issued_for, self._superseded, self._asked = state.pop("queue")
        for key, value in state.items():
            setattr(self.engine, key, value)
        for hook in self.engine.day_hooks:  # bookings made after the checkpoint
            hook()

    def recover(self) -> int:
        """Rebuild the current business day: from the newest checkpoint of this day when
        there is a valid one, then the entries after it; returns the entries replayed."""
        start = self.log.day_start()
        after = start.seq if start is not None else 0
        if start is not None:
            self.engine.start_day(json.loads(start.payload))
        found = self.log.latest_checkpoint()
        if found is not None and found[0] >= after and found[2] != self.fingerprint:
            log.info(
                "checkpoint at seq %d is for another hall config or version; replaying "
                "the whole day",
                found[0],
            )
        elif found is not None and found[0] >= after:
            try:
                self._restore(found[3])
                after = found[0]
            except Exception:
                log.exception("checkpoint at seq %d unusable; replaying the whole day", found[0])
                self._fresh_engine()
                if start is not None:
                    self.engine.start_day(json.loads(start.payload))
        entries = self.log.entries_since(after)
        mismatches = 0
        for entry in entries:
            command = m.decode(KINDS[entry.kind], entry.payload)
            role, _, client = entry.source.partition("/")
            outcome = self._decide(role, client, command, entry.at)
            if entry.result is not None and record_of(outcome) != entry.result:
                mismatches += 1
                log.warning(
                    "replay of %s (seq %d) differs from the logged result: %s != %s",
                    entry.cmd_id,
                    entry.seq,
                    record_of(outcome),
                    entry.result,
                )
        self.replay_mismatches = mismatches
        if mismatches:
            log.warning(
                "%d replayed command(s) differ from the log (was the hall config "
                "changed?); the logged results stand for repeated ids",
                mismatches,
            )
        return len(entries)

    def _fresh_engine(self) -> None:
        hooks, estimator = self.engine.day_hooks, self.engine.estimator
        self.engine = Engine(self.cfg, self._core_cls)
        self.engine.day_hooks.extend(hooks)
        if estimator is not None:  # the wait estimator follows the new engine
            self.engine.estimator = estimator
            estimator.engine = self.engine
        self._issued_for, self._superseded, self._asked = {}, set(), set()

    def rebuild(self) -> None:
        """Forget memory and replay the log: the rollback of a change the log did not keep."""
        asked = self._asked
        self._fresh_engine()
        self.recover()
        self._asked |= asked  # answers already given stand

    def authorize(self, role: str, client: str, command: Any) -> Outcome | None:
        """A device acts only for what the hall config gives it; supervisors for any window."""
        if role == "supervisor":
            return None
        grant = self._grants.get(client)
        if grant is None:
            return reject("unknown_device", f"{client} is not an agent of hall {self.cfg.hall.id}")
        if grant.role != role:
            return reject("wrong_role", f"{client} is configured as a {grant.role}, not a {role}")
        if role == "window" and command.window not in grant.windows:
            return reject("not_your_window", f"{client} may not act for window {command.window}")
        return None

    def _decide(self, role: str, client: str, command: Any, now: float) -> Outcome:
        if isinstance(command, suspension.DeviceCommand):
            if role != "supervisor":
                return reject("wrong_role", f"{client} is a {role}: only a supervisor may")
            return suspension.apply(self.engine, self._devices, command, now)
        refused = self.authorize(role, client, command)
        if refused is None and (role != "supervisor" or client in self._consoles):
            refused = suspension.refused(self.engine, role, client, command)
        if refused is None and role == "window":
            refused = self.engine.held(command, now)
        if refused is not None:
            return refused
        if not isinstance(command, m.IssueRequest):
            return self.engine.apply(command, now, client)
        return self._issue(command, now, client)

    def _issue(self, request: m.IssueRequest, now: float, client: str) -> Outcome:
        """One key press, one ticket: an offline replay names the online request that timed
        out for the same press; a ticket issued for that request was never printed, so it is
        voided, and the request is refused if it only arrives now. Called already (the
        coordinator could not know sooner), its call is withdrawn (``Engine.withdraw``),
        and the entry's logged result says so (``withdrawn``): replaying the log does it
        again, at the same place."""
        if request.id in self._superseded:
            return reject("superseded", "this key press was issued offline instead")
        late = request.offline.supersedes if request.offline else None
        outcome = self.engine.apply(request, now, client)
        if not outcome.ok or late is None:
            if outcome.ok and outcome.ticket is not None:
                self._issued_for[request.id] = outcome.ticket.number
            return outcome
        self._superseded.add(late)
        earlier = self._issued_for.get(late)
        if earlier is not None:
            void = self.engine.withdraw(earlier, client, "issued offline instead", now)
            if void.withdrawn is not None:
                log.warning(
                    "%s was called before its key press was issued offline as %s: call "
                    "withdrawn (%s, window %s)",
                    earlier,
                    request.offline.number if request.offline else "?",
                    void.withdrawn["was"],
                    void.withdrawn["window"],
                )
            outcome.events += void.events
            outcome.services |= void.services
            outcome.windows |= void.windows
            outcome.withdrawn = void.withdrawn
        return outcome

    def roll_over_if_due(self, now: float) -> Outcome | None:
        if not self.engine.due(now):
            return None
        snapshot, outcome = self.engine.roll_over(now)
        try:
            self.log.append(
                kind="day_open",
                cmd_id=None,
                day=snapshot["day"],
                at=now,
                source="",
                payload=json.dumps(snapshot, ensure_ascii=False),
                result=None,
            )
        except StorageFailed:
            self.rebuild()
            raise
        keep_from = self.engine.business_day(now) - dt.timedelta(
            days=self.cfg.coordinator.retention_days
        )
        if dropped := self.log.prune(keep_from):
            log.info("event log: dropped %d entries from before %s", dropped, keep_from)
        log.info(
            "business day %s opened (%d ticket(s) carried over)",
            snapshot["day"],
            len(snapshot["carried"]),
        )
        return outcome

    def answer(self, role: str, client: str, query: m.Query) -> dict[str, Any]:
        """Whether the command ``query.about`` of this sender happened. Asked after the pad's
        deadline, "no" is final: the id is refused if it arrives later still."""
        record: dict[str, Any] = {
            "ok": True,
            "error": None,
            "ticket": None,
            "info": None,
            "lease": None,
            "happened": False,
        }
        refused = self.authorize(role, client, query)
        if refused is not None:
            return record_of(refused)
        seen = self.log.lookup(query.about)
        if seen is None or seen.result is None or seen.source != f"{role}/{client}":
            self._asked.add(query.about)
            return record
        result = seen.result
        return {
            **record,
            "happened": bool(result["ok"]),
            "ticket": result.get("ticket"),
            "refused": result.get("error"),
        }

    def submit(
        self,
        kind: str,
        role: str,
        client: str,
        command: Any,
        now: float,
        *,
        late: bool = False,
        defer: bool = False,
    ) -> Submitted:
        """Apply and log one command; ``late``: it outlived its sender's deadline and is
        refused unless it was logged already (then the first reply stands). ``defer``: the
        entry is only staged, and durable once :meth:`commit` returns (group commit); the
        caller answers nothing about it before that."""
        seen = self.log.lookup(command.id)
        if seen is not None and seen.result is not None:
            return Submitted(seen.seq, seen.result, None)
        if late or command.id in self._asked:
            expired = reject("expired", "命令已超时，未执行")
            return Submitted(self.seq, record_of(expired), expired)
        rollover = self.roll_over_if_due(now)
        outcome = self._decide(role, client, command, now)
        record = record_of(outcome)
        if outcome.error is not None and outcome.error.code == suspension.REFUSED:
            # not logged, so not its answer for good: an offline ticket's replay refused
            # now is kept once the device is resumed; nor do a thief's commands fill the log
            return Submitted(self.seq, record, outcome, rollover)
        assert self.engine.day is not None
        try:
            seq = self.log.stage(
                kind=kind,
                cmd_id=command.id,
                day=self.engine.day.isoformat(),
                at=now,
                source=f"{role}/{client}",
                payload=m.encode(command).decode(),
                result=record,
            )
            if not defer:
                self.log.commit()
        except StorageFailed:
            self.rebuild()
            raise
        return Submitted(seq, record, outcome, rollover)

    def commit(self) -> int:
        """Make every staged entry durable in one transaction. When the log cannot take
        them, memory is rebuilt from the log, as if none of them had arrived."""
        try:
            return self.log.commit()
        except StorageFailed:
            self.rebuild()
            raise

    async def commit_off_loop(self) -> int:
        """:meth:`commit` with the write (and its fsync) in the log's writer thread; the
        caller stages nothing until it returns."""
        try:
            return await self.log.commit_off_loop()
        except StorageFailed:
            self.rebuild()
            raise
