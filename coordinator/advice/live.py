"""Live express-window advice: when a queue will miss its wait target, say which windows
to switch to it, for how long, and what that is predicted to do.

Detection is the queueing estimate the boards already show (waiting x mean counter time /
windows serving the service), or the oldest waiting ticket's age when larger (shared
windows make the estimate optimistic): cheap enough to run on every queue change. Only when it
crosses the target does the advice look closer: a short simulation from the current state
(the waiting tickets at their real issue times, busy windows until their expected finish,
arrivals for ``horizon_min`` at the last half hour's rate, counter times lognormal around
the engine's recent means), with and without the switch, on the same random numbers. The
advice states which basis its figures have (``simulation`` or ``queueing``).
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field, replace
from typing import Any

from coordinator.advice.replay import Skills
from coordinator.engine import Engine
from coordinator.simulation.day import FastHall, SkillChange, epoch_of, sim_config
from coordinator.simulation.profile import SERVICE_SIGMA, Arrival, DayArrivals, open_spans
from hallq import messages as m
from hallq.messages import TicketState, WindowStatus

MAX_WINDOWS = 3  # never retask more than this many windows for one service at once
RATE_LOOKBACK_S = 1800.0  # arrival rate from the tickets issued in the last half hour
MIN_REMAINING_S = 30.0  # a busy window is assumed to need at least this much longer
# Advice is shown only when it is worth a supervisor's attention and two windows' staff
# changing desks: the predicted mean wait of the service falls by at least MIN_GAIN_MIN
# minutes and by MIN_GAIN_SHARE of itself, and the other services together lose less than
# it gains (docs/desk.md: the thresholds from `bench/advice_bar.py` on the simulator).
MIN_GAIN_MIN = 5.0
MIN_GAIN_SHARE = 0.2


@dataclass(frozen=True)
class Advice:
    """Switch ``windows`` to serve only ``service`` for ``duration_min``, then switch back.

    ``predicted_wait_min`` is the queueing estimate that triggered it; ``before_min`` and
    ``after_min`` the service's predicted mean wait (tickets waiting now plus those arriving
    within the horizon) without and with the switch; ``others_*`` the same for every other
    service together -- the price the donors' queues pay. ``basis`` says where they came from.
    """

    service: str
    windows: tuple[int, ...]
    restore: dict[int, dict[str, float]]  # window -> skills to go back to
    duration_min: int
    waiting: int
    target_min: float
    predicted_wait_min: float
    before_min: float
    after_min: float
    others_before_min: float
    others_after_min: float
    basis: str  # "simulation" | "queueing"
    until: float = 0.0  # epoch seconds the switch ends
    extra: dict[str, Any] = field(default_factory=dict)

    def commands(self) -> list[m.SetSkills]:
        """The ``SetSkills`` commands that carry the advice out (switch, not restore)."""
        return [
            m.SetSkills(window=w, action="set_skills", skills={self.service: 1.0})
            for w in self.windows
        ]

    def message(self) -> str:
        wins = "、".join(f"{w}号" for w in self.windows)
        return (
            f"{self.service} 预计等候 {self.predicted_wait_min:.0f} 分钟 (目标 "
            f"{self.target_min:g}): 建议 {wins}窗口改为专窗 {self.duration_min} 分钟, "
            f"预计 {self.before_min:.1f}→{self.after_min:.1f} 分钟, 其他业务 "
            f"{self.others_before_min:.1f}→{self.others_after_min:.1f} ({self.basis})"
        )[:200]


def worth_it(
    a: Advice, *, min_gain_min: float = MIN_GAIN_MIN, min_share: float = MIN_GAIN_SHARE
) -> bool:
    """Whether ``a``'s predicted gain justifies asking for it (27.7 -> 27.1 does not)."""
    gain = a.before_min - a.after_min
    loss = max(0.0, a.others_after_min - a.others_before_min)
    return gain >= min_gain_min and gain >= min_share * a.before_min and loss < gain


def advice_alert(a: Advice) -> m.AlertEvent:
    """The supervisors' alert for ``a`` (alerts topic, dashboard)."""
    return m.AlertEvent(
        severity="warning",
        kind="express_advice",
        message=a.message(),
        window=a.windows[0] if a.windows else None,
    )


