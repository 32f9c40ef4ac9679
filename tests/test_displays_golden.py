"""Reference images: known states rendered at known times, compared pixel for pixel.

The references are the 1-bit frames themselves (``tests/golden/*.png``, real size). After a
deliberate change to a layout, look at the new images and regenerate them with

    HALLQ_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_displays_golden.py

Rendering uses only the bundled font subset, so the images do not depend on which Unifont
the machine has.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from displays.board import BoardSpec, CallBoard
from displays.emulator import led_look
from displays.fonts import BUNDLED_FONT, BitmapFont
from displays.strip import StripSpec, WindowStrip
from edge.hall_devices import layout_for
from hallq.config import HallConfig, load_config
from hallq.messages import BoardCall, BoardState, WindowState, WindowStatus

from .ci import in_ci

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("HALLQ_UPDATE_GOLDEN") == "1"
T0 = dt.datetime(2026, 11, 30, 9, 30, tzinfo=dt.UTC)
FONT = BitmapFont([BUNDLED_FONT])


def check(name: str, frame: Image.Image, tmp_path: Path) -> None:
    path = GOLDEN / f"{name}.png"
    if UPDATE and in_ci():
        pytest.fail(
            "HALLQ_UPDATE_GOLDEN=1 under CI: references are updated by a person who "
            "looks at them, never by the run that is checking them"
        )
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        frame.save(path, optimize=True)
    if not path.is_file():
        pytest.fail(f"no reference {path}: run with HALLQ_UPDATE_GOLDEN=1 and review it")
    with Image.open(path) as ref:
        ref.load()
    assert ref.mode == "1", f"{name}: {ref.mode}"
    assert ref.size == frame.size, f"{name}: {ref.size}"
    if ref.tobytes() != frame.tobytes():
        actual = tmp_path / f"{name}.actual.png"
        frame.save(actual)
        led_look(frame, scale=4).save(tmp_path / f"{name}.actual-led.png")
        diff = sum(
            1
            for y in range(frame.height)
            for x in range(frame.width)
            if bool(frame.getpixel((x, y))) != bool(ref.getpixel((x, y)))
        )
        pytest.fail(f"{name}: {diff} pixels differ from {path}; rendered: {actual}")


@pytest.fixture(scope="module")
def hall() -> HallConfig:
    return load_config(Path(__file__).parents[1] / "examples" / "liwan.toml")


def led_device(hall: HallConfig, device_id: str):  # type: ignore[no-untyped-def]
    return next(d for a in hall.agents for d in a.devices if d.id == device_id)


SIX_CALLS = [
    BoardCall(ticket=t, window=w, zone=z, called_at=T0 - dt.timedelta(minutes=i))
    for i, (t, w, z) in enumerate(
        [
            ("A0023", 15, "hall-1"),
            ("B0107", 22, "hall-2"),
            ("G007", 31, "vat"),
            ("C012", 14, "hall-1"),
            ("A0022", 3, "hall-1"),
            ("E031", 13, "hall-1"),
        ]
    )
]
BUSY = BoardState(
    rev=7,
    calls=SIX_CALLS,
    waiting={"tax-filing": 12, "invoice": 3, "vat-green": 0},
    notice="中午休息时间：12:00-13:30",
    comfort="适中",
)


def test_main_board_192x32(hall: HallConfig, tmp_path: Path) -> None:
    board = layout_for(hall, led_device(hall, "board-main"), font=FONT)
    assert isinstance(board, CallBoard)
    board.update(BUSY, 0.0)
    check("main-192x32-t2", board.frame_at(2.0), tmp_path)  # ticker 64 px in
    check("main-192x32-t9", board.frame_at(9.0), tmp_path)


def test_main_board_offline(hall: HallConfig, tmp_path: Path) -> None:
    board = layout_for(hall, led_device(hall, "board-main"), font=FONT)
    assert isinstance(board, CallBoard)
    board.update(BUSY, 0.0)
    board.set_online(False)
    check("main-192x32-offline", board.frame_at(4.0), tmp_path)


def test_zone_board_256x32(hall: HallConfig, tmp_path: Path) -> None:
    board = layout_for(hall, led_device(hall, "board-hall-2"), font=FONT)
    assert isinstance(board, CallBoard)
    board.update(BUSY, 0.0)
    check("zone-hall-2-256x32", board.frame_at(3.0), tmp_path)


def test_small_board_64x16_welcome_and_call(tmp_path: Path) -> None:
    board = CallBoard(BoardSpec(64, 16, ticket_chars=4), FONT)
    board.update(BoardState(rev=1), 0.0)
    check("board-64x16-empty", board.frame_at(0.0), tmp_path)
    board.update(BoardState(rev=2, calls=[SIX_CALLS[3]]), 1.0)
    check("board-64x16-call", board.frame_at(5.0), tmp_path)


WINDOW_STATES: list[tuple[str, Callable[[int], WindowState]]] = [
    ("serving", lambda r: WindowState(rev=r, window=15, zone="hall-1", status=WindowStatus.OPEN,
                                      ticket="A0023", service="tax-filing")),
    ("idle", lambda r: WindowState(rev=r, window=15, zone="hall-1", status=WindowStatus.OPEN)),
    ("paused", lambda r: WindowState(rev=r, window=15, zone="hall-1",
                                     status=WindowStatus.PAUSED)),  # (its last served)
    ("closed", lambda r: WindowState(rev=r, window=15, zone="hall-1",
                                     status=WindowStatus.CLOSED)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "state"), WINDOW_STATES, ids=[n for n, _ in WINDOW_STATES])
def test_window_strip_128x16(
    name: str, state: Callable[[int], WindowState], tmp_path: Path
) -> None:
    strip = WindowStrip(StripSpec(128, 16, 15, message="一窗通办", ticket_chars=5), FONT)
    strip.update(state(1), 0.0)
    check(f"strip-128x16-{name}", strip.frame_at(1.0), tmp_path)


def test_window_strip_two_rows(tmp_path: Path) -> None:
    strip = WindowStrip(StripSpec(64, 32, 15, message="综合业务 一窗通办"), FONT)
    strip.update(WINDOW_STATES[0][1](1), 0.0)
    check("strip-64x32-serving", strip.frame_at(2.0), tmp_path)
