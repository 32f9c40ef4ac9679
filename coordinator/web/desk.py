"""The supervisor desk's logic, apart from HTTP: what an action will do to the hall, which
actions would change nothing, errors in Chinese, alerts a person can work through and
express-window advice that can be applied or dismissed.

Everything here reads the engine through its public members (windows, services, the
queues' waiting counts, tickets); commands still go through ``Coordinator.execute``, the
path a pad's take, so each is logged and published like one.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coordinator.web import models as api
from hallq.messages import TicketState, WindowStatus

if TYPE_CHECKING:
    from coordinator.advice.live import Advice
    from coordinator.engine import Engine

__all__ = [
    "AUDIT_ZH",
    "KIND_ZH",
    "SEVERITY_ZH",
    "AdviceBook",
    "AlertBook",
    "error_zh",
    "impact",
    "no_change",
]

SEVERITY_ZH = {"info": "提示", "warning": "警告", "critical": "紧急"}
KIND_ZH = {
    "wait_over_target": "等候超时",
    "no_window": "无窗口办理",
    "device_offline": "设备离线",
    "device_unhealthy": "设备异常",
    "device_shared_id": "设备编号重复",
    "paper_low": "打印纸将尽",
    "emergency": "窗口紧急呼叫",
    "express_advice": "专窗建议",
    "daily_cap_near": "接近当日限额",
    "command_refused": "指令被拒",
    "client_flood": "设备消息过多",
    "issue_burst": "取号过快",
    "offline_while_connected": "离线票可疑",
    "console_burst": "主管台操作过快",
    "presence_forged": "冒充其他设备",
    "serve_burst": "结束号过快",
    "emergency_burst": "紧急呼叫过多",
    "storage_failed": "存储故障",
    "storage_recovered": "存储恢复",
}
ACTION_ZH = {
    "open": "开窗",
    "close": "关窗",
    "pause": "暂停",
    "resume": "恢复",
    "set_skills": "改业务",
    "finish": "办结",
}
# every action the audit log records, as the desk and the day report name it
AUDIT_ZH = {
    **ACTION_ZH,
    "window": "窗口操作",
    "login": "登录",
    "logout": "退出",
    "denied": "被拒绝的请求",
    "invite": "邀约",
    "invite_declined": "邀约被谢绝",
    "ack": "知悉告警",
    "advice_apply": "采纳专窗建议",
    "advice_dismiss": "忽略专窗建议",
    "advice_restore": "恢复原业务",
    "device": "设备操作",
    "suspend_device": "停用设备",
    "resume_device": "恢复设备",
    # a supervisor console's commands over MQTT (role "console")
    "call": "叫号",
    "recall": "重呼",
    "skip": "过号",
    "start": "开始办理",
    "park": "挂起",
    "emergency": "紧急呼叫",
    "call_ticket": "指定叫号",
    "reinstate": "恢复排队",
    "unpark": "取消挂起",
    "cancel": "取消号",
    "transfer": "转移",
    "rate": "评价",
}
DONE_ZH = {
    "open": "已开窗",
    "close": "已关窗",
    "pause": "已暂停",
    "resume": "已恢复",
    "set_skills": "业务已保存",
    "finish": "已办结",
}
STATUS_ZH = {"open": "开放", "paused": "暂停", "closed": "关闭"}


def error_zh(code: str, message: str, window: int | None = None) -> str:
    """A refusal as the desk shows it: Chinese, whatever language the engine or the
    validator used (the ``code`` beside it stays the machine-readable part)."""
    win = f"{window}号窗口" if window is not None else "该窗口"
    known = {
        "unknown_window": f"没有{window}号窗口" if window is not None else "没有这个窗口",
        "unknown_service": "业务代码不在本厅的业务中",
        "no_current_ticket": f"{win}现在没有人在办理",
        "window_closed": f"{win}已关闭",
        "window_paused": f"{win}暂停服务中",
        "storage_failed": "系统存储故障, 操作未执行, 请稍后重试",
        "bad_action": "不支持的操作",
        "invalid_command": "指令内容无效",
        "invalid_json": "请求格式错误",
        "no_skills": "至少要保留一项业务",
        "bad_weight": "业务权重须在 0.1 到 10 之间",
        "expired": "指令已过期, 未执行",
        "late": "指令已过期, 未执行",
        "refused": "指令被拒绝",
        "csrf": "请求缺少页面令牌 (CSRF), 未执行",
        "viewer": "只读用户不能操作",
        "locked": "多次密码错误, 登录已锁定",
        "bad_credentials": "用户名或密码错误",
        "invalid_body": "请求内容无效",
        "unknown_alert": "没有这条告警",
    }
    if any("\u4e00" <= ch <= "\u9fff" for ch in message) and code not in known:
        return message
    return known.get(code, f"操作未执行 ({code})")


def no_change(
    engine: Engine, window: int, action: str, skills: dict[str, float] | None
) -> tuple[str, str] | None:
    """A code and Chinese message when ``action`` would change nothing (开窗 on an open
    window): the desk says so instead of logging a command that does nothing."""
    w = engine.windows.get(window)
    if w is None:
        return None  # the engine refuses it, with its own code
    status = w.status
    if action in ("open", "resume") and status is WindowStatus.OPEN:
        return "no_change", f"{window}号窗口已在开放中"
    if action == "pause" and status is WindowStatus.PAUSED:
        return "no_change", f"{window}号窗口已暂停"
    if action == "pause" and status is WindowStatus.CLOSED:
        return "no_change", f"{window}号窗口已关闭, 无需暂停"
    if action == "close" and status is WindowStatus.CLOSED:
        return "no_change", f"{window}号窗口已关闭"
    if action == "set_skills" and skills is not None and skills == w.skills:
        return "no_change", f"{window}号窗口的业务没有变化"
    if action == "finish" and w.current is None:
        return "no_current_ticket", f"{window}号窗口现在没有人在办理"
    return None


def _names(engine: Engine, codes: Any) -> str:
    return "、".join(engine.services[c].name for c in codes if c in engine.services)


def _fmt(minutes: float) -> str:
    return "无窗口办理" if not math.isfinite(minutes) else f"{minutes:.0f} 分钟"


def _at_counter(t: Any) -> str:
    """Who is at a window, as the desk says it: being served, or only called (the
    taxpayer may not have come)."""
    if t.started_at is not None:
        return f"正在办理 {t.number}"
    return f"已叫号 {t.number} (尚未开始办理)"


def _finish_impact(engine: Engine, window: int, t: Any, now: float | None) -> api.Impact:
    """办结 from the desk: for a counter whose pad cannot (its login suspended, the pad
    broken, a clerk gone without pressing it). A window with someone at it cannot be
    closed, and nothing else ends that ticket."""
    if t is None:
        text = f"{window}号窗口现在没有人在办理"
        return api.Impact(window=window, action="finish", text=text, lines=[], blocked=True)
    svc = engine.services.get(t.service)
    lines = []
    if now is not None and t.started_at is not None:
        lines.append(f"{t.number} 办理已 {max(0.0, now - t.started_at) / 60:.0f} 分钟")
    elif now is not None and t.called_at is not None:
        minutes = max(0.0, now - t.called_at) / 60
        lines.append(f"{t.number} 叫号已 {minutes:.0f} 分钟, 尚未开始办理")
        lines.append("办结后计为已办理; 纳税人未到请在窗口过号")
    return api.Impact(
        window=window,
        action="finish",
        text=f"结束 {t.number} ({svc.name if svc else t.service}) 的办理, {window}号窗口可叫下一位",
        lines=lines,
    )


def impact(
    engine: Engine,
    window: int,
    action: str,
    skills: dict[str, float] | None = None,
    now: float | None = None,
) -> api.Impact:
    """What the hall will feel if ``action`` is done at ``window`` now, in the words the
    confirmation shows ("关闭后 7 人转到其他窗口"). Tickets queue by service, not by
    window, so a closed window's people are not moved: they wait for the other windows
    serving their service, and the estimate says how much longer."""
    from coordinator.advice.live import queue_wait_min

    w = engine.windows.get(window)
    if w is None:
        return api.Impact(window=window, action=action, text=f"没有{window}号窗口", lines=[])
    # its building's queues and windows: a branch window takes only the branch's people
    # (a pause there said "还有 37 个窗口", the whole hall's, where the branch had 8)
    site = engine.window_site[window] if len(engine.sites) > 1 else None
    waiting = {c: engine.waiting(c, site) for c in engine.services}

    def wait_min(c: str, extra: int = 0) -> float:
        return queue_wait_min(engine, c, extra, site)

    lines: list[str] = []
    affected = 0
    orphaned: list[str] = []
    is_open = w.status is WindowStatus.OPEN
    if action == "finish":
        return _finish_impact(engine, window, w.current, now)
    if action in ("close", "pause"):
        verb = "关闭后" if action == "close" else "暂停后"
        served = list(w.skills) if is_open else []
        for c in served:
            n, left = waiting[c], engine.serving_windows(c, site) - 1
            affected += n
            name = engine.services[c].name
            if left <= 0:
                orphaned.append(name)
                lines.append(f"{name}: 等候 {n} 人, 将无窗口办理")
            else:
                lines.append(
                    f"{name}: 等候 {n} 人, 还有 {left} 个窗口, 预计等候 "
                    f"{_fmt(wait_min(c))} → {_fmt(wait_min(c, -1))}"
                )
        text = f"{verb} {affected} 人转到其他窗口" if served else f"{window}号窗口现在没有在服务"
        if orphaned:
            text += f"; {'、'.join(orphaned)}将无窗口办理"
        if w.current is not None:
            then = "关窗" if action == "close" else "暂停"
            text += f"; {_at_counter(w.current)}, 办完后{then}"
    elif action in ("open", "resume"):
        gain = [] if is_open else list(w.skills)
        for c in gain:
            n = waiting[c]
            affected += n
            lines.append(
                f"{engine.services[c].name}: 等候 {n} 人, 预计等候 "
                f"{_fmt(wait_min(c))} → {_fmt(wait_min(c, 1))}"
            )
        text = (
            f"{'恢复后' if action == 'resume' else '开窗后'} {_names(engine, gain)} 多一个窗口 "
            f"(等候 {affected} 人)"
            if gain
            else f"{window}号窗口已在开放中"
        )
    elif action == "set_skills":
        new = dict(skills or {})
        dropped = [c for c in w.skills if c not in new]
        added = [c for c in new if c not in w.skills]
        reweighted = [c for c in new if c in w.skills and new[c] != w.skills[c]]
        for c in dropped:
            n = waiting.get(c, 0)
            left = engine.serving_windows(c, site) - (1 if is_open else 0)
            affected += n
            name = engine.services[c].name
            if left <= 0:
                orphaned.append(name)
                lines.append(f"不再办理 {name}: 等候 {n} 人将无窗口办理")
            else:
                lines.append(f"不再办理 {name}: 等候 {n} 人由其他 {left} 个窗口办理")
        for c in added:
            if c not in engine.services:
                continue
            extra = 1 if is_open else 0
            lines.append(
                f"新增 {engine.services[c].name}: 等候 {waiting[c]} 人, 预计等候 "
                f"{_fmt(wait_min(c))} → {_fmt(wait_min(c, extra))}"
            )
        for c in reweighted:
            lines.append(
                f"{engine.services[c].name} 权重 {w.skills[c]:g} → {new[c]:g}"
                " (权重高的业务优先叫号)"
            )
        parts = []
        if dropped:
            parts.append(f"{affected} 人转到其他窗口")
        if added:
            parts.append(f"新增 {_names(engine, added)}")
        if reweighted and not parts:
            parts.append("只改权重")
        text = f"{window}号窗口改业务: " + ("; ".join(parts) or "没有变化")
        if orphaned:
            text += f"; {'、'.join(orphaned)}将无窗口办理"
        if not is_open:
            text += f" (窗口{STATUS_ZH[w.status.value]}中, 开窗后生效)"
    else:
        text = ACTION_ZH.get(action, action)
    return api.Impact(
        window=window,
        action=action,
        text=text,
        lines=lines,
        people=affected,
        unserved=orphaned,
    )


# --- alerts --------------------------------------------------------------------------------


@dataclass
class Seen:
    key: str
    item: dict[str, Any]
    first: float
    last: float
    count: int = 1
    standing: bool = False
    acked_by: str | None = None
    acked_at: float | None = None
    acked_last: float = 0.0


KEPT_UNSEEN = 100  # unacknowledged alerts kept after their events left the recent list


class AlertBook:
    """Alerts deduplicated by what they are about (kind + service / window / device): one
    row each, with how often and since when. An acknowledgement names its supervisor and
    holds until the alert happens again (an event alert) or its condition clears and
    comes back (a standing one: a queue over target, a device offline)."""

    def __init__(self, remembered: Iterable[Seen] = ()) -> None:
        """``remembered``: acknowledgements made before a restart (from the audit log), so
        a supervisor mid-shift does not work the same alerts twice."""
        self._seen: dict[str, Seen] = {s.key: s for s in remembered}

    @staticmethod
    def key_of(item: dict[str, Any]) -> str:
        about = item.get("service") or item.get("window") or item.get("client") or ""
        site = f"@{item['site']}" if item.get("site") else ""  # (a queue per building)
        return f"{item['kind']}:{about}{site}"

    def update(
        self,
        standing: list[dict[str, Any]],
        events: list[tuple[float, dict[str, Any]]],
        now: float,
    ) -> list[Seen]:
        """``standing``: conditions true now; ``events``: (when, alert), newest first.
        Unacknowledged first, newest first."""
        fresh: dict[str, Seen] = {}
        for item in standing:
            k = self.key_of(item)
            old = self._seen.get(k)
            if old is not None and old.standing:
                old.item, old.last = item, now
                fresh[k] = old
            else:
                fresh[k] = Seen(k, item, now, now, standing=True)
        grouped: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        for at, item in events:
            grouped.setdefault(self.key_of(item), []).append((at, item))
        for k, items in grouped.items():
            if k in fresh:
                continue
            old = self._seen.get(k)
            s = Seen(k, items[0][1], items[-1][0], items[0][0], len(items))
            if old is not None and old.acked_by is not None and s.last <= old.acked_last:
                s.acked_by, s.acked_at, s.acked_last = old.acked_by, old.acked_at, old.acked_last
            fresh[k] = s
        # an event alert nobody acknowledged stays when its events leave the coordinator's
        # recent list: one login's 210 emergencies in 11 s pushed out the 取号过快 alert
        # that named a dispenser in other hands, and its 停用 with it
        kept = [
            old
            for k, old in self._seen.items()
            if k not in fresh and not old.standing and old.acked_by is None
        ]
        for old in sorted(kept, key=lambda s: -s.last)[:KEPT_UNSEEN]:
            fresh[old.key] = old
        self._seen = fresh
        return sorted(fresh.values(), key=lambda s: (s.acked_by is not None, -s.last))

    @staticmethod
    def from_audit(
        entries: Iterable[dict[str, Any]], day: Callable[[float], Any], now: float
    ) -> list[Seen]:
        """Today's acknowledgements as the audit log recorded them (``day``: the business
        day of a hall-clock time), the last one per alert."""
        today, found = day(now), {}
        for e in entries:
            detail = e.get("detail")
            target = e.get("target") or ""
            if e.get("action") != "ack" or not e.get("ok") or not isinstance(detail, dict):
                continue
            try:
                at, last, standing = (
                    float(detail["at"]),
                    float(detail["last"]),
                    bool(detail["standing"]),
                )
            except (KeyError, TypeError, ValueError):
                continue  # an entry from before acks were remembered
            if target.startswith("alert ") and day(at) == today:
                key = target.removeprefix("alert ")
                found[key] = Seen(
                    key,
                    {},
                    last,
                    last,
                    standing=standing,
                    acked_by=e["user"],
                    acked_at=at,
                    acked_last=last,
                )
        return list(found.values())

    def ack(self, key: str, user: str, now: float) -> Seen | None:
        s = self._seen.get(key)
        if s is not None:
            s.acked_by, s.acked_at, s.acked_last = user, now, s.last
        return s


# --- advice --------------------------------------------------------------------------------


@dataclass
class AdviceEntry:
    id: str
    at: float
    advice: Advice
    state: str = "open"  # open | applied | dismissed | restored | expired
    by: str | None = None
    acted_at: float | None = None
    restored_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class AdviceBook:
    """The coordinator's express-window advice as things a supervisor acts on: applied
    (the switch as logged supervisor commands), dismissed, or left to expire; an applied
    one shows afterwards the wait its service really had against the prediction."""

    OPEN_FOR_S = 15 * 60.0  # advice not acted on within this is stale: the hall has moved

    def __init__(self, remembered: Iterable[AdviceEntry] = ()) -> None:
        """``remembered``: today's advice a supervisor acted on before a restart (from the
        audit log): an applied switch still needs its "restore" and its measured effect."""
        self.entries: dict[str, AdviceEntry] = {e.id: e for e in remembered}
        last = max((int(i[1:]) for i in self.entries if i[1:].isdigit()), default=0)
        self._ids = itertools.count(last + 1)
        self._known: set[int] = set()

    @staticmethod
    def record(entry: AdviceEntry) -> dict[str, Any]:
        """What the audit log keeps of an acted-on advice so ``from_audit`` can rebuild it."""
        a = entry.advice
        return {
            "id": entry.id,
            "at": entry.at,
            "acted_at": entry.acted_at,
            "advice": {
                "service": a.service,
                "windows": list(a.windows),
                "restore": {str(w): skills for w, skills in a.restore.items()},
                "duration_min": a.duration_min,
                "waiting": a.waiting,
                "target_min": a.target_min,
                "predicted_wait_min": a.predicted_wait_min,
                "before_min": a.before_min,
                "after_min": a.after_min,
                "others_before_min": a.others_before_min,
                "others_after_min": a.others_after_min,
                "basis": a.basis,
                "until": a.until,
            },
        }

    @staticmethod
    def from_audit(
        entries: Iterable[dict[str, Any]], day: Callable[[float], Any], now: float
    ) -> list[AdviceEntry]:
        """Today's advice as the desk's actions on it left it (oldest action first), so a
        coordinator restarted mid-shift still offers to switch an applied advice back."""
        from coordinator.advice.live import Advice

        today, found = day(now), dict[str, AdviceEntry]()
        verbs = {"advice_apply": "applied", "advice_dismiss": "dismissed"}
        for e in entries:
            detail = e.get("detail")
            action = e.get("action")
            if action not in (*verbs, "advice_restore") or not isinstance(detail, dict):
                continue
            try:
                at, acted_at, a = float(detail["at"]), detail["acted_at"], detail["advice"]
                advice = Advice(
                    service=str(a["service"]),
                    windows=tuple(int(w) for w in a["windows"]),
                    restore={
                        int(w): {str(k): float(v) for k, v in skills.items()}
                        for w, skills in a["restore"].items()
                    },
                    duration_min=int(a["duration_min"]),
                    waiting=int(a["waiting"]),
                    target_min=float(a["target_min"]),
                    predicted_wait_min=float(a["predicted_wait_min"]),
                    before_min=float(a["before_min"]),
                    after_min=float(a["after_min"]),
                    others_before_min=float(a["others_before_min"]),
                    others_after_min=float(a["others_after_min"]),
                    basis=str(a["basis"]),
                    until=float(a["until"]),
                )
                key = str(detail["id"])
            except (KeyError, TypeError, ValueError, AttributeError):
                continue  # an entry from before advice was remembered
            if day(at) != today or detail.get("applied") is False:
                continue
            if action == "advice_restore":
                if key in found:
                    found[key].state, found[key].restored_by = "restored", e["user"]
                continue
            found[key] = AdviceEntry(
                key,
                at,
                advice,
                state=verbs[action],
                by=e["user"],
                acted_at=None if acted_at is None else float(acted_at),
            )
        return list(found.values())

    def take(self, made: Any, now: float) -> None:
        """Adopt the advice the coordinator made since last time (``made``: its deque of
        (at, Advice), newest first)."""
        for at, advice in made:
            if id(advice) in self._known:
                continue
            self._known.add(id(advice))
            entry = AdviceEntry(f"a{next(self._ids)}", at, advice)
            # a newer one for the same service replaces one still open
            for e in self.entries.values():
                if e.advice.service == advice.service and e.state == "open":
                    e.state = "expired"
            self.entries[entry.id] = entry
        for e in self.entries.values():
            if e.state == "open" and now - e.at > self.OPEN_FOR_S:
                e.state = "expired"
        while len(self.entries) > 50:
            del self.entries[next(iter(self.entries))]

    def view(self, engine: Engine, entry: AdviceEntry, now: float) -> api.AdviceView:
        a, tz = entry.advice, engine.cfg.hall.tzinfo
        svc = engine.services.get(a.service)
        realised = None
        measured = 0
        if entry.state in ("applied", "restored") and entry.acted_at is not None:
            start, end = entry.acted_at, entry.acted_at + a.duration_min * 60.0
            waits = [
                t.called_at - t.issued_at
                for t in engine.tickets
                if t.service == a.service
                and t.called_at is not None
                and start <= t.called_at <= min(end, now)
            ]
            measured = len(waits)
            realised = round(statistics.fmean(waits) / 60.0, 1) if waits else None
        return api.AdviceView(
            id=entry.id,
            service=a.service,
            service_name=svc.name if svc else a.service,
            windows=list(a.windows),
            duration_min=a.duration_min,
            waiting=a.waiting,
            target_min=a.target_min,
            before_min=a.before_min,
            after_min=a.after_min,
            others_before_min=a.others_before_min,
            others_after_min=a.others_after_min,
            gain_min=round(a.before_min - a.after_min, 1),
            basis=a.basis,
            state=entry.state,  # type: ignore[arg-type]
            by=entry.by,
            at=hhmm(entry.at, tz) or "",
            acted_at=hhmm(entry.acted_at, tz),
            until=hhmm(entry.acted_at + a.duration_min * 60.0, tz)
            if entry.acted_at is not None and entry.state in ("applied", "restored")
            else None,
            due_restore=entry.state == "applied"
            and entry.acted_at is not None
            and now >= entry.acted_at + a.duration_min * 60.0,
            realised_min=realised,
            realised_tickets=measured,
            text=advice_text(engine, a),
        )


def advice_text(engine: Engine, a: Advice) -> str:
    svc = engine.services.get(a.service)
    name = svc.name if svc else a.service
    wins = "、".join(f"{w}号" for w in a.windows)
    return (
        f"{name}等候 {a.waiting} 人, 预计等候 {a.before_min:.0f} 分钟 (目标 {a.target_min:g}): "
        f"建议{wins}窗口改为{name}专窗 {a.duration_min} 分钟, 预计降到 {a.after_min:.0f} 分钟; "
        f"其他业务 {a.others_before_min:.0f} → {a.others_after_min:.0f} 分钟"
    )


def busy_s(engine: Engine, now: float) -> dict[int, float]:
    """Counter time per window today: finished tickets plus the one being served now."""
    out: dict[int, float] = {n: 0.0 for n in engine.windows}
    for t in engine.tickets:
        if t.window is None or t.window not in out:
            continue
        if t.finished_at is not None:
            out[t.window] += max(
                0.0, t.finished_at - (t.started_at or t.called_at or t.finished_at)
            )
        elif t.state is TicketState.SERVING or t.state is TicketState.CALLED:
            begun = t.started_at or t.called_at
            if begun is not None:
                out[t.window] += max(0.0, now - begun)
    return out


def hhmm(ts: float | None, tz: dt.tzinfo) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, tz).strftime("%H:%M")
