"""The queue engine: every operation and rejection, against both dispatch cores."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from coordinator.engine import Engine, Outcome, _kth, _utc
from hallq import messages as m
from hallq.config import HallConfig, parse_config
from hallq.errors import ConfigError
from hallq.messages import Priority, TicketState, WindowStatus

from .halls import at, small_hall, small_hall_text, two_site_hall_text

H = "ab" * 32


@pytest.fixture
def engine(core_cls: type[Any]) -> Engine:
    e = Engine(small_hall(), core_cls)
    e.roll_over(at(8))
    return e


def issue(e: Engine, service: str = "tax-filing", now: float | None = None, **kw: Any) -> Outcome:
    return e.apply(m.IssueRequest(kind="issue", service=service, **kw), now or at(9))


def act(e: Engine, window: int, action: str, now: float | None = None, **kw: Any) -> Outcome:
    model = {
        "call_ticket": m.TicketAction,
        "reinstate": m.TicketAction,
        "unpark": m.TicketAction,
        "cancel": m.TicketAction,
        "transfer": m.Transfer,
        "finish": m.Finish,
        "rate": m.Rate,
        "set_skills": m.SetSkills,
    }.get(action, m.WindowAction)
    return e.apply(model(window=window, action=action, **kw), now or at(10))


def called(out: Outcome) -> str:
    assert out.ok, out.error
    assert out.ticket is not None
    return out.ticket.number


def code(out: Outcome) -> str:
    assert not out.ok
    assert out.error is not None
    return out.error.code


# --- issuing -------------------------------------------------------------------------------


def test_numbers_count_per_service_with_prefix_and_width(engine: Engine) -> None:
    numbers = [
        issue(engine, s).ticket.number  # type: ignore[union-attr]
        for s in ("tax-filing", "tax-filing", "invoice", "tax-filing")
    ]
    assert numbers == ["A001", "A002", "B001", "A003"]


def test_issue_reply_counts_people_ahead_and_estimates_the_wait(engine: Engine) -> None:
    for _ in range(3):
        issue(engine)
    out = issue(engine)
    assert out.info is not None
    assert out.info.people_ahead == 3
    serving = engine.serving_windows("tax-filing")
    assert serving == 3
    assert out.info.eta_min == round(3 * 1.63 * 60 / serving / 60, 1)
    assert [type(e) for e in out.events] == [m.TicketEvent]


def test_issue_rejections_are_values_with_reasons(engine: Engine) -> None:
    assert code(issue(engine, "passport")) == "unknown_service"
    assert code(issue(engine, now=at(7, 59))) == "service_closed"
    closed = issue(engine, "green", now=at(13))
    assert code(closed) == "service_closed"
    assert closed.error is not None
    assert "09:00-12:00" in closed.error.message
    assert issue(engine, "green", now=at(11, 59)).ok


def test_daily_cap_and_its_warning(engine: Engine) -> None:
    outs = [issue(engine, "invoice") for _ in range(6)]
    assert [o.ok for o in outs] == [True] * 5 + [False]
    assert code(outs[5]) == "daily_cap_reached"
    alerts = [e for o in outs for e in o.events if isinstance(e, m.AlertEvent)]
    assert len(alerts) == 1
    assert alerts[0].kind == "daily_cap_near"


def test_per_person_daily_limit_by_identity_hash(engine: Engine) -> None:
    assert issue(engine, identity=H).ok
    assert issue(engine, "invoice", identity=H).ok
    assert code(issue(engine, identity=H)) == "person_limit_reached"
    assert issue(engine, identity="cd" * 32).ok
    assert issue(engine).ok


def test_green_service_tickets_get_the_green_class(engine: Engine) -> None:
    t = issue(engine, "green", now=at(9, 30)).ticket
    assert t is not None
    assert t.priority is Priority.GREEN


# --- calling -------------------------------------------------------------------------------


def test_call_follows_issue_order_within_a_class_and_green_first(engine: Engine) -> None:
    issue(engine, now=at(9, 0))
    issue(engine, now=at(9, 1))
    issue(engine, "green", now=at(9, 2))
    assert called(act(engine, 1, "call", at(9, 3))) == "G001"
    assert called(act(engine, 1, "call", at(9, 4))) == "A001"
    assert called(act(engine, 1, "call", at(9, 5))) == "A002"


def test_call_publishes_a_call_event_and_the_board_remembers(engine: Engine) -> None:
    issue(engine)
    out = act(engine, 1, "call")
    call = [e for e in out.events if isinstance(e, m.CallEvent)]
    assert call == [
        m.CallEvent(
            ticket="A001",
            service="tax-filing",
            window=1,
            zone="hall-1",
            id=call[0].id,
            ts=call[0].ts,
        )
    ]
    assert out.board_changed
    assert out.windows == {1}
    assert engine.board_state(1).calls[0].ticket == "A001"
    assert engine.window_state(1, 1).ticket == "A001"


def test_a_window_calls_only_services_it_serves(engine: Engine) -> None:
    issue(engine, "tax-filing")
    assert code(act(engine, 2, "call")) == "no_one_waiting"
    issue(engine, "invoice")
    assert called(act(engine, 2, "call")) == "B001"


def test_calling_again_finishes_the_current_ticket(engine: Engine) -> None:
    issue(engine)
    issue(engine)
    act(engine, 1, "call", at(10))
    out = act(engine, 1, "call", at(10, 2))
    assert called(out) == "A002"
    first = engine.by_number["A001"]
    assert first.state is TicketState.DONE
    assert first.finished_at == at(10, 2)


def test_paused_and_closed_windows_cannot_call(engine: Engine) -> None:
    issue(engine)
    assert act(engine, 1, "pause").ok
    assert code(act(engine, 1, "call")) == "window_paused"
    assert engine.window_state(1, 2).status is WindowStatus.PAUSED
    assert act(engine, 1, "close").ok
    assert code(act(engine, 1, "call")) == "window_closed"
    assert act(engine, 1, "open").ok
    assert called(act(engine, 1, "call")) == "A001"


def test_unknown_window(engine: Engine) -> None:
    assert code(act(engine, 99, "call")) == "unknown_window"


def test_call_a_specific_ticket(engine: Engine) -> None:
    issue(engine)
    issue(engine)
    assert called(act(engine, 1, "call_ticket", ticket="A002")) == "A002"
    assert code(act(engine, 1, "call_ticket", ticket="A002")) == "ticket_not_waiting"
    assert code(act(engine, 1, "call_ticket", ticket="A404")) == "unknown_ticket"
    assert called(act(engine, 3, "call")) == "A001"
    assert code(act(engine, 3, "call")) == "no_one_waiting"


def test_recall_up_to_the_limit(engine: Engine) -> None:
    assert code(act(engine, 1, "recall")) == "no_current_ticket"
    issue(engine)
    act(engine, 1, "call")
    recalls = [act(engine, 1, "recall") for _ in range(3)]
    assert [r.ok for r in recalls] == [True, True, False]
    assert code(recalls[2]) == "recall_limit"
    assert [e.recall for e in recalls[1].events if isinstance(e, m.CallEvent)] == [2]


def test_skip_then_reinstate_goes_behind_the_current_head(engine: Engine) -> None:
    for minute in range(3):
        issue(engine, now=at(9, minute))
    act(engine, 1, "call")
    assert act(engine, 1, "skip").ok
    assert engine.by_number["A001"].state is TicketState.NO_SHOW
    assert code(act(engine, 1, "reinstate", ticket="A002")) == "ticket_not_skipped"
    assert act(engine, 1, "reinstate", ticket="A001").ok
    order = [called(act(engine, 3, "call", at(10, i))) for i in range(3)]
    assert order == ["A002", "A001", "A003"]


def test_skip_is_only_for_a_ticket_not_yet_served(engine: Engine) -> None:
    issue(engine)
    act(engine, 1, "call")
    act(engine, 1, "start")
    assert code(act(engine, 1, "skip")) == "ticket_not_called"


def test_start_finish_and_rating(engine: Engine) -> None:
    issue(engine, now=at(9))
    act(engine, 1, "call", at(9, 5))
    assert act(engine, 1, "start", at(9, 6)).ok
    assert code(act(engine, 1, "start", at(9, 6))) == "ticket_not_called"
    assert act(engine, 1, "finish", at(9, 8), rating=4).ok
    t = engine.by_number["A001"]
    assert (t.state, t.wait_s, t.service_s, t.rating) == (TicketState.DONE, 300.0, 120.0, 4)
    assert act(engine, 1, "rate", ticket="A001", rating=2).ok
    assert t.rating == 2
    assert code(act(engine, 2, "rate", ticket="A001", rating=2)) == "not_served_here"
    assert engine.avg_service_s("tax-filing") == 120.0


def test_transfer_to_a_service_keeps_the_original_issue_time(engine: Engine) -> None:
    issue(engine, "tax-filing", now=at(9, 0))
    issue(engine, "invoice", now=at(9, 5))
    act(engine, 3, "call")
    out = act(engine, 3, "transfer", to_service="invoice")
    assert out.ok
    assert engine.window_state(3, 9).ticket is None
    moved = engine.by_number["A001"]
    assert moved.service == "invoice"
    assert moved.issued_at == at(9, 0)
    assert called(act(engine, 2, "call")) == "A001", "issued earlier, so it is ahead of B001"


def test_counter_time_after_a_transfer_is_the_second_windows_only(engine: Engine) -> None:
    """Regression: the start pressed at the first window stayed on the ticket, so the
    second window's service time (and the wait estimates built on it) took in the time
    the taxpayer spent walking and queueing between the two."""
    issue(engine, "tax-filing", now=at(9, 0))
    act(engine, 3, "call", now=at(9, 1))
    act(engine, 3, "start", now=at(9, 2))
    act(engine, 3, "transfer", to_service="invoice", now=at(9, 5))
    act(engine, 2, "call", now=at(9, 30))
    act(engine, 2, "finish", now=at(9, 33))
    t = engine.by_number["A001"]
    assert t.service_s == 180.0
    assert list(engine.recent["invoice"]) == [180.0]


def test_transfer_to_a_window_is_served_first_there(engine: Engine) -> None:
    issue(engine, "invoice", now=at(9, 0))
    issue(engine, "tax-filing", now=at(9, 5))
    act(engine, 3, "call")
    assert act(engine, 3, "transfer", to_window=2).ok
    assert called(act(engine, 2, "call")) == "A001"
    assert called(act(engine, 2, "call")) == "B001"


def test_transfer_rejections(engine: Engine) -> None:
    issue(engine)
    act(engine, 1, "call")
    assert code(act(engine, 3, "transfer", ticket="A001", to_service="invoice")) == (
        "not_your_ticket"
    )
    assert code(act(engine, 1, "transfer", to_window=42)) == "unknown_window"
    assert code(act(engine, 1, "transfer", to_service="passport")) == "unknown_service"
    # found by an attacker with a pad's password: sent to a closed window, a ticket's page
    # read "next, within 1 min" for good
    assert act(engine, 4, "close").ok
    assert code(act(engine, 1, "transfer", to_window=4)) == "window_closed"
    assert engine.by_number["A001"].window == 1
    act(engine, 1, "finish")
    assert code(act(engine, 1, "transfer", ticket="A001", to_service="invoice")) == (
        "ticket_finished"
    )


def test_cancel_park_and_unpark(engine: Engine) -> None:
    issue(engine)
    issue(engine)
    assert act(engine, 1, "cancel", ticket="A002").ok
    assert engine.by_number["A002"].state is TicketState.CANCELLED
    assert code(act(engine, 1, "cancel", ticket="A002")) == "ticket_not_waiting"
    act(engine, 1, "call")
    assert act(engine, 1, "park").ok
    assert engine.window_state(1, 1).ticket is None
    assert engine.by_number["A001"].state is TicketState.PARKED
    assert code(act(engine, 1, "call")) == "no_one_waiting"
    assert called(act(engine, 1, "unpark", ticket="A001")) == "A001"


def test_emergency_raises_a_critical_alert(engine: Engine) -> None:
    out = act(engine, 2, "emergency")
    assert [(e.severity, e.window) for e in out.events] == [("critical", 2)]  # type: ignore[attr-defined]


def test_skills_change_live(engine: Engine) -> None:
    issue(engine, "invoice")
    assert code(act(engine, 3, "call")) == "no_one_waiting"
    assert act(engine, 3, "set_skills", skills={"invoice": 1.0}).ok
    assert called(act(engine, 3, "call")) == "B001"
    assert code(act(engine, 3, "set_skills", skills={"passport": 1.0})) == "unknown_service"


def test_weights_and_the_overdue_boost_order_heads(engine: Engine) -> None:
    issue(engine, "tax-filing", now=at(9, 0))
    issue(engine, "invoice", now=at(9, 4))
    issue(engine, "invoice", now=at(9, 5))
    act(engine, 4, "set_skills", skills={"tax-filing": 1.0, "invoice": 3.0})
    # 9:08: A001 waited 8 min x1 = 8; B001 4 min x3 = 12: the weight puts B001 first
    assert called(act(engine, 4, "call", at(9, 8))) == "B001"
    # 9:11: A001 waited 11 min, past its 10-min target: 11 x1 x2 = 22 > B002 6 min x3 = 18
    assert called(act(engine, 4, "call", at(9, 11))) == "A001"


def test_appointments_take_precedence_only_within_their_slot(engine: Engine) -> None:
    engine.register_appointment("APPT1234", "tax-filing", at(10), at(10, 30))
    issue(engine, now=at(9, 0))
    appt = issue(engine, now=at(9, 10), appointment="APPT1234")
    assert appt.ticket is not None
    assert appt.ticket.priority is Priority.APPOINTMENT
    assert called(act(engine, 3, "call", at(9, 50))) == "A001", "early: waits like others"
    issue(engine, now=at(9, 55))
    assert called(act(engine, 3, "call", at(10, 1))) == "A002", "within its slot: first"


def test_a_booking_checks_in_once_unless_its_ticket_was_voided(engine: Engine) -> None:
    """Scanned again (its holder for a friend, or a dispenser's login in other hands with
    a code booked on the public page), one booking gave ticket after ticket ahead of the
    queue. A ticket that did not print is voided, and its holder may scan again."""
    engine.register_appointment("APPT1234", "tax-filing", at(10), at(10, 30))
    first = issue(engine, now=at(9, 50), appointment="APPT1234").ticket
    assert first is not None
    again = issue(engine, now=at(9, 51), appointment="APPT1234")
    assert again.error is not None
    assert (again.error.code, again.error.message) == ("appointment_used", "此预约今日已取号 A001")
    assert [t.number for t in engine.tickets] == ["A001"]
    # nor does a replay of a ticket "printed offline" with it (printed: it queues, as normal)
    engine.leases[("", "tax-filing")] = [(990, 999)]
    printed = m.OfflineIssue(number="A990", issued_at=dt.datetime.fromtimestamp(at(9, 51), dt.UTC))
    replayed = issue(engine, now=at(9, 51), appointment="APPT1234", offline=printed).ticket
    assert replayed is not None
    assert replayed.priority is Priority.NORMAL
    engine.void(m.VoidRequest(kind="void", number="A001", reason="paper out"), "")
    reissued = issue(engine, now=at(9, 52), appointment="APPT1234").ticket
    assert reissued is not None
    assert reissued.priority is Priority.APPOINTMENT


# --- the day ---------------------------------------------------------------------------------


def test_rollover_closes_out_the_day_and_numbers_restart(engine: Engine) -> None:
    issue(engine)
    issue(engine)
    act(engine, 1, "call")
    assert not engine.due(at(23))
    assert engine.due(at(3, 1, day=31))
    snapshot, out = engine.roll_over(at(3, 1, day=31))
    states = sorted((e.ticket, e.state) for e in out.events)  # type: ignore[attr-defined]
    assert states == [("A001", TicketState.DONE), ("A002", TicketState.CANCELLED)]
    assert snapshot["carried"] == []
    assert str(engine.day) == "2026-12-01"
    assert issue(engine, now=at(9, day=31)).ticket.number == "A001"  # type: ignore[union-attr]
    assert engine.window_state(1, 1).ticket is None


def test_carry_over_keeps_waiting_tickets_and_skips_their_numbers(core_cls: type[Any]) -> None:
    e = Engine(small_hall(carry_over=True), core_cls)
    e.roll_over(at(8))
    issue(e)
    issue(e)
    act(e, 1, "call")
    snapshot, _ = e.roll_over(at(3, 1, day=31))
    assert [c["number"] for c in snapshot["carried"]] == ["A002"]
    assert e.by_number["A002"].state is TicketState.WAITING
    assert issue(e, now=at(9, day=31)).ticket.number == "A003"  # type: ignore[union-attr]
    assert called(act(e, 3, "call", at(9, 1, day=31))) == "A002"


def test_a_day_restarted_from_its_snapshot_has_the_same_windows(core_cls: type[Any]) -> None:
    e = Engine(small_hall(), core_cls)
    e.roll_over(at(8))
    act(e, 2, "pause")
    act(e, 3, "set_skills", skills={"invoice": 1.5})
    snapshot, _ = e.roll_over(at(3, 1, day=31))
    fresh = Engine(small_hall(), core_cls)
    fresh.start_day(snapshot)
    assert fresh.window_state(2, 1).status is WindowStatus.PAUSED
    assert fresh.windows[3].skills == e.windows[3].skills == {"invoice": 1.5}
    assert str(fresh.day) == "2026-12-01"


def test_stats_count_waits_and_service_times(engine: Engine) -> None:
    issue(engine, now=at(9))
    issue(engine, now=at(9))
    act(engine, 1, "call", at(9, 10))
    act(engine, 1, "call", at(9, 12))
    act(engine, 1, "finish", at(9, 15))
    stats = engine.stats_state(5)
    assert (stats.total.issued, stats.total.served) == (2, 2)
    assert stats.total.avg_wait_s == 660.0
    assert stats.per_window["1"].served == 2
    assert stats.per_service["invoice"].issued == 0


def test_the_kth_of_the_day_and_the_open_tickets_is_the_kth_of_both_merged() -> None:
    """The p90 is read off the day's sorted waits and the open tickets' without merging
    them (the stats stay as cheap at the 20,000th ticket as at the first): ties, empty
    sides and every rank against the obvious merge."""
    rng = random.Random(7)
    for _ in range(400):
        a = sorted(
            rng.choice([rng.randint(0, 9), rng.random() * 10]) for _ in range(rng.randint(0, 12))
        )
        b = sorted(rng.randint(0, 9) * 1.0 for _ in range(rng.randint(0, 5)))
        for k in range(len(a) + len(b)):
            assert _kth(a, b, k) == sorted(a + b)[k], (a, b, k)


def test_stats_agree_with_each_group_counted_on_its_own(engine: Engine) -> None:
    """The one-pass stats against KPIs computed the obvious way, group by group, over a
    morning with calls, starts, finishes, skips and a transfer: asked as it goes (the
    running tallies take in the tickets finished since the last time), and at its end."""
    rng = random.Random(4)
    services = ["tax-filing", "invoice", "green"]

    def kpi(tickets: list[Any]) -> m.Kpi:
        waits = sorted(t.wait_s for t in tickets if t.wait_s is not None)
        took = [t.service_s for t in tickets if t.service_s is not None]
        return m.Kpi(
            issued=len(tickets),
            served=sum(t.state is TicketState.DONE for t in tickets),
            no_show=sum(t.state is TicketState.NO_SHOW for t in tickets),
            avg_wait_s=round(sum(waits) / len(waits), 1) if waits else None,
            p90_wait_s=round(waits[min(len(waits) - 1, int(0.9 * len(waits)))], 1)
            if waits
            else None,
            avg_service_s=round(sum(took) / len(took), 1) if took else None,
        )

    def agree() -> m.StatsState:
        stats = engine.stats_state(9)
        assert stats.total == kpi(engine.tickets)
        for c in services:
            assert stats.per_service[c] == kpi([t for t in engine.tickets if t.service == c])
        for n in engine.windows:
            assert stats.per_window[str(n)] == kpi([t for t in engine.tickets if t.window == n])
        return stats

    for k in range(60):
        issue(engine, rng.choice(services), now=at(9, k // 2, (k % 2) * 30))
    for k in range(80):
        w = rng.choice([1, 2, 3, 4])
        action = rng.choice(["call", "call", "start", "finish", "skip"])
        act(engine, w, action, at(10, k // 2, (k % 2) * 30))
        if k % 7 == 6:
            agree()
    act(engine, 1, "call", at(11))
    act(engine, 1, "transfer", at(11, 1), to_service="invoice")
    stats = agree()
    assert stats.total.served > 10
    assert stats.total.no_show > 0


def test_numbers_run_out_at_the_width(engine: Engine) -> None:
    engine.services["invoice"] = engine.services["invoice"].model_copy(
        update={"width": 2, "daily_cap": None}
    )
    outs = [issue(engine, "invoice") for _ in range(100)]
    assert outs[-2].ticket.number == "B99"  # type: ignore[union-attr]
    assert code(outs[-1]) == "numbers_exhausted"
    assert (
        code(engine.apply(m.LeaseRequest(kind="lease", service="invoice", size=1), at(9), "pi-d1"))
        == "numbers_exhausted"
    )


def lease(e: Engine, service: str, size: int, source: str = "pi-d1") -> tuple[int, int]:
    out = e.apply(m.LeaseRequest(kind="lease", service=service, size=size), at(9), source)
    assert out.ok
    assert out.lease is not None
    return out.lease


def offline(
    e: Engine, number: str, when: float, source: str = "pi-d1", service: str = "tax-filing"
) -> Outcome:
    req = m.IssueRequest(
        kind="issue", service=service, offline=m.OfflineIssue(number=number, issued_at=_utc(when))
    )
    return e.apply(req, at(11), source)


def test_leased_blocks_come_from_the_top_and_are_accepted_offline_with_their_time(
    engine: Engine,
) -> None:
    issue(engine)
    assert lease(engine, "tax-filing", 10) == (990, 999)
    assert lease(engine, "tax-filing", 5, source="pi-d2") == (985, 989)
    assert issue(engine).ticket.number == "A002"  # type: ignore[union-attr]
    replayed = offline(engine, "A990", at(9, 30))
    assert replayed.ok
    assert replayed.ticket is not None
    assert replayed.ticket.issued_at == at(9, 30)
    assert replayed.ticket.offline
    assert code(offline(engine, "A990", at(9, 31))) == "number_used"
    assert code(offline(engine, "A002", at(9, 31))) == "not_leased"
    assert code(offline(engine, "A991", at(9, 31), source="pi-d2")) == "not_leased"
    assert code(offline(engine, "B991", at(9, 31))) == "not_leased"


def test_an_offline_print_time_is_held_between_the_opening_and_its_replay(
    engine: Engine,
) -> None:
    """Found attacking with a dispenser's password: printed "0001-01-01" a ticket headed
    its queue and the day's average wait read 16 billion seconds; printed "9999-12-31" it
    would never be reached. Its place is now between today's opening and its arrival."""
    lease(engine, "tax-filing", 10)
    assert engine.day is not None
    opening = dt.datetime.combine(
        engine.day, engine.cfg.hall.open_hours[0][0], engine.tz
    ).timestamp()
    ancient = offline(engine, "A990", dt.datetime(1, 1, 1, tzinfo=dt.UTC).timestamp())
    assert ancient.ticket is not None
    assert ancient.ticket.issued_at == opening
    future = offline(engine, "A991", at(23, 59))  # replayed at 11:00 (see offline())
    assert future.ticket is not None
    assert future.ticket.issued_at == at(11)
    fair = offline(engine, "A992", at(10, 15))
    assert fair.ticket is not None
    assert fair.ticket.issued_at == at(10, 15)


