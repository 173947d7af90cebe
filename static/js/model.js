// The client-side picture of docs/websocket.md: a snapshot, then events applied in id order.
//
// Agents see only the conferences they are part of, and /ws sends deltas from the
// moment they become involved: an event about a conference this model has never
// seen means "you were just brought into it", so the model asks for a fresh
// snapshot (needsSnapshot) rather than guess the state it missed.

const TERMINAL = new Set(["completed", "failed", "canceled"]);
const RECENT_TRANSFERS = 25;
const ENDED_KEPT_MS = 8000;

export function isTerminal(transfer) {
  return TERMINAL.has(transfer.status);
}

export class Model extends EventTarget {
  constructor(username, supervisor) {
    super();
    this.username = username;
    this.supervisor = supervisor;
    this.conferences = new Map(); // name -> conference with participants: Map(call_sid -> p)
    this.queue = [];
    this.agents = new Map();
    this.transfers = new Map(); // id -> transfer (live ones, plus recent results)
    this.monitors = new Map(); // conference -> Map(supervisor -> mode)
    this.voicemails = new Map(); // id -> open voicemail this user may see
    this.callbacks = new Map(); // id -> open callback this user may see (SPEC §9)
    this.endedCallbacks = new Map(); // id -> callback closed moments ago (a short note)
    this.alerts = new Map(); // id -> supervisor alert up now (SPEC §10; supervisors only)
    this.help = new Map(); // id -> help request, open or cleared (the latest kept per call)
    this.lastId = null;
    this.needsSnapshot = false;
    this.ready = false;
  }

  changed(kind) {
    this.dispatchEvent(new CustomEvent("change", { detail: { kind } }));
  }

  applySnapshot(message) {
    const state = message.data;
    const previous = this.transfers;
    this.conferences = new Map();
    for (const conference of state.conferences) this.#putConference(conference);
    this.queue = state.queue.slice().sort((a, b) => a.position - b.position);
    this.agents = new Map(state.agents.map((a) => [a.username, a]));
    this.transfers = new Map(state.transfers.map((t) => [t.id, t]));
    // Results of calls that have ended are not in a snapshot: keep the ones we saw.
    for (const [id, t] of previous) if (isTerminal(t) && !this.transfers.has(id)) this.transfers.set(id, t);
    this.#trimTransfers();
    this.voicemails = new Map((state.voicemails || []).map((v) => [v.id, v]));
    this.callbacks = new Map();
    for (const callback of state.callbacks || []) this.putCallback(callback, false);
    this.alerts = new Map((state.alerts || []).map((a) => [a.id, a]));
    // Open requests come in the snapshot; cleared ones we saw are kept for what they say.
    const cleared = [...this.help.values()].filter((r) => r.status !== "open");
    this.help = new Map((state.help || []).map((r) => [r.id, r]));
    for (const r of cleared) if (!this.help.has(r.id)) this.help.set(r.id, r);
    for (const name of this.monitors.keys()) if (!this.conferences.has(name)) this.monitors.delete(name);
    this.lastId = message.id;
    this.needsSnapshot = false;
    this.ready = true;
    this.changed("snapshot");
  }

