from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest

from hallq import messages as m
from hallq.aio import backoff_delay
from hallq.retained import PresenceBook, RevisionGate
from hallq.session_store import SessionStore


def test_outbox_keeps_order_and_survives_reopening(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "s.sqlite", max_items=100)
    for i in range(5):
        store.push(f"t/{i}", b"%d" % i, 1, i == 4)
    store.remove(store.head()[0].seq)
    store.close()
    again = SessionStore(tmp_path / "s.sqlite", max_items=100)
    items = again.head()
    assert [i.topic for i in items] == ["t/1", "t/2", "t/3", "t/4"]
    assert [i.retain for i in items] == [False, False, False, True]
    assert len(again) == 4


def test_full_outbox_drops_the_oldest_with_a_counted_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SessionStore(tmp_path / "s.sqlite", max_items=3)
    with caplog.at_level(logging.WARNING, "hallq.outbox"):
        for i in range(5):
            store.push("hallq/v1/liwan/dispenser/d1/req", b"%d" % i, 1, False)
    assert [i.payload for i in store.head()] == [b"2", b"3", b"4"]
    assert store.dropped == 2
    assert "2 dropped so far" in caplog.records[-1].getMessage()
    assert "hallq/v1/liwan/dispenser/d1/req" in caplog.records[-1].getMessage()


def test_boot_counter_rises_across_opens(tmp_path: Path) -> None:
    first = SessionStore(tmp_path / "s.sqlite")
    a, b = first.next_boot(), first.next_boot()
    first.close()
    assert SessionStore(tmp_path / "s.sqlite").next_boot() > b > a


def test_revision_gate_applies_only_newer_revisions() -> None:
    gate = RevisionGate()
    assert [gate.accept("t", r) for r in (3, 2, 3, 4)] == [True, False, False, True]
    assert gate.accept("other", 1)


def test_revision_gate_follows_a_publisher_that_counts_again_but_not_a_replay() -> None:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    gate = RevisionGate()
    assert gate.accept("board", 5000, t0)
    assert not gate.accept("board", 4999, t0 - timedelta(seconds=1)), "a late message"
    assert not gate.accept("board", 5000, t0 + timedelta(seconds=1)), "the same revision"
    assert gate.accept("board", 3, t0 + timedelta(minutes=5)), "a new log, made later"
    assert not gate.accept("board", 2, t0 + timedelta(minutes=4)), "the new log's, late"
    assert gate.accept("board", 4), "and on from there"


def test_revision_gate_is_not_frozen_by_a_message_stamped_in_the_future() -> None:
    """Found by an attacker with one device's password: its health at revision 2^62,
    stamped in 9999, kept the real agent's health out until the coordinator restarted."""
    gate = RevisionGate()
    assert gate.accept("health", (7 << 32) | 3, datetime.now(UTC) - timedelta(seconds=5))
    assert gate.accept("health", 2**62, datetime(9999, 1, 1, tzinfo=UTC))
    assert gate.accept("health", (7 << 32) | 4, datetime.now(UTC) + timedelta(seconds=1))


def test_presence_book_ignores_a_will_from_an_earlier_boot() -> None:
    book = PresenceBook()

    def p(state: Literal["online", "offline"], boot: int) -> m.Presence:
        return m.Presence(state=state, boot=boot, role="window", client="w1")

    assert book.online("window", "w1") is None
    assert book.accept(p("online", 5))
    assert not book.accept(p("offline", 4))
    assert book.online("window", "w1") is True
    assert book.accept(p("offline", 5))
    assert book.online("window", "w1") is False


def test_presence_book_takes_a_birth_that_counts_its_boots_again() -> None:
    """A device on a new SD card starts again from boot 1: its birth is live, not stale,
    and must not leave it looking offline until its count passes the old one."""
    book = PresenceBook()
    old = m.Presence(state="offline", boot=57, role="window", client="w1")
    assert book.accept(old)
    assert book.accept(m.Presence(state="online", boot=1, role="window", client="w1"))
    assert book.online("window", "w1") is True
    assert not book.accept(m.Presence(state="offline", boot=0, role="window", client="w1"))
    assert book.online("window", "w1") is True


def test_backoff_grows_is_capped_and_jittered() -> None:
    delays = [backoff_delay(n, 0.25, 30.0) for n in range(12)]
    assert 0.125 <= delays[0] <= 0.25
    assert all(d <= 30.0 for d in delays)
    assert delays[-1] >= 15.0
    assert len({backoff_delay(8, 0.25, 30.0) for _ in range(20)}) > 1
