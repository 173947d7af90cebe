// What both views do to start: the Model fed by /ws, re-rendering batched through
// Controls, the ticking timers, and the signed-in user's softphone with its state in
// the top card. A view builds one View with its render function, then calls start().

import { api } from "./api.js";
import { Controls } from "./controls.js";
import { Model } from "./model.js";
import { createSoftphone } from "./softphone.js";
import { setSoftphoneState, showConnection, startTicker } from "./ui.js";
import { LiveSocket } from "./ws.js";

export const $ = (id) => document.getElementById(id);

export class View {
  /**
   * @param {boolean} supervisor a supervisor's model keeps every conference
   * @param {() => void} render draws the view's cards from the model and the softphone
   */
  constructor(supervisor, render) {
    this.me = document.body.dataset.username;
    this.model = new Model(this.me, supervisor);
    this.socket = new LiveSocket(this.model, showConnection);
    this.softphone = null;
    this.dispositions = []; // what a voicemail may be closed with (GET /api/me)
    this.callbackAttempts = null; // CALLBACK_ATTEMPTS: a callback's "attempt n of N"
    this.breakReasons = []; // BREAK_REASONS: what a break may be taken for
    this.wrapUpSeconds = 0; // WRAP_UP_SECONDS: how long wrap-up lasts at most after a call
    this.controls = new Controls(() => {
      if (this.softphone) setSoftphoneState($("softphone-state"), this.softphone.state, this.softphone.detail);
      render();
    });
  }

  /**
   * Connect the socket, then start the softphone. A softphone that cannot start is
   * shown as such; the board works without it.
   * @param {{onChange?: (kind: string) => void, onIncoming: (event: CustomEvent) => void}} hooks
   *   onChange gets each model change's event type; onIncoming each ringing call.
   */
  async start({ onChange, onIncoming }) {
    startTicker();
    this.model.addEventListener("change", (event) => {
      this.controls.schedule();
      onChange?.(event.detail.kind);
    });
    this.socket.start();
    try {
      const me = await api.me();
      this.dispositions = me.dispositions || [];
      this.callbackAttempts = me.callback_attempts || null;
      this.breakReasons = me.break_reasons || [];
      this.wrapUpSeconds = me.wrap_up_seconds || 0;
      this.controls.schedule();
      this.softphone = createSoftphone(me);
      this.softphone.addEventListener("change", () => this.controls.schedule());
      this.softphone.addEventListener("incoming", onIncoming);
      await this.softphone.start();
    } catch (error) {
      setSoftphoneState($("softphone-state"), "error", error.message);
    }
    this.controls.schedule();
  }
}
