// A ringing phone nobody misses (SPEC §10): while the agent's softphone rings, a ring
// played with Web Audio (no audio file), the tab's title changed, and a browser
// notification that brings the tab forward when clicked. The agent view calls
// ringer.update() on each render and ringer.notify() once it knows what rings. The
// supervisor console's Chime sounds a new alert (when its toggle is on).

const RINGING_TITLE = "☎ Ringing — Warmline";
// One ring cycle: two 0.4 s bursts of a 440 + 480 Hz pair (the North American ring
// tone's pitch), then silence; repeated every 3 s until the ringing stops.
const CYCLE_MS = 3000;
const BURSTS = [
  [0, 0.4],
  [0.6, 1.0],
];

/** Whether this browser can show notifications at all. */
export function notificationsSupported() {
  return typeof window.Notification === "function";
}

export class Ringer {
  constructor() {
    this.ringing = false;
    this.audio = null; // an AudioContext, made on the agent's first gesture (autoplay rules)
    this.loop = 0;
    this.voices = [];
    this.notification = null;
    this.title = document.title;
    const unlock = () => this.#unlockAudio();
    window.addEventListener("pointerdown", unlock, { capture: true });
    window.addEventListener("keydown", unlock, { capture: true });
  }

  /** Start or stop ringing as the softphone's ringing calls come and go. */
  update(ringing) {
    if (ringing === this.ringing) return;
    this.ringing = ringing;
    if (ringing) {
      this.title = document.title;
      document.title = RINGING_TITLE;
      this.#startSound();
    } else {
      document.title = this.title;
      this.#stopSound();
      this.notification?.close();
      this.notification = null;
    }
  }

  /** Show a notification saying what rings (when the agent allowed notifications). */
  notify(text) {
    if (!this.ringing || !notificationsSupported() || Notification.permission !== "granted") return;
    this.notification?.close();
    try {
      const notification = new Notification(text, {
        body: "Warmline: answer in the console.",
        tag: "warmline-ringing",
        requireInteraction: true,
      });
      notification.addEventListener("click", () => {
        window.focus();
        notification.close();
      });
      this.notification = notification;
    } catch {
      this.notification = null; // some browsers allow notifications from a service worker only
    }
  }

  #unlockAudio() {
    this.audio = resumeAudio(this.audio);
  }

  #startSound() {
    if (!this.audio) this.#unlockAudio();
    this.#cycle();
    this.loop = setInterval(() => this.#cycle(), CYCLE_MS);
  }

  #cycle() {
    const audio = this.audio;
    if (!audio || audio.state === "closed") return;
    const start = audio.currentTime + 0.05;
    const gain = audio.createGain();
    gain.gain.setValueAtTime(0, start);
    for (const [on, off] of BURSTS) {
      gain.gain.setValueAtTime(0, start + on);
      gain.gain.linearRampToValueAtTime(0.15, start + on + 0.02);
      gain.gain.setValueAtTime(0.15, start + off - 0.02);
      gain.gain.linearRampToValueAtTime(0, start + off);
    }
    gain.connect(audio.destination);
    const end = start + BURSTS[BURSTS.length - 1][1];
    for (const frequency of [440, 480]) {
      const oscillator = audio.createOscillator();
      oscillator.frequency.value = frequency;
      oscillator.connect(gain);
      oscillator.start(start);
      oscillator.stop(end);
      this.voices.push(oscillator);
      oscillator.addEventListener("ended", () => {
        this.voices = this.voices.filter((v) => v !== oscillator);
      });
    }
  }

  #stopSound() {
    clearInterval(this.loop);
    this.loop = 0;
    for (const oscillator of this.voices) {
      try {
        oscillator.stop();
      } catch {
        // already stopped
      }
    }
    this.voices = [];
  }
}

/** An AudioContext made (or resumed) on a user's gesture, as autoplay rules want;
 * null where there is no Web Audio. */
function resumeAudio(audio) {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  if (!audio) {
    try {
      audio = new Context();
    } catch {
      return null;
    }
  }
  if (audio.state === "suspended") audio.resume().catch(() => {});
  return audio;
}

/** A short two-note chime (the supervisor console's sound for a new alert), played
 * with Web Audio once the page has had a gesture to unlock it. */
export class Chime {
  constructor() {
    this.audio = null;
    const unlock = () => this.unlock();
    window.addEventListener("pointerdown", unlock, { capture: true });
    window.addEventListener("keydown", unlock, { capture: true });
  }

  unlock() {
    this.audio = resumeAudio(this.audio);
  }

  play() {
    const audio = this.audio;
    if (!audio || audio.state === "closed") return;
    const start = audio.currentTime + 0.05;
    // Two 0.18 s notes, high then lower: heard, not alarming.
    for (const [offset, frequency] of [[0, 880], [0.22, 660]]) {
      const gain = audio.createGain();
      const at = start + offset;
      gain.gain.setValueAtTime(0, at);
      gain.gain.linearRampToValueAtTime(0.12, at + 0.02);
      gain.gain.setValueAtTime(0.12, at + 0.16);
      gain.gain.linearRampToValueAtTime(0, at + 0.18);
      gain.connect(audio.destination);
      const oscillator = audio.createOscillator();
      oscillator.frequency.value = frequency;
      oscillator.connect(gain);
      oscillator.start(at);
      oscillator.stop(at + 0.2);
    }
  }
}
