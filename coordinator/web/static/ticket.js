// The page a ticket's QR code opens: /t/{hall}/{number}. Every message is Chinese on its
// first line and English on the second. When the number is called the title changes, the
// window shows in large type, and the phone vibrates and chimes where it allows.
"use strict";
(() => {
  const number = decodeURIComponent(location.pathname.split("/").pop());
  const $ = (id) => document.getElementById(id);
  $("number").textContent = number;
  document.title = number + " 排队进度";
  let materialsShown = null;  // the list drawn, so a refresh redraws it only when it changed
  let lastState = null;
  let audio = null;

  const TEXT = {
    called: (t) => [`请到${t.window}号窗口办理`, `Please go to window ${t.window}`],
    serving: (t) => [`正在${t.window}号窗口办理`, `Being served at window ${t.window}`],
    done: (t) => t.window ? [`已在${t.window}号窗口办结`, `Done at window ${t.window}`] : ["已办结", "Done"],
    no_show: () => ["已过号", "Your number was called and missed"],
    parked: () => ["暂缓办理，请留意叫号", "On hold, please listen for your number"],
    cancelled: () => ["号码已取消", "Ticket cancelled"],
    voided: () => ["号码已作废", "Ticket voided"],
    transferred: () => ["已转办，请留意叫号", "Transferred, please listen for your number"],
  };
  const DETAIL = {
    no_show: (t) => [
      (t.window ? `${t.window}号窗口 ${clock(t.called_at)} 叫号未到。` : "") +
        "请到导税台说明，恢复排队；本号当天有效，闭厅前均可恢复。",
      (t.window ? `Called to window ${t.window} at ${clock(t.called_at)}. ` : "") +
        "Ask at the help desk to rejoin the queue; the number is kept until the hall closes today."],
    // a kiosk printed it and went wrong (a stolen login, a flood), or it was never printed:
    // its holder, if any, needs to know what to do (found by a supervisor)
    voided: () => ["此号不会被叫到。如您持有此号，请到导税台说明或重新取号。",
                   "This number will not be called. If you hold it, ask at the help desk or take a new ticket."],
    called: (t) => [t.recalls ? `第 ${t.recalls} 次重呼，请尽快前往` : "请尽快前往，过号需到导税台恢复",
                    t.recalls ? `Called again (${t.recalls}), please hurry` : "Please go now; a missed call must be reinstated at the help desk"],
  };

  // "HH:MM" of a time the API gives in the hall's own zone (ISO 8601 with its offset)
  const clock = (iso) => (iso ? iso.slice(11, 16) : "—");

  function chime() {
    try {
      if (navigator.vibrate) navigator.vibrate([400, 150, 400, 150, 400]);
    } catch (e) { /* not allowed here */ }
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const t0 = audio.currentTime;
      for (const [i, f] of [[0, 880], [1, 660], [2, 880]]) {
        const o = audio.createOscillator(), g = audio.createGain();
        o.frequency.value = f;
        g.gain.setValueAtTime(0.3, t0 + i * 0.35);
        g.gain.exponentialRampToValueAtTime(0.001, t0 + i * 0.35 + 0.3);
        o.connect(g).connect(audio.destination);
        o.start(t0 + i * 0.35);
        o.stop(t0 + i * 0.35 + 0.32);
      }
    } catch (e) { /* no audio */ }
  }
  // phones play sound only after a tap on the page: one tap arms the alert
  $("alert-on").hidden = false;
  $("alert-on").onclick = () => {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    audio.resume();
    $("alert-on").textContent = "已开启提醒 · Alert on";
    $("alert-on").disabled = true;
  };

  function show(t) {
    $("service").textContent = t.service_name;
    $("status").dataset.state = t.state;
    $("card").dataset.state = t.state;
    let zh, en, dzh = "", den = "";
    if (t.state === "waiting") {
      zh = t.people_ahead === 0 ? "下一位就是您，请留意叫号" : `前面还有 ${t.people_ahead} 人`;
      en = t.people_ahead === 0 ? "You are next, please listen for your number" :
        `${t.people_ahead} ${t.people_ahead === 1 ? "person" : "people"} ahead of you`;
      if (t.wait && t.wait.basis === "no_window") {
        // "you are next" read as a promise for hours while no window served it
        [zh, en] = ["暂无窗口办理，开窗后叫号", "No window is open for this service now"];
        dzh = `前面还有 ${t.people_ahead} 人`;
        den = `${t.people_ahead} ahead of you`;
      } else if (t.wait_text) { dzh = `预计等候 ${t.wait_text.zh}`; den = `Expected wait ${t.wait_text.en}`; }
      if (t.directed_window) {  // sent on by a clerk or the help desk, perhaps to another building
        const where = t.window_place ? `（${t.window_place}）` : "";
        dzh = `已转到${t.directed_window}号窗口${where}，请到该处等候叫号` + (dzh ? ` · ${dzh}` : "");
        den = `Sent to window ${t.directed_window}${t.window_place ? ` (${t.window_place})` : ""}; wait for your call there` + (den ? ` · ${den}` : "");
      }
    } else {
      [zh, en] = (TEXT[t.state] || (() => [t.state, t.state]))(t);
      if (DETAIL[t.state]) [dzh, den] = DETAIL[t.state](t);
    }
    const atWindow = t.state === "called" || t.state === "serving";
    $("window").hidden = !atWindow;
    if (atWindow) $("window").textContent = `${t.window}号窗口`;
    $("place").hidden = !atWindow || !t.window_place;  // (windows are numbered across halls)
    $("place").textContent = t.window_place || "";
    document.title = t.state === "called" ? `请到${t.window}号窗口 · ${number}` :
      t.state === "done" ? `已办结 · ${number}` : `${number} 排队进度`;
    if (t.state === "called" && (lastState !== "called" || t.recalls)) chime();
    lastState = t.state;
    $("status").textContent = zh;
    $("status-en").textContent = en;
    $("detail").textContent = dzh;
    $("detail-en").textContent = den;
    $("status").dataset.ahead = t.people_ahead ?? "";
    const finished = ["done", "cancelled", "voided"].includes(t.state);
    $("thanks-card").hidden = t.state !== "done";
    $("alert-on").hidden = finished || atWindow || t.state === "no_show";
    // when it was issued and called (the hall's clock), to be named at the help desk
    $("times").textContent = `取号 ${clock(t.issued_at)}` +
      (t.called_at ? ` · 叫号 ${clock(t.called_at)}` : "");
    const materials = JSON.stringify(t.materials);  // a transfer brings its new service's
    if (materials !== materialsShown) {
      materialsShown = materials;
      $("materials").replaceChildren(...t.materials.map((m) => hallq.el("li", {}, m)));
    }
    $("materials-card").hidden = !t.materials.length || finished;
  }

  // quieter halls nearby, while this ticket still waits: on a change in the hall or the
  // city link, and at least every 30 s (the nearby halls' figures move on their own)
  let service = null, nearbyAt = 0;
  const nearby = hallq.serial(async () => {
    nearbyAt = Date.now();
    if (service) await hallq.nearby(service, number, $("nearby-card"), $("nearby"));
    else $("nearby-card").hidden = true;
  });
  setInterval(() => { if (Date.now() - nearbyAt > 25000) nearby(); }, 30000);

  const refresh = hallq.serial(async () => {
    try {
      const t = await hallq.getJSON("/api/tickets/" + encodeURIComponent(number));
      show(t);
      const was = service;
      service = t.state === "waiting" ? t.service : null;
      if (service !== was || Date.now() - nearbyAt > 10000) nearby();
    } catch (e) {
      $("status").textContent = e.status === 404 ? "今天没有这个号码" : "暂时无法查询，稍后自动重试";
      $("status-en").textContent = e.status === 404 ? "No such ticket today" : "Cannot check now, retrying";
      $("status").dataset.state = "error";
    }
  });
  hallq.getJSON("/api/hall").then((h) => { $("hall-name").textContent = h.hall.name; })
    .catch(() => {});
  hallq.live((change) => { if (change.type === "city") nearby(); refresh(); }, $("live"));
  refresh();
})();
