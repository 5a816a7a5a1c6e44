// The wall's live door states: one EventSource from the desk (server-sent events); no polling.
// The page works without it: this only updates the state and alarm cells as the doors move.
(function () {
  "use strict";
  var wall = document.getElementById("wall");
  var status = document.getElementById("live-status");
  if (!wall || !window.EventSource) { return; }
  var labels = JSON.parse(wall.getAttribute("data-labels"));
  function text(key) { return labels[key] || key; }
  function cell(row, field) { return row.querySelector('[data-field="' + field + '"]'); }
  function strong(cls, value) { var s = document.createElement("strong"); s.className = cls; s.textContent = value; return s; }
  function show(door, announce) {
    var row = null;
    var rows = wall.querySelectorAll("tr[data-door]");
    for (var i = 0; i < rows.length; i++) { if (rows[i].getAttribute("data-door") === door.d) { row = rows[i]; } }
    if (!row) { return; }
    var state = cell(row, "state");
    state.textContent = "";
    if (!door.in_service) { state.appendChild(strong("warn", text("out"))); state.appendChild(document.createTextNode(" · ")); }
    state.appendChild(document.createTextNode(text(door.state || "unknown")));
    var alarm = cell(row, "alarm");
    alarm.textContent = "";
    if (door.alarm) { alarm.appendChild(strong("bad", text(door.alarm))); }
    row.setAttribute("data-state", door.state || "");
    if (announce) { status.textContent = text("door") + " " + door.d + ": " + text(door.state || "unknown") + (door.alarm ? ", " + text(door.alarm) : ""); }
  }
  var source = new EventSource(wall.getAttribute("data-live"));
  source.addEventListener("doors", function (e) { JSON.parse(e.data).forEach(function (d) { show(d, false); }); wall.setAttribute("data-live-ready", "1"); });
  source.addEventListener("door", function (e) { show(JSON.parse(e.data), true); });
  source.addEventListener("end", function () { source.close(); status.textContent = status.getAttribute("data-stopped"); });
  source.onerror = function () { if (source.readyState === EventSource.CLOSED) { status.textContent = status.getAttribute("data-stopped"); } };
})();
