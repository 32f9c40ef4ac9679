"""Checking hall-file values one at a time, and saying what is wrong and where.

The pieces ``hallq.config``'s models are built from: value checkers used as pydantic
``BeforeValidator``s (each raises a ValueError whose message is what a field engineer
reads), the ``Annotated`` types made from them, and the problem collector that lets a
cross-check report several problems, each at its own TOML key path.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationInfo

from hallq.errors import TopicError
from hallq.topics import check_id

Loc = tuple[str | int, ...]

__all__ = [
    "WEEKDAY_NAMES",
    "ClockTime",
    "Collector",
    "Intervals",
    "PathT",
    "Pin",
    "Problems",
    "Secret",
    "Text",
    "Weight",
    "baud_rate",
    "bounds_text",
    "broker_url",
    "calendar_date",
    "clock_time",
    "date_list",
    "days_in_month",
    "deadlines",
    "hash_key",
    "http_url",
    "id_check",
    "int_range",
    "intervals",
    "led_side",
    "log_level_name",
    "path_text",
    "plain_text",
    "positive_number",
    "problem",
    "resolve_path",
    "secret_value",
    "serial_port",
    "show",
    "ticket_prefix",
    "timezone_name",
    "toml_path",
]

_MIN_HASH_KEY_LEN = 16
_STANDARD_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
_YM = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_YMD = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# --- problems and how they are reported -------------------------------------------------


class Problems(ValueError):
    """Carries problems with their own key paths through pydantic.

    pydantic reports a validator's ValueError at the validator's location; a cross-check
    that finds several problems deeper down needs each reported at its own path.
    """

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__(
            "; ".join(f"{toml_path(loc)}: {msg}" if loc else msg for loc, msg in problems)
        )


def problem(message: str, *loc: str | int) -> Problems:
    return Problems([(loc, message)])


class Collector:
    """Gathers every problem of one validator so a single run reports them all."""

    def __init__(self) -> None:
        self.items: list[tuple[Loc, str]] = []

    def add(self, message: str, *loc: str | int) -> None:
        self.items.append((loc, message))

    def raise_any(self) -> None:
        if self.items:
            raise Problems(self.items)


def toml_path(loc: Loc) -> str:
    out = ""
    for seg in loc:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            key = seg if _BARE_KEY.fullmatch(seg) else json.dumps(seg, ensure_ascii=False)
            out += f".{key}" if out else key
    return out


def show(value: object) -> str:
    """Spell a found value the way it looks in TOML, short enough for one line."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return type(value).__name__


# --- value checkers used as BeforeValidators --------------------------------------------


def bounds_text(lo: float | None, hi: float | None, *, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"> {lo} and <= {hi}" if lo_open else f"between {lo} and {hi}"
    if lo is not None:
        return f"> {lo}" if lo_open else f">= {lo}"
    return f"<= {hi}"


def int_range(lo: int | None, hi: int | None = None) -> Callable[[object], int]:
    def check(value: object) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (lo is not None and value < lo)
            or (hi is not None and value > hi)
        ):
            raise problem(f"expected an integer {bounds_text(lo, hi)}, got {show(value)}")
        return value

    return check


def positive_number(hi: float) -> Callable[[object], float]:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= hi:
            bounds = bounds_text(0, hi, lo_open=True)
            raise problem(f"expected a number {bounds}, got {show(value)}")
        return float(value)

    return check


def id_check(what: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str):
            raise problem(f"expected a string id, got {show(value)}")
        try:
            return check_id(value, what)
        except TopicError as exc:
            raise problem(str(exc)) from exc

    return check


def plain_text(value: object) -> str:
    if not isinstance(value, str):
        raise problem(f"expected a string, got {show(value)}")
    if not value.strip():
        raise problem("must not be empty")
    return value.strip()


def secret_value(value: object) -> object:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        raise problem("expected a string (value not shown)")
    if not value.strip():
        raise problem("must not be empty")
    return value


def hash_key(value: object) -> object:
    value = secret_value(value)
    if isinstance(value, str) and len(value) < _MIN_HASH_KEY_LEN:
        raise problem(
            f"must be at least {_MIN_HASH_KEY_LEN} characters: ID-card numbers are guessable, "
            "so only a long random key keeps their hashes private (value not shown)"
        )
    return value


def path_text(value: object) -> object:
    if isinstance(value, os.PathLike):
        return value
    if not isinstance(value, str):
        raise problem(f"expected a path string, got {show(value)}")
    if not value.strip():
        raise problem("must not be empty")
    return value


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are taken from the config file's folder, as a reader of it expects."""
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return value


def clock_time(value: object) -> time:
    if isinstance(value, time) and value.tzinfo is None:
        return value.replace(second=0, microsecond=0)
    if isinstance(value, str) and (m := _HHMM.fullmatch(value.strip())):
        return time(int(m.group(1)), int(m.group(2)))
    raise problem(f'expected a local time "HH:MM", got {show(value)}')


def intervals(value: object) -> list[tuple[time, time]]:
    if not isinstance(value, list) or not value:
        raise problem(f'expected an array of ["HH:MM", "HH:MM"] pairs, got {show(value)}')
    out: list[tuple[time, time]] = []
    problems = Collector()
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            problems.add(f'expected a pair ["HH:MM", "HH:MM"], got {show(pair)}', i)
            continue
        try:
            start, end = clock_time(pair[0]), clock_time(pair[1])
        except Problems as exc:
            problems.add(exc.problems[0][1], i)
            continue
        if end <= start:
            problems.add(f"ends ({end:%H:%M}) before it starts ({start:%H:%M})", i)
        elif out and start < out[-1][1]:
            problems.add(
                f"starts at {start:%H:%M}, before the previous interval ends "
                f"({out[-1][1]:%H:%M}); list intervals in order, without overlap",
                i,
            )
        out.append((start, end))
    problems.raise_any()
    return out


WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def calendar_date(value: object) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _YMD.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise problem(f"{value.strip()!r} is not a calendar date") from None
    raise problem(f"expected a date YYYY-MM-DD (e.g. 2026-10-01), got {show(value)}")


def date_list(weekend_only: bool) -> Callable[[object], list[date]]:
    """A list of dates (TOML dates or "YYYY-MM-DD" strings), each listed once; with
    ``weekend_only`` every one a Saturday or Sunday (a 调休 working day)."""

    def check(value: object) -> list[date]:
        if not isinstance(value, list):
            raise problem(f"expected an array of dates YYYY-MM-DD, got {show(value)}")
        out: list[date] = []
        seen: dict[date, int] = {}
        problems = Collector()
        for i, item in enumerate(value):
            try:
                day = calendar_date(item)
            except Problems as exc:
                problems.add(exc.problems[0][1], i)
                continue
            if day in seen:
                problems.add(f"{day} is listed twice (also at [{seen[day]}])", i)
                continue
            if weekend_only and day.weekday() < 5:
                problems.add(
                    f"{day} is a {WEEKDAY_NAMES[day.weekday()]}: extra_workdays are the "
                    "Saturdays and Sundays the hall opens (调休); a weekday is a working day "
                    "already",
                    i,
                )
                continue
            seen[day] = i
            out.append(day)
        problems.raise_any()
        return sorted(out)

    return check


def days_in_month(year: int, month: int) -> int:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return (nxt - timedelta(days=1)).day


def deadlines(value: object) -> dict[str, int]:
    """``{"YYYY-MM": day}``: the day of that month its filing deadline falls on."""
    if not isinstance(value, dict):
        raise problem(f'expected a table of "YYYY-MM" = day of month, got {show(value)}')
    out: dict[str, int] = {}
    problems = Collector()
    for key, day in value.items():
        m = _YM.fullmatch(key.strip())
        if not m:
            problems.add(
                f'expected a month "YYYY-MM" (e.g. "2026-10") as the key, got {key!r}', key
            )
            continue
        year, month = int(m.group(1)), int(m.group(2))
        last = days_in_month(year, month)
        if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= last:
            problems.add(
                f"expected a day of the month between 1 and {last} "
                f"({year}-{month:02d} has {last} days), got {show(day)}",
                key,
            )
            continue
        out[f"{year}-{month:02d}"] = day
    problems.raise_any()
    return dict(sorted(out.items()))


def timezone_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise problem(f"expected an IANA time zone name, got {show(value)}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise problem(
            f"unknown time zone {value!r}: use an IANA name such as 'Asia/Shanghai'"
        ) from None
    return value


def ticket_prefix(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]", value):
        raise problem(f"expected one upper-case letter A-Z, got {show(value)}")
    return value


def log_level_name(value: object) -> object:
    if isinstance(value, str) and value.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"):
        return value.upper()
    return value


def http_url(value: object) -> str:
    if (
        not isinstance(value, str)
        or urlsplit(value).scheme not in ("http", "https")
        or not (urlsplit(value).hostname)
    ):
        raise problem(f"expected an http:// or https:// URL, got {show(value)}")
    return value


def broker_url(value: object) -> str:
    if not isinstance(value, str):
        raise problem(f"expected an mqtt:// or mqtts:// URL, got {show(value)}")
    parts = urlsplit(value.strip())
    if "@" in parts.netloc:
        raise problem(
            "must not carry credentials: set broker.username and HALLQ_BROKER_PASSWORD "
            "(or broker.password_file) instead (value not shown)"
        )
    if parts.scheme not in ("mqtt", "mqtts"):
        raise problem(f"expected an mqtt:// or mqtts:// URL, got {show(value)}")
    if not parts.hostname:
        raise problem(f"has no host name, got {show(value)}")
    try:
        port = parts.port
    except ValueError:
        raise problem(f"has a bad port, got {show(value)}") from None
    if port == 0:
        raise problem(f"has a bad port, got {show(value)}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise problem(f"must be scheme://host[:port] only, got {show(value)}")
    return value.strip()


def serial_port(value: object) -> str:
    if isinstance(value, str) and (
        re.fullmatch(r"/dev/\S+", value)
        or re.fullmatch(r"(socket|rfc2217)://[^\s:/]+:\d{1,5}", value)
        or re.fullmatch(r"sim(:[a-z0-9_-]+)?", value)
    ):
        return value
    raise problem(
        'expected a device path ("/dev/ttyUSB0"), a network port ("socket://host:4001", '
        f'"rfc2217://host:4001") or "sim", got {show(value)}'
    )


def baud_rate(value: object) -> int:
    if isinstance(value, bool) or value not in _STANDARD_BAUDS:
        rates = ", ".join(map(str, _STANDARD_BAUDS))
        raise problem(f"expected a standard baud rate ({rates}), got {show(value)}")
    assert isinstance(value, int)
    return value


def led_side(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value % 8 or not 8 <= value <= 512:
        raise problem(f"expected a multiple of 8 between 8 and 512, got {show(value)}")
    return value


Text = Annotated[str, BeforeValidator(plain_text)]
Secret = Annotated[SecretStr, BeforeValidator(secret_value)]
PathT = Annotated[Path, BeforeValidator(path_text), AfterValidator(resolve_path)]
ClockTime = Annotated[time, BeforeValidator(clock_time)]
Intervals = Annotated[list[tuple[time, time]], BeforeValidator(intervals)]
Pin = Annotated[int, BeforeValidator(int_range(0, 27))]
Weight = Annotated[float, BeforeValidator(positive_number(10))]
