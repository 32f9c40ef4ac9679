"""The coordinator's book of devices: a device that starts counting its boots again, and
two devices (or processes) that share one client id."""

from __future__ import annotations

import logging
from typing import Literal

import pytest

from coordinator.web.devices import SHARED_ID_WINDOW_S, DeviceBook
from hallq import messages as m

State = Literal["online", "offline"]


def feed(book: DeviceBook, events: list[tuple[State, int]]) -> None:
    for state, boot in events:
        book.note_presence(m.Presence(state=state, boot=boot, role="window", client="pi-w03"))


def test_a_device_on_a_new_card_is_online_and_not_taken_for_two(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "hallq.coordinator.devices")
    book = DeviceBook(lambda: 1000.0)
    feed(book, [("online", 57), ("offline", 57), ("online", 1)])
    (device,) = book.all()
    assert (device.online, device.boot) == (True, 1), "its birth from boot 1 is live"
    assert book.offline() == []
    feed(book, [("offline", 1), ("online", 2), ("offline", 2)])
    birth = m.Presence(state="online", boot=3, role="window", client="pi-w03")
    book.note_presence(birth)
    book.note_presence(birth)  # the same birth again (delivered twice, or re-asserted)
    assert book.shared_ids() == [], "one device restarting on its new count"
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert "counts its boots again" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    "turns",
    [
        # a cloned state directory: both count alike (Mosquitto publishes no will when a
        # connection is taken over by another with its client id)
        [("online", 1), ("online", 1), ("online", 2), ("online", 2)],
        # two state directories far apart
        [("online", 100), ("online", 5), ("online", 101), ("online", 6)],
        # a broker that does publish the will of the connection taken over
        [
            *[("online", 8), ("offline", 8), ("online", 8), ("offline", 8)],
            *[("online", 9), ("offline", 9), ("online", 9)],
        ],
    ],
)
def test_two_devices_with_one_id_are_flagged_while_they_take_turns(
    turns: list[tuple[State, int]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "hallq.coordinator.devices")
    now = [1000.0]
    book = DeviceBook(lambda: now[0])
    feed(book, turns[:2])
    assert book.shared_ids() == [], "once could be a new card"
    for event in turns[2:]:
        now[0] += 1.0
        feed(book, [event])
    assert [d.client for d in book.shared_ids()] == ["pi-w03"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "window/pi-w03 is connected twice" in warnings[0]
    now[0] += SHARED_ID_WINDOW_S
    assert book.shared_ids() == [], "no longer flagged once they stopped taking turns"


def test_a_device_that_says_it_is_pushed_off_is_flagged_not_called_faulty() -> None:
    """A thief with the device's password announces nothing: only the device's health
    tells. Its other components still count as faults of their own."""
    book = DeviceBook(lambda: 1000.0)
    pushed = m.ComponentHealth(name="mqtt", ok=False, status=m.SHARED_ID)
    book.note_health("window", "pi-w03", m.DeviceHealth(rev=1, components=[pushed]))
    assert [d.client for d in book.shared_ids()] == ["pi-w03"]
    assert book.unhealthy() == [], "one alert for it, not a second as a fault"
    paper = m.ComponentHealth(name="printer-1", ok=False, status="paper_out")
    book.note_health("window", "pi-w03", m.DeviceHealth(rev=2, components=[pushed, paper]))
    assert [d.client for d in book.unhealthy()] == ["pi-w03"]
    book.note_health(
        "window",
        "pi-w03",
        m.DeviceHealth(rev=3, components=[m.ComponentHealth(name="mqtt", ok=True, status="ok")]),
    )
    assert book.shared_ids() == []
    assert book.unhealthy() == []


def test_a_device_counting_boots_in_memory_is_not_taken_for_two() -> None:
    """A Pi whose card went read-only counts each start on from what its file last held:
    restarts repeat a boot, as a twin's births would; its health says why."""
    book = DeviceBook(lambda: 1000.0)
    state = m.ComponentHealth(name="state", ok=False, status=m.NOT_WRITABLE)
    feed(book, [("online", 41)])
    book.note_health("window", "pi-w03", m.DeviceHealth(rev=1, components=[state]))
    feed(book, [("online", 42), ("online", 42), ("online", 42)])  # restarts, new births
    assert book.shared_ids() == []
    assert [d.client for d in book.unhealthy()] == ["pi-w03"]
