"""A board that (re)starts shows the hall's current calls from retained state within 1 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from displays.board import CallBoard
from edge.hall_devices import layout_for
from edge.health import Health
from edge.panels import Panels
from hallq import messages as m

from .conftest import Mosquitto, until
from .coordinated import device
from .halls import small_hall

pytestmark = pytest.mark.broker


async def test_a_restarted_board_shows_the_current_calls_within_a_second(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    board_dev = next(d for d in cfg.agent("pi-b1").devices if d.id == "main-board")
    state = m.BoardState(
        rev=7,
        calls=[m.BoardCall(ticket="A023", window=1, zone="hall-1", called_at=m._utcnow())],
        waiting={"tax-filing": 3},
    )
    online = m.Presence(state="online", boot=1, role="coordinator", client="coordinator")
    async with device(cfg, "coordinator", "coordinator", tmp_path) as coordinator:
        await coordinator.wait_connected(10)
        await coordinator.publish(coordinator.topics.board_state(), state)
        await coordinator.publish(coordinator.topics.status("coordinator", "coordinator"), online)

    expected = layout_for(cfg, board_dev)
    assert isinstance(expected, CallBoard)
    expected.update(state, 0.0)
    expected.set_online(True)
    want = expected.frame_at(100.0).tobytes()

    session = device(cfg, "board", "pi-b1", tmp_path)
    async with session:
        panels = Panels(cfg, cfg.agent("pi-b1").devices, session, {}, Health(session), emulate=True)
        async with panels:
            runner = asyncio.create_task(panels.run())
            try:
                await session.wait_connected(10)
                start = time.monotonic()
                sink = panels.panels[0].sink
                await until(lambda: sink.frame.tobytes() == want, timeout=5)
                elapsed = time.monotonic() - start
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
    print(f"board current after {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0, f"the board took {elapsed:.2f} s to show the current calls"
