"""The live figures' "today" is the day in CENTER_TIMEZONE, daylight-saving days
included, and their waits are measured on the app's clock only (SPEC §8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from console.domain import figures
from console.domain.events import Event
from console.domain.projections import project
from tests.conftest import PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    customer_waits,
    hang_up_customer,
    login,
    set_available,
)
from warmline.app import create_app

NEW_YORK = ZoneInfo("America/New_York")


def ms(iso: str) -> int:
    """A UTC time written out, in ms."""
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


def abandoned(name: str, created_at: int) -> Event:
    data = {"name": name, "created_at": created_at, "started_at": None, "ended_at": created_at}
    return Event("conference.ended", data, created_at + 5000, frozenset(), name)


async def abandons_by_day(redis: Redis, calls: dict[str, str], days: dict[str, str]) -> dict:
    """Commit one abandoned call per (name, UTC time), then read the figures as of each
    (day, a UTC time in it): the day's name and its abandoned count."""
    async with redis.pipeline(transaction=True) as pipe:
        events = [abandoned(name, ms(at)) for name, at in calls.items()]
        project(pipe, events, 0, NEW_YORK)
        await pipe.execute()
    counted = {}
    for day, now in days.items():
        result = await figures.read(redis, ms(now), 20, NEW_YORK)
        assert result["day"] == day
        counted[day] = result["abandoned"]
    return counted


async def test_the_23_hour_day_of_spring_forward(redis):
    # 2026-03-08 in New York runs from 05:00 UTC (EST, -5) to 04:00 UTC next day
    # (EDT, -4): 23 hours. Adding 24 h to its midnight would end it at 05:00 UTC.
    calls = {
        "CAbefore": "2026-03-08T04:59:59.999",  # 23:59:59.999 on the 7th, EST
        "CAmidnight": "2026-03-08T05:00:00",  # 00:00 on the 8th
        "CAlast": "2026-03-09T03:59:59.999",  # 23:59:59.999 on the 8th, EDT
        "CAnext": "2026-03-09T04:00:00",  # 00:00 on the 9th, EDT
        "CAhalfpast": "2026-03-09T04:30:00",  # 00:30 on the 9th: not the 8th
    }
    days = {
        "2026-03-07": "2026-03-08T04:00:00",
        "2026-03-08": "2026-03-08T12:00:00",
        "2026-03-09": "2026-03-09T04:00:00",
    }
    assert await abandons_by_day(redis, calls, days) == {
        "2026-03-07": 1,
        "2026-03-08": 2,
        "2026-03-09": 2,
    }


async def test_the_25_hour_day_of_fall_back(redis):
    # 2026-11-01 in New York runs from 04:00 UTC (EDT) to 05:00 UTC next day (EST):
    # 25 hours, 01:00-02:00 local twice.
    calls = {
        "CAbefore": "2026-11-01T03:59:59.999",  # 23:59:59.999 on Oct 31, EDT
        "CAmidnight": "2026-11-01T04:00:00",  # 00:00 on Nov 1
        "CAfirst1am": "2026-11-01T05:30:00",  # 01:30 EDT
        "CAsecond1am": "2026-11-01T06:30:00",  # 01:30 EST, the repeated hour
        "CAlate": "2026-11-02T04:30:00",  # 23:30 on Nov 1 (EST): 24.5 h after midnight
        "CAnext": "2026-11-02T05:00:00",  # 00:00 on Nov 2
    }
    days = {
        "2026-10-31": "2026-11-01T03:00:00",
        "2026-11-01": "2026-11-02T04:59:59",
        "2026-11-02": "2026-11-02T05:00:00",
    }
    assert await abandons_by_day(redis, calls, days) == {
        "2026-10-31": 1,
        "2026-11-01": 4,
        "2026-11-02": 1,
    }


def zone_with_another_date() -> str:
    """A zone whose date differs from UTC's right now: UTC-12 in the UTC morning,
    UTC+14 in the afternoon."""
    return "Etc/GMT+12" if datetime.now(UTC).hour < 12 else "Etc/GMT-14"


async def test_today_is_the_center_s_day_through_the_app(redis, twilio, redis_server):
    zone = zone_with_another_date()
    settings = make_settings(twilio.base_url, center_timezone=zone)
    app = create_app(settings, redis_url=redis_server.url)
    async with app.test_app(), app.test_client() as client:
        voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
        sam = await login(app, redis, "sam", role="supervisor")
        gone = await customer_waits(voice)
        await hang_up_customer(voice, gone, "last-participant-left")
        result = await (await sam.get("/api/figures")).get_json()
    local = datetime.now(ZoneInfo(zone)).strftime("%Y-%m-%d")
    assert local != datetime.now(UTC).strftime("%Y-%m-%d")
    assert result["day"] == local
    assert result["abandoned"] == 1


async def test_waits_are_on_the_app_s_clock_not_twilio_s(redis, twilio, redis_server):
    settings = make_settings(twilio.base_url, service_level_seconds=20)
    app = create_app(settings, redis_url=redis_server.url)
    async with app.test_app(), app.test_client() as client:
        voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
        alice = await login(app, redis, "alice")
        sam = await login(app, redis, "sam", role="supervisor")
        await set_available(alice)
        name = await customer_waits(voice)
        # Twilio's Timestamp says the conference started ten minutes after the call
        # reached the app; the app saw it within moments.
        voice.clock = datetime.now(UTC) + timedelta(minutes=10)
        await agent_answers(voice, name, "alice")
        result = await (await sam.get("/api/figures")).get_json()
    assert result["answered"] == 1
    assert result["mean_wait_ms"] < 20_000
    assert result["answered_within_service_level"] == 1
