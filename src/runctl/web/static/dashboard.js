// runctl dashboard: the only script. Live regions are refilled with HTML the server rendered
// (and escaped) and sent as server-sent events; action forms ask before they post.
"use strict";

// While a pointer is pressed an update waits: swapping the region between mousedown and
// mouseup would move the button from under the click and lose it.
let pressed = false;
const flushers = [];

function watch(region) {
  let pending = null;
  const flush = () => {
    if (pending !== null && !pressed) {
      region.innerHTML = pending;
      pending = null;
      document.body.dataset.updated = String(Date.now());
    }
  };
  flushers.push(flush);
  const source = new EventSource(region.dataset.live);
  source.addEventListener("update", (event) => {
    pending = event.data;
    flush();
  });
  // EventSource reconnects by itself after an error; nothing to do here.
}

document.addEventListener("pointerdown", () => { pressed = true; }, true);
document.addEventListener("pointerup", () => {
  setTimeout(() => { pressed = false; flushers.forEach((flush) => flush()); }, 0);
}, true);

document.querySelectorAll("[data-live]").forEach(watch);

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
