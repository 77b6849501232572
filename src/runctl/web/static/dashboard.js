// runctl dashboard: the only script. Live regions are refilled with HTML the server rendered
// (and escaped) and sent as server-sent events; action forms ask before they post.
"use strict";

function watch(region) {
  const source = new EventSource(region.dataset.live);
  source.addEventListener("update", (event) => {
    region.innerHTML = event.data;
    document.body.dataset.updated = String(Date.now());
  });
  // EventSource reconnects by itself after an error; nothing to do here.
}

document.querySelectorAll("[data-live]").forEach(watch);

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
