"""The comfort index: the GLM recovers known effects, beats seasonal-naive, levels follow
the simulated waits of each forecast day (or, as an option, wait-derived rate thresholds
from simulated hall days or Erlang C, which agree with direct simulations), counts come
right from a real event log, exports are valid, and the hall calendar closes holidays,
opens 调休 days and moves the filing peak with the deadline."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import logging
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from coordinator.dispatch import load_core
from coordinator.eventlog import EventLog
from coordinator.forecast import (
    LEVELS,
    arrival_counts,
    build_forecast,
    evaluate,
    expected_wait,
    export_csv,
    export_png,
    fit,
    forecast_from,
    generate_history,
    levels,
    render_forecast,
    seasonal_naive,
    thresholds,
)
from coordinator.forecast.hall_calendar import Calendar, workday_factor
from coordinator.forecast.history import (
    SYNTHETIC_TREND,
    SYNTHETIC_WEEKDAY,
    open_slots,
    synthetic_means,
    synthetic_volume,
)
from coordinator.forecast.levels import (
    BUSY,
    BUSY_WAIT_MIN,
    MODERATE,
    QUIET,
    QUIET_WAIT_MIN,
    erlang_c_wait,
    simulated_wait_curve,
    wait_level,
)
from coordinator.forecast.model import filing_group
from coordinator.forecast.waits import draw_expected, simulate_waits
from coordinator.hallqueue import HallQueue
from coordinator.simulation import FastHall, run_simulation, sim_day
from coordinator.simulation.day import sim_config
from coordinator.simulation.policies import configured_skills
from coordinator.simulation.profile import (
    AFTER,
    EARLY,
    FILING_MEAN,
    PEAK,
    Demand,
    draw_day,
    filing_factor,
    filing_phase,
    open_spans,
)
from coordinator.snapshot import call_forked
from hallq import messages as m
from hallq.config import HallConfig, load_config, parse_config

from .ci import missing
from .halls import at, small_hall, small_hall_text

END = dt.date(2026, 10, 31)
LIWAN = Path(__file__).resolve().parent.parent / "examples" / "liwan.toml"


@pytest.fixture(scope="module")
def hall() -> HallConfig:
    return small_hall()


@pytest.fixture(scope="module")
def liwan() -> HallConfig:
    return load_config(LIWAN)


@pytest.fixture(scope="module")
def history(hall: HallConfig) -> Any:
    return generate_history(hall, 8, seed=3, end=END)


def test_the_glm_recovers_the_generators_effects(hall: HallConfig, history: Any) -> None:
    model = fit(history)
    assert model.open_weekdays == (0, 1, 2, 3, 4, 5)  # Sunday closed, Saturday open (low)
    assert model.effect("trend/month") == pytest.approx(SYNTHETIC_TREND, abs=0.01)
    assert model.effect("filing days 10-15") == pytest.approx(
        math.log(filing_factor(12) / filing_factor(1)), abs=0.04
    )
    assert model.effect("filing days 16-end") == pytest.approx(
        math.log(filing_factor(20) / filing_factor(1)), abs=0.04
    )
    for w, name in enumerate(("Tue", "Wed", "Thu", "Fri", "Sat"), start=1):
        truth = math.log(SYNTHETIC_WEEKDAY[w] / SYNTHETIC_WEEKDAY[0])
        assert model.effect(f"weekday {name}") == pytest.approx(truth, abs=0.06), name
    assert model.iterations < 20


def test_the_model_beats_seasonal_naive_on_held_out_months(hall: HallConfig, history: Any) -> None:
    ev = evaluate(hall, history, holdout_months=2)
    assert ev.months == ("2026-09", "2026-10")
    assert ev.cells > 500
    assert ev.mae < 0.7 * ev.baseline_mae
    assert ev.accuracy > ev.baseline_accuracy
    assert ev.accuracy > 0.8
    # like for like by simulated waits: the actual counts, the model's and the baseline's
    # forecasts each played on the simulator, per open hour and per day
    assert ev.replications == 4
    assert ev.hours == ev.cells // 2
    assert ev.wait_accuracy is not None
    assert ev.baseline_wait_accuracy is not None
    assert ev.wait_accuracy > ev.baseline_wait_accuracy
    assert ev.wait_accuracy > 0.9
    assert ev.wait_day_accuracy is not None
    assert ev.baseline_wait_day_accuracy is not None
    assert ev.wait_day_accuracy > ev.baseline_wait_day_accuracy + 0.2
    assert any("seasonal-naive" in line for line in ev.lines())
    assert any("by simulated waits" in line for line in ev.lines())
    rates = evaluate(hall, history, holdout_months=2, level_by="rates")
    assert rates.wait_accuracy is None
    assert rates.accuracy == ev.accuracy
    assert not any("by simulated waits" in line for line in rates.lines())


def test_seasonal_naive_is_the_mean_of_the_last_four_same_weekdays(history: Any) -> None:
    train, _ = history.split(30)
    day = train.end + dt.timedelta(days=7)
    rows = [i for i, d in enumerate(train.days) if d.weekday() == day.weekday()][-4:]
    assert np.allclose(seasonal_naive(train, [day])[0], train.counts[rows].mean(axis=0))


def test_erlang_c_matches_the_textbook_cases() -> None:
    # M/M/1: Wq = rho / (mu - lambda) -> rate 0.5, service 1 -> 1.0
    assert erlang_c_wait(0.5, 1.0, 1) == pytest.approx(1.0)
    # M/M/2 at a = 1: C = 1/3, Wq = C * s / (c - a) = 1/3
    assert erlang_c_wait(1.0, 1.0, 2) == pytest.approx(1 / 3)
    assert erlang_c_wait(2.0, 1.0, 2) == math.inf


def test_levels_follow_the_wait_thresholds(hall: HallConfig) -> None:
    for th, wait_at in (
        (thresholds(hall, method="erlang"), lambda r: expected_wait(hall, r)),
        (thresholds(hall), simulated_wait_curve(hall).wait_at),
    ):
        assert 0 < th.quiet_per_hour < th.busy_per_hour
        assert wait_at(th.quiet_per_hour) == pytest.approx(th.quiet_wait_min, rel=1e-3)
        assert wait_at(th.busy_per_hour) == pytest.approx(th.busy_wait_min, rel=1e-3)
        assert th.level(th.quiet_per_hour * 0.99) == QUIET
        assert th.level(th.quiet_per_hour) == MODERATE
        assert th.level(th.busy_per_hour * 0.99) == MODERATE
        assert th.level(th.busy_per_hour) == BUSY
    assert LEVELS == ("较少", "适中", "较多")  # BoardState.comfort's values


def test_simulated_thresholds_are_ordered_deterministic_and_say_so(hall: HallConfig) -> None:
    th = thresholds(hall)
    assert th.method == "simulated"
    assert "hallq dispatch" in th.basis
    assert (th.quiet_wait_min, th.busy_wait_min) == (QUIET_WAIT_MIN, BUSY_WAIT_MIN)
    assert 0 < th.quiet_per_hour < th.busy_per_hour
    curve = simulated_wait_curve(hall)
    assert list(curve.rates) == sorted(curve.rates)
    assert all(a <= b for a, b in zip(curve.waits, curve.waits[1:], strict=False))
    assert curve.wait_at(0) == 0
    assert curve.rate_for(1e9) is None
    levels._CURVES.clear()  # the same seeds again, not the process cache
    again = thresholds(hall)
    assert again == th
    assert simulated_wait_curve(hall) == curve
    other = thresholds(hall, policy="fifo")
    assert other.method == "simulated"
    assert "FIFO" in other.basis
    assert thresholds(hall, method="erlang").method == "erlang"
    with pytest.raises(ValueError, match="unknown method"):
        thresholds(hall, method="guess")  # type: ignore[arg-type]


def test_an_unsimulable_hall_falls_back_to_erlang_with_a_warning(
    hall: HallConfig, caplog: pytest.LogCaptureFixture
) -> None:
    # window 1 is the only one serving the green channel
    no_green = hall.model_copy(update={"windows": [w for w in hall.windows if w.number != 1]})
    with caplog.at_level(logging.WARNING, logger="hallq.forecast"):
        th = thresholds(no_green)
    erlang = thresholds(no_green, method="erlang")
    assert th.method == "erlang"
    assert "not simulated: no window serves green" in th.basis
    assert (th.quiet_per_hour, th.busy_per_hour) == (erlang.quiet_per_hour, erlang.busy_per_hour)
    assert "no window serves green" in caplog.text
    assert "Erlang C instead" in caplog.text


def test_the_simulated_moderate_band_is_wider_than_erlangs(liwan: HallConfig) -> None:
    """The point of simulating: M/M/c with 47 windows jumps from no wait to saturation within
    a few percent of load (Liwan: 1,348-1,459/h); the simulated days, backlog included,
    spread 适中 over a much wider range of rates."""
    sim, erl = thresholds(liwan), thresholds(liwan, method="erlang")
    assert sim.method == "simulated"
    assert erl.method == "erlang"
    assert sim.quiet_per_hour < sim.busy_per_hour
    assert sim.busy_per_hour - sim.quiet_per_hour > 2 * (erl.busy_per_hour - erl.quiet_per_hour)


def _mean_wait(report: Any) -> float:
    return float(report.policies["hallq"].waits["all"]["mean"].mean)


def test_simulated_edges_agree_with_direct_simulations(liwan: HallConfig) -> None:
    """Levels from the simulated thresholds against days simulated here, apart from them."""
    th = thresholds(liwan)
    spans = open_spans(liwan.hall.open_hours)
    hours = sum(b - a for a, b in spans) / 3600
    demand = Demand.for_services([s.code for s in liwan.services])
    # A day at a steady rate, through the simulator's front door. Under the quiet edge it
    # is 较少 and waits under a minute; over the busy edge it is 较多 and waits longer than
    # 5.04 min. A steady day above the hall's capacity (~1,730/h) piles up all day, one below
    # it hardly waits, so the margins are wide on the busy side: the edges come from days
    # with peaks, whose half hours at a given rate may carry a peak's backlog.
    flat = dataclasses.replace(demand, half_hours=(1.0,) * len(demand.half_hours))

    def steady(per_hour: float) -> float:
        return _mean_wait(
            run_simulation(
                liwan,
                volume=per_hour * hours,
                replications=2,
                seed=7,
                policies=["hallq"],
                demand=flat,
            )
        )

    assert th.level(0.9 * th.quiet_per_hour) == QUIET
    assert steady(0.9 * th.quiet_per_hour) < QUIET_WAIT_MIN
    assert th.level(1.25 * th.busy_per_hour) == BUSY
    assert steady(1.25 * th.busy_per_hour) > BUSY_WAIT_MIN
    # Days with the hall's profile, drawn on seeds of their own (one per filing period and
    # weekday), and their half hours by the arrivals they had: those up to 20% under the
    # quiet edge waited under a minute per ticket, those up to 20% over the busy edge
    # over 5.04 min.
    hall = FastHall(
        sim_config(liwan), load_core(), configured_skills(liwan), day=sim_day(None), spans=spans
    )
    slots, open_min = open_slots(liwan)
    minutes = dict(zip(slots, open_min, strict=True))
    cells: list[tuple[float, float, int]] = []  # (arrivals per hour, wait sum min, tickets)
    for d in (1, 10, 16):
        for wd in range(5):
            volume = (
                synthetic_volume(liwan) * filing_factor(d) / FILING_MEAN * SYNTHETIC_WEEKDAY[wd]
            )
            day = hall.play(
                draw_day(demand, spans, volume=volume, rng=random.Random(f"test-levels:{d}:{wd}"))
            )
            half: dict[int, list[float]] = {}
            for start, (total, n) in day.wait_bins.items():
                cell = half.setdefault(int(start // 1800 * 30), [0.0, 0])
                cell[0] += total / 60
                cell[1] += n
            cells += [
                (n / minutes[s] * 60, total, int(n))
                for s, (total, n) in half.items()
                if s in minutes
            ]

    def wait_between(lo: float, hi: float) -> float:
        inside = [(total, n) for rate, total, n in cells if lo <= rate < hi]
        assert len(inside) >= 5, (lo, hi, len(inside))
        return sum(t for t, _ in inside) / sum(n for _, n in inside)

    assert wait_between(0.8 * th.quiet_per_hour, th.quiet_per_hour) < QUIET_WAIT_MIN
    assert wait_between(th.busy_per_hour, 1.2 * th.busy_per_hour) > BUSY_WAIT_MIN


def test_forecast_levels_are_the_thresholds_applied_to_the_rates(
    hall: HallConfig, history: Any
) -> None:
    fc = forecast_from(hall, history, days=30, level_by="rates")
    assert fc.level_by == "rates"
    assert fc.waits is None
    assert fc.method == "simulated"
    assert fc.start == END + dt.timedelta(days=1)
    assert len(fc.days) == 30
    seen = set()
    for i, d in enumerate(fc.days):
        if not fc.is_open(d):
            assert d.weekday() == 6
            assert fc.mean[i].sum() == 0
            assert fc.day_level(d) == QUIET
            continue
        for j, s in enumerate(fc.slots):
            level = fc.slot_level(d, s)
            assert level == fc.thresholds.level(fc.mean[i, j] / fc.open_min[j] * 60)
            seen.add(level)
            ts = dt.datetime(
                d.year, d.month, d.day, s // 60, s % 60 + 10, tzinfo=hall.hall.tzinfo
            ).timestamp()
            assert fc.level_at(ts) == level
    assert seen == set(LEVELS)  # the small hall's month spans all three
    monday_noon = dt.datetime(2026, 11, 2, 12, 0, tzinfo=hall.hall.tzinfo)
    assert fc.today_level(monday_noon) == fc.day_level(dt.date(2026, 11, 2))
    assert fc.level_at(monday_noon.replace(hour=20).timestamp()) == QUIET  # closed
    with pytest.raises(ValueError, match="outside the forecast"):
        fc.level_at(at(9, day=31 + 60))


def test_forecast_levels_are_the_simulated_waits_of_each_day(
    hall: HallConfig, history: Any
) -> None:
    """The default: each open day simulated 4 times at its forecast counts, and every half
    hour, hour and day classed by the mean wait of the tickets issued in it."""
    fc = forecast_from(hall, history, days=30)
    waits = fc.waits
    assert fc.level_by == "waits"
    assert waits is not None
    assert fc.method == "simulated waits"
    assert waits.replications == 4
    assert waits.policy == "hallq"
    hours = {(r.day, r.hour): r for r in fc.hourly()}
    seen = set()
    for i, d in enumerate(fc.days):
        if not fc.is_open(d):
            assert not waits.tickets[i].any()
            assert fc.day_level(d) == QUIET
            continue
        # served tickets: the small hall caps invoices at 5 a day and turns green away
        # after 12:00, so fewer than the forecast arrivals
        assert 0 < waits.tickets[i].sum() < 4 * fc.mean[i].sum()
        assert fc.day_level(d) == wait_level(waits.mean_wait(i))
        assert fc.day_wait(d) == waits.mean_wait(i)
        for j, s in enumerate(fc.slots):
            level = fc.slot_level(d, s)
            assert level == wait_level(waits.mean_wait(i, [j]))
            ts = dt.datetime(
                d.year, d.month, d.day, s // 60, s % 60 + 10, tzinfo=hall.hall.tzinfo
            ).timestamp()
            assert fc.level_at(ts) == level
        for h, wait in waits.hour_waits(i).items():
            row = hours[d, h]
            assert row.wait_min == wait
            assert row.level == wait_level(wait)
            seen.add(row.level)
    assert seen == set(LEVELS)
    doc = fc.to_json()
    assert doc["level_by"] == "waits"
    assert doc["waits"]["replications"] == 4
    assert all("wait_min" in r for r in doc["hours"])
    assert [("wait_min" in d) for d in doc["days"]] == [fc.is_open(d) for d in fc.days]
    # deterministic: the same seeds give the same simulated days, another seed others
    again = forecast_from(hall, history, days=30)
    assert again.waits is not None
    assert np.array_equal(again.waits.wait_sum, waits.wait_sum)
    assert np.array_equal(again.waits.tickets, waits.tickets)
    assert [r.level for r in again.hourly()] == [r.level for r in fc.hourly()]
    other = forecast_from(hall, history, days=30, seed=2)
    assert other.waits is not None
    assert not np.array_equal(other.waits.wait_sum, waits.wait_sum)
    # a day's simulation depends on its date and counts only, not on the rest of the month
    week = forecast_from(hall, history, start=fc.days[7], days=7)
    assert week.waits is not None
    assert np.array_equal(week.waits.wait_sum, waits.wait_sum[7:14])
    with pytest.raises(ValueError, match="unknown level_by"):
        forecast_from(hall, history, days=3, level_by="guess")  # type: ignore[arg-type]


def test_a_hall_that_cannot_be_simulated_gets_levels_by_rates(
    hall: HallConfig, history: Any, caplog: pytest.LogCaptureFixture
) -> None:
    no_green = hall.model_copy(update={"windows": [w for w in hall.windows if w.number != 1]})
    with caplog.at_level(logging.WARNING, logger="hallq.forecast"):
        fc = forecast_from(no_green, history, days=7)
    assert fc.level_by == "rates"
    assert fc.waits is None
    assert "cannot simulate the forecast days" in caplog.text


def test_simulated_waits_see_the_backlog_rates_cannot(liwan: HallConfig) -> None:
    """The deadline of May 2026 is Friday the 22nd (moved by Labour Day). At 11:30 the
    forecast rate is under the busy edge, 适中 by rate, but the morning's queue is still
    there: the tickets issued then wait over 5.04 min, 较多. At 09:30, before the queue
    builds, they wait under a minute at a similar rate."""
    history = generate_history(liwan, 2, seed=1, end=dt.date(2026, 4, 30))
    deadline = dt.date(2026, 5, 22)
    assert Calendar.of(liwan).deadline(deadline) == 22
    assert deadline.weekday() == 4
    fc = forecast_from(liwan, history, start=deadline, days=1)
    assert fc.waits is not None

    def rate(slot: int) -> float:
        j = fc.slots.index(slot)
        return float(fc.mean[0, j] / fc.open_min[j] * 60)

    th = fc.thresholds
    assert th.quiet_per_hour < rate(11 * 60 + 30) < th.busy_per_hour  # 适中 by rate
    assert th.level(rate(11 * 60 + 30)) == MODERATE
    assert fc.slot_level(deadline, 11 * 60 + 30) == BUSY
    assert fc.waits.mean_wait(0, [fc.slots.index(11 * 60 + 30)]) > 3 * BUSY_WAIT_MIN
    assert th.level(rate(9 * 60 + 30)) == MODERATE  # the same band by rate ...
    assert fc.slot_level(deadline, 9 * 60 + 30) == QUIET  # ... but nobody waits yet
    assert {r.hour: r.level for r in fc.hourly()}[11] == BUSY


def test_days_drawn_from_expected_counts(liwan: HallConfig) -> None:
    """``draw_expected``: Poisson counts around the expected ones, in time order, within
    each piece, and the same taxpayers in order for equally seeded generators."""
    demand = Demand.for_services([s.code for s in liwan.services])
    pieces = [
        (9 * 3600.0, 9.5 * 3600, 300.0),
        (9.5 * 3600, 10 * 3600, 0.0),
        (13.5 * 3600, 13.75 * 3600, 100.0),
    ]
    n = [len(draw_expected(demand, pieces, np.random.default_rng(k))) for k in range(100)]
    assert np.mean(n) == pytest.approx(400, rel=0.03)
    assert np.std(n) == pytest.approx(20, rel=0.3)
    day = draw_expected(demand, pieces, np.random.default_rng(1))
    t = list(day.t)
    assert t == sorted(t)
    assert all(9 * 3600 <= x < 9.5 * 3600 or 13.5 * 3600 <= x < 13.75 * 3600 for x in t)
    assert list(day.codes) == list(demand.mix)
    assert not any(day.no_show)
    more = draw_expected(demand, [(a, b, 2 * c) for a, b, c in pieces], np.random.default_rng(1))
    assert len(more) > len(day)
    assert list(more.svc)[: len(day)] == list(day.svc)
    assert list(more.service_s)[: len(day)] == list(day.service_s)
    assert len(draw_expected(demand, [], np.random.default_rng(1))) == 0
    # a closed day is not simulated at all
    slots = (540, 570)
    waits = simulate_waits(
        liwan,
        slots,
        np.array([[0.0, 0.0], [300.0, 300.0]]),
        [dt.date(2026, 5, 1), dt.date(2026, 5, 6)],
    )
    assert not waits.tickets[0].any()
    assert waits.tickets[1].sum() > 0
    assert waits.mean_wait(0) == 0.0


def test_the_retained_message_holds_the_month_by_hour_with_lunch_closed(liwan: HallConfig) -> None:
    history = generate_history(liwan, 3, seed=1, end=END)
    # one simulated day per forecast day: the message is the same whatever the number, and
    # a Liwan month at 4 would take ~7 s on an install without the compiled core
    fc = forecast_from(liwan, history, days=30, replications=1)
    assert fc.waits is not None
    assert fc.waits.replications == 1
    today = fc.days[3]
    state = fc.comfort_state(7, today)
    raw = state.model_dump_json().encode()
    assert len(raw) < 16 * 1024
    assert m.decode(m.ComfortState, raw) == state
    assert state.rev == 7
    assert [d.day for d in state.days] == fc.days[3:]
    assert state.method == "simulated waits"
    rows = {(r.day, r.hour): r for r in fc.hourly()}
    for d in state.days:
        assert d.level == fc.day_level(d.day)
        if not d.open:
            assert d.hours == []
            assert d.expected == []
            continue
        assert d.first_hour == 9
        for k, (level, n) in enumerate(zip(d.hours, d.expected, strict=True)):
            row = rows.get((d.day, d.first_hour + k))
            if row is None:  # 12:00-13:30 is lunch in Liwan: no hour 12
                assert d.first_hour + k == 12
                assert level is None
                assert n == 0
            else:
                assert (level, n) == (row.level, round(row.count))
    with pytest.raises(ValueError, match="counts"):
        m.ComfortDay(day=today, open=True, level="较少", hours=["较少"], expected=[])


def test_a_month_of_simulated_waits_runs_on_the_compiled_core(liwan: HallConfig) -> None:
    """The coordinator builds the forecast at start: Liwan's 30 days (22 open, ~11,000
    arrivals each, 4 simulated days per day) take ~0.2 s on the compiled core; the pure
    one, ~7 s, is used only when the compiled one is not built. The time is measured in
    bench/, not asserted here (a loaded CI box took 1.1 s); that the compiled core ran is."""
    try:
        load_core("compiled")
    except ImportError as exc:
        missing(f"the compiled dispatch core: {exc}")
    history = generate_history(liwan, 3, seed=1, end=END)
    fc = forecast_from(liwan, history, days=30)
    assert fc.waits is not None
    assert fc.waits.core == "compiled"
    assert fc.waits.replications == 4
    assert fc.waits.wall_s > 0


def test_counts_come_from_issued_tickets_in_the_event_log(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    cfg = small_hall()
    path = tmp_path / "log.sqlite"
    q = HallQueue(cfg, EventLog(path), core_cls)

    def issue(service: str, when: float) -> dict[str, Any]:
        return q.submit(
            "ticket", "dispenser", "pi-d1", m.IssueRequest(kind="issue", service=service), when
        ).record

    for minute in (5, 20, 29):
        issue("tax-filing", at(9, minute))
    repeated = m.IssueRequest(kind="issue", service="tax-filing")
    q.submit("ticket", "dispenser", "pi-d1", repeated, at(9, 30))
    q.submit("ticket", "dispenser", "pi-d1", repeated, at(9, 31))  # duplicate: counted once
    issue("tax-filing", at(9, 59, 59))
    results = [issue("invoice", at(10, 2)) for _ in range(6)]  # daily cap 5: one refused
    assert [r["ok"] for r in results] == [True] * 5 + [False]
    assert not issue("green", at(15))["ok"]  # green only 09:00-12:00: refused, not counted
    issue("tax-filing", at(14, 10, day=32))  # two days on; the day between had nobody
    q.submit(
        "window", "window", "pi-w1", m.WindowAction(window=1, action="call"), at(14, 11, day=32)
    )
    q.log.close()

    h = arrival_counts(path, cfg)
    monday = dt.date(2026, 11, 30)
    assert h.start == monday
    assert h.end == monday + dt.timedelta(days=2)
    assert h.slots == open_slots(cfg)[0]
    assert h.count(monday, 9, 0) == 3
    assert h.count(monday, 9, 30) == 2
    assert h.count(monday, 10, 0) == 5
    assert h.count(monday, 15, 0) == 0
    assert h.count(monday + dt.timedelta(days=1), 9) == 0
    assert h.count(monday + dt.timedelta(days=2), 14, 0) == 1
    assert int(h.counts.sum()) == 11
    assert h.as_dict()[(monday, 600)] == 5


def test_a_short_log_falls_back_to_a_generated_history(tmp_path: Path, core_cls: type[Any]) -> None:
    cfg = small_hall()
    path = tmp_path / "log.sqlite"
    q = HallQueue(cfg, EventLog(path), core_cls)
    q.submit("ticket", "dispenser", "pi-d1", m.IssueRequest(kind="issue", service="invoice"), at(9))
    q.log.close()
    fc = build_forecast(cfg, log_path=path, start=dt.date(2026, 12, 1), days=7)
    assert fc.source.startswith("generated: 6 months, seed 1")
    assert "holds 0.1 weeks, fewer than 8" in fc.source  # one day
    missing = build_forecast(cfg, log_path=tmp_path / "none.sqlite", start=dt.date(2026, 12, 1))
    assert "no event log at" in missing.source
    assert len(missing.days) == 30


def test_a_long_enough_log_is_used(tmp_path: Path, hall: HallConfig) -> None:
    """Replay a (light: every entry is a durable commit) generated history's counts into
    an event log and forecast from it."""
    history = generate_history(hall, 3, seed=5, end=END, volume=40)
    path = tmp_path / "log.sqlite"
    log = EventLog(path)
    tz = hall.hall.tzinfo
    ok = {"ok": True, "info": {"number": "A001"}}
    recent = history.split(10 * 7)[1]  # ten weeks
    seq = 0
    for (day, slot), n in recent.as_dict().items():
        for k in range(n):
            ts = (
                dt.datetime(
                    day.year, day.month, day.day, slot // 60, slot % 60, tzinfo=tz
                ).timestamp()
                + 30 * 60 * (k + 0.5) / n
            )
            seq += 1
            log.append(
                kind="ticket",
                cmd_id=f"c{seq}",
                day=day.isoformat(),
                at=ts,
                source="dispenser/pi-d1",
                payload="{}",
                result=ok,
            )
    log.append(
        kind="ticket",
        cmd_id="refused",
        day=END.isoformat(),
        at=at(9, day=1),
        source="dispenser/pi-d1",
        payload="{}",
        result={"ok": False, "error": {}},
    )
    log.close()
    back = arrival_counts(path, hall)
    skip = (back.start - recent.start).days  # a leading closed Sunday leaves no trace
    assert back.end == recent.end
    assert np.array_equal(back.counts, recent.counts[skip:])
    fc = build_forecast(hall, log_path=path, start=dt.date(2026, 11, 1), days=30)
    assert fc.source.startswith("event log")
    assert fc.history_weeks == pytest.approx(10, abs=0.2)
    # as the coordinator builds it: the log read here, counted and simulated in a child
    forked = build_forecast(
        hall,
        log_path=path,
        start=dt.date(2026, 11, 1),
        days=30,
        run=lambda make: call_forked(make, timeout_s=120),
    )
    assert (forked.source, forked.history_weeks) == (fc.source, fc.history_weeks)
    assert forked.days == fc.days


def test_the_forecast_child_imports_nothing_its_parent_had_not() -> None:
    """The simulated days run in a forked child, which must import nothing: a module
    another thread of the coordinator was importing at the fork (its wait estimates load
    the same simulation modules at start) keeps its lock taken in the child, and the
    child hangs. In a fresh interpreter loaded as a coordinator is, what the child's work
    imports is imported before the fork."""
    code = """
