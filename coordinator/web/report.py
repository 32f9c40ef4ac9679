"""The day report at close and the monthly one for the bureau, as printable HTML.

One page each, server-rendered (no script: it prints, saves as PDF from the browser, and
mails as a file): the day's waits by service and hour against the targets, every window's
throughput and counter time, the ratings, and the alerts acknowledged and actions taken
at the desk (from the audit log); the month's days and services with the figures a hall
publishes (业务量, 平均等候, 满意率).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from coordinator.web.desk import AUDIT_ZH, KIND_ZH
from coordinator.web.figures import DayFigures
from hallq.config import HallConfig

__all__ = ["day_report_html", "month_report_html", "satisfied_share"]

RATING_ZH = {4: "非常满意", 3: "满意", 2: "基本满意", 1: "不满意"}
WEEKDAY_ZH = "一二三四五六日"

_STYLE = """
body { font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif;
       margin: 1.2rem; color: #1d1d1f; font-size: 13px; }
h1 { font-size: 1.35rem; margin: 0 0 .2rem; } h2 { font-size: 1.05rem; margin: 1rem 0 .3rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #d2d2d7; padding: .15rem .35rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f5f5f7; }
.kpis { display: flex; flex-wrap: wrap; gap: .4rem 1.4rem; }
.kpis b { font-size: 1.2rem; }
.muted { color: #6e6e73; }
table.text td, table.text th { text-align: left; }
.ok { background: #d1f0d9; } .near { background: #ffe8cc; } .over { background: #fde2e4; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 0 1.2rem; }
nav { margin-bottom: .6rem; } nav a { margin-right: 1rem; }
@media print { nav { display: none; } body { margin: 0; } }
@page { size: A4; margin: 12mm; }
"""


def _min(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f}"


def satisfied_share(f: DayFigures) -> float | None:
    """Ratings of 满意 or better, as a share of all ratings (the figure halls publish)."""
    if not f.rated:
        return None
    return sum(n for r, n in f.ratings.items() if r >= 3) / f.rated


def target_zh(target: object, names: Mapping[str, str], detail: object = None) -> str:
    """An audit entry's target in words ("window 4" -> "4号窗口"), with what its detail
    says a supervisor needs: where a ticket was sent, how many tickets a 停用 voided (the
    desk's log said "转移 ticket A0244" and no more)."""
    text = str(target or "")
    kind, _, rest = text.partition(" ")
    more = detail if isinstance(detail, dict) else {}
    if kind == "window":
        return f"{rest}号窗口"
    if kind == "ticket":
        to = more.get("to_window")
        to = f"{to}号窗口" if to is not None else names.get(str(more.get("to_service")), "")
        return f"号码 {rest}" + (f" → {to}" if to else "")
    if kind == "device":
        voided = more.get("voided")
        return f"设备 {rest}" + (f", 作废 {voided} 个号" if voided else "")
    if kind == "alert":
        what, _, about = rest.partition(":")
        about, _, site = about.partition("@")
        named = f"{names.get(about, about)} {site}".strip()
        return f"告警 {KIND_ZH.get(what, what)} {named}".strip()
    if kind == "advice":
        ident, _, service = rest.partition(" ")
        return f"专窗建议 {ident} {names.get(service, service)}"
    if kind == "appointment":
        return f"预约 {rest}"
    return text


def _span(alert: Mapping[str, Any]) -> str:
    first, last = alert.get("first") or "", alert.get("last") or ""
    return last if first == last else f"{first}–{last}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _page(title: str, body: str, nav: str) -> str:
    return (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<nav>{nav}</nav>{body}</body></html>"
    )


def _kpis(f: DayFigures) -> str:
    items = [
        ("取号", f"{f.issued}", "人"),
        ("办结", f"{f.served}", "人"),
        ("过号", f"{f.no_show}", "人"),
        ("平均等候", _min(f.avg_wait_s), "分钟"),
        ("90% 等候", _min(f.p90_wait_s), "分钟"),
        ("平均办理", _min(f.avg_service_s), "分钟"),
        ("满意率", _pct(satisfied_share(f)), f"({f.rated} 人评价)"),
    ]
    return (
        '<div class="kpis">'
        + "".join(f"<span>{label} <b>{value}</b> {unit}</span>" for label, value, unit in items)
        + "</div>"
    )


def day_report_html(
    cfg: HallConfig,
    f: DayFigures,
    actions: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    *,
    generated: str,
) -> str:
    """The day's one-page report. ``actions``: audit entries of the day (oldest first);
    ``alerts``: the desk's alerts when the report is made (today only)."""
    names = {s.code: s.name for s in cfg.services}
    targets = {s.code: s.wait_target_min for s in cfg.services}
    zones = {w.number: w.zone for w in cfg.windows}
    zone_names = {z.id: z.name for z in cfg.zones}
    day = f.day
    title = f"{cfg.hall.name} 日报 {day.isoformat()} (周{WEEKDAY_ZH[day.weekday()]})"
    out = [f"<h1>{escape(title)}</h1>", f'<p class="muted">生成于 {escape(generated)}</p>']
    out.append(_kpis(f))
    hours = sorted({h for by_hour in f.waits_by_hour.values() for h in by_hour})
    out.append("<h2>各业务分时段平均等候 (分钟, 括号内为叫号人数)</h2>")
    if hours:
        head = "".join(f"<th>{h}:00</th>" for h in hours)
        rows = []
        for code in [c for c in names if c in f.waits_by_hour]:
            cells = []
            for h in hours:
                n, wait = f.waits_by_hour[code].get(h, (0, 0.0))
                if not n:
                    cells.append("<td></td>")
                    continue
                ratio = wait / 60 / targets[code]
                cls = "ok" if ratio <= 0.8 else "near" if ratio <= 1 else "over"
                cells.append(f'<td class="{cls}">{wait / 60:.0f} <small>({n})</small></td>')
            issued, served, avg, p90 = f.services.get(code, (0, 0, None, None))
            rows.append(
                f"<tr><td>{escape(names[code])} <small class='muted'>目标 {targets[code]:g}"
                f"</small></td>{''.join(cells)}<td>{issued}</td><td>{served}</td>"
                f"<td>{_min(avg)}</td><td>{_min(p90)}</td></tr>"
            )
        out.append(
            f"<table><tr><th>业务</th>{head}<th>取号</th><th>办结</th><th>平均</th>"
            f"<th>90%</th></tr>{''.join(rows)}</table>"
        )
    else:
        out.append('<p class="muted">当天没有叫号</p>')
    out.append('<div class="cols"><div><h2>窗口办理量 (办结人数 · 办理小时)</h2>')
    rows = []
    per_row = 4
    for zid in [z.id for z in cfg.zones]:
        numbers = [n for n in sorted(f.windows) if zones.get(n) == zid]
        if not numbers:
            continue
        served_zone = sum(f.windows[n][0] for n in numbers)
        rows.append(
            f'<tr><th colspan="{per_row}">{escape(zone_names.get(zid, zid))} · '
            f"{served_zone} 人</th></tr>"
        )
        for i in range(0, len(numbers), per_row):
            cells = []
            for n in numbers[i : i + per_row]:
                served, busy = f.windows[n]
                cells.append(f"<td>{n}号 <b>{served}</b> · {busy / 3600:.1f}</td>")
            cells += ["<td></td>"] * (per_row - len(cells))
            rows.append(f"<tr>{''.join(cells)}</tr>")
    out.append(
        f'<table class="text">{"".join(rows)}</table>'
        if rows
        else '<p class="muted">没有窗口办结业务</p>'
    )
    out.append("</div><div><h2>评价</h2>")
    rows = [
        f"<tr><td>{RATING_ZH[r]}</td><td>{f.ratings.get(r, 0)}</td>"
        f"<td>{_pct(f.ratings.get(r, 0) / f.rated if f.rated else None)}</td></tr>"
        for r in (4, 3, 2, 1)
    ]
    out.append(f"<table><tr><th>评价</th><th>人数</th><th>占比</th></tr>{''.join(rows)}</table>")
    out.append("<h2>告警与处置</h2>")
    rows = [
        f"<tr><td>{escape(_span(a))}</td><td>{escape(str(a['kind_zh']))}</td>"
        f"<td>{escape(str(a['text']))}</td>"
        f"<td>{escape(str(a.get('acked_by') or '未处理'))}</td></tr>"
        for a in alerts
    ]
    rows += [
        f"<tr><td>{escape(str(e['time']))}</td>"
        f"<td>{escape(AUDIT_ZH.get(str(e['action']), str(e['action'])))}</td>"
        f"<td>{escape(target_zh(e.get('target'), names, e.get('detail')))}</td>"
        f"<td>{escape(str(e['user']))}"
        f"{'' if e['ok'] else ' (未成功)'}</td></tr>"
        for e in actions
        if e["action"] not in ("login", "logout")
    ]
    out.append(
        '<table class="text"><tr><th>时间</th><th>事项</th><th>内容</th><th>处理人</th></tr>'
        f"{''.join(rows)}</table>"
        if rows
        else '<p class="muted">当天没有告警和操作记录</p>'
    )
    out.append("</div></div>")
    month = day.strftime("%Y-%m")
    nav = (
        f'<a href="/supervisor">← 值班长</a><a href="?day={day - dt.timedelta(days=1)}">前一天</a>'
        f'<a href="?day={day + dt.timedelta(days=1)}">后一天</a><a href="?month={month}">月报</a>'
    )
    return _page(title, "".join(out), nav)


def month_report_html(
    cfg: HallConfig, month: dt.date, days: Sequence[DayFigures], *, generated: str
) -> str:
    """The month for the bureau: each open day, then each service over the month."""
    names = {s.code: s.name for s in cfg.services}
    title = f"{cfg.hall.name} 月报 {month.year} 年 {month.month} 月"
    out = [f"<h1>{escape(title)}</h1>", f'<p class="muted">生成于 {escape(generated)}</p>']
    issued = sum(d.issued for d in days)
    served = sum(d.served for d in days)
    waits = [(d.avg_wait_s, d.served) for d in days if d.avg_wait_s is not None]
    weight = sum(n for _, n in waits)
    avg = sum(w * n for w, n in waits) / weight if weight else None
    rated = sum(d.rated for d in days)
    satisfied = sum(n for d in days for r, n in d.ratings.items() if r >= 3)
    out.append(
        f'<div class="kpis"><span>办税日 <b>{len(days)}</b> 天</span>'
        f"<span>取号 <b>{issued}</b> 人</span><span>办结 <b>{served}</b> 人</span>"
        f"<span>平均等候 <b>{_min(avg)}</b> 分钟</span>"
        f"<span>满意率 <b>{_pct(satisfied / rated if rated else None)}</b> ({rated} 人评价)</span>"
        "</div>"
    )
    out.append("<h2>每日</h2>")
    rows = [
        f"<tr><td><a href='?day={d.day}'>{d.day.isoformat()}</a> 周{WEEKDAY_ZH[d.day.weekday()]}"
        f"</td><td>{d.issued}</td><td>{d.served}</td><td>{d.no_show}</td>"
        f"<td>{_min(d.avg_wait_s)}</td><td>{_min(d.p90_wait_s)}</td>"
        f"<td>{_min(d.avg_service_s)}</td><td>{_pct(satisfied_share(d))}</td></tr>"
        for d in days
    ]
    out.append(
        "<table><tr><th>日期</th><th>取号</th><th>办结</th><th>过号</th><th>平均等候</th>"
        f"<th>90% 等候</th><th>平均办理</th><th>满意率</th></tr>{''.join(rows)}</table>"
        if rows
        else '<p class="muted">这个月的事件日志里没有办税日</p>'
    )
    out.append("<h2>各业务</h2>")
    per: dict[str, list[float]] = {}
    for d in days:
        for code, (n_issued, n_served, wait, _p90) in d.services.items():
            acc = per.setdefault(code, [0, 0, 0.0, 0])
            acc[0] += n_issued
            acc[1] += n_served
            if wait is not None:
                acc[2] += wait * n_served
                acc[3] += n_served
    rows = [
        f"<tr><td>{escape(names.get(code, code))}</td><td>{int(a[0])}</td><td>{int(a[1])}</td>"
        f"<td>{_min(a[2] / a[3] if a[3] else None)}</td></tr>"
        for code, a in sorted(per.items(), key=lambda kv: -kv[1][0])
    ]
    out.append(
        "<table><tr><th>业务</th><th>取号</th><th>办结</th><th>平均等候 (分钟)</th></tr>"
        f"{''.join(rows)}</table>"
    )
    prev = (month.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    nxt = (month.replace(day=28) + dt.timedelta(days=4)).strftime("%Y-%m")
    nav = (
        f'<a href="/supervisor">← 值班长</a><a href="?month={prev}">上个月</a>'
        f'<a href="?month={nxt}">下个月</a>'
    )
    return _page(title, "".join(out), nav)
