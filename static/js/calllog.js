// The call history's words and formats, shared by the history page, the reports and
// the agent's recent calls. Times are shown in the center's time zone (CENTER_TIMEZONE,
// given by the page as data-timezone), the zone whose days the API's dates are.

import { api } from "./api.js";
import { duration, h, phone, pill, render } from "./ui.js";

export const OUTCOME_WORDS = {
  completed: "Completed",
  abandoned: "Abandoned",
  voicemail: "Voicemail",
  "callback-requested": "Callback requested",
  "closed-hours": "Closed hours",
  "no-agents": "No agents",
  failed: "Callback failed",
};

export function outcomePill(outcome) {
  return outcome
    ? pill(outcome, OUTCOME_WORDS[outcome] || outcome, { "data-testid": "outcome" })
    : pill("live", "In progress", { "data-testid": "outcome" });
}

/** An Intl formatter in ``zone``; the browser's own zone if it does not know that one. */
export function formatter(zone, options) {
  try {
    return new Intl.DateTimeFormat(undefined, { ...options, timeZone: zone || undefined });
  } catch {
    return new Intl.DateTimeFormat(undefined, options);
  }
}

/** "4 Dec 2026, 17:05:41" style, in the center's zone. */
export function dateTime(ms, zone) {
  return formatter(zone, { dateStyle: "medium", timeStyle: "medium" }).format(new Date(ms));
}

/** A <time> element for ``ms``, shown as dateTime. */
export function timeEl(ms, zone, options = { dateStyle: "medium", timeStyle: "short" }) {
  if (ms === null || ms === undefined) return "—";
  return h("time", { datetime: new Date(ms).toISOString() }, formatter(zone, options).format(new Date(ms)));
}

/** A duration in ms as m:ss, or a dash when there is none. */
export function span(ms) {
  return ms === null || ms === undefined ? "—" : duration(ms);
}

/** Today's date (YYYY-MM-DD) in ``zone``, ``days`` later (negative: earlier). */
export function isoDay(zone, days = 0) {
  const parts = formatter(zone, { year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(new Date());
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  const day = new Date(Date.UTC(get("year"), get("month") - 1, get("day") + days));
  return day.toISOString().slice(0, 10);
}

/** The non-empty fields of a form (or an object) as query parameters. */
export function queryOf(fields) {
  const query = new URLSearchParams();
  const entries = fields instanceof HTMLFormElement ? new FormData(fields).entries() : Object.entries(fields);
  for (const [key, value] of entries) {
    const text = String(value ?? "").trim();
    if (text) query.set(key, text);
  }
  return query;
}

/** The signed-in agent's last calls (GET /api/calls answers only theirs) into ``list``. */
export async function renderRecentCalls(list, zone, limit = 10) {
  try {
    const { calls } = await api.calls(new URLSearchParams({ limit: String(limit) }));
    render(list, calls.length ? calls.map((call) =>
      h("li.recent-call", { "data-testid": "recent-call", "data-call": call.id },
        h("span.recent-from", {}, phone(call.from)),
        outcomePill(call.outcome),
        h("span.recent-when", {}, timeEl(call.arrived_at, zone)),
        h("span.recent-talk", { title: "Talk time" }, call.talk_ms ? duration(call.talk_ms) : "")))
      : [h("li.empty", {}, "Calls you take appear here.")]);
  } catch (error) {
    const text = error.status === 503 ? "Call history is not available right now." : error.message;
    render(list, h("li.empty", { "data-testid": "recent-error" }, text));
  }
}
