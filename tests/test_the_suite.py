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


@pytest.mark.xdist_group("demo")
def test_a_group_of_tests_stays_on_one_worker(request: pytest.FixtureRequest) -> None:
    """``--dist loadgroup`` (addopts) runs the tests of an ``xdist_group`` on one worker, in
    turn: the demo tests each run a whole simulated hall, and two at once on the two cores
    slowed both and the rest of the run. xdist finds the group by its name in the node id;
    pytest 9.2 with xdist 3.8 lost it silently (pyproject.toml pins pytest below 9.2)."""
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("not run by an xdist worker with --dist loadgroup")
    assert request.node.nodeid.endswith("@demo"), request.node.nodeid
