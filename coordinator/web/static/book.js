// Taxpayer booking: a service, a day and a free slot, under an ID or mobile number (sent
// once over the connection, hashed by the coordinator, never kept here); the answer is the
// code to enter at the dispenser. The same page looks a booking up and cancels it.
// Chinese first, English on the second line, as on every public page.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = hallq.el;
  let services = [];
  const WEEKDAYS = [["周日", "Sun"], ["周一", "Mon"], ["周二", "Tue"], ["周三", "Wed"],
                    ["周四", "Thu"], ["周五", "Fri"], ["周六", "Sat"]];
  const COMFORT = {"较少": "quiet", "适中": "moderate", "较多": "busy"};
  const STATE = {booked: ["已预约", "Booked"], checked_in: ["已取号", "Checked in"],
                 no_show: ["未到", "Not attended"], cancelled: ["已取消", "Cancelled"]};
  const weekday = (d) => WEEKDAYS[new Date(d + "T12:00:00").getDay()];

  // a hall nearby that is clearly quicker today for the chosen service, if the city says so
  const nearby = hallq.serial(() =>
    hallq.nearby($("service").value, null, $("nearby-card"), $("nearby")));

  function showMaterials() {
    nearby();
    const s = services.find((x) => x.code === $("service").value);
    $("materials").replaceChildren(...(s ? s.materials : []).map((m) => el("li", {}, m)));
    $("materials-card").hidden = !(s && s.materials.length);
  }

  async function loadSlots(firstTime) {
    const s = await hallq.getJSON(`/api/appointments/slots?service=${$("service").value}` +
                                  (firstTime ? "" : `&day=${$("day").value}`));
    if (firstTime) $("day").replaceChildren(...s.days.map((d) => {
      const [zh, en] = weekday(d);
      return el("option", {value: d}, `${d} ${zh} · ${en}`);
    }));
    const picked = firstTime ? null : ($("slots").querySelector("input:checked") || {}).value;
    $("slots").replaceChildren(...s.slots.map((x) => {
      const input = el("input", {type: "radio", name: "start", value: x.start});
      input.disabled = !x.open || x.free === 0;
      input.checked = !input.disabled && x.start === picked;
      input.onchange = () => { $("submit").disabled = false; };
      const state = !x.open ? "已过 · over" : x.free === 0 ? "约满 · full" : `余 ${x.free} · ${x.free} left`;
      const busy = x.comfort ? el("span", {class: `comfort comfort-${x.comfort}`},
                                 ` ${x.comfort} · ${COMFORT[x.comfort] || ""}`) : "";
      return el("label", {class: "slot"}, input, ` ${x.slot} `,
                el("span", {class: "muted"}, state), busy);
    }));
    $("submit").disabled = !$("slots").querySelector("input:checked");
  }

  function showError(target, e) { target.textContent = e.message; target.className = "error"; }

  async function init() {
    const h = await hallq.getJSON("/api/hall");
    $("hall-name").textContent = h.hall.name;
    services = h.services;
    $("service").replaceChildren(...services.map((s) =>
      el("option", {value: s.code}, s.name_en ? `${s.name} · ${s.name_en}` : s.name)));
    $("service").onchange = () => { showMaterials(); $("slots").replaceChildren(); loadSlots(false); };
    $("day").onchange = () => { $("slots").replaceChildren(); loadSlots(false); };
    for (const r of document.querySelectorAll("input[name=kind]")) {
      r.onchange = () => {
        const phone = r.value === "phone" && r.checked;
        $("who").placeholder = phone ? "11 位手机号 · 11-digit mobile" : "18 位身份证号 · 18-character ID";
        $("who").inputMode = phone ? "tel" : "text";
      };
    }
    $("book").onsubmit = async (ev) => {
      ev.preventDefault();
      $("error").textContent = "";
      const f = Object.fromEntries(new FormData($("book")));
      const body = {service: f.service, day: f.day, start: f.start};
      body[f.kind] = f.who.trim();
      try {
        const b = await hallq.getJSON("/api/appointments", {method: "POST",
          headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
        $("who").value = "";
        $("code").textContent = b.code;
        $("qr").src = `/api/appointments/${encodeURIComponent(b.code)}/qr.svg`;
        const [zh, en] = weekday(b.day);
        $("when").textContent = `${b.day} ${zh} · ${en} ${b.slot}`;
        $("result").hidden = false;
        $("result").scrollIntoView({block: "nearest"});
      } catch (e) { showError($("error"), e); }
      loadSlots(false);
    };

    const show = (b) => {
      const [zh, en] = weekday(b.day), [szh, sen] = STATE[b.state] || [b.state, b.state];
      const svc = services.find((s) => s.code === b.service);
      $("cancel-result").className = "";
      $("cancel-result").textContent =
        `${b.code}: ${svc ? svc.name : b.service} ${b.day} ${zh} ${b.slot} — ${szh}\n` +
        `${svc ? svc.name_en || svc.name : b.service}, ${b.day} ${en} ${b.slot} — ${sen}`;
    };
    const code = () => encodeURIComponent($("cancel-code").value.trim().toUpperCase());
    $("lookup").onclick = async () => {
      try { show(await hallq.getJSON(`/api/appointments/${code()}`)); }
      catch (e) { showError($("cancel-result"), e); }
    };
    $("cancel").onsubmit = async (ev) => {
      ev.preventDefault();
      const value = $("cancel-who").value.trim();
      const body = /^\d{17}[\dXx]$/.test(value) ? {id_number: value} : {phone: value};
      try {
        show(await hallq.getJSON(`/api/appointments/${code()}/cancel`, {method: "POST",
          headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)}));
        $("cancel-who").value = "";
      } catch (e) { showError($("cancel-result"), e); }
      loadSlots(false);
    };
    showMaterials();
    setInterval(nearby, 30000);
    hallq.live((change) => { if (change.type === "city") nearby(); });
    await loadSlots(true);
  }
  init().catch((e) => showError($("error"), e));
})();
