"""The agent's day in a real browser (headless Chromium) against a real `warmline serve`
in demo mode and the Twilio simulator (SPEC §10): a break with its reason, seen by the
supervisor; wrap-up after a call with a disposition, notes and Ready; a ringing phone
that changes the tab's title, plays a ring and shows a notification (or says once that
notifications are blocked); keyboard shortcuts that answer, mute and hang up but never
fire while typing; numbers of other countries formatted as theirs. Screenshots land in
test-artifacts/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.console.web.test_views_browser import go_available, no_problems, until_js
from tests.support.browser import (
    Watched,
    chromium,
    demo_world,
    open_page,
    requires_chromium,
    screenshot,
)
from warmline.embedded_redis import EmbeddedRedis

expect = pytest.importorskip("playwright.async_api").expect
pytestmark = [requires_chromium, pytest.mark.timeout(180)]

USERS = {"alice": "agent", "boss": "supervisor"}
DISPOSITIONS = ["Resolved", "Escalated"]
CALLER = "+15557654321"
CALLER_SHOWN = "+1 (555) 765-4321"
LONDON = "+442071838750"
LONDON_SHOWN = "+44 20 7183 8750"  # libphonenumber-js's international format
TITLE = "Agent · Warmline"
RINGING_TITLE = "☎ Ringing — Warmline"

# A stand-in for window.Notification (installed before any page script): it records
# each notification made, and answers requestPermission() with `answer`.
NOTIFICATION_STUB = """
(() => {
  const state = { permission: %(permission)s, answer: %(answer)s, asked: 0, shown: [] };
  window.__notify = state;
  class StubNotification extends EventTarget {
    constructor(title, options = {}) {
      super();
      this.title = title;
      this.options = options;
      this.closed = false;
      state.shown.push(this);
    }
    close() { this.closed = true; }
    static get permission() { return state.permission; }
    static async requestPermission() {
      state.asked += 1;
      state.permission = state.answer;
      return state.answer;
    }
  }
  window.Notification = StubNotification;
})();
"""

# Counts the oscillators the page starts (the ring is played with Web Audio).
COUNT_OSCILLATORS = """
(() => {
  window.__oscillators = 0;
  const create = BaseAudioContext.prototype.createOscillator;
  BaseAudioContext.prototype.createOscillator = function () {
    window.__oscillators += 1;
    return create.call(this);
  };
})();
"""


async def with_notifications(agent: Watched, permission: str, answer: str) -> None:
    """Reload the agent's page with the Notification stub and the oscillator counter."""
    stub = NOTIFICATION_STUB % {"permission": json.dumps(permission), "answer": json.dumps(answer)}
    await agent.page.context.add_init_script(stub)
    await agent.page.context.add_init_script(COUNT_OSCILLATORS)
    await agent.page.reload()
    await agent.page.locator("#connection[data-state='live']").wait_for()


def day_world(redis_server: EmbeddedRedis, redis: Redis, log_dir: Path, wrap_up: int = 0):
    return demo_world(
        redis_server,
        redis,
        log_dir,
        USERS,
        WRAP_UP_SECONDS=str(wrap_up),
        DISPOSITIONS=",".join(DISPOSITIONS),
        BREAK_REASONS="Lunch,Training",
    )


