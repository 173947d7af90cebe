"""README's pictures, taken by the browser suite (headless Chromium) from a real app in
demo mode and the Twilio simulator: an agent on a call with a transfer ringing, the
supervisor's floor with every kind of status, call and caller, and a week of reports from a seeded
history. They land in test-artifacts/, or, with WARMLINE_SCREENSHOTS=<dir>, in that
directory as agent.jpg, supervisor.jpg and reports.jpg (what README shows)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from psycopg.types.json import Jsonb
from redis.asyncio import Redis

from simulator.parties import AutoAnswer
from tests.console.web.test_views_browser import go_available, no_problems
from tests.support.browser import (
    ARTIFACTS,
    PASSWORD,
    Watched,
    chromium,
    demo_world,
    open_page,
    requires_chromium,
)
from tests.support.history_seed import Call, Leg, insert_calls
from tests.support.servers import AppServer
from warmline.embedded_redis import EmbeddedRedis

expect = pytest.importorskip("playwright.async_api").expect
pytestmark = [requires_chromium, pytest.mark.timeout(240)]

AGENTS = ["alice", "bob", "carol", "dan", "erin"]
USERS = {**dict.fromkeys(AGENTS, "agent"), "sam": "supervisor"}
WIDTH = 1280
# Each picture's viewport height: from the top of the page to below what it shows.
HEIGHTS = {"agent": 1160, "supervisor": 1080, "reports": 1510}
QUALITY = 72
MAX_BYTES = 150_000  # README's pictures stay small
HOUR = 3_600_000
DAY = 24 * HOUR
DAYS = 7  # the reports page shows the last seven days by default

FIRST_CUSTOMER = "+15552016718"
IMPATIENT = "+15559374420"
CUSTOMER = "+15557654321"
CUSTOMER_SHOWN = "+1 (555) 765-4321"
OTHER_CUSTOMER = "+15553108842"
WAITING = ["+15552090417", "+15558673095", "+15554412260"]
WAITING_SHOWN = ["+1 (555) 209-0417", "+1 (555) 867-3095", "+1 (555) 441-2260"]
NOTE = "Wants to upgrade to the annual plan; identity verified"


def destination() -> tuple[Path, bool]:
    """Where the pictures go, and whether under README's names."""
    chosen = os.environ.get("WARMLINE_SCREENSHOTS")
    return (Path(chosen), True) if chosen else (ARTIFACTS, False)


def make_destination() -> None:
    """Create the pictures' folder up front: a WARMLINE_SCREENSHOTS that cannot be one
    fails at once with one line, not after the scene."""
    folder, readme = destination()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        problem = None
    except OSError as exc:
        problem = exc.strerror
    if problem:  # outside the except: no "during handling of the above" in the report
        where = f"WARMLINE_SCREENSHOTS={folder}" if readme else str(folder)
        pytest.fail(f"{where}: cannot write pictures there ({problem})", pytrace=False)


async def pause(seconds: float) -> None:
    """For README's pictures only, let the scene age so its timers read like a real
    floor (a call of 0:00 looks staged); the suite does not wait."""
    if destination()[1]:
        await asyncio.sleep(seconds)


async def photograph(watched: Watched, name: str, height: int) -> Path:
    """The top ``height`` pixels of the page (a fixed viewport, not the full page), as
    a JPEG small enough for README."""
    folder, readme = destination()
    path = folder / (f"{name}.jpg" if readme else f"readme-{name}.jpg")
    page = watched.page
    await page.set_viewport_size({"width": WIDTH, "height": height})
    await page.mouse.move(0, 0)  # no hover highlight in the picture
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(path), type="jpeg", quality=QUALITY, animations="disabled")
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path} is {size} bytes, over {MAX_BYTES}"
    return path


