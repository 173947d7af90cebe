// The simulator's live page: polls /sim/state, places customer calls, presses keys
// for a call at a menu (<Gather>) and leaves messages (<Record>).
"use strict";

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function table(headers, rows) {
  const t = document.createElement("table");
  const head = t.insertRow();
  headers.forEach((h) => {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  });
  rows.forEach((fill) => fill(t.insertRow()));
  return t;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function hangupButton(row, sid) {
  const button = document.createElement("button");
  button.textContent = "Hang up";
  button.addEventListener("click", () => post(`/sim/calls/${sid}/hangup`).catch(report));
  row.insertCell().appendChild(button);
}

function renderConferences(conferences) {
  const box = document.getElementById("conferences");
  box.replaceChildren();
  conferences.slice().reverse().slice(0, 20).forEach((c) => {
    const title = document.createElement("h3");
    title.textContent = `${c.friendly_name} — ${c.status}`;
    title.className = `status-${c.status}`;
    box.appendChild(title);
    box.appendChild(table(["call", "label", "muted", "hold", "coaching", "end on exit"],
      c.participants.map((p) => (row) => {
        [p.call_sid, p.label, p.muted, p.hold, p.coaching, p.end_conference_on_exit]
          .forEach((v) => cell(row, v));
      })));
  });
}

function button(parent, text, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", () => action().then(refresh).catch(report));
  parent.appendChild(b);
  return b;
}

function keypad(td, sid) {
  "123456789*0#".split("").forEach((key) => {
    button(td, key, () => post(`/sim/calls/${sid}/keys`, { digits: key }));
  });
}

function messageControls(td, sid) {
  const seconds = document.createElement("input");
  seconds.type = "number";
  seconds.min = "0";
  seconds.max = "600";
  seconds.value = "8";
  seconds.size = 4;
  seconds.title = "seconds of message";
  td.appendChild(seconds);
  const speak = (end) => () =>
    post(`/sim/calls/${sid}/message`, { seconds: Number(seconds.value), end });
  button(td, "Speak, then #", speak("#"));
  button(td, "Speak, then hang up", speak("hangup"));
}

// The calls table is rebuilt every second; a row being typed in is kept as it is.
let editing = null;

function renderCalls(calls) {
  const box = document.getElementById("calls");
  if (editing && box.contains(document.activeElement)) return;
  const rows = calls.slice().reverse().slice(0, 50).map((c) => (row) => {
    [c.sid, c.direction, c.from, c.to].forEach((v) => cell(row, v));
    cell(row, c.status, `status-${c.status}`);
    const input = row.insertCell();
    if (c.listening === "keys") keypad(input, c.sid);
    if (c.listening === "message") messageControls(input, c.sid);
    if (["queued", "ringing", "in-progress"].includes(c.status)) hangupButton(row, c.sid);
  });
  box.replaceChildren(table(["sid", "direction", "from", "to", "status", "caller", ""], rows));
  editing = calls.some((c) => c.listening === "message");
}

function renderRecordings(recordings) {
  const rows = recordings.slice().reverse().slice(0, 30).map((r) => (row) => {
    [r.sid, r.source, r.call_sid || r.conference_sid, r.duration].forEach((v) => cell(row, v));
    cell(row, r.status, `status-${r.status}`);
  });
  document.getElementById("recordings")
    .replaceChildren(table(["sid", "source", "of", "seconds", "status"], rows));
}

function renderPhones(phones) {
  const rows = phones.map((p) => (row) => {
    [p.identity, p.registered, p.auto, p.ringing.join(" "), p.calls.join(" ")]
      .forEach((v) => cell(row, v));
  });
  document.getElementById("phones")
    .replaceChildren(table(["identity", "registered", "auto", "ringing", "calls"], rows));
}

function report(error) {
  document.getElementById("status").textContent = String(error);
}

async function refresh() {
  try {
    const state = await (await fetch("/sim/state")).json();
    renderConferences(state.conferences);
    renderCalls(state.calls);
    renderPhones(state.phones);
    renderRecordings(state.recordings || []);
    document.getElementById("status").textContent = "";
  } catch (error) {
    report(error);
  }
}

document.getElementById("call-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const from = document.getElementById("call-from").value.trim();
  const keys = document.getElementById("call-keys").value.trim();
  const message = document.getElementById("call-message").value.trim();
  const body = {};
  if (from) body.from = from;
  if (keys) body.keys = keys;
  if (message) body.message_seconds = Number(message);
  post("/sim/calls", body).then(refresh).catch(report);
});

refresh();
setInterval(refresh, 1000);
