"""asyncio helpers that every long-running hallq process needs: ending tasks for sure,
owning background tasks, and spacing retries."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from typing import Any, Self

__all__ = ["BackgroundTasks", "backoff_delay", "cancel_and_wait"]

log = logging.getLogger("hallq.aio")


async def cancel_and_wait(*tasks: asyncio.Task[Any], retry_s: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until every one has really ended.

    On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives just as the
    awaited future completes (fixed in 3.12): a single ``cancel()`` can be lost and a
    shutdown would hang. So cancel again until done. When the caller is itself cancelled
    meanwhile (its owner is stopping too), the tasks still end first and the cancellation
    is raised after: otherwise the caller would leave them running with nobody to cancel
    them again, and a loop that lost its one cancel would run forever.
    """
    pending = {task for task in tasks if not task.done()}
    interrupted = False
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=retry_s)
        except asyncio.CancelledError:
            interrupted = True
            pending = {task for task in pending if not task.done()}
    if interrupted:
        raise asyncio.CancelledError


class BackgroundTasks:
    """The tasks a component starts and must not outlive it.

    An ``async with`` block (or ``close()``) ends every one of them with
    :func:`cancel_and_wait`, so no task is left running after its owner, and a task that
    failed is logged under the owner's name instead of vanishing with "exception was never
    retrieved".
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name or self.owner)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: task %s failed", self.owner, task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        while self._tasks:  # all at once: each one's stop may wait on a network
            tasks = list(self._tasks)
            await cancel_and_wait(*tasks)
            self._tasks.difference_update(tasks)  # their done callbacks may not have run

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff with "equal jitter": the ceiling doubles from ``initial`` per
    attempt up to ``cap``; the delay is half of it fixed plus half at random.

    The fixed half keeps a floor (a broker or serial adapter that fails at once is not
    hammered); the random half spreads a hall's devices after a shared outage, so they do
    not all come back in the same instant. ``attempt`` counts from 0.
    """
    ceiling = min(cap, initial * (2 ** min(max(attempt, 0), 30)))
    return random.uniform(ceiling / 2, ceiling)
