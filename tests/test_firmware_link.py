"""The bus master end to end: a SerialLink on a pty, simulated devices at the other end.

Tests wait on what the link reports or the simulator records, never on a fixed sleep, and
use generous timeouts so a loaded machine only makes them slower.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest

from firmware_bridge import (
    Bitmap,
    Command,
    DeviceRejected,
    DeviceState,
    DeviceTimeout,
    DropReason,
    LinkDown,
    LinkState,
    LinkTiming,
    PortUnavailable,
    SerialLink,
    Update,
)
from firmware_bridge.devices import (
    CallPad,
    IdCard,
    IdCardRejected,
    IdReader,
    Keypad,
    LedController,
    PadKey,
    PadKeyPress,
    Rating,
    RatingPad,
    Scan,
    Scanner,
    ServiceKey,
    TransferTarget,
    hash_id_number,
)
from firmware_bridge.display_text import encode_display
from firmware_bridge.port import open_port
from firmware_bridge.sim import (
    BusSimulator,
    SimCallPad,
    SimIdReader,
    SimKeypad,
    SimLedController,
    SimRatingPad,
    SimScanner,
)

from .conftest import until

FAST = LinkTiming(
    reply_timeout=0.25,
    byte_gap=0.1,
    poll_interval=0.01,
    offline_after=2,
    offline_poll_interval=0.1,
    status_interval=3600,
    reopen_initial=0.02,
    reopen_max=0.2,
)
KEY = "deployment-key-for-tests-0123456789"
ID_NUMBER = "440103199001011236"
U = TypeVar("U")


class Watch:
    """Reads link.updates() in the background so a test can wait for what it expects."""

    def __init__(self, link: SerialLink) -> None:
        self.link = link
        self.items: list[Update] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async for update in self.link.updates():
            self.items.append(update)
            self._changed.set()

    def of(self, kind: type[U]) -> list[U]:
        return [u for u in self.items if isinstance(u, kind)]

    async def wait_for(
        self,
        predicate: Callable[[list[Update]], bool],
        timeout: float = 10,  # noqa: ASYNC109  test helper: each test states its bound
    ) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.items):
                self._changed.clear()
                await self._changed.wait()

    async def first(
        self,
        kind: type[U],
        where: Callable[[U], bool] = lambda u: True,
        *,
        after: int = 0,
        timeout: float = 10,  # noqa: ASYNC109  test helper: each test states its bound
    ) -> U:
        """The first update of ``kind`` matching ``where`` at or after index ``after``."""
        found: list[U] = []

        def match(items: list[Update]) -> bool:
            found[:] = [u for u in items[after:] if isinstance(u, kind) and where(u)]
            return bool(found)

        await self.wait_for(match, timeout)
        return found[0]


def online(address: int, value: bool = True) -> Callable[[DeviceState], bool]:
    return lambda s: s.address == address and s.online is value


@dataclass
class Hall:
    sim: BusSimulator
    link: SerialLink
    watch: Watch
    pad: CallPad
    rating: RatingPad
    keypad: Keypad
    scanner: Scanner
    ids: IdReader
    led: LedController


ADDRESSES = (1, 2, 3, 5, 11, 21)


@pytest.fixture
async def hall(tmp_path: Path) -> AsyncIterator[Hall]:
    sim = BusSimulator(
        tmp_path / "bus0",
        [
            SimCallPad(1),
            SimKeypad(2),
            SimScanner(3),
            SimIdReader(5),
            SimRatingPad(11),
            SimLedController(21),
        ],
    )
    link = SerialLink(str(sim.path), baudrate=115200, timing=FAST)
    hall = Hall(
        sim,
        link,
        Watch(link),
        CallPad(link, 1, window=1, device="pad-01"),
        RatingPad(link, 11, window=1, device="rate-01"),
        Keypad(link, 2, services=["tax", "invoice", "social"], device="keys-1"),
        Scanner(link, 3, device="scan-1"),
        IdReader(link, 5, key=KEY, device="idr-1"),
        LedController(link, 21, width=128, height=16, device="strip-01"),
    )
    async with sim, link, hall.watch:
        await hall.watch.wait_for(
            lambda items: (
                {u.address for u in items if isinstance(u, DeviceState) and u.online}
                == set(ADDRESSES)
            )
        )
        # Every device's power-up BOOT event has been acknowledged: the tests start clean.
        await sim.wait_for(lambda: all(0 in d.acked for d in sim.devices.values()))
        yield hall


# --- events ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kept", [True, False])
async def test_a_restarted_link_drops_the_repeat_of_an_event_it_delivered(
    tmp_path: Path, kept: bool
) -> None:
    """The ACK of a CALL is lost and the agent restarts before the pad repeats it: with the
    SEQ kept on disk the new link drops the repeat (one CALL); without, it calls twice."""
    from firmware_bridge.seqstore import EventSeqStore

    sim = BusSimulator(tmp_path / "bus0", [SimCallPad(1)])
    store_path = tmp_path / "seq.sqlite"

    def new_link() -> tuple[SerialLink, Watch]:
        store = EventSeqStore(store_path) if kept else None
        link = SerialLink(str(sim.path), baudrate=115200, timing=FAST, seq_store=store)
        CallPad(link, 1, window=1, device="pad-01")
        return link, Watch(link)

    async with sim:
        link, watch = new_link()
        async with link, watch:
            await sim.wait_for(lambda: 0 in sim[1].acked)  # BOOT taken
            sim.drop_next(1, Command.ACK, times=10_000)  # no ACK gets through now
            seq = sim.press(1, "CALL")
            await watch.first(PadKeyPress, lambda e: e.key == PadKey.CALL)
        if link.seq_store is not None:
            link.seq_store.close()
        # The old link's last ACK may still be in the pty when it closes; cleared drops
        # would let it reach the pad late, which then never repeats the CALL.
        sent = link.stats.frames_sent
        await sim.wait_for(lambda: sim.frames_heard >= sent)
        assert seq not in sim[1].acked
        sim.clear_drops()
        link, watch = new_link()
        async with link, watch:
            await sim.wait_for(lambda: seq in sim[1].acked)  # the repeat, ACKed
            assert sim[1].transmissions[seq] >= 2
            sim.press(1, "FINISH")
            await watch.first(PadKeyPress, lambda e: e.key == PadKey.FINISH)
            keys = [p.key for p in watch.of(PadKeyPress)]
        if link.seq_store is not None:
            link.seq_store.close()
    assert keys == ([PadKey.FINISH] if kept else [PadKey.CALL, PadKey.FINISH])


async def test_devices_come_online_with_their_identity(hall: Hall) -> None:
    assert hall.watch.of(LinkState)[0].up
    states = {s.address: s for s in hall.watch.of(DeviceState)}
    assert states[1].device == "pad-01"
    assert states[1].identity is not None
    assert states[1].identity.kind_name == "call_pad"
    assert states[21].identity is not None
    assert states[21].identity.kind_name == "led_controller"
    assert states[11].status is not None
    assert states[11].status.ok
    assert hall.link.is_up
    assert hall.link.device_state(2) is not None


async def test_key_press_arrives_exactly_once_when_the_ack_is_lost(hall: Hall) -> None:
    sim, pad = hall.sim, hall.sim[1]
    sim.drop_next(1, Command.ACK)  # the master's ACK of the next event never arrives
    seq = sim.press(1, "CALL")
    await sim.wait_for(lambda: seq in pad.acked)
    assert pad.transmissions[seq] >= 2  # the pad repeated it with the same seq
    assert hall.link.stats.duplicate_events >= 1
    sim.press(1, "FINISH")
    await hall.watch.first(PadKeyPress, lambda e: e.key == PadKey.FINISH)
    presses = hall.watch.of(PadKeyPress)
    assert [p.key for p in presses] == [PadKey.CALL, PadKey.FINISH]
    assert presses[0] == PadKeyPress("pad-01", 1, 1, PadKey.CALL, None)


async def test_every_kind_of_device_delivers_typed_events(hall: Hall) -> None:
    sim, watch = hall.sim, hall.watch
    sim.press(1, "TRANSFER", TransferTarget("window", 15))
    sim.press(2, 3)
    sim.scan(3, "APPT1234")
    sim.rate(11, 2)
    await watch.wait_for(
        lambda items: len([u for u in items if not isinstance(u, DeviceState | LinkState)]) == 4
    )
    assert watch.of(PadKeyPress)[0].target == TransferTarget("window", 15)
    assert watch.of(ServiceKey) == [ServiceKey("keys-1", 2, 3, "social")]
    assert watch.of(Scan) == [Scan("scan-1", 3, "APPT1234")]
    assert watch.of(Rating)[0].label == "基本满意"


async def test_events_queued_on_one_device_come_in_order(hall: Hall) -> None:
    keys = ["CALL", "RECALL", "SKIP", "PAUSE", "RESUME", "FINISH", "EMERGENCY"]
    for key in keys:
        hall.sim.press(1, key)
    await hall.watch.wait_for(
        lambda items: len([u for u in items if isinstance(u, PadKeyPress)]) == 7
    )
    assert [p.key.name for p in hall.watch.of(PadKeyPress)] == keys


async def test_a_bad_event_is_acknowledged_counted_and_skipped(hall: Hall) -> None:
    seq = hall.sim[1].queue_event(b"\x01\x42")  # KEY with a code no pad has
    hall.sim.press(1, "CALL")
    await hall.watch.first(PadKeyPress)
    assert seq in hall.sim[1].acked
    assert hall.link.stats.bad_events == 1


# --- commands --------------------------------------------------------------------------------


async def test_display_reaches_the_pad_even_when_the_first_frame_is_lost(hall: Hall) -> None:
    hall.sim.drop_next(1, Command.DISPLAY)
    await hall.pad.show("请A023号到15号窗口", beep=True)
    assert hall.sim.device(1, SimCallPad).display == "请A023号到15号窗口"
    assert hall.sim.device(1, SimCallPad).displays == [("请A023号到15号窗口", 1)]
    assert hall.link.stats.retries >= 1


async def test_broadcast_display_reaches_every_pad(hall: Hall) -> None:
    await hall.link.broadcast(Command.DISPLAY, encode_display("暂停服务"))
    await hall.sim.wait_for(lambda: hall.sim.device(1, SimCallPad).display == "暂停服务")


async def test_led_image_in_two_chunks_survives_a_lost_ack(hall: Hall) -> None:
    image = Bitmap.from_art(
        ["".join("#" if (x + y) % 3 == 0 else "." for x in range(128)) for y in range(16)]
    )
    hall.sim.garble_next_reply(21, Command.LED_FRAME)  # the first chunk's ACK is corrupted
    await hall.led.show(image)
    assert hall.sim.device(21, SimLedController).frames == [
        image
    ]  # the resent chunk was taken once
    assert hall.sim[21].received[Command.LED_FRAME] == 3
    assert hall.link.stats.retries >= 1
    assert hall.link.drops[DropReason.BAD_CRC] >= 1


async def test_a_device_that_refuses_raises_device_rejected(hall: Hall) -> None:
    with pytest.raises(DeviceRejected, match="unsupported"):
        await hall.link.request(11, Command.DISPLAY, encode_display("x"))


async def test_wrong_image_size_is_refused_before_sending(hall: Hall) -> None:
    with pytest.raises(ValueError, match="128x16"):
        await hall.led.show(Bitmap.from_art(["#" * 8]))


# --- health ----------------------------------------------------------------------------------


async def test_a_silent_device_goes_offline_and_comes_back(hall: Hall) -> None:
    hall.sim[11].muted = True
    await hall.watch.first(DeviceState, online(11, False))
    state = hall.link.device_state(11)
    assert state is not None
    assert not state.online
    with pytest.raises(DeviceTimeout):
        await hall.link.request(11, Command.HELLO)
    mark = len(hall.watch.items)
    hall.sim.press(1, "CALL")  # the others keep working meanwhile
    await hall.watch.first(PadKeyPress, after=mark)
    hall.sim[11].muted = False
    await hall.watch.first(DeviceState, online(11), after=mark)


async def test_a_rebooted_device_restarts_its_count(hall: Hall) -> None:
    sim, watch = hall.sim, hall.watch
    sim.press(1, "CALL")  # seq 1
    await watch.first(PadKeyPress)
    sim[1].reboot()
    assert sim.press(1, "RECALL") == 1  # seq 1 again, after the BOOT event's 0
    state = await watch.first(DeviceState, lambda s: s.reason == "rebooted")
    assert state.identity is not None
    assert state.identity.boot_id == 2
    await watch.first(PadKeyPress, lambda e: e.key == PadKey.RECALL)


async def test_line_noise_does_not_stop_the_link(hall: Hall) -> None:
    for _ in range(20):
        hall.sim.inject(b"\x7e\x01\x82\x00\xff\x7f noise \x7d\x7d \x00\xff" * 3)
    await until(lambda: hall.link.drops.get(DropReason.GARBAGE, 0) > 0)
    seq = hall.sim.press(1, "CALL")
    await hall.sim.wait_for(lambda: seq in hall.sim[1].acked)
    await hall.watch.first(PadKeyPress)
    assert hall.link.is_up


async def test_a_pad_at_an_led_address_is_reported(tmp_path: Path) -> None:
    async with BusSimulator(tmp_path / "bus", [SimLedController(4)]) as sim:
        link = SerialLink(str(sim.path), baudrate=115200, timing=FAST)
        CallPad(link, 4, device="pad-04")
        async with link, Watch(link) as watch:
            state = await watch.first(DeviceState, online(4))
    assert "answers as led_controller" in state.reason


# --- the port ------------------------------------------------------------------------------


async def test_unplug_and_replug_recovers_without_restart(hall: Hall) -> None:
    sim, link, watch = hall.sim, hall.link, hall.watch
    mark = len(watch.items)
    sim.unplug()
    down = await watch.first(LinkState, lambda s: not s.up, after=mark)
    assert down.reason
    await watch.first(DeviceState, online(1, False), after=mark)
    assert not link.is_up
    with pytest.raises(LinkDown):
        await hall.pad.show("A001")
    opened = link.stats.opened
    await until(lambda: link.stats.open_failures >= 1)  # it kept trying while unplugged
    sim.replug()
    await watch.first(LinkState, lambda s: s.up, after=mark)
    await watch.first(DeviceState, online(1), after=mark)
    assert link.stats.opened == opened + 1
    seq = sim.press(1, "CALL")
    await watch.first(PadKeyPress, after=mark)
    await sim.wait_for(lambda: seq in sim[1].acked)
    await hall.pad.show("A001")
    assert sim.device(1, SimCallPad).display == "A001"
    ups = [s.up for s in watch.of(LinkState)]
    assert ups == [True, False, True]


async def test_an_event_pending_across_an_unplug_is_delivered_once(hall: Hall) -> None:
    sim, watch = hall.sim, hall.watch
    sim.drop_next(1, Command.ACK)
    seq = sim.press(1, "CALL")
    await watch.first(PadKeyPress)
    sim.unplug()  # the pad still holds the event: its ACK was lost
    await watch.first(LinkState, lambda s: not s.up)
    sim.replug()
    await sim.wait_for(lambda: seq in sim[1].acked)
    sim.press(1, "FINISH")
    await watch.first(PadKeyPress, lambda e: e.key == PadKey.FINISH)
    assert [p.key for p in watch.of(PadKeyPress)] == [PadKey.CALL, PadKey.FINISH]


async def test_a_missing_port_is_reported_down_and_commands_fail_fast(tmp_path: Path) -> None:
    link = SerialLink(str(tmp_path / "no-such-tty"), timing=FAST)
    async with link, Watch(link) as watch:
        state = await watch.first(LinkState)
        assert not state.up
        assert "no-such-tty" in state.reason
        with pytest.raises(LinkDown):
            await link.request(1, Command.HELLO)
        await until(lambda: link.stats.open_failures >= 3)
        assert len(watch.of(LinkState)) == 1  # reported once, not at every retry


@pytest.mark.parametrize(
    ("url", "why"), [("loop://", "pty"), ("rfc2217://host:1", "socket://"), ("ftp://x", "scheme")]
)
async def test_urls_without_a_descriptor_are_refused_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(PortUnavailable, match=why):
        await open_port(url, baudrate=9600, on_data=lambda data: None)


async def test_socket_url_reaches_a_serial_server(tmp_path: Path) -> None:
    """socket://host:port (a serial device server) works like a tty: bridge one to the sim."""
    async with BusSimulator(tmp_path / "bus", [SimCallPad(7)]) as sim:
        tty_fd = os.open(sim.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(tty_fd)
        loop = asyncio.get_running_loop()
        clients: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            clients.append(writer)
            loop.add_reader(tty_fd, lambda: writer.write(os.read(tty_fd, 4096)))
            try:
                while data := await reader.read(4096):
                    os.write(tty_fd, data)
            finally:
                loop.remove_reader(tty_fd)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            link = SerialLink(f"socket://127.0.0.1:{port}", timing=FAST)
            pad = CallPad(link, 7)
            async with link, Watch(link) as watch:
                await watch.first(DeviceState, online(7))
                sim.press(7, "CALL")
                await watch.first(PadKeyPress)
                await pad.show("A001")
            assert sim.device(7, SimCallPad).display == "A001"
        finally:
            for writer in clients:
                writer.close()
            server.close()
            await server.wait_closed()
            os.close(tty_fd)


# --- RS-485 timing (modelled by the simulator) -----------------------------------------------


async def test_a_long_reply_at_9600_baud_is_waited_for_not_talked_over(tmp_path: Path) -> None:
    text = "APPT-" + "0123456789" * 18  # ~190 bytes: about 200 ms on the wire at 9600 baud
    timing = LinkTiming(reply_timeout=0.1, byte_gap=0.5, poll_interval=0.01, status_interval=3600)
    async with BusSimulator(tmp_path / "bus", [SimScanner(3)], baudrate=9600) as sim:
        link = SerialLink(str(sim.path), baudrate=9600, timing=timing)
        Scanner(link, 3)
        async with link, Watch(link) as watch:
            await watch.first(DeviceState, online(3))
            sim.scan(3, text)
            event = await watch.first(Scan)
    assert event.text == text
    assert sim.collisions == 0


async def test_a_master_that_ignores_the_wire_time_collides(tmp_path: Path) -> None:
    """The simulator's bus model: talking over a device garbles both frames.

    The hasty master gives up on a long reply after its first chunk and talks over the rest.
    On a loaded box two things took that chance away (a collision in none of 10 s): its
    misses put the scanner offline, tried once in 5 s, with nothing sent after that one
    frame; and a loop that stood still past a whole reply let the link's stall grants read
    it whole and acknowledge it. So the scanner is never given up on, and each scan is one
    chance: another follows one taken whole."""
    hasty = LinkTiming(
        reply_timeout=0.005,
        byte_gap=0.0,
        poll_interval=0.01,
        retries=0,
        turnaround=0.0,
        offline_after=1_000_000,
    )
    async with BusSimulator(tmp_path / "bus", [SimScanner(3)], baudrate=9600) as sim:
        scanner = sim[3]
        link = SerialLink(str(sim.path), baudrate=115200, timing=hasty)  # wrong baud: no wait
        Scanner(link, 3)
        async with link:
            for _ in range(20):
                if not scanner.has_event:
                    sim.scan(3, "X" * 150)
                await sim.wait_for(lambda: sim.collisions > 0 or not scanner.has_event)
                if sim.collisions:
                    break
    assert sim.collisions > 0


async def test_pads_are_asked_every_round_and_led_controllers_polled_now_and_then(
    tmp_path: Path,
) -> None:
    """An LED controller has no keys: polling it every round would only lengthen the wait
    for a pad's key. Pads are asked as a group (ATTENTION), and POLLed only now and then
    when they have nothing to say."""
    async with BusSimulator(tmp_path / "bus", [SimCallPad(1), SimLedController(21)]) as sim:
        link = SerialLink(str(sim.path), baudrate=115200, timing=FAST)
        CallPad(link, 1)
        LedController(link, 21, width=128, height=16)
        async with link:
            await sim.wait_for(lambda: 0 in sim[21].acked)  # online, BOOT taken
            pad, led = sim[1].received, sim[21].received
            start_ask, start_poll, start_led = (
                pad[Command.ATTENTION],
                pad[Command.POLL],
                led[Command.POLL],
            )
            await sim.wait_for(lambda: pad[Command.ATTENTION] >= start_ask + 60)
            led_polls = led[Command.POLL] - start_led
            pad_polls = pad[Command.POLL] - start_poll
    assert led_polls <= 3  # 60 rounds of >= 10 ms: at most one poll a second, and a margin
    assert pad_polls <= 3  # the same: a pad with nothing to say is only POLLed routinely


async def test_a_key_is_served_between_the_chunks_of_a_long_image(tmp_path: Path) -> None:
    """At 19200 baud a 128x32 image is a third of a second on the wire; a key pressed as it
    starts arrives while it is still being sent: the master asks the pads between its frames."""
    # generous timeouts: a loaded machine's stall must not pass for a silent device, and
    # they cost nothing while every device answers
    timing = LinkTiming(reply_timeout=2.0, byte_gap=0.5, status_interval=3600)
    pads = [SimCallPad(a) for a in range(1, 11)]
    async with BusSimulator(tmp_path / "bus", [*pads, SimLedController(21)], baudrate=19200) as sim:
        link = SerialLink(str(sim.path), baudrate=19200, timing=timing)
        for a in range(1, 11):
            CallPad(link, a, window=a)
        board = LedController(link, 21, width=128, height=32)
        async with link, Watch(link) as watch:
            await sim.wait_for(lambda: all(0 in d.acked for d in sim.devices.values()))
            image = Bitmap(128, 32, bytes(range(256)) * 2)
            showing = asyncio.create_task(board.show(image))
            await sim.wait_for(lambda: sim[21].received[Command.LED_FRAME] >= 1)
            sim.press(7, "CALL")
            press = await watch.first(PadKeyPress)
            chunks_then = sim[21].received[Command.LED_FRAME]
            await showing
            chunks = sim[21].received[Command.LED_FRAME]
    assert press.window == 7
    assert chunks_then < chunks  # the key came in mid-image
    assert chunks > 512 // 193 + 1  # split finer than 200-byte frames on a slow line
    assert sim.device(21, SimLedController).shown == image
    assert sim.collisions == 0


async def test_firmware_without_attention_is_polled_every_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "firmware_bridge.link")
    old, new = SimCallPad(1), SimCallPad(2)
    old.attention = False
    async with BusSimulator(tmp_path / "bus", [old, new]) as sim:
        link = SerialLink(str(sim.path), baudrate=115200, timing=FAST)
        CallPad(link, 1, window=1)
        CallPad(link, 2, window=2)
        async with link, Watch(link) as watch:
            await until(lambda: "does not answer ATTENTION" in caplog.text)
            polls = old.received[Command.POLL]
            await sim.wait_for(lambda: old.received[Command.POLL] >= polls + 20)
            sim.press(1, "CALL")
            sim.press(2, "RECALL")
            first = await watch.first(PadKeyPress, lambda e: e.address == 1)
            second = await watch.first(PadKeyPress, lambda e: e.address == 2)
            keys = {first.key, second.key}
    assert keys == {PadKey.CALL, PadKey.RECALL}
    assert new.received[Command.ATTENTION] > 20  # the other pad is still asked as a group


