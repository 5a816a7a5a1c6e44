// The incidents list, live: one EventSource from the desk (server-sent events); no polling. A new
// incident that the filters let through comes in at the top, a changed one's state is updated, and
// the counts per state follow. The page works without it (its reload link).
(function () {
  "use strict";
  var table = document.getElementById("incidents");
  var status = document.getElementById("live-status");
  if (!table || !window.EventSource) { return; }
  var body = table.tBodies[0];
  var FIELDS = ["opened", "locker", "subject", "what", "count", "state_label", "handled_by"];
  function wanted(row) {
    var state = table.getAttribute("data-state");
    var locker = table.getAttribute("data-locker");
    var cause = table.getAttribute("data-cause-filter");
    if (state === "open" && row.state === "resolved") { return false; }
    if (state !== "open" && state !== "all" && state !== row.state) { return false; }
    return (!locker || locker === row.locker) && (!cause || cause === row.cause);
  }
  function build(row) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-incident", String(row.id));
    tr.setAttribute("data-cause", row.cause);
    var first = document.createElement("td");
    var link = document.createElement("a");
    link.href = row.url;
    link.textContent = String(row.id);
    first.appendChild(link);
    tr.appendChild(first);
    FIELDS.forEach(function (name) {
      var td = document.createElement("td");
      td.textContent = String(row[name]);
      if (name === "state_label") { td.setAttribute("data-field", "state"); }
      if (name === "handled_by") { td.setAttribute("data-field", "handled_by"); }
      tr.appendChild(td);
    });
    return tr;
  }
  function show(message) {
    var row = message.row;
    var old = body.querySelector('tr[data-incident="' + row.id + '"]');
    if (old && !wanted(row)) { body.removeChild(old); }
    else if (old) { body.replaceChild(build(row), old); }
    else if (wanted(row)) {
      body.insertBefore(build(row), body.firstChild);
      var none = document.getElementById("none");
      if (none) { none.parentNode.removeChild(none); }
      if (message.action === "opened") { status.textContent = status.getAttribute("data-new") + ": " + row.locker + " " + row.subject + " " + row.what; }
    }
    var counts = message.counts || {};
    Object.keys(counts).forEach(function (state) {
      var span = document.querySelector('[data-count="' + state + '"]');
      if (span) { span.textContent = String(counts[state]); }
    });
  }
  var source = new EventSource(table.getAttribute("data-live"));
  source.addEventListener("open", function () { table.setAttribute("data-live-ready", "1"); });
  source.addEventListener("incident", function (e) { show(JSON.parse(e.data)); });
  source.addEventListener("end", function () { source.close(); status.textContent = status.getAttribute("data-stopped"); });
  source.onerror = function () { if (source.readyState === EventSource.CLOSED) { status.textContent = status.getAttribute("data-stopped"); } };
})();
