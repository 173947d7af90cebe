"""Two app instances sharing one Redis route a burst of callers to a few agents:
never two agents for one caller, never one agent for two callers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from console.domain import keys
from console.domain.records import Agent
from console.domain.transaction import run_unit
from console.domain.unit import Unit
from console.redis_ext import connect
from simulator.testing import call_sid
from tests.conftest import PUBLIC_BASE_URL
from tests.support.flow_helpers import AppVoice, login, set_available
from warmline.app import create_app

CALLERS = 24
AGENTS = 4


async def settled_offers(voices, double, expected: int) -> list[tuple[str, str]]:
    """Offers once both instances are idle; routing may finish on a sweep (every 2 s)
    when the burst made units retry, so give it a few rounds."""
    for _ in range(10):
        for voice in voices:
            await voice.settle()
        if len(offers(double)) >= expected:
            break
        await asyncio.sleep(0.5)
    return offers(double)


def offers(double) -> list[tuple[str, str]]:
    """(agent, conference) of every dial placed, from the recorded REST requests."""
    found = []
    for create in double.calls_created():
        url = create.param("Url") or ""
        conference = url.split("conference=")[1].split("&")[0]
        found.append((create.param("To").removeprefix("client:"), conference))
    return found


async def test_burst_across_two_instances_never_double_assigns(
    settings, redis, redis_server, twilio
):
    one = create_app(settings, redis_url=redis_server.url)
    two = create_app(settings, redis_url=redis_server.url)
    async with one.test_app(), two.test_app():
        agents = [await login(one, redis, f"agent{i}") for i in range(AGENTS)]
        async with one.test_client() as c1, two.test_client() as c2:
            voices = [
                AppVoice(c1, twilio, one, PUBLIC_BASE_URL),
                AppVoice(c2, twilio, two, PUBLIC_BASE_URL),
            ]
            sids = [call_sid() for _ in range(CALLERS)]
            await asyncio.gather(
                *(voices[i % 2].send(voices[i % 2].incoming(s)) for i, s in enumerate(sids)),
                *(set_available(a) for a in agents),
            )
            placed = await settled_offers(voices, twilio, AGENTS)
            assert len(placed) == AGENTS
            assert len({agent for agent, _ in placed}) == AGENTS, placed
            assert len({conf for _, conf in placed}) == AGENTS, placed
            # Every agent declines: each is marked missed, none of them is dialed again,
            # and the customers stay queued in their order for the next agents.
            declines = []
            for index, create in enumerate(twilio.calls_created()):
                voice = voices[index % 2]
                sid = voice.created_sid(create)
                declines.append(voice.send(voice.call_status(create, sid, "no-answer")))
            await asyncio.gather(*declines)
            for voice in voices:
                await voice.settle()
            assert len(offers(twilio)) == AGENTS  # missed agents are not dialed again
            await asyncio.gather(*(set_available(a) for a in agents))
            placed = await settled_offers(voices, twilio, 2 * AGENTS)
            per_agent = Counter(agent for agent, _ in placed)
            assert set(per_agent.values()) == {2}
            second_round = placed[AGENTS:]
            assert len({conf for _, conf in second_round}) == AGENTS
            first_round = {conf for _, conf in placed[:AGENTS]}
            # the customers first offered are still first in line
            assert {conf for _, conf in second_round} == first_round


async def test_one_process_routes_a_burst_in_few_passes_and_never_retries(
    app, redis, voice, twilio, monkeypatch
):
    """Units of one process take turns, and routing asked for during a pass becomes
    one more pass after it: a burst of 40 calls with 4 agents free commits every
    unit at its first attempt and dials each agent once."""
    import console.domain.routing

    passes = 0
    assign = console.domain.routing.assign

    async def counted(unit):
        nonlocal passes
        passes += 1
        return await assign(unit)

    monkeypatch.setattr(console.domain.routing, "assign", counted)
    agents = [await login(app, redis, f"agent{i}") for i in range(AGENTS)]
    for agent in agents:
        await set_available(agent)
    watches_before = int((await redis.info("commandstats"))["cmdstat_watch"]["calls"])
    sids = [call_sid() for _ in range(40)]
    answers = await asyncio.gather(*(voice.send(voice.incoming(s)) for s in sids))
    assert [a.status_code for a in answers] == [200] * len(sids)
    await voice.settle()
    watches = int((await redis.info("commandstats"))["cmdstat_watch"]["calls"]) - watches_before
    placed = offers(twilio)
    assert sorted(agent for agent, _ in placed) == [f"agent{i}" for i in range(AGENTS)]
    assert len({conference for _, conference in placed}) == AGENTS
    # Each call's unit, each dial's result, and the routing passes: one WATCH each
    # (a routing pass that offers calls WATCHes their conferences once more).
    assert watches <= len(sids) + AGENTS + 2 * passes + 4, (watches, passes)  # + sweeps
    assert passes < len(sids) // 2, passes


async def test_a_commit_between_the_read_and_the_commit_makes_the_unit_start_over(
    settings, redis, redis_server
):
    """Another process (its own client) commits after this unit read its state and
    before it committed: the unit must run again from scratch, seeing that commit."""
    client = connect(redis_server.url)
    seen: list[set[str]] = []

    async def intrude(unit: Unit) -> None:
        unit.agent("intruder")

    async def change(unit: Unit) -> None:
        seen.append(set(unit.agents))
        if len(seen) == 1:  # someone else commits in between, once
            await run_unit(redis, settings, intrude)
        unit.agent("alice")

    try:
        await run_unit(client, settings, change, conferences=(call_sid(),))
    finally:
        await client.aclose()
    assert seen == [set(), {"intruder"}]
    assert set(await redis.hkeys(keys.AGENTS)) == {"intruder", "alice"}


async def test_units_cancelled_at_any_moment_leave_no_stray_reply_for_the_next(
    settings, redis, redis_server
):
    """A unit's check and commit go out together on its connection (not through
    redis-py's pipeline): cancelled between sending and reading (the Voice URL's
    time budget does that), the connection must not serve a later unit the replies
    left unread, and a commit that landed unseen must not leave the process's copy
    of the state behind. Cancel 300 units at moments spread over a unit's duration,
    on a pool of 2 connections; after each, a unit that completes adds one to what
    Redis truly holds."""
    client = connect(redis_server.url, max_connections=2)
    name = call_sid()
    await redis.hset(keys.AGENTS, "alice", Agent(username="alice").to_json())

    async def bump(unit: Unit) -> tuple[int, list[str]]:
        await unit.conference(name)
        alice = unit.agent("alice")
        alice.since += 1
        return alice.since, list(unit.queue)

    committed = []
    try:
        for i in range(300):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.00003 * (i % 40)):
                    await run_unit(client, settings, bump, conferences=(name,))
            (since, queue), _ = await run_unit(client, settings, bump, conferences=(name,))
            assert queue == []
            assert Agent.from_json(await redis.hget(keys.AGENTS, "alice")).since == since
            committed.append(since)
    finally:
        await client.aclose()
    assert committed == sorted(set(committed)) and committed[-1] >= 300
