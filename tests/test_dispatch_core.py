"""The dispatch core, pure and compiled: both must pick exactly the same tickets.

Every test runs against both implementations of ``coordinator/dispatch_core.py``. Without a
built extension the compiled half is skipped on a developer machine, and fails under CI
(``CI`` set), where a silent fallback to pure Python would hide a broken build.
"""

from __future__ import annotations

import importlib.machinery
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator import dispatch
from coordinator.dispatch import active_kind, describe, load_core

from .ci import missing
from .fuzzing import count

GREEN, APPOINTMENT, ASSISTED, NORMAL = 0, 1, 2, 3


def _load(kind: str) -> type[Any]:
    try:
        return load_core(kind)
    except ImportError as exc:
        missing(f"the compiled dispatch core: {exc}")


@pytest.fixture(scope="module", params=["pure", "compiled"])
def core_cls(request: pytest.FixtureRequest) -> type[Any]:
    return _load(request.param)


def one_window(
    core_cls: type[Any],
    services: list[int] | None = None,
    weights: list[float] | None = None,
    n_services: int = 3,
) -> Any:
    core = core_cls(n_services, 2)
    services = [0] if services is None else services
    core.set_skills(0, services, [1.0] * len(services) if weights is None else weights)
    return core


def drain(core: Any, w: int, now: float) -> list[int]:
    called = []
    while (t := core.call_next(w, now)) >= 0:
        called.append(t)
    return called


# which implementation is which


def test_pure_kind_is_the_python_source() -> None:
    module = sys.modules[load_core("pure").__module__]
    assert module.__name__ == "coordinator._dispatch_core_pure"
    assert module.__file__ is not None
    assert module.__file__.endswith("dispatch_core.py")


def test_compiled_kind_is_an_extension_module() -> None:
    module = sys.modules[_load("compiled").__module__]
    assert module.__name__ == "coordinator.dispatch_core"
    assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)
    assert module.__file__ is not None
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert active_kind() == "compiled" or os.environ.get(dispatch.ENV_VAR)
    assert describe().startswith("dispatch core: compiled (Cython 3.")


def test_compiled_build_is_not_older_than_its_source() -> None:
    """Editing dispatch_core.py without rebuilding would test yesterday's compiled code."""
    module = sys.modules[_load("compiled").__module__]
    assert module.__file__ is not None
    built = Path(module.__file__)
    sources = [built.with_name("dispatch_core.py"), built.with_name("dispatch_core.pxd")]
    newest = max(p.stat().st_mtime for p in sources if p.exists())
    assert built.stat().st_mtime + 2.0 >= newest, (
        f"{built.name} is older than its source: rebuild with `pip install -e .`"
    )


def test_compiled_kind_refuses_the_python_source(monkeypatch: pytest.MonkeyPatch) -> None:
    pure = sys.modules[load_core("pure").__module__]
    monkeypatch.setitem(sys.modules, "coordinator.dispatch_core", pure)
    with pytest.raises(ImportError, match="compiled dispatch core is not built"):
        load_core("compiled")
    assert load_core("auto") is pure.DispatchCore
    assert active_kind() == "pure"
    assert describe() == "dispatch core: pure Python (no compiled extension found)"


def test_env_var_picks_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dispatch.ENV_VAR, "pure")
    assert load_core() is load_core("pure")
    assert active_kind() == "pure"
    assert describe() == "dispatch core: pure Python (HALLQ_DISPATCH=pure)"
    monkeypatch.setenv(dispatch.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="HALLQ_DISPATCH='fast'"):
        load_core()
    with pytest.raises(ValueError, match="kind='fast'"):
        load_core("fast")


def test_version_names_the_dispatch_core() -> None:
    from hallqctl.cli import main

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.rstrip().endswith(f"(dispatch core: {active_kind()})")


# ordering


def test_fifo_within_a_class(core_cls: type[Any]) -> None:
    core = one_window(core_cls)
    for t in range(5):
        core.add(t, 0, NORMAL, 10.0 * t, t)
    assert drain(core, 0, 100.0) == [0, 1, 2, 3, 4]


def test_class_precedence_beats_waiting_time(core_cls: type[Any]) -> None:
    core = one_window(core_cls, [0, 1], [1.0, 5.0])
    core.add(0, 1, NORMAL, 0.0, 0)
    core.add(1, 0, ASSISTED, 50.0, 1)
    core.add(2, 1, APPOINTMENT, 60.0, 2, appt_start=80.0, appt_end=120.0)
    core.add(3, 0, GREEN, 90.0, 3)
    assert drain(core, 0, 100.0) == [3, 2, 1, 0]


