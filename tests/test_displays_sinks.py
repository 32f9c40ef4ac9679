"""Sinks: the frame that reaches the device is the rendered one.

The MAX7219 tests run luma's real driver over a recording SPI bus and decode the register
writes back into an image; the serial tests run the firmware_bridge LED controller against
its bus simulator.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from displays.board import BoardSpec, CallBoard
from displays.emulator import EmulatorSink, led_look
from displays.errors import SinkError
from displays.fonts import BUNDLED_FONT, BitmapFont
from displays.layouts import PanelSpec, frames
from displays.max7219 import Max7219Sink
from displays.serial_led import SerialLedSink, to_bitmap
from displays.sinks import BACKEND_ENV, open_sink
from edge.hall_devices import panel_spec
from firmware_bridge.errors import LinkDown
from firmware_bridge.led_frames import Bitmap
from hallq.config import load_config
from hallq.messages import BoardCall, BoardState

T0 = dt.datetime(2026, 11, 30, 9, 30, tzinfo=dt.UTC)
FONT = BitmapFont([BUNDLED_FONT])
HALL = load_config(Path(__file__).parents[1] / "examples" / "liwan.toml")
DIGIT_0, INTENSITY, SHUTDOWN = 0x01, 0x0A, 0x0C


def device(device_id: str) -> PanelSpec:
    return panel_spec(next(d for a in HALL.agents for d in a.devices if d.id == device_id))


def rendered(width: int, height: int, t: float = 1.0) -> Image.Image:
    board = CallBoard(BoardSpec(width, height, ticket_chars=4), FONT)
    calls = [
        BoardCall(ticket=f"A{n:03d}", window=n % 40 + 1, zone="hall-1", called_at=T0)
        for n in range(23, 17, -1)
    ]
    board.update(BoardState(rev=1, calls=calls, notice="请到15号窗口办理", comfort="较少"), 0.0)
    return board.frame_at(t)


class RecordingSpi:
    """Stands in for spidev.SpiDev: records every write, as the wire would see it."""

    def __init__(self) -> None:
        self.writes: list[list[int]] = []
        self.opened: tuple[int, int] | None = None
        self.closed = False
        self.max_speed_hz = 0
        self.mode = 0

    def open(self, bus: int, device: int) -> None:
        self.opened = (bus, device)

    def writebytes(self, data: list[int]) -> None:
        self.writes.append(list(data))

    def close(self) -> None:
        self.closed = True


def decode_max7219(
    writes: list[list[int]], width: int, height: int, orientation: int
) -> Image.Image:
    """The picture a chain shows after these writes.

    Each write sets one register in every module: (register, value) pairs, the first pair
    shifting through to the far end of the chain. Modules are chained from the top-left,
    along each row of modules, then the next row (luma's order). Digit register d is column
    d of the module; bit b of its value is row b.
    """
    cols, rows = width // 8, height // 8
    n = cols * rows
    blocks = [Image.new("1", (8, 8)) for _ in range(n)]
    for write in writes:
        assert len(write) == 2 * n
        for i in range(n):
            register, value = write[2 * i], write[2 * i + 1]
            if DIGIT_0 <= register <= DIGIT_0 + 7:
                module = n - 1 - i
                for bit in range(8):
                    blocks[module].putpixel((register - DIGIT_0, bit), (value >> bit) & 1)
    image = Image.new("1", (width, height))
    for module, block in enumerate(blocks):
        if orientation:
            block = block.rotate(-orientation)  # undo the per-module turn luma applied
        row, col = divmod(module, cols)
        image.paste(block, (col * 8, row * 8))
    return image


def digit_writes(bus: RecordingSpi) -> list[list[int]]:
    return [w for w in bus.writes if DIGIT_0 <= w[0] <= DIGIT_0 + 7]


# --- MAX7219 through luma -------------------------------------------------------------------


@pytest.mark.parametrize(("orientation"), [0, -90, 90])
def test_max7219_receives_the_rendered_frame(orientation: int) -> None:
    bus = RecordingSpi()
    sink = Max7219Sink(192, 32, block_orientation=orientation, bus=bus)
    assert sink.size == (192, 32)
    assert bus.opened == (0, 0)
    frame = rendered(192, 32)
    bus.writes.clear()
    sink.show(frame)
    writes = digit_writes(bus)
    assert len(writes) == 8  # one write per digit register, all 96 modules at once
    assert decode_max7219(writes, 192, 32, orientation).tobytes() == frame.tobytes()


def test_max7219_from_the_hall_file_is_192x32_not_768x8() -> None:
    # board-main says cascaded = 96; passed to luma, that would make a 768x8 single row.
    bus = RecordingSpi()
    sink = open_sink(device("board-main"), spi_bus=bus)
    assert isinstance(sink, Max7219Sink)
    assert sink.size == (192, 32)
    assert sink.device.cascaded == 96
    frame = rendered(192, 32, t=3.0)
    bus.writes.clear()
    sink.show(frame)
    assert decode_max7219(digit_writes(bus), 192, 32, -90).tobytes() == frame.tobytes()


def test_max7219_brightness_and_close() -> None:
    bus = RecordingSpi()
    sink = Max7219Sink(16, 16, bus=bus)
    bus.writes.clear()
    sink.set_brightness(200)
    assert [INTENSITY, 200 >> 4] * 4 in bus.writes
    assert [SHUTDOWN, 1] * 4 in bus.writes
    bus.writes.clear()
    sink.set_brightness(0)
    assert bus.writes == [[SHUTDOWN, 0] * 4]
    with pytest.raises(ValueError, match="brightness must be 0-255"):
        sink.set_brightness(300)
    sink.close()
    assert bus.closed
    assert [SHUTDOWN, 0] * 4 in bus.writes
    with pytest.raises(SinkError, match="closed"):
        sink.show(Image.new("1", (16, 16)))


def test_max7219_refuses_a_frame_of_the_wrong_size() -> None:
    sink = Max7219Sink(32, 16, bus=RecordingSpi())
    with pytest.raises(SinkError, match="32x16"):
        sink.show(Image.new("1", (64, 16)))
    with pytest.raises(SinkError, match="mode"):
        sink.show(Image.new("L", (32, 16)))


def test_max7219_without_spidev_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spidev", None)  # import spidev now raises ImportError
    with pytest.raises(SinkError, match=r"hallq\[pi\]"):
        Max7219Sink(32, 16)


def test_importing_displays_needs_no_pi_libraries() -> None:
    code = (
        "import sys, displays, displays.max7219, displays.sinks; "
        "print(sorted(m for m in ('spidev', 'RPi', 'RPi.GPIO', 'lgpio') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- emulator -------------------------------------------------------------------------------


def test_emulator_keeps_the_last_frame_and_serves_png() -> None:
    sink = EmulatorSink(192, 32, scale=3)
    frame = rendered(192, 32)
    sink.show(frame)
    assert sink.frame.tobytes() == frame.tobytes()
    assert sink.shown == 1
    png = sink.png_bytes()
    assert png.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.size == (576, 96)
        assert picture.mode == "P"
        # the centre of a lit pixel's dot is the lit colour, an unlit one's the dim colour
        x, y = next((x, y) for y in range(32) for x in range(192) if frame.getpixel((x, y)))
        assert picture.getpixel((x * 3 + 1, y * 3 + 1)) == 2
        assert picture.getpixel((1, 1)) == 1
        assert picture.getpixel((2, 2)) == 0


def test_emulator_gif_has_one_image_per_frame(tmp_path: Path) -> None:
    board = CallBoard(BoardSpec(64, 32, ticket_chars=4), FONT)
    board.update(BoardState(rev=1, notice="请到15号窗口办理"), 0.0)
    sink = EmulatorSink(64, 32, scale=2)
    sink.save_gif(tmp_path / "board.gif", frames(board, 0.0, 1.0, 10), frame_ms=100)
    with Image.open(tmp_path / "board.gif") as gif:
        assert getattr(gif, "n_frames", 1) == 10
        assert gif.size == (128, 64)


def test_emulator_plain_pixels_and_brightness() -> None:
    sink = EmulatorSink(8, 16, scale=2, led=False)
    frame = Image.new("1", (8, 16))
    frame.putpixel((3, 5), 1)
    sink.show(frame)
    assert sink.picture().getpixel((6, 10))
    assert not sink.picture().getpixel((0, 0))
    sink.set_brightness(0)
    assert sink.picture().getbbox() is None
    dim = led_look(frame, scale=4, brightness=16).getpalette()
    bright = led_look(frame, scale=4, brightness=255).getpalette()
    assert dim is not None
    assert bright is not None
    assert dim[6] < bright[6]


def test_open_sink_picks_by_kind_and_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "emulator")
    sink = open_sink(device("board-main"))
    assert isinstance(sink, EmulatorSink)
    assert sink.size == (192, 32)
    monkeypatch.delenv(BACKEND_ENV)
    hardware = open_sink(device("board-main"), spi_bus=RecordingSpi())
    assert isinstance(hardware, Max7219Sink)
    with pytest.raises(SinkError, match="led_driver"):
        open_sink(device("strip-22"))
    with pytest.raises(SinkError, match="must be"):
        open_sink(device("strip-22"), backend="nope")  # type: ignore[arg-type]


# --- serial LED controller ------------------------------------------------------------------


def test_to_bitmap_keeps_every_pixel() -> None:
    frame = rendered(128, 16)
    bitmap = to_bitmap(frame)
    assert (bitmap.width, bitmap.height) == (128, 16)
    assert all(
        bitmap.pixel(x, y) == bool(frame.getpixel((x, y))) for y in range(16) for x in range(128)
    )
    # firmware_bridge's own converter agrees (its _Image1 protocol is stricter than Pillow)
    assert bitmap == Bitmap.from_image(frame)  # type: ignore[arg-type]
    grey = frame.convert("L")
    assert to_bitmap(grey) == bitmap


def text_frame(text: str) -> Image.Image:
    frame = Image.new("1", (128, 16))
    frame.paste(FONT.render(text), (0, 0))
    return frame


class FakeController:
    """An LedController whose acknowledgements the test releases one by one."""

    def __init__(self, width: int = 128, height: int = 16) -> None:
        self.width, self.height = width, height
        self.shown: list[Bitmap] = []
        self.fail_next = 0
        self.gate = asyncio.Semaphore(0)
        self.started = asyncio.Event()

    def allow(self, acks: int) -> None:
        for _ in range(acks):
            self.gate.release()

    async def show(self, image: Bitmap) -> None:
        self.started.set()
        await self.gate.acquire()
        if self.fail_next:
            self.fail_next -= 1
            raise LinkDown("line unplugged")
        self.shown.append(image)


async def test_serial_sink_sends_the_newest_frame_and_skips_the_rest() -> None:
    controller = FakeController()
    a, b, c = (text_frame(text) for text in ("请A023号", "请A024号", "请A025号"))
    async with SerialLedSink(controller) as sink:
        sink.show(a)
        await controller.started.wait()  # a is on the wire
        sink.show(b)
        sink.show(c)  # b is never sent: c replaced it in the mailbox
        controller.allow(2)
        await asyncio.wait_for(sink.flush(), 5)
        sink.show(c)  # the same picture again is not resent
        await asyncio.wait_for(sink.flush(), 5)
    assert controller.shown == [to_bitmap(a), to_bitmap(c)]
    assert sink.sent == 2


async def test_serial_sink_retries_a_failed_frame() -> None:
    controller = FakeController()
    controller.fail_next = 1
    frame = rendered(128, 16)
    async with SerialLedSink(controller, retry_delay=0) as sink:
        sink.show(frame)
        controller.allow(2)
        await asyncio.wait_for(sink.flush(), 5)
    assert controller.shown == [to_bitmap(frame)]
    assert sink.failures == 1


async def test_serial_sink_brightness_zero_blanks() -> None:
    controller = FakeController()
    controller.allow(10)
    async with SerialLedSink(controller) as sink:
        sink.show(rendered(128, 16))
        await asyncio.wait_for(sink.flush(), 5)
        sink.set_brightness(0)
        await asyncio.wait_for(sink.flush(), 5)
        sink.show(text_frame("请A024号"))  # still dark while off
        await asyncio.wait_for(sink.flush(), 5)
    assert controller.shown[-1] == to_bitmap(Image.new("1", (128, 16)))
    assert len(controller.shown) == 2


async def test_serial_sink_through_the_bus_simulator(tmp_path: Path) -> None:
    from firmware_bridge.devices import LedController
    from firmware_bridge.link import SerialLink
    from firmware_bridge.sim import BusSimulator, SimLedController
    from firmware_bridge.timing import LinkTiming
    from firmware_bridge.updates import DeviceState

    timing = LinkTiming(
        reply_timeout=0.25, byte_gap=0.1, poll_interval=0.01, offline_after=2,
        offline_poll_interval=0.1, status_interval=3600, reopen_initial=0.02, reopen_max=0.2,
    )  # fmt: skip
    frame = rendered(128, 16)
    async with BusSimulator(tmp_path / "bus", [SimLedController(21)]) as sim:
        link = SerialLink(str(sim.path), baudrate=115200, timing=timing)
        controller = LedController(link, 21, width=128, height=16, device="strip-15")
        async with link:
            async with asyncio.timeout(10):
                async for update in link.updates():
                    if isinstance(update, DeviceState) and update.online:
                        break
            async with SerialLedSink(controller) as sink:
                sink.show(frame)
                await asyncio.wait_for(sink.flush(), 10)
        assert sim.device(21, SimLedController).frames == [to_bitmap(frame)]
