"""Wait estimates: the queueing formula with shared windows, the floor of a queue's
estimate, and the simulation estimator predicting each waiting ticket's call."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from coordinator.engine import Engine, Ticket
from coordinator.eta import (
    FUTURE_ARRIVALS_MAX,
    HORIZON_S,
    RATE_LOOKBACK_S,
    RecentArrivals,
    Snapshot,
    WaitEstimator,
)
from coordinator.snapshot import call_forked
from hallq import messages as m

from .halls import at, small_hall
from .test_engine import act, issue


@pytest.fixture
def engine(core_cls: type[Any]) -> Engine:
    e = Engine(small_hall(), core_cls)
    e.roll_over(at(8))
    return e


def test_a_window_serving_several_busy_services_counts_once_in_all(engine: Engine) -> None:
    for _ in range(3):
        issue(engine, "tax-filing")
        issue(engine, "invoice")
    # tax-filing is served by window 1 (all services), 3 (tax only), 4 (tax + invoice):
    # 1 and 4 split their time with the invoice queue, so 2 windows' worth, not 3
    assert engine.window_share("tax-filing") == pytest.approx(2.0)
    assert engine.eta_min("tax-filing", 3) == round(3 * 1.63 / 2.0, 1)


def test_a_queue_that_stood_still_reads_at_least_that_long(engine: Engine) -> None:
    """Nobody called for half an hour: the estimate, which assumes open windows call, is
    not what the hall does, and a ticket issued now is told at least that long."""
    issue(engine, "tax-filing", now=at(9))
    queue = engine.queue_state("tax-filing", 1, at(9, 30))
    assert queue.wait is not None
    assert queue.wait.low_min >= 30.0
    assert queue.eta_min == queue.wait.p50_min >= 30.0
    assert queue.wait.zh().startswith("约 30–")


def test_once_the_queue_moves_its_range_is_the_estimate_not_its_oldest_s_history(
    engine: Engine,
) -> None:
    """Found on the desk of the demo: after windows were paused and resumed, the hall page
    read "约 27–44 分钟" for a queue whose last ticket was told 0-2 minutes: its oldest
    ticket's half hour, which is history once windows call again, was the queue's floor.
    A ticket transferred in keeps its first issue time (its place), not a floor either."""
    for _ in range(3):
        issue(engine, "tax-filing", now=at(9))
    moved = issue(engine, "invoice", now=at(8, 30)).ticket
    assert moved is not None
    assert act(engine, 3, "call", now=at(9, 30)).ok  # the queue moves again
    assert act(engine, 2, "call", now=at(9, 30)).ok  # invoice's, then sent to tax-filing
    assert act(engine, 2, "transfer", to_service="tax-filing", now=at(9, 30)).ok
    assert engine.oldest_waiting("tax-filing") is engine.by_number[moved.number]
    queue = engine.queue_state("tax-filing", 1, at(9, 30, 10))
    assert queue.oldest_wait_s is not None
    assert queue.oldest_wait_s >= 3600
    assert queue.wait is not None
    assert queue.wait.high_min < 10.0, queue.wait
    later = engine.queue_state("tax-filing", 2, at(9, 50))  # and if nobody calls again...
    assert later.wait is not None
    assert later.wait.low_min >= 20.0


def test_wait_range_reads_as_whole_minutes() -> None:
    w = m.WaitRange(p50_min=9.6, low_min=7.8, high_min=12.2, basis="simulation")
    assert (w.zh(), w.en()) == ("约 7–13 分钟", "about 7–13 min")
    assert m.WaitRange(p50_min=0.2, low_min=0.0, high_min=0.5).zh() == "1 分钟内"
    with pytest.raises(ValueError, match="low_min <= p50_min <= high_min"):
        m.WaitRange(p50_min=5, low_min=6, high_min=7)


def test_the_simulation_predicts_each_waiting_tickets_call(engine: Engine) -> None:
    """One window serving tax-filing, a minute a taxpayer: the k-th in line is called in
    about k minutes; the engine's replies and queue state then say so."""
    for w in (1, 2, 4):
        assert act(engine, w, "close", now=at(9)).ok
    numbers = [issue(engine, now=at(9)).ticket.number for _ in range(10)]  # type: ignore[union-attr]
    assert act(engine, 3, "call", now=at(9)).ok  # A001 at the counter since 9:00
    est = WaitEstimator(engine, fits={"tax-filing": (4.0943, 0.01)}, replications=4)  # ~60 s
    engine.estimator = est
    now = at(9, 0, 30)
    est.refresh(now)
    for k, number in enumerate(numbers[1:], start=1):
        wait = engine.eta_range(engine.by_number[number], "tax-filing", now)
        assert wait.basis == "simulation"
        assert wait.p50_min == pytest.approx(k - 0.5, abs=0.15), number
        assert wait.low_min <= k - 0.5 <= wait.high_min
    info = engine.ticket_info(engine.by_number[numbers[-1]], now)
    assert info.wait is not None
    assert info.eta_min == info.wait.p50_min
    # a ticket issued now waits behind all nine: about 9.5 minutes
    queue = engine.queue_state("tax-filing", 1, now)
    assert queue.wait is not None
    assert queue.wait.p50_min == pytest.approx(9.5, abs=0.3)


