// The pieces both views draw the same way: the waiting line and the agents with their
// presence (templates/_queue_card.html, _members_card.html), and one participant of a call.

import { $ } from "./boot.js";
import { h, phone, pill, render, statusText, timer } from "./ui.js";

const ROLE_WORDS = { customer: "Customer", agent: "Agent", external: "External", supervisor: "Supervisor" };

/** The queue card: who waits, in line order, the longest wait marked; a callback
 * (kind "callback", SPEC §9) is marked as such: its number is dialed, not waiting. */
export function renderQueue(queue) {
  $("queue-count").textContent = String(queue.length);
  $("queue-count").setAttribute("aria-label", `${queue.length} customers waiting`);
  if (!queue.length) {
    render($("queue"), h("li.empty", {}, "Nobody is waiting."));
    return;
  }
  const oldest = Math.min(...queue.map((q) => q.queued_at));
  render($("queue"), queue.map((q) =>
    h("li.queue-item", {
      "data-longest": q.queued_at === oldest ? "true" : undefined,
      "data-kind": q.kind || "call",
      "data-testid": "queue-item",
    },
      h("span.queue-pos", { "aria-label": `position ${q.position}` }, String(q.position)),
      h("span.queue-from", {}, phone(q.from),
        q.kind === "callback" ? [" ", pill("callback", "Callback", { "data-testid": "queue-kind" })] : null),
      q.queued_at === oldest ? h("span.visually-hidden", {}, "longest wait") : null,
      h("span.queue-wait", {}, timer(q.queued_at)))));
}

/** The members card (templates/_members_card.html): agents by name with their status
 * (a break with its reason: "On break · Lunch"; wrap-up) and for how long, and "n of m
 * available". */
export function renderMembers(agents, empty) {
  const sorted = [...agents].sort((a, b) => a.username.localeCompare(b.username));
  const available = sorted.filter((a) => a.status === "available").length;
  $("members-count").textContent = `${available} of ${sorted.length} available`;
  if (!sorted.length) {
    render($("members"), h("li.empty", {}, empty));
    return;
  }
  render($("members"), sorted.map((a) =>
    h("li.member", { "data-testid": `member-${a.username}` },
      h("span.presence-dot", { "data-status": a.status, "aria-hidden": "true" }),
      h("span.member-name", {}, a.username),
      pill(a.status, statusText(a), { "data-testid": "member-status" }),
      h("span.member-time", {}, timer(a.since, { "data-testid": "member-time" })))));
}

/** One participant: role, name, flags and time on the call; `coaching` is the word
 * for a whispering supervisor's flag in this view. */
export function personRow(p, me, coaching = "Coaching") {
  const flags = [];
  if (p.hold) flags.push(pill("hold", "On hold"));
  if (p.muted) flags.push(pill("muted", "Muted"));
  if (p.coaching) flags.push(pill("coaching", coaching));
  if (p.role === "supervisor" && !p.coaching && !p.muted) flags.push(pill("barge", "Barged in"));
  // A customer and an external party (a number an external transfer dialed) by number.
  const name = p.role === "customer" || p.role === "external" ? phone(p.from) : p.agent === me ? `${me} (you)` : p.agent || p.role;
  return h("li.person", { "data-role": p.role, "data-testid": `participant-${p.role}`, "data-agent": p.agent || undefined },
    h("span.role", {}, ROLE_WORDS[p.role] || p.role),
    h("span.person-name", {}, name),
    h("span.flags", {}, flags),
    h("span.person-time", {}, timer(p.joined_at)));
}