import sys, datetime as dt
import coordinator.service
from coordinator.forecast.index import build_forecast
from hallq.config import load_config
from hallq.examples import example_hall
new = []
def run(make):
    before = set(sys.modules)
    out = make()
    new.extend(sorted(set(sys.modules) - before))
    return out
build_forecast(load_config(example_hall()), start=dt.date(2026, 12, 7), days=7, run=run)
print(new)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_csv_png_and_table_are_written(tmp_path: Path, hall: HallConfig, history: Any) -> None:
    fc = forecast_from(hall, history, days=30)
    with export_csv(fc, tmp_path / "m" / "comfort.csv").open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["wait_min"]) >= 0 for r in rows)
    open_days = [d for d in fc.days if fc.is_open(d)]
    hours = sorted({s // 60 for s in fc.slots})
    assert len(rows) == len(open_days) * len(hours)
    first = open_days[0]
    assert rows[0]["date"] == first.isoformat()
    assert rows[0]["hour"] == f"{hours[0]:02d}:00"
    assert {r["level"] for r in rows} <= set(LEVELS)
    first_day = [float(r["forecast"]) for r in rows if r["date"] == first.isoformat()]
    assert sum(first_day) == pytest.approx(
        fc.mean[fc.days.index(first)].sum(), abs=0.1 * len(hours)
    )
    png = export_png(fc, tmp_path / "m" / "comfort.png")
    with Image.open(png) as img:
        img.verify()
    with Image.open(png) as img:
        assert img.format == "PNG"
        assert img.width > 300
        assert img.height > 30 * 20
    doc = fc.to_json()
    assert len(doc["days"]) == 30
    assert doc["hours"][0]["level"] in LEVELS
    assert doc["thresholds_per_hour"]["method"] == "simulated"
    assert "hallq dispatch" in doc["thresholds_per_hour"]["basis"]
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(render_forecast(fc))
    text = console.export_text()
    assert "休息" in text
    assert fc.start.isoformat() in text
    assert "levels by simulated wait of the tickets issued in each hour" in text
    assert "4 days per forecast day, hallq dispatch" in text
    by_rates = forecast_from(hall, history, days=30, level_by="rates")
    with export_csv(by_rates, tmp_path / "r.csv").open(encoding="utf-8-sig") as f:
        assert {r["wait_min"] for r in csv.DictReader(f)} == {""}
    console = Console(record=True, width=200)
    console.print(render_forecast(by_rates))
    assert "edges from simulated waits: hallq dispatch" in console.export_text()


# --- the hall calendar: holidays, 调休 working weekends, moved filing deadlines ----------

# Labour Day, Mid-Autumn and National Day 2026 with their 调休 weekend days, and the
# deadlines they move (税总办征科函〔2025〕64号): May to the 22nd, October to the 26th.
CALENDAR = """closed_days = [2026-05-01, 2026-05-02, 2026-05-03, 2026-05-04, 2026-05-05,
               2026-09-25, 2026-09-26, 2026-09-27, 2026-10-01, 2026-10-02, 2026-10-03,
               2026-10-04, 2026-10-05, 2026-10-06, 2026-10-07]
extra_workdays = [2026-05-09, 2026-09-20, 2026-10-10]
filing_deadlines = { "2026-05" = 22, "2026-10" = 26 }
"""
NATIONAL_DAY = [dt.date(2026, 10, d) for d in range(1, 8)]
TIAOXIU_SATURDAY = dt.date(2026, 10, 10)


@pytest.fixture(scope="module")
def cal_hall() -> HallConfig:
    hours = 'open_hours = [["08:00", "18:00"]]\n'
    return parse_config(small_hall_text().replace(hours, hours + CALENDAR))


@pytest.fixture(scope="module")
def october(cal_hall: HallConfig) -> Any:
    """October 2026 forecast from six generated months that follow the calendar."""
    history = generate_history(cal_hall, 6, seed=3, end=dt.date(2026, 9, 30))
    return forecast_from(cal_hall, history, days=31)


def _total(fc: Any, day: dt.date) -> float:
    return float(fc.mean[fc.days.index(day)].sum())


def test_filing_phases_follow_the_deadline() -> None:
    # the default deadline gives the groups the model and the simulator always had
    assert [filing_phase(d) for d in range(1, 32)] == [EARLY] * 9 + [PEAK] * 6 + [AFTER] * 16
    assert [filing_group(d) for d in (1, 9, 10, 15, 16, 31)] == [0, 0, 1, 1, 2, 2]
    assert [filing_factor(d) for d in (9, 10, 15, 16)] == [1.0, 1.4, 1.4, 0.6]
    # October 2026: the deadline moved to the 26th; the peak is the 21st to the 26th
    assert [filing_phase(d, 26) for d in (20, 21, 26, 27)] == [EARLY, PEAK, PEAK, AFTER]
    # February 2026: deadline the 24th right after the Spring Festival (15th-23rd closed):
    # the peak reaches back over the holiday to the days before it
    closed = range(15, 24)
    assert [d for d in range(1, 29) if filing_phase(d, 24, closed) == PEAK and d not in closed] == [
        10,
        11,
        12,
        13,
        14,
        24,
    ]
    cal = Calendar.make(deadlines={"2026-10": 26})
    assert cal.deadline(dt.date(2026, 10, 3)) == 26
    assert cal.deadline(dt.date(2026, 11, 3)) == 15
    assert cal.filing_factor(dt.date(2026, 10, 22)) == 1.4
    assert cal.filing_factor(dt.date(2026, 10, 12)) == 1.0


def test_a_holiday_in_the_forecast_is_closed_and_quiet(cal_hall: HallConfig, october: Any) -> None:
    fc = october
    assert fc.days[0] == NATIONAL_DAY[0]
    assert len(fc.days) == 31
    tz = cal_hall.hall.tzinfo
    assert fc.waits is not None
    for d in NATIONAL_DAY:
        assert not fc.is_open(d)
        assert _total(fc, d) == 0
        assert fc.day_level(d) == QUIET
        assert not fc.waits.tickets[fc.days.index(d)].any()  # not simulated
        ten = dt.datetime(d.year, d.month, d.day, 10, 0, tzinfo=tz).timestamp()
        assert fc.level_at(ten) == QUIET
        assert fc.today_level(ten) == QUIET
    assert dt.date(2026, 10, 8) in [r.day for r in fc.hourly()]
    assert not {r.day for r in fc.hourly()} & set(NATIONAL_DAY)
    state = fc.comfort_state(1, fc.days[0])
    by_day = {d.day: d for d in state.days}
    assert all(not by_day[d].open and by_day[d].hours == [] for d in NATIONAL_DAY)
    assert by_day[dt.date(2026, 10, 8)].open  # a Thursday after the holiday
    doc = {d["date"]: d for d in fc.to_json()["days"]}
    assert doc["2026-10-01"] == {"date": "2026-10-01", "open": False, "count": 0.0, "level": QUIET}


def test_a_tiaoxiu_saturday_is_open_like_a_working_day(october: Any) -> None:
    fc = october
    sat = TIAOXIU_SATURDAY
    assert sat.weekday() == 5
    assert fc.is_open(sat)
    # the hall still opens on Saturdays (the generator's skeleton service), Sundays not;
    # the 调休 Sunday in the history (2026-09-20) does not open Sundays
    assert fc.fit.open_weekdays == (0, 1, 2, 3, 4, 5)
    assert not fc.is_open(dt.date(2026, 10, 11))
    # the mean of the Monday-to-Friday effects: as busy as the weekdays of the week after
    # (same filing phase), several times a normal Saturday
    week = [dt.date(2026, 10, d) for d in range(12, 17)]
    weekdays = [_total(fc, d) for d in week]
    assert _total(fc, sat) == pytest.approx(sum(weekdays) / 5, rel=0.05)
    assert _total(fc, sat) > 4 * _total(fc, dt.date(2026, 10, 17))
    rank = [LEVELS.index(fc.day_level(d)) for d in week]
    assert min(rank) <= LEVELS.index(fc.day_level(sat)) <= max(rank)
    assert fc.day_level(sat) != QUIET
    assert fc.day_level(dt.date(2026, 10, 17)) == QUIET
    assert {r.day for r in fc.hourly()} >= {sat}


def test_a_moved_october_deadline_moves_the_peak(cal_hall: HallConfig, october: Any) -> None:
    fc = october
    open_days = [d for d in fc.days if fc.is_open(d)]
    busiest = sorted(open_days, key=lambda d: _total(fc, d), reverse=True)
    peak = [dt.date(2026, 10, d) for d in range(21, 27)]
    assert busiest[0] == dt.date(2026, 10, 26)  # the deadline, a Monday
    assert set(busiest[:4]) <= set(peak)
    mid_month = [dt.date(2026, 10, d) for d in range(12, 17)]
    assert not set(busiest[:4]) & set(mid_month)
    peak_weekdays = [d for d in peak if d.weekday() < 5]
    assert np.mean([_total(fc, d) for d in peak_weekdays]) > 1.25 * np.mean(
        [_total(fc, d) for d in mid_month]
    )
    # the model saw the moved May deadline in the history: its peak effect is the truth
    assert fc.fit.effect("filing days 10-15") == pytest.approx(math.log(1.4), abs=0.04)
    # without the calendar the same history puts October's peak on the 10th-15th
    blind = forecast_from(
        hall_without_calendar(cal_hall),
        generate_history(cal_hall, 6, seed=3, end=dt.date(2026, 9, 30)),
        days=31,
    )
    top = sorted(
        (d for d in blind.days if blind.is_open(d)), key=lambda d: _total(blind, d), reverse=True
    )[:4]
    assert all(10 <= d.day <= 15 for d in top)
    assert blind.is_open(dt.date(2026, 10, 1))  # and opens on National Day


def hall_without_calendar(cfg: HallConfig) -> HallConfig:
    hall = cfg.hall.model_copy(
        update={"closed_days": [], "extra_workdays": [], "filing_deadlines": {}}
    )
    return cfg.model_copy(update={"hall": hall})


def test_the_generated_history_follows_the_calendar(cal_hall: HallConfig) -> None:
    history = generate_history(cal_hall, 6, seed=3, end=dt.date(2026, 9, 30))
    totals = dict(zip(history.days, history.counts.sum(axis=1), strict=True))
    assert all(totals[dt.date(2026, 5, d)] == 0 for d in range(1, 6))
    assert totals[dt.date(2026, 5, 9)] > 4 * totals[dt.date(2026, 5, 16)]  # 调休 Saturday
    assert totals[dt.date(2026, 9, 20)] > 0  # 调休 Sunday
    may = dict(
        zip(
            history.days,
            synthetic_means(cal_hall, history.days, history.start).sum(axis=1),
            strict=True,
        )
    )
    # the peak of May follows its deadline (22nd): Thursday 21st vs Thursday 14th
    assert may[dt.date(2026, 5, 21)] == pytest.approx(
        1.4 * may[dt.date(2026, 5, 14)] * math.exp(SYNTHETIC_TREND * 7 / 30.4375)
    )
    assert may[dt.date(2026, 5, 9)] == pytest.approx(
        workday_factor(SYNTHETIC_WEEKDAY)
        / SYNTHETIC_WEEKDAY[5]
        * may[dt.date(2026, 5, 16)]
        * math.exp(-SYNTHETIC_TREND * 7 / 30.4375)
    )
    # no calendar: the generator's means as they were before it existed
    plain = small_hall()
    days = [END - dt.timedelta(days=k) for k in range(60)]
    origin = days[-1]
    slots, open_min = open_slots(plain)
    demand = Demand.for_services([s.code for s in plain.services])
    w = np.array([demand.weight_at(s) * mins / 30 for s, mins in zip(slots, open_min, strict=True)])
    old = (
        np.array(
            [
                synthetic_volume(plain)
                * math.exp(SYNTHETIC_TREND * (d - origin).days / 30.4375)
                * filing_factor(d.day)
                / FILING_MEAN
                * SYNTHETIC_WEEKDAY[d.weekday()]
                for d in days
            ]
        )[:, None]
        * (w / w.sum())[None, :]
    )
    assert np.array_equal(synthetic_means(plain, days, origin), old)


def test_the_fit_skips_closed_days_even_with_tickets(cal_hall: HallConfig) -> None:
    history = generate_history(cal_hall, 6, seed=3, end=dt.date(2026, 9, 30))
    cal = Calendar.of(cal_hall)
    model = fit(history, calendar=cal)
    counts = history.counts.copy()
    counts[history.days.index(dt.date(2026, 5, 4))] = 500  # a green channel on a holiday
    noisy = dataclasses.replace(history, counts=counts)
    assert np.allclose(fit(noisy, calendar=cal).coef, model.coef)
    assert not np.allclose(fit(noisy).coef, fit(history).coef)  # a calendar-blind fit uses it


def test_seasonal_naive_leaves_holidays_and_tiaoxiu_days_out(cal_hall: HallConfig) -> None:
    history = generate_history(cal_hall, 6, seed=3, end=dt.date(2026, 9, 30))
    cal = Calendar.of(cal_hall)
    counts = history.counts.copy()
    counts[history.days.index(dt.date(2026, 9, 25))] = 500  # tickets on a closed Friday
    train = dataclasses.replace(history, counts=counts)
    sat, fri, holiday = TIAOXIU_SATURDAY, dt.date(2026, 10, 9), dt.date(2026, 10, 2)
    out = seasonal_naive(train, [sat, fri, holiday, dt.date(2026, 10, 17)], calendar=cal)
    rows = {d: i for i, d in enumerate(train.days)}
    fridays = [rows[dt.date(2026, 9, d)] for d in (4, 11, 18)] + [rows[dt.date(2026, 8, 28)]]
    assert np.allclose(out[1], train.counts[fridays].mean(axis=0))  # 25 Sep left out
    assert not out[2].any()  # closed
    saturdays = [rows[dt.date(2026, 9, d)] for d in (5, 12, 19)] + [rows[dt.date(2026, 8, 29)]]
    assert np.allclose(out[3], train.counts[saturdays].mean(axis=0))
    workdays = [
        r
        for r in range(len(train.days) - 1, -1, -1)
        if train.days[r].weekday() < 5
        and train.counts[r].sum() > 0
        and not cal.is_closed(train.days[r])
    ][:20]
    assert np.allclose(out[0], train.counts[workdays].mean(axis=0))


def test_evaluation_counts_the_days_a_forecast_gets_open_or_closed_wrong(
    cal_hall: HallConfig,
) -> None:
    history = generate_history(cal_hall, 6, seed=3, end=dt.date(2026, 10, 31))
    ev = evaluate(cal_hall, history, holdout_months=2, level_by="rates")
    assert ev.days == 61
    assert ev.wrong_days == 0
    assert ev.baseline_wrong_days == 0
    blind = evaluate(hall_without_calendar(cal_hall), history, holdout_months=2, level_by="rates")
    # 25-26 Sep and 1-3, 5-7 Oct forecast open, 20 Sep (调休 Sunday) forecast closed
    assert blind.wrong_days == 9
    assert blind.mae > 1.8 * ev.mae  # (2.00x with 8,440 arrivals a day, 2.02x with 9,000)
    assert any("closed but open: model 0" in line for line in ev.lines())
