// The supervisor console: the whole floor at a glance. Live calls with their
// participants and flags, listen / whisper / barge, the queue, voicemails, agents,
// transfers, today's figures, a call's timeline and webhook health.

import { api } from "./api.js";
import { $, View } from "./boot.js";
import { personRow, renderMembers, renderQueue } from "./cards.js";
import {
  TRANSFER_WORDS,
  ago,
  announce,
  byRoleThenJoin,
  clock,
  duration,
  h,
  phone,
  pill,
  reasonText,
  render,
  timer,
} from "./ui.js";
import { VoicemailsCard } from "./voicemails.js";

const view = new View(true, renderAll);
const { me, model, controls } = view;
const voicemails = new VoicemailsCard(view);
let figures = null;
let webhooks = null;
let timelineFor = null;
const pendingMonitor = new Map(); // conference -> {mode, at}: our softphone will ring for it
const AUTO_ANSWER_MS = 30_000;
const MODES = [
  ["listen", "Listen", "Join muted: nobody hears you", "Listening to", "nobody hears you"],
  ["whisper", "Whisper", "Coach the agent: only the agent hears you", "Coaching on", "only the agent hears you"],
  ["barge", "Barge", "Join the call: everyone hears you", "In the call with", "everyone hears you"],
];
const WEBHOOK_ROUTES = [
  ["/conference/connect/client", "Incoming calls (Voice URL)"],
  ["/conference/wait", "Hold music (waitUrl)"],
  ["/conference/connect/agent", "Agent connect"],
  ["/conference/status", "Conference status"],
  ["/call/status", "Call status"],
];

// --- actions -----------------------------------------------------------------------------------

function monitor(conference, mode) {
  controls.act(`${conference.name}:${mode}`, async () => {
    pendingMonitor.set(conference.name, { mode, at: Date.now() });
    await api.monitor(conference.name, mode);
    announce(`${MODES.find((m) => m[0] === mode)[1]} mode on the call with ${phone(conference.from)}.`);
  }, conference.name);
}

function leave(conference) {
  controls.act(`${conference.name}:leave`, async () => {
    pendingMonitor.delete(conference.name);
    await api.leave(conference.name);
    announce("You left the call.");
  }, conference.name);
}

// --- rendering ------------------------------------------------------------------------------

function renderAll() {
  renderMonitor();
  renderConferences();
  renderTransfers();
  renderQueue(model.queue);
  voicemails.render();
  renderAgents();
  renderFigures();
  renderWebhooks();
}

/** This supervisor's participant in a conference and the mode it is in. */
function myPresence(conference) {
  const p = [...conference.participants.values()].find((x) => x.role === "supervisor" && x.agent === me);
  if (!p) return null;
  return { participant: p, mode: p.coaching ? "whisper" : p.muted ? "listen" : "barge" };
}

function visibleConferences() {
  // A caller still in line (or a callback waiting for its agent) shows in the queue.
  const queued = new Set(model.queue.map((q) => q.callback || q.call_sid));
  return [...model.conferences.values()]
    .filter((c) => !(c.status === "waiting" && queued.has(c.callback || c.name)))
    .sort((a, b) => (a.created_at || 0) - (b.created_at || 0));
}

function renderConferences() {
  const conferences = visibleConferences();
  const live = conferences.filter((c) => c.status !== "ended").length;
  $("calls-count").textContent = String(live);
  $("calls-count").setAttribute("aria-label", `${live} live calls`);
  if (!conferences.length) {
    render($("conferences"), h("p.empty-card", {}, "No calls in progress. New calls appear here as agents answer."));
    return;
  }
  render($("conferences"), conferences.map(conferenceCard));
}

