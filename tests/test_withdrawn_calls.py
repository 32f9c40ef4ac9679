"""A called ticket whose key press was issued offline instead (issue #15): its call is
withdrawn, from the log, the same way on every replay.

The dispenser's online request was applied (A001) but the reply never reached it; it
printed an offline ticket from its lease, whose replay names the request in
``supersedes``. When a window called A001 before that replay came, nobody holds the number
the window called: the replay voids it, frees the window, tells the pad, drops it from the
board, and leaves no wait, service or no-show behind for the KPIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coordinator.hallqueue import HallQueue
from edge.window import display_text
from firmware_bridge.sim import SimCallPad
from hallq import messages as m
from hallq.messages import TicketState
from hallq.topics import HallTopics

from .conftest import Inbox, Mosquitto
from .coordinated import FakeClock, device, running
from .halls import at, small_hall
from .test_edge_agents import agent
from .test_hallqueue import issue, lease, make_queue, offline_issue, peek_queue


def _window(q: HallQueue, action: str, minute: int, **more: Any) -> dict[str, Any]:
    command: Any
    if action == "finish":
        command = m.Finish(window=1, action="finish", **more)
    else:
        command = m.WindowAction(window=1, action=action)  # type: ignore[arg-type]
    record: dict[str, Any] = q.submit("window", "window", "pi-w1", command, at(9, minute)).record
    return record


def _seen(q: HallQueue) -> dict[str, Any]:
    """What a restart must rebuild the same: tickets, the window, the board, the KPIs."""
    e = q.engine
    win = e.windows[1]
    total = e.stats_state(0, at(9, 30)).total
    return {
        "tickets": {
            t.number: (t.state, t.window, t.withdrawn_from, t.called_at) for t in e.tickets
        },
        "window": (win.current.number if win.current else None, win.withdrawn, win.since),
        "view": e.window_state(1, 0).model_dump(exclude={"ts", "id"}),
        "board": [c.ticket for c in e.calls],
        "kpi": total.model_dump(),
        "recent": list(e.recent["tax-filing"]),
    }


# before the replay: what became of A001 at window 1 (state it had, KPI it would have had)
PATHS = {
    "called": ["call"],
    "serving": ["call", "start"],
    "skipped": ["call", "skip"],
    "parked": ["call", "park"],
    "finished": ["call", "finish"],
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_called_ticket_superseded_by_an_offline_issue_is_withdrawn(
    tmp_path: Path, core_cls: type[Any], path: str
) -> None:
    log_path = tmp_path / "log.sqlite"
    q = make_queue(log_path, core_cls)
    first = lease(q)
    online = issue()
    assert q.submit("ticket", "dispenser", "pi-d1", online, at(9)).record["ok"]  # reply lost
    for minute, action in enumerate(PATHS[path], start=1):
        assert _window(q, action, minute)["ok"], action
    before = q.engine.stats_state(0, at(9, 5)).total  # (a finished A001 folded: final)
    assert (before.served, before.no_show) == (int(path == "finished"), int(path == "skipped"))
    was = q.engine.by_number["A001"].state

    replay = offline_issue(f"A{first}", online.id)
    done = q.submit("ticket", "dispenser", "pi-d1", replay, at(9, 6))
    assert done.record["ok"]
    assert done.outcome is not None
    at_window = path in ("called", "serving")
    assert done.record["withdrawn"] == {"ticket": "A001", "was": was.value, "window": 1}
    voided = [e for e in done.outcome.events if isinstance(e, m.TicketEvent) and e.ticket == "A001"]
    assert [(e.state, e.window) for e in voided] == [(TicketState.VOIDED, 1)]
    assert (1 in done.outcome.windows) is at_window
    assert done.outcome.board_changed

    e = q.engine
    a001 = e.by_number["A001"]
    assert (a001.state, a001.window, a001.withdrawn_from) == (TicketState.VOIDED, None, 1)
    assert a001.called_at is None
    assert a001.finished_at is None
    win = e.windows[1]
    assert win.current is None
    assert win.withdrawn == ("A001" if at_window else None)
    view = e.window_state(1, 0)
    assert view.ticket is None
    assert view.withdrawn == win.withdrawn
    assert display_text(view) == ("A001 已作废 请叫号" if at_window else "空闲 请叫号")
    assert "A001" not in [c.ticket for c in e.calls]
    assert "A001" not in [c.ticket for c in e.board_state(0).calls]
    assert list(e.recent["tax-filing"]) == []  # no counter time for nobody
    kpi = e.stats_state(0, at(9, 7))
    # A001 (voided) and the offline ticket are issued; nobody served, nobody missed,
    # nobody has waited yet, and window 1 handled nobody
    assert (kpi.total.served, kpi.total.no_show, kpi.total.avg_wait_s) == (0, 0, None)
    assert kpi.per_window["1"].issued == 0
    assert e.windows[1].last_done is None  # the rating keys rate nobody

    # the replay again (QoS 1, the outbox): the first result, nothing changes
    seen = _seen(q)
    again = q.submit("ticket", "dispenser", "pi-d1", replay, at(9, 8))
    assert again.duplicate
    assert again.record == done.record
    assert _seen(q) == seen

    # a restart rebuilds the same from the log, and replays to the same results
    restarted = peek_queue(log_path, core_cls)
    restarted.recover()
    assert restarted.replay_mismatches == 0
    assert _seen(restarted) == seen

    # the window is free: its next call is the taxpayer's offline ticket, and the pad's
    # notice goes with that command
    assert _window(q, "call", 9)["ticket"] == f"A{first}"
    assert e.windows[1].withdrawn is None
    assert e.window_state(1, 0).withdrawn is None


def test_a_withdrawal_survives_a_checkpoint(tmp_path: Path, core_cls: type[Any]) -> None:
    log_path = tmp_path / "log.sqlite"
    q = make_queue(log_path, core_cls)
    first = lease(q)
    online = issue()
    q.submit("ticket", "dispenser", "pi-d1", online, at(9))
    _window(q, "call", 1)
    q.submit("ticket", "dispenser", "pi-d1", offline_issue(f"A{first}", online.id), at(9, 2))
    assert q.save_checkpoint(q.seq, q.checkpoint())
    seen = _seen(q)
    restored = peek_queue(log_path, core_cls)
    restored.recover()
    assert _seen(restored) == seen


def test_a_ticket_finished_at_another_window_since_is_withdrawn_from_that_one(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """Window 1 called A001 and, pressing CALL again when nobody came, finished it and
    called A002: A001 is voided, window 1 keeps A002 and is told nothing."""
    q = make_queue(tmp_path / "log.sqlite", core_cls)
    first = lease(q)
    online = issue()
    q.submit("ticket", "dispenser", "pi-d1", online, at(9))
    q.submit("ticket", "dispenser", "pi-d1", issue(), at(9))
    assert _window(q, "call", 1)["ticket"] == "A001"
    assert _window(q, "call", 2)["ticket"] == "A002"
    done = q.submit("ticket", "dispenser", "pi-d1", offline_issue(f"A{first}", online.id), at(9, 3))
    assert done.record["withdrawn"] == {"ticket": "A001", "was": "done", "window": 1}
    e = q.engine
    assert e.windows[1].current is e.by_number["A002"]
    assert e.windows[1].withdrawn is None
    assert [c.ticket for c in e.calls] == ["A002"]
    assert e.stats_state(0, at(9, 4)).total.served == 0


def test_a_waiting_ticket_superseded_is_voided_and_logged_as_before(
    tmp_path: Path, core_cls: type[Any]
) -> None:
    """Nothing was called: the result is the one logs of earlier versions hold."""
    q = make_queue(tmp_path / "log.sqlite", core_cls)
    first = lease(q)
    online = issue()
    q.submit("ticket", "dispenser", "pi-d1", online, at(9))
    done = q.submit("ticket", "dispenser", "pi-d1", offline_issue(f"A{first}", online.id), at(9, 1))
    assert "withdrawn" not in done.record
    assert q.engine.by_number["A001"].state is TicketState.VOIDED
    assert q.engine.windows[1].withdrawn is None


def test_the_pad_does_not_offer_a_withdrawn_ticket_for_rating() -> None:
    from types import SimpleNamespace

    from edge.window import WindowAgent

    agent = WindowAgent.__new__(WindowAgent)
    agent.states, agent.last_served, agent._latest, agent._showing = {}, {}, {}, {}
    agent._link_down = set()
    agent._closed = True
    called = m.WindowState(
        rev=1, window=1, zone="hall-1", status=m.WindowStatus.OPEN, ticket="A001"
    )
    freed = m.WindowState(
        rev=2, window=1, zone="hall-1", status=m.WindowStatus.OPEN, withdrawn="A001"
    )
    for state in (called, freed):
        agent._on_state(SimpleNamespace(payload=state))  # type: ignore[arg-type]
    assert agent.last_served == {}
    assert agent._latest[1] == "A001 已作废 请叫号"


@pytest.mark.broker
async def test_over_mqtt_a_withdrawn_call_frees_the_window_and_every_view_follows(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    """The whole path on a real Mosquitto: the window agent's simulated pad, the retained
    window and board states, the ticket event; then a restarted coordinator on a broker
    that forgot its retained messages publishes the same views from the log."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    log_path = tmp_path / "log.sqlite"
    T = HallTopics("test-hall")
    tickets, window1, board = inbox(), inbox(), inbox()
    async with (
        running(cfg, log_path, clock) as coordinator,
        agent(cfg, "pi-w1", tmp_path, clock) as (w_devices, _),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "board", "board-1", tmp_path) as watcher,
    ):
        await watcher.subscribe(T.event("ticket"), tickets)
        await watcher.subscribe(T.window_state(1), window1)
        await watcher.subscribe(T.board_state(), board)
        await dispenser.wait_connected(10)
        await watcher.wait_connected(10)
        pad_bus, pad = w_devices["pad-1"]
        sim_pad = pad_bus.device(pad, SimCallPad)
        await pad_bus.wait_for(lambda: sim_pad.display == "空闲 请叫号", timeout=15)

        lease = await dispenser.request(
            T.req("pi-d1"), m.LeaseRequest(kind="lease", service="tax-filing", size=5), timeout=10
        )
        online = issue()
        # applied; its reply is the one the dispenser never got (the broker went)
        assert (await dispenser.request(T.req("pi-d1"), online, timeout=10)).ticket.number == "A001"
        clock.now += 60
        pad_bus.press(pad, "CALL")
        await pad_bus.wait_for(lambda: sim_pad.display == "A001", timeout=15)
        await board.wait_for(lambda ps: [c.ticket for c in ps[-1].calls] == ["A001"], timeout=15)

        clock.now += 30
        offline = f"A{lease.first}"
        replay = offline_issue(offline, online.id)
        assert (await dispenser.request(T.req("pi-d1"), replay, timeout=10)).ok

        await pad_bus.wait_for(lambda: sim_pad.display == "A001 已作废 请叫号", timeout=15)
        freed = await window1.wait_for(lambda ps: ps[-1].withdrawn == "A001", timeout=15)
        assert freed[-1].ticket is None
        shown = await board.wait_for(lambda ps: not ps[-1].calls, timeout=15)
        assert shown[-1].waiting["tax-filing"] == 1  # the taxpayer's offline ticket
        voided = await tickets.wait_for(
            lambda ps: any(p.ticket == "A001" and p.state == "voided" for p in ps), timeout=15
        )
        assert [(p.window, p.reason) for p in voided if p.state == "voided"] == [
            (1, "issued offline instead")
        ]
        rev = coordinator.queue.seq
        expected = {
            "window": coordinator.engine.window_state(1, rev),
            "board": coordinator.board_state(rev),
        }

    def same(a: Any, b: Any) -> bool:
        skip = {"ts", "id", "rev"}
        return bool(a.model_dump(exclude=skip) == b.model_dump(exclude=skip))

    mosquitto.restart()  # the retained views gone: the restarted coordinator's come from the log
    window1, board = inbox(), inbox()
    async with (
        running(cfg, log_path, clock) as coordinator,
        agent(cfg, "pi-w1", tmp_path, clock) as (w_devices, _),
        device(cfg, "board", "board-1", tmp_path) as watcher,
    ):
        await watcher.subscribe(T.window_state(1), window1)
        await watcher.subscribe(T.board_state(), board)
        again = await window1.wait_for(bool, timeout=15)
        assert same(again[-1], expected["window"])
        assert same((await board.wait_for(bool, timeout=15))[-1], expected["board"])
        pad_bus, pad = w_devices["pad-1"]
        sim_pad = pad_bus.device(pad, SimCallPad)
        await pad_bus.wait_for(lambda: sim_pad.display == "A001 已作废 请叫号", timeout=15)

        pad_bus.press(pad, "CALL")  # free to call: the one who holds the offline ticket
        await pad_bus.wait_for(lambda: sim_pad.display == offline, timeout=15)
        after = await window1.wait_for(lambda ps: ps[-1].ticket == offline, timeout=15)
        assert after[-1].withdrawn is None
        assert coordinator.engine.by_number["A001"].state is TicketState.VOIDED