def test_appointment_counts_only_within_its_slot(core_cls: type[Any]) -> None:
    def hall() -> Any:
        core = one_window(core_cls)
        core.add(0, 0, APPOINTMENT, 0.0, 10, appt_start=100.0, appt_end=200.0)
        core.add(1, 0, NORMAL, 10.0, 11)
        core.add(2, 0, ASSISTED, 30.0, 12)
        return core

    # early: the appointment waits like a normal ticket, behind the assisted one, but it
    # has waited longer than the normal ticket
    assert drain(hall(), 0, 50.0) == [2, 0, 1]
    assert drain(hall(), 0, 100.0) == [0, 2, 1]
    assert drain(hall(), 0, 200.0) == [0, 2, 1]
    assert drain(hall(), 0, 200.5) == [2, 0, 1]


def test_appointment_queue_is_ordered_by_slot_then_issue(core_cls: type[Any]) -> None:
    core = one_window(core_cls)
    core.add(0, 0, APPOINTMENT, 0.0, 0, appt_start=300.0, appt_end=400.0)
    core.add(1, 0, APPOINTMENT, 1.0, 1, appt_start=100.0, appt_end=400.0)
    core.add(2, 0, APPOINTMENT, 2.0, 2, appt_start=300.0, appt_end=400.0)
    core.add(3, 0, APPOINTMENT, 3.0, 3, appt_start=200.0, appt_end=400.0)
    assert drain(core, 0, 350.0) == [1, 3, 0, 2]


def test_later_slot_waits_behind_an_earlier_slot_head(core_cls: type[Any]) -> None:
    core = one_window(core_cls)
    core.add(0, 0, APPOINTMENT, 0.0, 0, appt_start=100.0, appt_end=110.0)
    core.add(1, 0, APPOINTMENT, 0.0, 1, appt_start=120.0, appt_end=200.0)
    core.add(2, 0, NORMAL, 5.0, 2)
    # the head's slot is over, so it is NORMAL; ticket 1 (in its slot) is not a candidate
    assert core.peek_next(0, 150.0) == 0


def test_weights_scale_waiting_time(core_cls: type[Any]) -> None:
    core = one_window(core_cls, [0, 1], [1.0, 3.0])
    core.add(0, 0, NORMAL, 0.0, 0)
    core.add(1, 1, NORMAL, 50.0, 1)
    assert core.peek_next(0, 100.0) == 1  # 50 s x 3 > 100 s x 1
    core.set_skills(0, [0, 1], [1.0, 1.5])
    assert core.peek_next(0, 100.0) == 0  # 50 s x 1.5 < 100 s x 1


def test_overdue_tickets_get_the_boost(core_cls: type[Any]) -> None:
    core = one_window(core_cls, [0, 1])
    core.set_service(0, 60.0)
    core.add(0, 1, NORMAL, 0.0, 0)
    core.add(1, 0, NORMAL, 40.0, 1)
    assert core.peek_next(0, 99.0) == 0  # 59 s, not yet overdue
    assert core.peek_next(0, 100.0) == 1  # 60 s x 2 > 100 s
    core.set_boost(1.0)
    assert core.peek_next(0, 100.0) == 0


def test_ties_break_by_issue_order(core_cls: type[Any]) -> None:
    core = one_window(core_cls, [0, 1, 2], [2.0, 1.0, 4.0])
    core.add(0, 1, NORMAL, 20.0, 7)
    core.add(1, 0, NORMAL, 60.0, 5)
    core.add(2, 2, NORMAL, 80.0, 6)
    assert [core.peek_next(0, 100.0) for _ in range(3)] == [1, 1, 1]
    assert drain(core, 0, 100.0) == [1, 2, 0]


def test_reinstated_ticket_goes_behind_the_head(core_cls: type[Any]) -> None:
    core = one_window(core_cls)
    for t in range(3):
        core.add(t, 0, NORMAL, float(t), t)
    assert core.call_next(0, 10.0) == 0
    core.add_behind_head(0, 0, NORMAL, 0.0, 0)
    assert drain(core, 0, 10.0) == [1, 0, 2]
    core.add_behind_head(2, 0, ASSISTED, 2.0, 2)
    assert drain(core, 0, 10.0) == [2]


