// Supervisor desk: window controls (same command path as the pads), alerts, invitations,
// the audit log. The session cookie goes with every same-origin request; changes also
// carry the session's CSRF token (hallq.csrf, sent by hallq.getJSON). A viewer sees the
// same desk without its controls; an expired session goes back to the login page.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = hallq.el;
  const STATUS = {open: "开放", paused: "暂停", closed: "关闭"};
  let services = [];
  let me = null;
  const toLogin = () => location.assign("/login?next=/supervisor");

  async function command(win, body) {
    try {
      const r = await hallq.getJSON(`/api/supervisor/windows/${win}`, {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
      $("message").textContent = `${win}号窗口: ${body.action} ✓`;
      return r;
    } catch (e) {
      if (e.status === 401) return toLogin();
      $("message").textContent = `${win}号窗口: ${e.message}`;
      $("message").className = "error";
    }
  }

  function skillsEditor(w) {
    if (!me.may_act) {
      return el("span", {}, services.filter((s) => s.code in w.skills).map((s) => s.name).join("、"));
    }
    const box = el("span", {});
    for (const s of services) {
      const cb = el("input", {type: "checkbox", value: s.code, title: s.name});
      cb.checked = s.code in w.skills;
      box.append(el("label", {}, cb, s.name, " "));
    }
    box.append(el("button", {onclick: () => {
      const skills = {};
      for (const cb of box.querySelectorAll("input:checked")) skills[cb.value] = w.skills[cb.value] || 1.0;
      command(w.window, {action: "set_skills", skills});
    }}, "保存业务"));
    return box;
  }

  function show(h, alerts) {
    $("hall-name").textContent = h.hall.name;
    services = h.services;
    $("alerts").replaceChildren(
      el("tr", {}, el("th", {}, "级别"), el("th", {}, "类型"), el("th", {}, "内容"), el("th", {}, "时间")),
      ...alerts.map((a) => el("tr", {}, el("td", {}, el("span", {class: "pill " + a.severity}, a.severity)),
                              el("td", {}, a.kind), el("td", {}, a.message),
                              el("td", {}, (a.at || "").slice(11, 19)))));
    $("windows").replaceChildren(
      el("tr", {}, el("th", {}, "窗口"), el("th", {}, "状态"), el("th", {}, "当前"),
         el("th", {}, me.may_act ? "操作" : ""), el("th", {}, "业务")),
      ...h.windows.map((w) => el("tr", {"data-window": w.window},
        el("td", {}, w.window + "号"),
        el("td", {}, el("span", {class: "pill " + w.status, "data-status": w.status},
                        STATUS[w.status] || w.status)),
        el("td", {}, w.ticket || "—"),
        el("td", {}, ...(me.may_act ? ["open", "pause", "resume", "close"] : []).map((a) =>
          el("button", {"data-action": a, onclick: () => command(w.window, {action: a})},
             {open: "开窗", pause: "暂停", resume: "恢复", close: "关窗"}[a]))),
        el("td", {}, skillsEditor(w)))));
  }

  const ACTIONS = {login: "登录", logout: "退出", denied: "被拒绝", open: "开窗", close: "关窗",
                   pause: "暂停", resume: "恢复", set_skills: "改业务", invite: "邀约"};
  function showAudit(entries) {
    $("audit").replaceChildren(
      el("tr", {}, ...["时间", "用户", "操作", "对象", "结果", "来源地址"].map((t) => el("th", {}, t))),
      ...entries.map((a) => el("tr", {"data-action": a.action, "data-ok": String(a.ok)},
        el("td", {}, new Date(a.at * 1000).toLocaleString("zh-CN", {hour12: false})),
        el("td", {}, a.user + (a.role ? ` (${a.role})` : "")),
        el("td", {}, ACTIONS[a.action] || a.action), el("td", {}, a.target || ""),
        el("td", {}, el("span", {class: "pill " + (a.ok ? "ok" : "critical")},
                        a.ok ? "成功" : (a.result || "失败"))),
        el("td", {}, a.client || ""))));
  }

  const refresh = hallq.serial(async () => {
    try {
      const [h, alerts, audit] = await Promise.all([hallq.getJSON("/api/supervisor/hall"),
        hallq.getJSON("/api/supervisor/alerts"),
        me.may_act ? hallq.getJSON("/api/supervisor/audit?limit=50") : null]);
      show(h, alerts);
      if (audit) showAudit(audit);
    } catch (e) { if (e.status === 401) toLogin(); else throw e; }
  });

  async function slots() {
    const service = $("inv-service").value, day = $("inv-day").value;
    const s = await hallq.getJSON(`/api/appointments/slots?service=${service}&day=${day}`);
    $("inv-start").replaceChildren(...s.slots.filter((x) => x.open).map((x) =>
      el("option", {value: x.start}, `${x.slot} (余 ${x.free})`)));
  }
  async function bookings() {
    const list = await hallq.getJSON(`/api/supervisor/appointments?day=${$("inv-day").value}`);
    $("bookings").replaceChildren(...list.map((b) => el("tr", {},
      el("td", {class: "code"}, b.code), el("td", {}, b.service), el("td", {}, b.slot),
      el("td", {}, b.state), el("td", {}, b.note || ""))));
  }

  async function init() {
    try { me = await hallq.getJSON("/api/session"); } catch (e) { return toLogin(); }
    hallq.csrf = me.csrf;
    $("user").textContent = me.user;
    $("role").textContent = me.may_act ? "值班长 supervisor" : "只读 viewer";
    $("role").dataset.role = me.role;
    document.body.classList.toggle("readonly", !me.may_act);
    $("audit-card").hidden = !me.may_act;
    $("invite").hidden = !me.may_act;
    $("logout").onclick = async () => {
      try { await hallq.getJSON("/api/logout", {method: "POST"}); } finally { toLogin(); }
    };
    const h = await hallq.getJSON("/api/hall");
    $("inv-service").replaceChildren(...h.services.map((s) => el("option", {value: s.code}, s.name)));
    $("inv-day").value = h.hall.day;
    $("inv-service").onchange = $("inv-day").onchange = () => { slots(); bookings(); };
    $("invite").onsubmit = async (ev) => {
      ev.preventDefault();
      const f = new FormData($("invite"));
      try {
        const b = await hallq.getJSON("/api/supervisor/appointments", {method: "POST",
          headers: {"Content-Type": "application/json"}, body: JSON.stringify(Object.fromEntries(f))});
        $("invite-result").replaceChildren("预约码 ", el("span", {class: "code"}, b.code), ` ${b.day} ${b.slot}`);
      } catch (e) { $("invite-result").textContent = e.message; }
      slots(); bookings();
    };
    slots(); bookings();
    hallq.live(refresh, $("live"));
    refresh();
  }
  init();
})();
