// The supervisor's reports over days of the history (GET /api/reports): the totals,
// calls and abandons per hour, service level and waits per day, a table per agent,
// and each as CSV. The days live in the address (?from=…&to=…).

import { api } from "./api.js";
import { $ } from "./boot.js";
import { formatter, isoDay, queryOf, span } from "./calllog.js";
import { dailyChart, hourlyChart } from "./charts.js";
import { announce, h, render } from "./ui.js";

const zone = $("range-card").dataset.timezone;
const BY = ["hour", "day", "agent"];
let loading = 0; // a newer range makes the answers of older ones stale

const percent = (x) => (x === null || x === undefined ? "—" : `${Math.round(x * 100)}%`);
// With its UTC offset: the repeated hour of a daylight-saving change is two rows.
const hourLabel = formatter(zone, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "shortOffset",
});

function withBy(range, by) {
  const query = new URLSearchParams(range);
  query.set("by", by);
  return query;
}

function showError(message) {
  const line = $("range-error");
  line.hidden = !message;
  line.textContent = message || "";
}

/** A table of ``rows``: ``columns`` are [heading, cell(row), numeric?]. */
function fillTable(table, columns, rows, empty, testid) {
  render(table,
    h("thead", {}, h("tr", {}, columns.map(([heading, , numeric]) => h("th", { scope: "col", class: numeric ? "num" : undefined }, heading)))),
    h("tbody", {}, rows.length
      ? rows.map((row) => h("tr", { "data-testid": testid, "data-bucket": row.bucket },
        columns.map(([, cell, numeric], i) => h(i ? "td" : "th", { scope: i ? undefined : "row", class: numeric ? "num" : undefined }, cell(row)))))
      : h("tr", {}, h("td.empty", { colspan: String(columns.length) }, empty))));
}

const CALL_COLUMNS = [
  ["Offered", (r) => String(r.offered), true],
  ["Answered", (r) => String(r.answered), true],
  ["Abandoned", (r) => String(r.abandoned), true],
  ["Voicemails", (r) => String(r.voicemails), true],
  ["Callbacks", (r) => String(r.callbacks), true],
  ["Service level", (r) => percent(r.service_level), true],
  ["Mean wait", (r) => span(r.wait_mean_ms), true],
  ["90th pct wait", (r) => span(r.wait_p90_ms), true],
  ["Mean handle", (r) => span(r.handle_mean_ms), true],
];

const AGENT_COLUMNS = [
  ["Agent", (r) => r.bucket],
  ["Handled", (r) => String(r.handled), true],
  ["Missed rings", (r) => String(r.missed), true],
  ["Mean handle", (r) => span(r.handle_mean_ms), true],
  ["Occupancy", (r) => percent(r.occupancy), true],
  ["Break", (r) => span(r.break_ms), true],
  ["Transfers ✓", (r) => String(r.transfers_succeeded), true],
  ["Transfers ✗", (r) => String(r.transfers_failed), true],
];

function tile(label, value, detail) {
  return h("div.figure", {}, h("dt", {}, label), h("dd", {}, h("span.figure-value", {}, value), detail ? h("span.figure-detail", {}, detail) : null));
}

function renderTotals(days) {
  const sum = (field) => days.reduce((total, row) => total + (row[field] || 0), 0);
  render($("totals"),
    tile("Offered", String(sum("offered")), "calls that reached the line"),
    tile("Answered", String(sum("answered")), ""),
    tile("Abandoned", String(sum("abandoned")), "hung up while waiting"),
    tile("Voicemails", String(sum("voicemails")), ""),
    tile("Callbacks", String(sum("callbacks")), ""),
    tile("Transfers", `${sum("transfers_succeeded")} ✓ · ${sum("transfers_failed")} ✗`, ""));
}

async function show() {
  const mine = ++loading;
  const range = queryOf($("range"));
  window.history.replaceState(null, "", `/reports?${range}`);
  for (const by of BY) $(`csv-${by}`).href = `/api/reports.csv?${withBy(range, by)}`;
  let answers;
  try {
    answers = await Promise.all(BY.map((by) => api.reports(withBy(range, by))));
  } catch (error) {
    if (mine !== loading) return;
    showError(error.status === 503 ? "The call history is not available right now. Try again in a moment." : error.message);
    return;
  }
  if (mine !== loading) return;
  showError(null);
  const [hours, days, agents] = answers.map((answer) => answer.rows);
  renderTotals(days);
  fillTable($("table-hour"), [["Hour", (r) => hourLabel.format(new Date(Date.parse(r.bucket)))], ...CALL_COLUMNS], hours, "No hours in these days.", "hour-row");
  fillTable($("table-day"), [["Day", (r) => r.bucket], ...CALL_COLUMNS], days, "No days.", "day-row");
  fillTable($("table-agent"), AGENT_COLUMNS, agents, "No agent was signed in on these days.", "agent-row");
  await Promise.all([hourlyChart($("chart-hour"), hours, zone), dailyChart($("chart-day"), days)]);
  announce(`Reports for ${range.get("from")} to ${range.get("to")}.`);
}

function setDays(days) {
  $("range-from").value = isoDay(zone, 1 - days);
  $("range-to").value = isoDay(zone);
}

// --- start ------------------------------------------------------------------------------------

$("range").addEventListener("submit", (event) => {
  event.preventDefault();
  show();
});
for (const button of document.querySelectorAll("[data-days]")) {
  button.addEventListener("click", () => {
    setDays(Number(button.dataset.days));
    show();
  });
}

const here = new URLSearchParams(window.location.search);
setDays(7);
if (here.get("from")) $("range-from").value = here.get("from");
if (here.get("to")) $("range-to").value = here.get("to");
show();
