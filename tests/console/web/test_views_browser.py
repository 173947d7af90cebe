"""The agent and supervisor views in a real browser (headless Chromium) against a
real app in demo mode and the Twilio simulator: the warm transfer of docs/call-flow.md done
by clicking, watched live by a supervisor; a failed transfer's reason; a whisper
with its coaching flag. Screenshots land in test-artifacts/."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import jwt
import pytest
from redis.asyncio import Redis

from tests.support.browser import (
    PASSWORD,
    Watched,
    chromium,
    crash,
    demo_world,
    open_page,
    requires_chromium,
    screenshot,
)
from tests.support.servers import app_server, server_env, spawn_serve, wait_healthy
from warmline.embedded_redis import EmbeddedRedis

expect = pytest.importorskip("playwright.async_api").expect
pytestmark = [requires_chromium, pytest.mark.timeout(180)]

USERS = {"alice": "agent", "bob": "agent", "boss": "supervisor"}
CALLER = "+15557654321"
CALLER_SHOWN = "+1 (555) 765-4321"


async def go_available(agent: Watched, idle: bool = True) -> None:
    toggle = agent.page.get_by_role("switch", name="Available for calls")
    await expect(agent.page.locator("#softphone-state")).to_have_attribute(
        "data-state", "registered"
    )
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-checked", "true")
    if idle:  # else a waiting customer may ring at once
        await expect(agent.page.locator("#presence-pill")).to_have_text("Available")


async def answer_customer(agent: Watched) -> None:
    page = agent.page
    incoming = page.get_by_test_id("incoming")
    await expect(incoming).to_be_visible()
    await expect(incoming.get_by_test_id("caller")).to_have_text(CALLER_SHOWN)
    await page.get_by_role("button", name="Answer").click()
    await expect(page.get_by_test_id("live-call")).to_be_visible()
    await expect(page.get_by_test_id("participant-customer")).to_contain_text(CALLER_SHOWN)


def conference_card(boss: Watched):
    return boss.page.get_by_test_id("conference").filter(has_text=CALLER_SHOWN)


async def until_js(page, expression: str, expected: object, within: float = 10.0) -> None:
    """Wait until a JavaScript expression in the page equals ``expected``. (Polled
    from here: wait_for_function would eval a string, which the page's CSP forbids.)"""
    deadline = time.monotonic() + within
    while (value := await page.evaluate(expression)) != expected:
        assert time.monotonic() < deadline, f"{expression} = {value!r}, not {expected!r}"
        await asyncio.sleep(0.05)


async def no_problems(*pages: Watched) -> None:
    for watched in pages:
        assert await watched.problems() == [], watched.name


async def test_warm_transfer_in_the_browser_watched_by_the_supervisor(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        demo_world(redis_server, redis, tmp_path, USERS) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        bob = await open_page(browser, app, "bob", width=390, height=844)  # a phone
        boss = await open_page(browser, app, "boss", width=1440, height=900)
        await go_available(alice)
        await go_available(bob)
        await expect(boss.page.get_by_test_id("member-alice")).to_contain_text("Available")
        await expect(boss.page.get_by_test_id("member-bob")).to_contain_text("Available")

        # A customer calls; alice is the longest idle and rings.
        await sim.call_in(CALLER)
        await answer_customer(alice)
        card = conference_card(boss)
        await expect(card.locator("[data-agent='alice']")).to_be_visible()
        await expect(boss.page.get_by_test_id("member-alice")).to_contain_text("On a call")

        # Alice transfers to bob with a note; bob's ringing phone shows it.
        note = "VIP: wants the annual plan, already verified"
        await alice.page.get_by_label("Colleague").select_option("bob")
        await alice.page.get_by_label("Hand-off note").fill(note)
        await alice.page.get_by_role("button", name="Start transfer").click()
        status = alice.page.get_by_test_id("transfer-status")
        await expect(status).to_have_attribute("data-status", "ringing")
        await expect(alice.page.get_by_test_id("ring-timer")).to_be_visible()
        incoming = bob.page.get_by_test_id("incoming")
        await expect(incoming).to_contain_text("Transfer from alice")
        await expect(incoming.get_by_test_id("note")).to_have_text(note)
        await expect(incoming.get_by_test_id("caller")).to_have_text(CALLER_SHOWN)
        await expect(boss.page.get_by_test_id("transfer-live")).to_contain_text("alice → bob")
        await expect(card).to_contain_text("Ringing")
        await screenshot(alice, "agent-transfer-ringing")
        await screenshot(bob, "agent-incoming-transfer")
        await screenshot(boss, "supervisor-transfer-ringing")

        # Bob answers: three-way; alice may leave.
        await bob.page.get_by_role("button", name="Answer").click()
        await expect(bob.page.get_by_test_id("live-call")).to_be_visible()
        await expect(status).to_have_attribute("data-status", "joined")
        await expect(card.locator("[data-agent='bob']")).to_be_visible()
        await screenshot(alice, "agent-transfer-joined")
        await screenshot(boss, "supervisor-three-way")
        await alice.page.get_by_role("button", name="Leave call").click()

        # Alice is free; bob has the customer; the supervisor saw it complete.
        await expect(alice.page.get_by_test_id("live-call")).to_be_hidden()
        await expect(alice.page.locator("#presence-pill")).to_have_text("Available")
        await expect(card.locator("[data-agent='alice']")).to_be_hidden()
        await expect(card.locator("[data-agent='bob']")).to_be_visible()
        done = boss.page.get_by_test_id("transfer-done").first
        await expect(done).to_contain_text("Completed")
        await expect(done).to_contain_text("alice → bob")
        await expect(bob.page.get_by_test_id("participant-customer")).to_contain_text(CALLER_SHOWN)

        # The supervisor whispers to bob: the coaching flag shows on both sides.
        await card.get_by_role("button", name="Whisper").click()
        supervisor_row = card.locator("[data-testid='participant-supervisor']")
        await expect(supervisor_row).to_contain_text("Coaching")
        await expect(card.get_by_role("button", name="Whisper")).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(bob.page.get_by_test_id("participant-supervisor")).to_contain_text(
            "Coaching you"
        )
        # Switching to listen updates the same participant in place.
        await card.get_by_role("button", name="Listen").click()
        await expect(supervisor_row).to_contain_text("Muted")
        await expect(supervisor_row).not_to_contain_text("Coaching")
        await screenshot(boss, "supervisor-monitoring")

        # The call's timeline tells the story.
        await card.get_by_role("button", name="Timeline").click()
        timeline = boss.page.locator("#timeline")
        await expect(timeline).to_contain_text("transfer alice → bob: completed")
        await expect(timeline).to_contain_text("boss")
        await boss.page.keyboard.press("Escape")
        await expect(boss.page.locator("#timeline-dialog")).to_be_hidden()

        # Bob ends the call.
        await bob.page.get_by_role("button", name="Hang up").click()
        await expect(bob.page.get_by_test_id("live-call")).to_be_hidden()
        await expect(card).to_have_attribute("data-status", "ended")
        await expect(boss.page.locator("#calls-count")).to_have_text("0")
        await no_problems(alice, bob, boss)


async def test_failed_transfer_shows_its_reason(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        demo_world(redis_server, redis, tmp_path, USERS) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        bob = await open_page(browser, app, "bob")
        boss = await open_page(browser, app, "boss")
        # Nobody is available yet: the customer waits, and everybody sees the queue.
        await sim.call_in(CALLER)
        waiting = boss.page.locator("#queue [data-longest='true']")
        await expect(waiting).to_contain_text(CALLER_SHOWN)
        await expect(alice.page.locator("#queue-count")).to_have_text("1")
        await expect(boss.page.locator("#figures")).to_contain_text("waiting now")
        # No call handled yet today: the expected wait is not known.
        await expect(boss.page.locator("#expected-wait")).to_contain_text("not known yet")
        await screenshot(boss, "supervisor-queue")
        await go_available(alice, idle=False)
        await answer_customer(alice)
        await expect(boss.page.locator("#queue-count")).to_have_text("0")
        await go_available(bob)
        await expect(boss.page.get_by_test_id("member-bob")).to_contain_text("Available")

        # Holding the customer, by keyboard: both views show the flag.
        hold = alice.page.get_by_role("button", name="Hold customer")
        await hold.focus()
        await alice.page.keyboard.press("Enter")
        await expect(alice.page.get_by_test_id("participant-customer")).to_contain_text("On hold")
        customer_row = conference_card(boss).get_by_test_id("participant-customer")
        await expect(customer_row).to_contain_text("On hold")
        # The hold's own request may still be in flight after its event arrived (the
        # button is disabled until it returns): a key press on it would be ignored.
        resume = alice.page.get_by_role("button", name="Resume customer")
        await expect(resume).to_be_enabled()
        await resume.press("Enter")
        await expect(customer_row).not_to_contain_text("On hold")

        await alice.page.get_by_label("Colleague").select_option("bob")
        await alice.page.get_by_role("button", name="Start transfer").click()
        await expect(bob.page.get_by_test_id("incoming")).to_contain_text("Transfer from alice")
        await bob.page.get_by_role("button", name="Decline").click()

        failed = alice.page.get_by_test_id("transfer-failed")
        await expect(failed).to_contain_text("Transfer to bob failed")
        await expect(failed).to_contain_text("declined (busy)")
        # The customer stays with alice, who can try again.
        await expect(alice.page.get_by_test_id("live-call")).to_be_visible()
        await expect(alice.page.get_by_role("button", name="Start transfer")).to_be_visible()
        result = boss.page.get_by_test_id("transfer-done").first
        await expect(result).to_contain_text("Failed")
        await expect(result).to_contain_text("declined (busy)")
        await expect(boss.page.get_by_test_id("member-bob")).to_contain_text("Missed")
        await expect(bob.page.locator("#presence-pill")).to_have_text("Missed a call")
        await screenshot(alice, "agent-transfer-failed")
        await no_problems(alice, bob, boss)


async def test_signature_failures_show_route_time_reason_and_client_only(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        demo_world(redis_server, redis, tmp_path, {"boss": "supervisor"}) as (_, app),
        chromium() as browser,
    ):
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.post(
                    f"{app.url}/conference/connect/client?<b>CALL+1-555-0100-NOW</b>",
                    data={"CallSid": "CA" + "0" * 32},
                    headers={"User-Agent": "CALL NOW", "X-Forwarded-For": "evil.example"},
                ) as response:
                    assert response.status == 403
        boss = await open_page(browser, app, "boss")
        panel = boss.page.locator(".signature-failures")
        await expect(panel).to_contain_text("Signature failures (2)")
        entries = boss.page.get_by_test_id("signature-failure")
        await expect(entries).to_have_count(2)
        first = entries.first
        await expect(first).to_contain_text("/conference/connect/client")
        await expect(first).to_contain_text("missing signature")
        await expect(first).to_contain_text("from 127.0.0.1")
        text = await boss.page.locator("#webhooks").inner_text()
        assert "CALL" not in text and "555" not in text and "evil" not in text
        assert await panel.locator("b").count() == 0
        await no_problems(boss)


async def test_twilio_softphone_answers_mutes_renews_its_token_and_re_registers(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    """Outside demo mode the page drives Twilio.Device (here a stand-in bundle that
    the test bridges to the simulator's phone, playing Twilio's side)."""
    async with (
        demo_world(redis_server, redis, tmp_path, USERS, demo=False) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice", fake_voice_sdk=True)
        page = alice.page
        await go_available(alice)
        device = "window.__twilio.device"
        assert await page.evaluate(f"{device}.registrations") == 1
        first_token = await page.evaluate(f"{device}.token")
        claims = jwt.decode(first_token, options={"verify_signature": False})
        assert claims["grants"]["identity"] == "alice"

        # Twilio rings client:alice; the Device reports the incoming call.
        phone = sim.phone("alice")
        await sim.call_in(CALLER)
        ring = await phone.next_call(within=10)
        await page.evaluate(
            "([sid, from]) => window.__twilio.incoming(sid, from, 'client:alice')",
            [ring, "+15550001111"],
        )
        await expect(page.get_by_test_id("incoming").get_by_test_id("caller")).to_have_text(
            CALLER_SHOWN
        )
        await page.get_by_role("button", name="Answer").click()
        await until_js(page, f"window.__twilio.calls['{ring}'].log", ["accept"])
        phone.answer(ring)
        await expect(page.get_by_test_id("live-call")).to_be_visible()

        mute = page.get_by_role("button", name="Mute")
        await mute.click()
        await expect(page.get_by_role("button", name="Unmute")).to_have_attribute(
            "aria-pressed", "true"
        )

        # The token is renewed before it expires, without re-registering.
        await page.evaluate(f"{device}.emit('tokenWillExpire')")
        await until_js(page, f"{device}.tokens.length", 2)
        assert await page.evaluate(f"{device}.registrations") == 1

        # A lost network unregisters the Device; the page registers it again.
        await page.evaluate(f"{device}.loseNetwork()")
        await expect(page.locator("#softphone-state")).to_have_attribute(
            "data-state", "registered", timeout=5000
        )
        await until_js(page, f"{device}.registrations", 2)

        await page.get_by_role("button", name="Hang up").click()
        await until_js(
            page, f"window.__twilio.calls['{ring}'].log", ["accept", "mute", "disconnect"]
        )
        phone.hangup(ring)
        await expect(page.get_by_test_id("live-call")).to_be_hidden()
        await no_problems(alice)


async def test_connection_loss_shows_a_banner_and_resumes_with_since(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    """The app goes away; the page says so; meanwhile another process of the same
    deployment changes things; the app returns and the page catches up by replay."""
    async with (
        demo_world(redis_server, redis, tmp_path, USERS) as (sim, app),
        app_server(redis_server.url, sim.base_url, tmp_path) as other,
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        sockets: list[str] = []
        alice.page.on("websocket", lambda ws: sockets.append(ws.url))
        await expect(alice.page.get_by_test_id("member-bob")).to_have_count(0)
        banner = alice.page.locator("#banner")
        await expect(banner).to_be_hidden()

        env = server_env(redis_server.url, sim.base_url, int(app.url.rsplit(":", 1)[1]))
        env["WARMLINE_SIMULATOR_URL"] = sim.base_url
        crash(app)
        await expect(banner).to_be_visible(timeout=15_000)
        await expect(banner).to_contain_text("Connection lost")
        await expect(alice.page.locator("#connection")).to_have_attribute("data-state", "lost")
        await screenshot(alice, "agent-connection-lost")

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as bob:
            form = {"username": "bob", "password": PASSWORD}
            async with bob.post(other.url + "/login", data=form, allow_redirects=False) as r:
                assert r.status == 303
            async with bob.post(other.url + "/api/me/status", json={"status": "available"}) as r:
                assert r.status == 200

        app.process = spawn_serve(env, app.log)
        try:
            await wait_healthy(app)
            await expect(banner).to_be_hidden(timeout=20_000)
            await expect(alice.page.get_by_test_id("member-bob")).to_contain_text("Available")
            assert "?since=" in sockets[-1], sockets
        finally:
            crash(app)
        # Only the refused connections while the app was away may be logged.
        problems = [
            p
            for p in await alice.problems()
            if "WebSocket" not in p and "ERR_CONNECTION_REFUSED" not in p
        ]
        assert problems == []


async def test_the_page_model_moves_the_line_up_when_a_caller_leaves(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """Past 25 callers queue.updated comes at most once a second: between two, the
    page's model must renumber the line itself from call.dequeued."""
    async with (
        app_server(redis_server.url, "http://127.0.0.1:9", tmp_path) as app,
        chromium() as browser,
    ):
        page = await browser.new_page()
        await page.goto(app.url + "/login")
        line = await page.evaluate(
            """async () => {
                const { Model } = await import("/static/js/model.js");
                const model = new Model("boss", true);
                const queued = (sid, position) => ({ call_sid: sid, from: "+15550000000",
                                                     queued_at: 1, position });
                const queue = [queued("CA3", 3), queued("CA1", 1), queued("CA2", 2)];
                model.applySnapshot({ id: "1-0",
                    data: { conferences: [], agents: [], transfers: [], queue } });
                model.apply({ id: "2-0", type: "call.dequeued",
                              data: { call_sid: "CA1", reason: "hung-up" } });
                model.apply({ id: "3-0", type: "call.queued", data: queued("CA4", 3) });
                return model.queue.map((q) => [q.call_sid, q.position]);
            }"""
        )
        assert line == [["CA2", 1], ["CA3", 2], ["CA4", 3]]