def test_transfer_keeps_issue_order_and_time(core_cls: type[Any]) -> None:
    core = one_window(core_cls, [1])
    for t, seq in ((0, 2), (1, 6), (2, 8)):
        core.add(t, 1, NORMAL, float(seq), seq)
    core.add(3, 1, NORMAL, 5.0, 5)  # transferred in from another service
    core.add(4, 1, NORMAL, 1.0, 1)
    assert [core.position(t, 20.0) for t in range(5)] == [1, 3, 4, 2, 0]
    assert drain(core, 0, 20.0) == [4, 0, 3, 1, 2]


def test_directed_queue_is_served_first_by_its_window_only(core_cls: type[Any]) -> None:
    core = core_cls(2, 2)
    core.set_skills(0, [0, 1], [1.0, 1.0])
    core.set_skills(1, [0], [1.0])
    core.add(0, 0, GREEN, 0.0, 0)
    core.add_directed(1, 1, 1, NORMAL, 50.0, 9)
    core.add_directed(2, 1, 0, NORMAL, 40.0, 3)
    assert core.waiting(0) == 1
    assert core.waiting(1) == 0
    assert core.position(2, 100.0) == 0
    assert core.position(1, 100.0) == 1
    assert core.peek_next(0, 100.0) == 0
    assert drain(core, 1, 100.0) == [2, 1, 0]


def test_a_ticket_replayed_late_queues_by_its_issue_time(core_cls: type[Any]) -> None:
    """An offline ticket (issued 10:00 from a lease, replayed at 10:20 with a newer seq)
    waits ahead of the online tickets issued after it, and people-ahead counts agree."""
    core = one_window(core_cls, [0])
    core.add(0, 0, NORMAL, 590.0, 0)
    core.add(1, 0, NORMAL, 610.0, 1)
    core.add(2, 0, NORMAL, 630.0, 2)
    core.add(3, 0, NORMAL, 600.0, 3)  # the replayed offline ticket
    core.add(4, 0, NORMAL, 600.0, 4)  # same second, later seq: behind it
    assert [core.position(t, 1200.0) for t in range(5)] == [0, 3, 4, 1, 2]
    assert drain(core, 0, 1200.0) == [0, 3, 4, 1, 2]


def test_directed_queue_works_for_a_window_without_skills(core_cls: type[Any]) -> None:
    core = core_cls(1, 1)
    core.add_directed(0, 0, 0, NORMAL, 0.0, 0)
    assert core.call_next(0, 1.0) == 0
    assert core.call_next(0, 1.0) == -1


def test_remove_unlinks_anywhere(core_cls: type[Any]) -> None:
    core = one_window(core_cls)
    for t in range(5):
        core.add(t, 0, NORMAL, float(t), t)
    core.add_directed(5, 0, 0, NORMAL, 0.0, 5)
    assert [core.remove(t) for t in (2, 0, 4, 5)] == [True] * 4
    assert core.remove(2) is False
    assert core.remove(99) is False
    assert core.remove(-1) is False
    assert not core.queued(2)
    assert core.queued(1)
    assert core.waiting(0) == 2
    assert drain(core, 0, 10.0) == [1, 3]
    core.add(0, 0, NORMAL, 0.0, 0)  # a removed ticket can be queued again
    assert drain(core, 0, 10.0) == [0]


def test_waiting_counts_each_service(core_cls: type[Any]) -> None:
    core = one_window(core_cls, [0, 1, 2])
    for t in range(10):
        core.add(t, t % 3, t % 4, float(t), t, appt_start=0.0, appt_end=1e9)
    assert [core.waiting(s) for s in range(3)] == [4, 3, 3]
    for _ in range(4):
        core.call_next(0, 100.0)
    assert sum(core.waiting(s) for s in range(3)) == 6
    drain(core, 0, 100.0)
    assert [core.waiting(s) for s in range(3)] == [0, 0, 0]


def test_position_matches_the_order_of_calls(core_cls: type[Any]) -> None:
    core = one_window(core_cls, [0])
    core.add(0, 0, NORMAL, 0.0, 0)
    core.add(1, 0, NORMAL, 5.0, 1)
    core.add(2, 0, ASSISTED, 20.0, 2)
    core.add(3, 0, APPOINTMENT, 1.0, 3, appt_start=40.0, appt_end=60.0)
    core.add(4, 1, GREEN, 0.0, 4)  # another service: never ahead
    now = 50.0
    positions = {t: core.position(t, now) for t in range(4)}
    assert positions == {3: 0, 2: 1, 0: 2, 1: 3}
    assert core.position(4, now) == 0
    assert drain(core, 0, now) == sorted(positions, key=positions.__getitem__)
    assert core.position(0, now) == -1


