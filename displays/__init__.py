"""LED call boards, window strips and voice calls.

The board agent feeds layouts the retained state it receives and pushes their frames to
sinks; nothing here talks MQTT. In short::

    layout = make_layout(panel, listing)          # PanelSpec, HallListing: plain values
    layout.update(board_state, now)               # BoardState / WindowState, monotonic now
    sink = open_sink(panel)                       # Max7219Sink, SerialLedSink, EmulatorSink
    sink.show(layout.frame_at(now))               # again at layout.next_change(now)
    sink.set_brightness(DEFAULT_SCHEDULE.level_at(local_time))

    async with Announcer(make_voice(clip_dir), AplayPlayer()) as announcer:
        announcer.submit(call_event)

The names load on first use (PEP 562): a window Pi whose strips sit behind a serial
controller imports ``displays.strip`` and its font, not Pillow, the board, the emulator or
MAX7219's driver (~2 MB of its resident memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hallq.lazy import lazy_names

if TYPE_CHECKING:
    from displays.announcer import Announcement, Announcer
    from displays.board import BoardSpec, CallBoard
    from displays.brightness import DEFAULT_SCHEDULE, BrightnessSchedule
    from displays.emulator import EmulatorSink, led_look
    from displays.errors import DisplayError, FontError, SinkError, VoiceError
    from displays.fonts import BitmapFont, default_font
    from displays.layouts import HallListing, Layout, PanelSpec, frames, make_layout, panel_size
    from displays.max7219 import Max7219Sink
    from displays.players import AplayPlayer, WavFilePlayer
    from displays.serial_led import SerialLedSink, to_bitmap
    from displays.sinks import Sink, open_sink
    from displays.strip import StripSpec, WindowStrip
    from displays.voice import ClipVoice, EspeakVoice, FallbackVoice, call_words, make_voice

__all__ = [
    "DEFAULT_SCHEDULE",
    "Announcement",
    "Announcer",
    "AplayPlayer",
    "BitmapFont",
    "BoardSpec",
    "BrightnessSchedule",
    "CallBoard",
    "ClipVoice",
    "DisplayError",
    "EmulatorSink",
    "EspeakVoice",
    "FallbackVoice",
    "FontError",
    "HallListing",
    "Layout",
    "Max7219Sink",
    "PanelSpec",
    "SerialLedSink",
    "Sink",
    "SinkError",
    "StripSpec",
    "VoiceError",
    "WavFilePlayer",
    "WindowStrip",
    "call_words",
    "default_font",
    "frames",
    "led_look",
    "make_layout",
    "make_voice",
    "open_sink",
    "panel_size",
    "to_bitmap",
]

_WHERE = {
    "Announcement": "displays.announcer",
    "Announcer": "displays.announcer",
    "AplayPlayer": "displays.players",
    "BitmapFont": "displays.fonts",
    "BoardSpec": "displays.board",
    "BrightnessSchedule": "displays.brightness",
    "CallBoard": "displays.board",
    "ClipVoice": "displays.voice",
    "DEFAULT_SCHEDULE": "displays.brightness",
    "DisplayError": "displays.errors",
    "EmulatorSink": "displays.emulator",
    "EspeakVoice": "displays.voice",
    "FallbackVoice": "displays.voice",
    "FontError": "displays.errors",
    "HallListing": "displays.layouts",
    "Layout": "displays.layouts",
    "Max7219Sink": "displays.max7219",
    "PanelSpec": "displays.layouts",
    "SerialLedSink": "displays.serial_led",
    "Sink": "displays.sinks",
    "SinkError": "displays.errors",
    "StripSpec": "displays.strip",
    "VoiceError": "displays.errors",
    "WavFilePlayer": "displays.players",
    "WindowStrip": "displays.strip",
    "call_words": "displays.voice",
    "default_font": "displays.fonts",
    "frames": "displays.layouts",
    "led_look": "displays.emulator",
    "make_layout": "displays.layouts",
    "make_voice": "displays.voice",
    "open_sink": "displays.sinks",
    "panel_size": "displays.layouts",
    "to_bitmap": "displays.serial_led",
}


__getattr__ = lazy_names(__name__, _WHERE)
