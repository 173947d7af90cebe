"""Callers joining the back of a long line through two processes at once commit at
their first attempt, each learning their place at EXEC time
(console/domain/positions.py); any other change to the line still makes a stale
process start over."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from console.domain import keys, waiting_line
from console.domain.events import append_events
from console.domain.positions import Positions
from console.telephony.runner import Runner
from simulator.testing import call_sid
from tests.conftest import PUBLIC_BASE_URL
from tests.support.flow_helpers import AppVoice, customer_waits, events, hang_up_customer
from tests.support.processes import follow_each_other
from warmline.app import create_app


@pytest.fixture(autouse=True)
def no_background_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweeps run only when a test asks: one landing mid-burst, on a copy the other
    process's commits outdated, would count a refused check of its own."""
    monkeypatch.setattr("console.telephony.runner.SWEEP_SECONDS", 3600.0)


BURST = 40


@pytest.fixture
def hold_back_for_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting_line, "QUEUE_UPDATE_INTERVAL_MS", 60_000)
    monkeypatch.setattr("console.domain.unit.QUEUE_UPDATE_INTERVAL_MS", 60_000)


async def counted(redis: Redis) -> tuple[int, int]:
    """(commits refused by their check, WATCHes sent) so far."""
    stats = await redis.info("commandstats")
    conflicts = int(await redis.get(keys.UNIT_CONFLICTS) or 0)
    return conflicts, int(stats.get("cmdstat_watch", {}).get("calls", 0))


async def places(redis: Redis) -> dict[str, int]:
    """Each caller's position as their call.queued event gave it."""
    return {
        e["data"]["call_sid"]: e["data"]["position"]
        for e in await events(redis)
        if e["type"] == "call.queued"
    }


async def timeline_place(redis: Redis, name: str) -> str:
    entries = [json.loads(raw) for raw in await redis.lrange(keys.timeline(name), 0, -1)]
    return next(e["detail"] for e in entries if e["type"] == "call.queued")


async def test_joins_through_two_processes_commute_and_learn_their_place(
    settings, redis: Redis, redis_server, twilio, hold_back_for_a_minute, monkeypatch
) -> None:
    one = create_app(settings, redis_url=redis_server.url)
    two = create_app(settings, redis_url=redis_server.url)
    async with one.test_app(), two.test_app(), one.test_client() as c1, two.test_client() as c2:
        await follow_each_other(one, two)
        voices = [
            AppVoice(c1, twilio, one, PUBLIC_BASE_URL),
            AppVoice(c2, twilio, two, PUBLIC_BASE_URL),
        ]
        # A line long enough that queue.updated is held back; the second process
        # reads the state once, so both start from a copy.
        line = [await customer_waits(voices[0]) for _ in range(waiting_line.EAGER_QUEUE_UPDATES)]
        line.append(await customer_waits(voices[1]))
        conflicts, watches = await counted(redis)
        sids = [call_sid() for _ in range(BURST)]
        answers = await asyncio.gather(
            *(voices[i % 2].send(voices[i % 2].incoming(s)) for i, s in enumerate(sids))
        )
        assert [a.status_code for a in answers] == [200] * BURST
        # Every join committed at its first attempt, though each process's copy of
        # the line was behind the other's joins.
        assert await counted(redis) == (conflicts, watches + BURST)
        final = await redis.lrange(keys.QUEUE, 0, -1)
        assert final[: len(line)] == line and sorted(final[len(line) :]) == sorted(sids)
        given = await places(redis)
        assert {s: given[s] for s in sids} == {s: final.index(s) + 1 for s in sids}
        for name in (sids[0], sids[-1]):
            position = final.index(name) + 1
            assert (
                await timeline_place(redis, name) == f"waiting in the queue at position {position}"
            )

        # Each process's copy took the line as its commit found it: the held-back
        # queue.updated a sweep sends lists everyone, in order.
        monkeypatch.setattr("console.domain.unit.QUEUE_UPDATE_INTERVAL_MS", 0)
        await Runner.of(one).sweep()
        monkeypatch.setattr("console.domain.unit.QUEUE_UPDATE_INTERVAL_MS", 60_000)
        updates = [e["data"]["queue"] for e in await events(redis) if e["type"] == "queue.updated"]
        assert [(q["call_sid"], q["position"]) for q in updates[-1]] == [
            (name, i) for i, name in enumerate(final, 1)
        ]

        # A departure changes the line's order: a process that has not seen it must
        # start over, and its caller still gets the right place. (First a join on the
        # first process: its sweep found its copy stale, so its next unit reads.)
        await customer_waits(voices[0])
        await hang_up_customer(voices[1], line[3], "participant-with-end-conference-on-exit-left")
        conflicts, _ = await counted(redis)
        newcomer = await customer_waits(voices[0])
        assert (await counted(redis))[0] == conflicts + 1
        final = await redis.lrange(keys.QUEUE, 0, -1)
        assert line[3] not in final and final[-1] == newcomer
        assert (await places(redis))[newcomer] == len(final)


async def test_tokens_are_replaced_whole(redis: Redis) -> None:
    """Twelve joins in one commit: the token of the caller 1 place from the tail is not
    part of the one 10 places from it."""
    from console.domain.events import Event

    positions = Positions()
    names = [f"CA{i}" for i in range(12)]
    pipe = redis.pipeline(transaction=True)
    pipe.rpush(keys.QUEUE, "CAfirst", *names)
    queued = [
        Event("call.queued", {"call_sid": n, "position": positions.token(11 - i)}, 1)
        for i, n in enumerate(names)
    ]
    append_events(pipe, queued, 100, positions)
    await pipe.execute()
    assert await places(redis) == {n: i + 2 for i, n in enumerate(names)}
