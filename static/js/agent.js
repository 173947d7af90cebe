// The agent view: presence with breaks, softphone, the live call with its participants,
// warm transfer, callbacks (SPEC §9), wrap-up after a call, a ring that is noticed
// (sound, title, notification, keyboard shortcuts: SPEC §10), the queue, voicemails and
// the team. Everything is rendered from the Model (fed by /ws) and the softphone's
// state; actions go to the JSON API or the softphone.

import { api } from "./api.js";
import { $, View } from "./boot.js";
import { personRow, renderMembers, renderQueue } from "./cards.js";
import { renderRecentCalls } from "./calllog.js";
import { isTerminal } from "./model.js";
import { Ringer, notificationsSupported } from "./ring.js";
import {
  TRANSFER_WORDS,
  announce,
  byRoleThenJoin,
  countdown,
  h,
  now,
  phone,
  pill,
  reasonText,
  render,
  statusText,
  timer,
  transferTarget,
} from "./ui.js";
import { VoicemailsCard } from "./voicemails.js";

const view = new View(false, renderAll);
const { me, model, controls } = view;
const voicemails = new VoicemailsCard(view);
const seenTransferStates = new Map();
const seenCallbackStates = new Set();
let callbackChoice = ""; // the disposition picked for the callback, kept across re-renders
const ringer = new Ringer();
let currentCall = null; // {name, number, kind} of the call the agent is in now
let wrapCall = null; // the call the wrap-up panel is for (the last one ended), until dismissed
let directory = null; // the external numbers one may transfer to (GET /api/directory), once loaded
let helpFocus = null; // the help card's control to focus once it shows (after asking or canceling)

// Why a callback's last dial did not reach anyone (the callback's `result`).
const CALLBACK_RESULTS = {
  "no-answer": "No answer",
  busy: "Busy",
  machine: "Answering machine",
  failed: "Call failed",
  canceled: "Call canceled",
};

// --- actions ------------------------------------------------------------------------------

function myStatus() {
  return model.agents.get(me)?.status || "offline";
}

// The switch is on while calls may ring here; wrap-up and break are off (switching on
// ends them: Ready, or back from the break).
const ON_STATUSES = new Set(["available", "ringing", "busy"]);

function setStatus(next, reason) {
  if (next === "available") askNotifications();
  return controls.act("presence", async () => {
    const agent = await api.setStatus(next, reason);
    model.agents.set(agent.username, agent);
    if (next === "available") {
      wrapCall = null;
      announce("You are available for calls.");
    } else if (next === "break") announce(`You are on a break: ${reason}.`);
    else announce("You are offline.");
  }, "presence");
}

$("presence-toggle").addEventListener("click", () => {
  setStatus(ON_STATUSES.has(myStatus()) ? "offline" : "available");
});

$("break-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (myStatus() === "break") {
    setStatus("available");
    return;
  }
  const reason = $("break-reason").value;
  if (!reason) {
    controls.fail("presence", "Choose a reason for the break.");
    $("break-reason").focus();
    return;
  }
  setStatus("break", reason);
});

// --- notifications: asked for when the agent first goes available ---------------------

let notifyAsking = false;

function askNotifications() {
  if (!notificationsSupported() || Notification.permission !== "default" || notifyAsking) return;
  notifyAsking = true;
  renderNotifyHelp();
  Promise.resolve(Notification.requestPermission())
    .catch(() => "denied")
    .finally(() => {
      notifyAsking = false;
      renderNotifyHelp();
    });
}

function renderNotifyHelp() {
  const help = $("notify-help");
  let text = "";
  if (!notificationsSupported()) text = "";
  else if (notifyAsking) {
    text = "Allow notifications so a ringing call reaches you even when this tab is in the background.";
  } else if (Notification.permission === "denied") {
    text = "Notifications are blocked for this site, so a ringing call shows only in this tab (its ring and title).";
  }
  help.hidden = !text;
  if (help.textContent !== text) help.textContent = text;
  if (text && !notifyAsking) help.dataset.tone = "warn";
  else delete help.dataset.tone;
}

// --- transfers: warm, blind, back to the queue, external (SPEC §10) ---------------------

const MODE_HELP = {
  warm: "You stay with the customer until your colleague joins, then leave.",
  blind: "Your call ends as soon as your colleague is rung; the customer hears music until they answer.",
  queue: "Your call ends and the customer goes to the front of the line.",
  external: "A number from the directory (or one your center allows) is dialed into the call; you hand over, then leave.",
};

function transferMode() {
  return $("transfer-form").querySelector("input[name='mode']:checked")?.value || "warm";
}

async function loadDirectory() {
  try {
    directory = (await api.directory()).entries;
  } catch (error) {
    directory = directory || [];
    controls.fail("transfer", `The directory could not be loaded: ${error.message}`);
  }
  controls.schedule();
}

