"""One simulated hall day on the real :class:`~coordinator.engine.Engine` and dispatch core.

The simulator owns only time and people: an arrival list (drawn once per replication in
``profile``) and a heap of window-free events. Who is called is never decided here: the
policy simulated is the one the coordinator runs, compiled or pure, never a copy. Two
loops play a day:

- ``run_day`` sends every step through ``Engine.apply`` with the commands the hall's
  devices send -- a dispenser's ``IssueRequest``, a pad's ``WindowAction(call)``,
  ``WindowAction(skip)`` and ``Finish``. It is the reference, and slow: most of its time
  is the engine's per-command bookkeeping (events, ticket records, estimates).
- ``FastHall`` lets a real engine configure its dispatch core (services, targets, boost,
  ``SetSkills``) once, then drives that core directly from a compiled loop
  (``fastday.py``) that applies the engine's issuing rules. The simulator's default;
  tests hold it to ``run_day``'s waits (and ``advice.replay_day``'s), ticket for ticket.
  ``fast_day`` is one day on a fresh ``FastHall``.
"""

from __future__ import annotations

import datetime as dt
import heapq
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from coordinator.dispatch import core_kind, is_extension, pure_twin
from coordinator.engine import CLASS_OF, Engine
from coordinator.simulation import fastday as fd
from coordinator.simulation.profile import Arrival, DayArrivals, open_spans
from hallq import messages as m
from hallq.config import HallConfig
from hallq.messages import Priority

NO_SHOW_WAIT_S = 60.0  # how long a window waits for a called ticket before skipping it
SAMPLE_S = 300.0  # queue-length samples every 5 minutes
WAIT_BIN_S = 900.0  # mean wait by quarter hour of issue

Skills = dict[int, dict[str, float]]


@dataclass
class DayResult:
    """What one policy did with one day's arrivals; raw enough to aggregate across days."""

    waits: dict[str, list[float]]  # service -> wait seconds of served tickets
    busy_s: dict[int, float]  # window -> seconds at the counter
    open_s: float  # seconds the hall is open
    overtime_s: float  # last finish after closing, 0 if none
    served: int
    no_shows: int
    turned_away: Counter[str]  # rejection code -> arrivals refused a ticket
    queue_samples: list[tuple[float, int]]  # (seconds from midnight, tickets waiting)
    wait_bins: dict[float, tuple[float, int]] = field(default_factory=dict)  # bin -> (sum, n)
    transferred: int = 0  # first services that ended in a transfer
    # appointment holders' waits counted from the start of their slot (when they came early)
    booked_waits: list[float] = field(default_factory=list)
    # a hall of several 办税点: wait seconds of served tickets per site (sites.SiteSplit)
    site_waits: dict[str, list[float]] = field(default_factory=dict)


def sim_config(cfg: HallConfig) -> HallConfig:
    """The hall as simulated: ticket numbers widened to 4 digits where they were fewer.

    A filing-period day issues more than 999 tickets of the busy services; the question the
    simulator answers is how long people wait, not whether the hall file's number width
    suffices (``hallq config check`` and the engine's ``numbers_exhausted`` cover that).
    Daily caps and service hours are kept: they are policy, and arrivals they refuse are
    reported as turned away.
    """
    services = [s.model_copy(update={"width": max(s.width, 4)}) for s in cfg.services]
    return cfg.model_copy(update={"services": services})


def epoch_of(cfg: HallConfig, day: dt.date) -> float:
    """Epoch seconds of local midnight of ``day`` in the hall's time zone."""
    return dt.datetime.combine(day, dt.time(0, 0), cfg.hall.tzinfo).timestamp()


def _engine_for(
    cfg: HallConfig, core_cls: type[Any], skills: Skills, day: dt.date, t0: float
) -> Engine:
    """A fresh engine on ``day`` whose windows were given ``skills`` as a supervisor would."""
    engine = Engine(cfg, core_cls, by_site=False)  # (its loop plays services, not lanes)
    engine.start_day({"day": day.isoformat()})
    for number, sk in skills.items():
        out = engine.apply(m.SetSkills(window=number, action="set_skills", skills=sk), t0)
        if not out.ok:
            raise ValueError(f"window {number}: {out.error}")
    return engine