def test_arrays_grow_past_the_initial_capacity(core_cls: type[Any]) -> None:
    core = core_cls(2, 1, capacity=4)
    core.set_skills(0, [0, 1], [1.0, 1.0])
    tickets = [*range(0, 40, 3), 500]
    for seq, t in enumerate(tickets):
        core.add(t, seq % 2, NORMAL, float(seq), seq)
    assert core.capacity >= 501
    assert core.queued(500)
    assert not core.queued(1)
    assert core.waiting(0) + core.waiting(1) == len(tickets)
    assert drain(core, 0, 1000.0) == tickets


def test_clear_gives_a_new_day_with_the_same_configuration(core_cls: type[Any]) -> None:
    def day(core: Any) -> list[int]:
        for t, (s, cls) in enumerate([(0, NORMAL), (1, NORMAL), (0, GREEN), (1, NORMAL)]):
            core.add(t, s, cls, float(t), t)
        core.add_directed(4, 1, 0, NORMAL, 4.0, 4)
        return [core.call_next(0, 900.0), core.call_next(1, 900.0), core.call_next(1, 900.0)]

    def configured() -> Any:
        core = core_cls(2, 2)
        core.set_service(1, 60.0)
        core.set_boost(10.0)
        core.set_skills(0, [0, 1], [1.0, 1.0])
        core.set_skills(1, [1], [1.0])
        return core

    used = configured()
    day(used)  # leaves tickets queued, some in the middle
    assert used.waiting(1) == 1
    assert used.queued(0)
    used.clear()
    assert [used.waiting(s) for s in (0, 1)] == [0, 0]
    assert not any(used.queued(t) for t in range(5))
    assert day(used) == day(configured()) == [2, 4, 1]


def test_set_skills_applies_live(core_cls: type[Any]) -> None:
    core = one_window(core_cls, [0])
    core.add(0, 0, NORMAL, 0.0, 0)
    core.add(1, 1, NORMAL, 50.0, 1)
    assert core.peek_next(0, 100.0) == 0
    core.set_skills(0, [1], [1.0])
    assert core.peek_next(0, 100.0) == 1
    core.set_skills(0, [], [])
    assert core.peek_next(0, 100.0) == -1
    with pytest.raises(ValueError, match="listed twice"):
        core.set_skills(0, [0, 0], [1.0, 1.0])
    with pytest.raises(ValueError, match="2 services but 1 weights"):
        core.set_skills(0, [0, 1], [1.0])
    with pytest.raises(ValueError, match="weight"):
        core.set_skills(0, [0], [math.nan])
    with pytest.raises(IndexError):
        core.set_skills(0, [3], [1.0])
    with pytest.raises(TypeError):
        core.set_skills(0, [1, 0.0], [1.0, 1.0])
    assert core.peek_next(0, 100.0) == -1  # a rejected list changes nothing
    core.set_skills(0, (0, 1), (1.0, 2.5))  # any sequence, in both implementations
    assert core.call_next(0, 100.0) == 1


def test_worked_example_of_dispatch_md(core_cls: type[Any]) -> None:
    def at(hh: int, mm: int, ss: int = 0) -> float:
        return hh * 3600.0 + mm * 60.0 + ss

    vat, iit, invoice = 0, 1, 2
    a023, b011, c005, a101 = 0, 1, 2, 3
    core = core_cls(3, 1)
    for s, minutes in ((vat, 10), (iit, 15), (invoice, 5)):
        core.set_service(s, minutes * 60.0)
    core.set_skills(0, [vat, iit, invoice], [2.0, 1.0, 1.0])

    def issue_all() -> None:
        core.add(a023, vat, NORMAL, at(9, 52), 23)
        core.add(b011, iit, NORMAL, at(9, 44), 11)
        core.add(c005, invoice, ASSISTED, at(9, 58, 30), 5)
        core.add(a101, vat, APPOINTMENT, at(9, 40), 101, at(10, 15), at(10, 30))

    issue_all()
    assert core.position(a023, at(10, 0)) == 1
    assert drain(core, 0, at(10, 0)) == [c005, a101, b011, a023]
    issue_all()
    core.remove(b011)
    assert drain(core, 0, at(10, 16)) == [a101, c005, a023]