$("transfer-form").addEventListener("change", (event) => {
  if (event.target.name !== "mode") return;
  if (controls.error?.where === "transfer") controls.error = null;
  if (event.target.value === "external") loadDirectory();
  controls.schedule();
});

/** What a transfer's target is called in this view. */
function targetWords(transfer) {
  const target = transferTarget(transfer);
  return target === "any agent" ? "any available agent" : target;
}

$("transfer-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const call = model.myCall();
  if (!call) return;
  const mode = transferMode();
  const body = { conference: call.conference.name, mode, note: $("transfer-note").value.trim() };
  if (mode === "warm" || mode === "blind") body.to = $("transfer-to").value || null;
  if (mode === "external") {
    body.to_number = $("transfer-number").value || $("transfer-other-number").value.trim();
    body.leave_after_dial = $("transfer-leave").checked;
    if (!body.to_number) {
      controls.fail("transfer", "Choose a number from the directory, or type one.");
      $("transfer-number").focus();
      return;
    }
  }
  controls.act("transfer-start", async () => {
    const transfer = await api.transfer(body);
    model.transfers.set(transfer.id, { ...(model.transfers.get(transfer.id) || {}), ...transfer });
    $("transfer-note").value = "";
    $("transfer-other-number").value = "";
    announce(mode === "queue" ? "The customer goes back to the front of the line." : `Transfer to ${targetWords(transfer)} started.`);
  }, "transfer");
});

// --- asking a supervisor for help (SPEC §10) ---------------------------------------------

$("help-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const call = model.myCall();
  if (!call) return;
  const text = $("help-text").value.trim();
  if (!text) {
    controls.fail("help", "Say what you need help with.");
    $("help-text").focus();
    return;
  }
  controls.act("help-ask", async () => {
    model.putHelp(await api.askHelp(call.conference.name, text));
    $("help-text").value = "";
    helpFocus = "help-cancel";
    announce("Help requested: supervisors can see it.");
  }, "help");
});

$("help-cancel").addEventListener("click", () => {
  const call = model.myCall();
  const request = call && model.helpFor(call.conference.name);
  if (!request || request.status !== "open") return;
  controls.act("help-cancel", async () => {
    model.putHelp(await api.withdrawHelp(request.id));
    helpFocus = "help-text";
  }, "help");
});

// --- rendering ------------------------------------------------------------------------------

function renderAll() {
  trackCall();
  ringer.update(Boolean(view.softphone?.ringing().length));
  renderPresence();
  renderWrapUp();
  renderCall();
  announceCallback();
  renderHelp();
  renderParticipants();
  renderTransfer();
  renderQueue(model.queue);
  voicemails.render();
  renderTeam();
}

function renderPresence() {
  const agent = model.agents.get(me);
  const status = agent?.status || "offline";
  const pillEl = $("presence-pill");
  pillEl.dataset.status = status;
  pillEl.textContent = statusText(agent);
  const since = $("presence-since");
  since.dataset.since = String(agent?.since || now());
  const toggle = $("presence-toggle");
  toggle.setAttribute("aria-checked", String(ON_STATUSES.has(status)));
  const onCall = status === "ringing" || status === "busy";
  toggle.disabled = onCall || controls.busy === "presence" || !model.ready;
  renderBreakForm(status, onCall);
  renderNotifyHelp();
  const help = $("presence-help");
  if (status === "break") {
    help.textContent = `On a break${agent?.reason ? ` (${agent.reason})` : ""}: calls do not ring here. Switch on when you are back.`;
    delete help.dataset.tone;
  } else if (status === "wrap-up") {
    help.textContent = "Wrapping up the last call: calls do not ring here until you press Ready.";
    delete help.dataset.tone;
  } else if (status === "missed") {
    help.textContent = "You missed a call, so calls stopped ringing here. Switch on to take calls again.";
    help.dataset.tone = "warn";
  } else if (status === "busy" || status === "ringing") {
    help.textContent = "You will be available again when this call ends.";
    delete help.dataset.tone;
  } else if (status === "available") {
    help.textContent = "The next waiting customer rings here.";
    delete help.dataset.tone;
  } else {
    help.textContent = "Switch on to take calls. You will not be dialed while offline.";
    delete help.dataset.tone;
  }
  if (controls.error?.where === "presence") {
    help.textContent = controls.error.text;
    help.dataset.tone = "error";
  }
}

function renderBreakForm(status, onCall) {
  const select = $("break-reason");
  const reasons = view.breakReasons;
  const signature = reasons.join("|");
  if (select.dataset.signature !== signature) {
    const chosen = select.value;
    select.dataset.signature = signature;
    select.replaceChildren(h("option", { value: "" }, "Choose a reason…"), ...reasons.map((r) => h("option", { value: r }, r)));
    select.value = reasons.includes(chosen) ? chosen : "";
  }
  const onBreak = status === "break";
  select.hidden = onBreak;
  $("break-form").querySelector("label").hidden = onBreak;
  const button = $("break-start");
  button.textContent = onBreak ? "End break" : "Take a break";
  button.disabled = onCall || controls.busy === "presence" || !model.ready || (!onBreak && !reasons.length);
  select.disabled = onCall || !reasons.length;
}

