"""asyncio helpers that every long-running hallq process needs."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], retry_s: float = 0.5) -> None:
    """Cancel ``task`` and wait until it has really ended.

    On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives just as the
    awaited future completes (fixed in 3.12), and aiomqtt awaits every publish that way: a
    single ``cancel()`` can be lost and a shutdown would hang. So cancel again until done.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_s)