def test_a_ticket_issued_offline_is_called_in_its_issue_time_order(engine: Engine) -> None:
    """A dispenser cut off at 9:30 prints A990 from its lease; others keep issuing online;
    replayed at 11:00, A990 is still called before the tickets issued after 9:30."""
    lease(engine, "tax-filing", 10)
    issue(engine, "tax-filing", now=at(9, 20))  # A001
    issue(engine, "tax-filing", now=at(9, 40))  # A002
    issue(engine, "tax-filing", now=at(10, 50))  # A003
    replayed = offline(engine, "A990", at(9, 30))
    assert replayed.ok
    assert replayed.info is not None
    assert replayed.info.people_ahead == 1
    order = [called(act(engine, 3, "call", now=at(11, 5 + k))) for k in range(4)]
    assert order == ["A001", "A990", "A002", "A003"]


def test_online_numbers_stop_below_the_leased_blocks(engine: Engine) -> None:
    engine.services["invoice"] = engine.services["invoice"].model_copy(
        update={"width": 2, "daily_cap": None}
    )
    assert lease(engine, "invoice", 50) == (50, 99)
    assert lease(engine, "invoice", 40, source="pi-d2") == (10, 49)
    outs = [issue(engine, "invoice") for _ in range(10)]
    assert outs[-2].ticket.number == "B09"  # type: ignore[union-attr]
    assert code(outs[-1]) == "numbers_exhausted"
    assert (
        code(engine.apply(m.LeaseRequest(kind="lease", service="invoice", size=1), at(9), "pi-d1"))
        == "numbers_exhausted"
    )


