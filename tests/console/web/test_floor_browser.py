"""The supervisor's floor and more transfers in a real browser (headless Chromium)
against a real app in demo mode and the Twilio simulator (SPEC §10): a blind transfer
picked on the agent view, the colleague's card telling who transfers and why before
their phone even rings; an alert on the supervisor's banner, with its sound; a help
request taken with one click on Whisper; the directory kept by a supervisor; a
transfer to any agent waiting for a free one, and an external party dialed in.
Screenshots land in test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.console.web.test_views_browser import (
    CALLER,
    CALLER_SHOWN,
    answer_customer,
    go_available,
    no_problems,
    until_js,
)
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

USERS = {"alice": "agent", "bob": "agent", "boss": "supervisor"}
SECOND_CALLER = "+15557654322"
EXTERNAL = "+12025550199"  # dialable from the test caller ID's region (US)
EXTERNAL_SHOWN = "+1 (202) 555-0199"

# Holds back the simulator softphone's "incoming" events (its ring) until the test
# calls window.__rings.release(): what the view shows before the phone rings is then
# what the app's own state told it.
HOLD_RINGS = """
(() => {
  const held = [];
  window.__rings = {
    hold: true,
    release() {
      this.hold = false;
      for (const [handler, message] of held.splice(0)) handler(message);
    },
  };
  const add = EventSource.prototype.addEventListener;
  EventSource.prototype.addEventListener = function (type, handler, options) {
    if (type !== "incoming") return add.call(this, type, handler, options);
    return add.call(this, type, (message) => {
      if (window.__rings.hold) held.push([handler, message]);
      else handler(message);
    }, options);
  };
})();
"""

# Counts the oscillators the page starts (the alert's chime is played with Web Audio).
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


async def reload_with(watched: Watched, script: str) -> None:
    await watched.page.context.add_init_script(script)
    await watched.page.reload()
    await watched.page.locator("#connection[data-state='live']").wait_for()


async def test_a_blind_transfer_rings_the_colleague_with_everything_at_once(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        demo_world(redis_server, redis, tmp_path, USERS) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        bob = await open_page(browser, app, "bob", width=390, height=844)  # a phone
        boss = await open_page(browser, app, "boss", width=1440, height=900)
        await reload_with(bob, HOLD_RINGS)

        # The supervisor puts a number in the directory: an agent's External choice lists it.
        directory = boss.page.locator("#directory-card")
        await directory.get_by_label("Name").fill("Billing desk")
        await directory.get_by_label("Number", exact=True).fill("+1 202-555-0199")  # EXTERNAL
        await directory.get_by_role("button", name="Add number").click()
        await expect(directory.get_by_test_id("directory-entry")).to_contain_text("Billing desk")

        await go_available(alice)
        await sim.call_in(CALLER)
        await answer_customer(alice)
        page = alice.page
        await page.get_by_role("radio", name="External").check()
        options = page.get_by_label("Number", exact=True).locator("option")
        await expect(options).to_have_text(["Choose a number…", "Billing desk — +1 (202) 555-0199"])
        await expect(page.get_by_label("Leave after dialing")).to_be_visible()
        await expect(page.get_by_label("Colleague")).to_be_hidden()

        # Blind to bob, with a note: alice's own call ends once bob is rung.
        await go_available(bob)
        await page.get_by_role("radio", name="Blind").check()
        await expect(page.get_by_label("Leave after dialing")).to_be_hidden()
        await expect(page.locator("#transfer-mode-help")).to_contain_text("Your call ends")
        note = "Disputed invoice 4471, already verified"
        await page.get_by_label("Colleague").select_option("bob")
        await page.get_by_label("Hand-off note").fill(note)
        await page.get_by_role("button", name="Start transfer").click()
        await expect(page.get_by_test_id("live-call")).to_be_hidden(timeout=15_000)
        await expect(page.locator("#presence-pill")).not_to_have_text("On a call")

        # Bob's card tells who, why and whom while his softphone has not rung yet.
        incoming = bob.page.get_by_test_id("incoming")
        await expect(incoming).to_be_visible()
        await expect(incoming).to_have_attribute("data-phone", "waiting")
        await expect(incoming).to_contain_text("Transfer from alice")
        await expect(incoming.get_by_test_id("note")).to_have_text(note)
        await expect(incoming.get_by_test_id("caller")).to_have_text(CALLER_SHOWN)
        answer = bob.page.get_by_role("button", name="Answer")
        await expect(answer).to_be_disabled()
        await expect(bob.page.locator("#presence-pill")).to_have_text("Ringing")
        live = boss.page.get_by_test_id("transfer-live")
        await expect(live).to_contain_text("alice → bob")
        await expect(live.get_by_test_id("transfer-mode")).to_have_text("Blind")
        await screenshot(bob, "agent-blind-transfer-before-ring")

        # The softphone rings: Answer works; bob has the customer.
        await bob.page.evaluate("window.__rings.release()")
        await expect(incoming).to_have_attribute("data-phone", "ringing")
        await expect(answer).to_be_enabled()
        await answer.click()
        await expect(bob.page.get_by_test_id("live-call")).to_be_visible()
        await expect(bob.page.get_by_test_id("participant-customer")).to_contain_text(CALLER_SHOWN)
        done = boss.page.get_by_test_id("transfer-done").first
        await expect(done).to_contain_text("Completed")
        await expect(done).to_contain_text("alice → bob")
        await expect(done.get_by_test_id("transfer-mode")).to_have_text("Blind")
        card = boss.page.get_by_test_id("conference").filter(has_text=CALLER_SHOWN)
        await expect(card.locator("[data-agent='bob']")).to_be_visible()
        await expect(card.locator("[data-agent='alice']")).to_have_count(0)
        await screenshot(boss, "supervisor-blind-transfer")
        await no_problems(alice, bob, boss)


async def test_an_alert_shows_on_the_banner_with_its_sound(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        demo_world(redis_server, redis, tmp_path, USERS, ALERT_QUEUE_SIZE="1") as (sim, app),
        chromium() as browser,
    ):
        boss = await open_page(browser, app, "boss", width=1440, height=900)
        await reload_with(boss, COUNT_OSCILLATORS)
        page = boss.page
        banner = page.locator("#alerts-card")
        await expect(banner).to_have_attribute("data-state", "clear")
        await expect(page.locator("#alerts-none")).to_have_text("None up now.")
        await expect(page.locator("#alerts-none")).to_be_visible()

        # The sound is off by default; switched on, it plays a sample and is remembered.
        sound = page.get_by_label("Sound on new alerts")
        await expect(sound).not_to_be_checked()
        await sound.check()
        await until_js(page, "localStorage.getItem('warmline.alertSound')", "on")
        sample = await page.evaluate("window.__oscillators")
        assert sample >= 2

        # Nobody available and two callers in line: over ALERT_QUEUE_SIZE=1.
        await sim.call_in(CALLER)
        await sim.call_in(SECOND_CALLER)
        alert = page.locator("[data-testid='alert'][data-kind='queue-size']")
        await expect(alert).to_be_visible(timeout=20_000)
        await expect(alert.get_by_role("alert")).to_have_text("2 waiting (over 1)")
        await expect(alert).to_contain_text(re.compile(r"since \d"))
        await expect(banner).to_have_attribute("data-state", "up")
        await expect(page.locator("#alerts-none")).to_be_hidden()
        await until_js(page, f"window.__oscillators >= {sample + 2}", True)
        await screenshot(boss, "supervisor-alert")

        # Reloaded, the alert up comes from the snapshot (not announced as new), and
        # the sound is still on.
        await page.reload()
        await page.locator("#connection[data-state='live']").wait_for()
        await expect(alert).to_have_text(re.compile(r"^2 waiting \(over 1\)"))
        await expect(alert.get_by_role("alert")).to_have_count(0)
        await expect(page.get_by_label("Sound on new alerts")).to_be_checked()
        await no_problems(boss)


async def test_a_help_request_is_taken_with_whisper(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        demo_world(redis_server, redis, tmp_path, USERS) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        boss = await open_page(browser, app, "boss", width=1440, height=900)
        page = alice.page
        help_card = page.locator("#help-card")
        await expect(help_card).to_be_hidden()  # not on a call
        await go_available(alice)
        await sim.call_in(CALLER)
        await answer_customer(alice)

        # Asking needs words; asked, then canceled, then asked again.
        await expect(help_card).to_be_visible()
        await help_card.get_by_role("button", name="Ask for help").click()
        await expect(help_card.get_by_role("alert")).to_have_text("Say what you need help with.")
        await help_card.get_by_label("What do you need help with?").fill("Wants a refund")
        await help_card.get_by_role("button", name="Ask for help").click()
        state = page.get_by_test_id("help-state")
        await expect(state).to_have_text(
            "You asked for help: “Wants a refund”. Waiting for a supervisor…"
        )
        requests = boss.page.get_by_test_id("help-request")
        await expect(requests).to_have_count(1)
        await expect(page.get_by_role("button", name="Cancel request")).to_be_focused()
        await page.get_by_role("button", name="Cancel request").click()
        await expect(state).to_have_text("You canceled your request for help.")
        await expect(requests).to_have_count(0)
        await expect(boss.page.locator("#help-card")).to_be_hidden()

        text = "Refund above my limit, customer upset"
        await help_card.get_by_label("What do you need help with?").fill(text)
        await help_card.get_by_label("What do you need help with?").press("Enter")
        await expect(state).to_contain_text(text)

        # The supervisor sees who, on which call, what and since when.
        request = requests.first
        await expect(request).to_contain_text("alice")
        await expect(request).to_contain_text(CALLER_SHOWN)
        await expect(request.get_by_test_id("help-text")).to_have_text(text)
        await expect(request).to_contain_text(re.compile(r"asked \d+:\d\d ago"))
        await expect(boss.page.locator("#help-count")).to_have_text("1")
        await expect(boss.page.locator("#alerter")).to_contain_text("alice asks for help")
        card = boss.page.get_by_test_id("conference").filter(has_text=CALLER_SHOWN)
        await expect(card.get_by_test_id("help-inline")).to_contain_text(text)
        await screenshot(boss, "supervisor-help-request")

        # One click on Whisper: the supervisor coaches alice; she is told it was taken.
        await request.get_by_role("button", name="Whisper to alice").click()
        await expect(boss.page.get_by_test_id("monitoring")).to_contain_text("Coaching on")
        await expect(state).to_have_text("A supervisor is on it.")
        await expect(state).not_to_contain_text("whisper", ignore_case=True)
        await expect(requests).to_have_count(0)
        await expect(card.get_by_test_id("help-inline")).to_have_count(0)
        await expect(page.get_by_test_id("participant-supervisor")).to_contain_text("Coaching you")
        await expect(help_card.get_by_role("button", name="Ask for help")).to_be_visible()
        await screenshot(alice, "agent-help-taken")
        await no_problems(alice, boss)


async def test_the_directory_is_kept_by_a_supervisor(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        demo_world(redis_server, redis, tmp_path, USERS) as (_sim, app),
        chromium() as browser,
    ):
        boss = await open_page(browser, app, "boss", width=1440, height=900)
        page = boss.page
        card = page.locator("#directory-card")
        entries = card.get_by_test_id("directory-entry")
        await expect(card.locator(".empty")).to_contain_text("No numbers yet")

        # Both fields are needed, the number in E.164 (the server's rule, said at once).
        await card.get_by_role("button", name="Add number").click()
        await expect(card.get_by_role("alert")).to_have_text("Enter a name.")
        await expect(card.get_by_label("Name")).to_be_focused()
        await card.get_by_label("Name").fill("Billing desk")
        await card.get_by_label("Number", exact=True).fill("12345")
        await card.get_by_role("button", name="Add number").click()
        await expect(card.get_by_role("alert")).to_contain_text("E.164")
        await expect(card.get_by_label("Number", exact=True)).to_be_focused()
        await expect(entries).to_have_count(0)

        # Added: listed by name with the number formatted; the form is cleared.
        await card.get_by_label("Number", exact=True).fill("+44 20 7946 0958")
        await card.get_by_role("button", name="Add number").click()
        await expect(entries).to_have_count(1)
        await expect(entries.first).to_contain_text("Billing desk")
        await expect(entries.first).to_contain_text("+44 20 7946 0958")
        await expect(card.get_by_role("status")).to_have_text("Added Billing desk.")
        await expect(card.get_by_label("Name")).to_have_value("")
        await expect(card.get_by_role("alert")).to_be_hidden()
        await card.get_by_label("Name").fill("Escalations")
        await card.get_by_label("Number", exact=True).fill("+12025550100")
        await card.get_by_role("button", name="Add number").click()
        await expect(entries).to_have_count(2)
        await expect(entries.nth(1)).to_contain_text("Escalations")

        # It is the server's list: a reload shows the same.
        await page.reload()
        await expect(entries).to_have_count(2)
        await screenshot(boss, "supervisor-directory")

        await card.get_by_role("button", name="Remove Billing desk").click()
        await expect(entries).to_have_count(1)
        await expect(entries.first).to_contain_text("Escalations")
        await expect(card.get_by_role("status")).to_have_text("Removed Billing desk.")
        await page.reload()
        await expect(entries).to_have_count(1)
        await no_problems(boss)


async def test_a_transfer_waits_for_a_free_agent_then_an_external_party_joins(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        demo_world(redis_server, redis, tmp_path, USERS, BREAK_REASONS="Lunch") as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        bob = await open_page(browser, app, "bob", width=390, height=844)
        boss = await open_page(browser, app, "boss", width=1440, height=900)
        directory = boss.page.locator("#directory-card")
        await directory.get_by_label("Name").fill("Billing desk")
        await directory.get_by_label("Number", exact=True).fill(EXTERNAL)
        await directory.get_by_role("button", name="Add number").click()
        await expect(directory.get_by_test_id("directory-entry")).to_have_count(1)

        # Bob is signed in but on a break: a transfer to any agent waits for one.
        await go_available(bob)
        await bob.page.get_by_label("Break reason").select_option("Lunch")
        await bob.page.get_by_role("button", name="Take a break").click()
        await expect(bob.page.locator("#presence-pill")).to_have_text("On break · Lunch")
        await go_available(alice)
        await sim.call_in(CALLER)
        await answer_customer(alice)
        page = alice.page
        await expect(page.get_by_label("Colleague")).to_have_value("")  # any available agent
        await page.get_by_role("button", name="Start transfer").click()
        waiting = page.get_by_test_id("transfer-waiting")
        await expect(waiting).to_contain_text("Waiting for a free agent…")
        await expect(boss.page.get_by_test_id("transfer-live")).to_contain_text("alice → any agent")
        await page.get_by_role("button", name="Cancel transfer").click()
        await expect(waiting).to_be_hidden()
        await expect(page.locator("#transfer-progress")).to_contain_text("Transfer canceled.")
        await expect(page.get_by_test_id("live-call")).to_be_visible()

        # External: the directory's number is dialed into the call and answers.
        sim.person(EXTERNAL, answer=True, after=0.5)
        await page.get_by_role("radio", name="External").check()
        await page.get_by_label("Number", exact=True).select_option(EXTERNAL)
        await page.get_by_role("button", name="Start transfer").click()
        external = page.get_by_test_id("participant-external")
        await expect(external).to_contain_text(EXTERNAL_SHOWN, timeout=20_000)
        await expect(page.locator("#transfer-progress")).to_contain_text(
            f"{EXTERNAL_SHOWN} is with the customer"
        )
        card = boss.page.get_by_test_id("conference").filter(has_text=CALLER_SHOWN)
        boss_row = card.get_by_test_id("participant-external")
        await expect(boss_row).to_contain_text("External")
        await expect(boss_row).to_contain_text(EXTERNAL_SHOWN)
        await screenshot(boss, "supervisor-external-party")

        # Alice hands over and leaves: completed, the party stays with the customer.
        await page.get_by_role("button", name="Leave call").click()
        await expect(page.get_by_test_id("live-call")).to_be_hidden()
        done = boss.page.get_by_test_id("transfer-done").first
        await expect(done).to_contain_text("Completed")
        await expect(done).to_contain_text(f"alice → {EXTERNAL_SHOWN}")
        await expect(done.get_by_test_id("transfer-mode")).to_have_text("External")
        await expect(card.locator("[data-agent='alice']")).to_have_count(0)
        await expect(boss_row).to_be_visible()
        await no_problems(alice, bob, boss)
