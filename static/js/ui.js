// Small DOM and formatting helpers shared by both views. Everything is built with
// createElement/textContent: no HTML parsing, no inline styles or handlers (strict CSP).

// libphonenumber-js (npm, served at /vendor/libphonenumber.js as its UMD bundle, which
// sets globalThis.libphonenumber) formats numbers of every country. Without it (npm
// install not run) numbers show as +1 (NNN) NNN-NNNN or as they come.
const phoneLib = await import("/vendor/libphonenumber.js")
  .then(() => globalThis.libphonenumber || null)
  .catch(() => null);

/** h("button.button.primary", {type: "button", onclick: f}, "Answer") */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") {
        el.addEventListener(key.slice(2), value);
      } else if (key === "dataset") {
        Object.assign(el.dataset, value);
      } else if (key === "class") {
        el.className = [el.className, value].filter(Boolean).join(" ");
      } else if (value === true) {
        el.setAttribute(key, "");
      } else {
        el.setAttribute(key, String(value));
      }
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace a container's children, keeping keyboard focus on the element with the same
 * data-key (a re-render must not throw a keyboard user back to the top). */
export function render(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : undefined;
  container.replaceChildren();
  append(container, children);
  if (key) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again && !again.disabled) again.focus({ preventScroll: true });
    else container.closest("section, main")?.focus?.({ preventScroll: true });
  }
}

// Server time: events carry the server's clock; timers count from it.
let offset = 0;
export function syncClock(serverMs) {
  if (typeof serverMs === "number" && serverMs > 0) offset = serverMs - Date.now();
}
export function now() {
  return Date.now() + offset;
}

export function duration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

export function spokenDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = total % 60;
  if (!minutes) return `${seconds} seconds`;
  return `${minutes} minute${minutes === 1 ? "" : "s"} ${seconds} seconds`;
}

/** A live countdown to `until` (server ms), stopping at 0:00. */
export function countdown(until, attrs = {}) {
  const el = h("span.timer", { ...attrs, dataset: { until: String(until) } });
  tickOne(el);
  return el;
}

/** A live timer: a <span> whose text the ticker refreshes every second. */
export function timer(since, attrs = {}) {
  const el = h("span.timer", { ...attrs, dataset: { since: String(since || now()) } });
  tickOne(el);
  return el;
}

function tickOne(el) {
  const ms = el.dataset.until ? Number(el.dataset.until) - now() : now() - Number(el.dataset.since);
  el.textContent = duration(ms);
  el.setAttribute("aria-label", spokenDuration(ms));
}

export function startTicker() {
  setInterval(() => document.querySelectorAll(".timer[data-since], .timer[data-until]").forEach(tickOne), 1000);
}

export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** A number for people: NANP as +1 (NNN) NNN-NNNN, any other E.164 number in its
 * country's international format (libphonenumber-js), anything else as it comes. */
export function phone(number) {
  if (!number) return "Unknown caller";
  const m = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(number);
  if (m) return `+1 (${m[1]}) ${m[2]}-${m[3]}`;
  if (phoneLib && number.startsWith("+")) {
    try {
      const parsed = phoneLib.parsePhoneNumberFromString(number);
      // A number of impossible length (a test's, a typo) is shown as it comes.
      if (parsed?.isPossible()) return parsed.formatInternational();
    } catch {
      // not a number libphonenumber knows: shown as it comes
    }
  }
  return number;
}

export function ago(ms) {
  const seconds = Math.max(0, Math.round((now() - ms) / 1000));
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return new Date(ms).toLocaleDateString();
}

export const STATUS_WORDS = {
  offline: "Offline",
  available: "Available",
  ringing: "Ringing",
  busy: "On a call",
  missed: "Missed a call",
  "wrap-up": "Wrap-up",
  break: "On break",
};

/** An agent's status in words, with a break's reason: "On break · Lunch". */
export function statusText(agent) {
  const words = STATUS_WORDS[agent?.status] || agent?.status || "Offline";
  return agent?.status === "break" && agent.reason ? `${words} · ${agent.reason}` : words;
}

export const TRANSFER_WORDS = {
  requested: "Requested",
  ringing: "Ringing",
  answered: "Answered",
  joined: "Joined",
  completed: "Completed",
  failed: "Failed",
  canceled: "Canceled",
};

// How a transfer hands the customer over (its `mode`, SPEC §10).
export const TRANSFER_MODE_WORDS = {
  warm: "Warm",
  blind: "Blind",
  queue: "Back to the queue",
  external: "External",
};

/** Who or where a transfer goes: a colleague, any agent, the line, or a number. */
export function transferTarget(transfer) {
  if (transfer.mode === "external") return phone(transfer.to_number);
  if (transfer.mode === "queue") return "the queue";
  return transfer.to_agent || "any agent";
}

export const REASON_WORDS = {
  "no-answer": "no answer",
  busy: "declined (busy)",
  failed: "the call could not be placed",
  canceled: "the call was canceled",
  "customer-hung-up": "the customer hung up",
  "colleague-left": "the colleague left before taking over",
  "no-agent-available": "no agent was available",
  "api-error": "Twilio refused the request",
};

export function reasonText(reason) {
  return REASON_WORDS[reason] || reason || "unknown reason";
}

export function pill(status, text, extra = {}) {
  return h("span.pill", { ...extra, dataset: { status } }, text);
}

const announcer = () => document.getElementById("announcer");
const alerter = () => document.getElementById("alerter");

/** Say something to screen readers (polite), or urgently. */
export function announce(text, urgent = false) {
  const region = urgent ? alerter() : announcer();
  if (!region) return;
  region.textContent = "";
  // A fresh text node after a tick makes repeated messages announced again.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/** Reflect the socket's state in the top bar and the banner. */
export function showConnection(state) {
  const badge = document.getElementById("connection");
  const banner = document.getElementById("banner");
  if (!badge) return;
  const words = { connecting: "Connecting…", live: "Live", lost: "Reconnecting…" };
  badge.dataset.state = state;
  badge.querySelector(".connection-text").textContent = words[state] || state;
  if (state === "lost" && banner.hidden) {
    banner.hidden = false;
  } else if (state === "live" && !banner.hidden) {
    banner.hidden = true;
    announce("Connection restored. The board is up to date.");
  }
}

export function setSoftphoneState(el, state, detail) {
  const words = {
    starting: "Softphone starting…",
    registering: "Softphone connecting…",
    registered: "Softphone ready",
    unregistered: "Softphone offline",
    error: "Softphone problem",
  };
  el.dataset.state = state;
  el.textContent = words[state] || state;
  el.title = detail || "";
  if (detail) el.setAttribute("aria-description", detail);
  else el.removeAttribute("aria-description");
}

/** Participants in reading order: the customer, agents, external parties, supervisors;
 * then by join time. */
export function byRoleThenJoin(a, b) {
  const order = (p) => ({ customer: 0, agent: 1, external: 2, supervisor: 3 })[p.role] ?? 4;
  return order(a) - order(b) || (a.joined_at || 0) - (b.joined_at || 0);
}
