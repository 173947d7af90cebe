// The browser softphone: one interface, two implementations.
//
//   TwilioSoftphone     Twilio's Voice JS SDK 2.x (window.Twilio.Device), token from
//                       /api/token, renewed on tokenWillExpire, re-registered after a
//                       network loss.
//   SimulatorSoftphone  the local Twilio simulator of demo mode (Server-Sent Events
//                       and a small JSON API), for when there is no Twilio account.
//
// Both emit "change" (any state change), "incoming" ({detail: call}) and "ended"
// ({detail: call}); a call is {sid, from, to, params, status: "ringing" | "open",
// muted, startedAt}. Methods: start(), answer(sid), decline(sid), hangup(sid),
// mute(sid, muted).

import { api } from "./api.js";

class Softphone extends EventTarget {
  constructor(identity) {
    super();
    this.identity = identity;
    this.state = "starting"; // starting | registering | registered | unregistered | error
    this.detail = "";
    this.calls = new Map();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
    if (type !== "change") this.dispatchEvent(new CustomEvent("change"));
  }

  setState(state, detail = "") {
    this.state = state;
    this.detail = detail;
    this.emit("change");
  }

  upsert(sid, fields) {
    const call = { sid, from: null, to: null, params: {}, status: "ringing", muted: false, startedAt: Date.now(), ...this.calls.get(sid), ...fields };
    this.calls.set(sid, call);
    return call;
  }

  finish(sid) {
    const call = this.calls.get(sid);
    if (!call) return;
    this.calls.delete(sid);
    this.emit("ended", call);
  }

  ringing() {
    return [...this.calls.values()].filter((c) => c.status === "ringing");
  }
}

// --- Twilio Voice SDK ------------------------------------------------------------------

const SDK_URL = "/vendor/twilio.min.js";
const REGISTER_BACKOFF_MS = [1000, 2000, 5000, 10_000, 30_000];

function loadSdk() {
  if (window.Twilio && window.Twilio.Device) return Promise.resolve(window.Twilio);
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = SDK_URL;
    script.addEventListener("load", () =>
      window.Twilio && window.Twilio.Device ? resolve(window.Twilio) : reject(new Error("the Voice SDK did not load")),
    );
    script.addEventListener("error", () =>
      reject(new Error("The Twilio Voice SDK is not installed on the server (run `npm install`).")),
    );
    document.head.append(script);
  });
}

export class TwilioSoftphone extends Softphone {
  constructor(identity) {
    super(identity);
    this.kind = "twilio";
    this.device = null;
    this.sdkCalls = new Map();
    this.wanted = true; // we want to be registered: recover when the network drops us
    this.attempt = 0;
    this.retryTimer = null;
  }

  async start() {
    let Twilio;
    try {
      Twilio = await loadSdk();
      const { token } = await api.token();
      this.device = new Twilio.Device(token, {
        appName: "warmline",
        closeProtection: "A call is in progress. Leave anyway?",
        codecPreferences: ["opus", "pcmu"],
        logLevel: "warn",
      });
    } catch (error) {
      this.setState("error", error.message);
      return;
    }
    const device = this.device;
    // The console rings itself (ring.js), for both softphones: no second ringtone.
    device.audio?.incoming?.(false);
    device.on("registering", () => this.setState("registering"));
    device.on("registered", () => {
      this.attempt = 0;
      this.setState("registered");
    });
    device.on("unregistered", () => {
      this.setState("unregistered", "Not receiving calls; reconnecting…");
      this.#scheduleRegister();
    });
    device.on("tokenWillExpire", () => this.#renewToken());
    device.on("error", (error) => {
      // 20104: the token expired (say, a laptop asleep past the renewal): get a new one.
      if (error && (error.code === 20104 || error.code === 31205)) {
        this.#renewToken().then(() => this.#scheduleRegister());
        return;
      }
      this.setState(this.state === "registered" ? "registered" : "error", error ? `${error.message} (${error.code})` : "");
    });
    device.on("incoming", (call) => this.#incoming(call));
    window.addEventListener("online", () => this.#scheduleRegister(true));
    await this.#register();
  }

  async #register() {
    if (!this.device || !this.wanted) return;
    if (this.device.state !== "unregistered") return;
    try {
      await this.device.register();
    } catch (error) {
      this.setState("error", error.message || String(error));
      this.#scheduleRegister();
    }
  }

  #scheduleRegister(now = false) {
    if (!this.wanted || this.retryTimer) return;
    const delay = now ? 0 : REGISTER_BACKOFF_MS[Math.min(this.attempt, REGISTER_BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (navigator.onLine === false) {
        this.#scheduleRegister();
        return;
      }
      this.#register();
    }, delay);
  }

  async #renewToken() {
    try {
      const { token } = await api.token();
      this.device.updateToken(token);
    } catch (error) {
      this.setState("error", `Could not renew the access token: ${error.message}`);
      setTimeout(() => this.#renewToken(), 15_000);
    }
  }

  #incoming(call) {
    const p = call.parameters || {};
    const sid = p.CallSid;
    const params = {};
    if (call.customParameters) for (const [k, v] of call.customParameters) params[k] = v;
    this.sdkCalls.set(sid, call);
    const entry = this.upsert(sid, { from: p.From || null, to: p.To || null, params, status: "ringing" });
    call.on("accept", () => {
      this.upsert(sid, { status: "open", startedAt: Date.now() });
      this.emit("change");
    });
    call.on("mute", (muted) => {
      this.upsert(sid, { muted });
      this.emit("change");
    });
    const end = () => {
      this.sdkCalls.delete(sid);
      this.finish(sid);
    };
    call.on("disconnect", end);
    call.on("cancel", end);
    call.on("reject", end);
    call.on("error", (error) => this.setState(this.state, `Call problem: ${error.message}`));
    this.emit("incoming", entry);
  }

