// Keeps the page's boxes current: each box polls its list's HTML fragment with If-None-Match at
// the lists' refresh interval and is swapped only when the list changed (a 200, not a 304).
// Items that moved are marked for a moment so a reader sees what changed. No framework, no
// build step: the fragments are rendered and escaped by the server, and inserted as they come.
"use strict";

(function () {
  const refreshMs = Math.max(250, Number(document.body.dataset.refreshMs) || 1000);

  function ranks(box) {
    const seen = new Map();
    for (const item of box.querySelectorAll("li[data-article-id]")) {
      seen.set(item.dataset.articleId, Number(item.dataset.rank));
    }
    return seen;
  }

  function markChanges(box, before) {
    for (const item of box.querySelectorAll("li[data-article-id]")) {
      const was = before.get(item.dataset.articleId);
      const now = Number(item.dataset.rank);
      if (was === undefined) item.classList.add("changed", "changed-new");
      else if (was > now) item.classList.add("changed", "changed-up");
      else if (was < now) item.classList.add("changed", "changed-down");
    }
  }

  async function poll(box) {
    const headers = {};
    if (box.dataset.etag) headers["If-None-Match"] = box.dataset.etag;
    let response;
    try {
      // no-store: the browser's own cache would answer a 304 with the old body as a 200.
      response = await fetch(box.dataset.src, { headers, cache: "no-store" });
    } catch (error) {
      box.classList.add("offline");
      return;
    }
    box.classList.toggle("offline", !response.ok && response.status !== 304);
    box.classList.toggle("stale", response.headers.get("X-Ranker-Stale") === "true");
    if (response.status !== 200) return;
    const html = await response.text();
    const list = box.querySelector(".box-list");
    const before = ranks(list);
    list.innerHTML = html;
    box.dataset.etag = response.headers.get("ETag") || "";
    markChanges(list, before);
    box.dataset.updated = String(Date.now());
  }

  function start() {
    const boxes = Array.from(document.querySelectorAll(".box[data-src]"));
    const tick = () => Promise.all(boxes.map(poll)).finally(() => setTimeout(tick, refreshMs));
    setTimeout(tick, refreshMs);
    // Changing a select shows the new choice at once; the button is for pages without scripts.
    for (const select of document.querySelectorAll(".controls select")) {
      select.addEventListener("change", () => select.form.submit());
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