def queue_wait_min(
    engine: Engine, service: str, extra_windows: int = 0, site: int | None = None
) -> float:
    """Waiting x mean counter time / open windows serving it (at ``site``: its queue and
    windows only); inf when none serves it."""
    waiting = engine.waiting(service, site)
    n = engine.serving_windows(service, site) + extra_windows
    if waiting == 0:
        return 0.0
    if n <= 0:
        return math.inf
    return float(waiting * engine.avg_service_s(service) / n / 60.0)


def oldest_wait_min(engine: Engine, service: str, now: float) -> float:
    """Age of the longest-waiting ticket of ``service`` (0 when none waits)."""
    return engine.oldest_wait_min(service, now)


def predicted_wait_min(engine: Engine, service: str, now: float, site: int | None = None) -> float:
    """The wait a ticket issued now is predicted to have: the queueing estimate, or the
    oldest waiting ticket's age if that is larger. Windows serving several services give
    each only part of their time, so the queueing estimate alone is optimistic exactly
    where hallq's shared windows are; the oldest age is what the queue already proved."""
    return max(queue_wait_min(engine, service, 0, site), engine.oldest_wait_min(service, now, site))


def _pressure(engine: Engine, service: str, site: int | None = None) -> float:
    return queue_wait_min(engine, service, 0, site) / engine.services[service].wait_target_min


def _donors(engine: Engine, service: str, site: int | None = None) -> list[int]:
    """Open windows (of ``site``) not serving ``service``, least pressed first, idle ones
    before busy."""
    wins = [
        w
        for w in engine.windows.values()
        if w.status is WindowStatus.OPEN
        and service not in w.skills
        and (site is None or engine.window_site[w.number] == site)
    ]
    return [
        w.number
        for w in sorted(
            wins,
            key=lambda w: (
                max((_pressure(engine, c, site) for c in w.skills), default=0.0),
                w.current is not None,
                w.number,
            ),
        )
    ]


def advise(
    engine: Engine,
    now: float,
    *,
    horizon_min: float = 30,
    seed: int = 1,
    replications: int = 5,
    simulate: bool = True,
) -> list[Advice]:
    """Advice for every service whose predicted wait (``predicted_wait_min``) exceeds
    its wait target.

    The windows advised are the fewest (at most ``MAX_WINDOWS``) that bring the estimate
    under the target, taken from the open windows that do not serve the service yet (a
    window already serving it cannot add capacity by switching). The switch lasts until
    the backlog is cleared at the boosted rate, rounded up to 5 minutes, at least 10 and
    at most ``horizon_min``. ``simulate=False`` (or a failed simulation) gives the queueing
    estimate as the predicted effect.
    """
    out: list[Advice] = []
    taken: set[int] = set()
    # a hall of several 办税点: each building's queue, helped by its own windows only (a
    # branch window switched to a service serves the branch's queue of it, nobody else's)
    sites: list[int | None] = [None] if len(engine.sites) == 1 else list(range(len(engine.sites)))
    pressed = sorted(
        ((c, site) for c in engine.services for site in sites),
        key=lambda cs: -_pressure(engine, *cs),
    )
    for c, site in pressed:
        target = engine.services[c].wait_target_min
        wait = predicted_wait_min(engine, c, now, site)
        if wait <= target:
            continue
        donors = [w for w in _donors(engine, c, site) if w not in taken]
        # a donor must not push its own services over their targets
        donors = [
            w
            for w in donors
            if all(
                queue_wait_min(engine, x, -1, site) <= engine.services[x].wait_target_min
                for x in engine.windows[w].skills
            )
        ]
        if not donors:
            continue
        k = 1
        n_now = engine.serving_windows(c, site)
        oldest = engine.oldest_wait_min(c, now, site)

        def wait_with(
            k: int, c: str = c, n_now: int = n_now, oldest: float = oldest, site: int | None = site
        ) -> float:
            """Queueing estimate with ``k`` more windows; the oldest ticket's age shrinks
            by the same capacity ratio (nothing served it before if no window did)."""
            aged = oldest * n_now / (n_now + k) if n_now else 0.0
            return max(queue_wait_min(engine, c, k, site), aged)

        while k < min(MAX_WINDOWS, len(donors)) and wait_with(k) > target:
            k += 1
        chosen = tuple(donors[:k])
        taken.update(chosen)
        waiting = engine.waiting(c, site)
        n = engine.serving_windows(c, site) + k
        drain_min = waiting * engine.avg_service_s(c) / n / 60.0
        duration = int(min(horizon_min, max(10.0, 5 * math.ceil(drain_min / 5))))
        after_q = wait_with(k)
        others_q = _others_queue(engine, c)
        fields: dict[str, Any] = {
            "service": c,
            "windows": chosen,
            "restore": {w: dict(engine.windows[w].skills) for w in chosen},
            "duration_min": duration,
            "waiting": waiting,
            "target_min": target,
            "predicted_wait_min": round(min(wait, 999.0), 2),
            "until": now + duration * 60.0,
        }
        advice = Advice(
            **fields,
            basis="queueing",
            before_min=round(min(wait, 999.0), 2),
            after_min=round(after_q, 2),
            others_before_min=others_q[0],
            others_after_min=others_q[1],
        )
        if simulate:
            advice = with_simulated_effect(
                engine, now, advice, horizon_min=horizon_min, seed=seed, replications=replications
            )
        out.append(advice)
    return out


