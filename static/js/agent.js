// The agent view: presence, softphone, the live call with its participants, warm
// transfer, the queue, voicemails and the team. Everything is rendered from the Model (fed by
// /ws) and the softphone's state; actions go to the JSON API or the softphone.

import { api } from "./api.js";
import { $, View } from "./boot.js";
import { personRow, renderMembers, renderQueue } from "./cards.js";
import { renderRecentCalls } from "./calllog.js";
import { isTerminal } from "./model.js";
import {
  STATUS_WORDS,
  TRANSFER_WORDS,
  announce,
  byRoleThenJoin,
  h,
  now,
  phone,
  pill,
  reasonText,
  render,
  timer,
} from "./ui.js";
import { VoicemailsCard } from "./voicemails.js";

const view = new View(false, renderAll);
const { me, model, controls } = view;
const voicemails = new VoicemailsCard(view);
const seenTransferStates = new Map();

// --- actions ------------------------------------------------------------------------------

function myStatus() {
  return model.agents.get(me)?.status || "offline";
}

$("presence-toggle").addEventListener("click", () => {
  const status = myStatus();
  const next = status === "available" ? "offline" : "available";
  controls.act("presence", async () => {
    const agent = await api.setStatus(next);
    model.agents.set(agent.username, agent);
    announce(next === "available" ? "You are available for calls." : "You are offline.");
  }, "presence");
});

$("transfer-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const call = model.myCall();
  if (!call) return;
  const to = $("transfer-to").value || null;
  const note = $("transfer-note").value.trim();
  controls.act("transfer-start", async () => {
    const transfer = await api.transfer(call.conference.name, to, note);
    model.transfers.set(transfer.id, { ...(model.transfers.get(transfer.id) || {}), ...transfer });
    $("transfer-note").value = "";
    announce(`Transfer to ${transfer.to_agent || "any available agent"} started.`);
  }, "transfer");
});

// --- rendering ------------------------------------------------------------------------------

