// Taxpayer booking: pick a service, a day and a free slot; the answer is the code to
// enter at the dispenser.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = hallq.el;
  let services = [];
  const WEEKDAYS = ["周日 Sun", "周一 Mon", "周二 Tue", "周三 Wed", "周四 Thu", "周五 Fri", "周六 Sat"];

  function showMaterials() {
    const s = services.find((x) => x.code === $("service").value);
    $("materials").replaceChildren(...(s ? s.materials : []).map((m) => el("li", {}, m)));
    $("materials-card").hidden = !(s && s.materials.length);
  }

  async function loadSlots(firstTime) {
    const s = await hallq.getJSON(`/api/appointments/slots?service=${$("service").value}` +
                                  (firstTime ? "" : `&day=${$("day").value}`));
    if (firstTime) $("day").replaceChildren(...s.days.map((d) => el("option", {value: d},
      `${d} ${WEEKDAYS[new Date(d + "T12:00:00").getDay()]}`)));
    $("slots").replaceChildren(...s.slots.map((x) => {
      const input = el("input", {type: "radio", name: "start", value: x.start});
      input.disabled = !x.open || x.free === 0;
      input.onchange = () => { $("submit").disabled = false; };
      const busy = x.comfort ? el("span", {class: `comfort comfort-${x.comfort}`},
                                 ` ${x.comfort}`) : "";
      return el("label", {style: "display:block"}, input,
                ` ${x.slot} `, el("span", {class: "muted"}, x.open ? `余 ${x.free}` : "已过"),
                busy);
    }));
    $("submit").disabled = true;
  }

  async function init() {
    const h = await hallq.getJSON("/api/hall");
    $("hall-name").textContent = h.hall.name;
    services = h.services;
    $("service").replaceChildren(...services.map((s) => el("option", {value: s.code}, s.name)));
    $("service").onchange = () => { showMaterials(); loadSlots(false); };
    $("day").onchange = () => loadSlots(false);
    $("book").onsubmit = async (ev) => {
      ev.preventDefault();
      $("error").textContent = "";
      const f = Object.fromEntries(new FormData($("book")));
      try {
        const b = await hallq.getJSON("/api/appointments", {method: "POST",
          headers: {"Content-Type": "application/json"}, body: JSON.stringify(f)});
        $("code").textContent = b.code;
        $("qr").src = `/api/appointments/${encodeURIComponent(b.code)}/qr.svg`;
        $("when").textContent = `${b.day} ${WEEKDAYS[new Date(b.day + "T12:00:00").getDay()]} ${b.slot}`;
        $("result").hidden = false;
      } catch (e) { $("error").textContent = e.message; }
      loadSlots(false);
    };
    showMaterials();
    await loadSlots(true);
  }
  init().catch((e) => { $("error").textContent = e.message; });
})();