// --- wrap-up (SPEC §10): a disposition and notes for the call just ended ---------------

/** Remember the call the agent is in; when it ends, it is the one to wrap up. */
function trackCall() {
  const call = model.myCall();
  if (call) {
    const { conference } = call;
    const number = conference.from || model.customerOf(conference)?.from || currentCall?.number || null;
    if (currentCall?.name !== conference.name) resetWrapForm();
    currentCall = { name: conference.name, number, kind: conference.kind || "call" };
    return;
  }
  if (!currentCall) return;
  const ended = currentCall;
  currentCall = null;
  // A callback closed with its disposition has one already.
  const closed = model.lastEndedCallback();
  if (closed && closed.conference === ended.name && closed.disposition) return;
  wrapCall = ended;
}

function resetWrapForm() {
  $("wrapup-form").reset();
  $("wrapup-status").textContent = "";
  $("wrapup-form").dataset.saved = "";
}

function renderWrapUp() {
  const card = $("wrapup-card");
  const agent = model.agents.get(me);
  const status = agent?.status || "offline";
  const inWrapUp = status === "wrap-up";
  const ringing = status === "ringing" || Boolean(view.softphone?.ringing().length);
  const show = !model.myCall() && !ringing && (inWrapUp || Boolean(wrapCall));
  card.hidden = !show;
  if (!show) return;

  const select = $("wrapup-disposition");
  const signature = view.dispositions.join("|");
  if (select.dataset.signature !== signature) {
    const chosen = select.value;
    select.dataset.signature = signature;
    select.replaceChildren(h("option", { value: "" }, "Choose…"), ...view.dispositions.map((d) => h("option", { value: d }, d)));
    select.value = view.dispositions.includes(chosen) ? chosen : "";
  }

  const what = wrapCall
    ? `${wrapCall.kind === "callback" ? "Callback to" : "Call with"} ${phone(wrapCall.number)}`
    : "The call you just ended";
  const line = $("wrapup-call");
  if (line.textContent !== what) line.textContent = what;
  $("wrapup-form").hidden = !wrapCall;

  const left = $("wrapup-left");
  const timed = inWrapUp && view.wrapUpSeconds > 0 && agent?.since;
  left.hidden = !timed;
  if (timed) {
    const until = String(agent.since + view.wrapUpSeconds * 1000);
    const holder = $("wrapup-timer");
    if (holder.firstChild?.dataset?.until !== until) holder.replaceChildren(countdown(Number(until), { "data-testid": "wrapup-left" }));
  }

  const busy = controls.busy === "wrapup-save" || controls.busy === "presence";
  $("wrapup-save").disabled = busy || !wrapCall;
  const ready = $("wrapup-ready");
  ready.hidden = !inWrapUp;
  ready.disabled = busy;
  $("wrapup-dismiss").hidden = inWrapUp;
  const error = $("wrapup-error");
  const text = controls.error?.where === "wrapup" ? controls.error.text : "";
  error.hidden = !text;
  if (error.textContent !== text) error.textContent = text;
}

/** Save the disposition and notes; resolves true when saved. */
async function saveWrapUp() {
  const disposition = $("wrapup-disposition").value;
  const notes = $("wrapup-notes").value.trim();
  const given = await api.wrapUp(wrapCall.name, disposition, notes);
  $("wrapup-form").dataset.saved = `${disposition}\n${notes}`;
  const words = `Saved: ${given.disposition}.`;
  $("wrapup-status").textContent = words;
  announce(words);
}

$("wrapup-disposition").addEventListener("change", () => {
  if (controls.error?.where === "wrapup") controls.error = null;
  controls.schedule();
});

$("wrapup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!wrapCall) return;
  if (!$("wrapup-disposition").value) {
    controls.fail("wrapup", "Choose a disposition before saving.");
    $("wrapup-disposition").focus();
    return;
  }
  controls.act("wrapup-save", async () => {
    await saveWrapUp();
    // Without a wrap-up period the agent is available already: the panel has done its job.
    if (myStatus() !== "wrap-up") {
      wrapCall = null;
      resetWrapForm();
    }
  }, "wrapup");
});

$("wrapup-ready").addEventListener("click", () => {
  const disposition = $("wrapup-disposition").value;
  const notes = $("wrapup-notes").value.trim();
  const unsaved = wrapCall && disposition && $("wrapup-form").dataset.saved !== `${disposition}\n${notes}`;
  askNotifications();
  controls.act("presence", async () => {
    if (unsaved) await saveWrapUp();
    const agent = await api.setStatus("available");
    model.agents.set(agent.username, agent);
    wrapCall = null;
    resetWrapForm();
    announce("You are available for calls.");
  }, "wrapup");
});

