"""A Pi whose SD card went read-only (its commonest death): the agent still starts and
serves online, says so in its health, and issues no number offline it could hand out
twice. Before, every start failed in SQLite ("unable to open database file") and systemd
restarted it forever."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.leases import LeaseBook, NotDurable
from hallq.session_store import SessionStore
from hallq.sqlite import open_db_or_copy

from .conftest import Mosquitto, until
from .coordinated import FakeClock, running
from .halls import small_hall
from .test_edge_agents import agent

SCHEMA = "CREATE TABLE IF NOT EXISTS t (x INTEGER);"


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only as a failing card is: a read-only bind mount where this runs as
    root (CI), which no permission bit would stop; else no write permission."""
    if os.geteuid() == 0:
        bind = subprocess.run(
            ["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True
        )
        if bind.returncode != 0:  # root without CAP_SYS_ADMIN (a container)
            pytest.skip(f"no bind mount here: {bind.stderr.strip()}")
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_a_file_that_cannot_be_written_is_carried_on_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "state" / "x.sqlite"
    db, why = open_db_or_copy(path, SCHEMA)
    assert why is None
    db.execute("INSERT INTO t VALUES (1)")
    db.close()
    with read_only(path.parent):
        db, why = open_db_or_copy(path, SCHEMA)
        assert why is not None
        assert str(path) in why
        if os.geteuid() == 0:
            assert "read-only" in why
        assert db.execute("SELECT x FROM t").fetchall() == [(1,)], "what the file held"
        db.execute("INSERT INTO t VALUES (2)")  # in memory
        db.close()
    with contextlib.closing(sqlite3.connect(path)) as back:
        assert back.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_lease_book_gone_read_only_hands_out_no_number_and_keeps_its_replays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While the agent runs the card goes read-only (the kernel's errors=remount-ro; an
    open file's writes fail then too, which no bind mount reproduces, hence SQLite's own
    read-only switch here), then the agent restarts on it."""
    book = LeaseBook(tmp_path / "state" / "leases.sqlite")
    book.add_block("2026-12-07", "A", 1, 5)
    assert book.take("2026-12-07", "A") == 1
    book.hold_replay("r1", "2026-12-07", '{"n":1}')
    book._db.execute("PRAGMA query_only = 1")
    book.hold_replay("r2", "2026-12-07", '{"n":2}')  # fails on disk: carried on in memory
    assert book.unwritable is not None
    with pytest.raises(NotDurable):
        book.take("2026-12-07", "A")
    assert book.unanswered() == ['{"n":1}', '{"n":2}'], "nothing held is lost"
    book.replayed("r1")
    assert book.unanswered() == ['{"n":2}']
    book.close()
    caplog.set_level(logging.ERROR, "hallq.edge")
    with read_only(tmp_path / "state"):
        again = LeaseBook(tmp_path / "state" / "leases.sqlite")  # a restart on the bad card
        with pytest.raises(NotDurable):
            again.take("2026-12-07", "A")
        assert again.unanswered() == ['{"n":1}'], "what the file held (r2 lived in memory)"
        assert "No ticket is issued offline" in caplog.text
        again.close()


@pytest.mark.broker
async def test_a_dispenser_on_a_read_only_card_serves_online_and_says_so(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    cfg = small_hall(mosquitto.url, str(state))
    clock = FakeClock()
    async with running(cfg, tmp_path / "log.sqlite", clock) as coordinator:
        async with agent(cfg, "pi-d1", tmp_path, clock):  # a day on a good card
            await until(lambda: ("pi-d1", "invoice") in coordinator.engine.leases, 15)
        with read_only(state):
            async with agent(cfg, "pi-d1", tmp_path, clock) as (devices, printers):
                keypad_bus, keypad = devices["keys-1"]
                printer = printers["printer-1"]
                keypad_bus.press(keypad, 2)  # invoice, online
                await printer.wait_for(lambda: len(printer.tickets) == 1, timeout=15)
                assert "B001" in printer.tickets[0].text

                def faults() -> dict[str, str]:
                    seen = {d.client: d for d in coordinator.devices.all()}.get("pi-d1")
                    health = seen.health if seen is not None else None
                    components = health.components if health is not None else []
                    return {c.name: c.status for c in components if not c.ok}

                await until(lambda: faults().get("state") == "not_writable", 15)
                assert faults().get("leases") == "not_writable"

                mosquitto.stop()  # offline: no number it could hand out twice
                keypad_bus.press(keypad, 2)
                await printer.wait_for(lambda: len(printer.tickets) == 2, timeout=30)
                assert "本机暂停取号" in printer.tickets[1].text
                mosquitto.start()
    assert [t.number for t in coordinator.engine.tickets] == ["B001"]


def test_a_session_store_gone_read_only_carries_on_in_memory(tmp_path: Path) -> None:
    """The outbox and the boot count, once the card stops taking writes mid-run: what is
    queued is still sent (an offline ticket's replay among it), the count goes on."""
    store = SessionStore(tmp_path / "session.sqlite")
    assert store.next_boot() == 1
    store.push("t/1", b"one", 1, False)
    store._db.execute("PRAGMA query_only = 1")
    store.push("t/2", b"two", 1, False)  # fails on disk: carried on in memory
    assert store.unwritable is not None
    assert store.next_boot() == 2
    assert [(i.topic, i.payload) for i in store.head()] == [("t/1", b"one"), ("t/2", b"two")]
    store.remove(store.head()[0].seq)
    assert len(store) == 1
    store.close()
