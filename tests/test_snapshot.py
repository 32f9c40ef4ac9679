"""The coordinator's checkpoint is made in a forked child (coordinator.snapshot): the same
bytes, the loop free meanwhile, and a child that cannot hurt the service it came from."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coordinator.dispatch import load_core
from coordinator.eventlog import EventLog
from coordinator.hallqueue import HallQueue
from coordinator.snapshot import CHILD_NICE, ChildFailed, call_forked, fork_bytes
from hallq import messages as m
from hallq.config import load_config
from hallq.examples import example_hall


def _released(gate: Path) -> bytes:
    """In the child: wait until the test writes ``gate`` (the child holds none of the
    test's descriptors to wait on), at most a minute."""
    for _ in range(6000):
        if gate.exists():
            return gate.read_bytes()
        time.sleep(0.01)
    raise TimeoutError(gate)


def _release(gate: Path, data: bytes) -> None:
    tmp = gate.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.rename(gate)


def test_the_child_hands_back_exactly_the_bytes_made_in_the_process(tmp_path: Path) -> None:
    """A real day's checkpoint, longer than a pipe buffer (the child waits on the parent
    reading)."""
    cfg = load_config(example_hall())
    q = HallQueue(cfg, EventLog(tmp_path / "events.sqlite"), load_core("auto"))
    dispenser = next(a.id for a in cfg.agents if a.role == "dispenser")
    day = cfg.hall.business_day(time.time())
    now = dt.datetime.combine(day, dt.time(9, 0), tzinfo=cfg.hall.tzinfo).timestamp()
    for k in range(3000):
        now += 1.0
        service = cfg.services[k % len(cfg.services)].code
        q.submit(
            "ticket", "dispenser", dispenser, m.IssueRequest(kind="issue", service=service), now
        )
    expected = q.checkpoint()
    assert len(expected) > 65536
    child = fork_bytes(q.checkpoint)
    assert child is not None
    assert child.collect() == expected
    q.log.close()


def test_the_parent_goes_on_while_the_child_works(tmp_path: Path) -> None:
    """The child cannot finish until the parent, after fork_bytes returned, lets it."""
    gate = tmp_path / "gate"
    child = fork_bytes(lambda: b"made after " + _released(gate))
    assert child is not None
    _release(gate, b"the parent")  # only reached because fork_bytes did not wait
    assert child.collect() == b"made after the parent"


def test_a_failing_child_gives_nothing_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    def make() -> bytes:
        raise RuntimeError("boom")

    child = fork_bytes(make)
    assert child is not None
    with caplog.at_level(logging.WARNING, logger="hallq.coordinator"):
        assert child.collect() is None
    assert "exit status 1" in caplog.text


def test_the_child_holds_none_of_the_parents_connections(tmp_path: Path) -> None:
    """A connection the parent closes is closed for its peer at once, however long a
    child lives: the child closed its copies of the parent's descriptors."""
    listener = socket.create_server(("127.0.0.1", 0))
    ours = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    gate = tmp_path / "gate"
    child = fork_bytes(lambda: _released(gate))
    assert child is not None
    ours.close()
    peer.settimeout(10)
    try:
        assert peer.recv(1) == b"", "the peer still sees an open connection"
    finally:
        _release(gate, b"x")
        assert child.collect() == b"x"
        for closable in (peer, listener):
            closable.close()


async def test_a_signal_to_the_child_is_not_the_services(tmp_path: Path) -> None:
    """systemd stopping the unit signals every process of it: the child dies, and the
    parent's loop, whose signal wakeup descriptor the child inherited, hears nothing."""
    loop = asyncio.get_running_loop()
    heard: list[int] = []
    loop.add_signal_handler(signal.SIGTERM, heard.append, signal.SIGTERM)
    try:
        child = fork_bytes(lambda: _released(tmp_path / "never"))
        assert child is not None
        os.kill(child.pid, signal.SIGTERM)
        assert await asyncio.to_thread(child.collect) is None
        for _ in range(5):  # anything the child wrote to the wakeup fd is there already
            await asyncio.sleep(0)
        assert heard == []
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def test_without_fork_the_caller_makes_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "fork")
    assert fork_bytes(lambda: pickle.dumps(1)) is None


def test_a_child_that_makes_nothing_in_time_is_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A child stuck for good would hold every later checkpoint back."""
    child = fork_bytes(lambda: _released(tmp_path / "never"))
    assert child is not None
    with caplog.at_level(logging.WARNING, logger="hallq.coordinator"):
        assert child.collect(timeout_s=0.2) is None
    assert "killed" in caplog.text
    assert "signal 9" in caplog.text


def _raise() -> int:
    raise ValueError("made to fail")


def test_a_forked_call_runs_in_another_process_and_brings_its_result_back() -> None:
    """The comfort index's simulated days run this way: in a child, so no thread of the
    coordinator holds the GIL for them while the loop serves."""
    made = call_forked(lambda: (os.getpid(), {"levels": [1.5, 2]}), timeout_s=30)
    assert made[0] != os.getpid()
    assert made[1] == {"levels": [1.5, 2]}


def test_a_forked_child_yields_the_cpu_to_the_service_it_came_from() -> None:
    """Its work (a wait-estimate refresh, a forecast) waits for the broker's and the
    devices' on a busy machine's other core, not the other way round."""
    assert call_forked(lambda: os.nice(0), timeout_s=30) == os.nice(0) + CHILD_NICE


def test_a_forked_call_that_raises_says_its_child_failed() -> None:
    with pytest.raises(ChildFailed, match="exit status 1"):
        call_forked(_raise, timeout_s=30)


def test_a_forked_call_stops_when_its_owner_stops(tmp_path: Path) -> None:
    """A coordinator stopping does not wait for a forecast: its child is killed."""
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(ChildFailed, match="stopped"):
        call_forked(lambda: _released(tmp_path / "never"), timeout_s=60, stop=stop)
    assert time.monotonic() - started < 10


_ORPHANING_PARENT = """
import asyncio, sys, time
from coordinator.snapshot import fork_bytes

def make():
    time.sleep(300)
    return b""

async def main():
    on_loop = fork_bytes(make)  # as a checkpoint is forked
    in_executor = await asyncio.to_thread(fork_bytes, make)  # as a forked call is
    print(on_loop.pid, in_executor.pid, flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_children_die_with_a_coordinator_killed_outright() -> None:
    """A SIGKILLed coordinator (or one the OOM killer took) leaves no child behind working
    on a checkpoint or a simulated day nobody will read; they used to run on, orphaned."""
    children: list[int] = []
    with subprocess.Popen(
        [sys.executable, "-c", _ORPHANING_PARENT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ) as parent:
        try:
            assert parent.stdout is not None
            children = [int(pid) for pid in parent.stdout.readline().split()]
            assert len(children) == 2
            assert all(_alive(pid) for pid in children)
            parent.kill()
            parent.wait(30)
            deadline = time.monotonic() + 30
            while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not [pid for pid in children if _alive(pid)]
        finally:
            parent.kill()
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