def run_day(
    cfg: HallConfig,
    core_cls: type[Any],
    skills: Skills,
    arrivals: Sequence[Arrival],
    *,
    day: dt.date,
    spans: list[tuple[float, float]],
) -> DayResult:
    """Play ``arrivals`` through a fresh engine whose windows have ``skills``.

    Windows serve continuously while anyone waits (through lunch and past closing: tickets
    issued before closing are served, the overrun is the overtime); an idle window is called
    on by the first arrival it can serve, the one idle longest when several can. A booked
    taxpayer's slot is registered just before they take their ticket with its code. At the
    end of a transferred taxpayer's first service the window sends ``Transfer``, calls its
    next, and if the ticket still waits the longest-idle window able to serve it calls; the
    second wait counts from the transfer. Commands are built once per window and service
    and reused: the engine keys nothing on a command's id, only the service layer does.
    """
    base = epoch_of(cfg, day)
    t0 = base + spans[0][0]
    engine = _engine_for(cfg, core_cls, skills, day, t0)
    issue = {c: m.IssueRequest(kind="issue", service=c) for c in engine.services}
    call = {w: m.WindowAction(window=w, action="call") for w in engine.windows}
    skip = {w: m.WindowAction(window=w, action="skip") for w in engine.windows}
    finish = {w: m.Finish(window=w, action="finish") for w in engine.windows}
    serves: dict[str, list[int]] = {c: [] for c in engine.services}
    for number, sk in skills.items():
        for c in sk:
            serves[c].append(number)

    idle: dict[int, float] = dict.fromkeys(skills, t0)  # window -> idle since
    busy: dict[int, float] = dict.fromkeys(skills, 0.0)
    at: dict[int, int] = {}  # window -> ticket index it serves
    by_idx: list[Arrival] = []
    moved: dict[int, float] = {}  # ticket index -> transferred at
    heap: list[tuple[float, int, int]] = []  # (time, kind, window)
    waits: dict[str, list[float]] = {c: [] for c in engine.services}
    wait_bins: dict[float, list[float]] = {}
    booked: list[float] = []
    turned: Counter[str] = Counter()
    served = no_shows = transferred = waiting = 0
    samples: list[tuple[float, int]] = []
    next_sample = spans[0][0]
    last_end = t0

    def call_next(w: int, now: float) -> None:
        nonlocal waiting
        out = engine.apply(call[w], now)
        if not out.ok:
            idle[w] = now
            return
        waiting -= 1
        t = out.ticket
        assert t is not None  # a successful call names the ticket it called
        a = by_idx[t.idx]
        again = moved.get(t.idx)
        if again is None and a.no_show:
            heapq.heappush(heap, (now + NO_SHOW_WAIT_S, 1, w))
            busy[w] += NO_SHOW_WAIT_S
            return
        d = a.service_s if again is None else a.transfer_s
        heapq.heappush(heap, (now + d, 0, w))
        busy[w] += d
        at[w] = t.idx
        wait = now - (t.issued_at if again is None else again)
        waits[t.service].append(wait)
        if t.priority is Priority.APPOINTMENT and again is None:
            booked.append(max(0.0, now - max(t.issued_at, t.appt_start)))
        bucket = wait_bins.setdefault((t.issued_at - base) // WAIT_BIN_S * WAIT_BIN_S, [0.0, 0])
        bucket[0] += wait
        bucket[1] += 1

    def wake(service: str, now: float) -> None:
        free = [x for x in serves[service] if x in idle]
        if free:
            w = min(free, key=idle.__getitem__)
            del idle[w]
            call_next(w, now)

    i, n = 0, len(arrivals)
    while i < n or heap:
        if heap and (i >= n or heap[0][0] <= base + arrivals[i].t):
            now, kind, w = heapq.heappop(heap)
            rel = now - base
        else:
            a = arrivals[i]
            i += 1
            rel, now, kind, w = a.t, base + a.t, 2, 0
        while next_sample <= rel:
            samples.append((next_sample, waiting))
            next_sample += SAMPLE_S
        if kind == 2:
            if a.slot is None:
                out = engine.apply(issue[a.service], now)
            else:
                code = f"SIM{i:06d}"
                engine.register_appointment(code, a.service, base + a.slot[0], base + a.slot[1])
                out = engine.apply(
                    m.IssueRequest(kind="issue", service=a.service, appointment=code), now
                )
            if not out.ok:
                turned[out.error.code if out.error else "rejected"] += 1
                continue
            by_idx.append(a)
            waiting += 1
            wake(a.service, now)
            continue
        last_end = now
        if kind == 1:
            engine.apply(skip[w], now)
            no_shows += 1
            call_next(w, now)
            continue
        t_idx = at.pop(w)
        a = by_idx[t_idx]
        if a.transfer is not None and t_idx not in moved:
            out = engine.apply(m.Transfer(window=w, action="transfer", to_service=a.transfer), now)
            if not out.ok:
                raise RuntimeError(f"transfer refused: {out.error}")
            moved[t_idx] = now
            transferred += 1
            waiting += 1
            call_next(w, now)
            if engine.core.queued(t_idx):
                wake(a.transfer, now)
            continue
        engine.apply(finish[w], now)
        served += 1
        call_next(w, now)
    close = base + spans[-1][1]
    while next_sample <= spans[-1][1]:
        samples.append((next_sample, waiting))
        next_sample += SAMPLE_S
    return DayResult(
        waits=waits,
        busy_s=busy,
        open_s=sum(b - a for a, b in spans),
        overtime_s=max(0.0, last_end - close),
        served=served,
        no_shows=no_shows,
        turned_away=turned,
        queue_samples=samples,
        wait_bins={k: (v[0], int(v[1])) for k, v in wait_bins.items()},
        transferred=transferred,
        booked_waits=booked,
    )


Loop = Callable[..., float]


def loop_module(core_cls: type[Any]) -> ModuleType:
    """The ``fastday`` that fits ``core_cls``: compiled with compiled, pure with pure.

    A compiled core with no compiled loop (a build that skipped it) runs the pure loop; it
    is slower, not wrong.
    """
    if core_kind(core_cls) == "compiled" and is_extension(fd):
        return fd
    return pure_twin("coordinator.simulation.fastday")


def day_loop(core_cls: type[Any]) -> Loop:
    """``loop_module(core_cls).play``: the day loop itself."""
    play: Loop = loop_module(core_cls).play
    return play


@dataclass(frozen=True)
class SkillChange:
    """From ``at_s`` (seconds from midnight) window ``window`` serves ``skills``;
    an empty mapping closes the window (it finishes its current ticket, then calls no one)."""

    at_s: float
    window: int
    skills: Mapping[str, float]


class FastHall:
    """A hall set up once for one set of window skills, then playing days on the compiled loop.

    A real engine configures the dispatch core once (services, targets, boost, ``SetSkills``
    per window); each day then starts with ``DispatchCore.clear`` -- the same configured
    core, emptied -- so the set-up is not paid again for every replication. A day may also
    start later than opening, from a backlog and with windows busy, and change skills at
    given times (what ``coordinator.advice.replay_day`` does through the engine).
    """

    def __init__(
        self,
        cfg: HallConfig,
        core_cls: type[Any],
        skills: Skills,
        *,
        day: dt.date,
        spans: list[tuple[float, float]],
    ) -> None:
        self.base = epoch_of(cfg, day)
        self.spans = spans
        self.t0 = self.base + spans[0][0]
        self.engine = engine = _engine_for(cfg, core_cls, skills, day, self.t0)
        self.core = engine.core
        loop = loop_module(core_cls)
        self.play_loop, self.split = loop.play, loop.split
        self.codes = list(engine.services)
        self.service_idx = dict(engine.service_idx)
        self.green = CLASS_OF[Priority.GREEN]
        self.appointment = CLASS_OF[Priority.APPOINTMENT]
        normal = CLASS_OF[Priority.NORMAL]
        services = list(engine.services.values())
        self.cls_of = array(
            "i", [self.green if s.priority == "green" else normal for s in services]
        )
        self.cap = array("q", [-1 if s.daily_cap is None else s.daily_cap for s in services])
        self.ceiling = array("q", [10**s.width for s in services])
        self.hours, self.hours_off = array("d"), array("i", [0])
        for s in services:
            for a, b in open_spans(engine.hours_of(s)):
                self.hours.extend((a, b))
            self.hours_off.append(len(self.hours) // 2)
        self.skills = skills
        # windows open at the start first (in the skills' order), then every other one
        self.numbers = list(skills) + [w for w in engine.windows if w not in skills]
        self.pos = {w: p for p, w in enumerate(self.numbers)}
        self.win_idx = array("i", [engine.windows[w].idx for w in self.numbers])
        self.win_num = array("i", self.numbers)
        nw, ns = len(self.numbers), len(self.codes)
        self.wsk0 = _zeros("b", nw * ns)
        for w, sk in skills.items():
            for c in sk:
                self.wsk0[self.pos[w] * ns + self.service_idx[c]] = 1
        self.incur0 = array("b", [1 if w in skills else 0 for w in self.numbers])
        self.work, self.flags = _doubles(nw + ns), _zeros("q", nw + ns)
        self.wcur, self.by_rank, self.occ = _zeros("i", nw), _zeros("i", nw), _zeros("b", nw)
        self.serve_off, self.serve_pos = _zeros("i", ns + 1), _zeros("i", nw * ns)
        self.ht, self.hk, self.hp = _doubles(nw + 1), _zeros("i", nw + 1), _zeros("i", nw + 1)
        self.offsets = _zeros("q", ns + 1)
        self.n_bins = int(86400 // WAIT_BIN_S) + 1
        self._size = -1
        self._admitted = 0
        self._changed: set[int] = set()

    def _tickets(self, n: int) -> None:
        """Per-ticket buffers, kept from day to day (every slot is written before it is read)."""
        if n > self._size:
            self._size = max(n, 2 * self._size)
            self.tsvc, self.tarr, self.csvc, self.tcls = (_zeros("i", self._size) for _ in range(4))
            (
                self.tissue,
                self.cwait,
                self.tsa,
                self.tsb,
                self.tback,
                self.tcall,
                self.cbook,
                self.grouped,
            ) = (_doubles(self._size) for _ in range(8))

    def _changes(
        self, changes: Sequence[SkillChange], start_s: float
    ) -> tuple[array[float], array[int], array[int], list[Any], list[Any]]:
        ns = len(self.codes)
        order = sorted(range(len(changes)), key=lambda k: changes[k].at_s)
        ch_t, ch_p, ch_sk = array("d"), array("i"), _zeros("b", len(changes) * ns)
        svcs: list[Any] = []
        wts: list[Any] = []
        for row, k in enumerate(order):
            ch = changes[k]
            if ch.window not in self.pos:
                raise ValueError(f"skill change for window {ch.window}, which the hall lacks")
            unknown = [c for c in ch.skills if c not in self.service_idx]
            if unknown:
                raise ValueError(
                    f"skill change for window {ch.window}: unknown service {unknown[0]!r}"
                )
            ch_t.append(self.base + max(ch.at_s, start_s))
            ch_p.append(self.pos[ch.window])
            for c in ch.skills:
                ch_sk[row * ns + self.service_idx[c]] = 1
            svcs.append([self.service_idx[c] for c in ch.skills])
            wts.append([float(x) for x in ch.skills.values()])
            self._changed.add(ch.window)
        return ch_t, ch_p, ch_sk, svcs, wts

    def play(
        self,
        arrivals: Sequence[Arrival],
        *,
        start_s: float | None = None,
        changes: Sequence[SkillChange] = (),
        backlog: Sequence[Arrival] | int = (),
        busy_until_s: Mapping[int, float] | None = None,
    ) -> DayResult:
        """Play ``arrivals`` (in time order) from opening, or from ``start_s``.

        ``backlog``: tickets issued before ``start_s`` and still waiting (counted from
        their issue time) -- or how many of ``arrivals`` are such tickets, in time order at
        their head, when the caller plays one column store several times; ``busy_until_s``:
        when a window now at its counter is free; ``changes``: timed skill changes
        (``replay_day``'s meaning).
        """
        for w in self._changed:  # undo the skill changes of the last day played
            self.engine.push_skills(self.engine.windows[w])
        self._changed.clear()
        start = self.spans[0][0] if start_s is None else start_s
        t0 = self.base + start
        if isinstance(backlog, int):
            n_back = backlog
            cols = DayArrivals.of(arrivals, self.codes)
        else:
            back = sorted(backlog, key=lambda a: a.t)
            n_back = len(back)
            cols = DayArrivals.of([*back, *arrivals] if back else arrivals, self.codes)
        if cols.codes == tuple(self.codes):
            svc_of_code = array("i", range(len(self.codes)))
        else:
            svc_of_code = array("i", [self.service_idx.get(c, -1) for c in cols.codes])
            unknown = {cols.codes[x] for x in set(cols.xfer) if x >= 0 and svc_of_code[x] < 0}
            if unknown:
                raise ValueError(f"transfer to unknown service(s) {sorted(unknown)}")
        ch_t, ch_p, ch_sk, ch_svcs, ch_wts = self._changes(changes, start)
        self._tickets(len(cols))
        self.core.clear()
        spans, nw = self.spans, len(self.numbers)
        free_at = array("d", [(busy_until_s or {}).get(w, -1.0) for w in self.numbers])
        busy, bins, bin_n = _doubles(nw), _doubles(self.n_bins), _zeros("q", self.n_bins)
        samples, counts = _zeros("q", _MAX_SAMPLES), _zeros("q", fd.N_COUNTS)
        wsk, incur = array("b", self.wsk0), array("b", self.incur0)
        rank = array("i", range(nw))
        last_end = self.play_loop(
            self.core,
            cols.t,
            cols.svc,
            cols.service_s,
            cols.no_show,
            cols.xfer,
            cols.xfer_s,
            cols.slot_a,
            cols.slot_b,
            n_back,
            svc_of_code,
            self.cls_of,
            self.green,
            self.appointment,
            self.cap,
            self.ceiling,
            self.hours,
            self.hours_off,
            self.win_idx,
            self.win_num,
            wsk,
            incur,
            rank,
            free_at,
            ch_t,
            ch_p,
            ch_sk,
            ch_svcs,
            ch_wts,
            self.base,
            t0,
            NO_SHOW_WAIT_S,
            start,
            SAMPLE_S,
            WAIT_BIN_S,
            self.tsvc,
            self.tissue,
            self.tarr,
            self.tcls,
            self.tsa,
            self.tsb,
            self.tback,
            self.tcall,
            self.cwait,
            self.csvc,
            self.cbook,
            busy,
            samples,
            bins,
            bin_n,
            counts,
            self.work,
            self.flags,
            self.wcur,
            self.occ,
            self.by_rank,
            self.serve_off,
            self.serve_pos,
            self.ht,
            self.hk,
            self.hp,
        )
        self._admitted = counts[fd.ADMITTED]
        served, no_shows = counts[fd.SERVED], counts[fd.NO_SHOWS]
        self.split(
            self.cwait, self.csvc, counts[fd.CALLED], len(self.codes), self.grouped, self.offsets
        )
        off = self.offsets
        waits = {c: self.grouped[off[k] : off[k + 1]].tolist() for k, c in enumerate(self.codes)}
        turned: Counter[str] = Counter()
        for code, k in (
            ("unknown_service", fd.UNKNOWN),
            ("service_closed", fd.CLOSED),
            ("daily_cap_reached", fd.CAPPED),
            ("numbers_exhausted", fd.EXHAUSTED),
        ):
            if counts[k]:
                turned[code] = counts[k]
        queue = [(start + k * SAMPLE_S, samples[k]) for k in range(counts[fd.SAMPLED])]
        left = counts[fd.ADMITTED] + counts[fd.TRANSFERRED] - counts[fd.CALLED] - no_shows
        next_sample = start + len(queue) * SAMPLE_S
        while next_sample <= spans[-1][1]:
            queue.append((next_sample, left))
            next_sample += SAMPLE_S
        close = self.base + max(start, spans[-1][1])
        shown = set(self.skills) | {ch.window for ch in changes}
        return DayResult(
            waits=waits,
            busy_s={w: busy[p] for p, w in enumerate(self.numbers) if w in shown},
            open_s=sum(b - a for a, b in spans)
            if start_s is None
            else max(1.0, spans[-1][1] - start_s),
            overtime_s=max(0.0, last_end - close),
            served=served,
            no_shows=no_shows,
            turned_away=turned,
            queue_samples=queue,
            wait_bins={k * WAIT_BIN_S: (bins[k], bin_n[k]) for k in range(self.n_bins) if bin_n[k]},
            transferred=counts[fd.TRANSFERRED],
            booked_waits=np.frombuffer(
                self.cbook, dtype=np.float64, count=counts[fd.BOOKED]
            ).tolist(),
        )

    def first_calls(self, n: int) -> array[float]:
        """After ``play``: per arrival ``0..n-1`` (the backlog first) the epoch of its
        first call, -1 where it was refused a ticket or never called (the wait estimates
        read each waiting ticket's call from here)."""
        out = array("d", [-1.0]) * n
        for t in range(self._admitted):
            a = self.tarr[t]
            if a < n:
                out[a] = self.tcall[t]
        return out


def fast_day(
    cfg: HallConfig,
    core_cls: type[Any],
    skills: Skills,
    arrivals: Sequence[Arrival],
    *,
    day: dt.date,
    spans: list[tuple[float, float]],
) -> DayResult:
    """``run_day``'s day, with the core driven from the compiled loop (same waits)."""
    return FastHall(cfg, core_cls, skills, day=day, spans=spans).play(arrivals)


_MAX_SAMPLES = int(2 * 86400 // SAMPLE_S) + 1


def _zeros(code: str, n: int) -> array[int]:
    return array(code, [0]) * n


def _doubles(n: int) -> array[float]:
    return array("d", [0.0]) * n
