"""Learning demand from an event log: a log written by the real HallQueue with counter
times drawn from known lognormals, fitted back; fallbacks reported; bad files refused."""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import json
import math
import random
import sqlite3
import statistics
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
from click.testing import CliRunner

from coordinator.dispatch import load_core
from coordinator.eventlog import EventLog
from coordinator.hallqueue import HallQueue
from coordinator.simulation import learn
from coordinator.simulation.learn import (
    LearnError,
    fit_lognormal,
    learn_counter_times,
    learn_demand,
)
from coordinator.simulation.profile import SERVICE_SIGMA, Demand
from coordinator.snapshot import call_forked
from hallq import messages as m
from hallq.config import HallConfig, parse_config
from hallqctl.cli import main

from .halls import at, small_hall_text

# True counter-time lognormals (on seconds). Window 1 serves all, window 2 invoices only.
TRUE = {"tax-filing": (math.log(150.0), 0.7), "invoice": (math.log(80.0), 0.9)}
PER_DAY = {"tax-filing": 90, "invoice": 60, "green": 2}
DAYS = (30, 31, 32, 33)
GAP_S = 45.0  # between issued tickets, from 09:00
MIN_SAMPLES = 30


def hall_text() -> str:
    """The small hall without its invoice cap, so invoices reach a fit's worth of samples,
    and with pads that may end a ticket at once (call_hold_s = 0): a day's bad samples
    (a ticket finished as it is called) come from somewhere, an older log among them."""
    return small_hall_text(call_hold_s=0).replace("daily_cap = 5\nwarn_at = 3\n", "")


def hall() -> HallConfig:
    return parse_config(hall_text(), "small-hall.toml")


def command(window: int, action: str) -> m.WindowAction | m.Finish:
    if action == "finish":
        return m.Finish(window=window, action="finish")
    return m.WindowAction(window=window, action=action)  # type: ignore[arg-type]


def write_log(path: Path, seed: int = 7) -> dict[str, list[float]]:
    """Run the hall days through HallQueue.submit (what the coordinator does) and return
    the counter times they were driven with, by service."""
    rng = random.Random(seed)
    q = HallQueue(hall(), EventLog(path), load_core("pure"))
    drawn: dict[str, list[float]] = {}
    for day in DAYS:
        services = [s for s, n in PER_DAY.items() for _ in range(n)]
        rng.shuffle(services)
        for i, service in enumerate(services):
            q.submit(
                "ticket",
                "dispenser",
                "pi-d1",
                m.IssueRequest(kind="issue", service=service),
                at(9, 0, GAP_S * i, day),
            )
        serve_day(q, rng, at(9, 1, 0.0, day), at(9, 0, GAP_S * len(services), day), drawn)
    q.log.close()
    return drawn


def serve_day(
    q: HallQueue,
    rng: random.Random,
    first_call: float,
    last_issue: float,
    drawn: dict[str, list[float]],
) -> None:
    """Windows 1 and 2 (pi-w1's) serve in hall-time order. Half the tickets get a ``start``
    press after a walk to the counter (not counter time), and a third end by the window
    calling the next number, which finishes them without a ``finish`` entry. Each window's
    first ticket is a bad sample: zero at window 1, five hours at window 2."""
    order = itertools.count()  # equal times run in the order they were planned
    agenda: list[tuple[float, int, int, str]] = []

    def plan(t: float, window: int, action: str) -> None:
        heapq.heappush(agenda, (t, next(order), window, action))

    plan(first_call, 1, "call")
    plan(first_call, 2, "call")
    bad = {1: 0.0, 2: 5 * 3600.0}
    while agenda:
        now, _, window, action = heapq.heappop(agenda)
        done = q.submit("window", "window", "pi-w1", command(window, action), now)
        if action != "call":
            continue
        if not done.record["ok"]:  # nobody waiting: end the current ticket, look again
            if q.engine.windows[window].current is not None:
                q.submit("window", "window", "pi-w1", command(window, "finish"), now)
            if now < last_issue:
                plan(now + 30.0, window, "call")
            continue
        service = q.engine.by_number[done.record["ticket"]].service
        begin = now
        if window in bad:
            took = bad.pop(window)
        else:
            mu, sigma = TRUE.get(service, (math.log(100.0), 0.3))
            took = rng.lognormvariate(mu, sigma)
            drawn.setdefault(service, []).append(took)
            if rng.random() < 0.5:
                begin = now + rng.uniform(5.0, 60.0)
                plan(begin, window, "start")
        if rng.random() < 1 / 3:  # the next call finishes this one
            plan(begin + took, window, "call")
        else:
            plan(begin + took, window, "finish")
            plan(begin + took + 15.0, window, "call")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[float]]]:
    path = tmp_path_factory.mktemp("learn") / "hall.sqlite"
    return path, write_log(path)


