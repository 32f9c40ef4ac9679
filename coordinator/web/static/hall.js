// Hall view: boards (PNG from the displays renderer), queues, windows, KPIs, devices.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = hallq.el;
  const STATUS = {open: "开放", paused: "暂停", closed: "关闭"};
  let boards = [];

  function row(cells, head) {
    return el("tr", {}, ...cells.map((c) => el(head ? "th" : "td", {}, c)));
  }
  function fill(table, head, rows) {
    table.replaceChildren(row(head, true), ...rows.map((r) => row(r)));
  }

  function show(h) {
    $("hall-name").textContent = h.hall.name;
    $("day").textContent = h.hall.day || "";
    const names = Object.fromEntries(h.services.map((s) => [s.code, s.name]));
    $("calls").textContent = h.board.calls.map((c) => `${c.ticket}→${c.window}号`).join("  ") || "—";
    $("calls").dataset.first = h.board.calls.length ? h.board.calls[0].ticket : "";
    fill($("queues"), ["业务 Service", "等候", "下一位", "预计", "最长等候"], h.services.map((s) => [
      s.name, el("span", {class: "pill " + (s.over_target ? "warning" : ""),
                          "data-service": s.code}, s.queue.waiting),
      (s.queue.next || []).slice(0, 3).join(" "), s.wait_text ? s.wait_text.zh : "—",
      hallq.minutes(s.queue.oldest_wait_s)]));
    fill($("windows"), ["窗口", "状态", "当前", "业务"], h.windows.map((w) => [
      w.window + "号", el("span", {class: "pill " + w.status}, STATUS[w.status] || w.status),
      w.ticket || "—", Object.keys(w.skills).map((c) => names[c] || c).join("、")]));
    const t = h.stats.total;
    $("kpis").replaceChildren(el("p", {},
      `取号 ${t.issued} · 已办 ${t.served} · 过号 ${t.no_show} · 平均等候 ${hallq.minutes(t.avg_wait_s)}` +
      ` · 90%等候 ${hallq.minutes(t.p90_wait_s)} · 平均办理 ${hallq.minutes(t.avg_service_s)}` +
      ` · 告警 ${h.alerts}`));
    fill($("devices"), ["设备", "角色", "在线", "健康"], h.devices.map((d) => [
      d.client, d.role,
      el("span", {class: "pill " + (d.online ? "online" : "offline")}, d.online ? "在线" : "离线"),
      d.healthy == null ? "—" : el("span", {class: "pill " + (d.healthy ? "ok" : "warning")},
        d.healthy ? "正常" : d.components.filter((c) => !c.ok).map((c) => c.name + ":" + c.status).join(", "))]));
    for (const img of $("boards").querySelectorAll("img")) {
      img.src = img.dataset.src + "?rev=" + h.rev;
    }
  }

  const refresh = hallq.serial(async () => {
    if (!boards.length) {
      boards = await hallq.getJSON("/api/boards");
      $("boards").replaceChildren(...boards.map((b) =>
        el("figure", {}, el("img", {"data-src": b.png, alt: "LED " + b.id}),
           el("figcaption", {class: "muted"}, b.zone ? `${b.id} (${b.zone})` : b.id))));
    }
    show(await hallq.getJSON("/api/hall"));
  });
  hallq.live(refresh, $("live"));
  refresh();
})();
