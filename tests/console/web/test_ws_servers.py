"""GET /ws across real processes: `warmline serve` subprocesses sharing one Redis,
real WebSocket clients, a slow reader, a Redis restart, and presence by socket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from console.domain import keys
from console.domain.users import add_user
from tests.support.flow_helpers import PASSWORD
from tests.support.servers import AppServer, app_server
from warmline.embedded_redis import start_redis

pytestmark = pytest.mark.timeout(180)

RECEIVE_SECONDS = 10.0


@asynccontextmanager
async def user_session(
    redis: Redis, server: AppServer, username: str, role: str = "agent"
) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session logged in as ``username`` (created if needed) on ``server``."""
    if await redis.hget(keys.USERS, username) is None:
        await add_user(redis, username, role, PASSWORD)
    jar = aiohttp.CookieJar(unsafe=True)  # the servers are on 127.0.0.1
    async with aiohttp.ClientSession(base_url=server.url, cookie_jar=jar) as session:
        form = {"username": username, "password": PASSWORD}
        async with session.post("/login", data=form, allow_redirects=False) as response:
            assert response.status == 303, await response.text()
        yield session


async def set_status(session: aiohttp.ClientSession, status: str) -> None:
    async with session.post("/api/me/status", json={"status": status}) as response:
        assert response.status == 200, await response.text()


async def receive(socket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await socket.receive(timeout=RECEIVE_SECONDS)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def receive_until(socket: aiohttp.ClientWebSocketResponse, last_id: str) -> list[dict]:
    messages: list[dict] = []
    while not messages or messages[-1].get("id") != last_id:
        messages.append(await receive(socket))
    return messages


async def newest(redis: Redis) -> str:
    [(entry_id, _)] = await redis.xrevrange(keys.EVENTS, count=1)
    return entry_id


async def test_an_event_caused_through_one_process_reaches_sockets_on_another(two_servers, redis):
    first, second = two_servers
    async with (
        user_session(redis, second, "sam", "supervisor") as sam,
        user_session(redis, first, "alice") as alice,
        sam.ws_connect("/ws") as socket,
    ):
        assert (await receive(socket))["type"] == "snapshot"
        await set_status(alice, "available")
        message = await receive(socket)
    assert message["type"] == "agent.updated"
    assert (message["data"]["username"], message["data"]["status"]) == ("alice", "available")
    assert message["id"] == await newest(redis)


async def test_resume_after_a_disconnect_gets_exactly_the_missed_events_in_order(
    two_servers, redis
):
    first, second = two_servers
    async with (
        user_session(redis, first, "sam", "supervisor") as sam,
        user_session(redis, second, "alice") as alice,
        user_session(redis, second, "bob") as bob,
    ):
        async with sam.ws_connect("/ws") as socket:
            await set_status(alice, "available")
            seen = await receive_until(socket, await newest(redis))
        since = seen[-1]["id"]
        for _ in range(5):  # while sam is away, through the other process
            await set_status(bob, "available")
            await set_status(bob, "offline")
            await set_status(alice, "offline")
            await set_status(alice, "available")
        missed = await redis.xrange(keys.EVENTS, min=f"({since}")
        async with sam.ws_connect(f"/ws?since={since}") as socket:
            replayed = await receive_until(socket, missed[-1][0])
            await set_status(bob, "available")  # and then live, with no seam
            live = await receive(socket)
    assert [m["id"] for m in replayed] == [entry_id for entry_id, _ in missed]
    assert len(replayed) == 20
    assert live["id"] == await newest(redis) and live["data"]["username"] == "bob"


async def publish_chunk(redis: Redis, first: int, count: int, size: int) -> list[str]:
    """Publish ``count`` public events straight into the log, as a busy deployment
    would; returns their ids."""
    padding = "x" * size
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(first, first + count):
            data = json.dumps({"username": f"load{n}", "status": "offline", "pad": padding})
            fields = {"type": "agent.updated", "ts": "1", "data": data, "audience": "*"}
            pipe.xadd(keys.EVENTS, fields)
        return await pipe.execute()


async def test_a_slow_socket_gets_a_resync_and_does_not_hold_up_a_fast_one(
    redis_server, redis, twilio, tmp_path
):
    """48 MB of events, far more than socket buffers hold, paced by the fast reader
    (never more than half its backlog ahead of it) so only the reader that stopped
    reading can fall behind, however loaded the machine is."""
    async with (
        app_server(redis_server.url, twilio.base_url, tmp_path, WS_BACKLOG="200") as server,
        user_session(redis, server, "sam", "supervisor") as sam,
        sam.ws_connect("/ws") as fast,
        sam.ws_connect("/ws") as slow,
    ):
        await receive(fast)
        await receive(slow)
        ids: list[str] = []
        received: list[str] = []
        for first in range(0, 6000, 100):
            chunk = await publish_chunk(redis, first, 100, 8192)
            ids += chunk
            received += [m["id"] for m in await receive_until(fast, chunk[-1])]
        assert received == ids  # the fast reader got every event, in order
        # the slow one, read only now, was cut off and told to start over
        messages = [await receive(slow)]
        while messages[-1]["type"] != "resync":
            messages.append(await receive(slow))
        snapshot = await receive(slow)
        async with server_metrics(server) as metrics:
            assert metric(metrics, "warmline_ws_resyncs_total") >= 1
            # the fast socket was written by the log reader itself (console/realtime/ws_frames.py)
            assert metric(metrics, "warmline_ws_delivered_direct_total") >= len(ids)
    assert snapshot["type"] == "snapshot"
    assert len(messages) < len(ids)


@asynccontextmanager
async def server_metrics(server: AppServer) -> AsyncIterator[str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/metrics") as response,
    ):
        assert response.status == 200
        yield await response.text()


def metric(text: str, name: str) -> float:
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    ]
    return sum(values)


