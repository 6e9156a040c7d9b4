// infusion-monitor board: live updates over server-sent events, reconnects after a restart,
// keeps the page's countdowns ticking. No framework, no CDN: served by the product.
(function () {
  "use strict";
  var root = document.getElementById("board-root");
  var announcer = document.getElementById("announcer");
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var offset = 0; // server time minus browser time, from the last fragment
  var ticking = true;
  var seenCritical = {};

  function fmtSpan(ms) {
    var minutes = Math.max(0, Math.floor(ms / 60000));
    if (minutes < 60) return minutes + " min";
    var m = minutes % 60;
    return Math.floor(minutes / 60) + " h " + (m < 10 ? "0" : "") + m + " min";
  }

  function tick() {
    if (!ticking) return;
    var now = Date.now() + offset;
    var clocks = document.querySelectorAll(".clock[data-ref]");
    for (var i = 0; i < clocks.length; i++) {
      var el = clocks[i];
      var ref = Date.parse(el.getAttribute("data-ref"));
      if (isNaN(ref)) continue;
      var ms = el.getAttribute("data-kind") === "elapsed" ? now - ref : ref - now;
      var text = fmtSpan(ms) + (el.getAttribute("data-suffix") || "");
      if (el.textContent !== text) el.textContent = text;
    }
  }

  function announce(text) {
    if (!announcer) return;
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 50);
  }

  function noteCriticals(container, quiet) {
    var items = container.querySelectorAll(".alert.sev-critical[data-alert]");
    for (var i = 0; i < items.length; i++) {
      var id = items[i].getAttribute("data-alert");
      if (!seenCritical[id]) {
        seenCritical[id] = true;
        if (!quiet) {
          var tile = items[i].closest(".tile");
          var chair = tile ? tile.querySelector(".chair").textContent : "";
          var rule = items[i].querySelector(".rule").textContent;
          announce("New critical alert " + rule + " at " + chair);
        }
      }
    }
  }

  function readClock(content) {
    var serverNow = Date.parse(content.getAttribute("data-now"));
    if (!isNaN(serverNow)) offset = serverNow - Date.now();
    ticking = content.getAttribute("data-clock") !== "event";
  }

  function tileIds(container) {
    return Array.prototype.map.call(container.querySelectorAll(".site, .tile"), function (el) {
      return el.id || el.getAttribute("data-site");
    }).join("|");
  }

  function applyFragment(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    var fresh = tpl.content.querySelector("#board-content");
    if (!fresh) return;
    var current = document.getElementById("board-content");
    var active = document.activeElement;
    var activeId = active && active.id;
    var activeTile = active && active.closest ? active.closest(".tile") : null;
    readClock(fresh);
    if (current && tileIds(current) === tileIds(fresh)) {
      // same chairs: swap only the tiles that changed (focus elsewhere stays where it is)
      var tiles = fresh.querySelectorAll(".tile");
      for (var i = 0; i < tiles.length; i++) {
        var old = document.getElementById(tiles[i].id);
        if (old && old.getAttribute("data-rev") !== tiles[i].getAttribute("data-rev")) {
          old.replaceWith(document.importNode(tiles[i], true));
        }
      }
      var heads = fresh.querySelectorAll(".site h2, .updated, .notice, .empty");
      var oldHeads = current.querySelectorAll(".site h2, .updated, .notice, .empty");
      if (heads.length === oldHeads.length) {
        for (var j = 0; j < heads.length; j++) {
          if (oldHeads[j].innerHTML !== heads[j].innerHTML) oldHeads[j].innerHTML = heads[j].innerHTML;
        }
      } else {
        current.replaceWith(document.importNode(fresh, true));
      }
      var content = document.getElementById("board-content");
      content.setAttribute("data-now", fresh.getAttribute("data-now"));
      content.setAttribute("data-version", fresh.getAttribute("data-version"));
    } else if (current) {
      current.replaceWith(document.importNode(fresh, true));
    } else {
      root.appendChild(document.importNode(fresh, true));
    }
    // keep keyboard focus: the same control if it still exists, else its tile
    if (activeId && document.activeElement !== active) {
      var again = document.getElementById(activeId);
      if (again) again.focus();
      else if (activeTile && document.getElementById(activeTile.id)) document.getElementById(activeTile.id).focus();
    }
    noteCriticals(document.getElementById("board-content"), false);
    tick();
  }

  // -- connection: EventSource, with our own reconnect loop (also after a 401 or a restart) --
  var conn = document.getElementById("conn");
  var source = null;
  var retry = 1000;
  var reconnectTimer = null;

  function setConn(live, text) {
    if (!conn) return;
    conn.className = "conn " + (live ? "conn-live" : "conn-lost");
    conn.querySelector(".conn-text").textContent = text;
  }

  function checkSession() {
    return fetch("/whoami", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (r.status === 401) window.location.href = "/login"; return r.ok; })
      .catch(function () { return false; });
  }

  function connect() {
    reconnectTimer = null;
    if (source) source.close();
    source = new EventSource(root.getAttribute("data-events"));
    source.addEventListener("open", function () { retry = 1000; setConn(true, "Live"); });
    source.addEventListener("board", function (ev) { setConn(true, "Live"); applyFragment(ev.data); });
    source.addEventListener("error", function () {
      source.close();
      setConn(false, "Connection lost: reconnecting…");
      if (!reconnectTimer) {
        reconnectTimer = window.setTimeout(function () { checkSession().then(connect); }, retry);
        retry = Math.min(retry * 2, 5000);
      }
    });
  }

  // -- acknowledge without leaving the page (the form still works without script) --
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.classList || !form.classList.contains("ack-form") || !window.fetch) return;
    ev.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true;
    button.firstChild.textContent = "Acknowledging…";
    fetch(form.getAttribute("action"), {
      method: "POST", credentials: "same-origin",
      headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded",
                 "X-CSRF-Token": csrfMeta ? csrfMeta.content : "" },
      body: new URLSearchParams(new FormData(form)).toString()
    }).then(function (r) {
      if (r.status === 401) { window.location.href = "/login"; return; }
      if (!r.ok) throw new Error("status " + r.status);
      announce("Acknowledgement sent");
      if (!root) window.location.reload();
    }).catch(function () {
      button.disabled = false;
      button.firstChild.textContent = "Acknowledge";
      announce("Acknowledgement failed: try again");
    });
  });

  if (root) {
    var first = document.getElementById("board-content");
    if (first) { readClock(first); noteCriticals(first, true); }
    connect();
    window.setInterval(tick, 1000);
  }
})();
