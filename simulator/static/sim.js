// The simulator's live page: polls /sim/state and places customer calls.
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

function renderCalls(calls) {
  const rows = calls.slice().reverse().slice(0, 50).map((c) => (row) => {
    [c.sid, c.direction, c.from, c.to].forEach((v) => cell(row, v));
    cell(row, c.status, `status-${c.status}`);
    if (["queued", "ringing", "in-progress"].includes(c.status)) hangupButton(row, c.sid);
  });
  document.getElementById("calls")
    .replaceChildren(table(["sid", "direction", "from", "to", "status", ""], rows));
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
    document.getElementById("status").textContent = "";
  } catch (error) {
    report(error);
  }
}

document.getElementById("call-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const from = document.getElementById("call-from").value.trim();
  post("/sim/calls", from ? { from } : {}).then(refresh).catch(report);
});

refresh();
setInterval(refresh, 1000);