def test_a_break_s_end_is_unknown_so_a_range_starts_where_it_could_end_now(
    engine: Engine,
) -> None:
    """Found by a taxpayer timing the page: during a staff break a ticket promised
    "38-45 min" was called after 15, and one with 2 ahead, told 14-22, after 7. The
    estimate had the paused windows never back; now they may be back at once, which the
    range's start says (its end still holds if the break goes on)."""
    for w in (1, 2):
        assert act(engine, w, "close", now=at(9)).ok
    assert act(engine, 4, "pause", now=at(9)).ok  # tax-filing and invoice, on a break
    numbers = [issue(engine, now=at(9)).ticket.number for _ in range(10)]  # type: ignore[union-attr]
    assert act(engine, 3, "call", now=at(9)).ok
    est = WaitEstimator(engine, fits={"tax-filing": (4.0943, 0.01)}, replications=4)  # ~60 s
    engine.estimator = est
    now = at(9, 0, 30)
    est.refresh(now)
    last = engine.eta_range(engine.by_number[numbers[-1]], "tax-filing", now)
    assert last.high_min >= 8.5, last  # window 3 alone: ~9.5 minutes
    assert last.low_min <= 5.5, last  # with window 4 back now: ~4.5
    queue = engine.queue_state("tax-filing", 1, now)
    assert queue.wait is not None
    assert queue.wait.low_min <= 5.5 < 8.5 <= queue.wait.high_min, queue.wait


def test_a_refresh_played_in_a_forked_child_predicts_what_one_played_here_does(
    engine: Engine,
) -> None:
    """The coordinator plays each refresh in a forked child (a burst's refresh is ~1 s of
    pure Python the loop's GIL would share): the same predictions, refresh after refresh
    (each refresh's random draws are numbered in the parent), and played elsewhere."""
    for _ in range(6):
        issue(engine, "tax-filing", now=at(9))
        issue(engine, "invoice", now=at(9))
    assert act(engine, 3, "call", now=at(9)).ok
    here = WaitEstimator(engine, replications=4)
    there = WaitEstimator(engine, replications=4)
    pids = []

    def forked(play: Callable[[], Snapshot]) -> Snapshot:
        def make() -> tuple[int, Snapshot]:
            return os.getpid(), play()

        pid, snap = call_forked(make, timeout_s=60)
        pids.append(pid)
        return snap

    for minute in (1, 2):
        state = here.capture(at(9, minute))
        mine, theirs = here.simulate(state), there.simulate(state, forked)
        assert theirs.tickets == mine.tickets
        assert theirs.queue == mine.queue
        assert theirs.tickets
        assert theirs.queue
    assert len(pids) == 2
    assert os.getpid() not in pids


