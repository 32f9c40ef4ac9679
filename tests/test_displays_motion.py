"""Scrolling, flashing, blinking and brightness as functions of time: no sleeping anywhere."""

from __future__ import annotations

import datetime as dt

import pytest
from PIL import Image

from displays.brightness import BrightnessSchedule
from displays.fonts import BUNDLED_FONT, BitmapFont
from displays.motion import (
    Marquee,
    blink_next_change,
    blink_on,
    flash_next_change,
    flash_visible,
)


@pytest.fixture(scope="module")
def font() -> BitmapFont:
    return BitmapFont([BUNDLED_FONT])


# --- flashing ---------------------------------------------------------------------------------


def test_a_new_call_blinks_off_three_times_then_stays() -> None:
    quarter_seconds = [flash_visible(i / 4) for i in range(16)]
    assert quarter_seconds == [
        True, True, False, False,  # 0.0-1.0: shown, then off
        True, True, False, False,  # 1.0-2.0
        True, True, False, False,  # 2.0-3.0
        True, True, True, True,  # 3.0-4.0: steady
    ]  # fmt: skip
    assert flash_visible(-1.0)
    assert flash_visible(3600.0)


def test_flash_switch_times() -> None:
    assert flash_next_change(0.0) == 0.5
    assert flash_next_change(0.7) == pytest.approx(0.3)
    assert flash_next_change(2.9) == pytest.approx(0.1)
    assert flash_next_change(3.0) is None


def test_offline_blink() -> None:
    assert [blink_on(t) for t in (0.0, 0.9, 1.0, 1.9, 2.0)] == [True, True, False, False, True]
    assert blink_next_change(0.25) == 1.0
    assert blink_next_change(1.0) == 2.0


# --- scrolling --------------------------------------------------------------------------------


def test_text_that_fits_stands_still(font: BitmapFont) -> None:
    lane = Marquee(font, 64, align="center")
    lane.set_text("A023", 0.0)  # 32 px
    assert [lane.offset_at(t) for t in (0.0, 1.0, 99.0)] == [16, 16, 16]
    assert lane.next_change(0.0) is None
    assert not lane.scrolls_at(0.0)


def test_wide_text_scrolls_one_pixel_per_step(font: BitmapFont) -> None:
    lane = Marquee(font, 64, speed=32.0)
    lane.set_text("请A023号到15号窗口办理", 10.0)  # 176 px: period (64 + 176) / 32 = 7.5 s
    assert lane.scrolls_at(10.0)
    assert lane.offset_at(10.0) == 64  # just off the right edge
    assert lane.offset_at(10.0 + 1 / 32) == 63
    assert lane.offset_at(10.0 + 1.99 / 32) == 63  # between steps nothing moves
    assert lane.offset_at(12.0) == 0  # 64 px in two seconds
    assert lane.offset_at(12.5) == -16
    assert lane.offset_at(10.0 + 7.5) == 64  # a new pass starts at the right edge
    assert lane.next_change(10.0) == 10.0 + 1 / 32
    assert lane.next_change(12.01) == pytest.approx(12.0 + 1 / 32)


def test_drawing_a_scrolled_lane_shows_the_right_slice(font: BitmapFont) -> None:
    lane = Marquee(font, 32, speed=16.0)
    lane.set_text("号窗口办理", 0.0)  # 80 px
    frame = Image.new("1", (48, 16))
    lane.draw(frame, 8, 0, 3.0)  # offset 32 - 48 = -16: 窗 then 口 are in the lane
    expected = Image.new("1", (48, 16))
    expected.paste(font.render("窗口"), (8, 0))
    assert frame.tobytes() == expected.tobytes()


def test_a_new_ticker_text_waits_for_the_pass_to_end(font: BitmapFont) -> None:
    old, new = "申报纳税 等候12人　　发票办理 等候3人", "申报纳税 等候13人　　发票办理 等候3人"
    assert font.text_width(old) == 296  # a pass is (64 + 296) / 32 = 11.25 s
    lane = Marquee(font, 64, speed=32.0)
    lane.set_text(old, 0.0)
    lane.set_text(new, 4.0)
    assert lane.text == new
    assert lane.offset_at(11.2) == 64 - 358  # still the old pass, nearly gone
    assert lane.next_change(11.24) == pytest.approx(11.25)
    assert lane.offset_at(11.25) == 64  # the new text starts at the boundary, from the right
    lane.set_text(new, 20.0)  # the same text again changes nothing
    assert lane.offset_at(20.0) == 64 - round((20.0 - 11.25) * 32)


def test_a_window_number_replaces_at_once(font: BitmapFont) -> None:
    lane = Marquee(font, 32, speed=32.0)
    lane.set_text("请A0023号到15号窗口", 0.0)
    lane.set_text("A024", 1.0, wait=False)
    assert lane.offset_at(1.0) == 0
    assert not lane.scrolls_at(1.0)


def test_empty_text_draws_nothing(font: BitmapFont) -> None:
    lane = Marquee(font, 32)
    frame = Image.new("1", (32, 16))
    lane.draw(frame, 0, 0, 0.0)
    lane.set_text("", 0.0)
    lane.draw(frame, 0, 0, 5.0)
    assert frame.getbbox() is None
    assert lane.offset_at(5.0) is None


# --- brightness -------------------------------------------------------------------------------


def test_brightness_follows_the_schedule() -> None:
    schedule = BrightnessSchedule([("18:30", 40), ("07:30", 160), ("12:00", 200)])
    at = {hhmm: schedule.level_at(dt.time.fromisoformat(hhmm)) for hhmm in
          ("00:00", "07:29", "07:30", "11:59", "12:00", "18:29", "18:30", "23:59")}  # fmt: skip
    assert at == {
        "00:00": 40,  # last night's level carries over
        "07:29": 40,
        "07:30": 160,
        "11:59": 160,
        "12:00": 200,
        "18:29": 200,
        "18:30": 40,
        "23:59": 40,
    }
    shanghai = dt.timezone(dt.timedelta(hours=8))
    assert schedule.level_at(dt.datetime(2026, 11, 30, 12, 5, tzinfo=shanghai)) == 200
    assert schedule.next_switch(dt.datetime(2026, 11, 30, 19, 0, tzinfo=shanghai)) == (
        dt.datetime(2026, 12, 1, 7, 30, tzinfo=shanghai)
    )


@pytest.mark.parametrize(
    ("points", "error"),
    [
        ([], "at least one"),
        ([("7:30", 10)], "HH:MM"),
        ([("07:30", 256)], "0-255"),
        ([("07:30", 1), ("07:30", 2)], "twice"),
    ],
)
def test_bad_schedules_say_why(points: list[tuple[str, int]], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        BrightnessSchedule(points)