$("wrapup-dismiss").addEventListener("click", () => {
  wrapCall = null;
  resetWrapForm();
  controls.schedule();
  $("presence-toggle").focus();
});

function renderCall() {
  const { softphone } = view;
  const card = $("call-card");
  const body = $("call-body");
  const badge = $("call-badge");
  const ringing = softphone ? softphone.ringing() : [];
  const call = model.myCall();
  const open = softphone ? [...softphone.calls.values()].find((c) => c.status === "open") : null;
  // The app says this agent is being rung: show what rings before the softphone does.
  const rungByApp = myStatus() === "ringing" && !open && Boolean(model.ringingFor());

  if ((ringing.length || rungByApp) && !call) {
    const ring = ringing[0] || null; // null until the softphone rings: Answer waits for it
    const context = model.ringingFor();
    const conference = context?.conference;
    const transfer = context?.transfer;
    const caller = conference?.from || (conference && model.customerOf(conference)?.from) || null;
    // A callback's conference: the agent rings first, then the app dials the number.
    const callback = !transfer && conference?.kind === "callback";
    const waitingSince = conference?.created_at || ring?.startedAt || now();
    const note = transfer?.note || ring?.params?.note || "";
    card.dataset.state = "ringing";
    badge.hidden = false;
    badge.dataset.status = "ringing";
    badge.textContent = "Ringing";
    render(body,
      h("div.incoming", {
        "data-testid": "incoming",
        "data-kind": callback ? "callback" : undefined,
        "data-phone": ring ? "ringing" : "waiting",
      },
        h("p.eyebrow", {}, transfer ? `Transfer from ${transfer.from_agent}` : callback ? "Callback" : "Incoming customer call"),
        h("p.caller", { "data-testid": "caller" }, callback ? h("span.caller-lead", {}, "Callback to ") : null, phone(caller)),
        h("p.meta", {}, transfer ? "On the line " : "Waiting ", timer(waitingSince, { "data-testid": "wait" })),
        note ? h("figure.note", {},
          h("figcaption", {}, `Note from ${transfer?.from_agent || "your colleague"}`),
          h("blockquote", { "data-testid": "note" }, note)) : null,
        ring ? null : h("p.hint", { "data-testid": "ring-coming" }, "Your phone is about to ring…"),
        h("div.actions",
          {},
          controls.button("answer", "Answer", {
            "aria-keyshortcuts": "A",
            disabled: !ring || undefined,
            onclick: () => controls.act("answer", () => softphone.answer(ring.sid)),
          }, ".button-answer"),
          controls.button("decline", "Decline", {
            "aria-keyshortcuts": "D",
            disabled: !ring || undefined,
            onclick: () => controls.act("decline", () => softphone.decline(ring.sid)),
          }, ".button-danger-quiet"),
        ),
        controls.errorLine("call"),
      ));
    return;
  }

  if (call) {
    const { conference, me: mine } = call;
    const customer = model.customerOf(conference);
    const leg = softphone?.calls.get(mine.call_sid);
    if (conference.kind === "callback" && !customer) {
      renderCallbackDialing(body, conference, mine, leg);
      return;
    }
    const muted = Boolean(leg?.muted);
    card.dataset.state = "live";
    badge.hidden = false;
    badge.dataset.status = "busy";
    badge.textContent = "On call";
    const held = Boolean(customer?.hold);
    // Pause and resume show only while Twilio records the call (SPEC §8).
    const recording = conference.recording;
    const recordingPaused = recording?.status === "paused";
    const recordingLive = recordingPaused || recording?.status === "in-progress";
    render(body,
      h("div.live-call", { "data-testid": "live-call" },
        h("p.eyebrow", {}, conference.kind === "callback" ? "Callback · customer" : "Customer"),
        h("p.caller", { "data-testid": "caller" }, phone(conference.from || customer?.from)),
        h("p.meta", {}, "Talking ", timer(mine.joined_at || conference.started_at)),
        held ? h("p.callout", { role: "status" }, "The customer is on hold and hears music.") : null,
        h("div.actions", {},
          controls.button("mute", muted ? "Unmute" : "Mute", {
            "aria-keyshortcuts": "M",
            "aria-pressed": String(muted),
            disabled: !leg || undefined,
            onclick: () => controls.act("mute", () => softphone.mute(mine.call_sid, !muted)),
          }),
          customer ? controls.button("hold", held ? "Resume customer" : "Hold customer", {
            "aria-keyshortcuts": "H",
            "aria-pressed": String(held),
            onclick: () => controls.act("hold", () => api.hold(conference.name, customer.call_sid, !held)),
          }) : null,
          recordingLive ? controls.button("recording", recordingPaused ? "Resume recording" : "Pause recording", {
            "aria-pressed": String(recordingPaused),
            onclick: () => controls.act("recording", () => api.recording(conference.name, !recordingPaused)),
          }) : null,
          controls.button("hangup", "Hang up", {
            "aria-keyshortcuts": "X",
            onclick: () => controls.act("hangup", () => (leg ? softphone.hangup(mine.call_sid) : api.leave(conference.name))),
          }, ".button-danger"),
        ),
        controls.errorLine("call"),
      ));
    return;
  }

  if (open) {
    card.dataset.state = "connecting";
    badge.hidden = false;
    badge.dataset.status = "ringing";
    badge.textContent = "Connecting";
    render(body,
      h("div.connecting", {},
        h("p.caller", {}, "Joining the customer…"),
        h("div.actions", {}, controls.button("hangup", "Hang up", { onclick: () => controls.act("hangup", () => softphone.hangup(open.sid)) }, ".button-danger")),
        controls.errorLine("call"),
      ));
    return;
  }

  card.dataset.state = "idle";
  badge.hidden = true;
  const status = myStatus();
  const words = {
    available: ["Waiting for the next customer", "Calls ring here as soon as a customer is routed to you."],
    offline: ["You are offline", "Switch on “Available for calls” to start taking calls."],
    missed: ["You missed a call", "Switch on “Available for calls” when you are ready again."],
    busy: ["Wrapping up", "You will be available again in a moment."],
    "wrap-up": ["Wrapping up", "Give the call its disposition, then press Ready for the next one."],
    break: ["You are on a break", "Switch on “Available for calls” when you are back."],
    ringing: ["Your phone is ringing", "Connecting the call to this browser…"],
  }[status] || ["", ""];
  const ended = model.lastEndedCallback();
  render(body, h("div.idle", {},
    h("p.idle-title", {}, words[0]),
    h("p.hint", {}, words[1]),
    ended ? h("p.callout", { role: "status", "data-testid": "callback-ended" }, callbackEndedText(ended)) : null,
    controls.errorLine("call")));
}

