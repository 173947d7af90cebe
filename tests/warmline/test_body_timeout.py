"""A request body that does not arrive within 10 seconds ends its connection (SPEC
§11; issue 16: connections trickling a 60,000-byte body held every file descriptor).
Raw sockets against a real `warmline serve`: trickled bodies and headers are cut off,
while a slow but complete body, a quiet WebSocket and /healthz are served."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from urllib.parse import urlsplit

import aiohttp
import pytest
from redis.asyncio import Redis

from console.domain import keys
from console.domain.users import add_user
from console.urls import VOICE_PATH
from tests.support.flow_helpers import PASSWORD
from tests.support.servers import AppServer, app_server
from warmline.app import BODY_TIMEOUT_SECONDS

pytestmark = pytest.mark.timeout(120)

MARGIN_SECONDS = 5.0
# Hypercorn closes a connection whose request head is not complete within its
# keep-alive timeout (5 s), counted from the connection's start.
HEAD_TIMEOUT_SECONDS = 5.0
QUIET_SOCKET_SECONDS = 15.0
SLOW_CONNECTIONS = 20
FORM = "application/x-www-form-urlencoded"


def head(method: str, path: str, content_type: str, length: int = 60_000) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def trickle(server: AppServer, start: bytes, within: float) -> bytes:
    """Send ``start``, then a byte a second, until the server answers and closes; what
    it sent (b"" for a bare close). Fails if the connection outlives ``within`` s."""
    parts = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    deadline = time.monotonic() + within
    try:
        writer.write(start)
        await writer.drain()
        answer = asyncio.ensure_future(reader.read())  # everything, up to the close
        while not answer.done():
            assert time.monotonic() < deadline, f"still open after {within:g} s"
            with contextlib.suppress(ConnectionError):
                writer.write(b"a")
                await writer.drain()
            await asyncio.wait([answer], timeout=1.0)
        try:
            return answer.result()
        except ConnectionError:
            return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def logged_in(server: AppServer, redis: Redis, username: str, role: str):
    if await redis.hget(keys.USERS, username) is None:
        await add_user(redis, username, role, PASSWORD)
    jar = aiohttp.CookieJar(unsafe=True)
    session = aiohttp.ClientSession(base_url=server.url, cookie_jar=jar)
    form = {"username": username, "password": PASSWORD}
    async with session.post("/login", data=form, allow_redirects=False) as response:
        assert response.status == 303, await response.text()
    return session


async def slow_but_complete_login(server: AppServer) -> int:
    """A login whose body comes in two parts two seconds apart: under the deadline."""
    body = f"username=alice&password={PASSWORD.replace(' ', '+')}".encode()
    parts = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head("POST", "/login", FORM, len(body)) + body[:10])
        await writer.drain()
        await asyncio.sleep(2)
        writer.write(body[10:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_a_trickled_body_ends_its_connection_and_nothing_else_does(
    redis_server, redis, twilio, tmp_path
):
    async with app_server(redis_server.url, twilio.base_url, tmp_path) as server:
        sam = await logged_in(server, redis, "sam", "supervisor")
        alice = await logged_in(server, redis, "alice", "agent")
        try:
            socket = await sam.ws_connect("/ws")
            assert json.loads((await socket.receive(timeout=10)).data)["type"] == "snapshot"
            quiet_since = time.monotonic()

            within = BODY_TIMEOUT_SECONDS + MARGIN_SECONDS
            slow = [
                asyncio.ensure_future(trickle(server, head("POST", "/login", FORM), within))
                for _ in range(SLOW_CONNECTIONS)
            ]
            others = {
                "webhook": trickle(server, head("POST", VOICE_PATH, FORM), within),
                "api": trickle(server, head("POST", "/api/me/status", "application/json"), within),
                "unknown": trickle(server, head("POST", "/nowhere", FORM), within),
                "headers": trickle(
                    server,
                    b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
                    HEAD_TIMEOUT_SECONDS + MARGIN_SECONDS,
                ),
            }
            other_tasks = {name: asyncio.ensure_future(c) for name, c in others.items()}

            # While they trickle, the server answers everyone else.
            await asyncio.sleep(2)
            async with alice.get("/healthz") as response:
                assert response.status == 200
            assert await slow_but_complete_login(server) == 303

            answers = await asyncio.gather(*slow)
            assert all(a == b"" or a.startswith(b"HTTP/1.1 408") for a in answers), answers
            assert any(a.startswith(b"HTTP/1.1 408") for a in answers)
            ended = {name: await task for name, task in other_tasks.items()}
            assert ended["webhook"] == b"" or ended["webhook"].startswith(b"HTTP/1.1 408")
            assert ended["unknown"] == b"" or ended["unknown"].startswith(b"HTTP/1.1 404")
            assert ended["api"] == b"" or ended["api"].split()[1] in (b"401", b"408")
            assert ended["headers"] == b"" or ended["headers"].startswith(b"HTTP/1.1 4")

            # The dashboard's socket, quiet all along, still delivers.
            await asyncio.sleep(max(0.0, quiet_since + QUIET_SOCKET_SECONDS - time.monotonic()))
            assert not socket.closed
            async with alice.post("/api/me/status", json={"status": "available"}) as response:
                assert response.status == 200, await response.text()
            while True:
                message = json.loads((await socket.receive(timeout=10)).data)
                if message["type"] == "agent.updated":
                    break
            assert message["data"]["username"] == "alice"
            await socket.close()
        finally:
            await sam.close()
            await alice.close()
