"""Every fixed string the default layouts draw, in one place.

The bundled font subset is cut from these (see ``displays.subset_font``), so a string added
here is drawable on a board without the system Unifont once the subset is regenerated;
``tests/test_displays_fonts.py`` fails until it is.
"""

from __future__ import annotations

__all__ = [
    "CALL_COMPACT",
    "CALL_FULL",
    "COMFORT",
    "COMFORT_LEVELS",
    "EXTRA_TEXT",
    "IDLE",
    "PAUSED",
    "SEPARATOR",
    "SERVING",
    "WAITING",
    "WELCOME",
    "fixed_text",
]

CALL_FULL = "请{ticket}号到{window}号窗口"
CALL_COMPACT = "{ticket}→{window}"
WAITING = "{service} 等候{count}人"
COMFORT = "办税舒适度：{level}"
COMFORT_LEVELS = ("较少", "适中", "较多")
SERVING = "请{ticket}号"
PAUSED = "暂停服务"
IDLE = "{window}号窗口"
WELCOME = "欢迎光临"
SEPARATOR = "\u3000\u3000"  # two ideographic spaces between ticker items (32 px)

# Words a hall commonly puts in notices and window messages, and full-width punctuation.
EXTRA_TEXT = (
    "请到号窗口办理暂停服务等候人数当前正在叫号过号重新取号预约绿色通道快速专窗"
    "一窗通办综合业务咨询欢迎光临谢谢合作请稍候系统维护中午休息下午上午开始结束时间"
    "周一二三四五六日"
    "，。：；！？、（）《》“”‘’—…·　"
    "←↑→↓"
)


def fixed_text() -> str:
    """The characters of every template and word above, without the placeholders' names."""
    parts = [CALL_FULL, CALL_COMPACT, WAITING, COMFORT, SERVING, PAUSED, IDLE, WELCOME]
    text = "".join(_without_fields(p) for p in parts)
    return text + "".join(COMFORT_LEVELS) + SEPARATOR + EXTRA_TEXT


def _without_fields(template: str) -> str:
    out, depth = [], 0
    for ch in template:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)
