// The voicemails card of both views (templates/_voicemails_card.html): the open
// messages callers left (SPEC §9), each with its player; Claim on a new one, and on
// a claimed one (the viewer's own, or any for a supervisor) a disposition and Close.
// An agent may Call back a new message or their own (it claims it and rings them).
// Items are kept by id and rebuilt only when they change, so a message playing goes
// on playing while the rest of the board moves.

import { ApiError, api } from "./api.js";
import { $ } from "./boot.js";
import { timeEl } from "./calllog.js";
import { announce, duration, h, phone, pill, render, spokenDuration } from "./ui.js";

const WHERE = "voicemails"; // where the card's errors show (Controls)

export const VOICEMAIL_REASONS = {
  "closed-hours": "Closed hours",
  "no-agents": "Nobody signed in",
  voicemail: "Left a message",
};

export class VoicemailsCard {
  /** @param {import("./boot.js").View} view the page's model, controls and settings */
  constructor(view) {
    this.view = view;
    this.items = new Map(); // id -> {signature, el}
    this.chosen = new Map(); // id -> the disposition picked, kept across re-renders
    this.known = null; // ids already shown (null until the first snapshot is drawn)
    this.signature = null; // what the list shows now (null: nothing drawn yet)
    this.focusKey = null; // a control to focus once drawn (the disposition after a claim)
  }

  render() {
    const { model, controls } = this.view;
    const voicemails = model.openVoicemails();
    this.#announceNew(voicemails);
    const count = $("voicemails-count");
    count.textContent = String(voicemails.length);
    count.setAttribute("aria-label", `${voicemails.length} open voicemails`);
    const items = voicemails.map((v) => this.#item(v));
    for (const id of this.items.keys()) if (!model.voicemails.has(id)) this.items.delete(id);
    const errorText = controls.error?.where === WHERE ? controls.error.text : "";
    const signature = [...items.map((i) => i.dataset.signature), errorText].join("\n");
    if (signature !== this.signature) {
      this.signature = signature;
      render($("voicemails-error"), controls.errorLine(WHERE));
      render($("voicemails"), items.length ? items : h("li.empty", {}, "No messages waiting."));
    }
    if (this.focusKey) {
      $("voicemails").querySelector(`[data-key="${CSS.escape(this.focusKey)}"]`)?.focus();
      this.focusKey = null;
    }
  }

  #announceNew(voicemails) {
    if (!this.view.model.ready) return;
    const ids = new Set(voicemails.map((v) => v.id));
    if (this.known) {
      const fresh = voicemails.filter((v) => !this.known.has(v.id) && v.status === "new");
      for (const v of fresh) announce(`New voicemail from ${phone(v.from)}.`);
    }
    this.known = ids;
  }

  /** The voicemail's list item: the one drawn before when nothing it shows changed. */
  #item(v) {
    const { controls, dispositions } = this.view;
    const busy = controls.busy?.startsWith(`vm:${v.id}:`) ? controls.busy : "";
    const signature = JSON.stringify([v.id, v.status, v.claimed_by, busy, dispositions, this.#canCall()]);
    const kept = this.items.get(v.id);
    if (kept && kept.signature === signature) return kept.el;
    // The player moves to the new item, so a message being listened to keeps playing.
    const player = kept?.el.querySelector("audio") || h("audio", {
      controls: true,
      preload: "none",
      src: v.recording.url,
      "aria-label": `Voicemail from ${phone(v.from)}`,
    }, h("a", { href: v.recording.url }, "Download the message"));
    const el = this.#draw(v, player, busy);
    el.dataset.signature = signature;
    this.items.set(v.id, { signature, el });
    return el;
  }

  #draw(v, player, busy) {
    const { me, model } = this.view;
    const mine = v.claimed_by === me;
    const status = v.status === "new" ? "New" : `Claimed by ${mine ? "you" : v.claimed_by}`;
    const seconds = v.duration ?? v.recording?.duration;
    const zone = $("voicemails-card").dataset.timezone;
    return h("li.voicemail", {
      "data-testid": "voicemail",
      "data-voicemail": v.id,
      "data-status": v.status,
      "aria-busy": busy ? "true" : undefined,
    },
    h("div.voicemail-head", {},
      h("span.voicemail-from", { "data-testid": "voicemail-from" }, phone(v.from)),
      pill(v.status, status, { "data-testid": "voicemail-status" })),
    h("p.voicemail-meta", {},
      h("span.visually-hidden", {}, "Left "),
      timeEl(v.at, zone),
      seconds === null || seconds === undefined ? null
        : h("span.voicemail-length", {}, h("span.visually-hidden", {}, ", length "),
          h("span", { "aria-hidden": "true" }, duration(seconds * 1000)),
          h("span.visually-hidden", {}, spokenDuration(seconds * 1000))),
      h("span.voicemail-reason", { "data-testid": "voicemail-reason" },
        h("span.visually-hidden", {}, ", reason "), VOICEMAIL_REASONS[v.reason] || v.reason || "")),
    player,
    v.status === "new" ? this.#claimButton(v)
      : mine || model.supervisor ? this.#closeForm(v) : null);
  }

  /** Calling back rings the viewer's own phone into the call: an agent with no call. */
  #canCall() {
    const { model } = this.view;
    if (model.supervisor || !model.ready) return false;
    const status = model.agents.get(this.view.me)?.status;
    return !model.myCall() && status !== "ringing" && status !== "busy";
  }

