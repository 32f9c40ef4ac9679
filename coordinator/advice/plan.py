"""Offline express-window plan: which windows to retask, for which services and hours.

A greedy local search on the simulator: start from the hall's configured skills (cut to
the staff limit), try a small set of moves on the services with the worst p95 wait, keep
the best move if it lowers the overall p95 (mean of each day's p95), repeat. Every
candidate is played on the same drawn days (common random numbers), so a move is kept for
what it does, not for the luck of its days. Candidates are played on the compiled day
loop (a few ms per Liwan day); only the variants acting on live advice go through the
engine (~1 s a day), since the advice reads the engine's state as the day goes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coordinator.advice.live import ActOnAdvice
from coordinator.advice.replay import Skills, replay_day
from coordinator.dispatch import load_core
from coordinator.simulation import draw_days, sim_day
from coordinator.simulation.day import DayResult, FastHall, SkillChange, sim_config
from coordinator.simulation.policies import configured_skills, dedicated_skills
from coordinator.simulation.profile import Arrival, Demand, open_spans
from coordinator.simulation.report import PolicyReport
from hallq.config import HallConfig

# the two arrival peaks of the profile (10:00, 14:30) as seconds from midnight: where an
# express window earns its keep
PEAKS_S: tuple[tuple[float, float], ...] = ((9.5 * 3600, 11.5 * 3600), (14 * 3600, 16 * 3600))
SEARCH_DAYS = 10  # days per candidate during the search (all replications at the end)
MOVES_PER_ROUND = 12
SEARCH_SEED_OFFSET = 100_003  # search days are drawn apart from the reported ones


@dataclass(frozen=True)
class Move:
    """One change to the day: ``add`` service at ``weight`` to a window all day, or make a
    window an ``express`` window serving only ``service`` in some of the peak hours
    (``peaks`` indexes ``PEAKS_S``)."""

    kind: str  # "add" | "express"
    window: int
    service: str
    weight: float = 2.0
    peaks: tuple[int, ...] = (0, 1)

    def describe(self) -> str:
        if self.kind == "add":
            return (
                f"window {self.window}: also serve {self.service} (weight {self.weight:g}) all day"
            )
        spans = ", ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in (PEAKS_S[k] for k in self.peaks))
        return f"window {self.window}: express window for {self.service} during {spans}"


def _hhmm(s: float) -> str:
    return f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}"


@dataclass
class Staffing:
    """Skills at opening plus timed changes: what one candidate day runs with."""

    skills: Skills
    changes: list[SkillChange] = field(default_factory=list)

    def with_move(self, mv: Move) -> Staffing:
        skills = {w: dict(s) for w, s in self.skills.items()}
        changes = list(self.changes)
        if mv.kind == "add":
            skills[mv.window][mv.service] = mv.weight
        else:
            for a, b in (PEAKS_S[k] for k in mv.peaks):
                changes.append(SkillChange(a, mv.window, {mv.service: 1.0}))
                changes.append(SkillChange(b, mv.window, dict(skills[mv.window])))
        return Staffing(skills, changes)


@dataclass
class Plan:
    """The search's answer and the predictions it rests on (minutes, mean ± 95% CI)."""

    hall: str
    volume: float
    day_of_month: int | None
    staff_limit: int
    open_windows: list[int]
    moves: list[Move]
    staffing: Staffing
    reports: dict[str, PolicyReport]  # "fifo", "configured", "planned"
    replications: int
    seed: int
    live_switches: list[int] = field(default_factory=list)  # per day, "advised" variant

    def summary(self) -> dict[str, Any]:
        """Mean and p95 per service and overall for each variant, for tables and JSON."""
        out: dict[str, Any] = {}
        for k, rep in self.reports.items():
            out[k] = {
                svc: {
                    "mean": _r(v["mean"].mean),
                    "p95": _r(v["p95"].mean),
                    "mean_ci": _r(v["mean"].half),
                    "p95_ci": _r(v["p95"].half),
                }
                for svc, v in rep.waits.items()
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "hall": self.hall,
            "volume": self.volume,
            "day_of_month": self.day_of_month,
            "staff_limit": self.staff_limit,
            "open_windows": self.open_windows,
            "moves": [m.describe() for m in self.moves],
            "replications": self.replications,
            "seed": self.seed,
            "live_switches_per_day": self.live_switches,
            "wait_min": self.summary(),
        }

    def render(self) -> str:
        """A plain-text plan for a supervisor: the moves, then the predicted waits."""
        day = (
            "average filing-period day" if self.day_of_month is None else f"day {self.day_of_month}"
        )
        lines = [
            (
                f"{self.hall}: plan for {self.volume:.0f} arrivals ({day}), "
                f"{len(self.open_windows)} of {self.staff_limit} staff, "
                f"{self.replications} day(s), seed {self.seed}"
            )
        ]
        lines += [f"  - {m.describe()}" for m in self.moves] or [
            "  (no move beats the hall's skills)"
        ]
        if self.live_switches:
            lines.append(
                f"  live advice acted on in the 'advised' day: "
                f"{sum(self.live_switches) / len(self.live_switches):.1f} switches/day"
            )
        s = self.summary()
        keys = list(self.reports)
        lines.append("wait min (mean / p95):  " + "  ".join(f"{k:>18}" for k in keys))
        for svc in s[keys[0]]:
            cells = "  ".join(
                f"{s[k][svc]['mean']:>8.2f} / {s[k][svc]['p95']:>6.2f}"
                if not math.isnan(s[k][svc]["mean"])
                else f"{'-':>18}"
                for k in keys
            )
            lines.append(f"{svc:>22}  {cells}")
        return "\n".join(lines)