def test_one_dispenser_cannot_reserve_a_service_s_numbers(engine: Engine) -> None:
    """With one dispenser's password (or a dispenser asking in a loop) two leases of 500
    took all of A001-A999, and nobody could take a ticket for the service all day. A
    block is at most edge.lease_size (50), and a dispenser holds at most two blocks and
    its low water (10) unused."""
    asked = [
        engine.apply(m.LeaseRequest(kind="lease", service="tax-filing", size=500), at(9), "pi-d1")
        for _ in range(20)
    ]
    granted = [o.lease for o in asked if o.ok]
    assert granted == [(950, 999), (900, 949)], "clamped to the lease size; two blocks"
    assert {code(o) for o in asked if not o.ok} == {"lease_not_needed"}
    assert "still holds 100 unused" in asked[-1].error.message  # type: ignore[union-attr]
    assert issue(engine).ticket.number == "A001"  # type: ignore[union-attr]
    # the other dispenser is not held back by the first one's blocks
    assert lease(engine, "tax-filing", 50, source="pi-d2") == (850, 899)
    # offline tickets replayed from the blocks make room again, as a real top-up needs
    for n in range(900, 945):
        assert offline(engine, f"A{n}", at(9, 30)).ok
    assert lease(engine, "tax-filing", 50) == (800, 849)
    assert (
        code(
            engine.apply(
                m.LeaseRequest(kind="lease", service="tax-filing", size=50), at(9), "pi-d1"
            )
        )
        == "lease_not_needed"
    )