function conferenceCard(c) {
  const mine = myPresence(c);
  const pending = model.monitors.get(c.name)?.get(me);
  const current = mine?.mode || null;
  const transfer = model.liveTransfers().find((t) => t.conference === c.name);
  const people = [...c.participants.values()].sort(byRoleThenJoin);
  const statusWords = { "in-progress": "In progress", waiting: "Connecting", ended: "Ended" };
  const canMonitor = c.status === "in-progress";
  const title = `call-${c.name}`;
  const callback = model.callbackOf(c);
  return h("article.card.conference", {
    "aria-labelledby": title,
    "data-status": c.status,
    "data-conference": c.name,
    "data-testid": "conference",
  },
  h("div.card-head", {},
    h("h3", { id: title }, c.kind === "callback" ? `Callback to ${phone(c.from)}` : phone(c.from)),
    pill(c.status === "in-progress" ? "live" : c.status, statusWords[c.status] || c.status),
    c.started_at && c.status !== "ended"
      ? h("span.talk-time", {}, "Talk ", timer(c.started_at))
      : null),
  h("ul.people", { "aria-label": "Participants" }, people.map((p) => personRow(p, me))),
  callback ? h("p.callback-inline", { "data-testid": "callback-status" }, callbackLine(callback)) : null,
  transfer ? h("p.transfer-inline", { "data-status": transfer.status },
    pill(transfer.status, TRANSFER_WORDS[transfer.status]),
    ` ${transfer.from_agent} → ${transfer.to_agent || "any agent"} `,
    transfer.status === "ringing" || transfer.status === "requested" ? timer(transfer.updated_at) : null,
    transfer.note ? h("span.note-inline", {}, h("q", {}, transfer.note)) : null) : null,
  h("div.conference-actions", {},
    h("div.segmented", { role: "group", "aria-label": `Monitor the call with ${phone(c.from)}` },
      MODES.map(([mode, label, help]) => controls.button(`${c.name}:${mode}`, label, {
        "aria-pressed": String(current === mode),
        "data-pending": !current && pending === mode ? "true" : undefined,
        title: help,
        disabled: !canMonitor || undefined,
        onclick: () => monitor(c, mode),
      }, ".segment"))),
    mine || pending ? controls.button(`${c.name}:leave`, "Leave", { onclick: () => leave(c) }, ".button-small") : null,
    controls.button(`${c.name}:timeline`, "Timeline", { onclick: () => openTimeline(c) }, ".button-quiet.button-small")),
  controls.errorLine(c.name));
}

const CALLBACK_WORDS = {
  waiting: "Waiting",
  dialing: "Dialing the number",
  connected: "Connected",
  failed: "Failed",
  done: "Done",
};

/** A callback's progress on its conference card: status, attempts, the last dial's result. */
function callbackLine(callback) {
  const parts = [CALLBACK_WORDS[callback.status] || callback.status];
  if (callback.attempts) parts.push(`${callback.attempts} ${callback.attempts === 1 ? "attempt" : "attempts"}`);
  if (callback.result && callback.status !== "connected") parts.push(`last: ${callback.result}`);
  return `Callback · ${parts.join(" · ")}`;
}

function renderMonitor() {
  const { softphone } = view;
  const calls = softphone ? [...softphone.calls.values()] : [];
  const inIt = [...model.conferences.values()].map((c) => [c, myPresence(c)]).filter(([, p]) => p);
  const parts = [];
  for (const call of calls.filter((x) => x.status === "ringing")) {
    parts.push(h("div.monitor-ring", {},
      h("p", {}, "Your phone is ringing."),
      h("div.actions", {},
        controls.button(`answer:${call.sid}`, "Answer", { onclick: () => controls.act(`answer:${call.sid}`, () => softphone.answer(call.sid), "monitor") }, ".button-answer"),
        controls.button(`decline:${call.sid}`, "Decline", { onclick: () => controls.act(`decline:${call.sid}`, () => softphone.decline(call.sid), "monitor") }))));
  }
  for (const [c, presence] of inIt) {
    const [, label, , doing, who] = MODES.find((m) => m[0] === presence.mode);
    parts.push(h("div.monitor-live", { "data-testid": "monitoring" },
      pill(presence.mode, label),
      h("span.monitor-what", {}, h("strong", {}, `${doing} ${phone(c.from)}`), ` · ${who} · `, timer(presence.participant.joined_at)),
      h("div.actions", {}, controls.button(`${c.name}:leave-line`, "Leave call", { onclick: () => leave(c) }, ".button-danger"))));
  }
  if (!parts.length) {
    parts.push(h("p.hint", {}, "Choose Listen, Whisper or Barge on a call. Your phone rings and is answered for you."));
  }
  parts.push(controls.errorLine("monitor"));
  render($("monitor-body"), ...parts);
}

