"""Retention: `purge` removes exactly what is older than the cutoff, in batches, and
the recordings of the calls it removes at Twilio; the daily purge runs in one process
of the deployment once a day."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from console.config import Settings
from console.domain.events import now_ms
from console.history import purge
from console.history.retention import PURGED_ON, DailyPurge
from console.postgres_ext import make_pool
from console.telephony.gateway import TwilioGateway
from simulator.testing import TwilioDouble
from tests.conftest import ACCOUNT_SID, make_settings
from tests.support.history_seed import Call, Leg, answered, insert_calls
from tests.support.waiting import until
from warmline.app import create_app

C = 1_700_000_000_000  # the cutoff of the direct tests
HOUR = 3_600_000
DAY = 24 * HOUR


async def insert_event(
    pg: Any, event_id: str, ts: int, kind: str, conference: str | None, **data: Any
) -> None:
    ms, seq = (int(part) for part in event_id.split("-"))
    await pg.execute(
        "INSERT INTO events (id, ms, seq, type, ts, conference, audience, data)"
        " VALUES (%s, %s, %s, %s, %s, %s, '*', %s)",
        (event_id, ms, seq, kind, ts, conference, Jsonb(data)),
    )


async def ids(pg: Any, table: str, column: str = "id") -> set[str]:
    cursor = await pg.execute(f"SELECT {column} AS v FROM {table}")
    return {row["v"] for row in await cursor.fetchall()}


async def seed_across(pg: Any, cutoff: int) -> None:
    """Three calls before ``cutoff`` (one a millisecond before), two from it on, their
    events, and agents' status changes on both sides."""
    transfer = {"id": "T1", "status": "completed", "from_agent": "ann", "to_agent": "bob"}
    await insert_calls(
        pg,
        [
            Call(
                "CAold1",
                cutoff - 1,
                legs=[Leg("ann", cutoff - 1, cutoff + 60_000), Leg("bob", cutoff, cutoff + 9)],
                transfers=[{**transfer, "created_at": cutoff, "updated_at": cutoff + 5}],
            ),
            answered("CAold2", cutoff - DAY, "ann"),
            Call("CAold3", cutoff - 40 * DAY, outcome="abandoned"),
            answered("CAnew1", cutoff, "ann"),
            answered("CAnew2", cutoff + HOUR, "bob"),
        ],
    )
    events = [
        (cutoff - 1, "call.queued", "CAold1"),
        (cutoff + 5_000, "participant.joined", "CAold1"),  # after the cutoff, its call is not
        (cutoff - DAY, "call.queued", "CAold2"),
        (cutoff - 40 * DAY, "call.queued", "CAold3"),
        (cutoff, "call.queued", "CAnew1"),
        (cutoff + HOUR, "call.queued", "CAnew2"),
        (cutoff - 10, "participant.left", "CFnocall"),  # a conference with no call row
    ]
    for n, (ts, kind, conference) in enumerate(events):
        await insert_event(pg, f"{ts}-{n}", ts, kind, conference)
    statuses = [
        (cutoff - 3 * HOUR, "ann", "available"),
        (cutoff - 2 * HOUR, "ann", "busy"),  # ann's status across the cutoff
        (cutoff + HOUR, "ann", "available"),
        (cutoff - 5 * HOUR, "bob", "break"),  # bob's, since then
    ]
    for n, (ts, agent, status) in enumerate(statuses):
        await insert_event(
            pg, f"{ts}-{10 + n}", ts, "agent.updated", None, username=agent, status=status
        )
    await insert_event(pg, f"{cutoff - 7}-20", cutoff - 7, "alert.raised", None)
    await insert_event(pg, f"{cutoff + 7}-21", cutoff + 7, "alert.raised", None)


async def nothing_to_delete(sid: str) -> None:
    raise AssertionError(f"no recording to delete, got {sid}")


async def test_purge_removes_exactly_what_is_before_the_cutoff_in_batches(pg) -> None:
    await seed_across(pg, C)
    old_totals = "SELECT count(*) AS n FROM agent_quarters WHERE quarter + 900000 <= %s"
    assert (await (await pg.execute(old_totals, (C,))).fetchone())["n"] > 0

    done = await purge.purge(pg, C, nothing_to_delete, call_batch=2, event_batch=2)

    assert await ids(pg, "calls") == {"CAnew1", "CAnew2"}
    assert await ids(pg, "call_legs", "call_id") == {"CAnew1", "CAnew2"}
    assert await ids(pg, "call_transfers", "call_id") == set()
    cursor = await pg.execute("SELECT ts, type, conference, data FROM events ORDER BY ts, type")
    left = [
        (r["ts"] - C, r["type"], r["conference"] or r["data"].get("username"))
        for r in await cursor.fetchall()
    ]
    assert left == [
        (-5 * HOUR, "agent.updated", "bob"),
        (-2 * HOUR, "agent.updated", "ann"),
        (0, "call.queued", "CAnew1"),
        (7, "alert.raised", None),
        (HOUR, "agent.updated", "ann"),
        (HOUR, "call.queued", "CAnew2"),
    ]
    assert (done.calls, done.legs, done.transfers, done.events, done.kept) == (3, 3, 1, 7, [])
    assert (await (await pg.execute(old_totals, (C,))).fetchone())["n"] == 0
    assert done.totals > 0
    assert done.cutoff == C

    again = await purge.purge(pg, C, nothing_to_delete)
    assert (again.calls, again.events) == (0, 0)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[TwilioGateway]:
    gateway = TwilioGateway(settings=settings)
    await gateway.open()
    yield gateway
    await gateway.close()