def test_offline_issues_stand_even_outside_hours_or_past_the_cap(engine: Engine) -> None:
    first, _ = lease(engine, "invoice", 3)
    for _ in range(5):
        issue(engine, "invoice")
    assert code(issue(engine, "invoice")) == "daily_cap_reached"
    assert offline(engine, f"B{first:03d}", at(18, 30), service="invoice").ok


def test_leases_end_with_the_day(engine: Engine) -> None:
    lease(engine, "tax-filing", 5)
    engine.roll_over(at(3, 1, day=31))
    assert code(offline(engine, "A999", at(9, day=31))) == "not_leased"


def test_a_dispenser_voids_a_ticket_it_could_not_print(engine: Engine) -> None:
    issued = engine.apply(m.IssueRequest(kind="issue", service="invoice"), at(9), "pi-d1")
    number = issued.ticket.number  # type: ignore[union-attr]
    void = m.VoidRequest(kind="void", number=number, reason="paper out")
    assert code(engine.apply(void, at(9), "pi-d2")) == "not_your_ticket"
    out = engine.apply(void, at(9), "pi-d1")
    assert out.ok
    assert engine.by_number[number].state is TicketState.VOIDED
    assert engine.core.waiting(engine.service_idx["invoice"]) == 0
    assert code(engine.apply(void, at(9), "pi-d1")) == "ticket_not_waiting"


