"""The service runner's shutdown: bounded in every stage, whatever a worker thread does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


@pytest.mark.timeout(60)
def test_a_worker_thread_that_runs_on_does_not_hold_the_stop(tmp_path: Path) -> None:
    """A coordinator stopped while a worker still reads a long log (Python 3.11's
    ``shutdown_default_executor`` would wait for it without limit): the process ends within
    the stage's limit, naming the worker, and non-zero so systemd sees it."""
    script = tmp_path / "busy.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, os, signal, threading
        from hallqctl.runner import run_bounded

        async def reading() -> None:
            loop = asyncio.get_running_loop()
            loop.call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)
            await asyncio.to_thread(threading.Event().wait, 120)

        run_bounded(reading, stop_s=0.5)
    """)
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 70, proc
    assert "worker threads: hallq-worker" in proc.stderr, proc.stderr
    assert time.monotonic() - started < 30  # the worker alone would hold it 120 s


@pytest.mark.timeout(60)
def test_workers_that_end_let_the_process_exit_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "brief.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, os, signal, time
        from hallqctl.runner import run_bounded

        async def working() -> None:
            loop = asyncio.get_running_loop()
            loop.call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)
            while True:
                await asyncio.to_thread(time.sleep, 0.05)

        run_bounded(working, stop_s=5)
    """)
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc
    assert proc.stderr == ""


@pytest.mark.timeout(60)
def test_a_signalled_service_says_why_it_stops_and_that_it_did(tmp_path: Path) -> None:
    """Under systemd, ``systemctl stop`` left nothing in the journal: a field engineer could
    not tell a stop from a crash that logged nothing."""
    script = tmp_path / "service.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, os, signal
        from hallq.logsetup import setup_logging
        from hallqctl.runner import run_bounded

        async def serving() -> None:
            asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)
            await asyncio.Event().wait()

        setup_logging("INFO")
        run_bounded(serving, stop_s=5)
    """)
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc
    assert "stopping: SIGTERM received" in proc.stderr, proc.stderr
    assert "stopped on SIGTERM in" in proc.stderr, proc.stderr