/** How many dials a callback gets, or null until known. */
function callbackAttempts() {
  return view.callbackAttempts; // CALLBACK_ATTEMPTS (GET /api/me), null until known
}

function attemptText(callback) {
  const n = callbackAttempts();
  return n ? `attempt ${callback.attempts} of ${n}` : `attempt ${callback.attempts}`;
}

function callbackEndedText(callback) {
  const number = phone(callback.number);
  if (callback.status === "failed") {
    const why = CALLBACK_RESULTS[callback.result] || "not reached";
    return `Callback to ${number} failed: ${why.toLowerCase()} after ${callback.attempts} attempts.`;
  }
  return callback.disposition
    ? `Callback to ${number} closed: ${callback.disposition}.`
    : `Callback to ${number} ended.`;
}

/** The agent waits alone in a callback's conference: the number rings, or the last
 * dial failed and the agent decides (Try again, or Close with a disposition). */
function renderCallbackDialing(body, conference, mine, leg) {
  const { softphone } = view;
  const callback = model.callbackOf(conference);
  const card = $("call-card");
  const badge = $("call-badge");
  const number = phone(callback?.number || conference.from);
  const status = callback?.status || "waiting";
  const failed = status === "waiting" && callback?.attempts > 0 && callback?.result;
  const left = callbackAttempts();
  const canRetry = failed && (left === null || callback.attempts < left);
  card.dataset.state = "live";
  badge.hidden = false;
  badge.dataset.status = failed ? "missed" : "ringing";
  badge.textContent = failed ? "Not reached" : "Calling";
  let line;
  if (status === "dialing") line = [`Calling ${number}…`, ` (${attemptText(callback)})`];
  else if (failed) line = [`${CALLBACK_RESULTS[callback.result] || "Not reached"}`, ` · ${attemptText(callback)}`];
  else line = [`About to call ${number}…`];
  render(body,
    h("div.callback-call", { "data-testid": "callback-call", "data-status": status, "data-result": callback?.result || undefined },
      h("p.eyebrow", {}, "Callback"),
      h("p.caller", { "data-testid": "caller" }, h("span.caller-lead", {}, "Callback to "), number),
      h("p.callback-state", { role: "status", "data-testid": "callback-state" }, ...line),
      failed && !canRetry ? h("p.hint", {}, "No dial attempts are left: close the callback with a disposition.") : null,
      h("div.actions", {},
        canRetry ? controls.button("callback-retry", "Try again", {
          "aria-label": `Try again: call ${number}`,
          onclick: () => controls.act("callback-retry", async () => {
            model.putCallback(await api.retryCallback(callback.id));
            announce(`Calling ${number} again.`);
          }),
        }, ".button-primary") : null,
        controls.button("mute", leg?.muted ? "Unmute" : "Mute", {
          "aria-pressed": String(Boolean(leg?.muted)),
          disabled: !leg || undefined,
          onclick: () => controls.act("mute", () => softphone.mute(mine.call_sid, !leg.muted)),
        })),
      callback ? callbackCloseForm(callback, number) : null,
      controls.errorLine("call"),
    ));
}