function renderTransfers() {
  const live = model.liveTransfers();
  render($("transfers-live"), live.length ? live.map((t) =>
    h("li.transfer", { "data-status": t.status, "data-testid": "transfer-live" },
      pill(t.status, TRANSFER_WORDS[t.status]),
      h("span.transfer-who", {}, `${t.from_agent} → ${t.to_agent || "any agent"}`),
      h("span.transfer-time", {}, t.status === "ringing" ? "ringing " : "for ", timer(t.updated_at)),
      t.note ? h("span.transfer-note", {}, h("q", {}, t.note)) : null))
    : [h("li.empty", {}, "No transfers under way.")]);
  const done = model.recentResults().slice(0, 10);
  render($("transfers-done"), done.length ? done.map((t) =>
    h("li.transfer", { "data-status": t.status, "data-testid": "transfer-done" },
      pill(t.status, TRANSFER_WORDS[t.status]),
      h("span.transfer-who", {}, `${t.from_agent} → ${t.to_agent || "any agent"}`),
      h("span.transfer-time", {}, clock(t.updated_at)),
      t.reason ? h("span.transfer-reason", {}, reasonText(t.reason)) : null))
    : [h("li.empty", {}, "Finished transfers appear here with their outcome.")]);
}

// Each agent's status (wrap-up, or a break with its reason) and how long they have been in it.
function renderAgents() {
  renderMembers(model.agents.values(), "No agent has set a status yet today.");
}

function tile(label, value, detail, attrs = {}) {
  return h("div.figure", attrs, h("dt", {}, label), h("dd", {}, h("span.figure-value", {}, value), detail ? h("span.figure-detail", {}, detail) : null));
}

function renderFigures() {
  const f = figures;
  const oldest = model.queue.length ? Math.min(...model.queue.map((q) => q.queued_at)) : null;
  const percent = (x) => (x === null || x === undefined ? "—" : `${Math.round(x * 100)}%`);
  const seconds = (ms) => (ms === null || ms === undefined ? "—" : duration(ms));
  const reasons = f ? Object.entries(f.transfers.failed_reasons || {}).map(([r, n]) => `${n} ${reasonText(r)}`).join(", ") : "";
  render($("figures"),
    tile("Waiting", String(model.queue.length), model.queue.length ? "in the queue now" : "queue is empty", { "data-tone": model.queue.length ? "warn" : undefined }),
    tile("Longest wait", oldest ? timer(oldest) : "—", oldest ? "waiting now" : "nobody waiting", { "data-tone": oldest ? "warn" : undefined }),
    tile("Expected wait", f && f.expected_wait_ms !== null && f.expected_wait_ms !== undefined ? seconds(f.expected_wait_ms) : "—", f && f.expected_wait_ms !== null ? "for a caller arriving now" : "not known yet", { id: "expected-wait" }),
    tile("Answered today", f ? String(f.answered) : "—", f ? `mean wait ${seconds(f.mean_wait_ms)}` : ""),
    tile("Abandoned", f ? String(f.abandoned) : "—", "hung up while waiting", { "data-tone": f && f.abandoned ? "bad" : undefined }),
    tile("Chose not to wait", f ? String(f.callbacks_requested + f.left_messages) : "—",
      f ? `${f.callbacks_requested} callback${f.callbacks_requested === 1 ? "" : "s"} · ${f.left_messages} message${f.left_messages === 1 ? "" : "s"}` : "", { id: "left-line" }),
    tile("Service level", f ? percent(f.service_level) : "—", f ? `answered within ${f.service_level_seconds} s` : ""),
    tile("Transfers", f ? `${f.transfers.succeeded} ✓ · ${f.transfers.failed} ✗` : "—", reasons || (f ? `${f.transfers.canceled} canceled` : "")),
    tile("Transfer answer", f ? seconds(f.transfer_answer.mean_ms) : "—", f ? `mean of ${f.transfer_answer.count}` : ""),
  );
}

function renderWebhooks() {
  if (!webhooks) {
    render($("webhooks"), h("p.hint", {}, "Loading…"));
    return;
  }
  const known = new Set(WEBHOOK_ROUTES.map((r) => r[0]));
  const routes = [...WEBHOOK_ROUTES, ...Object.keys(webhooks.last_request).filter((r) => !known.has(r)).map((r) => [r, r])];
  const failures = webhooks.signature_failures || [];
  render($("webhooks"),
    h("ul.webhook-list", {}, routes.map(([route, label]) => {
      const at = webhooks.last_request[route];
      return h("li.webhook", { "data-state": at ? "ok" : "never" },
        h("span.presence-dot", { "data-status": at ? "available" : "offline", "aria-hidden": "true" }),
        h("span.webhook-name", {}, label, h("code", {}, route)),
        h("span.webhook-when", {}, at ? ago(at) : "never"));
    })),
    failures.length
      ? h("div.signature-failures", {},
        h("h3.subhead", {}, `Signature failures (${failures.length})`),
        h("p.hint", {}, "Requests refused at a webhook route. If Twilio's own requests are among them, check PUBLIC_BASE_URL and your proxy."),
        h("ul", {}, failures.map(signatureFailure)))
      : h("p.ok-line", {}, "No signature failures."));
}

