// The page a ticket's QR code opens: /t/{hall}/{number}. Chinese first, English below.
"use strict";
(() => {
  const number = decodeURIComponent(location.pathname.split("/").pop());
  const $ = (id) => document.getElementById(id);
  $("number").textContent = number;
  document.title = number + " 排队进度";
  let materialsShown = false;

  const TEXT = {
    called: (t) => [`请到${t.window}号窗口办理`, `Please go to window ${t.window}`],
    serving: (t) => [`正在${t.window}号窗口办理`, `Being served at window ${t.window}`],
    done: () => ["已办结，感谢您的耐心等候", "Done, thank you"],
    no_show: () => ["已过号，请到导税台咨询", "Missed call, please ask at the help desk"],
    parked: () => ["暂缓办理，请留意叫号", "On hold, please listen for your number"],
    cancelled: () => ["号码已取消", "Ticket cancelled"],
    voided: () => ["号码已作废", "Ticket voided"],
    transferred: () => ["已转办，请留意叫号", "Transferred, please listen for your number"],
  };

  function show(t) {
    $("service").textContent = t.service_name;
    $("status").dataset.state = t.state;
    let zh, en;
    if (t.state === "waiting") {
      zh = t.people_ahead === 0 ? "下一位就是您，请留意叫号" : `前面还有 ${t.people_ahead} 人`;
      en = `${t.people_ahead} ahead of you`;
      $("detail").textContent = t.people_ahead === 0 ? "" :
        `预计等候约 ${t.eta_min} 分钟 (about ${t.eta_min} min)`;
    } else {
      [zh, en] = (TEXT[t.state] || (() => [t.state, t.state]))(t);
      $("detail").textContent = t.recalls ? `第 ${t.recalls} 次重呼` : "";
    }
    $("status").textContent = zh;
    $("status-en").textContent = en;
    $("status").dataset.ahead = t.people_ahead ?? "";
    if (!materialsShown && t.materials.length) {
      materialsShown = true;
      $("materials-card").hidden = false;
      for (const m of t.materials) $("materials").append(hallq.el("li", {}, m));
    }
  }

  const refresh = hallq.serial(async () => {
    try {
      show(await hallq.getJSON("/api/tickets/" + encodeURIComponent(number)));
    } catch (e) {
      $("status").textContent = e.status === 404 ? "今天没有这个号码" : "暂时无法查询，稍后自动重试";
      $("status").dataset.state = "error";
    }
  });
  hallq.getJSON("/api/hall").then((h) => { $("hall-name").textContent = h.hall.name; })
    .catch(() => {});
  hallq.live(refresh, $("live"));
  refresh();
})();
