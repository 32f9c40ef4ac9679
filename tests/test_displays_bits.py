"""A window Pi's serial strips drawn without Pillow show exactly what Pillow would draw.

``displays.bits.Bits`` stands in for a mode-"1" ``PIL.Image`` on the strip path; the
controller receives the frame's bytes, so every strip frame must be byte-identical whichever
way it was drawn: same texts, scrolling, flashing, offline marker, missing-glyph boxes.
"""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from PIL import Image

from displays.bits import Bits
from displays.fonts import BUNDLED_FONT, BitmapFont
from displays.serial_led import to_bitmap
from displays.strip import StripSpec, WindowStrip
from hallq.messages import CallEvent, WindowState, WindowStatus


def test_bits_do_what_pillow_does() -> None:
    rng = random.Random(7)
    for _ in range(300):
        w, h = rng.randint(1, 40), rng.randint(1, 20)
        data = bytes(rng.getrandbits(8) for _ in range((w + 7) // 8 * h))
        img, bits = Image.frombytes("1", (w, h), data), Bits.frombytes((w, h), data)
        assert bits.tobytes() == img.tobytes()
        assert bits.getbbox() == img.getbbox()
        box = (rng.randint(-5, w), rng.randint(-3, h), rng.randint(0, w + 5), rng.randint(0, h + 3))
        box = (box[0], box[1], max(box[0], box[2]), max(box[1], box[3]))
        assert bits.crop(box).tobytes() == img.crop(box).tobytes()
        sw, sh = rng.randint(1, 30), rng.randint(1, 20)
        src = bytes(rng.getrandbits(8) for _ in range((sw + 7) // 8 * sh))
        at = (rng.randint(-sw, w), rng.randint(-sh, h))
        img.paste(Image.frombytes("1", (sw, sh), src), at)
        bits.paste(Bits.frombytes((sw, sh), src), at)
        assert bits.tobytes() == img.tobytes()
        fill = (
            rng.randint(-2, w),
            rng.randint(-2, h),
            rng.randint(0, w + 2),
            rng.randint(0, h + 2),
        )
        value = rng.randint(0, 1)
        if fill[2] > fill[0] and fill[3] > fill[1]:
            img.paste(value, fill)
            bits.paste(value, fill)
        assert bits.tobytes() == img.tobytes()
        assert bits.getbbox() == img.getbbox()


TEXTS = ["一窗通办", "综合业务 一窗通办", "预约 绿色通道\t快速专窗", "Ωζ", "办税服务厅（天河）", ""]


@pytest.mark.parametrize(
    ("size", "message", "ticket_chars"),
    [
        ((128, 16), None, 4),
        ((128, 16), 0, 5),
        ((64, 16), None, 5),
        ((64, 32), 1, 4),
        ((96, 16), 2, 4),
        ((128, 32), 3, 4),
    ],  # 3: not in the subset (boxes),
)
def test_strips_are_byte_identical_either_way(
    size: tuple[int, int], message: int | None, ticket_chars: int
) -> None:
    text = None if message is None else TEXTS[message]
    spec = StripSpec(*size, 15, message=text, ticket_chars=ticket_chars)
    fonts = BitmapFont([BUNDLED_FONT]), BitmapFont([BUNDLED_FONT], pillow=False)
    strips = [WindowStrip(spec, f) for f in fonts]
    states = [
        (WindowStatus.OPEN, None),
        (WindowStatus.OPEN, "A023"),
        (WindowStatus.OPEN, "B1234"),
        (WindowStatus.PAUSED, "B1234"),
        (WindowStatus.OPEN, "Z0099"),
        (WindowStatus.CLOSED, None),
    ]
    t = 0.0
    for rev, (status, ticket) in enumerate(states, 1):
        state = WindowState(rev=rev, window=15, zone="z", status=status, ticket=ticket)
        for strip in strips:
            strip.update(state, t)
            strip.set_online(rev % 3 != 0)
            if rev == 4:
                strip.note_call(CallEvent(ticket="B1234", service="x", window=15, zone="z"), t)
        for step in range(40):
            at = t + step * 0.0937
            pil, bits = (s.frame_at(at) for s in strips)
            assert isinstance(bits, Bits)
            assert bits.tobytes() == pil.tobytes(), (status, ticket, at)
            assert to_bitmap(bits) == to_bitmap(pil)
            assert strips[0].next_change(at) == strips[1].next_change(at)
        t += 4.0


def test_a_window_agent_with_serial_strips_imports_neither_pillow_nor_the_voice() -> None:
    code = (
        "import sys, edge.agent, edge.panels\n"
        "from displays.fonts import default_bits_font\n"
        "from displays.strip import StripSpec, WindowStrip\n"
        "WindowStrip(StripSpec(128, 16, 7), default_bits_font()).frame_at(0.0)\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] == 'PIL' or m == 'displays.voice'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