def test_peek_does_not_take(core_cls: type[Any]) -> None:
    core = one_window(core_cls)
    core.add(0, 0, NORMAL, 0.0, 0)
    assert core.peek_next(0, 1.0) == 0
    assert core.queued(0)
    assert core.call_next(0, 1.0) == 0
    assert not core.queued(0)
    assert core.peek_next(0, 1.0) == -1
    assert core.call_next(0, 1.0) == -1


def test_bad_input_raises_and_changes_nothing(core_cls: type[Any]) -> None:
    core = one_window(core_cls)
    core.add(0, 0, NORMAL, 0.0, 0)
    with pytest.raises(ValueError, match="already queued"):
        core.add(0, 0, NORMAL, 0.0, 0)
    with pytest.raises(ValueError, match="class"):
        core.add(1, 0, 4, 0.0, 1)
    with pytest.raises(IndexError):
        core.add(-1, 0, NORMAL, 0.0, 1)
    with pytest.raises(IndexError):
        core.add(1, 3, NORMAL, 0.0, 1)
    with pytest.raises(IndexError):
        core.add_directed(1, 2, 0, NORMAL, 0.0, 1)
    with pytest.raises(IndexError):
        core.call_next(2, 0.0)
    with pytest.raises(IndexError):
        core.waiting(-1)
    with pytest.raises(ValueError, match="boost factor must be positive"):
        core.set_boost(0.0)
    with pytest.raises(ValueError, match="wait target must be >= 0"):
        core.set_service(0, -1.0)
    with pytest.raises(ValueError, match="need at least one service and one window"):
        core_cls(0, 1)
    assert core.waiting(0) == 1
    assert not core.queued(1)
    assert drain(core, 0, 1.0) == [0]


# the property: call_next always returns the minimum key of the specification


@dataclass
class Ticket:
    t: int
    s: int
    cls: int
    issue: float
    seq: int
    appt_start: float = 0.0
    appt_end: float = 0.0


@dataclass
class Model:
    """The specification written the slow, obvious way: lists and a min() over keys."""

    n_services: int
    n_windows: int
    boost: float = 2.0
    targets: dict[int, float] = field(default_factory=dict)
    skills: dict[int, dict[int, float]] = field(default_factory=dict)
    queues: dict[tuple[str, int, int], list[Ticket]] = field(default_factory=dict)

    def queue(self, key: tuple[str, int, int]) -> list[Ticket]:
        return self.queues.setdefault(key, [])

    def add(self, key: tuple[str, int, int], ticket: Ticket) -> None:
        by_slot = key[0] == "class" and key[2] == APPOINTMENT
        order = (
            (lambda x: (x.appt_start, x.issue, x.seq)) if by_slot else (lambda x: (x.issue, x.seq))
        )
        queue = self.queue(key)
        i = len(queue)
        while i > 0 and order(queue[i - 1]) > order(ticket):
            i -= 1
        queue.insert(i, ticket)

    def add_behind_head(self, key: tuple[str, int, int], ticket: Ticket) -> None:
        self.queue(key).insert(1, ticket)

    def remove(self, t: int) -> bool:
        for queue in self.queues.values():
            for i, ticket in enumerate(queue):
                if ticket.t == t:
                    del queue[i]
                    return True
        return False

    def key(
        self, ticket: Ticket, directed: bool, cls: int, weight: float, now: float
    ) -> tuple[int, int, float, int]:
        if cls == APPOINTMENT and not ticket.appt_start <= now <= ticket.appt_end:
            cls = NORMAL
        wait = now - ticket.issue
        target = self.targets.get(ticket.s, math.inf)
        urgency = wait * weight * (self.boost if wait >= target else 1.0)
        return (0 if directed else 1, cls, -urgency, ticket.seq)

    def pick(self, w: int, now: float) -> int:
        skills = self.skills.get(w, {})
        candidates = []
        directed = self.queue(("window", w, 0))
        if directed:
            weight = max(skills.values(), default=1.0)
            candidates.append(
                (self.key(directed[0], True, directed[0].cls, weight, now), directed[0].t)
            )
        for s, weight in skills.items():
            for cls in range(4):
                queue = self.queue(("class", s, cls))
                if queue:
                    candidates.append((self.key(queue[0], False, cls, weight, now), queue[0].t))
        return min(candidates)[1] if candidates else -1

    def waiting(self, s: int) -> int:
        return sum(len(self.queue(("class", s, cls))) for cls in range(4))

    def drain(self, w: int, now: float) -> list[int]:
        called = []
        while (t := self.pick(w, now)) >= 0:
            called.append(t)
            self.remove(t)
        return called