def test_counter_times_are_fitted_by_maximum_likelihood_on_the_logs(
    history: tuple[Path, dict[str, list[float]]],
) -> None:
    path, drawn = history
    learned = learn_demand(path, hall(), min_samples=MIN_SAMPLES, core_kind="pure")
    for code, (mu, sigma) in TRUE.items():
        fit = learned.services[code]
        n = len(drawn[code])
        assert fit.learned
        assert fit.served == n >= 200
        assert fit.mu is not None
        assert fit.sigma is not None
        # the estimate of exactly the times the log was written with...
        logs = [math.log(x) for x in drawn[code]]
        want_mu, want_sigma = statistics.fmean(logs), statistics.pstdev(logs)
        assert fit.mu == pytest.approx(want_mu, abs=1e-6)
        assert fit.sigma == pytest.approx(want_sigma, abs=1e-6)
        # ...which lands nearer the truth than half the bias of the log of the mean
        # (mu + sigma²/2, what a mean-based fit gives), and that fit does not
        tol = sigma**2 / 4
        assert 3 * sigma / math.sqrt(n) < tol  # enough samples for the check to mean it
        assert abs(fit.mu - mu) < tol
        assert abs(math.log(sum(drawn[code]) / n) - mu) > tol
        assert abs(fit.sigma - sigma) < 3 * sigma / math.sqrt(2 * n)
        # the simulator draws with the same lognormal: mean = exp(mu + sigma²/2)
        assert learned.demand.mean_min[code] * 60 == pytest.approx(
            math.exp(fit.mu + fit.sigma**2 / 2)
        )
        assert learned.demand.sigmas is not None
        assert learned.demand.sigmas[code] == pytest.approx(fit.sigma)


def test_bad_samples_are_dropped_and_counted(history: tuple[Path, dict[str, list[float]]]) -> None:
    path, _ = history
    learned = learn_demand(path, hall(), min_samples=MIN_SAMPLES, core_kind="pure")
    assert sum(f.dropped for f in learned.services.values()) == 2 * len(DAYS)
    assert learned.days == len(DAYS)
    assert not learned.notes


def test_a_service_with_too_few_served_tickets_keeps_the_seed_and_says_so(
    history: tuple[Path, dict[str, list[float]]],
) -> None:
    path, drawn = history
    cfg = hall()
    learned = learn_demand(path, cfg, min_samples=MIN_SAMPLES, core_kind="pure")
    seed = Demand.for_services([s.code for s in cfg.services])
    green = learned.services["green"]
    assert learned.fell_back == ["green"]
    assert learned.learned == ["tax-filing", "invoice"]
    assert not green.learned
    assert green.mu is None
    assert green.served == len(drawn["green"]) < MIN_SAMPLES
    assert green.mean_min == seed.mean_min["green"]
    assert green.sigma_used == SERVICE_SIGMA
    # the mix is the issued counts, the fallback service included
    total = sum(PER_DAY.values())
    assert learned.mix_learned
    assert learned.issued == total * len(DAYS)
    for code, n in PER_DAY.items():
        assert learned.demand.mix[code] == pytest.approx(n / total)
        assert learned.services[code].issued == n * len(DAYS)


def test_the_profile_needs_enough_tickets_per_half_hour(
    history: tuple[Path, dict[str, list[float]]],
) -> None:
    path, _ = history
    cfg = hall()
    # 608 tickets over the hall's 20 open half hours from 08:00: 30.4 a half hour
    default = learn_demand(path, cfg, min_samples=31, core_kind="pure")
    assert not default.profile_learned
    assert default.demand.half_hours == Demand.for_services(["x"]).half_hours
    assert default.demand.profile_start == dt.time(9, 0)
    shaped = learn_demand(path, cfg, min_samples=30, core_kind="pure")
    assert shaped.profile_learned
    assert shaped.demand.profile_start == dt.time(8, 0)
    # the hall opens at 08:00 and nobody came before 09:00; then one ticket every 45 s:
    # 40, 40, 40 and 32 in the next four half hours of each day; the 16 open half hours
    # without a ticket count half a ticket each
    n = len(DAYS)
    total = sum(PER_DAY.values()) * n + 16 * 0.5
    assert shaped.demand.half_hours == pytest.approx(
        tuple(100 * k / total for k in (0.5, 0.5, 40 * n, 40 * n, 40 * n, 32 * n, *[0.5] * 14))
    )
    assert shaped.demand.weight_at(8 * 60 + 10) == pytest.approx(100 * 0.5 / total)
    assert shaped.demand.weight_at(9 * 60 + 10) == pytest.approx(100 * 40 * n / total)


