"""A waiting caller's place in line (SPEC §9): the wait URL's loop tells each caller
their own position at most every ANNOUNCE_SECONDS, from the line the views show, with
the expected wait once the app can estimate it (console/domain/expected_wait.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import pytest

from console import intake
from console.domain import keys
from console.domain.expected_wait import estimate
from console.domain.figures import local_day
from console.extension import SETTINGS_KEY
from simulator.testing import Delivery, TwilioDouble
from tests.conftest import PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    customer_waits,
    events,
    hang_up_customer,
    leg_leaves,
    login,
    set_available,
)
from warmline.app import create_app

pytestmark = pytest.mark.timeout(60)
WELCOME = "Please hold."


@asynccontextmanager
async def served(
    twilio: TwilioDouble, redis_server: Any, **overrides: Any
) -> AsyncIterator[tuple[Any, AppVoice]]:
    settings = make_settings(api_base_url=twilio.base_url, welcome_message=WELCOME, **overrides)
    app = create_app(settings, redis_url=redis_server.url)
    async with app.test_app(), app.test_client() as client:
        yield app, AppVoice(client, twilio, app, PUBLIC_BASE_URL)


async def waits(voice: AppVoice, url: str, now: int, monkeypatch: pytest.MonkeyPatch) -> Any:
    """One request of the caller's wait loop at ``now``: (verbs, says, redirect URL)."""
    monkeypatch.setattr(intake, "now_ms", lambda: now)
    response = await voice.send(Delivery(url, {"AccountSid": voice.account_sid}))
    assert response.status_code == 200
    root = ElementTree.fromstring(await response.get_data(as_text=True))
    redirect = root.find("Redirect")
    return (
        [child.tag for child in root],
        [say.text for say in root.findall("Say")],
        redirect.text if redirect is not None else None,
    )


def wait_url_of(twiml: ElementTree.Element) -> str:
    conference = twiml.find("./Dial/Conference")
    assert conference is not None
    return conference.get("waitUrl") or ""


async def test_each_caller_hears_their_own_place_at_most_every_announce_seconds(
    twilio, redis, redis_server, monkeypatch
):
    async with served(twilio, redis_server, announce_seconds=60) as (_app, voice):
        first, _ = await voice.call_in()
        second, twiml = await voice.call_in()
        url = wait_url_of(twiml)
        assert url == f"{PUBLIC_BASE_URL}/conference/wait?call={second}"
        t0 = 1_800_000_000_000
        verbs, says, again = await waits(voice, url, t0, monkeypatch)
        assert verbs == ["Say", "Say", "Play", "Redirect"]
        assert says == [WELCOME, "You are number 2 in line."]  # no estimate: nothing handled
        assert parse_qs(urlsplit(again).query) == {"call": [second], "announced": [str(t0)]}
        # The music ended after 20 s: music again, no announcement, the same mark.
        verbs, says, later = await waits(voice, again, t0 + 20_000, monkeypatch)
        assert (verbs, says, later) == (["Play", "Redirect"], [], again)
        # The caller ahead hangs up; a minute after the last one, the next announcement.
        await hang_up_customer(voice, first, "participant-with-end-conference-on-exit-left")
        verbs, says, third = await waits(voice, later, t0 + 60_000, monkeypatch)
        assert says == ["You are next in line."]
        assert parse_qs(urlsplit(third).query)["announced"] == [str(t0 + 60_000)]


async def test_a_caller_no_longer_in_line_hears_music_alone(
    twilio, redis, redis_server, monkeypatch
):
    async with served(twilio, redis_server) as (app, voice):
        alice = await login(app, redis, "alice")
        await set_available(alice)
        name = await customer_waits(voice)
        await agent_answers(voice, name, "alice")  # routed: out of the line
        url = f"{PUBLIC_BASE_URL}/conference/wait?call={name}&announced=1"
        verbs, says, _ = await waits(voice, url, 1_800_000_000_000, monkeypatch)
        assert (verbs, says) == (["Play", "Redirect"], [])


