"""The test halls: the small hall for coordinator tests (3 services, 4 windows, one
window agent, one dispenser, a board agent), and the one-window hall tool tests fill with
the agents they need."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from hallq.config import HallConfig, parse_config

SMALL_HALL = """
[hall]
id = "test-hall"
name = "测试办税服务厅"
timezone = "Asia/Shanghai"
reset_time = "03:00"
open_hours = [["08:00", "18:00"]]

[coordinator]
max_recalls = 2
person_daily_limit = 2
board_calls = 5
{coordinator_extra}

[[zones]]
id = "hall-1"
name = "第一办税厅"
site = "main"

[[services]]
code = "tax-filing"
name = "申报纳税"
prefix = "A"
wait_target_min = 10

[[services]]
code = "invoice"
name = "发票办理"
prefix = "B"
daily_cap = 5
warn_at = 3

[[services]]
code = "green"
name = "营改增绿色通道"
prefix = "G"
priority = "green"
hours = [["09:00", "12:00"]]

[[windows]]
number = 1
zone = "hall-1"
all_services = true

[[windows]]
number = 2
zone = "hall-1"
skills = {{ invoice = 2.0 }}

[[windows]]
number = 3
zone = "hall-1"
skills = {{ tax-filing = 1.0 }}

[[windows]]
number = 4
zone = "hall-1"
skills = {{ tax-filing = 1.0, invoice = 1.0 }}

[[agents]]
id = "pi-w1"
role = "window"

[[agents.devices]]
id = "pad-1"
kind = "call_pad"
window = 1
serial = {{ port = "/dev/ttyUSB0", address = 1 }}

[[agents.devices]]
id = "pad-2"
kind = "call_pad"
window = 2
serial = {{ port = "/dev/ttyUSB0", address = 2 }}

[[agents.devices]]
id = "rate-1"
kind = "rating_pad"
window = 1
serial = {{ port = "/dev/ttyUSB0", address = 11 }}

[[agents]]
id = "pi-d1"
role = "dispenser"

[[agents.devices]]
id = "keys-1"
kind = "keypad"
services = ["tax-filing", "invoice", "green"]
serial = {{ port = "/dev/ttyUSB0", address = 1 }}

[[agents.devices]]
id = "printer-1"
kind = "printer"
serial = {{ port = "/dev/ttyUSB1", baud = 19200 }}
"""

BOARD_AGENT = """
[[agents]]
id = "pi-b1"
role = "board"

[[agents.devices]]
id = "main-board"
kind = "led_max7219"
spi = {{ port = 0, device = 0 }}
led = {{ width = 128, height = 16 }}

[[agents.devices]]
id = "voice-1"
kind = "speaker"
"""

TZ = dt.timezone(dt.timedelta(hours=8))


def midday_zone() -> str:
    """An Etc/GMT zone where it is about noon now: a real-time test run at any hour of
    the day meets neither the closed minute nor the end of a hall day."""
    hours_east = (12 - dt.datetime.now(dt.UTC).hour + 12) % 24 - 12
    return "UTC" if hours_east == 0 else f"Etc/GMT{'-' if hours_east > 0 else '+'}{abs(hours_east)}"


# its ``security`` for a test whose one dispenser stands for a crowd: it issues tickets as
# fast as it can (at a clock standing still), past what one kiosk may (issue_rate_per_min)
UNPACED = "issue_rate_per_min = 100000\nissue_burst = 100000\n"


def small_hall_text(
    broker_url: str | None = None,
    state_dir: str | None = None,
    all_day: bool = False,
    security: str = "",
    **coordinator: Any,
) -> str:
    """The small hall as TOML; ``all_day`` opens it round the clock for real-time tests;
    ``security`` is its ``[security]`` table's body."""
    extra = "\n".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}"
        for k, v in coordinator.items()
    )
    text = SMALL_HALL.format(coordinator_extra=extra) + BOARD_AGENT.format()
    if all_day:  # closed only in the minute of the reset, half a day away in midday_zone()
        text = text.replace(
            'timezone = "Asia/Shanghai"\nreset_time = "03:00"\nopen_hours = [["08:00", "18:00"]]',
            f'timezone = "{midday_zone()}"\nreset_time = "23:59"\n'
            'open_hours = [["00:00", "23:59"]]',
        )
        assert "23:59" in text, "SMALL_HALL's [hall] no longer reads as all_day expects"
    if broker_url:
        text += f'\n[broker]\nurl = "{broker_url}"\nkeepalive = 5\n'
    if state_dir:
        text += f'\n[runtime]\nstate_dir = "{state_dir}"\n'
    if security:
        text += f"\n[security]\n{security}"
    return text


def two_site_hall_text(broker_url: str | None = None, state_dir: str | None = None) -> str:
    """The small hall with window 4 in a branch building, and a dispenser at each site:
    pi-d1 (every service) in the main one, pi-d2 (tax filing) at the branch."""
    text = small_hall_text(broker_url, state_dir).replace(
        '[[windows]]\nnumber = 4\nzone = "hall-1"',
        '[[zones]]\nid = "branch-1"\nname = "分办税点"\nsite = "branch"\n\n'
        '[[windows]]\nnumber = 4\nzone = "branch-1"',
    )
    dispenser = 'id = "pi-d1"\nrole = "dispenser"'
    text = text.replace(dispenser, dispenser + '\nsite = "main"')
    board = 'id = "pi-b1"\nrole = "board"'  # (its boards have no zone: they show main's)
    text = text.replace(board, board + '\nsite = "main"')
    return text + (
        '\n[[agents]]\nid = "pi-d2"\nrole = "dispenser"\nsite = "branch"\n\n'
        '[[agents.devices]]\nid = "keys-2"\nkind = "keypad"\nservices = ["tax-filing"]\n'
        'serial = { port = "/dev/ttyUSB3", address = 1 }\n'
    )


def small_hall(
    broker_url: str | None = None,
    state_dir: str | None = None,
    all_day: bool = False,
    security: str = "",
    **coordinator: Any,
) -> HallConfig:
    text = small_hall_text(broker_url, state_dir, all_day, security, **coordinator)
    return parse_config(text, "small-hall.toml")


def at(hour: int, minute: int = 0, second: float = 0.0, day: int = 30) -> float:
    """Epoch seconds of a local (UTC+8) time on 2026-11-30, or ``day - 30`` days later."""
    base = dt.datetime(2026, 11, 30, hour, minute, tzinfo=TZ) + dt.timedelta(days=day - 30)
    return base.timestamp() + second


ONE_WINDOW_HALL = """
[hall]
id = "{hall_id}"
name = "测试厅"
timezone = "Asia/Shanghai"

[broker]
url = "{broker_url}"

[[zones]]
id = "z1"
name = "一厅"
site = "main"

[[services]]
code = "tax"
name = "申报纳税"
prefix = "A"

[[windows]]
number = 1
zone = "z1"
all_services = true
"""


def one_window_hall(
    hall_id: str, agents: str, broker_url: str, state_dir: str | Path | None = None
) -> HallConfig:
    """The smallest hall (one zone, one service "tax", window 1) with ``agents`` (TOML
    ``[[agents]]`` tables) added: for tools that look at devices, not at queues."""
    text = ONE_WINDOW_HALL.format(hall_id=hall_id, broker_url=broker_url)
    if state_dir is not None:
        text += f'\n[runtime]\nstate_dir = "{state_dir}"\n'
    return parse_config(text + agents, f"{hall_id}.toml")