async def test_a_break_with_its_reason_then_back_seen_by_the_supervisor(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        day_world(redis_server, redis, tmp_path) as (_sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        boss = await open_page(browser, app, "boss", width=1440, height=900)
        page = alice.page
        await go_available(alice)

        # A break needs a reason: the button says so rather than guess one.
        await page.get_by_role("button", name="Take a break").click()
        await expect(page.locator("#presence-help")).to_have_text("Choose a reason for the break.")
        await expect(page.get_by_label("Break reason")).to_be_focused()
        options = page.get_by_label("Break reason").locator("option")
        await expect(options).to_have_text(["Choose a reason…", "Lunch", "Training"])

        await page.get_by_label("Break reason").select_option("Lunch")
        await page.get_by_role("button", name="Take a break").click()
        await expect(page.locator("#presence-pill")).to_have_text("On break · Lunch")
        await expect(page.locator("#presence-pill")).to_have_attribute("data-status", "break")
        switch = page.get_by_role("switch", name="Available for calls")
        await expect(switch).to_have_attribute("aria-checked", "false")
        await expect(page.locator("#presence-help")).to_contain_text("On a break (Lunch)")
        member = boss.page.get_by_test_id("member-alice")
        await expect(member.get_by_test_id("member-status")).to_have_text("On break · Lunch")
        # The supervisor's timer counts from when the break began, as alice's own does.
        since = await page.locator("#presence-since").get_attribute("data-since")
        await expect(member.get_by_test_id("member-time")).to_have_attribute("data-since", since)
        await screenshot(alice, "agent-on-break")
        await screenshot(boss, "supervisor-agent-on-break")

        # Back from the break: available again, on both consoles.
        await page.get_by_role("button", name="End break").click()
        await expect(page.locator("#presence-pill")).to_have_text("Available")
        await expect(switch).to_have_attribute("aria-checked", "true")
        await expect(member.get_by_test_id("member-status")).to_have_text("Available")
        await expect(page.get_by_label("Break reason")).to_be_visible()
        await no_problems(alice, boss)


async def test_a_ringing_call_is_noticed_answered_by_key_then_wrapped_up(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        day_world(redis_server, redis, tmp_path, wrap_up=120) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        boss = await open_page(browser, app, "boss", width=1440, height=900)
        page = alice.page
        await with_notifications(alice, "default", "granted")
        await expect(page).to_have_title(TITLE)

        # Going available asks for notifications, saying why; granted, the line goes.
        await go_available(alice)
        await until_js(page, "window.__notify.asked", 1)
        await expect(page.locator("#notify-help")).to_be_hidden()

        # A call rings: title, ring and a notification that brings the tab forward.
        await sim.call_in(CALLER)
        incoming = page.get_by_test_id("incoming")
        await expect(incoming).to_be_visible(timeout=20_000)
        await expect(page).to_have_title(RINGING_TITLE)
        await until_js(
            page,
            "window.__notify.shown.map((n) => n.title)",
            [f"Incoming call from {CALLER_SHOWN}"],
        )
        assert await page.evaluate("window.__oscillators") >= 2  # the ring's two tones
        await page.evaluate("window.__notify.shown[0].dispatchEvent(new Event('click'))")
        await until_js(page, "window.__notify.shown[0].closed", True)

        # "?" lists the shortcuts; Escape closes the list.
        await page.keyboard.press("?")
        dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
        await expect(dialog).to_be_visible()
        await expect(dialog.get_by_test_id("shortcuts")).to_contain_text("Answer the ringing call")
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()

        # A answers, M mutes, X hangs up; the title comes back once it stops ringing.
        await page.keyboard.press("a")
        live = page.get_by_test_id("live-call")
        await expect(live).to_be_visible()
        await expect(page).to_have_title(TITLE)
        await page.keyboard.press("m")
        await expect(live.get_by_role("button", name="Unmute")).to_have_attribute(
            "aria-pressed", "true"
        )
        await page.keyboard.press("x")
        await expect(live).to_be_hidden()

        # Wrap-up: counted down, shown to the supervisor; calls do not ring meanwhile.
        card = page.locator("#wrapup-card")
        await expect(card).to_be_visible()
        await expect(page.locator("#presence-pill")).to_have_text("Wrap-up")
        await expect(card.locator("#wrapup-call")).to_have_text(f"Call with {CALLER_SHOWN}")
        # It counts down to 120 s after wrap-up began.
        since = int(await page.locator("#presence-since").get_attribute("data-since") or 0)
        await expect(card.get_by_test_id("wrapup-left")).to_have_attribute(
            "data-until", str(since + 120_000)
        )
        await expect(card.get_by_test_id("wrapup-left")).to_have_text(re.compile(r"^[12]:\d\d$"))
        member = boss.page.get_by_test_id("member-alice")
        await expect(member.get_by_test_id("member-status")).to_have_text("Wrap-up")
        await expect(card.get_by_role("button", name="Dismiss")).to_be_hidden()

        # Typing the notes presses no shortcut (v would switch availability, x hang up).
        notes = "Customer wants a callback; vax x-ray, AMD?"
        await card.get_by_label("Notes").press_sequentially(notes)
        await expect(card.get_by_label("Notes")).to_have_value(notes)
        await expect(page.locator("#presence-pill")).to_have_text("Wrap-up")
        await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_hidden()

        # Saving needs a disposition; Ready saves the chosen one, then makes her available.
        await card.get_by_role("button", name="Save").click()
        await expect(card.get_by_role("alert")).to_have_text("Choose a disposition before saving.")
        await card.get_by_label("Disposition").select_option("Resolved")
        await screenshot(alice, "agent-wrap-up")
        async with page.expect_response(lambda r: "/wrap-up" in r.url) as answer:
            await card.get_by_role("button", name="Ready").click()
        response = await answer.value
        assert response.status == 200
        given = await response.json()
        assert (given["agent"], given["disposition"], given["notes"]) == (
            "alice",
            "Resolved",
            notes,
        )
        assert response.url.endswith(f"/api/calls/{given['call']}/wrap-up")
        await expect(page.locator("#presence-pill")).to_have_text("Available")
        await expect(card).to_be_hidden()
        await expect(member.get_by_test_id("member-status")).to_have_text("Available")
        await no_problems(alice, boss)


async def test_notifications_denied_are_said_once_and_numbers_abroad_are_formatted(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        day_world(redis_server, redis, tmp_path) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        page = alice.page
        await with_notifications(alice, "default", "denied")
        await go_available(alice)
        help_line = page.locator("#notify-help")
        await expect(help_line).to_have_text(
            "Notifications are blocked for this site, so a ringing call shows only in this "
            "tab (its ring and title)."
        )

        # A London number rings: formatted as such, the title changes, no notification.
        await sim.call_in(LONDON)
        incoming = page.get_by_test_id("incoming")
        await expect(incoming).to_be_visible(timeout=20_000)
        await expect(incoming.get_by_test_id("caller")).to_have_text(LONDON_SHOWN)
        await expect(page).to_have_title(RINGING_TITLE)
        await expect(page.locator("#alerter")).to_contain_text(f"Incoming call from {LONDON_SHOWN}")
        assert await page.evaluate("window.__notify.shown.length") == 0
        assert await page.evaluate("window.__notify.asked") == 1  # never asked again
        await expect(help_line).to_have_count(1)

        # Answered with the mouse; keys typed in the transfer note do nothing.
        await incoming.get_by_role("button", name="Answer").click()
        live = page.get_by_test_id("live-call")
        await expect(live).to_be_visible()
        await expect(page).to_have_title(TITLE)
        await page.get_by_label("Hand-off note").press_sequentially("x marks the spot")
        await expect(live).to_be_visible()
        await expect(live.get_by_role("button", name="Mute")).to_have_attribute(
            "aria-pressed", "false"
        )
        # Nor does a key with a modifier.
        await page.locator("body").press("Control+x")
        await expect(live).to_be_visible()
        await live.get_by_role("button", name="Hang up").click()
        await expect(live).to_be_hidden()

        # Without a wrap-up period she is available at once, offered the disposition anyway.
        card = page.locator("#wrapup-card")
        await expect(card).to_be_visible()
        await expect(page.locator("#presence-pill")).to_have_text("Available")
        await expect(card.locator("#wrapup-call")).to_have_text(f"Call with {LONDON_SHOWN}")
        await expect(card.get_by_role("button", name="Ready")).to_be_hidden()
        await card.get_by_label("Disposition").select_option("Escalated")
        async with page.expect_response(lambda r: "/wrap-up" in r.url) as answer:
            await card.get_by_role("button", name="Save").click()
        assert (await answer.value).status == 200
        await expect(card).to_be_hidden()
        await expect(page.locator("#announcer")).to_have_text("Saved: Escalated.")
        await no_problems(alice)