async def test_a_clean_line_reports_no_garbage_when_the_process_stalls(tmp_path: Path) -> None:
    """The demo runs a whole hall and its simulated devices in one loop, so the loop stands
    still now and then, right after the devices heard an ATTENTION or a POLL. Their answers
    then come after the master's reply deadline: it used to give up, count the late slot
    bytes as garbage and talk over the answers it had asked for (~30 warnings a demo
    minute). A clean line reports no garbage and no collision, and every key arrives once."""
    pads = [SimCallPad(1), SimCallPad(2), SimRatingPad(11), SimRatingPad(12)]
    async with BusSimulator(tmp_path / "bus", pads, baudrate=9600) as sim:
        link = SerialLink(str(sim.path), baudrate=9600, timing=LinkTiming(status_interval=3600))
        for a in (1, 2):
            CallPad(link, a, window=a)
            RatingPad(link, 10 + a, window=a)
        async with link, Watch(link) as watch:
            await sim.wait_for(lambda: all(0 in d.acked for d in sim.devices.values()))
            heard = sim.frames_heard
            for n in range(24):  # stall right after the devices heard a frame, 24 times
                await sim.wait_for(lambda: sim.frames_heard > heard)  # noqa: B023 awaited here
                if n % 4 == 0:
                    sim.press(1 + n // 4 % 2, "CALL")
                time.sleep(0.15)  # noqa: ASYNC251  the stall itself: nothing may run meanwhile
                heard = sim.frames_heard
            await watch.wait_for(lambda items: len(watch.of(PadKeyPress)) >= 6)
    assert len(watch.of(PadKeyPress)) == 6
    assert link.stats.attention_polls > 0
    assert link.drops == {}
    assert link.stats.attention_noise == 0
    assert sim.collisions == 0
    assert not [s for s in watch.of(DeviceState) if not s.online]


def test_the_round_floor_follows_the_baud_rate() -> None:
    assert LinkTiming().round_s(9600) == pytest.approx(0.05)
    assert LinkTiming().round_s(115200) == pytest.approx(0.005)
    assert LinkTiming(poll_interval=0.2).round_s(115200) == 0.2


# --- privacy ----------------------------------------------------------------------------------


async def test_the_id_number_appears_nowhere(hall: Hall, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hall.sim.drop_next(5, Command.ACK)  # a repeat too, to walk the duplicate path
    seq = hall.sim.swipe_id(5, ID_NUMBER)
    hall.sim.swipe_id(5, "44010319900101123X")  # a misread (check digit wrong)
    await hall.watch.first(IdCardRejected)
    await hall.sim.wait_for(lambda: seq in hall.sim[5].acked)
    card = hall.watch.of(IdCard)[0]
    assert card.id_hash == hash_id_number(ID_NUMBER, KEY)
    assert len(hall.watch.of(IdCard)) == 1
    seen: list[Any] = [
        caplog.text,
        repr(card),
        str(card),
        repr(hall.ids),
        repr(hall.link),
        repr(hall.link.stats),
        hall.watch.items,
    ]
    for record in caplog.records:
        seen += [record.getMessage(), record.args, record.exc_text]
    haystack = " ".join(map(str, seen))
    for number in (ID_NUMBER, "44010319900101123", KEY):
        assert number not in haystack
