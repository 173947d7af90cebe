// The supervisor's call history: search past calls by date, agent, number and outcome
// (GET /api/calls, a page at a time with its cursor), export the same search as CSV,
// and open one call with its legs, transfers, timeline and recording. The search and
// the open call live in the address (?agent=…&call=…), so a reload or a link keeps them.

import { api } from "./api.js";
import { $ } from "./boot.js";
import { dateTime, outcomePill, queryOf, span, timeEl } from "./calllog.js";
import { TRANSFER_WORDS, announce, h, phone, pill, reasonText, render } from "./ui.js";

const zone = $("search-card").dataset.timezone;
const FILTERS = ["from", "to", "agent", "number", "outcome"];
const PAGE = 50;
const SECONDS = { timeStyle: "medium" };
let filters = new URLSearchParams();
let next = null;
let shown = 0;
let openId = null;
let loading = 0; // a newer search makes the answers of older ones stale

// --- the search --------------------------------------------------------------------------

function readAddress() {
  const here = new URLSearchParams(window.location.search);
  for (const name of FILTERS) $("search").elements[name].value = here.get(name) || "";
  filters = queryOf($("search"));
  return here.get("call");
}

function writeAddress() {
  const query = new URLSearchParams(filters);
  if (openId) query.set("call", openId);
  const text = query.toString();
  window.history.replaceState(null, "", text ? `/history?${text}` : "/history");
}

function showError(message) {
  const line = $("search-error");
  line.hidden = !message;
  line.textContent = message || "";
}

async function search() {
  const mine = ++loading;
  next = null;
  shown = 0;
  $("export").href = `/api/calls.csv${filters.toString() ? `?${filters}` : ""}`;
  render($("calls"), h("tr", {}, h("td.hint", { colspan: "7" }, "Loading…")));
  $("more").hidden = true;
  $("results-count").textContent = "";
  await loadPage(mine, true);
}

async function loadPage(mine, first) {
  const query = new URLSearchParams(filters);
  query.set("limit", String(PAGE));
  if (next) query.set("cursor", next);
  const more = $("more");
  more.disabled = true;
  try {
    const page = await api.calls(query);
    if (mine !== loading) return;
    showError(null);
    const rows = page.calls.map(callRow);
    if (first) render($("calls"), rows.length ? rows : h("tr", {}, h("td.empty", { colspan: "7" }, "No calls match this search.")));
    else $("calls").append(...rows);
    shown += page.calls.length;
    next = page.next;
    more.hidden = !next;
    $("results-count").textContent = `${shown}${next ? "+" : ""} call${shown === 1 ? "" : "s"}`;
    if (!first) announce(`${page.calls.length} more calls.`);
  } catch (error) {
    if (mine !== loading) return;
    showError(error.status === 503 ? "The call history is not available right now. Try again in a moment." : error.message);
    if (first) render($("calls"));
  } finally {
    more.disabled = false;
  }
}

function callRow(call) {
  const agents = [...new Set(call.legs.filter((leg) => leg.role !== "supervisor").map((leg) => leg.agent))];
  return h("tr", { "data-testid": "call-row", "data-call": call.id, "aria-current": call.id === openId ? "true" : undefined },
    h("td", {}, h("a", {
      href: `/history?call=${encodeURIComponent(call.id)}`,
      "data-key": `call:${call.id}`,
      onclick: (event) => {
        event.preventDefault();
        openCall(call.id);
      },
    }, dateTime(call.arrived_at, zone))),
    h("td.nowrap", {}, phone(call.from), call.kind === "callback" ? h("span.kind", {}, " callback") : null),
    h("td", {}, outcomePill(call.outcome)),
    h("td.num", {}, span(call.wait_ms)),
    h("td.num", {}, call.talk_ms ? span(call.talk_ms) : "—"),
    h("td", {}, agents.join(", ") || "—"),
    h("td", {}, call.recording ? h("span.badge", { title: "Recorded" }, "Recording") : null));
}

// --- one call -------------------------------------------------------------------------------

