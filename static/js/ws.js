// The /ws connection (docs/websocket.md): a snapshot, then events; pings every 10 s
// (the server takes a silent socket for a frozen tab); reconnects with backoff and
// resumes with ?since=<last id> so nothing is missed and nothing applied twice.

import { api } from "./api.js";
import { syncClock } from "./ui.js";

const PING_MS = 10_000;
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10_000];
const LOST_AFTER_MS = 1500; // a blip shorter than this does not flash the banner
const SESSION_ENDED = 4401;

export class LiveSocket {
  /**
   * @param {Model} model the client-side state the messages are applied to
   * @param {(state: string) => void} onStatus "connecting" | "live" | "lost"
   */
  constructor(model, onStatus) {
    this.model = model;
    this.onStatus = onStatus;
    this.socket = null;
    this.attempt = 0;
    this.failuresBeforeOpen = 0;
    this.pingTimer = null;
    this.retryTimer = null;
    this.lostTimer = null;
    this.status = "connecting";
    this.fresh = false; // the next connection asks for a snapshot, not a resume
  }

  start() {
    this.#connect();
    window.addEventListener("online", () => this.#retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.#retryNow();
    });
  }

  /** Start over from a fresh snapshot (the model found it lacks state). */
  resnapshot() {
    this.fresh = true;
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.quietClose = true;
      this.socket.close(4000, "resnapshot");
    } else {
      this.#retryNow();
    }
  }

  #url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const since = !this.fresh && this.model.lastId ? `?since=${encodeURIComponent(this.model.lastId)}` : "";
    return `${scheme}//${window.location.host}/ws${since}`;
  }

  #connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const socket = new WebSocket(this.#url());
    this.socket = socket;
    this.quietClose = false;
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      this.attempt = 0;
      this.failuresBeforeOpen = 0;
      this.fresh = false;
      this.#setStatus("live");
      this.pingTimer = setInterval(() => this.#send({ type: "ping" }), PING_MS);
      this.#send({ type: "ping" });
    });
    socket.addEventListener("message", (message) => this.#receive(message.data));
    socket.addEventListener("close", (event) => {
      clearInterval(this.pingTimer);
      if (this.socket !== socket) return;
      this.socket = null;
      if (!opened) this.failuresBeforeOpen += 1;
      // 4401: this login ended (logout elsewhere, expiry, user removed): to the login form.
      if (event.code === SESSION_ENDED) this.#checkSession();
      if (this.quietClose) {
        this.#connect();
        return;
      }
      this.#setStatus("lost");
      this.#schedule();
      if (this.failuresBeforeOpen >= 3) this.#checkSession();
    });
  }

  #receive(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    if (message.type === "resync") return; // a snapshot follows
    if (message.type === "snapshot") {
      // A snapshot's ts is the server's "now" (an event's is when its cause arrived).
      syncClock(message.ts);
      this.model.applySnapshot(message);
      return;
    }
    this.model.apply(message);
    if (this.model.needsSnapshot && !this.pendingResnapshot) {
      // Let the events of one unit of work land first, then start over once.
      this.pendingResnapshot = setTimeout(() => {
        this.pendingResnapshot = null;
        if (this.model.needsSnapshot) this.resnapshot();
      }, 150);
    }
  }

  #send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  #schedule() {
    if (this.retryTimer) return;
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    const delay = base / 2 + Math.random() * base / 2;
    this.retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #retryNow() {
    if (this.socket) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.#connect();
  }

  #setStatus(status) {
    this.status = status;
    clearTimeout(this.lostTimer);
    if (status === "lost") {
      this.lostTimer = setTimeout(() => {
        if (this.status === "lost") this.onStatus("lost");
      }, LOST_AFTER_MS);
    } else {
      this.onStatus(status);
    }
  }

  #checkSession() {
    // A refused handshake looks like any other failure from here: ask the API, which
    // sends the page to the login form on 401. Offline: keep retrying.
    api.me().catch(() => {});
  }
}