async def seed_week(pg: Any, now: int) -> int:
    """Six office days before today for the five agents: calls (a few abandoned, some
    transferred) and the agents' status changes (signed in, busy, lunch, signed out),
    so both charts and every column of the agents' table have figures. Returns how
    many calls were offered."""
    rng = random.Random(20)
    midnight = now - now % DAY
    calls: list[Call] = []
    statuses: list[tuple[int, str, str]] = []  # (ts, agent, status)
    for back in range(DAYS - 1, 0, -1):
        day = midnight - back * DAY
        free_at: dict[str, int] = {}
        lunch: dict[str, int] = {}
        for i, agent in enumerate(AGENTS):
            free_at[agent] = day + 8 * HOUR + rng.randrange(0, 600_000)
            lunch[agent] = day + (12 + i % 2) * HOUR
            statuses += [
                (free_at[agent], agent, "available"),
                (lunch[agent], agent, "break"),
                (lunch[agent] + 45 * 60_000, agent, "available"),
            ]
        for hour in range(8, 17):
            load = 12 + round(14 * (1 - abs(hour - 11.5) / 4.5)) + rng.randrange(0, 6)
            for arrived in sorted(day + hour * HOUR + rng.randrange(0, HOUR) for _ in range(load)):
                calls.append(one_call(rng, arrived, free_at, lunch, statuses, len(calls)))
        for agent in AGENTS:  # signing out after their last call
            out = max(day + 17 * HOUR + rng.randrange(0, 1_200_000), free_at[agent])
            statuses.append((out, agent, "offline"))
    await insert_calls(pg, calls)
    events = [
        (
            ts,
            {"username": agent, "status": status, "reason": "Lunch" if status == "break" else None},
        )
        for ts, agent, status in sorted(statuses)
    ]
    async with pg.cursor() as cur:
        await cur.executemany(
            "INSERT INTO events (id, ms, seq, type, ts, conference, audience, data)"
            " VALUES (%s, %s, %s, 'agent.updated', %s, NULL, '*', %s)",
            [(f"{ts}-{i}", ts, i, ts, Jsonb(data)) for i, (ts, data) in enumerate(events)],
        )
    return len(calls)


def one_call(
    rng: random.Random,
    arrived: int,
    free_at: dict[str, int],
    lunch: dict[str, int],
    statuses: list[tuple[int, str, str]],
    number: int,
) -> Call:
    """A caller at ``arrived``, taken by the agent free longest (not at lunch) for 1.5
    to 9 minutes, sometimes handed on to a colleague; or, now and then, abandoned."""
    sid = f"CAseed{number:08d}"
    caller = f"+1555{rng.randrange(10**7):07d}"

    def free(agent: str) -> int:  # when they could answer: after their call and lunch
        at = max(free_at[agent], arrived)
        if lunch[agent] - 10 * 60_000 <= at < lunch[agent] + 45 * 60_000:
            at = lunch[agent] + 45 * 60_000
        return at

    agent = min(AGENTS, key=lambda a: (free(a), free_at[a]))
    wait = free(agent) - arrived + rng.randrange(3_000, 18_000)
    patience = rng.randrange(15_000, 240_000)
    if wait > patience or rng.random() < 0.02:
        gave_up = min(wait, patience)
        return Call(
            sid, arrived, from_number=caller, outcome="abandoned",
            ended_at=arrived + gave_up, wait_ms=gave_up,
        )  # fmt: skip
    answered = arrived + wait
    talk = rng.randrange(90_000, 540_000)
    ended = answered + talk
    legs = [Leg(agent, answered, ended)]
    transfers: list[dict[str, Any]] = []
    if rng.random() < 0.08:
        colleague = rng.choice([a for a in AGENTS if a != agent])
        handed = answered + talk // 2
        ok = rng.random() < 0.85
        if ok:
            legs = [Leg(agent, answered, handed + 20_000), Leg(colleague, handed + 12_000, ended)]
        transfers.append(
            {
                "id": f"tr-{number}",
                "conference": sid,
                "from_agent": agent,
                "to_agent": colleague,
                "status": "completed" if ok else "failed",
                "note": "billing question",
                "created_at": handed,
                "updated_at": handed + 12_000,
            }
        )
    free_at[agent] = ended + 30_000
    statuses += [(answered, agent, "busy"), (ended, agent, "available")]
    if rng.random() < 0.01:  # a ring they missed before the next call
        statuses += [(ended + 5_000, agent, "missed"), (ended + 25_000, agent, "available")]
    return Call(
        sid,
        arrived,
        from_number=caller,
        answered_at=answered,
        answered_by=agent,
        ended_at=ended,
        wait_ms=wait,
        talk_ms=talk,
        disposition=rng.choice(["Resolved", "Resolved", "Follow-up", "Escalated"]),
        legs=legs,
        transfers=transfers,
    )


