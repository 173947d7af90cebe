"""The call history and reports pages, and the agent's recent calls, in a real browser
(headless Chromium) against a real `warmline serve` whose history is the test's own
PostgreSQL database, filled by hand (tests/support/history_seed.py): a supervisor
searches, pages and opens a call; the reports draw their charts and list the agents;
an agent sees only their own calls. One call is recorded for real, through the
simulator, and played from the history page. Screenshots land in test-artifacts/."""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from psycopg.types.json import Jsonb
from redis.asyncio import Redis

from console.domain.users import add_user
from simulator import Simulator
from simulator.recordings import tone_wav
from simulator.testing import TwilioDouble
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN
from tests.console.web.test_views_browser import CALLER, answer_customer, go_available
from tests.support.browser import (
    PASSWORD,
    Watched,
    chromium,
    crash,
    open_page,
    requires_chromium,
    screenshot,
)
from tests.support.history_seed import Call, Leg, answered, insert_calls
from tests.support.servers import AppServer, app_server
from warmline.embedded_redis import EmbeddedRedis

expect = pytest.importorskip("playwright.async_api").expect
pytestmark = [requires_chromium, pytest.mark.timeout(180)]

USERS = {"alice": "agent", "bob": "agent", "boss": "supervisor"}
HOUR = 3_600_000
FILLERS = 52  # older abandoned calls: more than one page (50) of the whole history