def test_the_queue_next_list_is_the_order_the_dispatcher_calls(engine: Engine) -> None:
    """After an offline replay and with a green ticket and an overdue one, the retained
    queue's "next" list (dispensers, dashboard, ticket pages) is exactly the order in which
    a window serving the service calls: one function decides both."""
    lease(engine, "tax-filing", 10)
    issue(engine, "tax-filing", now=at(9, 20))  # A001
    issue(engine, "tax-filing", now=at(9, 40))  # A002
    issue(engine, "tax-filing", now=at(10, 50), priority=Priority.ASSISTED)  # A003
    offline(engine, "A990", at(9, 30))  # arrives last
    issue(engine, "tax-filing", now=at(10, 55))  # A004
    now = at(11, 5)
    shown = engine.queue_state("tax-filing", 1, now).next
    assert shown[:2] == ["A003", "A001"]
    assert shown.index("A990") < shown.index("A002")
    called_order = [called(act(engine, 3, "call", now=now)) for _ in shown]
    assert called_order == shown


def test_the_oldest_waiting_ticket_is_kept_as_the_queue_changes(engine: Engine) -> None:
    """The queue views' oldest waiting ticket (what each queue publish shows) and the day's
    KPIs are kept as tickets come and go, not found by a pass over the day: they must still
    be what a pass over the day finds, after any mix of operations, and after a restore."""
    rng = random.Random(5)
    services = ["tax-filing", "invoice"]

    def scan(service: str) -> float | None:
        ages = [
            t.issued_at
            for t in engine.tickets
            if t.service == service and t.state is TicketState.WAITING and t.directed is None
        ]
        return min(ages, default=None)

    numbers: list[str] = []
    for k in range(300):
        now = at(9) + k
        roll = rng.random()
        if roll < 0.4:
            out = issue(engine, rng.choice(services), now=now)
            if out.ok and out.ticket is not None:
                numbers.append(out.ticket.number)
        elif roll < 0.6:
            act(engine, rng.choice([1, 3, 4]), "call", now)
        elif roll < 0.7:
            act(engine, 1, "skip", now)
        elif roll < 0.8 and numbers:
            act(engine, 1, "reinstate", now, ticket=rng.choice(numbers))
        elif roll < 0.9 and numbers:
            act(engine, 1, "transfer", now, ticket=rng.choice(numbers), to_service="invoice")
        elif numbers:
            act(engine, 4, "cancel", now, ticket=rng.choice(numbers))
        if k % 50 == 0:
            engine.tickets = list(engine.tickets)  # what a restored checkpoint looks like
        for service in services:
            first = engine.oldest_waiting(service)
            assert (first.issued_at if first else None) == scan(service), (k, service)
        if k % 10 == 0:  # the KPIs, folded as tickets finished, equal one pass over the day
            kept = engine.stats_state(1).model_dump(exclude={"id", "ts"})
            engine._kpi_for = None
            assert engine.stats_state(1).model_dump(exclude={"id", "ts"}) == kept, k


