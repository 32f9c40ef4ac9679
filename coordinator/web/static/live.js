// Shared by the pages: JSON fetch and a Server-Sent Events subscription that refreshes a
// page on every change the coordinator publishes. EventSource reconnects by itself.
"use strict";
window.hallq = {
  csrf: null,  // the desk's session token for state-changing requests (set by the desk)
  async getJSON(url, opts) {
    opts = Object.assign({cache: "no-store"}, opts || {});
    if (hallq.csrf && opts.method && opts.method !== "GET") {
      opts.headers = Object.assign({"X-CSRF-Token": hallq.csrf}, opts.headers || {});
    }
    const r = await fetch(url, opts);
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { const e = new Error((body.error && body.error.message) || r.statusText);
                 e.status = r.status; e.body = body; throw e; }
    return body;
  },
  // A stream holds one of the six connections a browser keeps to a host: a seventh page
  // (a QR scanned again and again, several tickets open) waited for ever on "连接中". So a
  // page streams only while it is shown; hidden, it lets go and asks every POLL_MS (a
  // called ticket's page still chimes, a little later), and streams again when shown.
  POLL_MS: 15000,
  live(onChange, indicator) {
    const mark = (on) => { if (indicator) { indicator.className = "live " + (on ? "on" : "off");
                                            indicator.textContent = on ? "实时" : "连接中断"; } };
    let es = null, poll = null;
    const stream = () => {
      if (es) return;
      clearInterval(poll);
      es = new EventSource("/api/stream");
      es.addEventListener("hello", () => { mark(true); onChange({type: "hello"}); });
      es.addEventListener("change", (ev) => onChange(JSON.parse(ev.data)));
      es.onerror = () => mark(false);
    };
    const letGo = () => {
      if (es) { es.close(); es = null; }
      clearInterval(poll);
      poll = setInterval(() => onChange({type: "poll"}), hallq.POLL_MS);
    };
    document.addEventListener("visibilitychange", () => (document.hidden ? letGo() : stream()));
    if (document.hidden) { letGo(); onChange({type: "poll"}); } else stream();
  },
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k.startsWith("on")) node[k] = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
    return node;
  },
  // Quieter halls nearby for the same service (/api/nearby): fills `list` and shows `card`
  // only while the city link is up and some hall is clearly quicker; else hides it.
  async nearby(service, ticket, card, list) {
    let n = null;
    try {
      n = await hallq.getJSON("/api/nearby?service=" + encodeURIComponent(service) +
                              (ticket ? "&ticket=" + encodeURIComponent(ticket) : ""));
    } catch (e) { /* the hall's own page goes on without it */ }
    const halls = n && n.link ? n.halls : [];
    list.replaceChildren(...halls.map((h) => {
      const where = [h.district, h.distance_km != null ? `${h.distance_km} km` : null]
        .filter(Boolean).join(" · ");
      const eta = Math.round(h.eta_min);
      return hallq.el("li", {"data-hall": h.hall}, hallq.el("b", {}, h.name),
        where ? hallq.el("span", {class: "muted"}, ` ${where}`) : "",
        hallq.el("br"), `预计等候约 ${eta} 分钟，${h.waiting} 人排队`,
        hallq.el("span", {class: "en"}, ` · about ${eta} min, ${h.waiting} waiting`));
    }));
    card.hidden = halls.length === 0;
  },
  minutes(s) { return s == null ? "—" : (s / 60).toFixed(1) + " 分钟"; },
  // one refresh at a time; a change arriving meanwhile triggers one more afterwards
  serial(fn) {
    let running = false, again = false;
    const run = async () => {
      if (running) { again = true; return; }
      running = true;
      try { do { again = false; await fn(); } while (again); } finally { running = false; }
    };
    return run;
  },
};
