"""Boards and strips from retained state: which layout a device gets, what it shows when."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from PIL import Image

from displays.board import BoardSpec, CallBoard
from displays.fonts import BUNDLED_FONT, BitmapFont
from displays.layouts import frames, panel_size
from displays.strip import StripSpec, WindowStrip
from edge.hall_devices import layout_for, panel_spec
from hallq.config import HallConfig, load_config
from hallq.messages import BoardCall, BoardState, CallEvent, WindowState, WindowStatus

T0 = dt.datetime(2026, 11, 30, 9, 30, tzinfo=dt.UTC)
LIWAN = Path(__file__).parents[1] / "examples" / "liwan.toml"


@pytest.fixture(scope="module")
def font() -> BitmapFont:
    return BitmapFont([BUNDLED_FONT])


@pytest.fixture(scope="module")
def hall() -> HallConfig:
    return load_config(LIWAN)


def device(hall: HallConfig, device_id: str):  # type: ignore[no-untyped-def]
    return next(d for a in hall.agents for d in a.devices if d.id == device_id)


def call(ticket: str, window: int, zone: str = "hall-1", minutes_ago: int = 0) -> BoardCall:
    return BoardCall(
        ticket=ticket, window=window, zone=zone, called_at=T0 - dt.timedelta(minutes=minutes_ago)
    )


def board_state(rev: int, calls: list[BoardCall], **kw: object) -> BoardState:
    return BoardState(rev=rev, calls=calls, **kw)  # type: ignore[arg-type]


def cell(board: CallBoard, t: float, index: int) -> Image.Image:
    """The pixels of call cell ``index`` (row-major) at time t."""
    pitch = board.spec.width // board.columns
    row, col = divmod(index, board.columns)
    return board.frame_at(t).crop((col * pitch, row * 16, (col + 1) * pitch, row * 16 + 16))


def lit(image: Image.Image) -> bool:
    return image.getbbox() is not None


# --- which layout ----------------------------------------------------------------------------


def test_devices_get_the_layout_their_config_describes(hall: HallConfig, font: BitmapFont) -> None:
    main = layout_for(hall, device(hall, "board-main"), font=font)
    assert isinstance(main, CallBoard)
    assert main.spec.zone is None
    assert main.size == (192, 32)
    assert main.rows == 2
    assert len(main.spec.services) == len(hall.services)  # the whole hall's queues
    assert main.spec.ticket_chars == 5  # A0023: tax-filing has 4 digits
    vat = layout_for(hall, device(hall, "board-vat"), font=font)
    assert isinstance(vat, CallBoard)
    assert vat.spec.zone == "vat"
    assert {code for code, _ in vat.spec.services} < {s.code for s in hall.services}
    strip = layout_for(hall, device(hall, "strip-22"), font=font)
    assert isinstance(strip, WindowStrip)
    assert strip.spec.window == 22
    assert strip.size == (128, 16)
    with pytest.raises(ValueError, match="not an LED panel"):
        layout_for(hall, device(hall, "voice-vat"), font=font)


def test_a_rotated_max7219_panel_is_drawn_turned(hall: HallConfig) -> None:
    board = device(hall, "board-main")
    turned = board.model_copy(update={"spi": board.spi.model_copy(update={"rotate": 1})})
    assert panel_size(panel_spec(board)) == (192, 32)
    assert panel_size(panel_spec(turned)) == (32, 192)


def test_auto_style_spells_the_call_out_wherever_it_fits(font: BitmapFont) -> None:
    wide = CallBoard(BoardSpec(192, 32, ticket_chars=4), font)
    assert (wide.style, wide.columns) == ("full", 1)  # 请A023号到15号窗口: 144 px
    assert wide.call_text(call("A023", 15)) == "请A023号到15号窗口"
    wider = CallBoard(BoardSpec(320, 32, ticket_chars=4), font)
    assert (wider.style, wider.columns) == ("full", 2)
    narrow = CallBoard(BoardSpec(128, 16, ticket_chars=4), font)
    assert (narrow.style, narrow.columns) == ("compact", 2)  # too narrow: A023→15, 56 px
    compact = CallBoard(BoardSpec(192, 32, ticket_chars=4, call_style="compact"), font)
    assert (compact.style, compact.columns) == ("compact", 3)


def test_board_needs_room_for_the_font() -> None:
    with pytest.raises(ValueError, match="16-px font"):
        BoardSpec(64, 8)


# --- the main board --------------------------------------------------------------------------


def test_calls_fill_the_rows_newest_first(font: BitmapFont) -> None:
    board = CallBoard(BoardSpec(192, 48, ticket_chars=4, call_style="compact"), font)  # 3x2
    calls = [call(f"A{n:03d}", n, minutes_ago=30 - n) for n in range(30, 20, -1)]
    board.update(board_state(1, calls), 0.0)
    assert board.ticker.text == ""  # no ticker: all three rows show calls
    for i, c in enumerate(calls[:9]):
        expected = Image.new("1", (64, 16))
        strip = font.render(board.call_text(c))
        expected.paste(strip, ((64 - strip.width) // 2, 0))
        assert cell(board, 5.0, i).tobytes() == expected.tobytes(), c.ticket


def test_zone_board_shows_only_its_zone(font: BitmapFont) -> None:
    board = CallBoard(BoardSpec(128, 16, zone="vat"), font)
    board.update(board_state(1, [call("A001", 1), call("G007", 31, zone="vat")]), 0.0)
    assert [c.ticket for c in board.calls] == ["G007"]
    board.note_call(CallEvent(ticket="A002", service="x", window=2, zone="hall-1"), 1.0)
    assert board.next_change(1.0) is None  # another zone's call does not flash here


def test_a_new_call_flashes_three_times_calls_at_boot_do_not(font: BitmapFont) -> None:
    board = CallBoard(BoardSpec(192, 16, ticket_chars=4, call_style="compact"), font)
    board.update(board_state(1, [call("A001", 1, minutes_ago=5)]), 100.0)
    assert all(lit(cell(board, 100.0 + i / 4, 0)) for i in range(16))  # no flash at boot
    board.update(board_state(2, [call("A002", 7), call("A001", 1, minutes_ago=5)]), 200.0)
    pattern = [lit(cell(board, 200.0 + i / 4, 0)) for i in range(16)]
    assert pattern == [True, True, False, False] * 3 + [True] * 4
    assert all(lit(cell(board, 200.0 + i / 4, 1)) for i in range(16))  # the older call is steady
    assert board.next_change(200.0) == 200.5
    assert board.next_change(203.0) is None  # nothing moves once the flash is over


def test_a_recall_flashes_again(font: BitmapFont) -> None:
    board = CallBoard(BoardSpec(192, 16, ticket_chars=4), font)
    board.update(board_state(1, [call("A001", 1)]), 0.0)
    event = CallEvent(ticket="A001", service="tax", window=1, zone="hall-1", recall=1)
    board.note_call(event, 50.0)
    assert [lit(cell(board, 50.0 + i / 4, 0)) for i in range(4)] == [True, True, False, False]
    board.note_call(event, 50.2)  # a duplicate during the flash does not restart it
    assert not lit(cell(board, 50.6, 0))


def test_ticker_lists_notice_comfort_and_waiting(font: BitmapFont) -> None:
    board = CallBoard(
        BoardSpec(192, 32, services=(("tax-filing", "申报纳税"), ("invoice", "发票办理"))), font
    )
    state = board_state(
        1, [], notice="系统维护", comfort="较多", waiting={"invoice": 3, "tax-filing": 12, "x": 1}
    )
    assert board.ticker_text(state) == (
        "系统维护　　办税舒适度：较多　　申报纳税 等候12人　　发票办理 等候3人　　x 等候1人"
    )
    zone_board = CallBoard(
        BoardSpec(192, 32, zone="vat", services=(("invoice", "发票办理"),)), font
    )
    assert zone_board.ticker_text(state).endswith("发票办理 等候3人")  # only its own queues


def test_a_branch_board_counts_its_own_buildings_waiting(
    hall: HallConfig, font: BitmapFont
) -> None:
    """The example hall's branch building keeps its own queues (its tickets are called
    only there), and its board said the whole hall's count: 等候30人 where 3 waited."""
    state = board_state(
        1,
        [],
        waiting={"tax-filing": 30},
        site_waiting={"main": {"tax-filing": 27}, "branch": {"tax-filing": 3}},
    )
    branch = layout_for(hall, device(hall, "board-branch"), font=font)
    assert isinstance(branch, CallBoard)
    assert "等候3人" in branch.ticker_text(state)
    assert "等候30人" not in branch.ticker_text(state)
    # the zone-less board above hall 1 shows its own building (its agent's site) too...
    main = layout_for(hall, device(hall, "board-main"), font=font)
    assert isinstance(main, CallBoard)
    assert "等候27人" in main.ticker_text(state)
    # ...and none of the branch's calls (请D219号到42号窗口 was shown in the main hall,
    # found by a supervisor)
    main.update(board_state(2, [call("D219", 42, zone="branch"), call("A001", 1)]), 0.0)
    assert [c.ticket for c in main.calls] == ["A001"]
    main.note_call(CallEvent(ticket="D220", service="x", window=40, zone="branch"), 1.0)
    assert main.next_change(1.0) is None