def with_simulated_effect(
    engine: Engine,
    now: float,
    advice: Advice,
    *,
    horizon_min: float = 30,
    seed: int = 1,
    replications: int = 5,
) -> Advice:
    """``advice`` with its effect from a short simulation (``simulate_switch``) instead of
    the queueing estimate; unchanged if the state cannot be simulated. Separate from
    ``advise`` so a caller can pick the advice it will publish first and simulate only that
    (the windows chosen do not depend on the effect). A hall of several 办税点 keeps the
    queueing estimate: the switch's simulation plays one hall's queues."""
    if len(engine.sites) > 1:
        return advice
    try:
        effect = simulate_switch(
            engine,
            now,
            advice.service,
            advice.windows,
            advice.duration_min,
            horizon_min=horizon_min,
            seed=seed,
            replications=replications,
        )
    except (ValueError, KeyError):  # a state the simulation cannot rebuild: keep queueing
        return advice
    return replace(
        advice,
        basis="simulation",
        before_min=effect["before_min"],
        after_min=effect["after_min"],
        others_before_min=effect["others_before_min"],
        others_after_min=effect["others_after_min"],
    )


def _others_queue(engine: Engine, service: str) -> tuple[float, float]:
    """Queueing estimate of the other services' waits (waiting-weighted) before and after
    the donors leave them -- approximated as unchanged: the donors were picked among the
    windows whose services are least pressed, and the estimate cannot say which of a
    donor's services loses its capacity."""
    rows = [(engine.waiting(x), queue_wait_min(engine, x)) for x in engine.services if x != service]
    total = sum(n for n, _ in rows)
    mean = sum(n * w for n, w in rows if math.isfinite(w)) / total if total else 0.0
    return round(mean, 2), round(mean, 2)


def _state(
    engine: Engine, now: float, rng: random.Random, horizon_min: float, base: float
) -> tuple[list[Arrival], list[Arrival], dict[int, float], Skills]:
    """Rebuild the hall as the replay needs it: backlog, future arrivals, busy windows."""
    sigma = SERVICE_SIGMA
    mu = {c: math.log(engine.avg_service_s(c)) - sigma**2 / 2 for c in engine.services}
    backlog = [
        Arrival(t.issued_at - base, t.service, rng.lognormvariate(mu[t.service], sigma), False)
        for t in engine.tickets
        if t.state is TicketState.WAITING and t.directed is None
    ]
    recent = [t for t in engine.tickets if now - RATE_LOOKBACK_S <= t.issued_at <= now]
    future: list[Arrival] = []
    end = now - base + horizon_min * 60.0
    for c in engine.services:
        rate = sum(1 for t in recent if t.service == c) / RATE_LOOKBACK_S
        if rate <= 0:
            continue
        t = now - base + rng.expovariate(rate)
        while t < end:
            future.append(Arrival(t, c, rng.lognormvariate(mu[c], sigma), False))
            t += rng.expovariate(rate)
    future.sort(key=lambda a: a.t)
    busy: dict[int, float] = {}
    skills: Skills = {}
    for w in engine.windows.values():
        if w.status is not WindowStatus.OPEN or not w.skills:
            continue
        skills[w.number] = dict(w.skills)
        if w.current is not None:
            since = w.current.called_at or now
            left = max(MIN_REMAINING_S, engine.avg_service_s(w.current.service) - (now - since))
            busy[w.number] = now - base + left
    return backlog, future, busy, skills