function callbackCloseForm(callback, number) {
  const { dispositions } = view;
  const select = h("select", {
    id: "callback-disposition",
    name: "disposition",
    "data-key": "callback-disposition",
    onchange: (event) => {
      callbackChoice = event.target.value;
    },
  },
  h("option", { value: "" }, "Choose…"),
  dispositions.map((d) => h("option", { value: d, selected: d === callbackChoice || undefined }, d)));
  return h("form.callback-close", {
    "aria-label": `Close the callback to ${number}`,
    onsubmit: (event) => {
      event.preventDefault();
      const disposition = select.value;
      if (!disposition) {
        controls.fail("call", "Choose a disposition before closing the callback.");
        select.focus();
        return;
      }
      controls.act("callback-close", async () => {
        model.putCallback(await api.closeCallback(callback.id, disposition));
        callbackChoice = "";
        announce(`Callback to ${number} closed: ${disposition}.`);
      });
    },
  },
  h("label", { for: "callback-disposition" }, "Disposition"),
  h("div.callback-close-row", {},
    select,
    controls.button("callback-close", "Close", { type: "submit" })));
}

/** Tell screen readers how the callback being served moves along (once per state). */
function announceCallback() {
  const callback = model.myCallback();
  if (!callback || !model.myCall()) return;
  const key = `${callback.id}:${callback.status}:${callback.attempts}:${callback.result}`;
  if (seenCallbackStates.has(key)) return;
  seenCallbackStates.add(key);
  const number = phone(callback.number);
  if (callback.status === "dialing") announce(`Calling ${number}, ${attemptText(callback)}.`);
  else if (callback.status === "connected") announce(`${number} answered. You are connected.`);
  else if (callback.status === "failed") announce(callbackEndedText(callback), true);
  else if (callback.status === "waiting" && callback.result) {
    const why = CALLBACK_RESULTS[callback.result] || "Not reached";
    announce(`${why} at ${number}, ${attemptText(callback)}. Try again or close the callback.`, true);
  }
}

/** The help card while on a call: ask, the request's state (never the supervisor's
 * mode), Cancel while it is open. */
function renderHelp() {
  const call = model.myCall();
  const card = $("help-card");
  card.hidden = !call;
  if (!call) return;
  const request = model.helpFor(call.conference.name);
  const open = request?.status === "open";
  const words = {
    open: `You asked for help: “${request?.text}”. Waiting for a supervisor…`,
    taken: "A supervisor is on it.",
    canceled: "You canceled your request for help.",
  }[request?.status] || "";
  const state = $("help-state");
  state.hidden = !words;
  state.dataset.status = request?.status || "none";
  if (state.textContent !== words) state.textContent = words;
  $("help-actions").hidden = !open;
  $("help-cancel").disabled = controls.busy === "help-cancel";
  $("help-form").hidden = open;
  $("help-ask").disabled = controls.busy === "help-ask";
  const error = $("help-error");
  const text = controls.error?.where === "help" ? controls.error.text : "";
  error.hidden = !text;
  if (error.textContent !== text) error.textContent = text;
  if (helpFocus && !$(helpFocus).closest("[hidden]")) {
    $(helpFocus).focus();
    helpFocus = null;
  }
}

function renderParticipants() {
  const call = model.myCall();
  const card = $("participants-card");
  card.hidden = !call;
  if (!call) return;
  const people = [...call.conference.participants.values()]
    // A supervisor listening in silently is not shown; coaching or barging is.
    .filter((p) => p.role !== "supervisor" || p.coaching || !p.muted)
    .sort(byRoleThenJoin);
  render($("participants"), people.map((p) => personRow(p, me, "Coaching you")));
}

const STEPS = ["requested", "ringing", "answered", "joined"];

