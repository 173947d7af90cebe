// The supervisor console: the whole floor at a glance. Alerts (with an optional
// sound) and agents' help requests first, live calls with their participants and
// flags, listen / whisper / barge, the queue, voicemails, agents, transfers, the
// directory of external numbers, today's figures, a call's timeline and webhook health.

import { api } from "./api.js";
import { $, View } from "./boot.js";
import { personRow, renderMembers, renderQueue } from "./cards.js";
import { Chime } from "./ring.js";
import {
  TRANSFER_MODE_WORDS,
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
  transferTarget,
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
const chime = new Chime();
const SOUND_KEY = "warmline.alertSound"; // localStorage: "on" when new alerts sound
const alertItems = new Map(); // alert id -> its <li> in the banner (kept, not re-rendered)
let alertsSeeded = false; // the alerts of the first snapshot are not announced as new
const seenHelp = new Set(); // help requests announced already
let directory = null; // the external numbers agents may transfer to (GET /api/directory)
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

function monitor(conference, mode, key = `${conference.name}:${mode}`) {
  controls.act(key, async () => {
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
  renderAlerts();
  renderHelp();
  renderMonitor();
  renderConferences();
  renderTransfers();
  renderQueue(model.queue);
  voicemails.render();
  renderAgents();
  renderFigures();
  renderDirectory();
  renderWebhooks();
}

// --- alerts (SPEC §10): the banner, kept item by item so a new one is announced once ---

/** An alert in words: "Longest wait 3:12 (over 2:00)", "14 waiting (over 10)"… */
function alertWords(alert) {
  const value = Math.round(alert.value);
  const threshold = Math.round(alert.threshold);
  switch (alert.kind) {
    case "longest-wait":
      return `Longest wait ${duration(alert.value * 1000)} (over ${duration(alert.threshold * 1000)})`;
    case "queue-size":
      return `${value} waiting (over ${threshold})`;
    case "service-level":
      return `Service level ${value}% (under ${threshold}%)`;
    case "nobody-available":
      return "Callers waiting, nobody available";
    default:
      return `${alert.kind}: ${value} (threshold ${threshold})`;
  }
}

function soundOn() {
  try {
    return localStorage.getItem(SOUND_KEY) === "on";
  } catch {
    return false; // storage blocked: the default, off
  }
}

function renderAlerts() {
  const up = model.openAlerts();
  const ids = new Set(up.map((a) => a.id));
  for (const [id, item] of alertItems) {
    if (ids.has(id)) continue;
    item.remove();
    alertItems.delete(id);
  }
  let fresh = 0;
  for (const alert of up) {
    if (alertItems.has(alert.id)) continue;
    const isNew = alertsSeeded;
    // Only the words are the alert region: the ticking "for" timer must not be re-read.
    const item = h("li.alert-item", { "data-kind": alert.kind, "data-testid": "alert" },
      h("strong.alert-what", { role: isNew ? "alert" : undefined }, alertWords(alert)),
      " ",
      h("span.alert-since", {}, "since ",
        h("time", { datetime: new Date(alert.since).toISOString() }, clock(alert.since)),
        " · for ", timer(alert.since)));
    $("alerts").append(item);
    alertItems.set(alert.id, item);
    if (isNew) fresh += 1;
  }
  if (fresh && soundOn()) chime.play();
  if (model.ready) alertsSeeded = true;
  $("alerts-card").dataset.state = up.length ? "up" : "clear";
  $("alerts-none").hidden = up.length > 0;
}

$("alerts-sound").checked = soundOn();
$("alerts-sound").addEventListener("change", (event) => {
  const on = event.target.checked;
  try {
    localStorage.setItem(SOUND_KEY, on ? "on" : "off");
  } catch {
    // storage blocked: the choice lasts until the page is reloaded
  }
  if (on) {
    chime.unlock();
    chime.play(); // what it will sound like
  }
  announce(on ? "New alerts will sound." : "New alerts are silent.");
});

// --- help requests (SPEC §10): one click to listen, whisper or dismiss -----------------

function helpNumber(request) {
  const c = model.conferences.get(request.conference);
  return c ? phone(c.from || model.customerOf(c)?.from) : "a call";
}

function renderHelp() {
  const open = model.openHelp();
  for (const r of open) {
    if (seenHelp.has(r.id)) continue;
    seenHelp.add(r.id);
    if (model.ready) announce(`${r.agent} asks for help on the call with ${helpNumber(r)}: ${r.text}`, true);
  }
  $("help-card").hidden = !open.length;
  $("help-count").textContent = String(open.length);
  $("help-count").setAttribute("aria-label", `${open.length} open help requests`);
  render($("help-requests"), open.map(helpItem));
}

function helpItem(request) {
  const c = model.conferences.get(request.conference);
  const canMonitor = c?.status === "in-progress";
  const key = `help:${request.id}`;
  return h("li.help-request", { "data-testid": "help-request", "data-agent": request.agent },
    h("p.help-who", {},
      h("strong", {}, request.agent), " on the call with ",
      h("span.help-number", {}, helpNumber(request)),
      h("span.help-ago", {}, " · asked ", timer(request.at), " ago")),
    h("blockquote.help-text", { "data-testid": "help-text" }, request.text),
    h("div.actions", {},
      controls.button(`${key}:listen`, "Listen", {
        "aria-label": `Listen to ${request.agent}'s call`,
        disabled: !canMonitor || undefined,
        onclick: () => monitor(c, "listen", `${key}:listen`),
      }),
      controls.button(`${key}:whisper`, "Whisper", {
        "aria-label": `Whisper to ${request.agent}`,
        disabled: !canMonitor || undefined,
        onclick: () => monitor(c, "whisper", `${key}:whisper`),
      }, ".button-primary"),
      controls.button(`${key}:dismiss`, "Dismiss", {
        "aria-label": `Dismiss ${request.agent}'s request`,
        onclick: () => controls.act(`${key}:dismiss`, async () => {
          model.putHelp(await api.withdrawHelp(request.id));
          announce(`${request.agent}'s request dismissed.`);
        }, request.conference),
      }, ".button-quiet")),
    controls.errorLine(request.conference));
}

// --- the directory of external numbers (SPEC §10) ---------------------------------------

async function loadDirectory() {
  try {
    directory = (await api.directory()).entries;
  } catch (error) {
    controls.fail("directory", `The directory could not be loaded: ${error.message}`);
  }
  controls.schedule();
}

function renderDirectory() {
  const list = $("directory");
  if (directory === null) return; // "Loading…" from the template
  render(list, directory.length
    ? [...directory].sort((a, b) => a.name.localeCompare(b.name)).map((entry) =>
      h("li.directory-entry", { "data-testid": "directory-entry" },
        h("span.directory-name", {}, entry.name),
        h("span.directory-number", {}, phone(entry.number)),
        controls.button(`directory:${entry.id}`, "Remove", {
          "aria-label": `Remove ${entry.name}`,
          onclick: () => controls.act(`directory:${entry.id}`, async () => {
            await api.removeDirectory(entry.id);
            directory = directory.filter((e) => e.id !== entry.id);
            setDirectoryStatus(`Removed ${entry.name}.`);
            $("directory-name").focus();
          }, "directory"),
        }, ".button-quiet.button-small")))
    : [h("li.empty", {}, "No numbers yet: agents can transfer only to numbers allowed by the settings.")]);
  $("directory-add").disabled = controls.busy === "directory-add";
  const error = $("directory-error");
  const text = controls.error?.where === "directory" ? controls.error.text : "";
  error.hidden = !text;
  if (error.textContent !== text) error.textContent = text;
}

function setDirectoryStatus(text) {
  $("directory-status").textContent = text;
}

$("directory-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("directory-name").value.trim();
  const number = $("directory-number").value.replace(/[\s().-]/g, "");
  if (!name || !number) {
    controls.fail("directory", name ? "Enter the number." : "Enter a name.");
    $(name ? "directory-number" : "directory-name").focus();
    return;
  }
  // The server's own check (E.164), said before asking it.
  if (!/^\+[1-9]\d{1,14}$/.test(number)) {
    controls.fail("directory", "Enter the number in international (E.164) format: + and the country code, such as +14155550100.");
    $("directory-number").focus();
    return;
  }
  controls.act("directory-add", async () => {
    const entry = await api.addDirectory(name, number);
    directory = [...(directory || []).filter((e) => e.id !== entry.id), entry];
    $("directory-form").reset();
    setDirectoryStatus(`Added ${entry.name}.`);
    $("directory-name").focus();
  }, "directory");
});

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
  const help = model.openHelp().find((r) => r.conference === c.name);
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
  help ? h("p.help-inline", { "data-testid": "help-inline" },
    pill("help", "Help asked"), ` ${help.agent}: `, h("q", {}, help.text)) : null,
  transfer ? h("p.transfer-inline", { "data-status": transfer.status },
    pill(transfer.status, TRANSFER_WORDS[transfer.status]),
    ` ${transfer.from_agent} → ${transferTarget(transfer)} `,
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

/** A transfer's mode, said when it is not the usual warm one. */
function modeTag(t) {
  return t.mode && t.mode !== "warm" ? h("span.transfer-mode", { "data-testid": "transfer-mode" }, TRANSFER_MODE_WORDS[t.mode] || t.mode) : null;
}

function renderTransfers() {
  const live = model.liveTransfers();
  render($("transfers-live"), live.length ? live.map((t) =>
    h("li.transfer", { "data-status": t.status, "data-testid": "transfer-live" },
      pill(t.status, TRANSFER_WORDS[t.status]),
      h("span.transfer-who", {}, `${t.from_agent} → ${transferTarget(t)}`),
      modeTag(t),
      h("span.transfer-time", {}, t.status === "ringing" ? "ringing " : "for ", timer(t.updated_at)),
      t.note ? h("span.transfer-note", {}, h("q", {}, t.note)) : null))
    : [h("li.empty", {}, "No transfers under way.")]);
  const done = model.recentResults().slice(0, 10);
  render($("transfers-done"), done.length ? done.map((t) =>
    h("li.transfer", { "data-status": t.status, "data-testid": "transfer-done" },
      pill(t.status, TRANSFER_WORDS[t.status]),
      h("span.transfer-who", {}, `${t.from_agent} → ${transferTarget(t)}`),
      modeTag(t),
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
loadDirectory();
setInterval(refreshWebhooks, 15_000);
setInterval(loadDirectory, 60_000); // another supervisor's changes
setInterval(() => controls.schedule(), 10_000); // "ago" texts
