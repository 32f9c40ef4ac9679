"""One simulated hall day, driven through the real :class:`~coordinator.engine.Engine`.

The simulator owns only time and people: an arrival list (drawn once per replication in
``profile``) and a heap of window-free events. Every decision about who is called goes
through ``Engine.apply`` with the same commands the hall's devices send -- a dispenser's
``IssueRequest``, a pad's ``WindowAction(call)``, ``WindowAction(skip)`` and ``Finish`` --
so the policy simulated is the one the coordinator runs, compiled or pure, never a copy.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from coordinator.engine import Engine
from coordinator.simulation.profile import Arrival
from hallq import messages as m
from hallq.config import HallConfig

NO_SHOW_WAIT_S = 60.0     # how long a window waits for a called ticket before skipping it
SAMPLE_S = 300.0          # queue-length samples every 5 minutes
WAIT_BIN_S = 900.0        # mean wait by quarter hour of issue

Skills = dict[int, dict[str, float]]


@dataclass
class DayResult:
    """What one policy did with one day's arrivals; raw enough to aggregate across days."""

    waits: dict[str, list[float]]             # service -> wait seconds of served tickets
    busy_s: dict[int, float]                  # window -> seconds at the counter
    open_s: float                             # seconds the hall is open
    overtime_s: float                         # last finish after closing, 0 if none
    served: int
    no_shows: int
    turned_away: Counter[str]                 # rejection code -> arrivals refused a ticket
    queue_samples: list[tuple[float, int]]    # (seconds from midnight, tickets waiting)
    wait_bins: dict[float, tuple[float, int]] = field(default_factory=dict)  # bin -> (sum, n)


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


def run_day(cfg: HallConfig, core_cls: type[Any], skills: Skills, arrivals: list[Arrival], *,
            day: dt.date, spans: list[tuple[float, float]]) -> DayResult:
    """Play ``arrivals`` through a fresh engine whose windows have ``skills``.

    Windows serve continuously while anyone waits (through lunch and past closing: tickets
    issued before closing are served, the overrun is the overtime); an idle window is called
    on by the first arrival it can serve. Commands are built once per window and service and
    reused: the engine keys nothing on a command's id, only the service layer does.
    """
    base = epoch_of(cfg, day)
    engine = Engine(cfg, core_cls)
    engine.start_day({"day": day.isoformat()})
    t0 = base + spans[0][0]
    for number, sk in skills.items():
        out = engine.apply(m.SetSkills(window=number, action="set_skills", skills=sk), t0)
        if not out.ok:
            raise ValueError(f"window {number}: {out.error}")
    issue = {c: m.IssueRequest(kind="issue", service=c) for c in engine.services}
    call = {w: m.WindowAction(window=w, action="call") for w in engine.windows}
    skip = {w: m.WindowAction(window=w, action="skip") for w in engine.windows}
    finish = {w: m.Finish(window=w, action="finish") for w in engine.windows}
    serves: dict[str, list[int]] = {c: [] for c in engine.services}
    for number, sk in skills.items():
        for c in sk:
            serves[c].append(number)

    idle: dict[int, float] = dict.fromkeys(skills, t0)   # window -> idle since
    busy: dict[int, float] = dict.fromkeys(skills, 0.0)
    by_idx: list[Arrival] = []
    heap: list[tuple[float, int, int]] = []               # (time, kind, window)
    waits: dict[str, list[float]] = {c: [] for c in engine.services}
    wait_bins: dict[float, list[float]] = {}
    turned: Counter[str] = Counter()
    served = no_shows = waiting = 0
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
        if a.no_show:
            heapq.heappush(heap, (now + NO_SHOW_WAIT_S, 1, w))
            busy[w] += NO_SHOW_WAIT_S
        else:
            heapq.heappush(heap, (now + a.service_s, 0, w))
            busy[w] += a.service_s
            wait = now - t.issued_at
            waits[t.service].append(wait)
            bucket = wait_bins.setdefault((t.issued_at - base) // WAIT_BIN_S * WAIT_BIN_S,
                                          [0.0, 0])
            bucket[0] += wait
            bucket[1] += 1

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
            out = engine.apply(issue[a.service], now)
            if not out.ok:
                turned[out.error.code if out.error else "rejected"] += 1
                continue
            by_idx.append(a)
            waiting += 1
            free = [x for x in serves[a.service] if x in idle]
            if free:
                w = min(free, key=idle.__getitem__)
                del idle[w]
                call_next(w, now)
        else:
            if kind == 0:
                engine.apply(finish[w], now)
                served += 1
            else:
                engine.apply(skip[w], now)
                no_shows += 1
            last_end = now
            call_next(w, now)
    close = base + spans[-1][1]
    while next_sample <= spans[-1][1]:
        samples.append((next_sample, waiting))
        next_sample += SAMPLE_S
    return DayResult(
        waits=waits, busy_s=busy, open_s=sum(b - a for a, b in spans),
        overtime_s=max(0.0, last_end - close), served=served, no_shows=no_shows,
        turned_away=turned, queue_samples=samples,
        wait_bins={k: (v[0], int(v[1])) for k, v in wait_bins.items()},
    )