async function openCall(id) {
  openId = id;
  writeAddress();
  for (const row of $("calls").querySelectorAll("tr[data-call]")) {
    if (row.dataset.call === id) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  }
  render($("detail"), h("p.hint", {}, "Loading…"));
  try {
    const call = await api.call(id);
    if (openId !== id) return;
    render($("detail"), detail(call));
    $("detail-title").textContent = `Call · ${phone(call.from)}`;
    $("detail-card").focus({ preventScroll: false });
  } catch (error) {
    if (openId !== id) return;
    render($("detail"), h("p.alert", { role: "alert" }, error.status === 404 ? "No such call." : error.message));
  }
}

function fact(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...value)];
}

function audio(label, media) {
  return h("figure.recording", { "data-testid": label === "Recording" ? "recording" : "voicemail" },
    h("figcaption", {}, label, media.duration ? ` · ${span(media.duration * 1000)}` : ""),
    h("audio", { controls: true, preload: "none", src: media.url }, h("a", { href: media.url }, "Download")));
}

function detail(call) {
  const answeredBy = call.answered_by
    ? [call.answered_by, " at ", timeEl(call.answered_at, zone, SECONDS)]
    : ["—"];
  return h("div.call-detail", { "data-testid": "call-detail", "data-call": call.id },
    h("p.detail-head", {}, outcomePill(call.outcome), h("span", {}, call.kind === "callback" ? "Callback" : "Inbound call")),
    h("dl.facts", {},
      fact("Arrived", timeEl(call.arrived_at, zone, { dateStyle: "medium", timeStyle: "medium" })),
      fact("Waited", span(call.wait_ms)),
      fact("Answered by", ...answeredBy),
      fact("Talk", span(call.talk_ms), call.hold_ms ? ` (hold ${span(call.hold_ms)})` : ""),
      fact("Ended", timeEl(call.ended_at, zone, SECONDS)),
      call.disposition ? fact("Disposition", call.disposition) : null,
      call.notes ? fact("Notes", call.notes) : null,
      fact("Call id", h("code", {}, call.id))),
    call.recording ? audio("Recording", call.recording) : null,
    call.voicemail ? audio("Voicemail", call.voicemail) : null,
    h("h3.subhead", {}, "Agents"),
    call.legs.length
      ? h("ol.legs", {}, call.legs.map((leg) => h("li.leg", { "data-testid": "leg", "data-role": leg.role },
        h("span.leg-agent", {}, leg.agent), leg.role !== "agent" ? h("span.role", {}, ` ${leg.role}`) : null,
        h("span.leg-time", {}, " ", timeEl(leg.joined_at, zone, SECONDS), " – ", leg.left_at ? timeEl(leg.left_at, zone, SECONDS) : "…",
          leg.hold_ms ? ` · hold ${span(leg.hold_ms)}` : ""))))
      : h("p.hint", {}, "No agent joined this call."),
    call.transfers.length ? [
      h("h3.subhead", {}, "Transfers"),
      h("ul.transfer-list", {}, call.transfers.map((t) => h("li.transfer", { "data-testid": "history-transfer", "data-status": t.status },
        pill(t.status, TRANSFER_WORDS[t.status] || t.status),
        h("span.transfer-who", {}, `${t.from_agent} → ${t.to_agent || "any agent"}`),
        t.reason ? h("span.transfer-reason", {}, reasonText(t.reason)) : null,
        t.note ? h("span.transfer-note", {}, h("q", {}, t.note)) : null))),
    ] : null,
    h("h3.subhead", {}, "Timeline"),
    call.timeline.length
      ? h("ol.timeline", { "data-testid": "history-timeline" }, call.timeline.map((e) =>
        h("li.timeline-entry", { "data-type": e.type },
          timeEl(e.at, zone, SECONDS),
          h("span.timeline-actor", {}, e.actor),
          h("span.timeline-detail", {}, e.detail))))
      : h("p.hint", {}, "Nothing was recorded for this call."));
}

// --- start ------------------------------------------------------------------------------------

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  filters = queryOf($("search"));
  writeAddress();
  search();
});
$("more").addEventListener("click", () => loadPage(loading, false));

const wanted = readAddress();
search();
if (wanted) openCall(wanted);
