"""The bureau's questions, asked of the city database's hourly rollup (``kpi_hourly``).

"How did every hall do this month" (by hall), "which days / hours / services were hard"
(by day, hour, service), and the monthly comfort index per hall: the share of each hall's
open hours whose tickets waited under a minute (较少), up to the seed hall's mean wait
(适中) or longer (较多) -- the same bands the comfort forecast uses, applied to the waits
that happened.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from coordinator.forecast.levels import BUSY_WAIT_MIN, QUIET_WAIT_MIN

if TYPE_CHECKING:
    import psycopg

By = Literal["hall", "day", "service", "hour"]
_COLUMN = {"hall": "hall_id", "day": "day", "service": "service", "hour": "hour"}
LEVELS = ("较少", "适中", "较多")


def kpis(
    conn: psycopg.Connection,
    by: By,
    start: dt.date,
    end: dt.date,
    *,
    hall: str | None = None,
    service: str | None = None,
) -> list[dict[str, Any]]:
    """Issued, called, finished, mean and worst wait, grouped ``by``, days start..end."""
    from psycopg import sql

    if by not in _COLUMN:
        raise ValueError(f"by must be one of {', '.join(_COLUMN)}, not {by!r}")
    column = sql.Identifier(_COLUMN[by])
    # the smallest rollup that holds the answer: no hour -> daily; no service -> per hall-hour
    if by != "hour":
        table = "kpi_daily"
    elif service is None:
        table = "kpi_hall_hour"
    else:
        table = "kpi_hourly"
    where = [sql.SQL("day BETWEEN %(start)s AND %(end)s")]
    if hall is not None:
        where.append(sql.SQL("hall_id = %(hall)s"))
    if service is not None:
        where.append(sql.SQL("service = %(service)s"))
    query = sql.SQL(
        "SELECT {col} AS key, sum(issued)::bigint, sum(called)::bigint, sum(finished)::bigint,"
        " sum(wait_sum_s) / nullif(sum(called), 0), max(wait_max_s) FROM {table}"
        " WHERE {where} GROUP BY {col} ORDER BY {col}"
    ).format(col=column, table=sql.Identifier(table), where=sql.SQL(" AND ").join(where))
    rows = conn.execute(
        query, {"start": start, "end": end, "hall": hall, "service": service}
    ).fetchall()
    return [
        {
            by: key.isoformat() if isinstance(key, dt.date) else key,
            "issued": issued,
            "called": called,
            "finished": finished,
            "avg_wait_min": None if avg is None else round(avg / 60, 2),
            "max_wait_min": None if worst is None else round(worst / 60, 2),
        }
        for key, issued, called, finished, avg, worst in rows
    ]


def level_of(wait_min: float) -> str:
    if wait_min < QUIET_WAIT_MIN:
        return LEVELS[0]
    return LEVELS[1] if wait_min < BUSY_WAIT_MIN else LEVELS[2]


@dataclass(frozen=True, slots=True)
class HallMonth:
    hall: str
    month: str
    hours: int  # open hours with at least one ticket called
    shares: tuple[float, float, float]  # 较少, 适中, 较多
    avg_wait_min: float
    issued: int

    @property
    def index(self) -> float:
        """One figure for ranking halls: 100 when every hour was 较少, 0 when all were 较多."""
        return round(100 * (self.shares[0] + self.shares[1] / 2), 1)


def comfort_month(conn: psycopg.Connection, month: dt.date) -> list[HallMonth]:
    """Each hall's month, classed hour by hour by the mean wait of the tickets issued then."""
    start = month.replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    rows = conn.execute(
        "SELECT hall_id, wait_sum_s / called / 60, issued, called"
        " FROM kpi_hall_hour WHERE day BETWEEN %s AND %s AND called > 0 ORDER BY hall_id",
        (start, end),
    ).fetchall()
    per: dict[str, list[tuple[float, int, int]]] = {}
    for hall, wait, issued, called in rows:
        per.setdefault(hall, []).append((float(wait), int(issued), int(called)))
    out = []
    for hall, hours in per.items():
        counts = [0, 0, 0]
        for wait, _, _ in hours:
            counts[LEVELS.index(level_of(wait))] += 1
        called = sum(c for _, _, c in hours)
        out.append(
            HallMonth(
                hall,
                start.strftime("%Y-%m"),
                len(hours),
                tuple(round(c / len(hours), 4) for c in counts),  # type: ignore[arg-type]
                round(sum(w * c for w, _, c in hours) / called, 2),
                sum(i for _, i, _ in hours),
            )
        )
    return sorted(out, key=lambda h: (-h.index, h.hall))


def comfort_csv(months: list[HallMonth]) -> str:
    """UTF-8 with a BOM, so the bureau's Excel shows 较少/适中/较多 (as the forecast's CSV)."""
    buf = io.StringIO()
    buf.write("\ufeff")
    w = csv.writer(buf)
    w.writerow(
        [
            "hall",
            "month",
            "comfort index",
            "open hours",
            "较少 %",
            "适中 %",
            "较多 %",
            "mean wait min",
            "tickets",
        ]
    )
    for h in months:
        w.writerow(
            [
                h.hall,
                h.month,
                h.index,
                h.hours,
                *(round(100 * s, 1) for s in h.shares),
                h.avg_wait_min,
                h.issued,
            ]
        )
    return buf.getvalue()


def comfort_png(months: list[HallMonth], title: str) -> bytes:
    """A bar per hall: its open hours split into 较少 / 适中 / 较多, best hall first."""
    from PIL import Image, ImageDraw

    from coordinator.forecast.export import chart_font  # Unifont: the level words

    colours = ((46, 160, 67), (230, 170, 30), (210, 60, 50))
    row_h, label_w, bar_w, top = 18, 150, 600, 40
    height = top + row_h * max(1, len(months)) + 30
    img = Image.new("RGB", (label_w + bar_w + 80, height), "white")
    draw = ImageDraw.Draw(img)
    font = chart_font(16)
    draw.text((10, 8), title, fill="black", font=font)
    for i, h in enumerate(months):
        y = top + i * row_h
        draw.text((10, y), h.hall[:18], fill="black", font=font)
        x = label_w
        for share, colour in zip(h.shares, colours, strict=True):
            w = round(bar_w * share)
            draw.rectangle((x, y + 2, x + w, y + row_h - 3), fill=colour)
            x += w
        draw.text((label_w + bar_w + 8, y), f"{h.index:5.1f}", fill="black", font=font)
    x = label_w
    for name, colour in zip(LEVELS, colours, strict=True):
        draw.rectangle((x, height - 22, x + 14, height - 8), fill=colour)
        draw.text((x + 18, height - 24), name, fill="black", font=font)
        x += 90
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
