"""The live stream's fan-out: never blocks the coordinator, a slow client gets a resync."""

from __future__ import annotations

from coordinator.web.stream import QUEUE_MAX, StreamHub, is_close, sse_frame


async def test_a_slow_client_gets_one_resync_instead_of_a_backlog() -> None:
    hub = StreamHub()
    slow, fast = hub.open(), hub.open()
    for i in range(QUEUE_MAX + 5):
        hub.notify({"type": "outcome", "rev": i})
        if not fast.empty():
            fast.get_nowait()
    assert slow.qsize() <= QUEUE_MAX
    items = [slow.get_nowait() for _ in range(slow.qsize())]
    assert {"type": "resync"} in items
    assert items[-1]["rev"] == QUEUE_MAX + 4
    hub.close(slow)
    assert hub.clients == 1


async def test_shutdown_ends_every_stream() -> None:
    hub = StreamHub()
    queue = hub.open()
    hub.notify({"type": "stats", "rev": 1})
    hub.shutdown()
    assert is_close(queue.get_nowait())


def test_frames_are_utf8_server_sent_events() -> None:
    frame = sse_frame("change", {"message": "请到15号窗口办理"})
    assert frame == 'event: change\ndata: {"message":"请到15号窗口办理"}\n\n'.encode()
