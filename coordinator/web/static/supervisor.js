// Supervisor desk (值班长): the hall at a glance and every window's controls. Live updates
// patch what is on screen in place: a window whose services are being edited, or whose
// action waits for confirmation, keeps what the supervisor sees until they save or cancel,
// and a save sends exactly what is on screen (services and weights). Commands take the
// pads' path (logged, published); each answer is shown beside its row, in Chinese.
// Changes carry the session's CSRF token (hallq.csrf, sent by hallq.getJSON). A viewer
// sees the same desk without controls; an expired session goes back to the login page.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = hallq.el;
  const STATUS = {open: "开放", paused: "暂停", closed: "关闭"};
  const ACTION = {open: "开窗", pause: "暂停", resume: "恢复", close: "关窗", set_skills: "改业务",
                  finish: "办结"};
  const DONE = {open: "已开窗", pause: "已暂停", resume: "已恢复", close: "已关窗",
                set_skills: "业务已保存", finish: "已办结"};
  let me = null, desk = null, names = {}, auditSeen = null, picked = null;
  const rows = new Map();        // window -> {tr, panel, mode, w}
  const serviceRows = new Map(); // code -> tr
  const sorts = {services: null, windows: null};  // {key, dir}
  const toLogin = () => location.assign("/login?next=/supervisor");
  const fmt = (x, unit) => x == null ? "—" : `${Number.isInteger(x) ? x : x.toFixed(1)}${unit || ""}`;
  // the hall's clock (the server's), not this computer's
  const hhmm = () => (desk && desk.now ? desk.now.slice(11, 16) : "");
  const text = (node, value) => { value = String(value ?? ""); if (node.textContent !== value) node.textContent = value; };

  async function post(url, body) {
    return hallq.getJSON(url, {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify(body || {})});
  }
  function failed(e) {
    if (e.status === 401) { toLogin(); return null; }
    const err = (e.body && e.body.error) || {};
    return {code: err.code || String(e.status || "network"), message: err.message || "网络错误, 请重试"};
  }

  // --- feedback beside the row ---------------------------------------------------------
  function feedback(r, ok, message, code) {
    const fb = r.tr.querySelector(".fb");
    fb.className = "fb " + (ok ? "ok" : "error");
    fb.dataset.code = code || "";
    fb.textContent = ok ? `✓ ${message} ${hhmm()}` : message;
    fb.title = code ? `代码 ${code}` : "";
  }

  // --- windows -------------------------------------------------------------------------
  // a window serving every service says so in one chip; weights other than 1 are shown
  function chips(w) {
    const entries = Object.entries(w.skills);
    const all = entries.length === Object.keys(names).length && entries.length > 2;
    const shown = all ? entries.filter(([, weight]) => weight !== 1) : entries;
    return [...(all ? [el("span", {class: "chip all"}, `全部 ${entries.length} 项业务`)] : []),
      ...shown.map(([c, weight]) => el("span", {class: "chip", "data-skill": c}, names[c] || c,
        weight !== 1 ? el("small", {}, ` ×${weight}`) : ""))];
  }
  function buttons(r) {
    const box = r.tr.querySelector(".acts");
    if (!me.may_act) { box.replaceChildren(); return; }
    const acts = r.w.actions;
    if (box.dataset.acts === acts.join()) return;
    box.dataset.acts = acts.join();
    box.replaceChildren(...acts.map((a) =>
      el("button", {"data-action": a, class: a === "close" ? "danger" : "",
                    onclick: () => ask(r, {action: a})}, ACTION[a])),
      el("button", {"data-action": "edit", onclick: () => edit(r)}, "改业务"));
  }
  function patchRow(r, w) {
    r.w = w;
    const tr = r.tr;
    tr.dataset.status = w.status;
    const pill = tr.querySelector(".status");
    const shown = w.closing ? "closing" : w.status;  // paused until its ticket is done
    if (pill.dataset.status !== shown) {
      pill.dataset.status = shown;
      pill.className = "pill status " + w.status;
      pill.textContent = w.closing ? "办完后关窗" : STATUS[w.status] || w.status;
    }
    text(tr.querySelector(".since"), w.since || "");
    tr.querySelector(".since").title = w.since ? `${w.since} 起${STATUS[w.status]}` : "";
    text(tr.querySelector(".ticket"), w.ticket ? `${w.ticket} ${names[w.service] || ""}` : "—");
    text(tr.querySelector(".served"), `${w.served} 人 · ${fmt(w.busy_min)} 分`);
    if (r.mode !== "edit") {  // never overwrite what the supervisor is changing
      const skills = tr.querySelector(".skills");
      const key = JSON.stringify(w.skills);
      if (skills.dataset.key !== key) { skills.dataset.key = key; skills.replaceChildren(...chips(w)); }
    }
    if (r.mode == null) buttons(r);
  }
  function newRow(w) {
    const tr = el("tr", {"data-window": w.window},
      el("td", {class: "num"}, `${w.window}号`),
      el("td", {}, el("span", {class: "pill status"}), el("small", {class: "since muted"})),
      el("td", {class: "ticket"}), el("td", {class: "served"}),
      el("td", {class: "skills"}),
      el("td", {}, el("div", {class: "acts"}), el("div", {class: "fb", role: "status", "aria-live": "polite"})));
    const panel = el("tr", {class: "panel", hidden: ""}, el("td", {colspan: "6"}));
    const r = {tr, panel, mode: null, w};
    rows.set(w.window, r);
    return r;
  }
  function closePanel(r) {
    r.mode = null;
    r.panel.hidden = true;
    r.panel.firstChild.replaceChildren();
    r.tr.classList.remove("editing");
    patchRow(r, r.w);
  }
  function onScreenSkills(r) {
    const skills = {};
    for (const row of r.panel.querySelectorAll("[data-edit-skill]")) {
      const cb = row.querySelector("input[type=checkbox]");
      if (cb.checked) skills[row.dataset.editSkill] = Number(row.querySelector("input[type=number]").value) || 1;
    }
    return skills;
  }
  function edit(r) {
    if (r.mode === "edit") return closePanel(r);
    r.mode = "edit";
    r.tr.classList.add("editing");
    const box = el("div", {class: "editor"});
    for (const s of desk.services) {
      const has = s.code in r.w.skills;
      const weight = el("input", {type: "number", min: "0.1", max: "10", step: "0.1",
                                  value: has ? r.w.skills[s.code] : 1, title: "权重: 越高越优先叫号"});
      const cb = el("input", {type: "checkbox", value: s.code});
      cb.checked = has; weight.disabled = !has;
      cb.onchange = () => { weight.disabled = !cb.checked; };
      box.append(el("label", {class: "skill-edit", "data-edit-skill": s.code}, cb, ` ${s.name} `,
                    el("span", {class: "muted"}, "权重"), weight));
    }
    const note = el("p", {class: "muted"}, "权重越高的业务越优先叫号 (1 为普通)");
    r.panel.firstChild.replaceChildren(box, note,
      el("div", {class: "panel-buttons"},
        el("button", {class: "primary", "data-edit": "save",
                      onclick: () => ask(r, {action: "set_skills", skills: onScreenSkills(r)})}, "保存业务"),
        el("button", {"data-edit": "cancel", onclick: () => closePanel(r)}, "取消")));
    r.panel.hidden = false;
    buttons(r);
  }
  // every action first says what the hall will feel, then waits for a second click
  async function ask(r, body) {
    const win = r.w.window;
    if (body.action === "set_skills" && !Object.keys(body.skills).length) {
      return feedback(r, false, "至少要保留一项业务", "no_skills");
    }
    let impact;
    try { impact = await post(`/api/supervisor/windows/${win}/impact`, body); }
    catch (e) { const f = failed(e); if (f) feedback(r, false, f.message, f.code); return; }
    const editing = r.mode === "edit";
    const editor = editing ? [...r.panel.firstChild.childNodes] : [];
    r.mode = editing ? "edit" : "confirm";
    const back = () => {
      if (editing) { r.panel.firstChild.replaceChildren(...editor); } else { closePanel(r); }
    };
    const confirmBox = el("div", {class: "confirm", "data-confirm": body.action},
      el("strong", {class: "impact"}, impact.text),
      impact.lines.length ? el("ul", {}, ...impact.lines.map((l) => el("li", {}, l))) : "",
      el("div", {class: "panel-buttons"},
        impact.blocked ? "" : el("button", {class: body.action === "close" ? "danger" : "primary",
          "data-confirm-go": body.action, onclick: () => run(r, body)},
          `确认${ACTION[body.action]}`),
        el("button", {"data-confirm-cancel": "", onclick: back}, editing ? "返回修改" : "取消")));
    r.panel.firstChild.replaceChildren(confirmBox);
    r.panel.hidden = false;
  }
  async function run(r, body) {
    const win = r.w.window;
    for (const b of r.panel.querySelectorAll("button")) b.disabled = true;
    try {
      await post(`/api/supervisor/windows/${win}`, body);
      feedback(r, true, DONE[body.action]);
      closePanel(r);
      refresh();
      audit();
    } catch (e) {
      const f = failed(e);
      if (!f) return;
      feedback(r, false, f.message, f.code);
      closePanel(r);
    }
  }
  function sortKey(w, key) {
    return {window: w.window, status: ["open", "paused", "closed"].indexOf(w.status),
            ticket: w.ticket || "", served: w.served, busy: w.busy_min}[key];
  }
  function showWindows() {
    const zones = $("wzones");
    for (const z of desk.zones) {
      let box = zones.querySelector(`details[data-zone="${z.id}"]`);
      if (!box) {
        const head = el("tr", {}, ...[["window", "窗口"], ["status", "状态"], ["ticket", "当前"],
          ["served", "今日办理"], [null, "业务"], [null, me.may_act ? "操作" : ""]]
          .map(([k, t]) => el("th", k ? {"data-sort": k, onclick: () => sortBy("windows", k)} : {}, t)));
        box = el("details", {open: "", "data-zone": z.id}, el("summary", {}),
                 el("div", {class: "scroll"}, el("table", {class: "windows sortable"}, el("thead", {}, head), el("tbody"))));
        zones.append(box);
      }
      text(box.querySelector("summary"), `${z.name} · 开放 ${z.open} · 暂停 ${z.paused} · 关闭 ${z.closed}` +
        ` · 办理中 ${z.serving} · 今日 ${z.served} 人 / 忙碌 ${fmt(z.busy_min / 60)} 小时`);
      const tbody = box.querySelector("tbody");
      let ws = desk.windows.filter((w) => w.zone === z.id);
      const s = sorts.windows;
      if (s) ws = [...ws].sort((a, b) => (sortKey(a, s.key) > sortKey(b, s.key) ? 1 : sortKey(a, s.key) < sortKey(b, s.key) ? -1 : 0) * s.dir);
      let at = 0;
      for (const w of ws) {
        const r = rows.get(w.window) || newRow(w);
        patchRow(r, w);
        // reorder by moving nodes (no redraw): only when out of place
        if (tbody.children[at] !== r.tr) tbody.insertBefore(r.tr, tbody.children[at] || null);
        if (tbody.children[at + 1] !== r.panel) tbody.insertBefore(r.panel, tbody.children[at + 1] || null);
        at += 2;
      }
    }
    for (const th of document.querySelectorAll("th[data-sort]")) {
      const table = th.closest("table").id === "services" ? "services" : "windows";
      const s = sorts[table];
      th.dataset.dir = s && s.key === th.dataset.sort ? (s.dir > 0 ? "asc" : "desc") : "";
    }
  }
  function sortBy(table, key) {
    const s = sorts[table];
    sorts[table] = s && s.key === key ? {key, dir: -s.dir} : {key, dir: table === "services" && key !== "name" ? -1 : 1};
    show();
  }

  // --- the hall at a glance ------------------------------------------------------------
  function delta(today, then, better) {
    if (today == null || then == null) return el("span", {class: "muted"}, "—");
    const d = today - then;
    const good = better === "higher" ? d > 0 : d < 0;
    const arrow = d === 0 ? "＝" : d > 0 ? "↑" : "↓";
    return el("span", {class: d === 0 ? "muted" : good ? "better" : "worse"},
      `${fmt(then)} ${arrow}`);
  }
  function showKpis() {
    const cd = desk.compare_days;
    text($("kpi-note"), `对比昨日 (${cd.yesterday.slice(5)}) 与上月同一星期 (${cd.last_month.slice(5)}) 的同一时刻`);
    $("kpis").replaceChildren(...desk.kpis.map((k) => el("div", {class: "kpi", "data-kpi": k.key},
      el("div", {class: "muted"}, k.label),
      el("div", {class: "kpi-value"}, fmt(k.today), el("small", {}, ` ${k.unit}`)),
      el("div", {class: "kpi-compare"}, "昨日 ", delta(k.today, k.yesterday, k.better),
         " · 上月 ", delta(k.today, k.last_month, k.better)))));
  }
  const SERVICE_COLS = [["name", "业务"], ["waiting", "等候"], ["oldest_wait_min", "最长等候"],
    ["eta_min", "预计等候"], ["target_min", "目标"], ["windows", "服务窗口"], ["served", "已办"]];
  function showServices() {
    const table = $("services");
    if (!table.tHead) {
      table.append(el("thead", {}, el("tr", {}, ...SERVICE_COLS.map(([k, t]) =>
        el("th", {"data-sort": k, onclick: () => sortBy("services", k)}, t)))), el("tbody"));
    }
    let list = desk.services;
    const s = sorts.services;
    if (s) list = [...list].sort((a, b) => { const x = a[s.key] ?? -1, y = b[s.key] ?? -1;
                                             return (x > y ? 1 : x < y ? -1 : 0) * s.dir; });
    const tbody = table.tBodies[0];
    list.forEach((svc, i) => {
      let tr = serviceRows.get(svc.code);
      if (!tr) {
        tr = el("tr", {"data-service": svc.code}, ...SERVICE_COLS.map(([k]) => el("td", {"data-col": k})));
        serviceRows.set(svc.code, tr);
      }
      tr.classList.toggle("over", svc.over_target);
      const cell = (k) => tr.querySelector(`[data-col="${k}"]`);
      text(cell("name"), svc.name);
      const sites = Object.entries(svc.waiting_by_site || {});  // each building's own queue
      text(cell("waiting"), `${svc.waiting} 人` + (sites.length && svc.waiting
        ? ` (${sites.map(([site, n]) => `${site} ${n}`).join(" · ")})` : ""));
      text(cell("oldest_wait_min"), fmt(svc.oldest_wait_min, " 分"));
      const waits = Object.entries(svc.wait_by_site || {});  // each building's own
      text(cell("eta_min"), !svc.waiting ? "—" : waits.length
        ? waits.map(([site, w]) => `${site} ${w}`).join(" · ") : (svc.wait_text || fmt(svc.eta_min, " 分")));
      text(cell("target_min"), `${svc.target_min} 分`);
      const zones = Object.entries(svc.windows_by_zone).map(([z, n]) => `${(desk.zones.find((x) => x.id === z) || {name: z}).name} ${n}`).join(" · ");
      text(cell("windows"), svc.windows ? `${svc.windows} 个` : "无窗口");
      cell("windows").title = zones;
      cell("windows").classList.toggle("error", svc.windows === 0 && svc.waiting > 0);
      text(cell("served"), svc.served);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    const zs = $("zone-summary");
    zs.replaceChildren(el("tr", {}, ...["办税厅", "开 / 停 / 关", "办理中", "今日", "忙碌"].map((t) => el("th", {class: "nowrap"}, t))),
      ...desk.zones.map((z) => el("tr", {"data-zone": z.id}, el("td", {}, z.name),
        el("td", {class: "nowrap"}, el("span", {class: "better"}, z.open), " / ",
           el("span", {class: z.paused ? "warn" : ""}, z.paused), " / ", z.closed),
        el("td", {}, z.serving), el("td", {class: "nowrap"}, `${z.served} 人`),
        el("td", {class: "nowrap"}, `${fmt(z.busy_min / 60)} 时`))));
  }
  // --- devices: a login in the wrong hands is suspended from the row that names it ------
  let suspending = null;  // {client, from, dispenser} while its confirmation is open
  let deviceNote = null;  // {client, ok, text}: what the last suspend or resume did
  // offer: "" (no tickets to void), "dispenser" (offered, unticked: a shared id need not
  // have issued anything), "burst" (ticked: the flood's tickets are nobody's)
  // count: the tickets it issued in the last desk.void_minutes that still wait (null: not
  // a dispenser); the box is drawn again on every live update, keeping the tick as set
  function suspendBox(client, count, pauses, lastKiosk) {
    const minutes = desk.void_minutes;
    const voids = el("input", {type: "checkbox", "data-void": client,
                               onchange: () => { suspending.voids = voids.checked; }});
    voids.checked = suspending.voids;
    const close = () => { suspending = null; showDevices(); showAlerts(); };
    return el("div", {class: "confirm", "data-confirm-suspend": client},
      el("strong", {class: "impact"}, `停用 ${client}? 此后它的一切请求都将被拒绝, 直到恢复。`),
      lastKiosk ? el("p", {class: "warn", "data-last-kiosk": lastKiosk},
                     `它是 ${lastKiosk} 最后一台在用的取号机: 停用后那里无法取号, 请安排人工取号或引导到其他办税点`) : "",
      count ? el("label", {}, voids, ` 同时作废它最近 ${minutes} 分钟取的、仍在等候的 ${count} 个号 (作废后不能恢复, 持号人需重新取号)`)
        : count === 0 ? el("p", {class: "muted", "data-no-voids": client}, `它最近 ${minutes} 分钟取的号都已不在等候, 无号可作废`) : "",
      pauses.length ? el("p", {"data-pauses": pauses.join()},
        `${pauses.map((n) => `${n}号`).join("、")}窗口将暂停 (它的叫号器不能再叫号); 恢复后在窗口按「恢复」键或在此开窗`) : "",
      el("div", {class: "panel-buttons"},
        el("button", {class: "danger", "data-suspend-go": client,
                      onclick: () => device(client, "suspend", count && voids.checked ? minutes : 0)}, "确认停用"),
        el("button", {"data-suspend-cancel": client, onclick: close}, "取消")));
  }
  // burst: ticked at first (a flood's tickets are nobody's); otherwise offered unticked
  function suspendButton(client, from, count, burst, pauses, lastKiosk) {
    if (!me.may_act) return "";
    if (suspending && suspending.client === client && suspending.from === from) return suspendBox(client, count, pauses || [], lastKiosk);
    return el("button", {class: "danger", "data-suspend": client,
      onclick: () => { suspending = {client, from, voids: burst && count !== null}; showDevices(); showAlerts(); }}, "停用");
  }
  // --- one ticket at the help desk: a missed call back in line, a move, a cancel -------
  const TICKET_STATE = {waiting: "等候中", called: "已叫号", serving: "办理中", done: "已办结",
                        no_show: "过号", parked: "挂起", cancelled: "已取消", voided: "已作废",
                        transferred: "已转办"};
  let ticketNote = null;  // {ok, text}: what the last action on it did
  async function findTicket(number) {
    const out = $("ticket-found");
    let t;
    try { t = await hallq.getJSON(`/api/tickets/${encodeURIComponent(number)}`); } catch (e) {
      out.replaceChildren(el("p", {class: "fb error"}, e.status === 404 ? `今天没有 ${number} 号` : (failed(e) || {}).message || ""));
      return;
    }
    const at = t.window ? ` · ${t.window}号窗口` : t.directed_window ? ` · 转给${t.directed_window}号窗口` : "";
    const when = t.called_at && t.state !== "waiting" ? ` ${t.called_at.slice(11, 16)} 叫号`
      : t.issued_at ? ` ${t.issued_at.slice(11, 16)} 取号` : "";
    // a cancel or a move cannot be taken back: said first, with where the window is
    function send(label, body) {
      const w = body.to_window && desk.windows.find((x) => x.window === body.to_window);
      const zone = w && desk.zones.find((z) => z.id === w.zone);
      const away = zone && t.site && zone.site && zone.site !== t.site;
      const confirmBox = el("div", {class: "confirm", "data-confirm-ticket": body.action},
        el("strong", {class: "impact"}, `${t.number} ${label}? 不能撤销。`),
        away ? el("p", {class: "warn", "data-other-site": zone.site},
                  `${body.to_window}号窗口在另一办税点 (${zone.site}, ${zone.name}): 请告知纳税人前往, 叫号只在那里的显示屏和广播`) : "",
        w && w.status === "paused" ? el("p", {class: "warn"}, `${body.to_window}号窗口暂停中, 恢复后才会叫号`) : "",
        el("div", {class: "panel-buttons"},
          el("button", {class: body.action === "cancel" ? "danger" : "primary", "data-ticket-go": body.action,
                        onclick: () => go(label, body)}, "确认"),
          el("button", {"data-ticket-back": "", onclick: () => findTicket(t.number)}, "返回")));
      out.replaceChildren(out.firstChild, confirmBox);
    }
    async function go(label, body) {
      try {
        await post(`/api/supervisor/tickets/${encodeURIComponent(t.number)}`, body);
        ticketNote = {ok: true, text: `✓ ${t.number} 已${label} ${hhmm()}`};
      } catch (e) { const f = failed(e); if (!f) return; ticketNote = {ok: false, text: f.message}; }
      findTicket(t.number);
    }
    const act = (label, body, cls) => el("button", {class: cls || "", "data-ticket-action": body.action,
                                                    onclick: () => (body.action === "reinstate" ? go : send)(label, body)}, label);
    const buttons = [];
    if (me.may_act && t.state === "no_show") buttons.push(act("恢复排队", {action: "reinstate"}, "primary"));
    if (me.may_act && t.state === "waiting") {
      const win = el("select", {"data-to-window": ""}, ...desk.windows.filter((w) => w.status !== "closed")
        .map((w) => el("option", {value: w.window}, `${w.window}号${w.status === "paused" ? " (暂停)" : ""}`)));
      const svc = el("select", {"data-to-service": ""}, ...desk.services.filter((s) => s.code !== t.service)
        .map((s) => el("option", {value: s.code}, s.name)));
      buttons.push(el("span", {}, win, " ", el("button", {"data-ticket-action": "transfer-window", onclick: () =>
        send(`转到${win.value}号窗口`, {action: "transfer", to_window: Number(win.value)})}, "转到窗口")));
      buttons.push(el("span", {}, svc, " ", el("button", {"data-ticket-action": "transfer-service", onclick: () =>
        send(`转为${svc.options[svc.selectedIndex].text}`, {action: "transfer", to_service: svc.value})}, "转业务")));
    }
    if (me.may_act && ["waiting", "no_show", "parked"].includes(t.state)) buttons.push(act("取消", {action: "cancel"}, "danger"));
    out.replaceChildren(
      el("p", {"data-ticket": t.number, "data-state": t.state},
         el("strong", {}, t.number), ` · ${t.service_name} · ${TICKET_STATE[t.state] || t.state}${at}${when}`,
         t.state === "waiting" && t.people_ahead != null ? ` · 前面 ${t.people_ahead} 人` : ""),
      buttons.length ? el("div", {class: "panel-buttons"}, ...buttons) : "",
      ticketNote ? el("p", {class: "fb " + (ticketNote.ok ? "ok" : "error"), "data-ticket-note": ""}, ticketNote.text) : "");
    ticketNote = null;
  }
  async function device(client, action, minutes) {
    suspending = null;
    try {
      const r = await post(`/api/supervisor/devices/${encodeURIComponent(client)}`, {action, void_minutes: minutes || 0});
      deviceNote = {client, ok: true, text: action === "resume" ? `✓ 已恢复 ${client} ${hhmm()}` :
        `✓ 已停用 ${client}${r.voided ? `, 作废 ${r.voided} 个号` : ""}` +
        `${r.paused && r.paused.length ? `, ${r.paused.map((n) => `${n}号`).join("、")}窗口已暂停` : ""} ${hhmm()}`};
    } catch (e) {
      const f = failed(e);
      if (!f) return;
      deviceNote = {client, ok: false, text: f.message};
    }
    refresh(); audit();
  }
  function showDevices() {
    const note = deviceNote ? [el("li", {class: "fb " + (deviceNote.ok ? "ok" : "error"), "data-device-note": deviceNote.client}, deviceNote.text)] : [];
    $("devices").replaceChildren(...note, ...(desk.devices.length ? desk.devices.map((d) =>
      el("li", {"data-problem": d.problem, "data-client": d.client},
        el("span", {class: "pill " + (d.problem === "paper_low" ? "warning" : "critical")},
        {suspended: "停用", offline: "离线", paper_low: "纸将尽", paper_out: "缺纸", unhealthy: "异常"}[d.problem]), " ", d.text,
        d.since ? el("small", {class: "muted"}, ` ${d.since} 起`) : "", " ",
        d.problem === "suspended" && me.may_act ? el("button", {"data-resume": d.client, onclick: () => device(d.client, "resume")}, "恢复") :
          d.suspendable ? suspendButton(d.client, "device", d.voids ?? null, false, d.pauses, d.last_kiosk) : "")) :
      [el("li", {class: "muted"}, "全部设备在线, 打印纸充足")]));
    showPicker();
  }
  // any login, for the one no alert names (an engineer on the phone: its password leaked).
  // Redrawn only when what it shows changes: a live update must not close an open list.
  const ROLE = {dispenser: "取号机", window: "窗口机", board: "显示屏", supervisor: "主管台"};
  function showPicker() {
    const box = $("login-picker");
    const logins = me.may_act ? desk.logins : [];
    if (!logins.some((l) => l.client === picked)) picked = logins.length ? logins[0].client : null;
    const login = logins.find((l) => l.client === picked);
    const open = suspending && suspending.from === "picker";
    const key = JSON.stringify([logins.map((l) => l.client), picked, open && login, open && suspending.voids]);
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    if (!login) { box.replaceChildren(); return; }
    const select = el("select", {"data-pick-login": "", onchange: () => { picked = select.value; suspending = null; showPicker(); }},
      ...logins.map((l) => el("option", {value: l.client}, `${l.client} (${ROLE[l.role] || l.role})`)));
    select.value = picked;
    box.replaceChildren(el("span", {class: "muted"}, "停用其他设备: "), select, " ",
      suspendButton(login.client, "picker", login.voids ?? null, false, login.pauses, login.last_kiosk));
  }
  function showAlerts() {
    const open = desk.alerts.filter((a) => !a.acked_by).length;
    text($("alert-count"), open ? `${open} 条待处理` : "");
    $("alerts").replaceChildren(...(desk.alerts.length ? desk.alerts.map((a) => el("li",
      {"data-kind": a.kind, "data-key": a.key, class: a.acked_by ? "acked" : ""},
      el("span", {class: "pill " + a.severity}, a.severity_zh), " ",
      el("strong", {}, a.kind_zh), " ", a.text,
      a.count > 1 ? el("small", {class: "muted"}, ` ×${a.count}`) : "",
      el("small", {class: "muted"}, ` ${a.first === a.last ? a.last : `${a.first}–${a.last}`}`), " ",
      a.acked_by ? el("small", {class: "ackd"}, `✓ ${a.acked_by} ${a.acked_at} 已知悉`) :
        me.may_act ? el("button", {"data-ack": a.key, onclick: () => ack(a.key)}, "知悉") : "",
      a.suspend ? " " : "", a.suspend ? suspendButton(a.suspend, a.key, a.voids ?? null, a.kind === "issue_burst", a.pauses, a.last_kiosk) : "")) :
      [el("li", {class: "muted"}, "暂无告警")]));
  }
  async function ack(key) {
    try { await post("/api/supervisor/alerts/ack", {key}); } catch (e) { failed(e); }
    refresh(); audit();
  }
  function showAdvice() {
    const STATE = {applied: "已采纳", dismissed: "已忽略", restored: "已恢复", expired: "已过期"};
    // what is open or running, then the two latest of the rest (dismissed, expired)
    const live = desk.advice.filter((a) => a.state === "open" || a.state === "applied" || a.due_restore);
    const shown = [...live, ...desk.advice.filter((a) => !live.includes(a)).slice(0, 2)];
    $("advice").replaceChildren(...(shown.length ? shown.map((a) => {
      const box = el("div", {class: "advice " + a.state, "data-advice": a.id, "data-state": a.state},
        el("p", {}, a.text));
      const wins = a.windows.map((w) => `${w}号`).join("、");
      if (a.state === "open" && me.may_act) {
        box.append(el("div", {class: "panel-buttons"},
          el("button", {class: "primary", "data-advice-apply": a.id, onclick: () => advise(a.id, "apply")},
             `采纳: ${wins}改为${a.service_name}专窗`),
          el("button", {"data-advice-dismiss": a.id, onclick: () => advise(a.id, "dismiss")}, "忽略")));
      } else if (a.state !== "open") {
        const who = a.by ? `${a.by} ${a.acted_at || ""} ${STATE[a.state]}` : STATE[a.state];
        box.append(el("p", {class: "muted"}, who));
      }
      if (a.state === "applied" || a.state === "restored") {
        box.append(el("p", {class: "effect", "data-effect": a.id},
          `预计 ${fmt(a.before_min)} → ${fmt(a.after_min)} 分钟; 实际 ` +
          (a.realised_min == null ? "尚无叫号" : `${fmt(a.realised_min)} 分钟 (${a.realised_tickets} 人)`) +
          (a.until ? ` · 至 ${a.until}` : "")));
        if (a.due_restore && me.may_act) {
          box.append(el("button", {"data-advice-restore": a.id, onclick: () => advise(a.id, "restore")},
            `到时了: ${wins}恢复原业务`));
        }
      }
      return box;
    }) : [el("p", {class: "muted"}, "暂无建议 (预计收益够大时才提出)")]));
  }
  async function advise(id, verb) {
    const box = document.querySelector(`[data-advice="${id}"]`);
    try { await post(`/api/supervisor/advice/${id}/${verb}`); }
    catch (e) { const f = failed(e); if (f && box) box.append(el("p", {class: "error", "data-code": f.code}, f.message)); }
    refresh(); audit();
  }

  function show() {
    if (!desk) return;
    $("hall-name").textContent = desk.hall.name;
    text($("clock"), (desk.now || "").slice(11, 16));
    names = desk.service_names;
    showKpis(); showServices(); showDevices(); showAlerts(); showAdvice(); showWindows();
    if (desk.audit_last !== auditSeen) audit();  // a console's command over MQTT, say
  }

  // each table shows its newest rows, more on request up to what one read gives (the API's
  // 500): older ones are in the day report. A refresh keeps the depth the supervisor chose.
  const AUDIT_MAX = 500;
  const auditTables = {audit: {query: "console=0", page: 50}, "console-audit": {query: "console=1", page: 20}};
  for (const t of Object.values(auditTables)) t.want = t.page;
  let auditing = false, auditAgain = false;  // one read at a time: the desk refreshes twice a second
  async function audit() {
    if (!me.may_act) return;
    if (auditing) { auditAgain = true; return; }
    auditing = true;
    try {
      const newest = desk ? desk.audit_last : null;
      // a console's commands apart: a script with its password must not push the desk's out
      const [entries, consoles] = await Promise.all(Object.values(auditTables).map((t) =>
        hallq.getJSON(`/api/supervisor/audit?limit=${t.want}&${t.query}`)));
      auditSeen = newest;
      const rows = (list) => [
        el("tr", {}, ...["时间", "用户", "操作", "对象", "结果", "来源地址"].map((t) => el("th", {}, t))),
        ...list.map((a) => el("tr", {"data-action": a.action, "data-ok": String(a.ok)},
          el("td", {class: "nowrap"}, a.when),
          el("td", {}, a.user + (a.role ? ` (${a.role})` : "")),
          el("td", {}, a.action_zh), el("td", {}, a.target_zh || a.target || ""),
          el("td", {}, el("span", {class: "pill " + (a.ok ? "ok" : "critical")},
                          a.ok ? "成功" : (a.result_zh || "失败"))),
          el("td", {}, a.client || "")))];
      for (const [id, list] of [["audit", entries], ["console-audit", consoles]]) {
        const full = list.length >= auditTables[id].want;  // there may be older ones
        $(id).replaceChildren(...rows(list));
        $(id + "-more").hidden = !full || auditTables[id].want >= AUDIT_MAX;
        $(id + "-end").hidden = !full || auditTables[id].want < AUDIT_MAX;
      }
      $("console-audit-box").hidden = !consoles.length;
    } catch (e) { failed(e); } finally { auditing = false; }
    if (auditAgain) { auditAgain = false; audit(); }
  }
  for (const [id, t] of Object.entries(auditTables)) {
    $(id + "-more").addEventListener("click", () => {
      t.want = Math.min(AUDIT_MAX, t.want + t.page * 2);
      audit();
    });
  }

  // one desk fetch at a time, at most about two a second: changes arriving meanwhile are
  // folded into the next (a busy hall changes many times a second; each answer costs the
  // coordinator a pass over the day's tickets)
  const refresh = hallq.serial(async () => {
    try { desk = await hallq.getJSON("/api/supervisor/desk"); show(); }
    catch (e) { if (e.status === 401) toLogin(); else throw e; }
    await new Promise((done) => setTimeout(done, 400));
  });

  async function slots() {
    const service = $("inv-service").value, day = $("inv-day").value;
    const s = await hallq.getJSON(`/api/appointments/slots?service=${service}&day=${day}`);
    $("inv-start").replaceChildren(...s.slots.filter((x) => x.open).map((x) =>
      el("option", {value: x.start}, `${x.slot} (余 ${x.free}${x.comfort ? " · " + x.comfort : ""})`)));
  }
  const BOOKING = {booked: "已预约", checked_in: "已签到", no_show: "未到", cancelled: "已取消"};
  async function bookings() {
    const list = await hallq.getJSON(`/api/supervisor/appointments?day=${$("inv-day").value}`);
    $("bookings").replaceChildren(...list.map((b) => el("tr", {},
      el("td", {class: "code-small"}, b.code), el("td", {}, names[b.service] || b.service), el("td", {}, b.slot),
      el("td", {}, BOOKING[b.state] || b.state), el("td", {}, b.note || ""))));
  }

  // --- invitations (主动预约) ------------------------------------------------------------
  const INVITED = {offered: "已邀约, 待到", accepted: "已到", declined: "已谢绝", no_show: "未到"};
  async function invitations(load) {
    if (!me.may_act) return;
    let data;
    try {
      if (load) $("inv-note").textContent = "正在读取近四周的记录…";
      data = await hallq.getJSON("/api/supervisor/invitations");
    } catch (e) { const f = failed(e); if (f) $("inv-note").textContent = f.message; return; }
    if (load) {
      $("inv-note").textContent = `近 ${data.lookback_days} 天 ${data.candidates.length} 人` +
        (data.comfort ? " · 时段按办税舒适度“较少”挑选" : " · 暂无舒适度指数, 列出最早的空闲时段");
      $("candidates").replaceChildren(
        el("tr", {}, ...["纳税人", "原因", "业务", "来访", "时段", ""].map((t) => el("th", {}, t))),
        ...data.candidates.map((cand) => {
          const pick = el("select", {}, ...cand.slots.map((x) => el("option", {value: `${x.day} ${x.start}`},
            `${x.day.slice(5)} ${x.slot}${x.comfort ? " · " + x.comfort : ""} (余 ${x.free})`)));
          const out = el("div", {class: "fb"});
          const go = el("button", {"data-invite": cand.ref, onclick: async () => {
            const [day, start] = pick.value.split(" ");
            go.disabled = true;
            try {
              const b = await post("/api/supervisor/invitations", {ref: cand.ref, service: cand.service, day, start});
              out.className = "fb ok"; out.textContent = `✓ 已约 ${b.day.slice(5)} ${b.slot} · ${b.code}`;
              invitations(false); audit();
            } catch (e) { const f = failed(e); if (f) { out.className = "fb error"; out.textContent = f.message; go.disabled = false; } }
          }}, "邀约");
          if (!cand.slots.length) go.disabled = true;
          return el("tr", {"data-candidate": cand.ref}, el("td", {class: "code-small"}, cand.label + "…"),
            el("td", {class: "why"}, cand.reason), el("td", {class: "nowrap"}, cand.service_name),
            el("td", {class: "nowrap"}, `${cand.visits} 天 · 最近 ${(cand.last || "").slice(5)}`),
            el("td", {}, cand.slots.length ? pick : el("span", {class: "muted"}, "近期无空闲时段")),
            el("td", {class: "act"}, go, out));
        }));
    }
    $("invited").replaceChildren(
      el("tr", {}, ...["预约码", "纳税人", "业务", "日期", "时段", "结果", "邀约人", ""].map((t) => el("th", {}, t))),
      ...(data.invited.length ? data.invited.map((i) => el("tr", {"data-invited": i.code, "data-state": i.state},
        el("td", {class: "code-small"}, i.code), el("td", {class: "code-small"}, i.label + "…"),
        el("td", {}, i.service_name), el("td", {}, i.day.slice(5)), el("td", {}, i.slot),
        el("td", {}, el("span", {class: "pill " + {offered: "", accepted: "ok", declined: "closed", no_show: "warning"}[i.state]},
                        INVITED[i.state])),
        el("td", {}, i.by),
        el("td", {}, i.state === "offered" ? el("button", {"data-decline": i.code, onclick: async () => {
          try { await post(`/api/supervisor/invitations/${i.code}/decline`); } catch (e) { failed(e); }
          invitations(false); audit();
        }}, "谢绝") : ""))) : [el("tr", {}, el("td", {colspan: "8", class: "muted"}, "还没有邀约"))]));
  }

  async function init() {
    try { me = await hallq.getJSON("/api/session"); } catch (e) { return toLogin(); }
    hallq.csrf = me.csrf;
    $("user").textContent = me.user;
    $("role").textContent = me.may_act ? "值班长" : "只读";
    $("role").dataset.role = me.role;
    document.body.classList.toggle("readonly", !me.may_act);
    $("audit-card").hidden = !me.may_act;
    $("invite-card").hidden = !me.may_act;
    $("logout").onclick = async () => {
      try { await hallq.getJSON("/api/logout", {method: "POST"}); } finally { toLogin(); }
    };
    await refresh();
    $("inv-service").replaceChildren(...desk.services.map((s) => el("option", {value: s.code}, s.name)));
    $("inv-day").value = desk.hall.day;
    $("inv-service").onchange = $("inv-day").onchange = () => { slots(); bookings(); };
    $("invite").onsubmit = async (ev) => {
      ev.preventDefault();
      const f = new FormData($("invite"));
      try {
        const b = await post("/api/supervisor/appointments", Object.fromEntries(f));
        $("invite-result").replaceChildren("预约码 ", el("span", {class: "code"}, b.code), ` ${b.day} ${b.slot}`);
      } catch (e) { const x = failed(e); if (x) $("invite-result").textContent = x.message; }
      slots(); bookings(); audit();
    };
    slots(); bookings(); invitations(false);  // (the audit log: read by show())
    $("find-candidates").onclick = () => invitations(true);
    $("ticket-find").onsubmit = (ev) => {
      ev.preventDefault();
      const number = $("ticket-number").value.trim().toUpperCase();
      if (number) { ticketNote = null; findTicket(number); }
    };
    hallq.live(refresh, $("live"));
  }
  init();
})();