function renderTransfer() {
  const call = model.myCall();
  const card = $("transfer-card");
  // A callback's number not answered yet: there is nobody to hand over.
  const nobody = call?.conference.kind === "callback" && !model.customerOf(call.conference);
  card.hidden = !call || nobody;
  if (!call || nobody) return;
  const { conference } = call;
  const transfer = model.transferFrom(conference.name);
  // Whoever could take the customer over: a colleague, or an external party dialed in.
  const colleagues = [...conference.participants.values()]
    .filter((p) => (p.role === "agent" && p.agent !== me) || p.role === "external");
  const active = transfer && !isTerminal(transfer) ? transfer : null;
  const progress = $("transfer-progress");
  const form = $("transfer-form");

  if (transfer) {
    const key = `${transfer.id}:${transfer.status}`;
    if (!seenTransferStates.has(key)) {
      seenTransferStates.set(key, true);
      const who = targetWords(transfer);
      if (transfer.status === "failed") announce(`Transfer to ${who} failed: ${reasonText(transfer.reason)}.`, true);
      else if (transfer.status === "joined") announce(`${who} joined the call. You can leave now.`);
      else if (transfer.status === "ringing") announce(`Ringing ${who}.`);
    }
  }

  const parts = [];
  if (active) {
    const who = targetWords(active);
    const current = STEPS.indexOf(active.status);
    // A transfer to any agent with none free waits (requested, nobody named yet).
    const waiting = active.status === "requested" && !active.to_agent && (active.mode || "warm") !== "external"
      && active.mode !== "queue";
    let line = ` Transferring to ${who}`;
    if (active.status === "joined") line = ` ${who} is on the call`;
    else if (active.mode === "queue") line = " Sending the customer back to the front of the line";
    parts.push(h("div.transfer-status", { "data-testid": "transfer-status", "data-status": active.status, "data-mode": active.mode || "warm" },
      waiting
        ? h("p.transfer-line", { "data-testid": "transfer-waiting" },
          pill("requested", "Waiting"),
          h("span", {}, " Waiting for a free agent…"),
          h("span.ring-timer", {}, " · ", timer(active.created_at, { "data-testid": "ring-timer" })))
        : h("p.transfer-line", {},
          pill(active.status, TRANSFER_WORDS[active.status] || active.status),
          h("span", {}, line),
          active.status === "ringing" || active.status === "requested"
            ? h("span.ring-timer", {}, " · ringing ", timer(active.updated_at, { "data-testid": "ring-timer" }))
            : null),
      h("ol.steps", { "aria-label": "Transfer progress" }, STEPS.map((step, i) =>
        h("li.step", {
          "data-state": i < current || active.status === "joined" ? "done" : i === current ? "current" : "todo",
          "aria-current": i === current ? "step" : undefined,
        }, TRANSFER_WORDS[step]))),
      active.note ? h("p.hint", {}, "Note: ", h("q", {}, active.note)) : null,
    ));
    if (active.status === "requested" || active.status === "ringing") {
      parts.push(h("div.actions", {}, controls.button("cancel-transfer", "Cancel transfer", {
        onclick: () => controls.act("cancel-transfer", async () => {
          const t = await api.cancelTransfer(active.id);
          model.transfers.set(t.id, t);
          announce("Transfer canceled.");
        }, "transfer"),
      })));
    }
  } else if (transfer && transfer.status === "failed") {
    parts.push(h("p.alert", { role: "alert", "data-testid": "transfer-failed" },
      h("strong", {}, `Transfer to ${targetWords(transfer)} failed: `),
      reasonText(transfer.reason), ". The customer is still with you; you can try again."));
  } else if (transfer && transfer.status === "canceled") {
    parts.push(h("p.callout", {}, "Transfer canceled. The customer is still with you."));
  }

  if (colleagues.length) {
    const names = colleagues.map((p) => (p.role === "external" ? phone(p.from) : p.agent)).join(", ");
    parts.push(h("div.handover", {},
      h("p", {}, `${names} ${colleagues.length > 1 ? "are" : "is"} with the customer. Leave when you have handed over; the customer stays connected.`),
      h("div.actions", {}, controls.button("leave", "Leave call", {
        onclick: () => controls.act("leave", () => api.leave(conference.name), "transfer"),
      }, ".button-primary"))));
  }
  if (controls.error?.where === "transfer") parts.push(controls.errorLine("transfer"));
  render(progress, ...parts);

  form.hidden = Boolean(active) || colleagues.length > 0;
  renderTransferForm();
}

/** The form's fields for the chosen mode: a colleague (warm, blind), a directory number
 * and "leave after dialing" (external), nothing more for the queue. */
function renderTransferForm() {
  const mode = transferMode();
  const help = $("transfer-mode-help");
  if (help.textContent !== MODE_HELP[mode]) help.textContent = MODE_HELP[mode];
  $("transfer-to-field").hidden = mode !== "warm" && mode !== "blind";
  $("transfer-number-field").hidden = mode !== "external";
  $("transfer-leave-field").hidden = mode !== "external";
  const noteHelp = mode === "warm" || mode === "blind" ? "Shown on your colleague's phone while it rings." : "Kept with the transfer.";
  if ($("transfer-note-help").textContent !== noteHelp) $("transfer-note-help").textContent = noteHelp;
  updateTargets();
  updateNumbers();
  $("transfer-start").disabled = controls.busy === "transfer-start";
}