def _faults_bench() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "bench" / "faults.py"
    spec = importlib.util.spec_from_file_location("bench_faults", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("withdrawn", [True, False])
def test_the_fault_suite_counts_a_withdrawn_call_as_fixed_and_any_other_as_a_ghost(
    tmp_path: Path, core_cls: type[Any], monkeypatch: pytest.MonkeyPatch, withdrawn: bool
) -> None:
    """bench/faults.py judges from the log: the offline issue's result must say the call
    was withdrawn (a log written without it, as before this fix, is a ghost even though
    today's replay would withdraw it)."""
    from types import SimpleNamespace

    from edge.dispenser import Issued

    faults = _faults_bench()
    q = make_queue(tmp_path / "log.sqlite", core_cls)
    if not withdrawn:  # the engine before the fix: only a waiting ticket was voided

        def void_waiting(number: str, source: str, reason: str, now: float) -> Any:
            request = m.VoidRequest(kind="void", number=number, reason=reason)
            return q.engine.void(request, source)

        monkeypatch.setattr(q.engine, "withdraw", void_waiting)
    first = lease(q)
    online = issue()
    q.submit("ticket", "dispenser", "pi-d1", online, at(9))
    _window(q, "call", 1)
    q.submit("ticket", "dispenser", "pi-d1", offline_issue(f"A{first}", online.id), at(9, 2))
    monkeypatch.undo()

    judged = peek_queue(q.log.path, core_cls)
    judged.recover()
    hall = SimpleNamespace(
        scenario="broker-restart",
        issued=[Issued(f"A{first}", online=False, printed=True)],
        sent={},
        recoveries=[0.5, 0.5],
        phases={},
    )
    shown = faults.expected_views(judged.cfg, judged)
    result = faults.verdict(judged.cfg, hall, judged, shown)
    assert (result["withdrawn"], result["ghost"]) == ((1, 0) if withdrawn else (0, 1))
    assert result["ghost_numbers" if not withdrawn else "withdrawn_numbers"] == ["A001"]
    assert (result["lost"], result["duplicated"], result["not_converged"]) == (0, 0, 0)


def test_a_board_agents_speakers_are_told_of_a_withdrawn_call() -> None:
    """Only a voided ticket with a window (a withdrawn call) reaches the speakers."""
    from types import SimpleNamespace

    from edge.panels import Panels

    told: list[tuple[str, int]] = []
    speaker = SimpleNamespace(withdraw=lambda ticket, window: told.append((ticket, window)))
    panels = Panels(cfg=None, devices=[], session=None, drivers={}, health=None)  # type: ignore[arg-type]
    panels.announcers = [speaker]  # type: ignore[list-item]
    for state, window in (
        (TicketState.VOIDED, 3),
        (TicketState.VOIDED, None),
        (TicketState.DONE, 3),
    ):
        ticket = m.TicketEvent(ticket="A003", service="tax-filing", state=state, window=window)
        panels._on_ticket(SimpleNamespace(payload=ticket))  # type: ignore[arg-type]
    assert told == [("A003", 3)]
