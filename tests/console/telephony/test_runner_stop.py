"""The routing sweeper stops at once even when the cancellation lands in a Redis read:
redis-py may turn it into its own timeout error, which the sweeper used to log and
sweep on from, holding the app's shutdown past Quart's 6 s (a teardown error seen in
CI once alerts made each sweep longer)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import TimeoutError as RedisTimeout

from console.telephony import runner as runner_module
from console.telephony.runner import Runner

pytestmark = pytest.mark.timeout(30)


async def test_the_sweeper_stops_when_its_cancellation_comes_back_as_a_redis_timeout(
    monkeypatch,
):
    runner = Runner()
    sweeping = asyncio.Event()

    async def sweep() -> None:
        sweeping.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RedisTimeout("Timeout reading from socket") from None  # as redis-py does

    monkeypatch.setattr(runner, "sweep", sweep)
    monkeypatch.setattr(runner_module, "SWEEP_SECONDS", 0.01)
    await runner.start()
    await sweeping.wait()
    async with asyncio.timeout(2):
        await runner.stop()
    assert runner._sweeper is not None and runner._sweeper.done()
