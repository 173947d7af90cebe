// The buttons of both views that call the API or the softphone: one action in flight
// at a time (its button marked busy), the last failure shown where it happened, and
// re-rendering batched into one animation frame.

import { announce, h } from "./ui.js";

export class Controls {
  /** @param {() => void} render draws the whole view from the model */
  constructor(render) {
    this.render = render;
    this.busy = null; // the key of the button whose action is in flight
    this.error = null; // {where, text}
    this.frame = 0;
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  async act(key, action, where = "call") {
    if (this.busy) return;
    this.busy = key;
    this.error = null;
    this.schedule();
    try {
      await action();
    } catch (error) {
      this.fail(where, error.message || String(error));
      announce(this.error.text, true);
    } finally {
      this.busy = null;
      this.schedule();
    }
  }

  fail(where, text) {
    this.error = { where, text };
    this.schedule();
  }

  button(key, label, attrs = {}, cls = "") {
    return h(`button.button${cls}`, {
      type: "button",
      "data-key": key,
      disabled: attrs.disabled || this.busy === key || undefined,
      "aria-busy": this.busy === key ? "true" : undefined,
      ...attrs,
    }, label);
  }

  errorLine(where) {
    return this.error?.where === where ? h("p.alert", { role: "alert" }, this.error.text) : null;
  }
}
