// The supervisor's hall view (behind the supervisor login): KPIs, alerts, no-shows by
// service, every window grouped by its function hall, devices. The public view at / shows
// none of this.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = hallq.el;
  const STATUS = {open: "开放", paused: "暂停", closed: "关闭"};
  const m = hallq.minutes;

  function row(cells, head) {
    return el("tr", {}, ...cells.map((c) => el(head ? "th" : "td", {}, c)));
  }
  function fill(table, head, rows) {
    table.replaceChildren(row(head, true), ...rows.map((r) => row(r)));
  }

  function show(h, alerts) {
    $("hall-name").textContent = h.hall.name;
    $("day").textContent = h.hall.day || "";
    const names = Object.fromEntries(h.services.map((s) => [s.code, s.name]));
    const t = h.stats.total;
    $("kpis").replaceChildren(el("p", {},
      `取号 ${t.issued} · 已办 ${t.served} · 过号 ${t.no_show} · 平均等候 ${m(t.avg_wait_s)}` +
      ` · 90%等候 ${m(t.p90_wait_s)} · 平均办理 ${m(t.avg_service_s)} · 告警 ${h.alerts}`));
    fill($("alerts"), ["级别", "类型", "内容", "时间"], alerts.length ? alerts.map((a) => [
      el("span", {class: "pill " + a.severity}, a.severity_zh || a.severity),
      a.kind_zh || a.kind, a.message,
      (a.at || "").slice(11, 19)]) : [["—", "暂无告警", "", ""]]);
    fill($("services"), ["业务", "等候", "预计", "最长等候", "取号", "已办", "过号", "平均等候"],
      h.services.map((s) => {
        const k = h.stats.per_service[s.code] || {issued: 0, served: 0, no_show: 0};
        return [s.name, el("span", {class: "pill " + (s.over_target ? "warning" : ""),
                                    "data-service": s.code}, s.queue.waiting),
                s.wait_text ? s.wait_text.zh : "—", m(s.queue.oldest_wait_s),
                k.issued, k.served, el("span", {"data-no-show": s.code}, k.no_show),
                m(k.avg_wait_s)];
      }));
    const byZone = new Map(Object.keys(h.zones).map((z) => [z, []]));
    for (const w of h.windows) {
      if (!byZone.has(w.zone)) byZone.set(w.zone, []);
      byZone.get(w.zone).push(w);
    }
    $("zones").replaceChildren(...[...byZone].filter(([, ws]) => ws.length).map(([zone, ws]) => {
      const open = ws.filter((w) => w.status === "open").length;
      const table = el("table", {"data-zone": zone});
      fill(table, ["窗口", "状态", "当前", "业务", "办理"], ws.map((w) => {
        const k = h.stats.per_window[String(w.window)] || {served: 0};
        return [w.window + "号", el("span", {class: "pill " + w.status}, STATUS[w.status] || w.status),
                w.ticket || "—", Object.keys(w.skills).map((c) => names[c] || c).join("、"), k.served];
      }));
      return el("details", {open: ""}, el("summary", {},
        `${h.zones[zone] || zone} — ${ws.length} 个窗口, ${open} 个开放`),
        el("div", {class: "scroll"}, table));
    }));
    fill($("devices"), ["设备", "角色", "在线", "健康"], h.devices.map((d) => [
      d.client, d.role,
      el("span", {class: "pill " + (d.online ? "online" : "offline")}, d.online ? "在线" : "离线"),
      d.healthy == null ? "—" : el("span", {class: "pill " + (d.healthy ? "ok" : "warning")},
        d.healthy ? "正常" : d.components.filter((c) => !c.ok).map((c) => c.name + ":" + c.status).join(", "))]));
  }

  const refresh = hallq.serial(async () => {
    const [h, alerts] = await Promise.all([hallq.getJSON("/api/supervisor/hall"),
                                           hallq.getJSON("/api/supervisor/alerts")]);
    show(h, alerts);
  });
  hallq.live(refresh, $("live"));
  refresh();
})();