def test_a_burst_draws_a_bounded_future_and_a_halls_pace_a_full_hour(engine: Engine) -> None:
    """Arrivals are drawn an hour ahead at the last half hour's rate; in a burst that was
    tens of thousands of draws a replication. A service arriving faster than
    FUTURE_ARRIVALS_MAX an hour gets that many, over a shorter horizon."""
    est = WaitEstimator(engine, replications=1)
    state = est.capture(at(9))
    start = state["now"] - state["base"]
    services = list(state["counter"])
    for rate, most, reach in ((50.0, 1.2 * FUTURE_ARRIVALS_MAX, 0.0), (0.05, 400, 3000.0)):
        state["rates"] = dict.fromkeys(services, rate)
        future = est._draw(state, random.Random(1), [])
        assert len(future) <= most * len(services)
        assert len(future) <= rate * HORIZON_S * len(services) / 10 or rate < 1
        assert max(a.t for a in future) - start >= reach
    assert max(a.t for a in future) - start < HORIZON_S


def test_the_arrival_rate_counts_the_last_half_hour_as_tickets_come() -> None:
    """The capture's arrival rate: per service, the tickets issued in the last half hour,
    kept as tickets are added rather than found by a pass back over the day. Tickets
    issued offline long before and added late, tickets stamped ahead of the clock and a
    clock that goes back all count as a pass over every ticket would count them."""
    rng = random.Random(5)
    tickets: list[Any] = []
    recent = RecentArrivals()
    now = 36_000.0
    for step in range(500):
        now += rng.uniform(0, 30) if step % 50 else -900.0
        for _ in range(rng.randint(0, 3)):
            late = rng.random() < 0.05
            issued = now - rng.uniform(0, 5000) if late else now - rng.uniform(0, 5)
            tickets.append(SimpleNamespace(issued_at=issued, service=rng.choice("abc")))
        if step % 7 == 0:
            tickets.append(SimpleNamespace(issued_at=now + 60, service="a"))
        got = recent.counts(cast(list[Ticket], tickets), now)
        want = Counter(t.service for t in tickets if now - RATE_LOOKBACK_S <= t.issued_at <= now)
        assert {c: n for c, n in got.items() if n} == dict(want), step
    assert sum(want.values()) > 50


