// The locker wall page: everything it shows comes pushed over the WebSocket (no polling).
"use strict";

const S = {
  ws: null, lockers: [], cur: 0, events: [], notes: [],
  rid: 0, pending: new Map(), audio: null, osc: null,
};
// For tests and bench/web.py: when things were clicked and shown (ms, the page's wall clock).
window.simMetrics = { clicks: [], shown: [] };

const $ = (id) => document.getElementById(id);
const now = () => performance.timeOrigin + performance.now();

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// --- the connection ---------------------------------------------------------------------------

let retry = 500;
// This run's token, in the page the server served: the WebSocket is refused without it.
const TOKEN = document.querySelector('meta[name="sim-token"]').content;
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(TOKEN)}`);
  S.ws = ws;
  ws.onopen = () => { retry = 500; setConn("connected", true); };
  ws.onclose = () => {
    setConn("disconnected: is `lockerctl sim web` still running? (a page from an earlier run: reload it) retrying…", false);
    for (const [, p] of S.pending) p.reject(new Error("connection lost"));
    S.pending.clear();
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 8000);
  };
  ws.onmessage = (m) => onMessage(JSON.parse(m.data));
}

function setConn(text, ok) {
  const c = $("conn");
  c.textContent = text;
  c.className = "badge " + (ok ? "ok" : "bad");
}

function request(op, args = {}) {
  return new Promise((resolve, reject) => {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) { reject(new Error("not connected")); return; }
    const rid = ++S.rid;
    S.pending.set(rid, { resolve, reject });
    S.ws.send(JSON.stringify({ rid, op, locker: S.cur, ...args }));
  });
}

function onMessage(msg) {
  switch (msg.type) {
    case "hello":
      S.lockers = msg.lockers;
      S.events = msg.events || []; S.notes = msg.notes || [];
      if (S.cur >= S.lockers.length) S.cur = 0;
      document.body.dataset.ready = msg.ready ? "1" : "0";
      renderAll();
      break;
    case "locker": {
      const v = msg.view;
      S.lockers[v.n] = v;
      if (v.n === S.cur) { renderLocker(); markShown(msg.cause); }
      renderTabs();
      break;
    }
    case "event":
      S.events.push(msg);
      if (S.events.length > 300) S.events.shift();
      if ($("ev-all").checked || msg.locker === S.cur) $("events").prepend(eventItem(msg));
      break;
    case "note":
      addNote(msg.note);
      break;
    case "reply": {
      const p = S.pending.get(msg.rid);
      if (p) { S.pending.delete(msg.rid); msg.ok ? p.resolve(msg.result) : p.reject(new Error(msg.error)); }
      break;
    }
  }
}

function markShown(cause) {
  if (!cause || !cause.t) return;
  // After the browser has laid the change out: the next frame.
  requestAnimationFrame(() => window.simMetrics.shown.push({ ev: cause.ev, t: cause.t / 1000, at: now() }));
}

// --- rendering --------------------------------------------------------------------------------

function renderAll() {
  renderTabs(); renderLocker();
  // newest first
  $("events").replaceChildren(...S.events.filter((e) => $("ev-all").checked || e.locker === S.cur).map(eventItem).reverse());
  $("notes").replaceChildren(...S.notes.map(noteItem).reverse());
}

function renderTabs() {
  const tabs = $("tabs");
  tabs.replaceChildren(...S.lockers.map((v, n) => el("button", {
    role: "tab", id: `tab-${n}`, "aria-selected": String(n === S.cur), "aria-controls": "wall",
    tabindex: n === S.cur ? "0" : "-1", text: `${v.lid}${v.online ? "" : " (offline)"}`,
    onclick: () => { S.cur = n; renderAll(); },
  })));
  const v = S.lockers[S.cur];
  const net = $("net");
  if (!v) { net.textContent = "starting the lockers…"; net.className = "badge"; return; }
  const sync = v.locker_rev === v.host_rev ? "codes in sync" : `codes: locker rev ${v.locker_rev ?? "-"}, host rev ${v.host_rev}`;
  net.textContent = `${v.lid}: ${v.running ? (v.online ? "online" : "offline") : "not running"} · ${sync}`;
  net.className = "badge " + (v.online ? "ok" : "bad");
  net.dataset.online = v.online ? "1" : "0";
  net.dataset.hostRev = String(v.host_rev);
  net.dataset.lockerRev = String(v.locker_rev ?? -1);
  net.dataset.synced = v.online && v.locker_rev === v.host_rev ? "1" : "0";
}

function doorState(d) {
  if (d.service) return ["service", "Out of service"];
  if (d.open) return ["open", "Open"];
  if (d.solenoid) return ["unlocking", "Unlocking"];
  return ["closed", "Closed"];
}

function renderLocker() {
  const v = S.lockers[S.cur];
  const wall = $("wall");
  if (!v) { wall.replaceChildren(el("p", { text: "Starting the lockers…" })); return; }
  wall.style.setProperty("--cols", String(Math.min(4, Math.ceil(Math.sqrt(v.doors.length)))));
  wall.replaceChildren(...v.doors.map((d, i) => {
    const [st, text] = doorState(d);
    const desc = `Door ${d.label}, size ${d.size}${d.low ? ", low" : ""}: ${text.toLowerCase()}` +
      `${d.solenoid ? ", latch energized" : ""}, ${d.parcel ? "parcel inside" : "empty"}` +
      `. ${d.open ? "Click to push it shut" : "Click to pull it (it opens if unlocked)"}.`;
    const door = el("button", {
      class: `door size-${d.size} is-${st}`, id: `door-${i}`, "data-door": d.label, "data-state": st,
      "data-parcel": d.parcel ? "1" : "0", "data-solenoid": d.solenoid ? "1" : "0",
      "data-jammed": d.jammed ? "1" : "0", "aria-label": desc,
      "aria-pressed": String(d.open), onclick: (ev) => pullDoor(i, !d.open, ev.shiftKey),
    },
      el("span", { class: "label", text: d.label }),
      el("span", { class: "tags", text: `${d.size}${d.low ? " ♿" : ""}` }),
      el("span", { class: "state", text }),
      d.solenoid ? el("span", { class: "latch", text: "latch energized" }) : null,
      d.jammed ? el("span", { class: "jammed", text: "latch stuck" }) : null,
      el("span", { class: "parcel" + (d.parcel ? " full" : ""), text: d.parcel ? "■ parcel inside" : "empty" }),
    );
    const put = el("button", {
      class: "put", id: `parcel-${i}`, disabled: !d.open,
      title: d.open ? "" : "Open the door first",
      text: d.parcel ? `Take the parcel out of door ${d.label}` : `Put a parcel in door ${d.label}`,
      onclick: () => act("parcel", { door: i, present: !d.parcel }),
    });
    const jam = el("button", {
      class: "jam", id: `jam-${i}`, "aria-pressed": String(d.jammed),
      text: d.jammed ? `Free the latch of door ${d.label}` : `Make the latch of door ${d.label} stick`,
      onclick: () => act("jam", { door: i, on: !d.jammed }),
    });
    return el("div", { class: "door-cell" }, door, put, jam);
  }));
  // the display, exactly as the firmware wrote it
  const lines = [];
  for (let r = 0; r < v.rows; r++) lines.push((v.display[r] || "").padEnd(v.cols, " ").slice(0, v.cols));
  const lcd = $("lcd");
  lcd.textContent = lines.join("\n");
  lcd.classList.toggle("dark", !v.backlight);
  lcd.setAttribute("aria-label", "Locker display: " + lines.map((l) => l.trim()).join(" / "));
  $("led").className = "led" + (v.led ? " on" : "");
  $("led").setAttribute("aria-label", `Status light ${v.led ? "on" : "off"}`);
  const [freq, duty] = v.buzzer;
  $("buzzer").className = "buzzer" + (duty ? " on" : "");
  $("buzzer-text").textContent = duty ? `beep ${freq} Hz` : "quiet";
  sound(duty ? freq : 0);
  renderKeypad(v);
}

function renderKeypad(v) {
  const pad = $("keypad");
  if (pad.dataset.keys === v.keys) return;
  pad.dataset.keys = v.keys;
  pad.style.gridTemplateColumns = `repeat(${v.key_cols}, 4rem)`;
  pad.replaceChildren(...[...v.keys].map((k) => el("button", {
    type: "button", id: `key-${k === "#" ? "hash" : k === "*" ? "star" : k}`, "data-key": k,
    "aria-label": k === "#" ? "hash (enter)" : k === "*" ? "star (clear)" : k, text: k,
    onclick: () => pressKey(k),
  })));
}

function hhmmss(sec) { return new Date(sec * 1000).toLocaleTimeString(); }

function eventItem(e) {
  return el("li", { class: `src-${e.source}`, "data-kind": e.kind, "data-source": e.source },
    `${hhmmss(e.at)}  ${e.lid}  [${e.source === "host" ? "host" : e.source === "you" ? "you" : "board"}]  ${e.text}`);
}

function addNote(note) {
  S.notes.push(note);
  $("notes").prepend(noteItem(note));
}

function noteItem(n) {
  const until = n.expires ? `, valid until ${new Date(n.expires * 1000).toLocaleString()}` : "";
  const who = n.recipient || "the resident";
  const item = n.item || "parcel";
  let head, label = "Pickup code: ";
  switch (n.kind) {
    case "loaded": head = `To ${who}: your ${item} is in door ${n.door} of locker ${n.locker}${until}`; break;
    case "reminder": head = `To ${who}: reminder, your ${item} in door ${n.door} of locker ${n.locker} waits one more day`; break;
    case "returned": head = `To staff: a resident returned ${item} in door ${n.door} of locker ${n.locker}`; label = "Code: "; break;
    case "taken_back": head = `To staff: ${n.staff || "staff"} took back the ${item} from door ${n.door} of locker ${n.locker}`; label = "Code: "; break;
    default: head = `To ${who}: locker ${n.locker}, door ${n.door}${until}`;
  }
  // The server masks every code: the desk shows a code once, to the member of staff who asked for it.
  const code = n.masked ? el("div", {}, label, el("span", { class: "masked", text: "•••••• (shown on the staff desk, once)" })) : null;
  return el("li", { class: "note", "data-kind": n.kind, "data-door": n.door || "" },
    el("div", { text: head + (n.via === "hook" ? " — sent by the host service's hook" : "") }), code);
}

// --- sound ------------------------------------------------------------------------------------

function sound(freq) {
  if (!$("sound").checked) freq = 0;
  if (!S.audio) return;
  if (S.osc) { S.osc.stop(); S.osc = null; }
  if (freq) {
    S.osc = S.audio.createOscillator();
    const g = S.audio.createGain();
    g.gain.value = 0.05;
    S.osc.frequency.value = freq;
    S.osc.connect(g).connect(S.audio.destination);
    S.osc.start();
  }
}

// --- acting -----------------------------------------------------------------------------------

function showError(err) { $("error").textContent = err ? String(err.message || err) : ""; }

async function act(op, args) {
  showError(null);
  try { return await request(op, args); } catch (err) { showError(err); return null; }
}

function pressKey(k) {
  window.simMetrics.clicks.push({ key: k, at: now() });
  const b = document.querySelector(`#keypad [data-key="${CSS.escape(k)}"]`);
  if (b) { b.classList.add("pressed"); setTimeout(() => b.classList.remove("pressed"), 120); }
  // Keys are applied in order, each held until the locker clicks (about 120 ms): a fast typist's keys
  // queue on the server. The count of keys not yet applied is on <body> (tests, bench/web.py).
  S.keysPending = (S.keysPending || 0) + 1;
  document.body.dataset.keysPending = String(S.keysPending);
  act("key", { key: k }).finally(() => {
    S.keysPending -= 1;
    document.body.dataset.keysPending = String(S.keysPending);
  });
}

function pullDoor(i, open, force = false) {
  window.simMetrics.clicks.push({ door: i, open, at: now() });
  act("door", { door: i, open, force });
}

document.addEventListener("DOMContentLoaded", () => {
  $("ev-all").addEventListener("change", renderAll);
  $("sound").addEventListener("change", (ev) => {
    // Browsers let a page make sound only from a user's gesture: this click.
    if (ev.target.checked) { S.audio = S.audio || new AudioContext(); S.audio.resume(); }
    renderLocker();
  });
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    // Enter on a focused button clicks it, except on the keypad, where Enter is # (a digit clicked
    // with the mouse keeps the focus: Enter must not type it again).
    const onKeypad = t && t.closest && t.closest("#keypad");
    if (t && t.tagName === "BUTTON" && (ev.key === " " || (ev.key === "Enter" && !onKeypad))) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (ev.ctrlKey || ev.altKey || ev.metaKey) return;
    const v = S.lockers[S.cur];
    const k = ev.key === "Enter" ? "#" : ev.key.length === 1 ? ev.key.toUpperCase() : ev.key;
    if (v && k.length === 1 && v.keys.includes(k)) { ev.preventDefault(); pressKey(k); }
  });
  connect();
});