def test_the_business_day_worked_out_once_a_second_changes_exactly_at_the_reset(
    engine: Engine,
) -> None:
    """Asked for every command, the day is worked out once a second: every instant around
    the daily reset still gets the hall's own answer, in any order."""
    import datetime as dt

    hall = engine.cfg.hall
    day = hall.business_day(at(10))
    reset = dt.datetime.combine(day + dt.timedelta(days=1), hall.reset_time, hall.tzinfo)
    edge = reset.timestamp()
    for ts in (edge - 0.5, edge - 1e-4, edge, edge + 0.3, edge - 0.2, edge + 5.0, edge - 86400.5):
        assert engine.business_day(ts) == hall.business_day(ts), ts
    assert engine.business_day(edge - 1e-4) == day
    assert engine.business_day(edge) == day + dt.timedelta(days=1)


def two_site_hall() -> HallConfig:
    return parse_config(two_site_hall_text(), "two-sites.toml")


def test_a_ticket_is_called_only_to_a_window_of_the_site_it_was_issued_in(
    core_cls: type[Any],
) -> None:
    """Found by a taxpayer following tickets in the demo: the example hall has two 办税点
    (buildings), and tickets from the branch's kiosk were called to the main building's
    windows (151 of them), main-site ones to the branch (76). A queue is now kept per
    service and site: a window calls from its own building only."""
    e = Engine(two_site_hall(), core_cls)
    e.roll_over(at(8))
    branch = e.apply(m.IssueRequest(kind="issue", service="tax-filing"), at(9), "pi-d2")
    main = e.apply(m.IssueRequest(kind="issue", service="tax-filing"), at(9, 5), "pi-d1")
    assert (branch.ticket.number, main.ticket.number) == ("A001", "A002")  # type: ignore[union-attr]
    assert e.queue_state("tax-filing", 0, at(9, 6)).waiting == 2
    board = e.board_state(0)
    assert board.waiting["tax-filing"] == 2
    assert board.site_waiting["main"]["tax-filing"] == 1  # each building's board: its own
    assert board.site_waiting["branch"]["tax-filing"] == 1
    assert e.ticket_info(e.by_number["A002"], at(9, 6)).people_ahead == 0  # none ahead there
    assert called(act(e, 3, "call", now=at(9, 10))) == "A002"  # main: A001 is not its
    assert called(act(e, 4, "call", now=at(9, 10))) == "A001"  # branch
    # sent to a window in the other building, its holder walks there: called there
    later = e.apply(m.IssueRequest(kind="issue", service="tax-filing"), at(9, 11), "pi-d1")
    assert later.ok
    assert act(e, 3, "transfer", to_window=4, now=at(9, 20)).ok
    assert called(act(e, 4, "call", now=at(9, 21))) == "A002"
    assert called(act(e, 3, "call", now=at(9, 22))) == "A003"
    # a day's carried tickets keep their site
    e.settings = e.settings.model_copy(update={"carry_over": True})
    e.apply(m.IssueRequest(kind="issue", service="tax-filing"), at(17), "pi-d2")
    e.roll_over(at(8, day=31))
    assert e.tickets[0].site == e.site_idx["branch"]