def recording_deletes(twilio: TwilioDouble) -> list[str]:
    return sorted(
        r.path.rsplit("/", 1)[-1].removesuffix(".json")
        for r in twilio.find("DELETE", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/")
    )


async def seed_recorded(pg: Any, cutoff: int) -> None:
    rec = {"duration": 12, "status": "completed"}
    await insert_calls(
        pg,
        [
            answered("CAold1", cutoff - HOUR, "ann", recording={"sid": "RE01", **rec}),
            Call("CAold2", cutoff - 2 * HOUR, outcome="voicemail", voicemail={"sid": "RE02"}),
            answered("CAold3", cutoff - 3 * HOUR, "ann"),
            answered("CAnew", cutoff + HOUR, "ann", recording={"sid": "RE03", **rec}),
        ],
    )
    await insert_event(pg, f"{cutoff - HOUR}-0", cutoff - HOUR, "call.queued", "CAold1")


async def test_recordings_of_purged_calls_are_deleted_at_twilio(
    pg, twilio: TwilioDouble, gateway: TwilioGateway
) -> None:
    await seed_recorded(pg, C)

    done = await purge.purge(pg, C, gateway.delete_recording)

    assert recording_deletes(twilio) == ["RE01", "RE02"]
    assert done.recordings == 2 and done.calls == 3
    assert await ids(pg, "calls") == {"CAnew"}


async def test_a_call_whose_recording_twilio_keeps_stays_for_the_next_purge(
    pg, twilio: TwilioDouble, gateway: TwilioGateway
) -> None:
    await seed_recorded(pg, C)
    twilio.fail_next("/Recordings/RE01", status=500)

    done = await purge.purge(pg, C, gateway.delete_recording)

    assert done.kept == ["CAold1"] and done.calls == 2
    assert await ids(pg, "calls") == {"CAold1", "CAnew"}
    assert await ids(pg, "events", "conference") == {"CAold1"}  # its timeline stays too
    done = await purge.purge(pg, C, gateway.delete_recording)
    assert (done.calls, done.kept, done.events) == (1, [], 1)
    assert await ids(pg, "calls") == {"CAnew"}


@pytest.fixture
async def pools(database_url: str) -> AsyncIterator[tuple[AsyncConnectionPool, ...]]:
    """Two processes' pools."""
    pools = tuple(make_pool(database_url, max_size=2) for _ in range(2))
    for pool in pools:
        await pool.open(wait=True)
    yield pools
    for pool in pools:
        await pool.close()


async def test_two_processes_racing_one_purges_once_a_day(pg, redis: Redis, pools) -> None:
    now = now_ms()
    await seed_recorded(pg, now - 30 * DAY)
    deleting, release = asyncio.Event(), asyncio.Event()
    deleted: list[str] = []

    async def slow_delete(sid: str) -> None:
        deleting.set()
        await release.wait()
        deleted.append(sid)

    async def quick_delete(sid: str) -> None:
        deleted.append(sid)

    first = DailyPurge(lambda: redis, lambda: pools[0], slow_delete, 30, UTC)
    second = DailyPurge(lambda: redis, lambda: pools[1], quick_delete, 30, UTC)
    purging = asyncio.create_task(first.run_once())
    await asyncio.wait_for(deleting.wait(), 10)

    assert await second.run_once() is None  # the first holds the lock
    release.set()
    done = await purging
    assert done is not None and done.calls == 3
    assert sorted(deleted) == ["RE01", "RE02"]
    assert await redis.get(PURGED_ON) == first.today()

    # The same day, neither purges again.
    await insert_calls(pg, [answered("CAlate", now - 31 * DAY, "ann")])
    assert await second.run_once() is None
    assert await first.run_once() is None
    assert await ids(pg, "calls") == {"CAnew", "CAlate"}
    assert sorted(deleted) == ["RE01", "RE02"]


async def test_the_app_purges_in_the_background(
    twilio: TwilioDouble, redis: Redis, redis_server, database_url: str, pg
) -> None:
    await seed_recorded(pg, now_ms() - 30 * DAY)
    settings = make_settings(api_base_url=twilio.base_url, history_retention_days=30)
    app = create_app(settings, redis_url=redis_server.url, database_url=database_url)
    app.extensions[DailyPurge.key].first_delay = 0
    async with app.test_app():

        async def purged() -> bool:
            return await ids(pg, "calls") == {"CAnew"}

        await until(purged, within=10)
    assert recording_deletes(twilio) == ["RE01", "RE02"]
    assert await redis.get(PURGED_ON) is not None