function updateNumbers() {
  const select = $("transfer-number");
  const chosen = select.value;
  let options;
  if (directory === null) options = [h("option", { value: "" }, "Loading the directory…")];
  else if (!directory.length) options = [h("option", { value: "" }, "No numbers in the directory")];
  else {
    options = [h("option", { value: "" }, "Choose a number…"),
      ...directory.map((e) => h("option", { value: e.number }, `${e.name} — ${phone(e.number)}`))];
  }
  const signature = options.map((o) => `${o.value}|${o.textContent}`).join(";");
  if (select.dataset.signature === signature) return;
  select.dataset.signature = signature;
  select.replaceChildren(...options);
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
}

function updateTargets() {
  const select = $("transfer-to");
  const chosen = select.value;
  const options = [h("option", { value: "" }, "Any available agent")];
  const colleagues = [...model.agents.values()].filter((a) => a.username !== me)
    .sort((a, b) => (a.status === "available" ? 0 : 1) - (b.status === "available" ? 0 : 1) || a.username.localeCompare(b.username));
  for (const agent of colleagues) {
    const free = agent.status === "available";
    options.push(h("option", { value: agent.username, disabled: !free || undefined },
      free ? agent.username : `${agent.username} — ${statusText(agent)}`));
  }
  const signature = options.map((o) => `${o.value}|${o.textContent}|${o.disabled}`).join(";");
  if (select.dataset.signature === signature) return;
  select.dataset.signature = signature;
  select.replaceChildren(...options);
  const still = [...select.options].find((o) => o.value === chosen && !o.disabled);
  select.value = still ? chosen : "";
}

function renderTeam() {
  const colleagues = [...model.agents.values()].filter((a) => a.username !== me);
  renderMembers(colleagues, "No colleagues yet.");
}

// --- recent calls (from the history, which the writer fills moments after a call ends) ---

let recentSoon = null;
function refreshRecent(delay = 0) {
  clearTimeout(recentSoon);
  recentSoon = setTimeout(() => renderRecentCalls($("recent-calls"), $("recent-card").dataset.timezone), delay);
}

// --- start ------------------------------------------------------------------------------------

let ringUnknown = null; // a ring the model could not place yet: announced once it can

function announceRing(context) {
  const from = context?.conference?.from;
  let words = `Incoming call${from ? ` from ${phone(from)}` : ""}. Press Answer.`;
  let title = `Incoming call${from ? ` from ${phone(from)}` : ""}`;
  if (context?.transfer) {
    words = `Incoming transfer from ${context.transfer.from_agent}. Press Answer.`;
    title = `Transfer from ${context.transfer.from_agent}`;
  } else if (context?.conference?.kind === "callback") {
    words = `Callback to ${phone(from)}. Press Answer to place it.`;
    title = `Callback to ${phone(from)}`;
  }
  announce(words, true);
  ringer.update(Boolean(view.softphone?.ringing().length));
  ringer.notify(title);
}

// --- keyboard shortcuts (listed in the dialog that "?" opens) --------------------------

// key -> the data-key of the button it presses (the same handler as a click).
const SHORTCUTS = { a: "answer", d: "decline", m: "mute", h: "hold", x: "hangup" };

function typing(target) {
  return target instanceof HTMLElement
    && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function openShortcuts() {
  const dialog = $("shortcuts-dialog");
  if (!dialog.open) dialog.showModal();
}

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (typing(event.target) || $("shortcuts-dialog").open) return;
  if (event.key === "?") {
    event.preventDefault();
    openShortcuts();
    return;
  }
  if (event.shiftKey) return;
  const key = event.key.toLowerCase();
  let button = null;
  if (key === "v") button = $("presence-toggle");
  else if (SHORTCUTS[key]) button = $("call-body").querySelector(`button[data-key="${SHORTCUTS[key]}"]`);
  if (!button || button.disabled) return;
  event.preventDefault();
  button.click();
});

$("shortcuts-open").addEventListener("click", openShortcuts);
$("shortcuts-close").addEventListener("click", () => $("shortcuts-dialog").close());

refreshRecent();
setInterval(() => refreshRecent(), 60_000);
view.start({
  onChange(kind) {
    if (kind === "conference.ended" || kind === "participant.left") refreshRecent(3000);
    if (ringUnknown && model.ringingFor()) {
      clearTimeout(ringUnknown);
      ringUnknown = null;
      announceRing(model.ringingFor());
    }
  },
  onIncoming() {
    const context = model.ringingFor();
    if (context) {
      announceRing(context);
      return;
    }
    // Ringing for a call the board does not show yet: start over from a snapshot, and
    // say what rings once it is known (or, failing that, that something rings).
    view.socket.resnapshot();
    clearTimeout(ringUnknown);
    ringUnknown = setTimeout(() => {
      ringUnknown = null;
      announceRing(null);
    }, 1500);
  },
});
