"""`warmline demo --bots N`'s simulated agents (simulator.bots) against a real app
process and the simulator over real sockets: they sign in, go available, answer,
transfer, give a disposition, go Ready again, and stop without leaving a task."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from console.config import DEFAULT_BREAK_REASONS, DEFAULT_DISPOSITIONS
from simulator.bots import BotPlan, Bots
from simulator.parties import Phone
from tests.support.browser import demo_world
from tests.support.flow_helpers import events
from tests.support.waiting import until
from warmline.demo import DEMO_PASSWORD, bot_names, create_demo_users

pytestmark = pytest.mark.timeout(90)

TIME_SCALE = 0.1  # the simulator's (and bots') seconds: a 20 s talk lasts 2 s
QUIET = BotPlan(talk=(10.0, 20.0), transfer_share=0.0, break_share=0.0)


def bot_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still running bot code (a bot's loop, pinger or chores)."""
    current = asyncio.current_task()
    return [
        t
        for t in asyncio.all_tasks()
        if t is not current
        and not t.done()
        and t.get_coro().__qualname__.split(".")[0] in ("Bot", "Bots")
    ]


def of_type(log: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e for e in log if e["type"] == kind and all(e["data"].get(k) == v for k, v in match.items())
    ]


async def test_bots_answer_wrap_up_and_go_ready_again(redis_server, redis, tmp_path):
    names = bot_names(2)
    async with demo_world(
        redis_server, redis, tmp_path, {}, time_scale=TIME_SCALE, WRAP_UP_SECONDS="10"
    ) as (sim, app):
        await create_demo_users(redis_server.url, bots=names)
        bots = Bots(app.url, sim, names, DEMO_PASSWORD, plan=QUIET)
        bots.start()
        try:

            async def both_available() -> bool:
                log = await events(redis)
                return all(
                    of_type(log, "agent.updated", username=n, status="available") for n in names
                )

            await until(both_available)
            callers = [await sim.call_in(), await sim.call_in()]

            async def both_disposed() -> list[dict[str, Any]]:
                found = of_type(await events(redis), "call.disposition")
                return found if {e["data"]["call"] for e in found} == set(callers) else []

            disposed = await until(both_disposed)
            log = await events(redis)
            for caller in callers:
                [answered] = of_type(log, "participant.joined", conference=caller, role="agent")
                assert answered["data"]["agent"] in names
            # Each bot took one of the two calls and wrapped it up itself.
            assert {e["data"]["agent"] for e in disposed} == set(names)
            assert all(e["data"]["disposition"] in DEFAULT_DISPOSITIONS for e in disposed)
            assert all(b.calls == 1 for b in bots.bots)
            for entry in disposed:
                agent = entry["data"]["agent"]

                async def ready_again(agent: str = agent, after: str = entry["id"]) -> bool:
                    log = await events(redis)
                    return any(
                        e["id"] > after
                        for e in of_type(log, "agent.updated", username=agent, status="available")
                    )

                await until(ready_again)
            wrap_ups = of_type(await events(redis), "agent.updated", status="wrap-up")
            assert {e["data"]["username"] for e in wrap_ups} == set(names)
        finally:
            await bots.stop()
        assert bots.running == 0
        assert bot_tasks() == []
        assert all(b._http is None for b in bots.bots)
        assert not any(sim.phone(n, register=False).registered for n in names)


async def test_a_bot_hands_its_call_on_with_a_warm_transfer(redis_server, redis, tmp_path):
    names = bot_names(2)
    plan = BotPlan(talk=(40.0, 50.0), transfer_share=1.0, break_share=0.0)
    async with demo_world(
        redis_server, redis, tmp_path, {}, time_scale=TIME_SCALE, WRAP_UP_SECONDS="10"
    ) as (sim, app):
        await create_demo_users(redis_server.url, bots=names)
        bots = Bots(app.url, sim, names, DEMO_PASSWORD, plan=plan)
        bots.start()
        try:

            async def both_available() -> bool:
                log = await events(redis)
                return all(
                    of_type(log, "agent.updated", username=n, status="available") for n in names
                )

            await until(both_available)
            caller = await sim.call_in()

            async def completed() -> list[dict[str, Any]]:
                log = await events(redis)
                return of_type(log, "transfer.updated", conference=caller, status="completed")

            [done, *_] = await until(completed)
            first, colleague = done["data"]["from_agent"], done["data"]["to_agent"]
            assert {first, colleague} == set(names)
            assert done["data"]["note"] == "bot transfer"
            log = await events(redis)
            joined = [
                e["data"]["agent"]
                for e in of_type(log, "participant.joined", conference=caller, role="agent")
            ]
            assert joined[:2] == [first, colleague]
            # The first bot left the call only once its colleague was with the customer.
            left = of_type(log, "participant.left", conference=caller, agent=first)
            colleague_in = of_type(log, "participant.joined", conference=caller, agent=colleague)
            assert left and colleague_in and left[0]["id"] > colleague_in[0]["id"]
        finally:
            await bots.stop()
        assert bot_tasks() == []


async def test_a_bot_takes_a_break_after_a_call_and_comes_back(redis_server, redis, tmp_path):
    plan = BotPlan(talk=(10.0, 15.0), transfer_share=0.0, break_share=1.0, break_length=(10, 20))
    async with demo_world(
        redis_server, redis, tmp_path, {}, time_scale=TIME_SCALE, WRAP_UP_SECONDS="10"
    ) as (sim, app):
        await create_demo_users(redis_server.url, bots=["bot1"])
        bots = Bots(app.url, sim, ["bot1"], DEMO_PASSWORD, plan=plan)
        bots.start()
        try:

            async def available() -> list[dict[str, Any]]:
                return of_type(await events(redis), "agent.updated", status="available")

            await until(available)
            await sim.call_in()

            async def back_from_break() -> bool:
                log = await events(redis)
                breaks = of_type(log, "agent.updated", username="bot1", status="break")
                return bool(breaks) and any(
                    e["id"] > breaks[0]["id"]
                    for e in of_type(log, "agent.updated", username="bot1", status="available")
                )

            await until(back_from_break)
            log = await events(redis)
            [disposed] = of_type(log, "call.disposition", agent="bot1")
            [on_break] = of_type(log, "agent.updated", username="bot1", status="break")
            assert on_break["data"]["reason"] in DEFAULT_BREAK_REASONS
            assert disposed["id"] < on_break["id"]  # the call was wrapped up first
        finally:
            await bots.stop()
        assert bot_tasks() == []


async def test_a_bot_carries_on_while_the_app_is_unreachable():
    """Nothing listens at the app's address: the bot retries, and stops when told."""

    class Board:
        time_scale = 1.0

    class NoExchange:
        rng = random.Random(1)
        board = Board()
        phones: dict[str, Phone] = {}

        def phone(self, identity: str, *, register: bool = True, auto: Any = None) -> Phone:
            return self.phones.setdefault(identity, Phone(identity))

    bots = Bots("http://127.0.0.1:9", NoExchange(), ["bot1"], "pw")
    bots.start()
    await asyncio.sleep(0.3)
    assert bots.running == 1  # still trying, not crashed
    await bots.stop()
    assert bots.running == 0 and bot_tasks() == []
    assert bots.bots[0]._http is None