  #putConference(data) {
    const existing = this.conferences.get(data.name);
    const participants = data.participants
      ? new Map(data.participants.map((p) => [p.call_sid, p]))
      : existing?.participants || new Map();
    const conference = { ...(existing || {}), ...data, participants };
    this.conferences.set(data.name, conference);
    return conference;
  }

  /** Apply one event; returns false when it was already applied (by id). */
  apply(event) {
    if (event.id && this.lastId && compareIds(event.id, this.lastId) <= 0) return false;
    if (event.id) this.lastId = event.id;
    const data = event.data || {};
    switch (event.type) {
      case "agent.updated":
        this.agents.set(data.username, data);
        if (!this.supervisor && data.username === this.username && data.status === "ringing") {
          if (!this.ringingFor()) this.needsSnapshot = true;
        }
        break;
      case "queue.updated":
        this.queue = data.queue.slice().sort((a, b) => a.position - b.position);
        break;
      case "call.queued":
        this.queue = this.queue.filter((q) => q.call_sid !== data.call_sid);
        this.queue.push(data);
        this.queue.sort((a, b) => a.position - b.position);
        break;
      case "call.dequeued":
        // Everyone behind moves up: positions stay right between queue.updated
        // events, which a long line only gets once a second.
        this.queue = this.queue
          .filter((q) => q.call_sid !== data.call_sid)
          .map((q, i) => ({ ...q, position: i + 1 }));
        break;
      case "conference.started":
      case "conference.ended":
        this.#conferenceEvent(event.type, data);
        break;
      case "participant.joined":
      case "participant.updated":
      case "participant.left":
        this.#participantEvent(event.type, data);
        break;
      case "transfer.updated":
        if (!this.supervisor && !isTerminal(data) && !this.conferences.has(data.conference)) {
          this.needsSnapshot = true;
        }
        this.transfers.set(data.id, data);
        this.#trimTransfers();
        break;
      case "recording.updated": {
        const conference = this.conferences.get(data.conference);
        if (conference) conference.recording = data;
        break;
      }
      case "voicemail.created":
      case "voicemail.updated":
        this.putVoicemail(data);
        break;
      case "callback.updated":
        this.putCallback(data);
        break;
      case "alert.raised":
        this.alerts.set(data.id, data);
        break;
      case "alert.cleared":
        this.alerts.delete(data.id);
        break;
      case "help.requested":
      case "help.updated":
        this.putHelp(data);
        break;
      case "supervisor.action": {
        const modes = this.monitors.get(data.conference) || new Map();
        if (data.mode === "left") modes.delete(data.supervisor);
        else modes.set(data.supervisor, data.mode);
        this.monitors.set(data.conference, modes);
        break;
      }
      default:
        break;
    }
    this.changed(event.type);
    return true;
  }

  #conferenceEvent(type, data) {
    if (!this.conferences.has(data.name)) {
      if (!this.supervisor) {
        if (type === "conference.started") this.needsSnapshot = true;
        return;
      }
    }
    const conference = this.#putConference(data);
    if (type === "conference.ended") {
      conference.status = "ended";
      setTimeout(() => {
        const current = this.conferences.get(data.name);
        if (current && current.status === "ended") {
          this.conferences.delete(data.name);
          this.monitors.delete(data.name);
          for (const [id, r] of this.help) if (r.conference === data.name && r.status !== "open") this.help.delete(id);
          this.changed("conference.removed");
        }
      }, ENDED_KEPT_MS);
    }
  }

  #participantEvent(type, data) {
    const name = data.conference;
    let conference = this.conferences.get(name);
    if (!conference) {
      if (!this.supervisor) {
        // Our own leaving needs nothing; anything else means we were just involved.
        if (!(type === "participant.left" && data.agent === this.username)) this.needsSnapshot = true;
        return;
      }
      conference = this.#putConference({
        name,
        sid: null,
        status: "waiting",
        from: data.role === "customer" ? data.from : null,
        created_at: data.joined_at,
        started_at: null,
        participants: [],
      });
      const callback = [...this.callbacks.values()].find((c) => c.conference === name);
      if (callback) this.#markCallbackConference(callback);
    }
    if (type === "participant.left") {
      conference.participants.delete(data.call_sid);
      if (!this.supervisor && data.role === "agent" && data.agent === this.username) {
        // We left: no further events about this call will come.
        this.conferences.delete(name);
      }
      if (data.role === "supervisor" && data.agent) {
        this.monitors.get(name)?.delete(data.agent);
      }
    } else {
      const previous = conference.participants.get(data.call_sid) || {};
      conference.participants.set(data.call_sid, { ...previous, ...data });
      if (data.role === "customer" && data.from && !conference.from) conference.from = data.from;
    }
  }

  /** Keep a voicemail while it is open and ours to see: an agent loses one that
   * someone else claimed; everyone loses a closed one. */
  putVoicemail(voicemail) {
    const others = voicemail.status === "claimed" && voicemail.claimed_by !== this.username;
    if (voicemail.status === "closed" || (others && !this.supervisor)) this.voicemails.delete(voicemail.id);
    else this.voicemails.set(voicemail.id, voicemail);
  }

  /** Keep a callback while it is open; a closed one (done or failed) leaves the live
   * lists and, when it just ended (`fresh`, not from a snapshot), is kept a few seconds
   * as a note of how it ended. */
  putCallback(callback, fresh = true) {
    this.#markCallbackConference(callback);
    if (callback.status !== "done" && callback.status !== "failed") {
      this.callbacks.set(callback.id, callback);
      return;
    }
    this.callbacks.delete(callback.id);
    if (!fresh) return;
    this.endedCallbacks.set(callback.id, callback);
    setTimeout(() => {
      if (this.endedCallbacks.get(callback.id) === callback) {
        this.endedCallbacks.delete(callback.id);
        this.changed("callback.removed");
      }
    }, ENDED_KEPT_MS);
  }

  /** Keep a help request (SPEC §10): open ones, and the last cleared one of each call
   * (an agent's view says it was taken or canceled). */
  putHelp(request) {
    for (const [id, r] of this.help) {
      if (id !== request.id && r.conference === request.conference && r.status !== "open") this.help.delete(id);
    }
    const known = this.help.get(request.id);
    // An answer to the POST (open) may come after the event that cleared it.
    if (known && known.status !== "open" && request.status === "open") return;
    this.help.set(request.id, { ...(known || {}), ...request });
  }

  /** A conference first heard of through its participants does not say it serves a
   * callback (nor the number dialed): the callback does. */
  #markCallbackConference(callback) {
    const conference = this.conferences.get(callback.conference);
    if (!conference || conference.kind) return;
    conference.kind = "callback";
    conference.callback = callback.id;
    conference.from = conference.from || callback.number;
  }

  #trimTransfers() {
    const done = [...this.transfers.values()].filter(isTerminal).sort((a, b) => b.updated_at - a.updated_at);
    for (const t of done.slice(RECENT_TRANSFERS)) this.transfers.delete(t.id);
  }

  // --- questions the views ask ---------------------------------------------------------

  /** The conference the user is in as an agent, and their participant in it. */
  myCall() {
    for (const conference of this.conferences.values()) {
      if (conference.status === "ended") continue;
      for (const p of conference.participants.values()) {
        if (p.role === "agent" && p.agent === this.username) return { conference, me: p };
      }
    }
    return null;
  }

  /** A transfer ringing this user (with its note), if any. */
  transferToMe() {
    const live = [...this.transfers.values()].filter(
      (t) => t.to_agent === this.username && !isTerminal(t) && t.status !== "joined",
    );
    return live.sort((a, b) => b.created_at - a.created_at)[0] || null;
  }

  /** The conference the user's phone is ringing for: a transfer to them, or a queued
   * customer routed to them (a visible conference they are not part of). */
  ringingFor() {
    const transfer = this.transferToMe();
    if (transfer) return { conference: this.conferences.get(transfer.conference) || null, transfer };
    const candidates = [...this.conferences.values()].filter((c) => {
      if (c.status === "ended") return false;
      const inIt = [...c.participants.values()].some((p) => p.agent === this.username);
      const transferring = [...this.transfers.values()].some(
        (t) => t.conference === c.name && t.from_agent === this.username && !isTerminal(t),
      );
      return !inIt && !transferring;
    });
    candidates.sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
    return candidates.length ? { conference: candidates[0], transfer: null } : null;
  }

  /** The latest transfer from this user in a conference. */
  transferFrom(conferenceName) {
    const mine = [...this.transfers.values()].filter(
      (t) => t.conference === conferenceName && t.from_agent === this.username,
    );
    return mine.sort((a, b) => b.created_at - a.created_at)[0] || null;
  }

  customerOf(conference) {
    return [...conference.participants.values()].find((p) => p.role === "customer") || null;
  }

  liveTransfers() {
    return [...this.transfers.values()].filter((t) => !isTerminal(t)).sort((a, b) => a.created_at - b.created_at);
  }

  /** The open voicemails, oldest first (the order they should be called back in). */
  openVoicemails() {
    return [...this.voicemails.values()].sort((a, b) => a.at - b.at);
  }

  /** The callback a conference serves (kind "callback"), open or just ended. */
  callbackOf(conference) {
    if (!conference?.callback) return null;
    return this.callbacks.get(conference.callback) || this.endedCallbacks.get(conference.callback) || null;
  }

  /** The callback of the call this user is in, or the one their phone rings for. */
  myCallback() {
    const conference = this.myCall()?.conference || this.ringingFor()?.conference;
    return this.callbackOf(conference);
  }

  /** Open callbacks, in line order (when they were asked for). */
  openCallbacks() {
    return [...this.callbacks.values()].sort((a, b) => a.requested_at - b.requested_at);
  }

  /** The callback this user served that ended last, while its note is kept. */
  lastEndedCallback() {
    const mine = [...this.endedCallbacks.values()].filter((c) => c.agent === this.username);
    return mine.sort((a, b) => b.requested_at - a.requested_at)[0] || null;
  }

  /** The open help requests, oldest first. */
  openHelp() {
    return [...this.help.values()].filter((r) => r.status === "open").sort((a, b) => a.at - b.at);
  }

  /** The latest help request made on a call (open or cleared), if any. */
  helpFor(conferenceName) {
    const mine = [...this.help.values()].filter((r) => r.conference === conferenceName);
    return mine.sort((a, b) => b.at - a.at)[0] || null;
  }

  /** The alerts up now, oldest first. */
  openAlerts() {
    return [...this.alerts.values()].sort((a, b) => a.since - b.since);
  }

  recentResults() {
    return [...this.transfers.values()].filter(isTerminal).sort((a, b) => b.updated_at - a.updated_at);
  }
}

/** Compare stream ids "<ms>-<seq>" as pairs of integers. */
export function compareIds(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}