async def test_with_announce_seconds_0_the_wait_is_as_before(twilio, redis, redis_server):
    async with served(twilio, redis_server, announce_seconds=0) as (_app, voice):
        _, twiml = await voice.call_in()
        url = wait_url_of(twiml)
        assert url == f"{PUBLIC_BASE_URL}/conference/wait"
        response = await voice.send(Delivery(url, {"AccountSid": voice.account_sid}))
        root = ElementTree.fromstring(await response.get_data(as_text=True))
        assert [child.tag for child in root] == ["Say", "Play"]
        assert root.find("Play").get("loop") == "0"


async def test_a_malformed_wait_query_gets_music_not_an_error(twilio, redis, redis_server):
    async with served(twilio, redis_server) as (_app, voice):
        for query in ("call=nope", "call=CA" + "0" * 32 + "&announced=x"):
            url = f"{PUBLIC_BASE_URL}/conference/wait?{query}"
            response = await voice.send(Delivery(url, {"AccountSid": voice.account_sid}))
            assert response.status_code == 200
            assert "<Play" in await response.get_data(as_text=True)


# -- the expected wait --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "statuses", "expected"),
    [
        (1, ["available"], 0),  # an agent is free: no wait
        (2, ["available", "busy"], 240_000),  # one ahead of a busy agent: one handle time
        (3, ["busy", "busy"], 480_000),  # two rounds of two agents
        (2, ["busy", "busy"], 240_000),
        (5, ["busy", "ringing", "available", "offline"], 480_000),  # 4 wait on 3 signed in
        (1, ["offline"], None),  # nobody signed in
    ],
)
def test_the_estimate_from_handle_time_and_agents(position, statuses, expected):
    assert estimate(position, statuses, handled=10, handle_ms=2_400_000) == expected


def test_no_estimate_before_a_call_was_handled():
    assert estimate(3, ["busy"], handled=0, handle_ms=0) is None


async def test_callers_and_supervisors_get_the_estimate_from_a_seeded_day(
    twilio, redis, redis_server, monkeypatch
):
    async with served(twilio, redis_server, center_timezone="America/New_York") as (app, voice):
        sue = await login(app, redis, "sue", role="supervisor")
        for agent in ("alice", "bob"):  # both busy with a caller
            client = await login(app, redis, agent)
            await set_available(client)
            name = await customer_waits(voice)
            await agent_answers(voice, name, agent)
        now = 1_800_000_000_000
        day = local_day(now, app.config[SETTINGS_KEY].center_zone)
        # Today so far: 12 calls handled in 48 minutes, 4 minutes each.
        await redis.hset(keys.figures(day), mapping={"handled": 12, "handle_ms": 12 * 240_000})
        waiting = [await voice.call_in() for _ in range(3)]
        third, twiml = waiting[2]
        _, says, _ = await waits(voice, wait_url_of(twiml), now, monkeypatch)
        assert says[-1] == "You are number 3 in line. Your expected wait is about 8 minutes."
        monkeypatch.setattr("console.web.reports.now_ms", lambda: now)
        figures = await (await sue.get("/api/figures")).get_json()
        assert figures["waiting"] == 3
        assert figures["expected_wait_ms"] == 2 * 240_000  # a fourth caller: 2 rounds
        _ = third


async def test_a_handled_call_adds_its_length_on_twilios_clock(twilio, redis, redis_server):
    async with served(twilio, redis_server) as (app, voice):
        alice = await login(app, redis, "alice")
        await set_available(alice)
        name = await customer_waits(voice)
        leg = await agent_answers(voice, name, "alice")  # conference-start at tick t
        await leg_leaves(voice, name, leg, end_on_exit=True)
        await voice.event(name, "conference-end", ReasonConferenceEnded="x")
        await voice.settle()
        [day_key] = [k for k in await redis.keys(keys.figures("*")) if "contrib" not in k]
        counters = await redis.hgetall(day_key)
        assert counters["handled"] == "1"
        # From the start to the end Twilio reported (voice.tick(): a second a callback).
        [ended] = [e for e in await events(redis) if e["type"] == "conference.ended"]
        length = ended["data"]["ended_at"] - ended["data"]["started_at"]
        assert length >= 2_000 and int(counters["handle_ms"]) == length