async def test_events_flow_again_after_redis_restarts_under_a_connected_socket(twilio, tmp_path):
    store = tmp_path / "redis"
    first = start_redis(store, persist=True)
    port = first.port
    client = Redis.from_url(first.url, decode_responses=True)
    try:
        async with (
            app_server(first.url, twilio.base_url, tmp_path) as server,
            user_session(client, server, "sam", "supervisor") as sam,
            user_session(client, server, "alice") as alice,
            sam.ws_connect("/ws") as socket,
        ):
            await receive(socket)
            await set_status(alice, "available")
            assert (await receive(socket))["data"]["status"] == "available"
            first.stop()  # the users and sessions are on disk: only the connection drops
            await asyncio.sleep(1.0)
            second = start_redis(store, port=port, persist=True)
            await client.aclose()
            client = Redis.from_url(second.url, decode_responses=True)
            try:
                ids = []
                for status in ["offline", "available"] * 3:
                    await until_accepted(alice, status)
                    ids.append(await newest(client))
                got = await receive_until(socket, ids[-1])
            finally:
                second.stop()
    finally:
        await client.aclose()
    assert [m["id"] for m in got if m["type"] == "agent.updated"][-6:] == ids


async def until_accepted(session: aiohttp.ClientSession, status: str) -> None:
    """Retry while the app still reconnects to Redis (it answers 503 meanwhile)."""
    deadline = time.monotonic() + 15
    while True:
        async with session.post("/api/me/status", json={"status": status}) as response:
            if response.status == 200:
                return
            assert response.status >= 500 and time.monotonic() < deadline, response.status
        await asyncio.sleep(0.2)


async def test_an_available_agent_without_a_live_socket_goes_offline_after_the_grace(
    redis_server, redis, twilio, tmp_path
):
    async with (
        app_server(redis_server.url, twilio.base_url, tmp_path, AGENT_GRACE_SECONDS="2") as s,
        user_session(redis, s, "alice") as alice,
        user_session(redis, s, "bob") as bob,
        user_session(redis, s, "carol") as carol,
    ):
        async with alice.ws_connect("/ws"), carol.ws_connect("/ws"):
            await set_status(alice, "available")
            await set_status(bob, "available")  # no dashboard at all
            await set_status(carol, "available")
            await asyncio.sleep(0.5)
        # carol closed her tab; alice keeps hers open (and is quiet: she never pinged)
        async with alice.ws_connect("/ws"):
            started = time.monotonic()
            await until_status(alice, "carol", "offline")
            statuses = await agent_statuses(alice)
            await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - started)))
            later = await agent_statuses(alice)
    assert statuses == {"alice": "available", "bob": "offline", "carol": "offline"}
    assert later == statuses


