"""The bounded Redis pool: a burst wider than the pool waits its turn instead of
failing, and a request that waited too long is a clear 503, never a 500."""

from __future__ import annotations

import asyncio

import pytest

import console.redis_ext
from console.domain import keys
from console.redis_ext import RedisExtension
from simulator.testing import call_sid
from tests.conftest import make_settings
from tests.support.flow_helpers import AppVoice, login, set_available
from warmline.app import create_app


@pytest.fixture
def small_pool_app(twilio, redis, redis_server):
    settings = make_settings(api_base_url=twilio.base_url, redis_max_connections=4)
    return create_app(settings, redis_url=redis_server.url)


async def test_a_burst_of_calls_wider_than_the_pool_queues_every_caller(
    small_pool_app, twilio, redis
):
    """redis-py's own pool raised "Too many connections" past 100 at once; 60 calls
    through a pool of 4 must all be answered and all be queued."""
    async with small_pool_app.test_app(), small_pool_app.test_client() as client:
        voice = AppVoice(client, twilio, small_pool_app, "https://warmline.example.com")
        sids = [call_sid() for _ in range(60)]
        responses = await asyncio.gather(*(voice.send(voice.incoming(s)) for s in sids))
        assert [r.status_code for r in responses] == [200] * len(sids)
        assert set(await redis.lrange(keys.QUEUE, 0, -1)) == set(sids)
        pool = RedisExtension.of(small_pool_app).client.connection_pool
        assert pool.max_connections == 4


async def test_no_free_connection_is_a_503_on_the_api_and_nothing_is_written(
    small_pool_app, redis, monkeypatch
):
    monkeypatch.setattr(console.redis_ext, "POOL_WAIT_SECONDS", 0.2)
    async with small_pool_app.test_app():
        alice = await login(small_pool_app, redis, "alice")
        pool = RedisExtension.of(small_pool_app).client.connection_pool
        held = [await pool.get_connection() for _ in range(pool.max_connections)]
        try:
            response = await alice.post("/api/me/status", json={"status": "available"})
            assert response.status_code == 503
            assert "try again" in (await response.get_json())["error"]
            page = await alice.get("/agent")
            assert page.status_code == 503
            assert (await page.get_data(as_text=True)).startswith("503 Service Unavailable")
        finally:
            for connection in held:
                await pool.release(connection)
        assert await redis.hget(keys.AGENTS, "alice") is None
        await set_available(alice)  # connections are back: the same request now works
