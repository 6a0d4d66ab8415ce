"""The dashboard's one script, served at ``/dashboard/dashboard.js`` (the page's CSP allows scripts from itself
only, and fetches to itself only).

Every ``data-refresh`` seconds it fetches ``/dashboard/data.json`` with the page's own query (same origin, so the
session cookie goes along and no token is ever handled by script) and swaps the sections inside ``<main>`` for the
fresh ones: no reload, the filters and scroll position stay. It skips a turn while the tab is hidden, says in the
header when the last refresh happened or why it failed, and stops when the session has ended (401).
``data-refreshes`` on ``<html>`` counts the successful refreshes (what the browser tests wait on).
"""

from __future__ import annotations

SCRIPT = """\
(function () {
  "use strict";
  var root = document.documentElement;
  var seconds = Number(root.getAttribute("data-refresh") || "0");
  var done = 0;
  function show(text, failed) {
    var status = document.getElementById("refresh-status");
    if (status) { status.textContent = text; status.className = failed ? "error" : ""; }
  }
  async function refresh() {
    if (document.hidden) { return true; }
    try {
      var response = await fetch("/dashboard/data.json" + window.location.search, {
        credentials: "same-origin", cache: "no-store", headers: {"Accept": "application/json"}});
      if (response.status === 401) { show("Signed out: reload the page to sign in again", true); return false; }
      if (!response.ok) { show("Refresh failed (HTTP " + response.status + "), retrying", true); return true; }
      var data = await response.json();
      document.querySelector("main").innerHTML = data.main;
      done += 1;
      root.setAttribute("data-refreshes", String(done));
      show("Updated " + data.generatedAt + ", every " + seconds + " s", false);
    } catch (error) {
      show("Refresh failed (" + error + "), retrying", true);
    }
    return true;
  }
  async function loop() {
    if (await refresh()) { window.setTimeout(loop, seconds * 1000); }
  }
  if (seconds > 0) { window.setTimeout(loop, seconds * 1000); }
})();
"""
