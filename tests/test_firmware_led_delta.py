"""LED_DELTA: changed rows, run-length packed, against the image the controller holds.

The simulated controller rebuilds its image from the real bytes on a pty; every test
compares what it shows with the rendered image bit for bit.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware_bridge import Bitmap, Command, LinkTiming, SerialLink
from firmware_bridge.devices import LedController
from firmware_bridge.errors import FrameError
from firmware_bridge.led_delta import DELTA_LAST, LedScreen, led_deltas, rle_decode, rle_encode
from firmware_bridge.led_frames import ChunkRejected, led_chunks
from firmware_bridge.payloads import NackReason
from firmware_bridge.sim import BusSimulator, SimLedController

FAST = LinkTiming(reply_timeout=0.25, byte_gap=0.1, poll_interval=0.01, status_interval=3600)


def board(seed: int, width: int = 256, height: int = 32, lines: int = 2) -> Bitmap:
    """A board-like image: a few text lines of random glyph pixels on a dark background."""
    rnd = random.Random(seed)
    stride = width // 8
    rows = bytearray(stride * height)
    for line in rnd.sample(range(height // 16), k=min(lines, height // 16)):
        for y in range(line * 16 + 2, line * 16 + 14):
            for x in range(rnd.randrange(4), stride - rnd.randrange(8)):
                rows[y * stride + x] = rnd.getrandbits(8) & 0x7E
    return Bitmap(width, height, bytes(rows))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00" * 3,
        b"\x00" * 130,
        b"\x00" * 131,
        b"\x00" * 400,
        bytes(range(256)),
        b"ab" * 100 + b"\xff" * 7 + b"c",
        bytes(random.Random(1).getrandbits(8) for _ in range(999)),
    ],
)
def test_run_length_round_trips(data: bytes) -> None:
    packed = rle_encode(data)
    assert rle_decode(packed, len(data)) == (data, len(packed))
    assert len(packed) <= len(data) + (len(data) + 127) // 128


def test_run_length_bytes_are_pinned() -> None:
    # 0x00-0x7F: n+1 literal bytes follow; 0x80-0xFF: the next byte, n - 0x7D times
    assert rle_encode(b"\x00" * 32) == b"\x9d\x00"
    assert rle_encode(b"AB" + b"\xff" * 5) == b"\x01AB\x82\xff"
    assert rle_encode(b"\x00\x00") == b"\x01\x00\x00"


def test_a_delta_carries_only_the_changed_rows() -> None:
    old = board(1)
    rows = bytearray(old.rows)
    rows[20 * 32 : 22 * 32] = b"\x18" * 64
    new = Bitmap(256, 32, bytes(rows))
    (payload,) = led_deltas(old, new, 7, 8)
    assert payload[:3] == bytes((7, 8, DELTA_LAST))
    assert payload[3:] == (20).to_bytes(2, "little") + b"\x02" + b"\xbd\x18"  # 64 x 0x18


@pytest.mark.parametrize("seed", range(20))
def test_deltas_rebuild_the_image_exactly(seed: int) -> None:
    screen = LedScreen()
    first, second = board(seed), board(seed + 100, lines=2)
    for chunk in led_chunks(first, 1):
        screen.feed_frame(chunk)
    assert screen.shown == first
    payloads = led_deltas(first, second, 1, 2)
    assert all(len(p) <= 200 for p in payloads)
    for payload in payloads[:-1]:
        assert screen.feed_delta(payload) is None
        assert screen.shown == first  # nothing half-updated on the panel
    assert screen.feed_delta(payloads[-1]) == second
    assert screen.feed_delta(payloads[-1]) is None  # a resend after a lost ACK changes nothing
    assert screen.shown == second
    assert screen.shown_id == 2


def test_a_noisy_image_still_fits_the_frames() -> None:
    rnd = random.Random(3)
    noise = Bitmap(1024, 16, bytes(rnd.getrandbits(8) for _ in range(128 * 16)))
    payloads = led_deltas(Bitmap(1024, 16, bytes(128 * 16)), noise, 3, 4)
    assert all(len(p) <= 200 for p in payloads)
    screen = LedScreen()
    for chunk in led_chunks(Bitmap(1024, 16, bytes(128 * 16)), 3):
        screen.feed_frame(chunk)
    for payload in payloads:
        screen.feed_delta(payload)
    assert screen.shown == noise


def test_the_controller_refuses_what_it_cannot_apply() -> None:
    screen = LedScreen()
    with pytest.raises(ChunkRejected) as nothing:
        screen.feed_delta(bytes((1, 2, DELTA_LAST)) + b"\x00\x00\x01\x9d\x00")
    assert nothing.value.reason == NackReason.OUT_OF_ORDER
    for chunk in led_chunks(board(0), 5):
        screen.feed_frame(chunk)
    with pytest.raises(ChunkRejected) as stale:
        screen.feed_delta(bytes((4, 6, DELTA_LAST)) + b"\x00\x00\x01\x9d\x00")
    assert stale.value.reason == NackReason.OUT_OF_ORDER
    bad = [
        b"\x05\x06",  # no header
        bytes((5, 6, 1)) + b"\x1f\x00\x02\x9d\x00",  # rows 31..33 of 32
        bytes((5, 6, 1)) + b"\x00\x00\x01\x9d",  # repeat without its byte
        bytes((5, 6, 1)) + b"\x00\x00\x01\xff\x00",  # 130 bytes for a 32-byte row
        bytes((5, 6, 1)) + b"\x00\x00",  # record header cut short
    ]
    for payload in bad:
        with pytest.raises(ChunkRejected) as refused:
            screen.feed_delta(payload)
        assert refused.value.reason == NackReason.BAD_PAYLOAD, payload
    assert screen.shown == board(0)


def test_a_delta_cannot_resize_or_reuse_its_base_id() -> None:
    with pytest.raises(FrameError, match="size"):
        led_deltas(board(0), board(0, width=128), 1, 2)
    with pytest.raises(FrameError, match="differ"):
        led_deltas(board(0), board(1), 2, 2)


# --- on the wire ---------------------------------------------------------------------------


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[tuple[BusSimulator, LedController]]:
    async with BusSimulator(tmp_path / "bus", [SimLedController(21)], baudrate=115200) as sim:
        link = SerialLink(str(sim.path), baudrate=115200, timing=FAST)
        led = LedController(link, 21, width=256, height=32, device="board-1")
        async with link:
            await sim.wait_for(lambda: 0 in sim[21].acked)
            yield sim, led


async def test_a_stream_of_images_arrives_bit_for_bit_through_a_reboot(
    line: tuple[BusSimulator, LedController],
) -> None:
    sim, led = line
    ctrl = sim.device(21, SimLedController)
    images = [board(seed) for seed in range(12)]
    for n, image in enumerate(images):
        if n == 6:
            ctrl.reboot()  # dark, and no image a delta could apply to
            assert ctrl.shown is None
        if n == 9:
            sim.garble_next_reply(21, Command.LED_DELTA)  # an ACK lost: the delta is resent
        await led.show(image)
        assert ctrl.shown == image, n
    assert led.whole_images == 2  # the first, and the one after the reboot
    assert led.delta_images == 10
    assert ctrl.received[Command.LED_FRAME] == 2 * 6


async def test_older_firmware_gets_whole_images(
    line: tuple[BusSimulator, LedController],
) -> None:
    sim, led = line
    ctrl = sim.device(21, SimLedController)
    ctrl.deltas = False
    for seed in range(3):
        await led.show(board(seed))
        assert ctrl.shown == board(seed)
    assert not led.deltas
    assert led.whole_images == 3
    assert ctrl.received[Command.LED_DELTA] == 1


def test_random_bytes_are_refused_cleanly_and_leave_the_image_up() -> None:
    """A controller fed line garbage that passed the CRC must refuse it, never break."""
    rnd = random.Random(7)
    image = board(2)
    for n in range(2000):
        screen = LedScreen()
        for chunk in led_chunks(image, 9):
            screen.feed_frame(chunk)
        head = bytes((9, rnd.choice((9, 10, 11)), rnd.getrandbits(1)))
        payload = head + bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 60)))
        try:
            shown = screen.feed_delta(payload)
        except ChunkRejected:
            assert screen.shown == image, n
            continue
        assert shown is None or (shown.width, shown.height) == (256, 32)


def test_a_delta_from_the_previous_image_brings_it_back_in_three_bytes() -> None:
    """A blinking call: on, off, on. Back on is the image the controller showed before."""
    on, off = board(1), board(1, lines=0)
    screen = LedScreen()
    for chunk in led_chunks(on, 1):
        screen.feed_frame(chunk)
    for payload in led_deltas(on, off, 1, 2):
        screen.feed_delta(payload)
    assert (screen.shown, screen.previous_id) == (off, 1)
    (back,) = led_deltas(on, on, 1, 3)
    assert back == bytes((1, 3, DELTA_LAST))
    assert screen.feed_delta(back) == on
    assert (screen.shown_id, screen.previous_id) == (3, 2)
    assert screen.feed_delta(back) is None  # resent after a lost ACK: nothing changes
    assert screen.shown == on
    with pytest.raises(ChunkRejected):  # image 1 is gone now
        screen.feed_delta(bytes((1, 4, DELTA_LAST)))


@pytest.mark.parametrize("keeps_previous", [True, False])
async def test_a_blinking_image_costs_almost_nothing_after_its_first_blink(
    line: tuple[BusSimulator, LedController], keeps_previous: bool
) -> None:
    sim, led = line
    ctrl = sim.device(21, SimLedController)
    ctrl.screen.keep_previous = keeps_previous
    on, off = board(3), board(3, lines=0)
    sent: list[int] = []
    for n, image in enumerate([on, off, on, off, on, off]):
        before = ctrl.received[Command.LED_DELTA] + ctrl.received[Command.LED_FRAME]
        await led.show(image)
        assert ctrl.shown == image, n
        sent.append(ctrl.received[Command.LED_DELTA] + ctrl.received[Command.LED_FRAME] - before)
    if keeps_previous:
        assert led.previous_base
        assert sent[2:] == [1, 1, 1, 1]  # one 3-byte delta each
    else:
        assert not led.previous_base  # found out once, then deltas from the current image
        assert led.whole_images == 1
