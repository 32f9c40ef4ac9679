"""The hall queue: idempotency, authorisation, the log as truth, and properties of random days."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coordinator.eventlog import EventLog
from coordinator.hallqueue import HallQueue
from coordinator.suspension import DeviceCommand
from firmware_bridge.display_text import encode_display
from hallq import messages as m
from hallq.messages import TicketState

from .halls import at, small_hall


def make_queue(path: Path, core_cls: type[Any], **coordinator: Any) -> HallQueue:
    return HallQueue(small_hall(**coordinator), EventLog(path), core_cls)


def peek_queue(path: Path, core_cls: type[Any]) -> HallQueue:
    """What a restart would rebuild from the log at ``path`` (call ``recover``), read
    beside the queue that writes it: a log takes one writer at a time."""
    return HallQueue(small_hall(), EventLog.reader(path), core_cls)


def issue(service: str = "tax-filing") -> m.IssueRequest:
    return m.IssueRequest(kind="issue", service=service)


def lease(q: HallQueue) -> int:
    """pi-d1 leases five tax-filing numbers at 9:00 (its offline reserve); the first."""
    leased = q.submit(
        "ticket",
        "dispenser",
        "pi-d1",
        m.LeaseRequest(kind="lease", service="tax-filing", size=5),
        at(9),
    )
    first: int = leased.record["lease"][0]
    return first


def offline_issue(number: str, supersedes: str) -> m.IssueRequest:
    """The offline issue of ``number`` for the key press whose online request timed out."""
    return m.IssueRequest(
        kind="issue",
        service="tax-filing",
        offline=m.OfflineIssue(number=number, issued_at=m._utcnow(), supersedes=supersedes),
    )


def test_a_repeated_command_id_gets_the_original_result_and_changes_nothing(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    q = make_queue(tmp_path / "log.sqlite", core_cls)
    request = issue()
    first = q.submit("ticket", "dispenser", "pi-d1", request, at(9))
    again = q.submit("ticket", "dispenser", "pi-d1", request, at(9, 1))
    assert not first.duplicate
    assert again.duplicate
    assert again.record == first.record
    assert again.seq == first.seq
    assert first.record["info"]["number"] == "A001"
    assert len(q.engine.tickets) == 1
    call = m.WindowAction(window=1, action="call")
    assert q.submit("window", "window", "pi-w1", call, at(9, 2)).record["ticket"] == "A001"
    assert q.submit("window", "window", "pi-w1", call, at(9, 3)).record["ticket"] == "A001"
    assert q.engine.by_number["A001"].called_at == at(9, 2)


@pytest.mark.parametrize(
    ("role", "client", "window", "code"),
    [
        ("window", "pi-w1", 3, "not_your_window"),
        ("window", "pi-x9", 1, "unknown_device"),
        ("window", "pi-d1", 1, "wrong_role"),
    ],
)
def test_a_device_acts_only_for_its_own_windows(
    tmp_path: Path, core_cls: type[Any], role: str, client: str, window: int, code: str
) -> None:
    q = make_queue(tmp_path / "log.sqlite", core_cls)
    q.submit("ticket", "dispenser", "pi-d1", issue(), at(9))
    done = q.submit("window", role, client, m.WindowAction(window=window, action="call"), at(9))
    assert done.record["error"]["code"] == code
    assert q.engine.by_number["A001"].state is TicketState.WAITING


def test_a_ticket_called_from_a_pad_stays_until_its_holder_had_time_to_come(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """A pad (or its password in other hands) calling again and again finished every
    ticket of the queue in seconds, each call the last one's; call and skip made them
    all no-shows. A clerk waits for the taxpayer anyway (call_hold_s, 10 s); the desk
    is not held, and a restart decides alike from the log."""
    q = make_queue(tmp_path / "log.sqlite", core_cls)
    for _ in range(3):
        q.submit("ticket", "dispenser", "pi-d1", issue(), at(9))

    def pad(action: str, when: float) -> Any:
        command: m.WindowCommand
        if action == "finish":
            command = m.Finish(window=1, action="finish")
        elif action == "transfer":
            command = m.Transfer(window=1, action="transfer", to_service="invoice")
        else:
            command = m.WindowAction(window=1, action=action)  # type: ignore[arg-type]
        return q.submit("window", "window", "pi-w1", command, when)

    t0 = at(9, 5)
    assert pad("call", t0).record["ok"]
    for action in ("skip", "call", "finish", "transfer"):
        refused = pad(action, t0 + 4).record
        assert refused["error"]["code"] == "called_just_now", action
        assert "6秒后再操作" in refused["error"]["message"]
        encode_display(refused["error"]["message"])  # the pad can show it (32 columns)
    assert pad("recall", t0 + 5).record["ok"]  # a recall does not start it over
    assert [t.state for t in q.engine.tickets] == [TicketState.CALLED] + [TicketState.WAITING] * 2
    assert pad("call", t0 + 10).record["ok"]
    assert q.engine.tickets[0].state is TicketState.DONE
    desk = m.WindowAction(window=1, action="skip")
    assert q.submit("window", "supervisor", "desk-1", desk, t0 + 11).record["ok"], "not held"
    again = peek_queue(tmp_path / "log.sqlite", core_cls)
    again.recover()
    assert [t.state for t in again.engine.tickets] == [t.state for t in q.engine.tickets]
    assert again.replay_mismatches == 0


def test_every_refusal_a_clerk_can_meet_fits_the_pad_s_display(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """A pad shows a refused command's reason on its 32-column display, and refuses text
    it cannot show (the clerk then sees nothing): the hold's first wording was 43. Each
    refusal a pad's keys can bring, with six-character ticket numbers."""
    q = make_queue(tmp_path / "log.sqlite", core_cls)
    for code in list(q.engine.services):
        q.engine.services[code] = q.engine.services[code].model_copy(
            update={"width": 5, "daily_cap": None}
        )
    t = at(9)
    said: dict[str, str] = {}

    def pad(command: m.WindowCommand) -> None:
        nonlocal t
        t += 1
        record = q.submit("window", "window", "pi-w1", command, t).record
        if not record["ok"]:
            said[record["error"]["code"]] = record["error"]["message"]

    def key(action: str) -> None:
        pad(m.WindowAction(window=1, action=action))  # type: ignore[arg-type]

    key("call")  # nobody waiting
    pad(m.Finish(window=1, action="finish"))  # nothing at the window
    q.submit("ticket", "dispenser", "pi-d1", issue(), t)
    key("call")
    key("skip")  # called just now
    for _ in range(q.cfg.coordinator.max_recalls + 1):
        key("recall")
    t += 60
    key("start")
    key("skip")  # being served: not a no-show
    key("close")  # a ticket still at the window: closes once it is done (no refusal)
    pad(m.Rate(window=1, action="rate", ticket="A99999", rating=4))
    pad(m.Finish(window=1, action="finish"))
    key("pause")
    key("call")
    key("close")
    key("call")
    suspend = DeviceCommand(kind="device", action="suspend", client="pi-w1")
    q.submit("device", "supervisor", "desk", suspend, t)
    key("open")  # its login suspended by a supervisor
    assert set(said) == {
        "no_one_waiting",
        "no_current_ticket",
        "called_just_now",
        "recall_limit",
        "ticket_not_called",
        "not_served_here",
        "window_paused",
        "window_closed",
        "device_suspended",
    }, said
    for code, text in said.items():
        try:
            encode_display(text)
        except Exception as exc:
            raise AssertionError(f"{code}: {text!r}: {exc}") from None