def _r(x: float) -> float:
    return round(x, 3) if not math.isnan(x) else math.nan


def limit_staff(cfg: HallConfig, skills: Skills, staff_limit: int) -> Skills:
    """Keep ``staff_limit`` windows open: drop first the windows whose services are best
    covered by the others (the drop that strands the fewest taxpayers), never a service's
    last window while another choice exists."""
    kept = {w: dict(s) for w, s in skills.items()}
    while len(kept) > max(1, staff_limit):
        cover = {c: sum(1 for s in kept.values() if c in s) for s in kept.values() for c in s}
        victim = max(
            kept, key=lambda w: (min((cover[c] for c in kept[w]), default=0), -len(kept[w]), w)
        )
        del kept[victim]
    return kept


def _evaluate(
    cfg: HallConfig,
    core_cls: type[Any],
    st: Staffing,
    days: Sequence[Sequence[Arrival]],
    date: dt.date,
    start_s: float,
    *,
    live: bool = False,
    switches: list[int] | None = None,
) -> list[DayResult]:
    """Play ``days`` with ``st``; ``live`` also acts on the live advice every 5 minutes
    (``switches`` collects how many switches each day made). Without it the days run on
    the compiled loop (``FastHall``, the same waits as ``replay_day``); the live advice
    needs the engine's state at every tick, so those days go through the engine."""
    if not live:
        hall = FastHall(cfg, core_cls, st.skills, day=date, spans=open_spans(cfg.hall.open_hours))
        return [hall.play(d, start_s=start_s, changes=st.changes) for d in days]
    out = []
    for d in days:
        hook = ActOnAdvice()
        out.append(
            replay_day(
                cfg,
                core_cls,
                st.skills,
                d,
                day=date,
                start_s=start_s,
                changes=st.changes,
                hook=hook,
            )
        )
        if switches is not None:
            switches.append(len(hook.taken))
    return out


def _score(results: list[DayResult]) -> tuple[float, float]:
    """(mean of daily p95, mean of daily mean) over all served tickets, minutes."""
    rep = PolicyReport.from_days("x", "x", results, {})
    return rep.waits["all"]["p95"].mean, rep.waits["all"]["mean"].mean


def _worse(a: PolicyReport, b: PolicyReport) -> bool:
    """Whether ``a`` has a higher (p95, mean) overall than ``b``."""
    wa, wb = a.waits["all"], b.waits["all"]
    return (wa["p95"].mean, wa["mean"].mean) > (wb["p95"].mean, wb["mean"].mean)


def candidate_moves(
    st: Staffing,
    rep: PolicyReport,
    targets: Mapping[str, float],
    used: set[int],
    limit: int = MOVES_PER_ROUND,
) -> list[Move]:
    """Moves aimed at the services furthest over (or nearest) their wait target.

    Donor windows: open, not yet moved, not serving the service, serving the least pressed
    services (lowest p95 / target). Each service gets an ``add`` from its two best donors
    and, from the best, an ``express`` try for both peaks and for each peak alone.
    """

    def pressure(c: str) -> float:
        p95 = rep.waits.get(c, {}).get("p95")
        return 0.0 if p95 is None or math.isnan(p95.mean) else p95.mean / targets[c]

    worst = sorted((c for c in targets if pressure(c) > 0), key=pressure, reverse=True)
    moves: list[Move] = []
    proposed: set[int] = set()
    for c in worst:
        donors = [
            w for w, s in st.skills.items() if w not in used and w not in proposed and c not in s
        ]
        donors.sort(key=lambda w: (max((pressure(x) for x in st.skills[w]), default=0.0), w))
        if not donors:
            continue
        first = donors[0]
        proposed.update(donors[:2])
        moves.append(Move("add", first, c))
        moves += [Move("express", first, c, peaks=k) for k in ((0, 1), (0,), (1,))]
        if len(donors) > 1:
            moves.append(Move("add", donors[1], c))
        if len(moves) >= limit:
            break
    return moves[:limit]