  #callBackButton(v) {
    const { controls, model } = this.view;
    const key = `vm:${v.id}:callback`;
    return controls.button(key, "Call back", {
      "aria-label": `Call back ${phone(v.from)}`,
      disabled: !this.#canCall() || undefined,
      onclick: () => controls.act(key, async () => {
        await plainly(api.callBackVoicemail(v.id), {
          404: "This voicemail is no longer open: someone else has taken it.",
        });
        if (v.status === "new") model.putVoicemail({ ...v, status: "claimed", claimed_by: this.view.me });
        announce(`Calling back ${phone(v.from)}: answer your phone, then the number is dialed.`);
      }, WHERE),
    }, ".button-small");
  }

  #claimButton(v) {
    const { controls, model } = this.view;
    const key = `vm:${v.id}:claim`;
    return h("div.actions.voicemail-actions", {},
      controls.button(key, "Claim", {
        "aria-label": `Claim the voicemail from ${phone(v.from)}`,
        onclick: () => controls.act(key, async () => {
          const claimed = await plainly(api.claimVoicemail(v.id), {
            409: "Someone else claimed this voicemail first.",
            404: "This voicemail is no longer open: someone else has taken it.",
          });
          model.putVoicemail(claimed);
          this.focusKey = `vm:${v.id}:disposition`;
          announce(`You claimed the voicemail from ${phone(v.from)}. Choose a disposition to close it.`);
        }, WHERE),
      }, ".button-primary.button-small"),
      model.supervisor ? null : this.#callBackButton(v));
  }

  #closeForm(v) {
    const { controls, model, dispositions } = this.view;
    const key = `vm:${v.id}:close`;
    const id = `vm-disposition-${v.id}`;
    const chosen = this.chosen.get(v.id) || "";
    const select = h("select", {
      id,
      name: "disposition",
      "data-key": `vm:${v.id}:disposition`,
      onchange: (event) => this.chosen.set(v.id, event.target.value),
    },
    h("option", { value: "" }, "Choose…"),
    dispositions.map((d) => h("option", { value: d, selected: d === chosen || undefined }, d)));
    return h("form.voicemail-close", {
      "aria-label": `Close the voicemail from ${phone(v.from)}`,
      onsubmit: (event) => {
        event.preventDefault();
        const disposition = select.value;
        if (!disposition) {
          controls.fail(WHERE, "Choose a disposition before closing the voicemail.");
          this.focusKey = `vm:${v.id}:disposition`;
          return;
        }
        controls.act(key, async () => {
          await plainly(api.closeVoicemail(v.id, disposition), {
            404: "This voicemail is no longer open: someone else has closed it.",
          });
          model.voicemails.delete(v.id);
          this.chosen.delete(v.id);
          announce(`Voicemail from ${phone(v.from)} closed: ${disposition}.`);
        }, WHERE);
      },
    },
    h("label", { for: id }, "Disposition"),
    h("div.voicemail-close-row", {},
      select,
      controls.button(key, "Close", { type: "submit" }, ".button-small"),
      v.claimed_by === this.view.me && !model.supervisor ? this.#callBackButton(v) : null));
  }
}

/** The API's answer, with the given statuses' errors told in plain words (a race
 * lost to a colleague is no error dump). */
async function plainly(request, words) {
  try {
    return await request;
  } catch (error) {
    if (error instanceof ApiError && words[error.status]) throw new Error(words[error.status]);
    throw error;
  }
}
