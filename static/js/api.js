// The JSON API (docs/api.md). State-changing calls send JSON (a cross-site form cannot)
// with the session cookie; errors come back as {"error": message}. A 401 sends the
// page to the login form, to come back here after.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "The server could not be reached. Check your connection and try again.");
  }
  if (response.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
    throw new ApiError(401, "Your session has ended; please sign in again.");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error) || `${method} ${path} failed (HTTP ${response.status})`;
    throw new ApiError(response.status, message);
  }
  return data;
}

export const api = {
  me: () => request("GET", "/api/me"),
  token: () => request("GET", "/api/token"),
  // A reason goes with a break only (the server refuses one otherwise).
  setStatus: (status, reason) =>
    request("POST", "/api/me/status", status === "break" ? { status, reason } : { status }),
  // The disposition and notes of a call the user took (id: its conference name).
  wrapUp: (call, disposition, notes) =>
    request("POST", `/api/calls/${encodeURIComponent(call)}/wrap-up`, { disposition, notes }),
  // body: {conference, mode, to, to_number, leave_after_dial, note} (docs/api.md).
  transfer: (body) => request("POST", "/api/transfers", body),
  cancelTransfer: (id) => request("DELETE", `/api/transfers/${encodeURIComponent(id)}`),
  leave: (conference) => request("POST", `/api/conferences/${encodeURIComponent(conference)}/leave`),
  hold: (conference, callSid, hold) =>
    request("POST", `/api/conferences/${encodeURIComponent(conference)}/hold`, { call_sid: callSid, hold }),
  recording: (conference, paused) =>
    request("POST", `/api/conferences/${encodeURIComponent(conference)}/recording`, { paused }),
  monitor: (conference, mode) =>
    request("POST", `/api/conferences/${encodeURIComponent(conference)}/monitor`, { mode }),
  claimVoicemail: (id) => request("POST", `/api/voicemails/${encodeURIComponent(id)}/claim`),
  closeVoicemail: (id, disposition) =>
    request("POST", `/api/voicemails/${encodeURIComponent(id)}/close`, { disposition }),
  callBackVoicemail: (id) => request("POST", `/api/voicemails/${encodeURIComponent(id)}/callback`),
  retryCallback: (id) => request("POST", `/api/callbacks/${encodeURIComponent(id)}/retry`),
  closeCallback: (id, disposition) =>
    request("POST", `/api/callbacks/${encodeURIComponent(id)}/close`, { disposition }),
  askHelp: (conference, text) => request("POST", "/api/help", { conference, text }),
  // The agent cancels their request; a supervisor dismisses it (taken).
  withdrawHelp: (id) => request("DELETE", `/api/help/${encodeURIComponent(id)}`),
  directory: () => request("GET", "/api/directory"),
  addDirectory: (name, number) => request("POST", "/api/directory", { name, number }),
  removeDirectory: (id) => request("DELETE", `/api/directory/${encodeURIComponent(id)}`),
  figures: () => request("GET", "/api/figures"),
  timeline: (conference) => request("GET", `/api/conferences/${encodeURIComponent(conference)}/timeline`),
  webhooks: () => request("GET", "/api/webhooks"),
  // The call history (SPEC §8): query is a URLSearchParams of the filters.
  calls: (query) => request("GET", `/api/calls?${query}`),
  call: (id) => request("GET", `/api/calls/${encodeURIComponent(id)}`),
  reports: (query) => request("GET", `/api/reports?${query}`),
};
