"""Express-window advice: live advice on a small hall engine, the offline plan, the alert."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from coordinator.advice import Advice, advice_alert, advise, plan_day, replay_day
from coordinator.dispatch import load_core
from coordinator.engine import Engine
from coordinator.simulation import draw_days, sim_day
from coordinator.simulation.day import DayResult, FastHall, SkillChange, run_day, sim_config
from coordinator.simulation.policies import configured_skills
from coordinator.simulation.profile import Demand, open_spans
from hallq import messages as m

from .halls import at, small_hall


@pytest.fixture
def engine(core_cls: type[Any]) -> Engine:
    e = Engine(small_hall(), core_cls)
    e.roll_over(at(8))
    return e


def _issue(e: Engine, n: int, service: str = "tax-filing") -> None:
    for i in range(n):
        assert e.apply(m.IssueRequest(kind="issue", service=service), at(9, 0, i * 10)).ok


def test_long_queue_gets_advice_naming_a_window_not_serving_it(engine: Engine) -> None:
    _issue(engine, 30)  # 30 x 1.63 min / 3 windows ~ 16 min > the 10 min target
    assert engine.apply(m.WindowAction(window=3, action="call"), at(9, 5)).ok
    advice = advise(engine, at(9, 6), seed=1)
    assert [a.service for a in advice] == ["tax-filing"]
    a = advice[0]
    assert a.windows
    assert all("tax-filing" not in engine.windows[w].skills for w in a.windows)
    assert a.predicted_wait_min > a.target_min == 10
    assert a.basis == "simulation"
    assert 10 <= a.duration_min <= 30
    assert a.after_min < a.before_min  # one more window: shorter waits
    assert a.restore == {w: engine.windows[w].skills for w in a.windows}
    assert [c.skills for c in a.commands()] == [{"tax-filing": 1.0}] * len(a.windows)
    # deterministic for a seed
    again = advise(engine, at(9, 6), seed=1)[0]
    assert (again.before_min, again.after_min) == (a.before_min, a.after_min)


def test_queueing_basis_when_not_simulating(engine: Engine) -> None:
    _issue(engine, 30)
    a = advise(engine, at(9, 6), simulate=False)[0]
    assert a.basis == "queueing"
    assert a.after_min < a.before_min


def test_no_advice_when_queues_are_short(engine: Engine) -> None:
    assert advise(engine, at(9)) == []
    _issue(engine, 3)
    _issue(engine, 2, "invoice")
    assert advise(engine, at(9, 1)) == []


def test_advice_alert_is_a_valid_alert_event(engine: Engine) -> None:
    _issue(engine, 40)
    a = advise(engine, at(9, 7), replications=2)[0]
    alert = advice_alert(a)
    assert isinstance(alert, m.AlertEvent)
    assert (alert.severity, alert.kind, alert.window) == ("warning", "express_advice", a.windows[0])
    assert m.AlertEvent.model_validate_json(alert.model_dump_json()) == alert
    assert f"{a.windows[0]}号" in alert.message
    assert len(alert.message) <= 200


def test_advice_is_shown_only_when_its_gain_is_worth_a_switch(engine: Engine) -> None:
    """The bar (docs/desk.md, bench/advice_bar.py): 27.7 -> 27.1 is not worth moving a
    person between desks; 19.1 -> 12.5 is; nor is a gain the other services pay for."""
    from dataclasses import replace

    from coordinator.advice import worth_it

    _issue(engine, 30)
    a = advise(engine, at(9, 6), simulate=False)[0]
    tiny = replace(a, before_min=27.7, after_min=27.1, others_before_min=5, others_after_min=5)
    assert not worth_it(tiny)
    real = replace(a, before_min=19.1, after_min=12.5, others_before_min=5, others_after_min=6)
    assert worth_it(real)
    small = replace(a, before_min=8.2, after_min=5.0, others_before_min=5, others_after_min=5)
    assert not worth_it(small)  # 3.2 minutes: under the 5-minute bar
    paid = replace(a, before_min=20, after_min=10, others_before_min=5, others_after_min=16)
    assert not worth_it(paid)
    share = replace(a, before_min=60, after_min=55, others_before_min=5, others_after_min=5)
    assert not worth_it(share)  # 5 minutes of an hour: under 20 %


def test_replay_without_changes_matches_run_day() -> None:
    """The replay is run_day plus changes: with none it serves the same tickets alike."""
    cfg = small_hall()
    sc, core = sim_config(cfg), load_core("auto")
    demand = Demand.for_services([s.code for s in cfg.services])
    spans = open_spans(cfg.hall.open_hours)
    day = draw_days(cfg, demand, volume=900, day_of_month=None, replications=1, seed=3)[0]
    skills = configured_skills(cfg)
    a = run_day(sc, core, skills, day, day=sim_day(None), spans=spans)
    b = replay_day(sc, core, skills, day, day=sim_day(None), start_s=spans[0][0])
    assert a.waits == b.waits
    assert a.overtime_s == b.overtime_s


@pytest.mark.parametrize("seed", range(5))
def test_the_compiled_loop_replays_what_replay_day_does(core_cls: type[Any], seed: int) -> None:
    """``FastHall.play`` with a start after opening, a backlog, busy windows and timed
    skill changes (closing windows, opening closed ones, retasking) must serve the very
    tickets ``replay_day`` serves through the engine; then, on the same hall, a plain day
    must match ``run_day`` again (the changes are undone)."""
    cfg = small_hall()
    sc = sim_config(cfg)
    demand = Demand.for_services([s.code for s in cfg.services])
    spans = open_spans(cfg.hall.open_hours)
    rng = random.Random(seed)
    day = draw_days(
        cfg, demand, volume=1000, day_of_month=None, replications=1, seed=seed, no_show=0.05
    )[0]
    start_s = spans[0][0] + rng.uniform(1.0, 4.0) * 3600
    backlog = [a for a in day if a.t < start_s][-rng.randint(5, 20) :]
    future = [a for a in day if a.t >= start_s]
    configured = configured_skills(cfg)
    skills = {w: sk for w, sk in configured.items() if w != 1 + seed % 4}
    busy = (
        {w: start_s + rng.uniform(0.0, 300.0) for w in skills if rng.random() < 0.5}
        if seed % 2
        else {}
    )
    codes = [s.code for s in cfg.services]
    changes = []
    for _ in range(8):
        chosen = [c for c in codes if rng.random() < 0.5]
        changes.append(
            SkillChange(
                rng.uniform(start_s - 600.0, spans[-1][1]),
                rng.choice(list(configured)),
                {c: round(rng.uniform(0.5, 3.0), 2) for c in chosen},
            )
        )
    ref = replay_day(
        sc,
        core_cls,
        skills,
        future,
        day=sim_day(None),
        start_s=start_s,
        changes=changes,
        backlog=backlog,
        busy_until_s=busy,
    )
    hall = FastHall(sc, core_cls, skills, day=sim_day(None), spans=spans)
    got = hall.play(future, start_s=start_s, changes=changes, backlog=backlog, busy_until_s=busy)
    assert ref.served > 100
    for name in ("waits", "busy_s", "served", "no_shows", "turned_away", "overtime_s", "open_s"):
        assert getattr(got, name) == getattr(ref, name), name
    plain = hall.play(day)
    assert plain == run_day(sc, core_cls, skills, day, day=sim_day(None), spans=spans)


def test_plan_keeps_the_staff_limit_and_is_no_worse_than_configured() -> None:
    plan = plan_day(
        small_hall(),
        volume=1300,
        staff_limit=3,
        replications=3,
        seed=2,
        core_kind="auto",
        rounds=2,
        search_days=2,
    )
    assert len(plan.open_windows) <= 3
    assert set(plan.staffing.skills) <= set(plan.open_windows)
    assert {c.window for c in plan.staffing.changes} <= set(plan.open_windows)
    for rep in plan.reports.values():
        assert len(rep.skills) <= 3
    planned = plan.reports["planned"].waits["all"]
    configured = plan.reports["configured"].waits["all"]
    assert (planned["p95"].mean, planned["mean"].mean) <= (
        configured["p95"].mean,
        configured["mean"].mean,
    )
    assert not math.isnan(plan.reports["fifo"].waits["all"]["mean"].mean)
    assert "planned" in plan.render()
    assert plan.to_dict()["staff_limit"] == 3


def test_advice_type_is_frozen() -> None:
    assert Advice.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_acting_on_live_advice_inside_a_simulated_day_shortens_the_long_queue() -> None:
    """Dedicated windows, one window for an overloaded green channel: the advice moves
    windows over in the day and the green and overall waits drop, on the same arrivals."""
    from coordinator.advice.live import ActOnAdvice

    cfg = small_hall()
    sc, core = sim_config(cfg), load_core("auto")
    demand = Demand.for_services([s.code for s in cfg.services])
    spans = open_spans(cfg.hall.open_hours)
    day = draw_days(cfg, demand, volume=1100, day_of_month=None, replications=1, seed=5)[0]
    skills = {
        1: {"green": 1.0},
        2: {"invoice": 1.0},
        3: {"tax-filing": 1.0},
        4: {"tax-filing": 1.0},
    }
    plain = replay_day(sc, core, skills, day, day=sim_day(None), start_s=spans[0][0])
    hook = ActOnAdvice()
    acted = replay_day(sc, core, skills, day, day=sim_day(None), start_s=spans[0][0], hook=hook)
    assert "green" in {a.service for a in hook.taken}
    assert all(set(a.windows) <= set(skills) for a in hook.taken)
    assert sum(map(len, acted.waits.values())) == sum(map(len, plain.waits.values()))

    def mean(r: DayResult, services: list[str]) -> float:
        xs = [x for c in services for x in r.waits[c]]
        return sum(xs) / len(xs)

    everything = list(plain.waits)
    assert mean(acted, ["green"]) < mean(plain, ["green"]) / 2
    assert mean(acted, everything) < mean(plain, everything)


def test_a_queue_no_window_serves_gets_a_window(engine: Engine) -> None:
    act = m.SetSkills(window=1, action="set_skills", skills={"tax-filing": 1.0})
    assert engine.apply(act, at(8, 30)).ok  # now nobody serves the green channel
    for i in range(2):
        assert engine.apply(m.IssueRequest(kind="issue", service="green"), at(9, 0, i)).ok
    advice = advise(engine, at(9, 1), replications=2)
    green = next(a for a in advice if a.service == "green")
    assert green.windows
    assert math.isfinite(green.predicted_wait_min)
    assert green.after_min < green.before_min


def test_a_branch_queue_is_helped_by_the_branch_s_own_windows(core_cls: type[Any]) -> None:
    """In a hall of two buildings the advice switched any idle window to a long queue:
    a main-building window switched to a service serves only the main building's queue of
    it, so the branch's people gained nothing. It picks windows of the queue's building."""
    from coordinator.engine import Engine
    from hallq import messages as m
    from hallq.config import parse_config

    from .halls import at, two_site_hall_text

    text = two_site_hall_text() + (  # the branch gets a window 5 for invoices only
        '\n[[windows]]\nnumber = 5\nzone = "branch-1"\nskills = { invoice = 1.0 }\n'
    )
    e = Engine(parse_config(text, "two-sites.toml"), core_cls)
    e.roll_over(at(8))
    for n in e.windows:
        e.apply(m.WindowAction(window=n, action="open"), at(8, 30))
    for i in range(40):  # the branch's filing queue grows
        e.apply(m.IssueRequest(kind="issue", service="tax-filing"), at(9, 0, i), "pi-d2")
    advice = advise(e, at(9, 30), simulate=False)
    assert advice, "a branch queue with 40 waiting and no filing window needs help"
    filing = [a for a in advice if a.service == "tax-filing"]
    assert [a.windows for a in filing] == [(5,)]  # not main's idle invoice window 2
    assert filing[0].waiting == 40
