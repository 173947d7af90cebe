"""A session that ends closes its open sockets at once (4401), in every process of
the deployment: logout, expiry, a user removed or their password changed
(SPEC §11, issue 16 item 1). The audit lines those acts leave."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from quart.testing.connections import WebsocketDisconnectError

from console.domain import keys, users
from tests.console.web.test_ws import receive
from tests.console.web.test_ws_servers import (
    RECEIVE_SECONDS,
    newest,
    receive_until,
    set_status,
    user_session,
)
from tests.support.flow_helpers import PASSWORD, login, set_available
from tests.support.servers import AppServer
from warmline import cli_users
from warmline.cli import parser

pytestmark = pytest.mark.timeout(180)

SESSION_ENDED = 4401


@asynccontextmanager
async def socket_on(
    session: aiohttp.ClientSession, server: AppServer
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A socket of ``session``'s login, opened on ``server`` (cookies ignore the port)."""
    async with session.ws_connect(server.url + "/ws") as socket:
        message = await socket.receive(timeout=RECEIVE_SECONDS)
        assert json.loads(message.data)["type"] == "snapshot"
        yield socket


async def closed_with(socket: aiohttp.ClientWebSocketResponse) -> int | None:
    """The close code the server sends next, skipping any event still on its way."""
    while True:
        message = await socket.receive(timeout=RECEIVE_SECONDS)
        if message.type == aiohttp.WSMsgType.CLOSE:
            return message.data
        if message.type == aiohttp.WSMsgType.CLOSED:
            return socket.close_code
        assert message.type == aiohttp.WSMsgType.TEXT, message


async def logout(session: aiohttp.ClientSession) -> None:
    async with session.post("/logout", headers={"Accept": "application/json"}) as response:
        assert response.status == 204


async def me_status(session: aiohttp.ClientSession, server: AppServer) -> int:
    async with session.get(server.url + "/api/me") as response:
        return response.status


async def test_logout_closes_that_sessions_sockets_in_every_process(two_servers, redis):
    first, second = two_servers
    async with (
        user_session(redis, first, "alice") as leaving,
        user_session(redis, first, "alice") as staying,  # alice on another device
        socket_on(leaving, first) as here,
        socket_on(leaving, second) as there,
        socket_on(staying, second) as other_device,
    ):
        await logout(leaving)
        assert await closed_with(here) == SESSION_ENDED
        assert await closed_with(there) == SESSION_ENDED
        await set_status(staying, "available")  # her other session lives on
        [*_, event] = await receive_until(other_device, await newest(redis))
        assert (event["type"], event["data"]["username"]) == ("agent.updated", "alice")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await leaving.ws_connect(second.url + "/ws")
        assert refused.value.status == 401
        assert await me_status(leaving, second) == 401


async def test_removing_a_user_closes_all_their_sockets_everywhere(two_servers, redis):
    first, second = two_servers
    async with (
        user_session(redis, first, "sam", "supervisor") as sam,
        user_session(redis, second, "sue", "supervisor") as sue,
        user_session(redis, first, "alice") as alice,
        socket_on(sam, first) as sams_here,
        socket_on(sam, second) as sams_there,
        socket_on(sue, second) as sues,
    ):
        assert await users.remove_user(redis, "sam")
        assert await closed_with(sams_here) == SESSION_ENDED
        assert await closed_with(sams_there) == SESSION_ENDED
        await set_status(alice, "available")  # the other supervisor still sees the floor
        [*_, event] = await receive_until(sues, await newest(redis))
        assert (event["type"], event["data"]["username"]) == ("agent.updated", "alice")
        assert await me_status(sam, first) == 401


async def test_a_password_change_ends_every_session_of_the_user(two_servers, redis, capsys):
    first, second = two_servers
    async with (
        user_session(redis, first, "alice") as alice,
        user_session(redis, second, "bob") as bob,
        socket_on(alice, first) as alices,
        socket_on(alice, second) as alices_there,
        socket_on(bob, second) as bobs,
    ):
        args = parser().parse_args(["user", "passwd", "alice", "--password", "a new secret"])
        assert await cli_users.run(args, redis) == 0
        assert "changed the password of 'alice'" in capsys.readouterr().out
        assert await closed_with(alices) == SESSION_ENDED
        assert await closed_with(alices_there) == SESSION_ENDED
        assert await me_status(alice, first) == 401
        await set_status(bob, "available")
        [*_, event] = await receive_until(bobs, await newest(redis))
        assert event["data"]["username"] == "bob"
    assert await users.verify_password(redis, "alice", PASSWORD) is None
    assert await users.verify_password(redis, "alice", "a new secret") is not None


async def test_passwd_for_an_unknown_user_asks_no_password(redis, capsys):
    args = parser().parse_args(["user", "passwd", "nobody", "--password", "a new secret"])
    assert await cli_users.run(args, redis) == 1
    assert capsys.readouterr().err == "error: no user named 'nobody'\n"


async def test_a_session_that_expires_closes_its_socket(app, redis):
    alice = await login(app, redis, "alice")
    [session_key] = await redis.keys(keys.session("*"))
    await redis.pexpire(session_key, 1_500)
    async with alice.websocket("/ws") as socket:
        assert (await receive(socket))["type"] == "snapshot"
        with pytest.raises(WebsocketDisconnectError) as closed:
            async with asyncio.timeout(10):
                while True:
                    await socket.receive()
    assert closed.value.args[0] == SESSION_ENDED


async def test_other_users_and_other_sessions_keep_their_sockets(app, redis):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    async with contextlib.AsyncExitStack() as stack:
        alices = await stack.enter_async_context(alice.websocket("/ws"))
        bobs = await stack.enter_async_context(bob.websocket("/ws"))
        for socket in (alices, bobs):
            assert (await receive(socket))["type"] == "snapshot"
        response = await alice.post("/logout", headers={"Accept": "application/json"})
        assert response.status_code == 204
        with pytest.raises(WebsocketDisconnectError) as closed:
            async with asyncio.timeout(10):
                while True:
                    await alices.receive()
        assert closed.value.args[0] == SESSION_ENDED
        await set_available(bob)
        async with asyncio.timeout(10):
            while (message := await receive(bobs))["type"] != "agent.updated":
                pass
        assert message["data"]["username"] == "bob"


async def test_session_and_user_changes_leave_audit_lines(app, redis, caplog):
    caplog.set_level(logging.INFO, logger="console.audit")
    alice = await login(app, redis, "alice")
    assert (await alice.post("/logout", headers={"Accept": "application/json"})).status_code == 204
    for argv in (
        ["user", "add", "carol", "--role", "agent", "--password", PASSWORD],
        ["user", "passwd", "carol", "--password", "another secret"],
        ["user", "remove", "carol"],
    ):
        assert await cli_users.run(parser().parse_args(argv), redis) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "console.audit"]
    assert any(line.startswith('audit logout actor="alice" client=') for line in lines), lines
    for action in ("user.added", "user.password-changed", "user.removed"):
        [line] = [line for line in lines if line.startswith(f"audit {action} ")]
        assert 'actor="shell:' in line and 'username="carol"' in line
    assert not any(PASSWORD in line or "another secret" in line for line in lines)