def test_since_keeps_only_later_days(history: tuple[Path, dict[str, list[float]]]) -> None:
    path, _ = history
    learned = learn_demand(
        path, hall(), since=dt.date(2026, 12, 1), min_samples=MIN_SAMPLES, core_kind="pure"
    )
    assert learned.days == 3
    assert learned.issued == sum(PER_DAY.values()) * 3


def test_the_coordinator_learns_the_same_counter_times_replaying_each_closed_day_once(
    history: tuple[Path, dict[str, list[float]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the wait estimates use after a restart: the fits learn_demand gives, from
    per-day sums kept beside the log; a restart replays only the days not kept yet (and
    the last, which may still be open)."""
    path, _ = history
    full = learn_demand(path, hall(), min_samples=MIN_SAMPLES, core_kind="pure")
    cache = tmp_path / "counter-times.json"
    replayed: list[int] = []
    replay_day = learn._replay_day

    def counting(cfg: HallConfig, core_cls: type, rows: list[tuple[object, ...]]) -> object:
        replayed.append(len(rows))
        return replay_day(cfg, core_cls, rows)

    monkeypatch.setattr(learn, "_replay_day", counting)
    first = learn_counter_times(
        path, hall(), min_samples=MIN_SAMPLES, core_kind="pure", cache=cache
    )
    assert len(replayed) == len(DAYS)
    again = learn_counter_times(
        path, hall(), min_samples=MIN_SAMPLES, core_kind="pure", cache=cache
    )
    assert len(replayed) == len(DAYS) + 1  # the last day only
    for code in TRUE:
        fit = full.services[code]
        assert first[code] == pytest.approx((fit.mu, fit.sigma), abs=1e-9)
        assert again[code] == pytest.approx(first[code], abs=1e-12)
    assert "green" not in first  # too few samples: the estimator keeps today's
    # another hall file replays differently: its kept sums are not used
    other = parse_config(hall_text().replace('id = "pi-w1"', 'id = "pi-w9"'), "other.toml")
    theirs = learn_counter_times(path, other, min_samples=MIN_SAMPLES)
    assert theirs != again
    assert learn_counter_times(path, other, min_samples=MIN_SAMPLES, cache=cache) == theirs
    cache.write_text("{not json")  # damaged: only slower
    assert learn_counter_times(path, hall(), min_samples=MIN_SAMPLES, cache=cache) == again


def test_counter_times_replayed_in_forked_children_are_the_ones_replayed_here(
    history: tuple[Path, dict[str, list[float]]], tmp_path: Path
) -> None:
    """As the coordinator learns them: each day read here, replayed in a child (so its
    seconds of pure Python hold no GIL of the serving process), and kept the same. The
    child opens no SQLite database: one forked while another thread of the coordinator
    was inside SQLite could inherit its locks taken and hang."""
    path, _ = history
    here = learn_counter_times(path, hall(), min_samples=MIN_SAMPLES, core_kind="pure")

    def without_sqlite(make: Callable[[], Any]) -> Any:
        def refuse(*args: object, **kwargs: object) -> NoReturn:
            raise AssertionError("the replay opened an SQLite database")

        sqlite3.connect = refuse  # in the child only
        return make()

    forked = learn_counter_times(
        path,
        hall(),
        min_samples=MIN_SAMPLES,
        core_kind="pure",
        cache=tmp_path / "counter-times.json",
        run=lambda make: call_forked(lambda: without_sqlite(make), timeout_s=120),
    )
    assert forked == here
    assert set(here) >= set(TRUE)


def test_learning_counter_times_ends_when_the_coordinator_stops(
    history: tuple[Path, dict[str, list[float]]],
) -> None:
    path, _ = history
    stop = threading.Event()
    stop.set()
    assert learn_counter_times(path, hall(), min_samples=MIN_SAMPLES, stop=stop) == {}
    since = learn_counter_times(path, hall(), min_samples=1, since=dt.date(2026, 12, 3))
    assert set(since) == {"tax-filing", "invoice", "green"}  # one day is enough for 1


def test_replaying_under_another_hall_file_is_flagged(
    history: tuple[Path, dict[str, list[float]]],
) -> None:
    path, _ = history
    other = parse_config(hall_text().replace('id = "pi-w1"', 'id = "pi-w9"'), "other.toml")
    learned = learn_demand(path, other, min_samples=MIN_SAMPLES, core_kind="pure")
    assert learned.fell_back == ["tax-filing", "invoice", "green"]
    assert any("hall file the log was written under" in n for n in learned.notes)


def test_simulate_with_history_prints_what_was_learned(
    history: tuple[Path, dict[str, list[float]]], tmp_path: Path
) -> None:
    path, _ = history
    hall_file = tmp_path / "hall.toml"
    hall_file.write_text(hall_text())
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        main,
        [
            "simulate",
            "--config",
            str(hall_file),
            "--history",
            str(path),
            "-r",
            "1",
            "--volume",
            "200",
            "--policy",
            "hallq",
            "--dispatch",
            "pure",
        ],
    )
    assert result.exit_code == 0, result.output
    learned, _, report = result.output.partition("wait (min)")
    assert "counter time per service" in learned
    assert report
    rows = {
        line.split()[1]: line
        for line in learned.splitlines()
        if line.startswith("│") and line.split()[1] in PER_DAY
    }
    assert "learned" in rows["tax-filing"]
    assert "learned" in rows["invoice"]
    assert "seed (too few)" in rows["green"]


def test_advise_plans_with_the_learned_demand(
    history: tuple[Path, dict[str, list[float]]],
    tmp_path: Path,
) -> None:
    """hallq advise --history: the plan's days are drawn from the learned demand (its
    counter times are longer than the seed's here, so FIFO waits longer), and a bad log
    is one line and exit 2 as for simulate."""
    from click.testing import CliRunner, Result

    from hallqctl.cli import main

    def advise(args: list[str]) -> Result:
        return CliRunner().invoke(main, ["advise", *args], catch_exceptions=False)

    path, _ = history
    hall_file = tmp_path / "hall.toml"
    hall_file.write_text(hall_text())
    base = [
        str(hall_file),
        "--volume",
        "150",
        "--replications",
        "2",
        "--search-days",
        "1",
        "--rounds",
        "1",
        "--no-live",
        "--core",
        "pure",
        "--json",
    ]
    seed = advise(base)
    assert seed.exit_code == 0, seed.output
    seed_plan = json.loads(seed.stdout.strip().splitlines()[-1])
    learned = advise([*base, "--history", str(path)])
    assert learned.exit_code == 0, learned.output
    learned_plan = json.loads(learned.stdout.strip().splitlines()[-1])
    assert "counter time per service" in learned.stderr
    fifo = [p["wait_min"]["fifo"]["all"]["mean"] for p in (seed_plan, learned_plan)]
    assert fifo[1] > fifo[0]
    bad = advise([str(hall_file), "--history", str(tmp_path / "nowhere.sqlite")])
    assert bad.exit_code == 2
    assert "no such file" in bad.stderr
    assert advise([str(hall_file), "--rounds", "x"]).exit_code == 2  # click's usage error


def _bad_logs(tmp: Path) -> dict[str, tuple[Path, str]]:
    missing = tmp / "nowhere.sqlite"
    text = tmp / "notes.txt"
    text.write_text("not a database, just notes\n" * 100)
    other = tmp / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE things (x)")
    empty = tmp / "empty.sqlite"
    EventLog(empty).close()
    return {
        "missing": (missing, "no such file"),
        "text": (text, "not a hallq event log"),
        "other": (other, "not a hallq event log"),
        "empty": (empty, "empty"),
        "dir": (tmp, "directory"),
    }


@pytest.mark.parametrize("case", ["missing", "text", "other", "empty", "dir"])
def test_a_bad_history_is_one_clear_line_and_exit_2(tmp_path: Path, case: str) -> None:
    path, why = _bad_logs(tmp_path)[case]
    with pytest.raises(LearnError, match=why):
        learn_demand(path, hall())
    hall_file = tmp_path / "hall.toml"
    hall_file.write_text(hall_text())
    result = CliRunner().invoke(
        main, ["simulate", "--config", str(hall_file), "--history", str(path), "-r", "1"]
    )
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0]
    assert why in lines[0]
    assert "Traceback" not in result.output


def test_a_log_with_no_issued_ticket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "quiet.sqlite"
    q = HallQueue(hall(), EventLog(path), load_core("pure"))
    q.submit("window", "window", "pi-w1", m.WindowAction(window=1, action="call"), at(9))
    q.log.close()
    with pytest.raises(LearnError, match="no tickets were issued"):
        learn_demand(path, hall())


def test_fit_is_the_log_moments() -> None:
    mu, sigma = fit_lognormal([math.e, math.e**3])
    assert (mu, sigma) == pytest.approx((2.0, 1.0))
