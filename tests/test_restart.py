"""A restarted coordinator answers before it loads what only comes after (issue 15).

The wait estimator's simulation (numpy), the comfort forecast, the web server (aiohttp)
and the ticket QR codes (segno) are loaded once the queue serves: a restart's first reply
must not wait for them. Checked by what a fresh process has imported at the moment the
coordinator starts serving, not by timing (bench/restart.py measures the time).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hallq import messages as m

from .conftest import Mosquitto
from .coordinated import device
from .halls import small_hall, small_hall_text

pytestmark = pytest.mark.broker

AFTER_SERVING = (
    "numpy",
    "PIL",
    "aiohttp",
    "segno",
    "coordinator.eta",
    "coordinator.simulation.day",
    "coordinator.forecast.index",
    "coordinator.web.server",
    "coordinator.web.models",
)

SERVE = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path

    from hallqctl.cli import _need_role

    _need_role("coordinator", "coordinator.service", installed=("aiohttp",))  # as the CLI
    from coordinator.service import Coordinator
    from hallq.config import load_config

    LATER = json.loads(sys.argv[3])

    class Serving(asyncio.Event):
        def set(self) -> None:  # the moment run() starts serving, before anything else
            print(json.dumps([name for name in LATER if name in sys.modules]), flush=True)
            super().set()

    async def main() -> None:
        coordinator = Coordinator(load_config(Path(sys.argv[1])), log_path=Path(sys.argv[2]))
        async with coordinator.make_session() as session:
            await coordinator.run(session, Serving())

    asyncio.run(main())
""")


@pytest.mark.timeout(60)
async def test_the_queue_serves_before_the_forecast_estimator_and_web_are_loaded(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = tmp_path / "hall.toml"
    config.write_text(small_hall_text(mosquitto.url, str(tmp_path / "state"), all_day=True))
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"), all_day=True)
    script = tmp_path / "serve.py"
    script.write_text(SERVE)
    with (tmp_path / "coordinator.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(config),
                str(tmp_path / "log.sqlite"),
                json.dumps(AFTER_SERVING),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks this test only until it serves (or dies)
        assert line, f"the coordinator died before serving; see {tmp_path}/coordinator.log"
        assert json.loads(line) == []
        async with device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser:
            await dispenser.wait_connected(10)
            reply = await dispenser.request(
                dispenser.topics.req("pi-d1"),
                m.IssueRequest(kind="issue", service="tax-filing"),
                timeout=10,
            )
        assert reply.ok
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()