async def agent_statuses(session: aiohttp.ClientSession) -> dict[str, str]:
    async with session.get("/api/state") as response:
        state = await response.json()
    return {a["username"]: a["status"] for a in state["agents"]}


async def test_a_client_that_pings_and_then_goes_quiet_is_treated_as_frozen(
    redis_server, redis, twilio, tmp_path
):
    async with (
        app_server(redis_server.url, twilio.base_url, tmp_path, AGENT_GRACE_SECONDS="2") as s,
        user_session(redis, s, "alice") as alice,
        alice.ws_connect("/ws") as socket,
    ):
        await socket.send_str('{"type": "ping"}')
        await set_status(alice, "available")
        # the tab froze: no more pings, though the socket is still open
        await until_status(alice, "alice", "offline")
        assert not socket.closed


async def until_status(
    session: aiohttp.ClientSession, username: str, status: str, seconds: float = 15.0
) -> None:
    deadline = time.monotonic() + seconds
    while (await agent_statuses(session)).get(username) != status:
        assert time.monotonic() < deadline, f"{username} never became {status}"
        await asyncio.sleep(0.2)


async def test_sockets_joining_while_events_flow_see_no_gap_and_no_duplicate(two_servers, redis):
    """Snapshot (or since) and the live flow meet exactly, however they interleave
    with events being committed through another process."""
    first, second = two_servers
    async with (
        user_session(redis, first, "sam", "supervisor") as sam,
        user_session(redis, second, "bob") as bob,
    ):
        stop = asyncio.Event()

        async def produce() -> int:
            count = 0
            while not stop.is_set():
                await set_status(bob, "available" if count % 2 == 0 else "offline")
                count += 1
            return count

        async def watch(delay: float, since: str | None) -> tuple[str, list[str], str]:
            await asyncio.sleep(delay)
            path = f"/ws?since={since}" if since else "/ws"
            async with sam.ws_connect(path) as socket:
                first_message = await receive(socket)
                start = first_message["id"] if first_message["type"] == "snapshot" else since
                ids = [] if first_message["type"] == "snapshot" else [first_message["id"]]
                await stopped.wait()
                final = await newest(redis)
                while not ids or ids[-1] != final:
                    ids.append((await receive(socket))["id"])
            return start, ids, final

        stopped = asyncio.Event()
        producer = asyncio.create_task(produce())
        base = await newest_or_zero(redis)
        watchers = [asyncio.create_task(watch(0.05 * n, None)) for n in range(8)]
        watchers += [asyncio.create_task(watch(0.05 * n, base)) for n in range(4)]
        await asyncio.sleep(1.0)
        stop.set()
        produced = await producer
        stopped.set()
        results = await asyncio.gather(*watchers)
    assert produced > 20
    for start, ids, final in results:
        expected = [i for i, _ in await redis.xrange(keys.EVENTS, min=f"({start}", max=final)]
        assert ids == expected


async def newest_or_zero(redis: Redis) -> str:
    last = await redis.xrevrange(keys.EVENTS, count=1)
    return last[0][0] if last else "0-0"


async def test_websockets_are_served_uncompressed_even_when_the_browser_offers_deflate(
    redis_server, redis, twilio, tmp_path
):
    async with (
        app_server(redis_server.url, twilio.base_url, tmp_path) as server,
        user_session(redis, server, "sam", "supervisor") as sam,
        sam.ws_connect("/ws", compress=15) as socket,
    ):
        assert (await receive(socket))["type"] == "snapshot"
        assert socket.compress == 0  # offered, declined: see warmline/hypercorn_ws.py
