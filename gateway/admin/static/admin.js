// SimpleAMS admin pages: copy buttons, the one-time token, the activity refresh.
// No inline script anywhere (the Content-Security-Policy forbids it).
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
  } catch (_) {
    document.execCommand("copy"); // http:// origins have no async clipboard
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 2000);
});

// The token is in the answer to a POST. Make the address bar a plain GET so
// that a reload fetches the card again (without the token) instead of
// offering to resubmit the form.
if (document.querySelector("[data-token-shown]")) {
  history.replaceState(null, "", location.pathname);
}

const live = document.getElementById("live");
if (live) {
  const url = live.dataset.refreshUrl;
  const seconds = Number(live.dataset.refreshSeconds || "5");
  const refresh = async () => {
    // Not while the admin is using a form inside it, nor in a background tab.
    if (document.hidden || live.contains(document.activeElement)) return;
    try {
      const answer = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (answer.redirected || !answer.ok) return; // signed out: leave the page as it is
      live.innerHTML = await answer.text();
    } catch (_) { /* offline for a moment: try again next time */ }
  };
  setInterval(refresh, seconds * 1000);
}
