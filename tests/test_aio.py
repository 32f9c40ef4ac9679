"""Ending tasks for sure: an owner that is itself cancelled while it stops its tasks must
still end them all, and a task that loses one cancellation is cancelled again."""

from __future__ import annotations

import asyncio
from typing import Any

from hallq.aio import BackgroundTasks


async def _stubborn(lost: list[int]) -> None:
    """Loses its first cancellation, as a loop around Python 3.11's ``wait_for`` may."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if lost:
                raise
            lost.append(1)


async def test_an_owner_cancelled_while_stopping_still_ends_every_task_first() -> None:
    lost: list[list[int]] = [[] for _ in range(3)]
    spawned: list[asyncio.Task[Any]] = []

    async def owner() -> None:
        async with BackgroundTasks("owner") as tasks:
            spawned.extend(tasks.spawn(_stubborn(lost[i])) for i in range(3))
            await asyncio.sleep(3600)

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()  # a second cancel lands while the owner is stopping its tasks
    await asyncio.wait({task}, timeout=10)
    assert task.cancelled()
    assert all(t.done() for t in spawned), "a task outlived its owner"
    assert all(lost)  # each one lost a cancellation and was cancelled again
    assert asyncio.all_tasks() == {asyncio.current_task()}