def plan_day(
    cfg: HallConfig,
    *,
    volume: float,
    day_of_month: int | None = None,
    staff_limit: int | None = None,
    replications: int = 10,
    seed: int = 1,
    core_kind: str = "auto",
    rounds: int = 6,
    search_days: int = SEARCH_DAYS,
    live: bool = True,
    log: Callable[[str], None] | None = None,
    demand: Demand | None = None,
) -> Plan:
    """Search moves that lower the day's p95 wait with at most ``staff_limit`` windows open.

    The search plays ``search_days`` days drawn for it alone; the final figures for FIFO,
    the configured skills and the plan use ``replications`` other days (the same days for
    all variants), so the plan is judged out of sample. A move is kept only if it lowers
    the search days' p95 (ties: the mean), and the whole plan is dropped if it is worse
    than the configured skills on the reported days.
    ``live`` adds two variants acting on the live advice every 5 minutes (``ActOnAdvice``):
    the plan with it -- hallq's policy with express-window advice -- and FIFO with it.
    ``demand`` is the hall's (e.g. learned from its event log); the seed hall's by default.
    """
    core_cls = load_core(core_kind)
    sc = sim_config(cfg)
    demand = demand or Demand.for_services([s.code for s in cfg.services])
    spans = open_spans(cfg.hall.open_hours)
    start_s = spans[0][0]
    limit = len(cfg.windows) if staff_limit is None else staff_limit
    date = sim_day(day_of_month)
    days = draw_days(
        cfg, demand, volume=volume, day_of_month=day_of_month, replications=replications, seed=seed
    )
    # the search plays days of its own, so the reported figures are out of sample: a move
    # kept for the luck of the days it was tried on does not also look good on them
    search = draw_days(
        cfg,
        demand,
        volume=volume,
        day_of_month=day_of_month,
        replications=max(1, search_days),
        seed=seed + SEARCH_SEED_OFFSET,
    )
    targets = {s.code: s.wait_target_min for s in cfg.services}

    base = Staffing(limit_staff(cfg, configured_skills(cfg), limit))
    best_res = _evaluate(sc, core_cls, base, search, date, start_s)
    best, best_score = base, _score(best_res)
    moves: list[Move] = []
    used: set[int] = set()
    if log:
        log(f"configured: p95 {best_score[0]:.2f} mean {best_score[1]:.2f}")
    for _ in range(rounds):
        rep = PolicyReport.from_days("x", "x", best_res, {})
        found: tuple[tuple[float, float], Move, Staffing, list[DayResult]] | None = None
        for mv in candidate_moves(best, rep, targets, used):
            st = best.with_move(mv)
            res = _evaluate(sc, core_cls, st, search, date, start_s)
            score = _score(res)
            if log:
                log(f"  try {mv.describe()}: p95 {score[0]:.2f} mean {score[1]:.2f}")
            if score < best_score and (found is None or score < found[0]):
                found = (score, mv, st, res)
        if found is None:
            break
        best_score, mv, best, best_res = found
        moves.append(mv)
        used.add(mv.window)
        if log:
            log(f"keep {mv.describe()}")

    fifo = Staffing(limit_staff(cfg, dedicated_skills(cfg, demand), limit))
    reports = {
        "fifo": PolicyReport.from_days(
            "fifo",
            "per-service FIFO, dedicated windows",
            _evaluate(sc, core_cls, fifo, days, date, start_s),
            fifo.skills,
        ),
        "configured": PolicyReport.from_days(
            "configured",
            "hallq dispatch, hall skills",
            _evaluate(sc, core_cls, base, days, date, start_s),
            base.skills,
        ),
        "planned": PolicyReport.from_days(
            "planned",
            "hallq dispatch + express plan",
            _evaluate(sc, core_cls, best, days, date, start_s),
            best.skills,
        ),
    }
    if _worse(reports["planned"], reports["configured"]):
        # kept on the search days but worse on all of them: the hall's skills stand
        if log:
            log("plan worse than configured on all days: dropped")
        best, moves = base, []
        reports["planned"] = PolicyReport.from_days(
            "planned",
            "hallq dispatch + express plan",
            _evaluate(sc, core_cls, base, days, date, start_s),
            base.skills,
        )
    switches: list[int] = []
    if live:
        reports["fifo_advised"] = PolicyReport.from_days(
            "fifo_advised",
            "per-service FIFO + live advice",
            _evaluate(sc, core_cls, fifo, days, date, start_s, live=True),
            fifo.skills,
        )
        reports["advised"] = PolicyReport.from_days(
            "advised",
            "hallq + plan + live advice",
            _evaluate(sc, core_cls, best, days, date, start_s, live=True, switches=switches),
            best.skills,
        )
    return Plan(
        hall=cfg.hall.id,
        volume=volume,
        day_of_month=day_of_month,
        staff_limit=limit,
        open_windows=sorted(base.skills),
        moves=moves,
        staffing=best,
        reports=reports,
        replications=replications,
        seed=seed,
        live_switches=switches,
    )