async def signed_in(app: AppServer, name: str) -> aiohttp.ClientSession:
    """An agent working from outside the browser (their softphone is the simulator's)."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    form = {"username": name, "password": PASSWORD}
    async with session.post(app.url + "/login", data=form, allow_redirects=False) as r:
        assert r.status == 303
    return session


async def post(
    session: aiohttp.ClientSession, app: AppServer, path: str, body: Any, status: int
) -> None:
    async with session.post(app.url + path, json=body) as r:
        assert r.status == status, await r.text()


async def set_status(session: aiohttp.ClientSession, app: AppServer, **body: str) -> None:
    async with session.post(app.url + "/api/me/status", json=body) as r:
        assert r.status == 200, await r.text()


def member(sam: Watched, name: str, status: str):
    return sam.page.locator(f"[data-testid='member-{name}'] [data-status='{status}']").first


async def test_readme_pictures(
    redis_server: EmbeddedRedis, redis: Redis, database_url: str, pg: Any, tmp_path: Path
) -> None:
    make_destination()
    offered = await seed_week(pg, int(time.time() * 1000))
    async with (
        demo_world(
            redis_server,
            redis,
            tmp_path,
            USERS,
            DATABASE_URL=database_url,
            WRAP_UP_SECONDS="900",  # dan stays in wrap-up while the pictures are taken
            AGENT_GRACE_SECONDS="900",  # agents without a dashboard stay signed in
            RING_TIMEOUT_SECONDS="300",  # bob's phone keeps ringing for the transfer
        ) as (sim, app),
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice")
        page = alice.page
        await page.context.grant_permissions(["notifications"], origin=app.url)
        others = {name: await signed_in(app, name) for name in ("bob", "carol", "dan", "erin")}
        try:
            for name in ("carol", "dan", "erin"):
                sim.phone(name, auto=AutoAnswer(delay=3))
            sim.phone("bob")  # rings until someone answers

            # carol takes a call and hands it to dan (a warm transfer), then goes to
            # lunch; the customer hangs up and dan writes the call up.
            await set_status(others["carol"], app, status="available")
            await expect(member(alice, "carol", "available")).to_be_visible()
            first = await sim.call_in(FIRST_CUSTOMER)
            await expect(member(alice, "carol", "busy")).to_be_visible()
            await pause(6)
            await set_status(others["dan"], app, status="available")
            await expect(member(alice, "dan", "available")).to_be_visible()
            body = {"conference": first, "to": "dan", "note": "Billing question"}
            await post(others["carol"], app, "/api/transfers", body, 201)
            await expect(member(alice, "dan", "busy")).to_be_visible()
            await post(others["carol"], app, f"/api/conferences/{first}/leave", {}, 200)
            await expect(member(alice, "carol", "wrap-up")).to_be_visible()
            await set_status(others["carol"], app, status="break", reason="Lunch")
            await expect(member(alice, "carol", "break")).to_be_visible()
            await pause(6)
            sim.hangup(first)
            await expect(member(alice, "dan", "wrap-up")).to_be_visible()
            await pause(6)

            # erin is on a call (the supervisor will listen in).
            await set_status(others["erin"], app, status="available")
            await expect(member(alice, "erin", "available")).to_be_visible()
            await sim.call_in(OTHER_CUSTOMER)
            await expect(member(alice, "erin", "busy")).to_be_visible()
            await pause(10)

            # Nobody is free: a caller waits, then gives up.
            gave_up = await sim.call_in(IMPATIENT)
            await expect(page.locator("#queue-count")).to_have_text("1")
            await pause(4)
            sim.hangup(gave_up)
            await expect(page.locator("#queue-count")).to_have_text("0")

            # alice answers in her browser and hands the customer to bob, whose phone rings.
            await go_available(alice)
            await sim.call_in(CUSTOMER)
            await expect(page.get_by_test_id("incoming")).to_be_visible()
            await page.get_by_role("button", name="Answer").click()
            await expect(page.get_by_test_id("participant-customer")).to_contain_text(
                CUSTOMER_SHOWN
            )
            await pause(12)
            await set_status(others["bob"], app, status="available")
            await expect(member(alice, "bob", "available")).to_be_visible()
            await page.get_by_label("Colleague").select_option("bob")
            await page.get_by_label("Hand-off note").fill(NOTE)
            await page.get_by_role("button", name="Start transfer").click()
            await expect(page.get_by_test_id("transfer-status")).to_have_attribute(
                "data-status", "ringing"
            )

            # Three callers wait: nobody is free.
            for waiting, number in enumerate(WAITING, start=1):
                await sim.call_in(number)
                # each queued before the next calls: the line's order is the calls' order
                await expect(page.locator("#queue-count")).to_have_text(str(waiting))
                await pause(6)

            sam = await open_page(browser, app, "sam")
            floor = sam.page
            queue = floor.locator("#queue li")
            await expect(queue).to_have_count(len(WAITING))
            await expect(queue.first).to_contain_text(WAITING_SHOWN[0])
            await expect(floor.locator("#queue-count")).to_have_text(str(len(WAITING)))
            card = floor.get_by_test_id("conference").filter(has_text=OTHER_CUSTOMER[-4:])
            await card.get_by_role("button", name="Listen").click()
            await expect(card.get_by_test_id("participant-supervisor")).to_contain_text("Muted")
            await pause(3)

            # The floor: every status, two live calls, the transfer, the queue, figures.
            for name, status in (
                ("alice", "busy"),
                ("bob", "ringing"),
                ("carol", "break"),
                ("dan", "wrap-up"),
                ("erin", "busy"),
            ):
                await expect(member(sam, name, status)).to_be_visible()
            await expect(floor.get_by_test_id("conference")).to_have_count(2)
            await expect(floor.get_by_test_id("transfer-live")).to_contain_text("alice → bob")
            await expect(floor.locator("#calls-count")).to_have_text("2")
            for kind in ("nobody-available", "service-level"):  # 3 of 4 answered: under 80 %
                alert = floor.locator(f"[data-testid='alert'][data-kind='{kind}']")
                await expect(alert).to_be_visible(timeout=20_000)  # the next routing sweep
            figures = floor.locator("#figures")
            await expect(figures).to_contain_text("Answered today3")
            await expect(figures).to_contain_text("Abandoned1")
            await expect(figures).to_contain_text("Transfers1 ✓")

            await expect(page.get_by_test_id("ring-timer")).to_be_visible()
            await photograph(alice, "agent", HEIGHTS["agent"])
            await photograph(sam, "supervisor", HEIGHTS["supervisor"])

            # A week of reports: both charts drawn, a row per day and per agent.
            await floor.get_by_role("link", name="Reports").click()
            await floor.wait_for_url("**/reports*")
            for chart in ("chart-hour", "chart-day"):
                await expect(floor.get_by_test_id(chart).locator("canvas")).to_have_count(1)
            await expect(floor.get_by_test_id("agent-row")).to_have_count(len(AGENTS))
            await expect(floor.get_by_test_id("day-row")).to_have_count(DAYS)
            totals = floor.locator("#totals")
            await expect(totals).to_contain_text("Offered")
            shown = int((await totals.locator(".figure-value").first.inner_text()).strip())
            assert shown >= offered  # every seeded call, and today's as the writer stores them
            await photograph(sam, "reports", HEIGHTS["reports"])
            await no_problems(alice, sam)
        finally:
            for session in others.values():
                await session.close()