def test_supervisors_may_act_for_any_window(tmp_path: Path, core_cls: type[Any]) -> None:
    q = make_queue(tmp_path / "log.sqlite", core_cls)
    done = q.submit("window", "supervisor", "desk", m.WindowAction(window=3, action="pause"), at(9))
    assert done.record["ok"]


def test_the_first_command_of_a_day_opens_it_and_recovery_starts_there(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    path = tmp_path / "log.sqlite"
    q = make_queue(path, core_cls)
    q.submit("ticket", "dispenser", "pi-d1", issue(), at(9))
    q.submit("ticket", "dispenser", "pi-d1", issue(), at(9))
    nxt = q.submit("ticket", "dispenser", "pi-d1", issue(), at(9, day=31))
    assert nxt.rollover is not None
    assert nxt.record["info"]["number"] == "A001"
    start, entries = q.log.current_day()
    assert start is not None
    assert start.day == "2026-12-01"
    assert len(entries) == 1
    again = peek_queue(path, core_cls)
    assert again.recover() == 1
    assert [t.number for t in again.engine.tickets] == ["A001"]


def test_old_days_are_pruned_after_the_retention_period(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    q = make_queue(tmp_path / "log.sqlite", core_cls, retention_days=1)
    for day in (30, 31, 32):
        q.submit("ticket", "dispenser", "pi-d1", issue(), at(9, day=day))
    days = {row[0] for row in q.log._db.execute("SELECT DISTINCT day FROM entries")}
    assert days == {"2026-12-01", "2026-12-02"}


# --- properties of random days --------------------------------------------------------------

SERVICES = ["tax-filing", "invoice", "green"]
WINDOWS = [1, 2, 3, 4]

op = st.one_of(
    st.tuples(
        st.just("issue"),
        st.sampled_from(SERVICES),
        st.sampled_from(["normal", "assisted", "green"]),
    ),
    st.tuples(st.just("lease"), st.sampled_from(SERVICES), st.integers(1, 4)),
    st.tuples(st.just("offline"), st.sampled_from(SERVICES), st.integers(0, 5)),
    st.tuples(st.just("call"), st.sampled_from(WINDOWS)),
    st.tuples(st.just("call"), st.sampled_from(WINDOWS)),
    st.tuples(st.just("start"), st.sampled_from(WINDOWS)),
    st.tuples(st.just("finish"), st.sampled_from(WINDOWS)),
    st.tuples(st.just("skip"), st.sampled_from(WINDOWS)),
    st.tuples(st.just("recall"), st.sampled_from(WINDOWS)),
    st.tuples(st.just("park"), st.sampled_from(WINDOWS)),
    st.tuples(st.just("pause"), st.sampled_from(WINDOWS)),
    st.tuples(st.just("resume"), st.sampled_from(WINDOWS)),
    st.tuples(st.just("reinstate"), st.sampled_from(WINDOWS), st.integers(0, 30)),
    st.tuples(st.just("unpark"), st.sampled_from(WINDOWS), st.integers(0, 30)),
    st.tuples(st.just("cancel"), st.sampled_from(WINDOWS), st.integers(0, 30)),
    st.tuples(st.just("call_ticket"), st.sampled_from(WINDOWS), st.integers(0, 30)),
    st.tuples(st.just("transfer"), st.sampled_from(WINDOWS), st.sampled_from(SERVICES)),
    st.tuples(st.just("transfer_window"), st.sampled_from(WINDOWS), st.sampled_from(WINDOWS)),
    st.tuples(
        st.just("set_skills"),
        st.sampled_from(WINDOWS),
        st.dictionaries(st.sampled_from(SERVICES), st.sampled_from([0.5, 1.0, 3.0]), min_size=1),
    ),
)


def command_for(step: tuple[Any, ...], q: HallQueue) -> tuple[str, str, str, Any]:
    kind = step[0]
    if kind == "issue":
        return (
            "ticket",
            "dispenser",
            "pi-d1",
            m.IssueRequest(kind="issue", service=step[1], priority=step[2]),
        )
    if kind == "lease":
        return (
            "ticket",
            "dispenser",
            "pi-d1",
            m.LeaseRequest(kind="lease", service=step[1], size=step[2]),
        )
    if kind == "offline":
        service = q.engine.services[step[1]]
        numbers = [
            n
            for first, last in q.engine.leases.get(("pi-d1", service.code), [])
            for n in range(first, last + 1)
        ] or [999]
        number = f"{service.prefix}{numbers[step[2] % len(numbers)]:03d}"
        return (
            "ticket",
            "dispenser",
            "pi-d1",
            m.IssueRequest(
                kind="issue",
                service=service.code,
                offline=m.OfflineIssue(number=number, issued_at=m._utcnow()),
            ),
        )
    window = step[1]
    picks = [t.number for t in q.engine.tickets]
    pick = (
        picks[step[2] % len(picks)]
        if len(step) > 2 and isinstance(step[2], int) and picks
        else "A999"
    )
    if kind in ("reinstate", "unpark", "cancel", "call_ticket"):
        cmd: Any = m.TicketAction(window=window, action=kind, ticket=pick)
    elif kind == "transfer":
        cmd = m.Transfer(window=window, action="transfer", to_service=step[2])
    elif kind == "transfer_window":
        cmd = m.Transfer(window=window, action="transfer", to_window=step[2])
    elif kind == "set_skills":
        cmd = m.SetSkills(window=window, action="set_skills", skills=step[2])
    elif kind == "finish":
        cmd = m.Finish(window=window, action="finish", rating=3)
    else:
        cmd = m.WindowAction(window=window, action=kind)
    return "window", "supervisor", "desk", cmd


def check_invariants(q: HallQueue) -> None:
    e = q.engine
    numbers = [t.number for t in e.tickets]
    assert len(numbers) == len(set(numbers)), "a number was issued twice"
    for service in e.services.values():
        leased = [
            n
            for (_, code), blocks in e.leases.items()
            if code == service.code
            for first, last in blocks
            for n in range(first, last + 1)
        ]
        assert len(leased) == len(set(leased)), "a number leased twice"
        assert all(n > e.counters[service.code] for n in leased), "a lease below online numbers"
        for t in e.tickets:
            if t.number[0] != service.prefix:
                continue
            n = int(t.number[1:])
            if t.offline:
                assert n in leased, "an offline ticket outside the leases"
            else:
                assert 1 <= n <= e.counters[service.code], "an online number out of range"
    at_window = {}
    for w in e.windows.values():
        if w.current is not None:
            assert w.current.state in (TicketState.CALLED, TicketState.SERVING)
            assert w.current.window == w.number
            assert w.current.number not in at_window, "two windows hold the same ticket"
            at_window[w.current.number] = w.number
    for t in e.tickets:
        assert e.core.queued(t.idx) == (t.state is TicketState.WAITING), t
        if t.state in (TicketState.CALLED, TicketState.SERVING):
            assert at_window.get(t.number) == t.window, "a called ticket with no window"
    for code, i in e.service_idx.items():
        waiting = [
            t
            for t in e.tickets
            if t.service == code and t.state is TicketState.WAITING and t.directed is None
        ]
        assert e.core.waiting(i) == len(waiting)


def fingerprint(q: HallQueue, now: float) -> Any:
    e = q.engine
    tickets = [
        (
            t.number,
            t.service,
            t.state,
            t.window,
            t.directed,
            t.issued_at,
            t.called_at,
            t.finished_at,
            t.recalls,
            t.rating,
        )
        for t in e.tickets
    ]
    windows = [
        (w.number, w.status, w.current.number if w.current else None, sorted(w.skills.items()))
        for w in e.windows.values()
    ]
    nxt = [e.core.peek_next(w.idx, now) for w in e.windows.values()]
    return tickets, windows, nxt


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(op, min_size=1, max_size=60))
def test_random_days_keep_every_ticket_once_and_replay_to_the_same_state(
    steps: list[tuple[Any, ...]], core_cls: type[Any]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.sqlite"
        q = make_queue(path, core_cls)
        accepted = 0
        now = at(9)
        for i, step in enumerate(steps):
            now = at(9, 0, second=37.0 * i)
            kind, role, client, cmd = command_for(step, q)
            done = q.submit(kind, role, client, cmd, now)
            if kind == "ticket" and done.record["ok"] and done.record["info"]:
                accepted += 1
            check_invariants(q)
        assert len(q.engine.tickets) == accepted, "an accepted ticket was lost"
        replayed = peek_queue(path, core_cls)
        replayed.recover()
        assert fingerprint(replayed, now + 60) == fingerprint(q, now + 60)
        q.log.close()
        replayed.log.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tickets=st.lists(
        st.tuples(
            st.sampled_from(SERVICES),
            st.sampled_from(["normal", "assisted", "green"]),
            st.integers(0, 1800),
        ),
        min_size=1,
        max_size=6,
    ),
    skills=st.dictionaries(
        st.sampled_from(SERVICES), st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=1
    ),
    call_after=st.integers(0, 600),
)
@example(
    tickets=[("tax-filing", "normal", 1100), ("invoice", "normal", 1300)],
    skills={"tax-filing": 0.5, "invoice": 1.0},
    call_after=0,
)
def test_a_call_picks_the_best_score_among_eligible_tickets(
    tickets: list[tuple[str, m.Priority, int]],
    skills: dict[str, float],
    call_after: int,
    core_cls: type[Any],
) -> None:
    from coordinator.engine import CLASS_OF, Engine

    e = Engine(small_hall(), core_cls)
    e.roll_over(at(8))
    e.apply(m.SetSkills(window=4, action="set_skills", skills=skills), at(8, 30))
    for service, priority, offset in sorted(tickets, key=lambda x: x[2]):
        e.apply(
            m.IssueRequest(kind="issue", service=service, priority=priority), at(9, second=offset)
        )
    now = at(9, second=1800 + call_after)  # waits straddle the 10- and 15-minute targets
    eligible = [t for t in e.tickets if t.service in skills]
    out = e.apply(m.WindowAction(window=4, action="call"), now)
    if not eligible:
        assert out.error is not None
        assert out.error.code == "no_one_waiting"
        return

    def key(t: Any) -> tuple[float, float, int]:
        wait = now - t.issued_at
        target = e.services[t.service].wait_target_min * 60
        urgency = wait * skills[t.service] * (2.0 if wait >= target else 1.0)
        return CLASS_OF[t.priority], -urgency, t.seq

    assert out.ticket is not None
    assert out.ticket is min(eligible, key=key)


def test_a_late_online_ticket_is_voided_when_its_press_was_issued_offline(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    path = tmp_path / "log.sqlite"
    q = make_queue(path, core_cls)
    first = lease(q)
    online = issue()
    assert q.submit("ticket", "dispenser", "pi-d1", online, at(9)).record["ok"]  # reply lost
    done = q.submit("ticket", "dispenser", "pi-d1", offline_issue(f"A{first}", online.id), at(9, 1))
    assert done.record["ok"]
    states = {t.number: t.state for t in q.engine.tickets}
    assert states == {"A001": TicketState.VOIDED, f"A{first}": TicketState.WAITING}
    again = peek_queue(path, core_cls)
    again.recover()
    assert {t.number: t.state for t in again.engine.tickets} == states


def test_an_online_request_arriving_after_its_offline_replay_is_refused(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    q = make_queue(tmp_path / "log.sqlite", core_cls)
    first = lease(q)
    online = issue()
    assert q.submit(
        "ticket", "dispenser", "pi-d1", offline_issue(f"A{first}", online.id), at(9, 1)
    ).record["ok"]
    late = q.submit("ticket", "dispenser", "pi-d1", online, at(9, 2))
    assert late.record["error"]["code"] == "superseded"
    assert [t.number for t in q.engine.tickets] == [f"A{first}"]


def _fill(log: EventLog) -> None:
    """A full disk as SQLite meets it (SQLITE_FULL): the file may not grow by a page."""
    pages = log._db.execute("PRAGMA page_count").fetchone()[0]
    log._db.execute(f"PRAGMA max_page_count = {pages}")


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_command_the_log_cannot_keep_changes_nothing(
    tmp_path: Path, core_cls: type[Any], fault: str
) -> None:
    """Log first, or not at all: a failed append leaves no ticket, no consumed number and no
    call in memory that a restart would not find in the log."""
    from coordinator.eventlog import StorageFailed

    path = tmp_path / "log.sqlite"
    q = make_queue(path, core_cls)
    for _ in range(2):
        q.submit("ticket", "dispenser", "pi-d1", issue(), at(9))
    if fault == "full":
        _fill(q.log)
    else:
        q.log._db.execute("PRAGMA query_only = 1")
    refused = 0
    for i in range(300):  # a full page still takes a few rows: go on until it refuses
        command: Any = (
            issue()
            if i % 2
            else m.Finish(window=1, action="finish")
            if i % 4
            else (m.WindowAction(window=1, action="call"))
        )
        try:
            q.submit(
                "ticket" if i % 2 else "window",
                "dispenser" if i % 2 else "window",
                "pi-d1" if i % 2 else "pi-w1",
                command,
                at(9, 1, i),
            )
        except StorageFailed:
            refused += 1
        if refused == 6:
            break

    def view(queue: HallQueue) -> list[tuple[str, str, int | None]]:
        return [(t.number, t.state.value, t.window) for t in queue.engine.tickets]

    kept = view(q)
    assert refused == 6
    again = peek_queue(path, core_cls)
    again.recover()
    assert view(again) == kept, "memory and log disagree"
    q.log._db.execute("PRAGMA query_only = 0")
    q.log._db.execute("PRAGMA max_page_count = 1000000")
    done = q.submit("ticket", "dispenser", "pi-d1", issue(), at(9, 6))
    assert done.record["info"]["number"] == f"A{len(kept) + 1:03d}", "a refused issue used a number"
    assert view(q)[:-1] == kept


def test_a_group_commit_keeps_all_of_its_commands_or_none(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """Group commit: staged commands are seen by lookups and numbered in order, one commit
    makes them all durable; a commit that fails keeps none of them, in memory either, and
    the next group reuses their numbers (the log never skips a sequence number)."""
    from coordinator.eventlog import StorageFailed

    path = tmp_path / "log.sqlite"
    q = make_queue(path, core_cls)
    first = [q.submit("ticket", "dispenser", "pi-d1", issue(), at(9), defer=True) for _ in range(3)]
    assert [d.seq for d in first] == [2, 3, 4]  # after the day's opening entry
    assert q.log.committed_seq() == 1
    assert q.log.staged == 3
    assert q.commit() == 3
    assert q.log.committed_seq() == 4
    assert q.log.staged == 0
    lost_cmd = issue()
    lost = q.submit("ticket", "dispenser", "pi-d1", lost_cmd, at(9, 1), defer=True)
    assert q.log.lookup(lost_cmd.id) is not None, "a staged command answers a repeat"
    assert lost.record["info"]["number"] == "A004"
    q.log._db.execute("PRAGMA query_only = 1")
    failures = q.log.failures
    with pytest.raises(StorageFailed):
        q.commit()
    assert q.log.failures == failures + 1
    assert q.log.lookup(lost_cmd.id) is None
    assert [t.number for t in q.engine.tickets] == ["A001", "A002", "A003"], "memory kept it"
    q.log._db.execute("PRAGMA query_only = 0")
    again = q.submit("ticket", "dispenser", "pi-d1", issue(), at(9, 2), defer=True)
    assert (again.seq, again.record["info"]["number"]) == (5, "A004")
    q.commit()
    reopened = peek_queue(path, core_cls)
    reopened.recover()
    assert [t.number for t in reopened.engine.tickets] == ["A001", "A002", "A003", "A004"]


def test_after_a_failed_write_the_next_group_numbers_after_what_the_log_holds(
    tmp_path: Path,
) -> None:
    """The log counts its newest entry in memory (it is the one writer) and asks SQLite
    again only after a failure: a COMMIT reported failed may have landed all the same
    (here, the entry a failed write numbered 3 is in the file, put there by another
    connection), and numbering on from memory would collide with it at every group."""
    from coordinator.eventlog import StorageFailed

    path = tmp_path / "log.sqlite"
    log = EventLog(path)

    def entry(cmd: str) -> int:
        return log.stage(
            kind="window",
            cmd_id=cmd,
            day="2026-12-07",
            at=1.0,
            source="s",
            payload="{}",
            result=None,
        )

    assert entry("a") == 1
    log.commit()
    assert entry("b") == 2
    log.commit()
    with contextlib.closing(sqlite3.connect(path)) as landed:
        landed.execute(
            "INSERT INTO entries (seq, kind, cmd_id, day, at, source, payload) "
            "VALUES (3, 'window', 'c', '2026-12-07', 1.0, 's', '{}')"
        )
        landed.commit()
    assert entry("d") == 3  # counted in memory: no read transaction a group
    with pytest.raises(StorageFailed):
        log.commit()
    assert entry("d") == 4
    assert log.commit() == 1
    assert log.committed_seq() == 4
    log.close()


def _views(q: HallQueue, now: float) -> Any:
    e = q.engine
    return (
        [(t.number, t.state.value, t.window, t.called_at, t.recalls) for t in e.tickets],
        {
            n: (w.status.value, w.current.number if w.current else None, w.skills)
            for n, w in e.windows.items()
        },
        {c: e.queue_state(c, 1, now).model_dump(exclude={"id", "ts"}) for c in e.services},
        e.board_state(1).model_dump(exclude={"id", "ts"}),
        e.stats_state(1).model_dump(exclude={"id", "ts"}),
        dict(e.counters),
        e.leases,
        [e.core.position(t.idx, now) for t in e.tickets],
    )


def test_a_checkpoint_restores_exactly_what_replaying_the_day_builds(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """Restart from the checkpoint plus the entries after it, or replay the whole day:
    the same queues, windows, numbers, positions and figures."""
    import random

    rng = random.Random(7)
    path = tmp_path / "log.sqlite"
    q = make_queue(path, core_cls)
    q.submit(
        "ticket",
        "dispenser",
        "pi-d1",
        m.LeaseRequest(kind="lease", service="tax-filing", size=20),
        at(8, 59),
    )
    now = at(9)
    for i in range(400):
        now += 17
        r = rng.random()
        if r < 0.45:
            cmd: Any = issue(rng.choice(["tax-filing", "invoice"]))
            q.submit("ticket", "dispenser", "pi-d1", cmd, now)
        else:
            action: Literal["call", "finish", "skip", "recall", "start"] = rng.choice(
                ["call", "call", "finish", "skip", "recall", "start"]
            )
            cmd = (
                m.Finish(window=1, action="finish")
                if action == "finish"
                else m.WindowAction(window=rng.choice([1, 2]), action=action)
            )
            q.submit("window", "window", "pi-w1", cmd, now)
        if i == 250:
            q.save_checkpoint(q.seq, q.checkpoint())
    replay = m.OfflineIssue(number="A999", issued_at=dt.datetime.fromtimestamp(at(9, 30), dt.UTC))
    q.submit(
        "ticket",
        "dispenser",
        "pi-d1",
        m.IssueRequest(kind="issue", service="tax-filing", offline=replay),
        now + 5,
    )
    expected = _views(q, now + 60)
    q.log.close()  # a restart: the next writer of the log

    restored = make_queue(path, core_cls)
    replayed = restored.recover()
    assert replayed < 200, "the checkpoint was not used"
    assert _views(restored, now + 60) == expected
    restored.log._db.execute("DELETE FROM checkpoints")
    copy = tmp_path / "full.sqlite"  # its own log: one writer a log, as a coordinator is
    with contextlib.closing(sqlite3.connect(path)) as src:
        with contextlib.closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)
    full = make_queue(copy, core_cls)
    assert full.recover() > 400
    assert _views(full, now + 60) == expected
    call = m.WindowAction(window=2, action="call")
    a = restored.submit("window", "window", "pi-w1", call, now + 70).record
    b = full.submit(
        "window", "window", "pi-w1", m.WindowAction(window=2, action="call"), now + 70
    ).record
    assert a["ticket"] == b["ticket"]


def test_a_command_id_found_absent_is_answered_from_memory_until_staged(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """The coordinator looks a command id up twice (who owns it, is it new); the second
    answer comes from memory, and is withdrawn the moment the id is staged: a repeat is
    then found, staged or committed, and again once a failed commit dropped it."""
    from coordinator.eventlog import StorageFailed

    q = make_queue(tmp_path / "log.sqlite", core_cls)
    command = issue()
    assert q.log.lookup(command.id) is None
    q.log._reader.close()  # from now on only memory can answer "absent"
    assert q.log.lookup(command.id) is None
    q.log._reader = q.log._db
    q.submit("ticket", "dispenser", "pi-d1", command, at(9), defer=True)
    found = q.log.lookup(command.id)
    assert found is not None
    assert found.source == "dispenser/pi-d1"
    q.commit()
    assert q.log.lookup(command.id) is not None, "committed: found in the file"
    lost = issue()
    assert q.log.lookup(lost.id) is None
    q.submit("ticket", "dispenser", "pi-d1", lost, at(9, 1), defer=True)
    q.log._db.execute("PRAGMA query_only = 1")
    with pytest.raises(StorageFailed):
        q.commit()
    q.log._db.execute("PRAGMA query_only = 0")
    assert q.log.lookup(lost.id) is None, "not kept: absent again"
    again = q.submit("ticket", "dispenser", "pi-d1", lost, at(9, 2))
    assert not again.duplicate
    assert q.log.lookup(lost.id) is not None


def test_an_id_above_the_log_s_largest_and_not_staged_since_is_absent_without_asking(
    tmp_path: Path, core_cls: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new command id sorts above every id the log held when it was opened: answered
    absent from memory. One below (an old id, a device clock behind) is asked of the file,
    as is every id staged since, kept or lost; the ids staged since are bounded."""
    from coordinator import eventlog
    from coordinator.eventlog import StorageFailed

    path = tmp_path / "log.sqlite"
    q = make_queue(path, core_cls)
    old = issue()
    q.submit("ticket", "dispenser", "pi-d1", old, at(9))
    q.log.close()
    q = make_queue(path, core_cls)
    reader = q.log._reader
    new, behind = issue(), issue()
    object.__setattr__(behind, "id", "0000000000" + behind.id[10:])  # a clock far behind
    q.log._reader = None  # type: ignore[assignment]  # only memory can answer now
    assert q.log.lookup(new.id) is None
    for asked in (old, behind):  # these need the file
        with pytest.raises(AttributeError):
            q.log.lookup(asked.id)
    q.log._reader = reader
    assert q.log.lookup(old.id) is not None, "below the largest: asked, found"
    assert q.log.lookup(behind.id) is None
    q.submit("ticket", "dispenser", "pi-d1", new, at(9, 1))
    assert q.log.lookup(new.id) is not None, "staged since: asked, found"
    lost = issue()
    q.submit("ticket", "dispenser", "pi-d1", lost, at(9, 2), defer=True)
    q.log._db.execute("PRAGMA query_only = 1")
    with pytest.raises(StorageFailed):
        q.commit()
    q.log._db.execute("PRAGMA query_only = 0")
    assert q.log.lookup(lost.id) is None, "not kept: absent again"
    monkeypatch.setattr(eventlog, "LOGGED_SINCE_KEPT", 2)
    more = [issue() for _ in range(3)]
    for n, command in enumerate(more):
        q.submit("ticket", "dispenser", "pi-d1", command, at(9, 3 + n))
    assert len(q.log._logged_since) <= 2, "read the largest id again instead of growing"
    assert all(q.log.lookup(c.id) is not None for c in [old, new, *more])


def test_a_reader_beside_the_coordinator_never_remembers_an_id_as_absent(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    path = tmp_path / "log.sqlite"
    q = make_queue(path, core_cls)
    reader = EventLog.reader(path)
    command = issue()
    assert reader.lookup(command.id) is None
    q.submit("ticket", "dispenser", "pi-d1", command, at(9))
    assert reader.lookup(command.id) is not None, "written by another connection: seen"
    reader.close()


def test_checkpoints_space_out_with_the_day_so_their_cost_per_command_stays_flat() -> None:
    """A checkpoint pickles the whole day: spaced by a share of the day's tickets, its cost
    per command stops growing; never closer than CHECKPOINT_EVERY entries."""
    from coordinator.hallqueue import CHECKPOINT_EVERY, CHECKPOINT_SHARE, checkpoint_every

    assert checkpoint_every(0) == CHECKPOINT_EVERY
    assert checkpoint_every(CHECKPOINT_EVERY * CHECKPOINT_SHARE) == CHECKPOINT_EVERY
    assert checkpoint_every(10_000) == 10_000 // CHECKPOINT_SHARE > CHECKPOINT_EVERY


def commit_call(log: EventLog, i: int, payload: str = '{"window": 1, "action": "call"}') -> None:
    """Entry ``i``, a CALL, committed alone (a quiet hall's)."""
    log.stage(
        kind="window",
        cmd_id=f"c{i:06d}",
        day="2026-11-30",
        at=at(9) + i,
        source="window/pi-w1",
        payload=payload,
        result={"ok": True},
    )
    log.commit()


def test_the_wal_is_checkpointed_when_the_coordinator_asks_not_inside_a_commit(
    tmp_path: Path,
) -> None:
    """SQLite checkpoints its WAL inside the commit that crosses 1,000 pages: a write and
    an fsync of the database on that command's path. The coordinator asks for it after a
    group's messages left instead, every WAL_CHECKPOINT_COMMITS commits, so the WAL never
    reaches SQLite's own mark; a log nobody asks keeps SQLite's as before."""
    from coordinator import eventlog as el

    def run(path: Path, ask: bool) -> tuple[int, int]:
        log = EventLog(path)
        wal, biggest, ran = Path(f"{path}-wal"), 0, 0
        try:
            for i in range(3 * el.WAL_CHECKPOINT_COMMITS):
                commit_call(log, i, '{"window": 1, "action": "call"}' * 8)
                ran += ask and log.checkpoint_wal()
                biggest = max(biggest, wal.stat().st_size if wal.exists() else 0)
        finally:
            log.close()
        return biggest, ran

    asked, checkpoints = run(tmp_path / "asked.sqlite", True)
    alone, _ = run(tmp_path / "alone.sqlite", False)
    assert checkpoints == 3
    assert asked < alone * 0.75, (asked, alone)
    assert alone > 3_000_000  # SQLite's own: ~1,000 pages


def test_the_wal_starts_over_at_the_checkpoint_not_in_the_next_commands_commit(
    tmp_path: Path,
) -> None:
    """The first write after a complete checkpoint starts the WAL over: a new header,
    synced before that write's own frames, two fsyncs where a commit has one. Done by the
    checkpoint itself, that second fsync is off every command's path; left to the next
    commit, it made one commit in WAL_CHECKPOINT_COMMITS the slowest, ~1% of the CALLs
    (bench/e2e.py, five runs each: CALL -> board p99 1.78-3.16x the paced floor before,
    1.85-1.98x after)."""
    from coordinator import eventlog as el

    path = tmp_path / "log.sqlite"
    wal = Path(f"{path}-wal")

    def header() -> bytes:  # the WAL's checkpoint sequence and salts: new at every start
        with wal.open("rb") as f:
            return f.read(24)[12:24]

    log = EventLog(path)
    try:
        for i in range(el.WAL_CHECKPOINT_COMMITS):
            commit_call(log, i)
        before = header()
        assert log.checkpoint_wal()
        after = header()
        assert after != before, "the checkpoint began the WAL again with a write of its own"
        commit_call(log, el.WAL_CHECKPOINT_COMMITS)
        assert header() == after, "so the next command's commit only appends"
    finally:
        log.close()
    assert EventLog.reader(path).lookup(f"c{el.WAL_CHECKPOINT_COMMITS:06d}") is not None


def test_a_wal_checkpoint_waits_for_its_turn() -> None:
    """Not before WAL_CHECKPOINT_COMMITS, and never while a group's write is running in
    the writer thread (it would race that write for the last frames)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog(Path(tmp) / "log.sqlite")
        try:
            assert not log.checkpoint_wal()
            log._wal_commits = 10**6
            log._job = (concurrent.futures.Future(), 1)
            assert not log.checkpoint_wal()
            log._job = None
            assert log.checkpoint_wal()
            assert not log.checkpoint_wal()
        finally:
            log.close()