  #call(sid) {
    const call = this.sdkCalls.get(sid);
    if (!call) throw new Error("That call is no longer on this phone.");
    return call;
  }

  async answer(sid) {
    this.#call(sid).accept();
  }

  async decline(sid) {
    this.#call(sid).reject();
  }

  async hangup(sid) {
    this.#call(sid).disconnect();
  }

  async mute(sid, muted) {
    this.#call(sid).mute(muted);
  }
}

// --- the simulator of demo mode --------------------------------------------------------

export class SimulatorSoftphone extends Softphone {
  constructor(identity, baseUrl) {
    super(identity);
    this.kind = "simulator";
    this.base = baseUrl.replace(/\/$/, "");
    this.source = null;
  }

  #phoneUrl(path) {
    return `${this.base}/sim/phones/${encodeURIComponent(this.identity)}${path}`;
  }

  async #post(url, body = {}) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch {
      throw new Error("The phone service (simulator) could not be reached.");
    }
    if (!response.ok) {
      let message = `The phone service answered HTTP ${response.status}.`;
      try {
        message = (await response.json()).error || message;
      } catch {
        // keep the generic message
      }
      throw new Error(message);
    }
    return response.json();
  }

  async start() {
    this.setState("registering");
    const source = new EventSource(this.#phoneUrl("/events"));
    this.source = source;
    const on = (type, handler) =>
      source.addEventListener(type, (message) => {
        try {
          handler(JSON.parse(message.data));
        } catch (error) {
          console.warn("softphone event", type, error);
        }
      });
    on("hello", (event) => {
      for (const sid of event.calls || []) if (!this.calls.has(sid)) this.upsert(sid, { status: "open" });
      if (!event.registered) this.register();
      else this.setState("registered");
    });
    on("registered", () => this.setState("registered"));
    on("unregistered", () => this.setState("unregistered", "Not receiving calls"));
    on("incoming", (event) => {
      const call = this.upsert(event.call_sid, {
        from: event.from,
        to: event.to,
        params: event.parameters || {},
        status: "ringing",
        startedAt: Date.now(),
      });
      this.emit("incoming", call);
    });
    on("connected", (event) => {
      this.upsert(event.call_sid, { status: "open", startedAt: Date.now() });
      this.emit("change");
    });
    on("muted", (event) => {
      this.upsert(event.call_sid, { muted: Boolean(event.muted) });
      this.emit("change");
    });
    on("ended", (event) => this.finish(event.call_sid));
    source.addEventListener("error", () => {
      // EventSource reconnects by itself; "hello" then tells us where we stand.
      if (source.readyState !== EventSource.OPEN) this.setState("unregistered", "Reconnecting to the phone service…");
    });
    window.addEventListener("pagehide", () => source.close());
  }

  async register() {
    try {
      await this.#post(this.#phoneUrl("/register"));
    } catch (error) {
      this.setState("error", error.message);
    }
  }

  #callUrl(sid, action) {
    return `${this.base}/sim/phones/calls/${encodeURIComponent(sid)}/${action}`;
  }

  async answer(sid) {
    await this.#post(this.#callUrl(sid, "answer"));
  }

  async decline(sid) {
    await this.#post(this.#callUrl(sid, "decline"));
  }

  async hangup(sid) {
    await this.#post(this.#callUrl(sid, "hangup"));
  }

  async mute(sid, muted) {
    await this.#post(this.#callUrl(sid, "mute"), { muted });
  }
}

/** The softphone /api/me names for this user. */
export function createSoftphone(me) {
  const kind = me.softphone && me.softphone.kind;
  if (kind === "simulator") return new SimulatorSoftphone(me.username, me.softphone.url);
  return new TwilioSoftphone(me.username);
}
