"""Fan-out of the coordinator's changes to Server-Sent Events clients.

The coordinator calls :meth:`StreamHub.notify` after each published outcome; each open
``/api/stream`` response has its own bounded queue. A client too slow to drain it gets a
``resync`` instead of an ever-growing backlog, and simply refetches what it shows.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

QUEUE_MAX = 100
_CLOSE: dict[str, Any] = {"__close__": True}


class StreamHub:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()

    @property
    def clients(self) -> int:
        return len(self._queues)

    def open(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)
        self._queues.add(queue)
        return queue

    def close(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._queues.discard(queue)

    def notify(self, change: dict[str, Any]) -> None:
        """Never blocks: the coordinator calls this while it holds the hall's lock."""
        for queue in list(self._queues):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait({"type": "resync"})

    def shutdown(self) -> None:
        """End every open stream, so the server can stop without waiting on them."""
        for queue in list(self._queues):
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(_CLOSE)


def is_close(item: dict[str, Any]) -> bool:
    return item is _CLOSE


def sse_frame(event: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()
