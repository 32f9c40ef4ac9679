"""The desk's logic without HTTP: alerts deduplicated and acknowledged, past days' figures
as they stood at the same hour, advice adopted once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from coordinator.web.desk import AlertBook
from coordinator.web.figures import day_figures
from hallq.messages import TicketState

from .halls import TZ, at


def _alert(kind: str, **about: object) -> dict[str, object]:
    return {"severity": "warning", "kind": kind, "message": "m", **about}


def test_repeated_alerts_are_one_row_and_an_ack_holds_until_it_happens_again() -> None:
    book = AlertBook()
    events = [
        (at(10, 5), _alert("emergency", window=3)),
        (at(10, 1), _alert("emergency", window=3)),
    ]
    rows = book.update([], events, at(10, 6))
    assert [(r.key, r.count) for r in rows] == [("emergency:3", 2)]
    assert book.ack("emergency:3", "王班长", at(10, 7)) is not None
    rows = book.update([], events, at(10, 8))
    assert rows[0].acked_by == "王班长"
    rows = book.update([], [(at(10, 9), _alert("emergency", window=3)), *events], at(10, 9))
    assert rows[0].acked_by is None  # it happened again: back to be worked
    assert rows[0].count == 3


def test_an_alert_nobody_worked_stays_when_a_flood_pushes_its_events_out() -> None:
    """Found attacking a hall: one window Pi's login sent 210 emergencies, the
    coordinator's recent list (200) lost the 取号过快 alert naming the dispenser in other
    hands, and the desk with it, 停用 and all. An acknowledged one may go."""
    book = AlertBook()
    burst = (at(10), _alert("issue_burst", client="pi-d3"))
    handled = (at(10), _alert("emergency", window=1))
    book.update([], [burst, handled], at(10))
    assert book.ack("emergency:1", "王班长", at(10, 1)) is not None
    flood = [(at(10, 2), _alert("emergency", window=2))] * 200  # the recent list, full
    rows = book.update([], flood, at(10, 2))
    assert {r.key: r.count for r in rows} == {"emergency:2": 200, "issue_burst:pi-d3": 1}


def test_a_standing_alert_stays_acknowledged_until_it_clears_and_comes_back() -> None:
    book = AlertBook()
    over = _alert("wait_over_target", service="tax-filing")
    book.update([over], [], at(10))
    book.ack("wait_over_target:tax-filing", "李", at(10, 1))
    assert book.update([over], [], at(10, 2))[0].acked_by == "李"
    assert book.update([], [], at(10, 3)) == []
    assert book.update([over], [], at(10, 4))[0].acked_by is None
    assert book.ack("nothing:here", "李", at(10, 5)) is None


def test_a_past_day_counts_only_what_had_happened_by_the_same_hour() -> None:
    def ticket(issued: float, called: float | None, done: float | None) -> SimpleNamespace:
        state = TicketState.DONE if done else TicketState.WAITING
        return SimpleNamespace(
            service="tax-filing",
            state=state,
            window=1 if called else None,
            issued_at=issued,
            called_at=called,
            started_at=None,
            finished_at=done,
            rating=4 if done else None,
        )

    day = dt.date(2026, 11, 30)
    tickets = [
        ticket(at(9), at(9, 10), at(9, 15)),
        ticket(at(9, 30), at(10, 30), at(10, 40)),
        ticket(at(11), None, None),
    ]
    voided = ticket(at(9, 40), None, None)  # a stolen kiosk's: nobody held it
    voided.state = TicketState.VOIDED
    tickets.append(voided)
    whole = day_figures(day, tickets, TZ)
    assert (whole.issued, whole.served, whole.rated) == (3, 2, 2)  # as the hall page says
    by_ten = day_figures(day, tickets, TZ, cutoff=at(10))
    assert (by_ten.issued, by_ten.served, by_ten.rated) == (2, 1, 1)
    assert by_ten.avg_wait_s == 600.0  # the second ticket had not been called by 10:00
    assert whole.waits_by_hour["tax-filing"][10] == (1, 3600.0)


async def test_a_past_day_is_replayed_once_and_kept_beside_the_log(tmp_path: Path) -> None:
    """Replayed in a worker process, then read from ``<log>-days.sqlite``: a restarted
    coordinator does not replay it again, and the day still open is never kept."""
    from coordinator.dispatch import load_core
    from coordinator.web.figures import FigureCache

    from .test_web_browser import _seed_past_days
    from .test_web_helpers import web_hall

    cfg = web_hall("mqtt://127.0.0.1:1", str(tmp_path / "state"))
    log = tmp_path / "log.sqlite"
    _seed_past_days(cfg, log)
    ready: list[dt.date] = []
    today = dt.date(2026, 11, 30)
    first = FigureCache(cfg, log, load_core("pure"), today=lambda: today, on_ready=ready.append)
    try:
        figures = await first.figures(dt.date(2026, 11, 29))
        assert figures is not None
        assert (figures.issued, figures.served, figures.rating) == (4, 3, 4.0)
        assert await first.figures(dt.date(2026, 11, 28)) is None  # not in the log
    finally:
        first.close()
    assert ready == [dt.date(2026, 11, 29)]
    again = FigureCache(cfg, log, load_core("pure"), today=lambda: today)
    try:
        kept = await again.get(dt.date(2026, 11, 29))
        assert again._pool is None  # from the store, no replay
        assert kept is not None
        assert kept[0].identity is not None  # what the invitations read
    finally:
        again.close()


def test_a_branch_windows_pause_is_weighed_by_its_own_buildings_queue(
    core_cls: type[Any],
) -> None:
    """Pausing a branch window said "申报纳税 还有 37 个窗口" and "110 人转到其他窗口",
    the whole hall's figures, where the branch had 8 windows (found by a supervisor)."""
    from coordinator.engine import Engine
    from coordinator.web.desk import impact
    from hallq import messages as m
    from hallq.config import parse_config

    from .halls import two_site_hall_text

    e = Engine(parse_config(two_site_hall_text(), "two-sites.toml"), core_cls)
    e.roll_over(at(8))
    for n in e.windows:
        e.apply(m.WindowAction(window=n, action="open"), at(8, 30))
    for source in ("pi-d2", "pi-d2", "pi-d1", "pi-d1", "pi-d1"):
        e.apply(m.IssueRequest(kind="issue", service="tax-filing"), at(9), source)
    said = impact(e, 4, "pause", now=at(9, 1))  # the branch's one window
    assert said.text == "暂停后 2 人转到其他窗口; 申报纳税、发票办理将无窗口办理"
    assert said.unserved == ["申报纳税", "发票办理"]  # (the branch's one window for both)
    said = impact(e, 3, "pause", now=at(9, 1))  # in the main building
    assert said.text.startswith("暂停后 3 人转到其他窗口"), said.text