/** One refused request: route, time, reason and client, all server-chosen text (the
 * route is one of the app's own paths, the URL PUBLIC_BASE_URL + that path). */
function signatureFailure(f) {
  const label = WEBHOOK_ROUTES.find((r) => r[0] === f.route)?.[1];
  return h("li", { "data-testid": "signature-failure" },
    h("time", { datetime: new Date(f.at).toISOString() }, clock(f.at)), " ",
    label ? `${label} ` : null, h("code", { title: `checked against ${f.url}` }, f.route), ": ",
    h("span.failure-reason", {}, f.reason), " from ",
    h("code", {}, f.client));
}

// --- the timeline dialog -------------------------------------------------------------------

async function openTimeline(conference) {
  timelineFor = conference;
  $("timeline-title").textContent = `Timeline · ${phone(conference.from)}`;
  $("timeline-subtitle").textContent = `Conference ${conference.name}`;
  render($("timeline"), h("li.hint", {}, "Loading…"));
  const dialog = $("timeline-dialog");
  if (!dialog.open) dialog.showModal();
  await refreshTimeline();
}

async function refreshTimeline() {
  if (!timelineFor) return;
  try {
    const { entries } = await api.timeline(timelineFor.name);
    render($("timeline"), entries.length ? entries.map((e) =>
      h("li.timeline-entry", { "data-type": e.type },
        h("time", { datetime: new Date(e.at).toISOString() }, clock(e.at)),
        h("span.timeline-actor", {}, e.actor),
        h("span.timeline-detail", {}, e.detail)))
      : [h("li.hint", {}, "Nothing recorded yet.")]);
  } catch (error) {
    render($("timeline"), h("li.alert", { role: "alert" }, error.message));
  }
}

$("timeline-close").addEventListener("click", () => $("timeline-dialog").close());
$("timeline-dialog").addEventListener("close", () => {
  const name = timelineFor?.name;
  timelineFor = null;
  if (name) document.querySelector(`[data-key="${CSS.escape(`${name}:timeline`)}"]`)?.focus();
});

// --- polling what /ws does not carry -------------------------------------------------------

let figuresTimer = null;
async function refreshFigures() {
  clearTimeout(figuresTimer);
  try {
    figures = await api.figures();
    controls.schedule();
  } catch (error) {
    console.warn("figures", error.message);
  }
  figuresTimer = setTimeout(refreshFigures, 5000);
}

async function refreshWebhooks() {
  try {
    webhooks = await api.webhooks();
    controls.schedule();
  } catch (error) {
    console.warn("webhooks", error.message);
  }
}

let soon = null;
function refreshSoon(kind) {
  // Throttled, not debounced: a busy floor sends events without pause.
  if (soon || !/^(call\.|transfer\.|conference\.)/.test(kind)) return;
  soon = setTimeout(() => {
    soon = null;
    refreshFigures();
    refreshWebhooks();
  }, 700);
}

// --- start --------------------------------------------------------------------------------

let timelineSoon = null;
view.start({
  onChange(kind) {
    refreshSoon(kind);
    if (timelineFor && kind !== "agent.updated" && kind !== "queue.updated") {
      clearTimeout(timelineSoon);
      timelineSoon = setTimeout(refreshTimeline, 400);
    }
  },
  onIncoming(event) {
    // The ring we asked for by choosing a mode is answered for us.
    const fresh = [...pendingMonitor.values()].some((p) => Date.now() - p.at < AUTO_ANSWER_MS);
    if (fresh) {
      pendingMonitor.clear();
      view.softphone.answer(event.detail.sid).catch((error) => {
        controls.fail("monitor", error.message);
      });
    } else {
      announce("Your phone is ringing.", true);
    }
  },
});
refreshFigures();
refreshWebhooks();
setInterval(refreshWebhooks, 15_000);
setInterval(() => controls.schedule(), 10_000); // "ago" texts
