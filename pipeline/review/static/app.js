// Forms post with the CSRF token (the signed csrftoken cookie, echoed in a header as
// starlette-csrf checks it); the transcript seeks the snippet; the snippet plays the flag.
"use strict";

function csrfToken() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  return found ? decodeURIComponent(found.slice("csrftoken=".length)) : "";
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (form.method.toLowerCase() !== "post") return;
  event.preventDefault();
  const body = new URLSearchParams(new FormData(form, event.submitter));
  const response = await fetch(form.action, {
    method: "POST", body, credentials: "same-origin", headers: { "x-csrftoken": csrfToken() },
  });
  if (response.redirected) { window.location.assign(response.url); return; }
  document.open(); document.write(await response.text()); document.close();
});

document.addEventListener("click", (event) => {
  const line = event.target.closest("li.utt");
  const audio = document.getElementById("snippet");
  if (!line || !audio || event.target.closest("form")) return;
  const at = parseFloat(line.dataset.start) - parseFloat(audio.dataset.offset || "0");
  if (at >= 0 && (!audio.duration || at <= audio.duration)) { audio.currentTime = at; audio.play(); }
});
