// berth's web UI: what script adds to pages that work without it.
"use strict";

// The search of the repositories filters as one types: it fetches the same
// page the form would and swaps in its results.
function liveSearch() {
  const input = document.getElementById("q");
  if (!input) return;
  let timer = null;
  let pending = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      // A newer search makes the older answer useless: stop it.
      if (pending) pending.abort();
      const asked = new AbortController();
      pending = asked;
      const query = "?" + new URLSearchParams({ q: input.value });
      // From the origin: a page opened as http://user:password@host/ would
      // otherwise give fetch an address with credentials, which it refuses.
      const url = new URL("/" + query, location.origin);
      let page;
      try {
        const response = await fetch(url, { headers: { Accept: "text/html" }, signal: asked.signal });
        if (!response.ok) return;
        page = new DOMParser().parseFromString(await response.text(), "text/html");
      } catch {
        return; // Stopped, or the network failed: the form still searches.
      }
      if (asked !== pending) return;
      const fresh = page.getElementById("results");
      // Looked up each time: the last answer replaced the one there was.
      const results = document.getElementById("results");
      if (!fresh || !results) return;
      results.replaceWith(fresh);
      // The count is a live region that stays, so screen readers say it.
      const count = document.getElementById("count");
      const freshCount = page.getElementById("count");
      if (count && freshCount) count.textContent = freshCount.textContent;
      // Relative, so that the address keeps whatever credentials it had
      // (the history only takes an address of the same user and host).
      history.replaceState(null, "", query);
    }, 150);
  });
}

// Copy buttons beside pull commands; hidden until this script shows them.
function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(button.dataset.copy);
        button.textContent = "Copied";
      } catch {
        // No clipboard outside secure contexts (plain http on another host):
        // select the command so that one keystroke copies it.
        const code = button.previousElementSibling;
        const range = document.createRange();
        range.selectNodeContents(code);
        const selection = getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Selected";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
}

liveSearch();
copyButtons();