def test_keeping_up_each_second_changes_no_captured_rate(engine: Engine) -> None:
    """The coordinator's tick takes new tickets in every second (``keep_up``), so a
    capture after a burst's seconds does not take them all in at once on the loop; the
    rates it reads are those of an estimator that never kept up."""
    kept, lazy = WaitEstimator(engine), WaitEstimator(engine)
    rng = random.Random(3)
    for k in range(120):
        issue(engine, rng.choice(["tax-filing", "invoice", "green"]), now=at(9, k // 4))
        if k % 3 == 0:
            kept.keep_up(at(9, k // 4, 30))
    assert kept.capture(at(9, 31))["rates"] == lazy.capture(at(9, 31))["rates"]
    assert sum(lazy.capture(at(9, 31))["rates"].values()) > 0


def test_the_estimator_keeps_within_its_budget_between_refreshes(engine: Engine) -> None:
    est = WaitEstimator(engine, budget=0.05, min_interval_s=0.0)
    est.refresh(at(9), wall=100.0)
    est._last_cost = 0.02  # a 20 ms simulation: the next may start 0.4 s later
    assert not est.due(100.3)
    assert est.due(100.4)


def test_an_open_window_idle_while_people_wait_is_not_counted(engine: Engine) -> None:
    """Window 3 serves tax-filing but has not called for five minutes though A001 waits:
    nobody is at it, so the wait is not predicted as if it would call at once."""
    for w in (1, 2, 4):
        assert act(engine, w, "close", now=at(9)).ok
    assert act(engine, 3, "pause", now=at(9)).ok
    assert act(engine, 3, "resume", now=at(9)).ok  # open, idle since 9:00
    issue(engine, now=at(9, 1))
    est = WaitEstimator(engine, fits={"tax-filing": (4.0943, 0.01)}, replications=2)
    assert 3 in est.capture(at(9, 1, 30))["skills"]  # idle 90 s: still counted
    assert est.capture(at(9, 5))["skills"] == {}  # idle 5 min with A001 waiting


def test_the_capture_reads_the_queues_and_tallies_as_a_pass_over_the_day_would(
    engine: Engine,
) -> None:
    """The capture runs on the loop every refresh: it reads the waiting off the queues'
    heaps and the no-show rate off the running tallies, not off every ticket of the day.
    Against the pass over the day, after a morning of calls, skips, reinstated no-shows,
    transfers, directed and cancelled tickets."""
    rng = random.Random(11)
    services = ["tax-filing", "invoice", "green"]
    for k in range(300):
        now = at(9, 0, k * 10)
        if rng.random() < 0.4:
            issue(engine, rng.choice(services), now=now)
            continue
        w = rng.choice([1, 2, 3, 4])
        action = rng.choice(["call", "call", "start", "finish", "skip", "park", "transfer"])
        if action == "transfer":
            act(engine, w, action, now, to_service=rng.choice(services))
        else:
            act(engine, w, action, now)
    skipped = [t for t in engine.tickets if t.state is m.TicketState.NO_SHOW]
    assert skipped, "the morning should have no-shows to reinstate"
    act(engine, 2, "reinstate", at(9, 51), ticket=skipped[0].number)
    state = WaitEstimator(engine).capture(at(9, 52))

    waiting = sorted(
        (t for t in engine.tickets if t.state is m.TicketState.WAITING and t.directed is None),
        key=lambda t: (t.issued_at, t.seq),
    )
    assert [row[0] for row in state["backlog"]] == [t.number for t in waiting]
    assert len(waiting) > 5
    stale = sum(len(heap) for heap in engine._waiting_heaps().values()) - len(waiting)
    assert stale > 0, "the heaps should hold entries of tickets called or moved since"
    called = sum(1 for t in engine.tickets if t.called_at is not None)
    no_shows = sum(1 for t in engine.tickets if t.state is m.TicketState.NO_SHOW)
    assert called >= 20
    assert no_shows > 0
    assert state["no_show"] == no_shows / called


def test_the_queues_heaps_shed_what_was_called_when_read_for_a_capture(engine: Engine) -> None:
    """Calls leave their entries in the queue's heap below its top; a capture that finds a
    heap mostly such entries keeps only the waiting ones, so the next reads the waiting,
    not the day, and the queue still knows its oldest."""
    for w in (1, 2, 4):
        assert act(engine, w, "close", now=at(9)).ok
    numbers = [issue(engine, now=at(9, 0, k)).ticket.number for k in range(300)]  # type: ignore[union-attr]
    for k in range(290):
        assert act(engine, 3, "call", now=at(10, 0, k)).ok
    est = WaitEstimator(engine)
    first = est.capture(at(11))["backlog"]
    assert [row[0] for row in first] == numbers[290:]
    assert len(engine._waiting_heaps()["tax-filing"]) <= 2 * 10 + 64
    assert [row[0] for row in est.capture(at(11))["backlog"]] == numbers[290:]
    oldest = engine.oldest_waiting("tax-filing")
    assert oldest is not None
    assert oldest.number == numbers[290]


def test_a_hall_of_two_sites_is_played_as_its_sites_queues(core_cls: type[Any]) -> None:
    """A ticket is called only in its own building (Engine.lanes), so its wait is its
    site's: played hall-wide, the main building's idle window served the branch's queue
    in the simulation, and the branch's tickets were told half their wait."""
    from hallq.config import parse_config

    from .halls import two_site_hall_text

    engine = Engine(parse_config(two_site_hall_text(), "two.toml"), core_cls)
    engine.roll_over(at(8))
    for w in (1, 2):  # the main building: window 3 (tax filing); the branch: window 4
        assert act(engine, w, "close", now=at(9)).ok
    ask = m.IssueRequest(kind="issue", service="tax-filing")
    branch = [engine.apply(ask, at(9), "pi-d2").ticket for _ in range(6)]
    main = engine.apply(ask, at(9), "pi-d1").ticket
    assert main is not None
    est = WaitEstimator(engine, fits={"tax-filing": (4.0943, 0.01)}, replications=4)  # ~60 s
    engine.estimator = est
    now = at(9, 0, 10)
    est.refresh(now)
    last = engine.eta_range(branch[-1], "tax-filing", now)
    assert last.p50_min == pytest.approx(5.0, abs=0.6), last  # window 4 alone: 5 ahead
    assert engine.eta_range(main, "tax-filing", now).p50_min < 0.5  # window 3 is free