def test_a_hall_of_two_sites_says_where_each_dispenser_stands() -> None:
    text = small_hall_text().replace(
        '[[windows]]\nnumber = 4\nzone = "hall-1"',
        '[[zones]]\nid = "branch-1"\nname = "分办税点"\nsite = "branch"\n\n'
        '[[windows]]\nnumber = 4\nzone = "branch-1"',
    )
    text = text.replace('role = "board"', 'role = "board"\nsite = "main"')
    with pytest.raises(
        ConfigError, match=r"agents\[1\]\.site .*this hall has 2 sites \(main, branch\)"
    ):
        parse_config(text, "two-sites.toml")
    with pytest.raises(ConfigError, match="no zone is in site 'annex'"):
        parse_config(
            text.replace('role = "dispenser"', 'role = "dispenser"\nsite = "annex"'), "x.toml"
        )
    # the branch's one window serves no green channel, which its kiosk issues
    branch = text.replace('role = "dispenser"', 'role = "dispenser"\nsite = "branch"')
    with pytest.raises(ConfigError, match="no window of site 'branch' serves green: the"):
        parse_config(branch, "x.toml")


def test_a_ticket_no_open_window_serves_is_promised_no_time(core_cls: type[Any]) -> None:
    """Found by a supervisor: with the branch's windows for a service paused, a branch
    ticket at the head of its queue read "下一位就是您, 1 分钟内" for 42 minutes. Where no
    open window of its site serves it, its page and the kiosk say so instead of a time."""
    e = Engine(two_site_hall(), core_cls)
    e.roll_over(at(8))
    for n in e.windows:
        assert act(e, n, "open", now=at(8, 30)).ok
    branch = e.apply(m.IssueRequest(kind="issue", service="tax-filing"), at(9), "pi-d2").ticket
    assert branch is not None
    assert act(e, 4, "pause", now=at(9, 1)).ok  # the branch's one window
    wait = e.ticket_info(branch, at(9, 20)).wait
    assert wait is not None
    assert wait.basis == "no_window"
    assert wait.zh() == "暂无窗口办理, 开窗后叫号"
    assert wait.p50_min == pytest.approx(20.0)  # how long its queue has stood still
    # the main building still serves it: a ticket issued now has a time there
    assert e.queue_state("tax-filing", 0, at(9, 20)).wait.basis != "no_window"  # type: ignore[union-attr]
    assert act(e, 4, "resume", now=at(9, 21)).ok
    wait = e.ticket_info(branch, at(9, 21)).wait
    assert wait is not None
    assert wait.basis != "no_window"


