// The dashboard's only script (served as /static/live.js). Everything works without it; it
// adds the live refresh (a page with data-live on <body> fetches itself again and swaps its
// <main>), the countdowns, and the #token=<token> link of older versions (handed to /login
// once, so the page's session cookie takes over). It never builds markup from data: the new
// <main> is the server's, already escaped.
"use strict";
(function () {
  function tick() {
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = Math.max(0, Number(el.getAttribute("data-countdown")) - 1);
      el.setAttribute("data-countdown", String(left));
      el.textContent = el.getAttribute("data-text") + " " + left + " s";
    });
  }
  function busy() {
    var a = document.activeElement;
    return document.hidden || (a && (a.tagName === "INPUT" || a.tagName === "SELECT"));
  }
  function refresh() {
    if (busy()) return;
    fetch(location.href, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text) return;
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("main");
        var main = document.getElementById("main");
        if (!fresh || !main) return;
        // what the reader opened stays open: the n-th <details> of the page is the same one
        var open = Array.from(main.querySelectorAll("details"), function (d) { return d.open; });
        var next = document.importNode(fresh, true);
        next.querySelectorAll("details").forEach(function (d, i) { if (open[i]) d.open = true; });
        main.replaceWith(next);
      })
      .catch(function () {});
  }
  if (location.hash.indexOf("#token=") === 0) {
    var body = new URLSearchParams({token: decodeURIComponent(location.hash.slice(7))});
    history.replaceState(null, "", location.pathname + location.search);
    fetch("/login", {method: "POST", body: body, credentials: "same-origin", redirect: "manual"})
      .then(function () { location.reload(); });
    return;
  }
  setInterval(tick, 1000);
  var every = Number(document.body.getAttribute("data-live"));
  if (every > 0) setInterval(refresh, every * 1000);
})();
