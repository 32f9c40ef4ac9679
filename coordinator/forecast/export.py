"""The comfort index for people: a terminal table, a CSV and a PNG for the WeChat account.

The PNG is a calendar heat map (one row per day, one cell per open hour, coloured by
level) drawn with Pillow, like the simulator's chart, with the boards' bundled Unifont
subset for the Chinese words, which holds every character used here. The CSV is UTF-8
with a BOM so the bureau's Excel opens it without mangling 较少/适中/较多.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from rich.console import Group
from rich.table import Table
from rich.text import Text

from coordinator.forecast.index import Forecast
from coordinator.forecast.levels import BUSY, MODERATE, QUIET, Level
from coordinator.simulation.policies import POLICY_NAMES

__all__ = ["CLOSED", "COLOURS", "export_csv", "export_png", "render_forecast"]

CLOSED = "休息"
COLOURS: dict[str, tuple[int, int, int]] = {
    QUIET: (96, 170, 90),
    MODERATE: (240, 180, 50),
    BUSY: (214, 69, 65),
    CLOSED: (205, 205, 205),
}
RICH_STYLE = {QUIET: "green", MODERATE: "yellow", BUSY: "red"}
CSV_HEADER = ("date", "hour", "forecast", "level", "wait_min")
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")  # in the bundled subset


def export_csv(forecast: Forecast, path: str | Path) -> Path:
    """One row per open hour: date, hour ("09:00"), forecast arrivals, level, and the
    mean simulated wait in minutes (empty when levels are by rates)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_HEADER)
        for r in forecast.hourly():
            out.writerow(
                (
                    r.day.isoformat(),
                    f"{r.hour:02d}:00",
                    f"{r.count:.1f}",
                    r.level,
                    "" if r.wait_min is None else f"{r.wait_min:.1f}",
                )
            )
    return path


def render_forecast(forecast: Forecast) -> Group:
    """Days as rows, open hours as columns, each cell the forecast count in its level's
    colour; the head says where the history came from and the thresholds."""
    th = forecast.thresholds
    waits = forecast.waits
    if waits is None:
        levels = (
            f"较少 below {th.quiet_per_hour:.0f}/h (wait < {th.quiet_wait_min:g} min), "
            f"较多 from {th.busy_per_hour:.0f}/h (wait >= {th.busy_wait_min:g} min); "
            f"edges from {th.method} waits: {th.basis}"
        )
    else:
        levels = (
            f"levels by simulated wait of the tickets issued in each hour "
            f"({waits.replications} days per forecast day, {POLICY_NAMES[waits.policy]}): "
            f"较少 under {th.quiet_wait_min:g} min, 较多 from {th.busy_wait_min:g} min"
        )
    head = Text(
        f"{forecast.cfg.hall.id}: comfort index {forecast.start} to "
        f"{forecast.days[-1]} from {forecast.source}; {levels}"
    )
    hours = sorted({s // 60 for s in forecast.slots})
    table = Table(title="forecast arrivals per hour")
    table.add_column("date")
    table.add_column("day", justify="center")
    for h in hours:
        table.add_column(f"{h:02d}", justify="right")
    table.add_column("total", justify="right")
    rows = {(r.day, r.hour): r for r in forecast.hourly()}
    for i, d in enumerate(forecast.days):
        if not forecast.is_open(d):
            table.add_row(d.isoformat(), CLOSED, *("" for _ in hours), "", style="dim")
            continue
        cells = [Text(f"{rows[d, h].count:.0f}", style=RICH_STYLE[rows[d, h].level]) for h in hours]
        level = forecast.day_level(d)
        table.add_row(
            d.isoformat(),
            Text(level, style=RICH_STYLE[level]),
            *cells,
            f"{forecast.mean[i].sum():.0f}",
        )
    return Group(head, table)


def chart_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The system Unifont when installed (every character), else the bundled subset cut
    for the boards (the level words, weekdays, digits), else Pillow's Latin default."""
    from displays.fonts import BUNDLED_FONT, find_unifont

    for path in (find_unifont(), BUNDLED_FONT):
        if path is None:
            continue
        try:
            return ImageFont.truetype(str(path), size)
        except OSError:
            continue
    return ImageFont.load_default()  # a stripped install: levels still told apart by colour


def export_png(forecast: Forecast, path: str | Path, *, cell: tuple[int, int] = (44, 20)) -> Path:
    """The monthly picture for the bureau's WeChat account (see :func:`heat_map`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    heat_map(forecast, cell=cell).save(path, format="PNG")
    return path


def png_bytes(forecast: Forecast) -> bytes:
    """The heat map as PNG, for the dashboard."""
    out = io.BytesIO()
    heat_map(forecast).save(out, format="PNG")
    return out.getvalue()


def heat_map(forecast: Forecast, *, cell: tuple[int, int] = (44, 20)) -> Image.Image:
    """A row per day (closed days grey), a cell per open hour in its level's colour with
    the expected wait in minutes (or, with levels by rate, the forecast count), the day's
    level at the row's end, and a legend saying which number the cells hold.

    A taxpayer choosing when to come reads the wait, not the crowd: with levels by
    simulated wait, a quieter hour after a peak can be the red one."""
    hours = sorted({s // 60 for s in forecast.slots})
    cw, ch = cell
    left, top = 130, 56
    width = max(left + cw * len(hours) + 70, 580)
    height = top + ch * len(forecast.days) + 40
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = chart_font(16)
    title = f"{forecast.cfg.hall.name} 办税舒适度 {forecast.start} - {forecast.days[-1]}"
    draw.text((10, 8), title, fill="black", font=font)
    for k, h in enumerate(hours):
        draw.text((left + k * cw + 6, top - 20), f"{h:02d}:00", fill=(60, 60, 60), font=font)
    rows = {(r.day, r.hour): r for r in forecast.hourly()}
    for i, d in enumerate(forecast.days):
        y = top + i * ch
        draw.text((8, y + 2), f"{d:%m-%d} {WEEKDAYS[d.weekday()]}", fill="black", font=font)
        is_open = forecast.is_open(d)
        for k, h in enumerate(hours):
            box = (left + k * cw, y, left + (k + 1) * cw - 2, y + ch - 2)
            row = rows.get((d, h))
            level: str = row.level if (is_open and row) else CLOSED
            draw.rectangle(box, fill=COLOURS[level])
            if row is not None and is_open:
                shown = row.count if row.wait_min is None else row.wait_min
                draw.text((box[0] + 3, y + 2), f"{shown:.0f}", fill="black", font=font)
        day: Level | str = forecast.day_level(d) if is_open else CLOSED
        draw.text((left + cw * len(hours) + 8, y + 2), day, fill=COLOURS[day], font=font)
    lx, ly = 10, height - 28
    for name in (QUIET, MODERATE, BUSY, CLOSED):
        draw.rectangle((lx, ly + 2, lx + 16, ly + 16), fill=COLOURS[name])
        draw.text((lx + 22, ly), name, fill="black", font=font)
        lx += 90
    by_wait = any(r.wait_min is not None for r in rows.values())
    draw.text(
        (lx + 10, ly),
        "数字: 预计等候分钟" if by_wait else "数字: 预计取号数",
        fill=(60, 60, 60),
        font=font,
    )
    return img