function renderAll() {
  renderPresence();
  renderCall();
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
  pillEl.textContent = STATUS_WORDS[status] || status;
  const since = $("presence-since");
  since.dataset.since = String(agent?.since || now());
  const toggle = $("presence-toggle");
  const on = status !== "offline" && status !== "missed";
  toggle.setAttribute("aria-checked", String(on));
  toggle.disabled = status === "ringing" || status === "busy" || controls.busy === "presence" || !model.ready;
  const help = $("presence-help");
  if (status === "missed") {
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

function renderCall() {
  const { softphone } = view;
  const card = $("call-card");
  const body = $("call-body");
  const badge = $("call-badge");
  const ringing = softphone ? softphone.ringing() : [];
  const call = model.myCall();

  if (ringing.length && !call) {
    const ring = ringing[0];
    const context = model.ringingFor();
    const conference = context?.conference;
    const transfer = context?.transfer;
    const caller = conference?.from || (conference && model.customerOf(conference)?.from) || null;
    const waitingSince = conference?.created_at || ring.startedAt;
    const note = transfer?.note || ring.params?.note || "";
    card.dataset.state = "ringing";
    badge.hidden = false;
    badge.dataset.status = "ringing";
    badge.textContent = "Ringing";
    render(body,
      h("div.incoming", { "data-testid": "incoming" },
        h("p.eyebrow", {}, transfer ? `Transfer from ${transfer.from_agent}` : "Incoming customer call"),
        h("p.caller", { "data-testid": "caller" }, phone(caller)),
        h("p.meta", {}, transfer ? "On the line " : "Waiting ", timer(waitingSince, { "data-testid": "wait" })),
        note ? h("figure.note", {},
          h("figcaption", {}, `Note from ${transfer?.from_agent || "your colleague"}`),
          h("blockquote", { "data-testid": "note" }, note)) : null,
        h("div.actions",
          {},
          controls.button("answer", "Answer", { onclick: () => controls.act("answer", () => softphone.answer(ring.sid)) }, ".button-answer"),
          controls.button("decline", "Decline", { onclick: () => controls.act("decline", () => softphone.decline(ring.sid)) }, ".button-danger-quiet"),
        ),
        controls.errorLine("call"),
      ));
    return;
  }

  if (call) {
    const { conference, me: mine } = call;
    const customer = model.customerOf(conference);
    const leg = softphone?.calls.get(mine.call_sid);
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
        h("p.eyebrow", {}, "Customer"),
        h("p.caller", { "data-testid": "caller" }, phone(conference.from || customer?.from)),
        h("p.meta", {}, "Talking ", timer(mine.joined_at || conference.started_at)),
        held ? h("p.callout", { role: "status" }, "The customer is on hold and hears music.") : null,
        h("div.actions", {},
          controls.button("mute", muted ? "Unmute" : "Mute", {
            "aria-pressed": String(muted),
            disabled: !leg || undefined,
            onclick: () => controls.act("mute", () => softphone.mute(mine.call_sid, !muted)),
          }),
          customer ? controls.button("hold", held ? "Resume customer" : "Hold customer", {
            "aria-pressed": String(held),
            onclick: () => controls.act("hold", () => api.hold(conference.name, customer.call_sid, !held)),
          }) : null,
          recordingLive ? controls.button("recording", recordingPaused ? "Resume recording" : "Pause recording", {
            "aria-pressed": String(recordingPaused),
            onclick: () => controls.act("recording", () => api.recording(conference.name, !recordingPaused)),
          }) : null,
          controls.button("hangup", "Hang up", {
            onclick: () => controls.act("hangup", () => (leg ? softphone.hangup(mine.call_sid) : api.leave(conference.name))),
          }, ".button-danger"),
        ),
        controls.errorLine("call"),
      ));
    return;
  }

  const open = softphone ? [...softphone.calls.values()].find((c) => c.status === "open") : null;
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
    ringing: ["Your phone is ringing", "Connecting the call to this browser…"],
  }[status] || ["", ""];
  render(body, h("div.idle", {}, h("p.idle-title", {}, words[0]), h("p.hint", {}, words[1]), controls.errorLine("call")));
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
  card.hidden = !call;
  if (!call) return;
  const { conference } = call;
  const transfer = model.transferFrom(conference.name);
  const colleagues = [...conference.participants.values()].filter((p) => p.role === "agent" && p.agent !== me);
  const active = transfer && !isTerminal(transfer) ? transfer : null;
  const progress = $("transfer-progress");
  const form = $("transfer-form");

  if (transfer) {
    const key = `${transfer.id}:${transfer.status}`;
    if (!seenTransferStates.has(key)) {
      seenTransferStates.set(key, true);
      const who = transfer.to_agent || "any available agent";
      if (transfer.status === "failed") announce(`Transfer to ${who} failed: ${reasonText(transfer.reason)}.`, true);
      else if (transfer.status === "joined") announce(`${who} joined the call. You can leave now.`);
      else if (transfer.status === "ringing") announce(`Ringing ${who}.`);
    }
  }

  const parts = [];
  if (active) {
    const who = active.to_agent || "any available agent";
    const current = STEPS.indexOf(active.status);
    parts.push(h("div.transfer-status", { "data-testid": "transfer-status", "data-status": active.status },
      h("p.transfer-line", {},
        pill(active.status, TRANSFER_WORDS[active.status] || active.status),
        h("span", {}, active.status === "joined" ? ` ${who} is on the call` : ` Transferring to ${who}`),
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
      h("strong", {}, `Transfer to ${transfer.to_agent || "any available agent"} failed: `),
      reasonText(transfer.reason), ". The customer is still with you; you can try again."));
  } else if (transfer && transfer.status === "canceled") {
    parts.push(h("p.callout", {}, "Transfer canceled. The customer is still with you."));
  }

  if (colleagues.length) {
    const names = colleagues.map((p) => p.agent).join(", ");
    parts.push(h("div.handover", {},
      h("p", {}, `${names} ${colleagues.length > 1 ? "are" : "is"} with the customer. Leave when you have handed over; the customer stays connected.`),
      h("div.actions", {}, controls.button("leave", "Leave call", {
        onclick: () => controls.act("leave", () => api.leave(conference.name), "transfer"),
      }, ".button-primary"))));
  }
  if (controls.error?.where === "transfer") parts.push(controls.errorLine("transfer"));
  render(progress, ...parts);

  form.hidden = Boolean(active) || colleagues.length > 0;
  updateTargets();
  $("transfer-start").disabled = controls.busy === "transfer-start";
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
      free ? agent.username : `${agent.username} — ${STATUS_WORDS[agent.status] || agent.status}`));
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

refreshRecent();
setInterval(() => refreshRecent(), 60_000);
view.start({
  onChange(kind) {
    if (kind === "conference.ended" || kind === "participant.left") refreshRecent(3000);
  },
  onIncoming() {
    const context = model.ringingFor();
    const from = context?.conference?.from;
    announce(
      context?.transfer
        ? `Incoming transfer from ${context.transfer.from_agent}. Press Answer.`
        : `Incoming call${from ? ` from ${phone(from)}` : ""}. Press Answer.`,
      true,
    );
    // Ringing for a call the board does not show yet: start over from a snapshot.
    if (!context) view.socket.resnapshot();
  },
});
