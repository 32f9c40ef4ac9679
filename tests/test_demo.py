"""The demo: the example hall, every agent, simulated devices and traffic, at high speed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hallqctl.demo import DEFAULT_CONFIG, run_demo

from .conftest import Mosquitto

# a whole simulated hall each: one worker runs them in turn (--dist loadgroup)
pytestmark = [pytest.mark.broker, pytest.mark.xdist_group("demo")]


@pytest.mark.timeout(180)
async def test_the_demo_issues_calls_serves_draws_boards_and_reports_kpis(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    def boards() -> list[str]:
        return sorted(p.name for p in (tmp_path / "state" / "boards").rglob("*.png"))

    def enough(engine: Any) -> bool:
        total = engine.stats_state(0).total
        return total.issued > 30 and total.served > 10 and bool(boards())

    lines = await run_demo(DEFAULT_CONFIG, speed=240, duration=120, broker_url=mosquitto.url,
                           state_dir=tmp_path, live=False, volume=4000, http_port=0,
                           until=enough)
    counts = re.search(r"issued (\d+), served (\d+)", lines[0])
    assert counts is not None, lines
    issued, served = map(int, counts.groups())
    assert issued > 30 and served > 10, lines
    assert any("average wait" in line for line in lines)
    assert any(name.startswith("board") or "main" in name for name in boards()), boards()


@pytest.mark.timeout(180)
async def test_with_no_broker_and_no_mosquitto_the_demo_embeds_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hallqctl.mosquitto

    monkeypatch.setenv("HALLQ_BROKER_URL", "mqtt://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(hallqctl.mosquitto, "find_mosquitto", lambda: None)
    lines = await run_demo(DEFAULT_CONFIG, speed=240, duration=120, state_dir=tmp_path,
                           live=False, volume=4000, http_port=0,
                           until=lambda engine: engine.stats_state(0).total.issued > 10)
    counts = re.search(r"issued (\d+), served (\d+)", lines[0])
    assert counts is not None and int(counts.group(1)) > 10, lines
