"""The suite's own rules (tests/conftest.py): no test hangs the run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(60)
def test_a_test_that_outlives_its_timeout_ends_the_run_and_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "HALLQ_TEST_HARD_GRACE_S": "1"}
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n0",
            "-p",
            "no:cacheprovider",
            "-o",
            "timeout=1",
            "-o",
            "python_files=hang_probe.py",
            str(HERE / "hang_probe.py"),
        ],
        cwd=HERE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "HARD TIMEOUT: tests/hang_probe.py::test_that_swallows_its_timeout" in proc.stderr
    assert "test_that_swallows_its_timeout" in proc.stderr.split("HARD TIMEOUT", 1)[1]
    assert time.monotonic() - started < 40
