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
"""

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