def simulate_switch(
    engine: Engine,
    now: float,
    service: str,
    windows: tuple[int, ...],
    duration_min: float,
    *,
    horizon_min: float = 30,
    seed: int = 1,
    replications: int = 5,
) -> dict[str, float]:
    """Predicted mean waits (min) with and without the switch, from the current state.

    Each replication draws one future (counter times, arrivals) and plays it twice on a
    copy of the hall's dispatch core (``FastHall``: the compiled day loop, the same waits as
    ``replay_day`` through an engine): as is, and with ``windows`` serving only ``service``
    for ``duration_min``. Figures are means over replications of the tickets' mean wait.
    A few milliseconds for Liwan, so the coordinator can afford it when advice fires.
    """
    day = engine.day or engine.business_day(now)
    cfg = sim_config(engine.cfg)
    base = epoch_of(cfg, day)
    core_cls = type(engine.core)
    start_s = now - base
    rows: dict[str, list[float]] = {"before": [], "after": [], "ob": [], "oa": []}
    hall: FastHall | None = None
    for r in range(replications):
        rng = random.Random(f"hallq-advice:{seed}:{r}")
        backlog, future, busy, skills = _state(engine, now, rng, horizon_min, base)
        if hall is None:
            hall = FastHall(cfg, core_cls, skills, day=day, spans=open_spans(cfg.hall.open_hours))
        changes = []
        for w in windows:
            changes.append(SkillChange(start_s, w, {service: 1.0}))
            changes.append(SkillChange(start_s + duration_min * 60.0, w, dict(skills[w])))
        both = DayArrivals.of([*sorted(backlog, key=lambda a: a.t), *future], hall.codes)
        for key, ch in (("before", []), ("after", changes)):
            res = hall.play(
                both, start_s=start_s, changes=ch, backlog=len(backlog), busy_until_s=busy
            )
            waits = _with_unserved(res.waits, backlog, future, start_s + horizon_min * 60.0)
            mine = waits[service]
            others = [x for c, ws in waits.items() if c != service for x in ws]
            rows[key].append(statistics.fmean(mine) / 60.0 if mine else 0.0)
            rows["ob" if key == "before" else "oa"].append(
                statistics.fmean(others) / 60.0 if others else 0.0
            )
    return {
        "before_min": round(statistics.fmean(rows["before"]), 2),
        "after_min": round(statistics.fmean(rows["after"]), 2),
        "others_before_min": round(statistics.fmean(rows["ob"]), 2),
        "others_after_min": round(statistics.fmean(rows["oa"]), 2),
    }


class ActOnAdvice:
    """A ``replay_day`` hook: every tick, ask ``advise`` (queueing basis: it runs inside a
    simulation) and carry the advice out -- switch the windows, switch them back when the
    advice's time is up. A window already switched is left alone until it is restored, so
    two pieces of advice never fight over it. ``taken`` counts the switches made."""

    def __init__(self, *, horizon_min: float = 30) -> None:
        self.horizon_min = horizon_min
        self.locked: dict[int, float] = {}  # window -> epoch it is restored
        self.taken: list[Advice] = []

    def __call__(self, engine: Engine, now: float) -> list[SkillChange]:
        self.locked = {w: t for w, t in self.locked.items() if t > now}
        base = epoch_of(engine.cfg, engine.day or engine.business_day(now))
        changes: list[SkillChange] = []
        for a in advise(engine, now, horizon_min=self.horizon_min, simulate=False):
            if any(w in self.locked for w in a.windows):
                continue
            self.taken.append(a)
            for w in a.windows:
                self.locked[w] = a.until
                changes.append(SkillChange(now - base, w, {a.service: 1.0}))
                changes.append(SkillChange(a.until - base, w, a.restore[w]))
        return changes


def _with_unserved(
    waits: dict[str, list[float]], backlog: list[Arrival], future: list[Arrival], end_s: float
) -> dict[str, list[float]]:
    """Served waits plus a lower bound for tickets never called (a queue no window serves):
    each waited at least until ``end_s``, counted as the latest issued -- so a switch that
    leaves a queue unserved is never reported as a zero wait."""
    out = {c: list(ws) for c, ws in waits.items()}
    for c, ws in out.items():
        issued = sorted((a.t for a in (*backlog, *future) if a.service == c), reverse=True)
        missing = len(issued) - len(ws)
        ws.extend(max(0.0, end_s - t) for t in issued[: max(0, missing)])
    return out
