"""Show a simulation report: rich tables for the terminal, a PNG chart drawn with Pillow.

Pillow is already a dependency (the boards' renderer), so the chart needs nothing heavy
like matplotlib on a hall server: two panels -- tickets waiting over the day, and the mean
wait of tickets by the quarter hour they were issued -- one line per policy.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from rich.console import Group
from rich.table import Table
from rich.text import Text

from coordinator.simulation.report import STATS, SimulationReport

COLOURS = {"fifo": (214, 69, 65), "hallq": (38, 120, 178), "pool": (90, 160, 80)}
EXTRA = [(150, 100, 180), (230, 150, 30), (120, 120, 120)]


def render_report(report: SimulationReport) -> Group:
    """The overall table (one row per policy) and mean wait per service."""
    day = (
        "average filing-period day"
        if report.day_of_month is None
        else f"day {report.day_of_month} of the month"
    )
    head = Text(
        f"{report.hall}: {report.volume:.0f} arrivals expected ({day}), "
        f"{report.arrivals.text(0)} drawn, {report.replications} replication(s), "
        f"seed {report.seed}, {report.core_kind} core, {report.wall_s:.1f} s"
    )
    overall = Table(title="wait (min), mean ± 95% CI over days")
    overall.add_column("policy")
    for s in STATS:
        overall.add_column(s, justify="right")
    overall.add_column("overtime min", justify="right")
    overall.add_column("util", justify="right")
    overall.add_column("turned away", justify="right")
    for p in report.policies.values():
        util = sum(e.mean for e in p.utilisation.values()) / max(1, len(p.utilisation))
        overall.add_row(
            p.name,
            *(p.waits["all"][s].text() for s in STATS),
            p.overtime_min.text(1),
            f"{util:.0%}",
            f"{sum(p.turned_away.values()):.0f}",
        )
    per_service = Table(title="mean wait per service (min)")
    per_service.add_column("service")
    for p in report.policies.values():
        per_service.add_column(p.policy, justify="right")
    services = [k for k in next(iter(report.policies.values())).waits if k != "all"]
    for c in services:
        per_service.add_row(
            c,
            *(
                _cell(p.waits[c]["mean"].mean, p.waits[c]["mean"].half)
                for p in report.policies.values()
            ),
        )
    parts: list[Text | Table] = [head, overall, per_service]
    sites = list(next(iter(report.policies.values())).sites)
    if sites:  # each building's own queues: a hall-wide mean hides the busy one
        per_site = Table(title="mean wait per building (办税点, min)")
        per_site.add_column("site")
        for p in report.policies.values():
            per_site.add_column(p.policy, justify="right")
        for site in sites:
            per_site.add_row(
                site,
                *(
                    _cell(p.sites[site]["mean"].mean, p.sites[site]["mean"].half)
                    for p in report.policies.values()
                ),
            )
        parts.append(per_site)
    for p in report.policies.values():
        notes = []
        if p.transferred.mean > 0:
            notes.append(f"{p.transferred.text(0)} transferred a day")
        if p.booked:
            notes.append(
                f"booked taxpayers wait {p.booked['mean'].text()} min from their "
                f"slot's start (p95 {p.booked['p95'].mean:.1f})"
            )
        if notes:
            parts.append(Text(f"{p.policy}: " + "; ".join(notes)))
    return Group(*parts)


def _cell(mean: float, half: float) -> str:
    return "-" if math.isnan(mean) else f"{mean:.2f} ± {half:.2f}"


def save_chart(
    report: SimulationReport, path: str | Path, *, size: tuple[int, int] = (960, 640)
) -> Path:
    """Write the queue-length and wait-over-the-day chart as PNG to ``path``."""
    path = Path(path)
    width, height = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text(
        (10, 6),
        f"{report.hall}: {report.volume:.0f} arrivals/day, "
        f"{report.replications} day(s), seed {report.seed}",
        fill="black",
        font=font,
    )
    panel_h = (height - 100) // 2
    series_q = {k: p.queue for k, p in report.policies.items()}
    series_w = {k: p.wait_by_issue for k, p in report.policies.items()}
    hours = [h for s in (*series_q.values(), *series_w.values()) for h, _ in s]
    x0, x1 = (min(hours), max(hours)) if hours else (9.0, 17.0)
    x0, x1 = math.floor(x0), max(math.ceil(x1), math.floor(x0) + 1)
    _panel(draw, font, (60, 30, width - 20, 30 + panel_h), series_q, (x0, x1), "tickets waiting")
    _panel(
        draw,
        font,
        (60, 60 + panel_h, width - 20, 60 + 2 * panel_h),
        series_w,
        (x0, x1),
        "mean wait (min) by issue time",
    )
    lx = 70
    for i, k in enumerate(report.policies):
        colour = COLOURS.get(k, EXTRA[i % len(EXTRA)])
        draw.line((lx, height - 10, lx + 20, height - 10), fill=colour, width=3)
        draw.text((lx + 24, height - 16), report.policies[k].name, fill="black", font=font)
        lx += 40 + int(draw.textlength(report.policies[k].name, font=font))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def _panel(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    box: tuple[int, int, int, int],
    series: dict[str, list[tuple[float, float]]],
    xrange: tuple[float, float],
    label: str,
) -> None:
    left, top, right, bottom = box
    ymax = max([v for s in series.values() for _, v in s] + [1.0])
    ymax = _nice(ymax)
    draw.rectangle(box, outline=(80, 80, 80))
    draw.text((left + 6, top + 4), label, fill="black", font=font)
    x0, x1 = xrange

    def xy(h: float, v: float) -> tuple[float, float]:
        return (
            left + (h - x0) / (x1 - x0) * (right - left),
            bottom - v / ymax * (bottom - top - 18),
        )

    for hour in range(int(x0), int(x1) + 1):
        x = xy(hour, 0)[0]
        draw.line((x, bottom, x, bottom + 4), fill=(80, 80, 80))
        draw.text((x - 10, bottom + 5), f"{hour:02d}:00", fill=(60, 60, 60), font=font)
    for i in range(5):
        v = ymax * i / 4
        y = xy(x0, v)[1]
        draw.line((left - 4, y, left, y), fill=(80, 80, 80))
        draw.line((left, y, right, y), fill=(235, 235, 235))
        draw.text((left - 40, y - 6), f"{v:g}", fill=(60, 60, 60), font=font)
    for i, (k, pts) in enumerate(series.items()):
        colour = COLOURS.get(k, EXTRA[i % len(EXTRA)])
        for run in _runs(pts):
            if len(run) >= 2:
                draw.line([xy(h, v) for h, v in run], fill=colour, width=2)


def _runs(pts: list[tuple[float, float]], gap_h: float = 0.5) -> list[list[tuple[float, float]]]:
    """Split a series where points are missing (lunch: nobody issued), so no line bridges
    the break and suggests waits that nobody had."""
    runs: list[list[tuple[float, float]]] = []
    for p in pts:
        if runs and p[0] - runs[-1][-1][0] <= gap_h:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _nice(v: float) -> float:
    """Round an axis maximum up to 1, 2 or 5 times a power of ten."""
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 5, 10):
        if v <= m * exp:
            return float(m * exp)
    return float(10 * exp)
