"""One writer per event log: a second coordinator of the same hall stops at its start.

The log numbers its entries in memory and answers "is this command id new?" from memory,
as its one writer; two writers on one file would number entries over each other and each
serve the hall from its own state.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.eventlog import EventLog, LogInUse

from .halls import small_hall_text

ROOT = Path(__file__).resolve().parent.parent

HOLDER = """
import sys
from pathlib import Path
from coordinator.eventlog import EventLog

log = EventLog(Path(sys.argv[1]))
print("open", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def held_by_another_process(path: Path) -> Iterator[int]:
    """Another process with the log open for writing, as a running coordinator; killed
    at the end as SIGKILL or the OOM killer would (the kernel lets the lock go). Yields
    its pid."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "open"
            yield holder.pid
        finally:
            holder.kill()
            holder.wait(30)


def test_a_second_writer_of_a_log_is_stopped_until_the_first_is_gone(tmp_path: Path) -> None:
    """From the first start of a new hall on: its state dir does not exist yet (the first
    coordinator of a fresh hall once ran without the lock, and the second took it)."""
    path = tmp_path / "state" / "events.sqlite"
    with held_by_another_process(path) as pid:
        with pytest.raises(LogInUse, match=rf"written by another process \(pid {pid}\)"):
            EventLog(path)
        reader = EventLog.reader(path)  # readers beside the writer: the shipper, status
        assert reader.last_seq() == 0
        reader.close()
    log = EventLog(path)
    with pytest.raises(LogInUse, match="open for writing in this process already"):
        EventLog(path)
    log.close()
    EventLog(path).close()


def test_a_second_coordinator_says_why_it_will_not_start(tmp_path: Path) -> None:
    """As the operator who starts one by hand beside the service sees it: one line naming
    the log and the process that has it, not a traceback, and nothing written."""
    path = tmp_path / "events.sqlite"
    config = tmp_path / "hall.toml"
    config.write_text(small_hall_text("mqtt://127.0.0.1:9", str(tmp_path / "state")))
    log = EventLog(path)
    try:
        command = ["coordinator", "--config", str(config), "--log", str(path)]
        run = subprocess.run(
            [sys.executable, "-m", "hallqctl.cli", *command],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert run.returncode == 1
        assert f"event log {path} is written by another process (pid {os.getpid()})" in run.stderr
        assert "Traceback" not in run.stderr
        assert log.last_seq() == 0
    finally:
        log.close()


def test_a_log_that_cannot_be_opened_leaves_no_lock_behind(tmp_path: Path) -> None:
    """A file that is no database: the open fails, and says so again the next time, not
    that the log is taken (by the attempt before, in this same process)."""
    path = tmp_path / "events.sqlite"
    path.write_bytes(b"not a database, " * 512)
    for _ in range(2):
        with pytest.raises(sqlite3.DatabaseError, match="not a database"):
            EventLog(path)


def test_a_child_forked_while_the_log_is_open_does_not_keep_it_from_the_next_writer(
    tmp_path: Path,
) -> None:
    """The coordinator forks (checkpoints, simulated days) with the log open; a child that
    has not yet closed what it inherited must not hold the log against a restart."""
    path = tmp_path / "events.sqlite"
    log = EventLog(path)
    child = os.fork()
    if child == 0:  # holds every descriptor it inherited until it is killed
        time.sleep(60)
        os._exit(0)
    try:
        log.close()
        EventLog(path).close()
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_doctor_says_whether_a_coordinator_writes_the_log(tmp_path: Path) -> None:
    """On the coordinator's machine: the process that holds the log, from the kernel's
    locks; once it is gone, the pid it left in the lock file is not taken for a writer."""
    from hallqctl.doctor import Result, check_event_log

    path = tmp_path / "state" / "events.sqlite"
    assert check_event_log(path) is None, "no log here: not the coordinator's machine"
    with held_by_another_process(path) as pid:
        running = check_event_log(path)
        assert running is not None
        assert running.result is Result.OK
        assert f"pid {pid}" in running.detail
    assert Path(f"{path}.lock").read_text().strip() == str(pid)  # left behind
    stopped = check_event_log(path)
    assert stopped is not None
    assert stopped.result is Result.WARN
    assert "no coordinator writes it now" in stopped.detail
    assert "systemctl start hallq-coordinator" in stopped.fix


def test_a_log_on_a_read_only_disk_stops_the_coordinator_with_the_reason(tmp_path: Path) -> None:
    """Not SQLite's "unable to open database file" in a traceback, at every restart."""
    from .test_read_only_card import read_only

    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "hall.toml"
    config.write_text(small_hall_text("mqtt://127.0.0.1:9", str(state)))
    with read_only(state):
        run = subprocess.run(
            [sys.executable, "-m", "hallqctl.cli", "coordinator", "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    assert run.returncode == 1
    assert "event log cannot be opened for writing" in run.stderr
    assert str(state) in run.stderr
    if os.geteuid() == 0:
        assert "read-only" in run.stderr
    assert "Traceback" not in run.stderr
