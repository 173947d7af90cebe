"""Callbacks in a real browser (headless Chromium) against a real `warmline serve` in
demo mode and the Twilio simulator (SPEC §9): a caller presses 1 at the arrival offer
and their callback waits in line, marked as one on the supervisor's queue; the agent's
phone rings showing "Callback to <number>"; once answered the number is dialed, rings
out, and the agent sees "No answer" with Try again; trying again connects the call,
which the supervisor's console shows as a callback. A message another caller left is
called back from the voicemails card and closed with a disposition. Screenshots land
in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.console.web.test_views_browser import go_available, no_problems
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
DISPOSITIONS = ["Resolved", "No answer"]
CALLER = "+12025550143"  # dialable from the test caller ID's region (US)
CALLER_SHOWN = "+1 (202) 555-0143"
MESSENGER = "+12025550144"
MESSENGER_SHOWN = "+1 (202) 555-0144"


async def until_in_line(boss: Watched, kinds: list[str]) -> None:
    """The supervisor's queue card shows entries of these kinds, in order."""
    items = boss.page.get_by_test_id("queue-item")
    await expect(items).to_have_count(len(kinds), timeout=20_000)
    for i, kind in enumerate(kinds):
        await expect(items.nth(i)).to_have_attribute("data-kind", kind)


def callback_world(redis_server: EmbeddedRedis, redis: Redis, log_dir: Path):
    """Demo mode, callbacks offered whenever a caller must wait, two dials each."""
    return demo_world(
        redis_server,
        redis,
        log_dir,
        USERS,
        time_scale=0.25,
        CALLBACK_OFFER_SECONDS="0",
        CALLBACK_ATTEMPTS="2",
        DISPOSITIONS=",".join(DISPOSITIONS),
    )


