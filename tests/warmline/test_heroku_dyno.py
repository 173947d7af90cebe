"""A dyno as app.json deploys it: `warmline serve` with the WEB_CONCURRENCY Heroku's
Python buildpack sets on an Eco, Basic or Standard-1X dyno (2) and app.json's values.
Both workers take requests, a call flows, and a burst of callers keeps the app's Redis
connections within the client limit of the Redis plan app.json asks for."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from console.domain import keys
from simulator.testing import TwilioDouble
from tests.console.web.test_metrics_workers import pinned_connections
from tests.console.web.test_ws_servers import set_status, user_session
from tests.support.flow_helpers import agent_answers, customer_joins, customer_waits
from tests.support.servers import app_server
from tests.system.test_faults_servers import twilio_voice
from tests.warmline.test_deploy_files import app_json, app_json_values

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

BUILDPACK_WEB_CONCURRENCY = "2"  # Heroku's Python buildpack on Eco, Basic and Standard-1X
PLAN_CLIENT_LIMIT = 40  # heroku-redis:premium-0
ONE_OFF_HEADROOM = 4  # `heroku run warmline ...` and the release phase beside the dyno
WRITER_CONNECTIONS = 4  # warmline/history_process.py
BURST = 150


async def app_clients(redis: Redis, own: set[int]) -> int:
    return sum(1 for client in await redis.client_list() if int(client["id"]) not in own)


async def test_a_basic_dyno_serves_calls_within_the_redis_plans_client_limit(
    redis_server, redis: Redis, twilio: TwilioDouble, tmp_path: Path
) -> None:
    values = app_json_values()
    assert "heroku-redis:premium-0" in [addon["plan"] for addon in app_json()["addons"]]
    own = {int(client["id"]) for client in await redis.client_list()}  # the test's own
    async with app_server(
        redis_server.url,
        twilio.base_url,
        tmp_path,
        WEB_CONCURRENCY=BUILDPACK_WEB_CONCURRENCY,
        **values,
    ) as server:
        workers = await pinned_connections(server)
        assert len(workers) == int(BUILDPACK_WEB_CONCURRENCY)
        async with (
            user_session(redis, server, "alice") as alice,
            twilio_voice(redis, twilio, server.url) as voice,
        ):
            await set_status(alice, "available")
            name = await customer_waits(voice)
            await agent_answers(voice, name, "alice")

            peak = 0
            done = asyncio.Event()

            async def watch() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, await app_clients(redis, own))
                    await asyncio.sleep(0.01)

            watcher = asyncio.create_task(watch())
            try:
                callers = [
                    sid for sid, _ in await asyncio.gather(*(voice.call_in() for _ in range(BURST)))
                ]
                # every caller's join reported at once: status callbacks, each a unit
                await asyncio.gather(*(customer_joins(voice, sid) for sid in callers))
            finally:
                done.set()
                await watcher
            waiting = await redis.lrange(keys.QUEUE, 0, -1)
            assert sorted(waiting) == sorted(callers)
        for connection in workers.values():
            await connection.close()
    print(f"peak Redis clients of the dyno during a burst of {BURST} callers: {peak}")
    assert 0 < peak <= PLAN_CLIENT_LIMIT - ONE_OFF_HEADROOM, peak


def test_app_json_sizes_the_pools_within_the_plans_client_limit() -> None:
    """Every worker's pool full, plus its event reader, plus the history writer."""
    values = app_json_values()
    workers = int(BUILDPACK_WEB_CONCURRENCY)
    most = workers * (int(values["REDIS_MAX_CONNECTIONS"]) + 1) + WRITER_CONNECTIONS
    assert most <= PLAN_CLIENT_LIMIT - ONE_OFF_HEADROOM, most
