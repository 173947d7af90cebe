"""TRUSTED_PROXY_HOPS (SPEC §3, §11) on a real `warmline serve`: behind that many
proxies the client address is taken from X-Forwarded-For by Hypercorn's proxy
middleware, the value that many hops from the right; 0 ignores the header. The
signature-failure panel shows it: it records the client of each refused webhook."""

from __future__ import annotations

import json

import aiohttp
import pytest
from redis.asyncio import Redis

from console.domain import keys
from console.domain.users import add_user
from console.urls import VOICE_PATH
from simulator.server import TWILIO_NUMBER
from simulator.testing import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SIGNATURE_HEADER,
    call_sid,
    sign,
    voice_params,
)
from tests.support.flow_helpers import PASSWORD
from tests.support.servers import AppServer, app_server

pytestmark = pytest.mark.timeout(120)

Headers = dict[str, str] | list[tuple[str, str]]
PEER = "127.0.0.1"  # where the test's requests come from
REAL = "198.51.100.8"
SPOOFED = "203.0.113.66"
# What a client sends in front of a proxy that appends the address it saw.
PROXY_HEADERS = {
    "X-Forwarded-For": f"{SPOOFED}, {REAL}",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "attacker.example",
}


async def refused_client(redis: Redis, server: AppServer, headers: Headers) -> str:
    """POST an unsigned Voice URL request; the client the panel recorded for it."""
    form = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid()}
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + VOICE_PATH, data=form, headers=headers) as response,
    ):
        assert response.status == 403
    [newest] = await redis.lrange(keys.SIGNATURE_FAILURES, 0, 0)
    return json.loads(newest)["client"]


async def signed_webhook_and_socket_work(redis: Redis, server: AppServer) -> None:
    """A signed Voice URL request is answered and /ws opens, sent as through a proxy:
    the middleware also takes the scheme and Host from X-Forwarded-Proto and -Host, but
    the signature is checked against PUBLIC_BASE_URL and a socket keeps its ws scheme."""
    params = voice_params(
        ACCOUNT_SID, call_sid(), "ringing", "inbound", "+15557654321", TWILIO_NUMBER
    )
    signature = sign(server.url + VOICE_PATH, params, AUTH_TOKEN)
    if await redis.hget(keys.USERS, "alice") is None:
        await add_user(redis, "alice", "agent", PASSWORD)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=server.url, cookie_jar=jar) as session:
        headers = {**PROXY_HEADERS, SIGNATURE_HEADER: signature}
        async with session.post(VOICE_PATH, data=params, headers=headers) as response:
            assert response.status == 200, await response.text()
            assert "<Conference" in await response.text()
        login = {"username": "alice", "password": PASSWORD}
        async with session.post(
            "/login", data=login, headers=PROXY_HEADERS, allow_redirects=False
        ) as response:
            assert response.status == 303, await response.text()
        async with session.ws_connect("/ws", headers=PROXY_HEADERS) as socket:
            first = json.loads((await socket.receive(timeout=10)).data)
    assert first["type"] == "snapshot"


async def test_the_client_comes_from_x_forwarded_for_only_through_trusted_hops(
    redis_server, redis, twilio, tmp_path
):
    async with (
        app_server(redis_server.url, twilio.base_url, tmp_path) as direct,
        app_server(redis_server.url, twilio.base_url, tmp_path, TRUSTED_PROXY_HOPS="1") as proxied,
    ):
        forwarded = {"X-Forwarded-For": REAL}
        assert await refused_client(redis, direct, forwarded) == PEER
        assert await refused_client(redis, direct, PROXY_HEADERS) == PEER

        assert await refused_client(redis, proxied, forwarded) == REAL
        assert await refused_client(redis, proxied, PROXY_HEADERS) == REAL  # the last hop only
        two_headers = [("X-Forwarded-For", SPOOFED), ("X-Forwarded-For", REAL)]
        assert await refused_client(redis, proxied, two_headers) == REAL
        assert await refused_client(redis, proxied, {}) == PEER  # no proxy said anything

        await signed_webhook_and_socket_work(redis, direct)
        await signed_webhook_and_socket_work(redis, proxied)
