"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright, against a
real app in demo mode and the Twilio simulator: the helpers the browser tests share.

Pages are watched for console errors, uncaught exceptions and Content-Security-
Policy violations; a test ends by asserting there were none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis

from console.domain.users import add_user
from simulator import Simulator
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN
from tests.support.servers import AppServer, app_server
from warmline.embedded_redis import EmbeddedRedis

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct horse battery"

try:
    from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None  # type: ignore[assignment]

requires_chromium = pytest.mark.skipif(
    CHROMIUM is None or async_playwright is None,
    reason="browser tests need Debian's chromium (apt-get install chromium) and playwright "
    "(pip install -e '.[test]'); CI installs both",
)

# Records CSP violations where the page cannot hide them (runs before any page script).
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


# A stand-in for the Twilio Voice SDK bundle (served in place of /vendor/twilio.min.js):
# the Device and Call surface softphone.js uses, recording what the page asked of it
# and letting a test play Twilio's side (incoming calls, token expiry, lost network).
FAKE_VOICE_SDK = """
(() => {
  class Emitter {
    constructor() { this.handlers = {}; }
    on(name, f) { (this.handlers[name] = this.handlers[name] || []).push(f); return this; }
    emit(name, ...args) { (this.handlers[name] || []).forEach((f) => f(...args)); }
  }
  class Call extends Emitter {
    constructor(sid, from, to) {
      super();
      this.parameters = { CallSid: sid, From: from, To: to };
      this.customParameters = new Map();
      this.log = [];
      this.muted = false;
    }
    accept() { this.log.push("accept"); this.emit("accept", this); }
    reject() { this.log.push("reject"); this.emit("reject"); }
    disconnect() { this.log.push("disconnect"); this.emit("disconnect", this); }
    mute(muted = true) {
      this.log.push(muted ? "mute" : "unmute");
      this.muted = muted;
      this.emit("mute", muted, this);
    }
    isMuted() { return this.muted; }
  }
  class Device extends Emitter {
    constructor(token, options) {
      super();
      this.token = token;
      this.options = options;
      this.state = "unregistered";
      this.registrations = 0;
      this.tokens = [token];
      window.__twilio.device = this;
    }
    async register() {
      this.registrations += 1;
      this.state = "registering";
      this.emit("registering");
      this.state = "registered";
      this.emit("registered");
    }
    updateToken(token) { this.token = token; this.tokens.push(token); }
    loseNetwork() { this.state = "unregistered"; this.emit("unregistered"); }
  }
  window.__twilio = {
    device: null,
    calls: {},
    incoming(sid, from, to) {
      const call = new Call(sid, from, to);
      this.calls[sid] = call;
      this.device.emit("incoming", call);
      return sid;
    },
  };
  window.Twilio = { Device, Call };
})();
"""


@dataclass
class Watched:
    """A page and everything that went wrong on it."""

    page: Page
    name: str
    errors: list[str] = field(default_factory=list)

    async def problems(self) -> list[str]:
        violations = await self.page.evaluate("window.__cspViolations || []")
        return [*self.errors, *(f"CSP: {v}" for v in violations)]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    assert async_playwright is not None and CHROMIUM is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # Root in a container has no user namespaces for Chromium's sandbox.
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(
    browser: Browser,
    app: AppServer,
    username: str,
    width: int = 1280,
    height: int = 860,
    fake_voice_sdk: bool = False,
) -> Watched:
    """A fresh browser context (own cookies) signed in as ``username`` through the form."""
    context: BrowserContext = await browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=1,
        color_scheme="light",
        reduced_motion="reduce",
    )
    await context.add_init_script(WATCH_CSP)
    if fake_voice_sdk:
        await context.route(
            "**/vendor/twilio.min.js",
            lambda route: route.fulfill(body=FAKE_VOICE_SDK, content_type="text/javascript"),
        )
    page = await context.new_page()
    page.set_default_timeout(10_000)
    watched = Watched(page, username)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            watched.errors.append(f"console: {message.text} ({where})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.errors.append(f"uncaught: {error}"))
    await page.goto(app.url + "/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/login" not in url)
    await page.locator("#connection[data-state='live']").wait_for()
    return watched


@asynccontextmanager
async def demo_world(
    redis_server: EmbeddedRedis,
    redis: Redis,
    log_dir: Path,
    users: dict[str, str],
    demo: bool = True,
    time_scale: float = 1.0,
    **extra_env: str,
) -> AsyncIterator[tuple[Simulator, AppServer]]:
    """The simulator and a real app, with ``users`` ({name: role}) created and
    ``extra_env`` set. In demo mode browsers' softphones talk to the simulator;
    otherwise the app names the Twilio Voice SDK and the simulator only plays Twilio's
    REST API and callbacks. ``time_scale`` speeds the simulator's prompts up (< 1)."""
    sim = Simulator("http://127.0.0.1:9", ACCOUNT_SID, AUTH_TOKEN, time_scale=time_scale)
    await sim.start()
    try:
        env = {"RING_TIMEOUT_SECONDS": "20", **extra_env}
        if demo:
            env["WARMLINE_SIMULATOR_URL"] = sim.base_url
        async with app_server(redis_server.url, sim.base_url, log_dir, **env) as app:
            sim.point_at(app.url)
            for name, role in users.items():
                await add_user(redis, name, role, PASSWORD)
            try:
                yield sim, app
            finally:
                crash(app)
    finally:
        await sim.stop()


def crash(app: AppServer) -> None:
    """Kill the app and its Hypercorn worker at once (a crashed dyno, a dead network):
    a graceful stop would wait out Hypercorn's graceful timeout for open sockets."""
    pid = app.process.pid
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:  # the parent pid: a worker of this app
                os.kill(int(stat.parent.name), signal.SIGKILL)
    app.process.kill()
    app.process.wait()


async def screenshot(watched: Watched, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await watched.page.screenshot(path=str(path), full_page=True)
    return path
