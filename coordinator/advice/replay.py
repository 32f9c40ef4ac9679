"""A simulated hall day whose window skills change at given times, on the real Engine.

``coordinator.simulation.day.run_day`` fixes each window's skills for the whole day; the
advice needs two things it cannot do, so they live here rather than in a changed
``run_day`` (whose callers stay untouched):

- skill changes at given times (an express window for the morning peak, a window closing),
  applied as the ``SetSkills`` command a supervisor would send, so the dispatch core sees
  exactly what it would see live;
- a start from a state other than an empty hall at opening: tickets already waiting
  (issued at their real past times, so the core's ageing and wait targets see their real
  age) and windows busy until a given time -- the live advice's short look ahead.

The loop mirrors ``run_day``'s: same commands, same no-show handling, same "earliest idle
window takes the arrival" rule, so a day with no changes gives the same waits.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from coordinator.engine import Engine
from coordinator.simulation.day import NO_SHOW_WAIT_S, DayResult, SkillChange, epoch_of
from coordinator.simulation.profile import Arrival
from hallq import messages as m
from hallq.config import HallConfig
from hallq.messages import WindowStatus

Skills = dict[int, dict[str, float]]

_FREE, _NOSHOW, _ARRIVE, _CHANGE, _TICK = 0, 1, 2, 3, 4

# called every ``tick_s`` with the engine and the time; returns changes to schedule (the
# live advice played inside a simulated day)
Hook = Callable[[Engine, float], Sequence["SkillChange"]]


def replay_day(
    cfg: HallConfig,
    core_cls: type[Any],
    skills: Skills,
    arrivals: Sequence[Arrival],
    *,
    day: dt.date,
    start_s: float,
    changes: Sequence[SkillChange] = (),
    backlog: Sequence[Arrival] = (),
    busy_until_s: Mapping[int, float] | None = None,
    hook: Hook | None = None,
    tick_s: float = 300.0,
) -> DayResult:
    """Play ``arrivals`` (times >= ``start_s``) from ``start_s`` with ``changes`` applied.

    ``skills`` are the windows open at ``start_s`` (windows not in it are closed until a
    change opens them). ``backlog`` are tickets issued before ``start_s`` and still waiting;
    ``busy_until_s`` says when a window now at its counter becomes free. Waits of backlog
    tickets are counted from their issue time.
    """
    base = epoch_of(cfg, day)
    engine = Engine(cfg, core_cls, by_site=False)  # (simulated: hall-wide queues)
    engine.start_day({"day": day.isoformat()})
    t0 = base + start_s
    current: Skills = {}

    def set_skills(number: int, sk: Mapping[str, float], now: float) -> None:
        if sk:
            out = engine.apply(
                m.SetSkills(window=number, action="set_skills", skills=dict(sk)), now
            )
            if not out.ok:
                raise ValueError(f"window {number}: {out.error}")
            current[number] = dict(sk)
            if engine.windows[number].status is not WindowStatus.OPEN:
                engine.apply(m.WindowAction(window=number, action="resume"), now)
        else:  # unstaffed: paused, so the engine's estimates and the advice leave it out
            current.pop(number, None)
            engine.apply(m.WindowAction(window=number, action="pause"), now)

    for number in engine.windows:
        if number not in skills:
            engine.apply(m.WindowAction(window=number, action="close"), t0)
    for number, sk in skills.items():
        set_skills(number, sk, t0)
    issue = {c: m.IssueRequest(kind="issue", service=c) for c in engine.services}
    call = {w: m.WindowAction(window=w, action="call") for w in engine.windows}
    skip = {w: m.WindowAction(window=w, action="skip") for w in engine.windows}
    finish = {w: m.Finish(window=w, action="finish") for w in engine.windows}

    by_idx: list[Arrival] = []
    waits: dict[str, list[float]] = {c: [] for c in engine.services}
    turned: Counter[str] = Counter()
    for a in sorted(backlog, key=lambda a: a.t):
        out = engine.apply(issue[a.service], base + a.t)
        if out.ok:
            by_idx.append(a)
        else:
            turned[out.error.code if out.error else "rejected"] += 1

    heap: list[tuple[float, int, int, int]] = []  # (time, kind, seq, window/index)
    idle: dict[int, float] = {}
    busy: dict[int, float] = dict.fromkeys(engine.windows, 0.0)
    at_counter: set[int] = set()  # windows serving a real ticket
    occupied: set[int] = set()  # windows with a free/skip to come
    for number in skills:
        until = (busy_until_s or {}).get(number)
        if until is not None and until > start_s:
            heapq.heappush(heap, (base + until, _FREE, 0, number))
            occupied.add(number)
        else:
            idle[number] = t0
    sched: list[SkillChange] = []

    def schedule(ch: SkillChange) -> None:
        heapq.heappush(heap, (base + max(ch.at_s, start_s), _CHANGE, len(sched), len(sched)))
        sched.append(ch)

    for ch in sorted(changes, key=lambda c: c.at_s):
        schedule(ch)
    close_s = _close_s(cfg)
    if hook is not None:
        t = start_s + tick_s
        while t < close_s:
            heapq.heappush(heap, (base + t, _TICK, 0, 0))
            t += tick_s
    for k, a in enumerate(arrivals):
        heapq.heappush(heap, (base + a.t, _ARRIVE, k, k))
    served = no_shows = 0
    last_end = t0

    def call_next(w: int, now: float) -> None:
        if w not in current:
            idle.pop(w, None)
            return
        out = engine.apply(call[w], now)
        if not out.ok:
            idle[w] = now
            return
        idle.pop(w, None)
        t = out.ticket
        assert t is not None  # a successful call names the ticket it called
        a = by_idx[t.idx]
        if a.no_show:
            heapq.heappush(heap, (now + NO_SHOW_WAIT_S, _NOSHOW, 0, w))
            occupied.add(w)
            busy[w] += NO_SHOW_WAIT_S
        else:
            at_counter.add(w)
            heapq.heappush(heap, (now + a.service_s, _FREE, 0, w))
            occupied.add(w)
            busy[w] += a.service_s
            waits[t.service].append(now - t.issued_at)

    if by_idx:  # a backlog: idle windows call at once, as they would live
        for w in sorted(idle, key=lambda w: (idle[w], w)):
            call_next(w, t0)
    while heap:
        now, kind, _, x = heapq.heappop(heap)
        if kind == _ARRIVE:
            a = arrivals[x]
            out = engine.apply(issue[a.service], now)
            if not out.ok:
                turned[out.error.code if out.error else "rejected"] += 1
                continue
            by_idx.append(a)
            free = [w for w, sk in current.items() if w in idle and a.service in sk]
            if free:
                call_next(min(free, key=idle.__getitem__), now)
        elif kind == _TICK:
            assert hook is not None  # ticks are only scheduled with a hook
            for ch in hook(engine, now):
                schedule(ch)
        elif kind == _CHANGE:
            ch = sched[x]
            set_skills(ch.window, ch.skills, now)
            if ch.window in current and ch.window not in occupied:
                call_next(ch.window, now)
            elif ch.window not in current:
                idle.pop(ch.window, None)
        else:
            occupied.discard(x)
            if kind == _FREE and x in at_counter:
                engine.apply(finish[x], now)
                at_counter.discard(x)
                served += 1
                last_end = now
            elif kind == _NOSHOW:
                engine.apply(skip[x], now)
                no_shows += 1
                last_end = now
            call_next(x, now)
    spans_close = max(start_s, close_s)
    return DayResult(
        waits=waits,
        busy_s={w: busy[w] for w in sorted(set(skills) | {c.window for c in sched})},
        open_s=max(1.0, spans_close - start_s),
        overtime_s=max(0.0, last_end - base - spans_close),
        served=served,
        no_shows=no_shows,
        turned_away=turned,
        queue_samples=[],
    )


def _close_s(cfg: HallConfig) -> float:
    last = cfg.hall.open_hours[-1][1]
    return last.hour * 3600.0 + last.minute * 60.0