def test_a_window_closed_with_someone_at_the_counter_closes_once_they_are_served(
    engine: Engine,
) -> None:
    """At the end of a shift the desk refused 关窗 while a taxpayer was at the counter: the
    supervisor had to pause, wait and come back. Now the window pauses (nobody new is
    called) and closes itself when that ticket is done or moved on."""
    for n in engine.windows:
        act(engine, n, "open", now=at(8, 30))
    issue(engine)
    issue(engine)
    assert called(act(engine, 1, "call")) == "A001"
    closing = act(engine, 1, "close", now=at(10, 1))
    assert closing.ok
    w = engine.windows[1]
    assert (w.status, w.closing) == (WindowStatus.PAUSED, True)
    assert engine.window_state(1, 0).closing
    assert act(engine, 1, "call", now=at(10, 2)).error.code == "window_paused"  # type: ignore[union-attr]
    done = act(engine, 1, "finish", now=at(10, 9))
    assert done.ok
    assert (w.status, w.closing) == (WindowStatus.CLOSED, False)
    assert 1 in done.windows
    # resumed before it is free: open again, nothing left to close
    assert act(engine, 3, "call", now=at(10, 10)).ok
    assert act(engine, 3, "close", now=at(10, 11)).ok
    assert act(engine, 3, "resume", now=at(10, 12)).ok
    assert act(engine, 3, "finish", now=at(10, 20)).ok
    assert engine.windows[3].status is WindowStatus.OPEN
