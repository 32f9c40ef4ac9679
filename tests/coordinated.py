"""A coordinator running in-process on the test broker, and device sessions beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from coordinator.service import Coordinator
from hallq import messages as m
from hallq.aio import cancel_and_wait
from hallq.bus import Session

from .halls import at


class FakeClock:
    """Hall time for the coordinator: a weekday morning, advanced by the test."""

    def __init__(self) -> None:
        self.now = at(10)

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def running(
    cfg: Any, log_path: Path, clock: Callable[[], float]
) -> AsyncIterator[Coordinator]:
    coordinator = Coordinator(cfg, log_path=log_path, dispatch="pure", clock=clock)
    ready = asyncio.Event()
    async with coordinator.make_session() as session:
        task = asyncio.create_task(coordinator.run(session, ready))
        try:
            await asyncio.wait_for(ready.wait(), 15)
            yield coordinator
        finally:
            await cancel_and_wait(task)
    coordinator.close()


def device(cfg: Any, role: str, client: str, tmp_path: Path) -> Session:
    return Session(
        cfg.broker,
        hall=cfg.hall.id,
        role=role,
        client_id=client,
        state_dir=tmp_path / "dev" / client,
        backoff_initial=0.05,
        backoff_max=0.5,
    )


def alerts_of(coordinator: Coordinator, kind: str) -> list[m.AlertEvent]:
    """The coordinator's recent alerts of ``kind``, newest first."""
    return [e for _, e in coordinator.alerts if e.kind == kind]
