"""GET /ws: one user holds at most MAX_SOCKETS_PER_USER sockets, counted across every
process sharing the Redis (docs/websocket.md, opening the socket)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from quart.testing import WebsocketResponseError

from console.domain import keys
from console.domain.events import now_ms
from console.domain.sockets import EXPIRY_MS, open_sockets
from console.realtime.presence import Presence
from tests.conftest import make_settings
from tests.console.web.test_ws import handshake_status, last_event_id, receive, receive_until
from tests.support.flow_helpers import PASSWORD, login, set_available
from warmline.app import create_app

CAP = 2


@pytest.fixture
def settings(twilio):
    return make_settings(api_base_url=twilio.base_url, max_sockets_per_user=CAP)


async def opened(stack: contextlib.AsyncExitStack, client: Any) -> Any:
    """A socket of ``client``, past its snapshot."""
    socket = await stack.enter_async_context(client.websocket("/ws"))
    assert (await receive(socket))["type"] == "snapshot"
    return socket


async def test_the_socket_past_the_cap_is_refused_and_the_others_keep_working(app, redis):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    async with contextlib.AsyncExitStack() as stack:
        first, second = [await opened(stack, alice) for _ in range(CAP)]
        assert await handshake_status(alice, "/ws") == 429
        assert await open_sockets(redis, "alice") == CAP
        bobs = await opened(stack, bob)  # another user is not affected
        await set_available(bob)
        last = await last_event_id(redis)
        for socket in (first, second, bobs):
            [event] = await receive_until(socket, last)
            assert (event["type"], event["data"]["username"]) == ("agent.updated", "bob")


async def test_the_refusal_is_json_like_the_other_handshake_refusals(app, redis):
    alice = await login(app, redis, "alice")
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(CAP):
            await opened(stack, alice)
        async with alice.websocket("/ws") as socket:
            with pytest.raises(WebsocketResponseError) as refused:
                await socket.receive()
    response = refused.value.response
    assert response.status_code == 429
    assert "error" in await response.get_json()


async def test_closing_a_socket_lets_a_new_one_in(app, redis):
    alice = await login(app, redis, "alice")
    async with contextlib.AsyncExitStack() as stack:
        await opened(stack, alice)
        async with alice.websocket("/ws") as socket:
            await receive(socket)
            assert await handshake_status(alice, "/ws") == 429
        assert await open_sockets(redis, "alice") == 1
        again = await opened(stack, alice)
        await set_available(alice)
        [event] = await receive_until(again, await last_event_id(redis))
        assert event["type"] == "agent.updated"
    assert await open_sockets(redis, "alice") == 0


async def test_stale_entries_of_a_crashed_process_do_not_count(app, redis):
    alice = await login(app, redis, "alice")
    long_ago = now_ms() - EXPIRY_MS - 1_000
    await redis.zadd(keys.user_sockets("alice"), {f"crashed-{i}": long_ago for i in range(CAP)})
    async with contextlib.AsyncExitStack() as stack:
        await opened(stack, alice)
        members = await redis.zrange(keys.user_sockets("alice"), 0, -1)
        assert len(members) == 1 and not members[0].startswith("crashed")


async def test_the_presence_beat_keeps_open_sockets_fresh(app, redis):
    alice = await login(app, redis, "alice")
    async with alice.websocket("/ws") as socket:
        await receive(socket)
        key = keys.user_sockets("alice")
        [(socket_id, _)] = await redis.zrange(key, 0, -1, withscores=True)
        await redis.zadd(key, {socket_id: now_ms() - EXPIRY_MS + 500})  # about to expire
        await Presence.of(app).stamp_sockets()
        assert await redis.zscore(key, socket_id) >= now_ms() - 5_000
        assert await redis.pttl(key) > 0


async def test_the_cap_holds_across_processes_sharing_one_redis(app, redis, redis_server, settings):
    other = create_app(settings, redis_url=redis_server.url)
    async with other.test_app(), contextlib.AsyncExitStack() as stack:
        here = await login(app, redis, "alice")
        there = other.test_client()  # alice's second session, on the other process
        form = {"username": "alice", "password": PASSWORD}
        assert (await there.post("/login", form=form)).status_code == 303
        await opened(stack, here)
        elsewhere = await opened(stack, there)
        assert await handshake_status(here, "/ws") == 429
        assert await handshake_status(there, "/ws") == 429
        await set_available(here)
        [event] = await receive_until(elsewhere, await last_event_id(redis))
        assert (event["type"], event["data"]["username"]) == ("agent.updated", "alice")
