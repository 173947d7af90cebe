"""Voicemails in a real browser (headless Chromium) against a real `warmline serve`
with NOBODY_SIGNED_IN=voicemail and the Twilio simulator: a caller leaves a real
message while every agent is offline; it appears live on two agents' pages and the
supervisor's console; one agent wins the claim (the other is told plainly that they
were too late), plays it to its end through the app's own route and closes it with a
disposition from DISPOSITIONS; it leaves every console. Screenshots land in
test-artifacts/."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from simulator import Simulator
from tests.console.web.test_views_browser import CALLER, CALLER_SHOWN
from tests.support.browser import (
    Watched,
    chromium,
    demo_world,
    open_page,
    requires_chromium,
    screenshot,
)
from tests.support.servers import AppServer
from warmline.embedded_redis import EmbeddedRedis

expect = pytest.importorskip("playwright.async_api").expect
pytestmark = [requires_chromium, pytest.mark.timeout(180)]

USERS = {"alice": "agent", "bob": "agent", "boss": "supervisor"}
DISPOSITIONS = ["Called back", "No answer", "Spam"]
MESSAGE_SECONDS = 4
TOO_LATE = "Someone else claimed this voicemail first."


def voicemail_world(
    redis_server: EmbeddedRedis, redis: Redis, log_dir: Path
) -> AbstractAsyncContextManager[tuple[Simulator, AppServer]]:
    """The simulator (Say prompts four times faster) and a real app that sends callers
    to leave a message while nobody is signed in, with ``USERS``."""
    return demo_world(
        redis_server,
        redis,
        log_dir,
        USERS,
        demo=False,
        time_scale=0.25,
        NOBODY_SIGNED_IN="voicemail",
        DISPOSITIONS=",".join(DISPOSITIONS),
    )


def voicemails(watched: Watched):
    return watched.page.get_by_test_id("voicemail")


async def no_problems(*pages: Watched, allowed: dict[str, str] | None = None) -> None:
    """No console error, uncaught exception or CSP violation; ``allowed`` names, per
    page, the one console line its browser logs for a refused request it expected."""
    for watched in pages:
        problems = await watched.problems()
        expected = (allowed or {}).get(watched.name)
        if expected:
            assert len([p for p in problems if expected in p]) == 1, problems
            problems = [p for p in problems if expected not in p]
        assert problems == [], watched.name


async def test_a_message_is_claimed_played_and_closed_live_on_every_console(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        voicemail_world(redis_server, redis, tmp_path) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice", fake_voice_sdk=True)
        bob = await open_page(browser, app, "bob", width=390, height=844, fake_voice_sdk=True)
        boss = await open_page(browser, app, "boss", width=1440, height=900, fake_voice_sdk=True)
        for watched in (alice, bob, boss):
            card = watched.page.locator("#voicemails-card")
            await expect(card.get_by_role("heading", name="Voicemails")).to_be_visible()
            await expect(card).to_contain_text("No messages waiting.")

        # Nobody is signed in: the caller leaves a real message, which every console
        # shows without a reload.
        name = await sim.call_in(CALLER, message_seconds=MESSAGE_SECONDS)
        for watched in (alice, bob, boss):
            await expect(voicemails(watched)).to_have_count(1, timeout=30_000)
            item = voicemails(watched).first
            await expect(item).to_have_attribute("data-voicemail", name)
            await expect(item.get_by_test_id("voicemail-from")).to_have_text(CALLER_SHOWN)
            await expect(item.get_by_test_id("voicemail-status")).to_have_text("New")
            await expect(item.get_by_test_id("voicemail-reason")).to_contain_text(
                "Nobody signed in"
            )
            await expect(item).to_contain_text(f"0:0{MESSAGE_SECONDS}")
            await expect(item.locator("time")).to_have_count(1)
            player = item.locator("audio")
            await expect(player).to_have_attribute("preload", "none")
            src = await player.get_attribute("src")
            assert src is not None and src.startswith("/api/recordings/RE"), src
            await expect(watched.page.locator("#voicemails-count")).to_have_text("1")
        await expect(alice.page.locator("#announcer")).to_have_text(
            f"New voicemail from {CALLER_SHOWN}."
        )
        await screenshot(boss, "supervisor-voicemail-new")

        # Bob and alice claim at once: bob's request is held at the network until
        # alice has won, so his is answered 409, told plainly, and the message has
        # left his list by the time it is.
        held, release = asyncio.Event(), asyncio.Event()

        async def hold(route: Any) -> None:
            held.set()
            await release.wait()
            await route.continue_()

        await bob.page.route("**/api/voicemails/*/claim", hold)
        await voicemails(bob).first.get_by_role("button", name="Claim").click()
        await asyncio.wait_for(held.wait(), 10)
        mine = voicemails(alice).first
        await mine.get_by_role("button", name="Claim").click()
        await expect(mine.get_by_test_id("voicemail-status")).to_have_text("Claimed by you")
        await expect(mine.get_by_label("Disposition")).to_be_focused()
        await expect(voicemails(bob)).to_have_count(0)
        await expect(voicemails(boss).first.get_by_test_id("voicemail-status")).to_have_text(
            "Claimed by alice"
        )
        release.set()
        refusal = bob.page.locator("#voicemails-error").get_by_role("alert")
        await expect(refusal).to_have_text(TOO_LATE)
        await expect(bob.page.locator("#voicemails-card")).to_contain_text("No messages waiting.")
        await bob.page.unroute("**/api/voicemails/*/claim")
        await screenshot(bob, "agent-voicemail-too-late")

        # The supervisor may close anyone's claim; the dispositions are the server's.
        boss_form = voicemails(boss).first.get_by_role("form")
        await expect(boss_form.get_by_role("button", name="Close")).to_be_visible()
        options = mine.get_by_label("Disposition").locator("option")
        await expect(options).to_have_text(["Choose…", *DISPOSITIONS])

        # Alice plays the message to its end (a real click on the native control),
        # streamed from the app's own route.
        player = mine.locator("audio")
        await player.evaluate(
            """(audio) => {
              window.__media = [];
              for (const type of ["play", "playing", "timeupdate", "ended", "error"]) {
                audio.addEventListener(type, () => window.__media.push([type, audio.currentTime]));
              }
            }"""
        )
        box = await player.bounding_box()
        assert box is not None
        await alice.page.mouse.click(
            box["x"] + min(24, box["width"] / 2), box["y"] + box["height"] / 2
        )
        await expect(player).to_have_js_property("ended", True, timeout=20_000)
        media = await alice.page.evaluate("window.__media")
        types = [kind for kind, _ in media]
        assert "play" in types and types[-1] == "ended" and "error" not in types, media
        assert any(0 < t < MESSAGE_SECONDS for kind, t in media if kind == "timeupdate"), media
        length = await player.evaluate("(audio) => audio.duration")
        assert length == pytest.approx(MESSAGE_SECONDS, abs=0.01)

        # Closing without a disposition is refused in plain words; with one, the
        # message leaves both consoles.
        await mine.get_by_role("button", name="Close").click()
        nudge = alice.page.locator("#voicemails-error").get_by_role("alert")
        await expect(nudge).to_have_text("Choose a disposition before closing the voicemail.")
        await expect(mine.get_by_label("Disposition")).to_be_focused()
        await mine.get_by_label("Disposition").select_option("Called back")
        await screenshot(alice, "agent-voicemail-claimed")
        await mine.get_by_role("button", name="Close").click()
        for watched in (alice, boss):
            await expect(voicemails(watched)).to_have_count(0)
            await expect(watched.page.locator("#voicemails-count")).to_have_text("0")
            await expect(watched.page.locator("#voicemails-card")).to_contain_text(
                "No messages waiting."
            )
        await expect(nudge).to_have_count(0)
        await expect(alice.page.locator("#voicemails-card")).to_be_focused()
        await expect(alice.page.locator("#announcer")).to_have_text(
            f"Voicemail from {CALLER_SHOWN} closed: Called back."
        )
        await no_problems(alice, bob, boss, allowed={"bob": "status of 409"})