async def seed(pg: Any) -> dict[str, str]:
    """Four calls of the last hours (alice's two, bob's one, one abandoned), the first
    with a recording and its stored events, and older abandoned calls behind them."""
    now = int(time.time() * 1000)
    first, second, third, fourth = (now - 3 * HOUR, now - 2 * HOUR, now - HOUR, now - HOUR // 2)
    transfer = {
        "id": "tr-1",
        "conference": "CAhist00000004",
        "from_agent": "alice",
        "to_agent": "bob",
        "status": "completed",
        "note": "wants the annual plan",
        "created_at": fourth + 30_000,
        "updated_at": fourth + 40_000,
    }
    calls = [
        answered(
            "CAhist00000001",
            first,
            "alice",
            from_number="+15550100",
            recording={"sid": "REhist0001", "duration": 61, "status": "completed"},
        ),
        answered("CAhist00000002", second, "bob", from_number="+15550111"),
        Call(
            "CAhist00000003",
            third,
            from_number="+15550122",
            outcome="abandoned",
            ended_at=third + 30_000,
            wait_ms=30_000,
        ),
        answered(
            "CAhist00000004",
            fourth,
            "alice",
            from_number="+15550133",
            legs=[Leg("alice", fourth + 5_000, fourth + 45_000), Leg("bob", fourth + 38_000)],
            transfers=[transfer],
        ),
    ]
    old = now - 30 * 24 * HOUR
    calls += [
        Call(f"CAfill{i:08d}", old + i * 60_000, from_number="+15550999", outcome="abandoned")
        for i in range(FILLERS)
    ]
    await insert_calls(pg, calls)
    customer = "CAhist00000001"
    events = [
        ("conference.started", first, {"name": customer, "from": "+15550100"}),
        (
            "participant.joined",
            first + 1,
            {"role": "customer", "call_sid": customer, "from": "+15550100"},
        ),
        (
            "participant.joined",
            first + 5_000,
            {"role": "agent", "call_sid": "CAa1", "agent": "alice"},
        ),
        (
            "participant.left",
            first + 65_000,
            {"role": "agent", "call_sid": "CAa1", "agent": "alice"},
        ),
        ("conference.ended", first + 65_001, {"name": customer, "reason": "completed"}),
    ]
    for seq, (kind, ts, data) in enumerate(events):
        await pg.execute(
            "INSERT INTO events (id, ms, seq, type, ts, conference, audience, data)"
            " VALUES (%s, %s, %s, %s, %s, %s, '*', %s)",
            (f"{ts}-{seq}", ts, seq, kind, ts, customer, Jsonb(data)),
        )
    return {"recorded": customer, "transferred": "CAhist00000004"}


@asynccontextmanager
async def history_world(
    redis_server: EmbeddedRedis,
    redis: Redis,
    twilio: TwilioDouble | Simulator,
    database_url: str,
    log: Path,
    **env: str,
) -> AsyncIterator[AppServer]:
    """A real app keeping its history in this test's database, with ``USERS``."""
    url = twilio.base_url
    async with app_server(redis_server.url, url, log, DATABASE_URL=database_url, **env) as app:
        for name, role in USERS.items():
            await add_user(redis, name, role, PASSWORD)
        try:
            yield app
        finally:
            crash(app)


async def no_problems(*pages: Watched) -> None:
    for watched in pages:
        assert await watched.problems() == [], watched.name


def rows(watched: Watched):
    return watched.page.get_by_test_id("call-row")


async def test_a_supervisor_searches_the_history_and_opens_a_call(
    redis_server, redis, twilio, database_url, pg, tmp_path
) -> None:
    ids = await seed(pg)
    async with (
        history_world(redis_server, redis, twilio, database_url, tmp_path) as app,
        chromium() as browser,
    ):
        boss = await open_page(browser, app, "boss", width=1440, height=900, fake_voice_sdk=True)
        page = boss.page
        await page.get_by_role("link", name="History").click()
        await page.wait_for_url("**/history")
        await expect(page.get_by_role("link", name="History")).to_have_attribute(
            "aria-current", "page"
        )

        # Everything, newest first, a page at a time.
        await expect(rows(boss)).to_have_count(50)
        await expect(rows(boss).first).to_have_attribute("data-call", ids["transferred"])
        await page.get_by_role("button", name="More").click()
        await expect(rows(boss)).to_have_count(4 + FILLERS)
        await expect(page.get_by_role("button", name="More")).to_be_hidden()

        # alice's calls: her own and the one she transferred to bob, not bob's or the abandoned.
        await page.get_by_label("Agent").fill("alice")
        await page.get_by_role("button", name="Search").click()
        await expect(rows(boss)).to_have_count(2)
        shown = [await row.get_attribute("data-call") for row in await rows(boss).all()]
        assert shown == [ids["transferred"], ids["recorded"]]
        export = page.get_by_role("link", name="Export CSV")
        await expect(export).to_have_attribute("href", "/api/calls.csv?agent=alice")
        assert "agent=alice" in page.url

        # Only the abandoned, by outcome; then by number.
        await page.get_by_label("Agent").fill("")
        await page.get_by_label("Outcome").select_option("abandoned")
        await page.get_by_label("Caller's number").fill("555 0122")
        await page.get_by_role("button", name="Search").click()
        await expect(rows(boss)).to_have_count(1)
        await expect(rows(boss).first).to_have_attribute("data-call", "CAhist00000003")
        await expect(rows(boss).first.get_by_test_id("outcome")).to_have_text("Abandoned")

        # A call's detail: legs, timeline from the stored events, the recording player.
        await page.get_by_label("Outcome").select_option("")
        await page.get_by_label("Caller's number").fill("")
        await page.get_by_label("Agent").fill("alice")
        await page.get_by_role("button", name="Search").click()
        await expect(rows(boss)).to_have_count(2)
        await rows(boss).nth(1).get_by_role("link").click()
        detail = page.get_by_test_id("call-detail")
        await expect(detail).to_have_attribute("data-call", ids["recorded"])
        timeline = detail.get_by_test_id("history-timeline")
        await expect(timeline).to_contain_text("conference started")
        await expect(timeline).to_contain_text("alice joined")
        await expect(timeline).to_contain_text("conference ended (completed)")
        player = detail.get_by_test_id("recording").locator("audio")
        await expect(player).to_have_attribute("src", "/api/recordings/REhist0001")
        await expect(detail.get_by_test_id("leg")).to_have_count(1)
        await screenshot(boss, "history-call-detail")

        # The transferred call: both legs and the transfer with its note.
        await rows(boss).first.get_by_role("link").click()
        await expect(detail).to_have_attribute("data-call", ids["transferred"])
        await expect(detail.get_by_test_id("leg")).to_have_count(2)
        await expect(detail.get_by_test_id("history-transfer")).to_contain_text("alice → bob")
        await expect(detail.get_by_test_id("recording")).to_have_count(0)

        # The address keeps the search and the open call across a reload.
        await page.reload()
        await expect(page.get_by_label("Agent")).to_have_value("alice")
        await expect(rows(boss)).to_have_count(2)
        await expect(detail).to_have_attribute("data-call", ids["transferred"])
        await no_problems(boss)


async def test_the_reports_draw_their_charts_and_list_the_agents(
    redis_server, redis, twilio, database_url, pg, tmp_path
) -> None:
    await seed(pg)
    async with (
        history_world(redis_server, redis, twilio, database_url, tmp_path) as app,
        chromium() as browser,
    ):
        boss = await open_page(browser, app, "boss", width=1440, height=900, fake_voice_sdk=True)
        page = boss.page
        await page.get_by_role("link", name="Reports").click()
        await page.wait_for_url("**/reports*")
        for chart in ("chart-hour", "chart-day"):
            canvas = page.get_by_test_id(chart).locator("canvas")
            await expect(canvas).to_have_count(1)
            box = await canvas.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 100, (chart, box)
        agents = page.get_by_test_id("agent-row")
        await expect(agents).to_have_count(2)
        assert [await row.get_attribute("data-bucket") for row in await agents.all()] == [
            "alice",
            "bob",
        ]
        handled = agents.locator("td:nth-of-type(1)")  # the column after the name
        await expect(handled).to_have_text(["2", "2"])  # alice: two; bob: his and the transfer
        frm = await page.get_by_label("From", exact=True).input_value()
        to = await page.get_by_label("To", exact=True).input_value()
        for by in ("hour", "day", "agent"):
            link = page.locator(f"#csv-{by}")
            await expect(link).to_have_attribute(
                "href", f"/api/reports.csv?from={frm}&to={to}&by={by}"
            )
        # The days of the seeded calls hold them: 4 offered (the fillers are older).
        await expect(page.locator("#totals")).to_contain_text("Offered4")
        await screenshot(boss, "reports")
        await no_problems(boss)


async def test_an_agent_sees_their_own_recent_calls(
    redis_server, redis, twilio, database_url, pg, tmp_path
) -> None:
    ids = await seed(pg)
    async with (
        history_world(redis_server, redis, twilio, database_url, tmp_path) as app,
        chromium() as browser,
    ):
        alice = await open_page(browser, app, "alice", fake_voice_sdk=True)
        recent = alice.page.get_by_test_id("recent-call")
        await expect(recent).to_have_count(2)
        assert [await item.get_attribute("data-call") for item in await recent.all()] == [
            ids["transferred"],
            ids["recorded"],
        ]
        await expect(recent.first).to_contain_text("+15550133")
        await expect(alice.page.get_by_role("link", name="History")).to_have_count(0)
        await screenshot(alice, "agent-recent-calls")
        await no_problems(alice)


async def stored_recording(pg: Any, call: str) -> dict[str, Any]:
    """The recording the history writer stored with ``call``, once its completed
    callback (with the duration) is in."""
    async with asyncio.timeout(30):
        while True:
            cur = await pg.execute("SELECT recording FROM calls WHERE id = %s", (call,))
            row = await cur.fetchone()
            if row and row["recording"] and row["recording"].get("duration") is not None:
                return row["recording"]
            await asyncio.sleep(0.1)


async def test_a_supervisor_plays_a_calls_recording_streamed_through_the_app(
    redis_server, redis, database_url, pg, tmp_path
) -> None:
    """A recorded call through the simulator (RECORD_CALLS=on, alice answering in her
    browser); the supervisor opens it in the history and clicks play: the audio comes
    from the app's /api/recordings/<sid>, never from Twilio, and plays to its end."""
    async with (
        Simulator("http://127.0.0.1:9", ACCOUNT_SID, AUTH_TOKEN) as sim,
        history_world(
            redis_server,
            redis,
            sim,
            database_url,
            tmp_path,
            RECORD_CALLS="on",
            WARMLINE_SIMULATOR_URL=sim.base_url,
            RING_TIMEOUT_SECONDS="20",
        ) as app,
        chromium() as browser,
    ):
        sim.point_at(app.url)
        alice = await open_page(browser, app, "alice")
        await go_available(alice)
        name = await sim.call_in(CALLER)
        await answer_customer(alice)
        sim.hangup(name)  # the customer hangs up: the conference and its recording end
        await expect(alice.page.get_by_test_id("live-call")).to_be_hidden()
        recording = await stored_recording(pg, name)
        sid = recording["sid"]
        assert recording["status"] == "completed"

        boss = await open_page(browser, app, "boss", width=1440, height=900)
        page = boss.page
        requests: list[Any] = []
        responses: list[Any] = []
        page.on("request", lambda request: requests.append(request))
        page.on("response", lambda response: responses.append(response))
        await page.get_by_role("link", name="History").click()
        await page.wait_for_url("**/history")
        row = page.locator(f"[data-testid='call-row'][data-call='{name}']")
        await expect(row).to_have_count(1)
        await row.get_by_role("link").click()
        detail = page.get_by_test_id("call-detail")
        await expect(detail).to_have_attribute("data-call", name)
        player = detail.get_by_test_id("recording").locator("audio")
        await expect(player).to_have_attribute("src", f"/api/recordings/{sid}")
        await player.evaluate(
            """(audio) => {
              window.__media = [];
              for (const type of ["play", "playing", "timeupdate", "ended", "error"]) {
                audio.addEventListener(type, () => window.__media.push([type, audio.currentTime]));
              }
            }"""
        )

        # A real click on the native control's play button (its left end).
        box = await player.bounding_box()
        assert box is not None
        await page.mouse.click(box["x"] + min(24, box["width"] / 2), box["y"] + box["height"] / 2)
        await expect(player).to_have_js_property("ended", True, timeout=20_000)

        media = await page.evaluate("window.__media")
        types = [t for t, _ in media]
        assert "play" in types and "playing" in types and types[-1] == "ended", types
        assert "error" not in types, media
        assert await player.evaluate("(audio) => audio.error") is None
        wav = tone_wav()
        with wave.open(io.BytesIO(wav)) as w:
            seconds = w.getnframes() / w.getframerate()
        duration = await player.evaluate("(audio) => audio.duration")
        assert duration == pytest.approx(seconds, abs=0.01)
        # Time went by while it played: a time update between the start and the end.
        assert any(0 < t < seconds for kind, t in media if kind == "timeupdate"), media
        played = await player.evaluate(
            "(audio) => [...Array(audio.played.length).keys()].map("
            "(i) => [audio.played.start(i), audio.played.end(i)])"
        )
        assert played and played[0][0] == 0 and played[-1][1] == pytest.approx(seconds, abs=0.01)

        # The audio came from the app's own route; Twilio's (the simulator's) URL and
        # media were never asked for by the browser.
        own = f"{app.url}/api/recordings/{sid}"
        fetched = [r for r in requests if r.resource_type == "media"]
        assert fetched and {r.url for r in fetched} == {own}, [r.url for r in fetched]
        assert not [
            r.url
            for r in requests
            if r.url.startswith(sim.base_url + "/2010-04-01") or "twilio.com" in r.url
        ]
        answered = [r for r in responses if r.url == own]
        assert answered and all(r.status in (200, 206) for r in answered)
        assert all(r.headers["content-type"].startswith("audio/") for r in answered)
        # Chromium asks for media by byte range; the app answers it as Twilio did.
        ranged = [r for r in answered if "range" in r.request.headers]
        assert ranged and all(r.status == 206 for r in ranged)
        assert all(r.headers["content-range"].endswith(f"/{len(wav)}") for r in ranged)
        await screenshot(boss, "history-recording-played")
        await no_problems(alice, boss)