async def test_a_callback_rings_the_agent_fails_no_answer_then_connects_on_retry(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        callback_world(redis_server, redis, tmp_path) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        boss = await open_page(browser, app, "boss", width=1440, height=900)

        # Alice is offline, so the caller must wait: offered a callback, they press 1
        # and hang up; their callback keeps their place in line.
        sim.person(CALLER, answer=False)  # the first dial rings out
        await sim.call_in(CALLER, keys="1")
        await until_in_line(boss, ["callback"])
        queued = boss.page.get_by_test_id("queue-item").first
        await expect(queued).to_contain_text(CALLER_SHOWN)
        await expect(queued.get_by_test_id("queue-kind")).to_have_text("Callback")
        await expect(alice.page.get_by_test_id("queue-item").first).to_contain_text("Callback")

        # Alice goes available: her phone rings first, for the callback.
        await go_available(alice, idle=False)
        incoming = alice.page.get_by_test_id("incoming")
        await expect(incoming).to_be_visible(timeout=20_000)
        await expect(incoming).to_have_attribute("data-kind", "callback")
        await expect(incoming.locator(".eyebrow")).to_have_text("Callback")
        await expect(incoming.get_by_test_id("caller")).to_have_text(f"Callback to {CALLER_SHOWN}")
        await expect(alice.page.locator("#alerter")).to_contain_text(f"Callback to {CALLER_SHOWN}")
        await screenshot(alice, "agent-callback-ringing")

        # She answers: the number is dialed, rings out; she sees why, with Try again.
        await alice.page.get_by_role("button", name="Answer").click()
        dialing = alice.page.get_by_test_id("callback-call")
        await expect(dialing).to_be_visible()
        await expect(dialing.get_by_test_id("caller")).to_have_text(f"Callback to {CALLER_SHOWN}")
        await expect(dialing).to_have_attribute("data-status", "dialing")
        state = dialing.get_by_test_id("callback-state")
        await expect(state).to_have_text(f"Calling {CALLER_SHOWN}… (attempt 1 of 2)")
        card = boss.page.get_by_test_id("conference").filter(has_text=f"Callback to {CALLER_SHOWN}")
        await expect(card).to_be_visible()
        await expect(card.get_by_test_id("callback-status")).to_contain_text("Dialing the number")
        await expect(state).to_have_text("No answer · attempt 1 of 2", timeout=30_000)
        await expect(dialing).to_have_attribute("data-status", "waiting")
        await expect(alice.page.locator("#alerter")).to_contain_text("No answer")
        await expect(alice.page.get_by_test_id("participant-customer")).to_have_count(0)
        await expect(alice.page.locator("#transfer-card")).to_be_hidden()  # nobody to hand over
        options = dialing.get_by_label("Disposition").locator("option")
        await expect(options).to_have_text(["Choose…", *DISPOSITIONS])
        await expect(card.get_by_test_id("callback-status")).to_contain_text("last: no-answer")
        await screenshot(alice, "agent-callback-no-answer")

        # Now someone picks up: Try again connects, and the live call card is the usual one.
        sim.person(CALLER, answer=True, after=0.5)
        await dialing.get_by_role("button", name=f"Try again: call {CALLER_SHOWN}").click()
        live = alice.page.get_by_test_id("live-call")
        await expect(live).to_be_visible(timeout=20_000)
        await expect(live.get_by_test_id("caller")).to_have_text(CALLER_SHOWN)
        await expect(alice.page.get_by_test_id("participant-customer")).to_contain_text(
            CALLER_SHOWN
        )
        await expect(live.get_by_role("button", name="Hold customer")).to_be_visible()
        await expect(alice.page.locator("#transfer-card")).to_be_visible()
        await expect(card.get_by_test_id("callback-status")).to_contain_text("Connected")
        await expect(card.locator("[data-testid='participant-customer']")).to_be_visible()
        await screenshot(boss, "supervisor-callback-connected")

        # She hangs up: the call is over; the callback leaves every console.
        await live.get_by_role("button", name="Hang up").click()
        await expect(live).to_be_hidden()
        await expect(alice.page.get_by_test_id("callback-ended")).to_have_text(
            f"Callback to {CALLER_SHOWN} ended."
        )
        await expect(boss.page.get_by_test_id("queue-item")).to_have_count(0)
        await expect(alice.page.locator("#presence-pill")).to_have_text("Available")

        await no_problems(alice, boss)


async def test_a_voicemail_is_called_back_from_its_card_and_closed(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        callback_world(redis_server, redis, tmp_path) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        boss = await open_page(browser, app, "boss", width=1440, height=900)
        sim.person(MESSENGER, answer=False)  # never connects: the callback is closed

        # Alice is offline: offered a callback, the caller presses 2 and leaves a message.
        await sim.call_in(MESSENGER, keys="2", message_seconds=2)
        vm = alice.page.get_by_test_id("voicemail")
        await expect(vm).to_have_count(1, timeout=30_000)
        call_back = vm.get_by_role("button", name=f"Call back {MESSENGER_SHOWN}")
        await expect(call_back).to_be_enabled()
        await expect(
            boss.page.get_by_test_id("voicemail").get_by_role("button", name="Call back")
        ).to_have_count(0)  # a supervisor's phone is for monitoring

        # Call back claims it and rings her phone, for a callback to that number.
        await call_back.click()
        await expect(vm.get_by_test_id("voicemail-status")).to_have_text("Claimed by you")
        await expect(
            boss.page.get_by_test_id("voicemail").get_by_test_id("voicemail-status")
        ).to_have_text("Claimed by alice")
        incoming = alice.page.get_by_test_id("incoming")
        await expect(incoming).to_be_visible(timeout=20_000)
        await expect(incoming.get_by_test_id("caller")).to_have_text(
            f"Callback to {MESSENGER_SHOWN}"
        )
        await expect(call_back).to_be_disabled()  # one call at a time
        await alice.page.get_by_role("button", name="Answer").click()
        serving = alice.page.get_by_test_id("callback-call")
        await expect(serving).to_be_visible()
        await expect(serving.get_by_test_id("caller")).to_have_text(
            f"Callback to {MESSENGER_SHOWN}"
        )
        await expect(
            boss.page.get_by_test_id("conference").filter(has_text=f"Callback to {MESSENGER_SHOWN}")
        ).to_be_visible()

        # Closing needs a disposition; with one, her call ends and a note says how.
        close = serving.get_by_role("button", name="Close")
        await close.click()
        await expect(serving.get_by_role("alert")).to_have_text(
            "Choose a disposition before closing the callback."
        )
        await expect(serving.get_by_label("Disposition")).to_be_focused()
        await serving.get_by_label("Disposition").select_option("No answer")
        await close.click()
        await expect(serving).to_be_hidden()
        await expect(alice.page.get_by_test_id("callback-ended")).to_have_text(
            f"Callback to {MESSENGER_SHOWN} closed: No answer."
        )
        await expect(alice.page.locator("#announcer")).to_have_text(
            f"Callback to {MESSENGER_SHOWN} closed: No answer."
        )
        await expect(alice.page.locator("#presence-pill")).not_to_have_text("On a call")
        await no_problems(alice, boss)