times = st.integers(0, 40).map(lambda x: x * 15.0)
weights = st.sampled_from([0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 3.0])


# the core's central property: 75 random days per core in CI (150 took 6-13 s a core on
# CI's 2 cores), 1,500 in the long run (HALLQ_FUZZ_SCALE=long, tests/fuzzing.py)
@settings(
    max_examples=count(75, 1_500),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_call_next_returns_the_minimum_key(core_cls: type[Any], data: st.DataObject) -> None:
    n_services = data.draw(st.integers(1, 5), label="services")
    n_windows = data.draw(st.integers(1, 4), label="windows")
    core = core_cls(n_services, n_windows, capacity=data.draw(st.integers(1, 8)))
    model = Model(n_services, n_windows)
    boost = data.draw(st.sampled_from([1.0, 1.5, 2.0, 4.0]), label="boost")
    core.set_boost(boost)
    model.boost = boost
    for s in range(n_services):
        if data.draw(st.booleans()):
            target = data.draw(times)
            core.set_service(s, target)
            model.targets[s] = target
    service = st.integers(0, n_services - 1)
    window = st.integers(0, n_windows - 1)

    def draw_skills(w: int) -> None:
        services = data.draw(st.lists(service, unique=True, max_size=n_services))
        ws = [data.draw(weights) for _ in services]
        core.set_skills(w, services, ws)
        model.skills[w] = dict(zip(services, ws, strict=True))

    for w in range(n_windows):
        draw_skills(w)

    seqs = data.draw(st.permutations(range(40)), label="issue order")
    now = 0.0
    next_t = 0
    for step in range(data.draw(st.integers(1, 60), label="steps")):
        op = data.draw(
            st.sampled_from(
                [
                    "add",
                    "add",
                    "add",
                    "appt",
                    "behind",
                    "directed",
                    "remove",
                    "call",
                    "call",
                    "skills",
                ]
            ),
            label=f"op {step}",
        )
        now += data.draw(times) / 10
        if op in ("add", "appt", "behind", "directed"):
            if next_t >= len(seqs):
                continue
            cls = APPOINTMENT if op == "appt" else data.draw(st.integers(0, 3))
            t = next_t
            ticket = Ticket(t, data.draw(service), cls, now - data.draw(times), seqs[t])
            next_t += 1
            if op == "directed":
                w = data.draw(window)
                core.add_directed(t, w, ticket.s, cls, ticket.issue, ticket.seq)
                model.add(("window", w, 0), ticket)
            elif op == "behind":
                core.add_behind_head(t, ticket.s, cls, ticket.issue, ticket.seq)
                model.add_behind_head(("class", ticket.s, cls), ticket)
            else:
                if cls == APPOINTMENT:
                    ticket.appt_start = now + data.draw(times) - 300.0
                    ticket.appt_end = ticket.appt_start + data.draw(times)
                core.add(
                    t, ticket.s, cls, ticket.issue, ticket.seq, ticket.appt_start, ticket.appt_end
                )
                model.add(("class", ticket.s, cls), ticket)
        elif op == "remove" and next_t:
            t = data.draw(st.integers(0, next_t - 1))
            assert core.remove(t) == model.remove(t)
        elif op == "call":
            w = data.draw(window)
            expected = model.pick(w, now)
            assert core.peek_next(w, now) == expected
            assert core.call_next(w, now) == expected
            if expected >= 0:
                model.remove(expected)
        elif op == "skills":
            draw_skills(data.draw(window))
        assert [core.waiting(s) for s in range(n_services)] == [
            model.waiting(s) for s in range(n_services)
        ]

    # positions agree with what a window serving only that service would call, in turn
    for s in range(n_services):
        solo = Model(
            n_services,
            1,
            boost,
            model.targets,
            {0: {s: 1.0}},
            {k: list(v) for k, v in model.queues.items() if k[0] == "class"},
        )
        order = solo.drain(0, now)
        assert [core.position(t, now) for t in order] == list(range(len(order)))
    for w in range(n_windows):
        assert drain(core, w, now) == model.drain(w, now)
