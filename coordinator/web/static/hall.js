// The public hall view: what anyone in the hall may see -- calls, queues with honest wait
// ranges, how busy the hall is now, and a box that opens a ticket's own page. Staff
// matters (windows, KPIs, devices, alerts) are on the supervisor side (/supervisor/hall).
// Chinese first, English on a second line, as on every public page.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = hallq.el;
  const COMFORT = {"较少": ["人数较少", "Quiet"], "适中": ["人数适中", "Moderately busy"],
                   "较多": ["人数较多", "Busy"]};
  let boards = [];
  let hallId = null;

  const two = (zh, en) => [zh, el("span", {class: "en2"}, en)];
  // no forecast (the coordinator could not draw it): no empty box. Here, not in an
  // onerror attribute, which the Content-Security-Policy blocks (script-src 'self')
  const comfortImg = $("comfort-img");
  const noComfort = () => { $("comfort").hidden = true; };
  comfortImg.addEventListener("error", noComfort);
  if (comfortImg.complete && !comfortImg.naturalWidth) noComfort();  // failed before this ran
  function row(cells, head) {
    return el("tr", {}, ...cells.map((c) =>
      el(head ? "th" : "td", {}, ...(Array.isArray(c) ? c : [c]))));
  }

  function show(h) {
    hallId = h.hall.id;
    $("hall-name").textContent = h.hall.name;
    $("hall-name-en").textContent = h.hall.name_en || "";
    $("day").textContent = h.hall.day || "";
    const closed = !h.hall.open;
    $("closed").hidden = !closed;
    if (closed && h.hall.calling) {  // no new tickets, but those who took one are called
      $("closed").replaceChildren(...two(
        h.hall.opens ? `已停止取号，${h.hall.opens} 恢复；已取号的请留意叫号`
                     : "今日已停止取号；已取号的请留意叫号",
        h.hall.opens ? `No new tickets until ${h.hall.opens}; if you have one, listen for your number`
                     : "No new tickets today; if you have one, listen for your number"));
    } else if (closed) {
      $("closed").replaceChildren(...(h.hall.opens
        ? two(`暂停办理，${h.hall.opens} 恢复`, `Closed now, open again at ${h.hall.opens}`)
        : two("今日已闭厅", "Closed for today")));
    }
    const calls = h.board.calls.slice(0, 5);
    const places = h.hall.places || {};  // a hall of several buildings: which one
    $("calls").replaceChildren(...(calls.length ? calls.map((c) =>
      el("li", {"data-ticket": c.ticket}, `请${c.ticket}号到${c.window}号窗口`,
         places[c.zone] ? el("span", {class: "muted", "data-place": c.zone}, ` · ${places[c.zone]}`) : "",
         el("span", {class: "en2"}, `${c.ticket}, please go to window ${c.window}`)))
      : [el("li", {class: "muted"}, "暂无叫号", el("span", {class: "en2"}, "No calls yet"))]));
    $("calls").dataset.first = calls.length ? calls[0].ticket : "";
    $("calls").classList.toggle("closed", closed && !h.hall.calling);  // past, not to answer
    $("queues").replaceChildren(
      row([two("业务", "Service"), two("等候", "Waiting"), two("下一位", "Next"),
           two("预计等候", "Expected wait"), two("最久已等", "Longest so far")], true),
      ...h.services.map((s) => row([
        two(s.name, s.name_en || ""),
        el("span", {class: "pill " + (s.over_target ? "warning" : ""), "data-service": s.code},
           s.queue.waiting),
        el("span", {class: "next"}, (s.queue.next || []).slice(0, 3).join(" ") || "—"),
        s.wait_text && !closed ? two(s.wait_text.zh, s.wait_text.en) : "—",
        s.queue.oldest_wait_s == null ? "—"
          : two(`${Math.round(s.queue.oldest_wait_s / 60)} 分钟`,
                `${Math.round(s.queue.oldest_wait_s / 60)} min`)])));
    const level = closed ? null : COMFORT[h.comfort];  // a forecast of a hall at work
    $("comfort-now").hidden = !level;
    if (level) {
      $("comfort-level").className = `big-level comfort comfort-${h.comfort}`;
      $("comfort-level").replaceChildren(...two(level[0], level[1]));
    }
    drawBoards(h);
  }

  // The LED images are drawn again only when what they show changed, at most every
  // BOARD_EVERY_MS: redrawn on every change in the hall, a phone left on this page
  // fetched ~75 MB an hour (found by a taxpayer).
  const BOARD_EVERY_MS = 5000;
  let boardShown = null, boardAt = 0, boardTimer = null, latest = null;
  function drawBoards(h) {
    latest = h;
    const {id, ts, rev, ...shown} = h.board;  // (these change with every command)
    const sig = JSON.stringify(shown);
    if (sig === boardShown || boardTimer) return;  // (a timer draws the latest)
    const wait = boardAt + BOARD_EVERY_MS - Date.now();
    if (wait > 0) {
      boardTimer = setTimeout(() => { boardTimer = null; drawBoards(latest); }, wait);
      return;
    }
    boardShown = sig;
    boardAt = Date.now();
    for (const img of $("boards").querySelectorAll("img")) {
      img.src = img.dataset.src + "?rev=" + h.rev;
    }
  }

  $("find").onsubmit = async (ev) => {
    ev.preventDefault();
    const number = $("find-number").value.trim().toUpperCase();
    $("find-error").textContent = "";
    if (!number || !hallId) return;
    try {
      const found = await hallq.getJSON(`/api/tickets/${encodeURIComponent(number)}`);
      location.href = `/t/${encodeURIComponent(hallId)}/${encodeURIComponent(found.number)}`;
    } catch (e) {
      const bare = /^\d+$/.test(number);  // the letter left out: it names the service
      $("find-error").textContent = e.status !== 404 ? e.message : bare
        ? `请连同字母输入, 如 A${number}\nType the letter too, e.g. A${number}`
        : `今天没有 ${number} 号, 请核对号码\nNo ticket ${number} today; check the number`;
    }
  };

  const refresh = hallq.serial(async () => {
    if (!boards.length) {
      boards = await hallq.getJSON("/api/boards");
      $("boards").replaceChildren(...boards.map((b) =>
        el("figure", {}, el("img", {"data-src": b.png, alt: "LED " + b.id, title: b.id}),
           el("figcaption", {class: "muted"}, ...two(b.caption, b.caption_en)))));
    }
    show(await hallq.getJSON("/api/hall"));
  });
  hallq.live(refresh, $("live"));
  refresh();
})();