def test_no_calls_shows_welcome(font: BitmapFont) -> None:
    board = CallBoard(BoardSpec(128, 16), font)
    board.update(board_state(1, []), 0.0)
    strip = font.render("欢迎光临")
    expected = Image.new("1", (128, 16))
    expected.paste(strip, ((128 - strip.width) // 2, 0))
    assert board.frame_at(0.0).tobytes() == expected.tobytes()


def test_offline_marker_blinks_in_the_corner(font: BitmapFont) -> None:
    board = CallBoard(BoardSpec(128, 16), font)
    board.update(board_state(1, [call("A001", 1)]), 0.0)
    online = board.frame_at(10.0)
    board.set_online(False)
    on, off = board.frame_at(10.0), board.frame_at(11.0)
    assert all(on.getpixel((x, y)) for x in (126, 127) for y in (0, 1))
    assert off.crop((125, 0, 128, 3)).getbbox() is None
    assert on.crop((0, 0, 125, 16)).tobytes() == online.crop((0, 0, 125, 16)).tobytes()
    assert board.next_change(10.0) == 11.0
    board.set_online(True)
    assert board.frame_at(10.0).tobytes() == online.tobytes()


def test_frames_are_a_pure_function_of_time(font: BitmapFont) -> None:
    board = CallBoard(BoardSpec(64, 32, ticket_chars=4), font)
    board.update(board_state(1, [call("A001", 1)], notice="中午休息时间：12:00-13:30"), 0.0)
    first = [f.tobytes() for f in frames(board, 0.0, 2.0, 16)]
    again = [f.tobytes() for f in frames(board, 0.0, 2.0, 16)]
    assert first == again
    assert len(first) == 32
    assert len(set(first)) > 16  # the ticker moved between frames
    assert board.frame_at(1.5).tobytes() == first[24]


# --- the window strip ------------------------------------------------------------------------


def window_state(rev: int, status: WindowStatus, ticket: str | None = None) -> WindowState:
    return WindowState(rev=rev, window=15, zone="hall-1", status=status, ticket=ticket)


def test_strip_texts_follow_the_window(font: BitmapFont) -> None:
    strip = WindowStrip(StripSpec(128, 16, 15), font)
    assert strip.main_text() == "15号窗口"
    strip.update(window_state(1, WindowStatus.OPEN, "A023"), 0.0)
    assert strip.main_text() == "请A023号"
    # paused while A023 walks up: the strip still calls them until they are served
    strip.update(window_state(2, WindowStatus.PAUSED, "A023"), 1.0)
    assert strip.main_text() == "请A023号"
    strip.update(window_state(3, WindowStatus.PAUSED), 1.5)
    assert strip.main_text() == "暂停服务"
    strip.update(window_state(4, WindowStatus.CLOSED), 2.0)
    assert strip.main_text() == ""
    assert strip.frame_at(2.0).getbbox() is None
    strip.update(window_state(5, WindowStatus.OPEN), 3.0)
    assert strip.main_text() == "15号窗口"
    with pytest.raises(ValueError, match="window 16"):
        strip.update(WindowState(rev=6, window=16, zone="hall-1", status=WindowStatus.OPEN), 4.0)


def test_strip_flashes_a_new_number_not_the_one_at_boot(font: BitmapFont) -> None:
    strip = WindowStrip(StripSpec(128, 16, 15), font)
    strip.update(window_state(1, WindowStatus.OPEN, "A023"), 0.0)
    assert all(lit(strip.frame_at(i / 4)) for i in range(16))
    strip.update(window_state(2, WindowStatus.OPEN, "A024"), 10.0)
    assert [lit(strip.frame_at(10.0 + i / 4)) for i in range(16)] == (
        [True, True, False, False] * 3 + [True] * 4
    )
    strip.note_call(CallEvent(ticket="A024", service="x", window=15, zone="hall-1", recall=1), 20)
    assert not lit(strip.frame_at(20.5))


def test_strip_message_scrolls_beside_the_number(font: BitmapFont) -> None:
    strip = WindowStrip(StripSpec(128, 16, 15, message="一窗通办 综合业务"), font)
    # 请A000号 is 64 px, then an 8 px gap, then a 56 px lane for the message
    assert strip.message is not None
    assert strip.message.width == 56
    strip.update(window_state(1, WindowStatus.OPEN, "A023"), 0.0)
    a, b = strip.frame_at(1.0), strip.frame_at(2.0)
    assert a.crop((0, 0, 72, 16)).tobytes() == b.crop((0, 0, 72, 16)).tobytes()  # number still
    assert a.crop((72, 0, 128, 16)).tobytes() != b.crop((72, 0, 128, 16)).tobytes()  # message moves
    assert strip.next_change(1.0) == pytest.approx(1.0 + 1 / 32)


def test_a_strip_too_small_for_its_message_says_so(
    font: BitmapFont, caplog: pytest.LogCaptureFixture
) -> None:
    strip = WindowStrip(StripSpec(64, 16, 15, message="一窗通办"), font)
    assert strip.message is None
    assert strip.main.width == 64  # the number keeps the strip
    assert "no room for the message" in caplog.text


def test_a_number_wider_than_the_strip_scrolls(font: BitmapFont) -> None:
    strip = WindowStrip(StripSpec(64, 16, 15, ticket_chars=5), font)
    strip.update(window_state(1, WindowStatus.OPEN, "A0023"), 0.0)  # 请A0023号: 72 px
    assert strip.main.scrolls_at(0.0)
    assert strip.frame_at(1.0).tobytes() != strip.frame_at(1.5).tobytes()
