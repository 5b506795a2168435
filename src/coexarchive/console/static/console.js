// The console's only script, served by the console itself. Pages work without it: it shows
// times in the viewer's time zone, sorts tables in place and adds the review queue's keys.
"use strict";
(function () {
  const local = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", timeZoneName: "short",
  });
  for (const element of document.querySelectorAll("time[datetime]")) {
    const moment = new Date(element.getAttribute("datetime"));
    if (!isNaN(moment)) {
      element.title = element.getAttribute("datetime") + " (UTC)";
      element.textContent = local.format(moment);
    }
  }

  for (const table of document.querySelectorAll("table.sortable")) {
    table.querySelectorAll("thead th").forEach(function (header, index) {
      if (header.querySelector("a")) return; // sorted by the server
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = header.textContent;
      header.textContent = "";
      header.appendChild(button);
      button.addEventListener("click", function () {
        const body = table.tBodies[0];
        const ascending = header.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("thead th").forEach((h) => h.removeAttribute("aria-sort"));
        header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const rows = Array.from(body.rows);
        rows.sort(function (a, b) {
          const x = a.cells[index].textContent, y = b.cells[index].textContent;
          return (ascending ? 1 : -1) * x.localeCompare(y, undefined, { numeric: true });
        });
        rows.forEach((row) => body.appendChild(row));
      });
    });
  }

  const hits = Array.from(document.querySelectorAll("li.hit"));
  if (!hits.length) return;
  let current = 0;
  function select(index) {
    hits[current].classList.remove("current");
    current = Math.max(0, Math.min(hits.length - 1, index));
    hits[current].classList.add("current");
    hits[current].focus();
  }
  select(0);
  const keys = { n: "no_action", e: "escalate", c: "closed" };
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const hit = hits[current];
    if (event.key === "j") select(current + 1);
    else if (event.key === "k") select(current - 1);
    else if (event.key === "o") { const link = hit.querySelector("a.open"); if (link) link.click(); }
    else if (keys[event.key]) {
      const radio = hit.querySelector('input[name="disposition"][value="' + keys[event.key] + '"]');
      if (!radio) return;
      radio.checked = true;
      const note = hit.querySelector('form.decide input[name="note"]');
      if (note) note.focus();
    } else return;
    event.preventDefault();
  });
})();
