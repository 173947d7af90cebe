"""GET /ws in one process: the handshake's checks, snapshot then live events, and
what each role may see (docs/websocket.md). Cross-process behaviour is in test_ws_servers."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from quart.testing import WebsocketResponseError

from console.domain import keys
from console.realtime.hub import Hub
from tests.support.flow_helpers import (
    agent_answers,
    customer_waits,
    dials_to,
    leg_leaves,
    login,
    set_available,
)
from tests.support.waiting import until

RECEIVE_SECONDS = 5.0


async def receive(socket: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.receive(), RECEIVE_SECONDS))


async def receive_until(socket: Any, last_id: str) -> list[dict[str, Any]]:
    """Every message up to and including the event ``last_id``."""
    messages = []
    while not messages or messages[-1].get("id") != last_id:
        messages.append(await receive(socket))
    return messages


async def public_marker(app, redis) -> str:
    """Cause an event every user sees (a presence change) and return its id: reading
    a socket up to it reads everything before it."""
    marker = await login(app, redis, "zed_marker")
    await marker.post("/api/me/status", json={"status": "offline"})
    return await last_event_id(redis)


async def last_event_id(redis) -> str:
    [(entry_id, _)] = await redis.xrevrange(keys.EVENTS, count=1)
    return entry_id


async def handshake_status(client: Any, path: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket(path, headers=headers) as socket:
            await socket.receive()
    return refused.value.response.status_code


async def test_handshake_refuses_anonymous_foreign_origins_and_bad_since(app, redis):
    assert await handshake_status(app.test_client(), "/ws") == 401
    alice = await login(app, redis, "alice")
    foreign = {"Origin": "https://evil.example.net"}
    assert await handshake_status(alice, "/ws", foreign) == 403
    assert await handshake_status(alice, "/ws?since=yesterday") == 400
    logged_out = await login(app, redis, "bob")
    await logged_out.post("/logout")
    assert await handshake_status(logged_out, "/ws") == 401


async def test_snapshot_first_then_live_events_in_id_order(app, redis):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(bob)
    async with alice.websocket("/ws") as socket:
        snapshot = await receive(socket)
        assert snapshot["type"] == "snapshot"
        assert snapshot["id"] == await last_event_id(redis)
        shown = {
            "conferences",
            "queue",
            "agents",
            "transfers",
            "voicemails",
            "callbacks",
            "alerts",
            "help",
        }
        assert set(snapshot["data"]) == shown
        assert [a["username"] for a in snapshot["data"]["agents"]] == ["bob"]
        await set_available(alice)
        await bob.post("/api/me/status", json={"status": "offline"})
        messages = await receive_until(socket, await last_event_id(redis))
    assert [(m["type"], m["data"]["username"], m["data"]["status"]) for m in messages] == [
        ("agent.updated", "alice", "available"),
        ("agent.updated", "bob", "offline"),
    ]
    ids = [snapshot["id"]] + [m["id"] for m in messages]
    as_pairs = [tuple(int(part) for part in i.split("-")) for i in ids]
    assert as_pairs == sorted(set(as_pairs))
    assert all(isinstance(m["ts"], int) for m in messages)


async def test_snapshot_of_an_empty_log_is_at_0_0(app, redis):
    alice = await login(app, redis, "alice")
    async with alice.websocket("/ws") as socket:
        snapshot = await receive(socket)
    assert (snapshot["id"], snapshot["data"]["agents"]) == ("0-0", [])


async def conference_messages(socket: Any, until: str, name: str) -> list[dict[str, Any]]:
    messages = await receive_until(socket, until)
    return [m for m in messages if name in json.dumps(m.get("data"))]


NOTE = 'vip — asks for Zoë, says "urgent" \\ ☎'


async def test_agents_see_only_their_own_conferences_supervisors_everything(app, redis, voice):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    carol = await login(app, redis, "carol")
    sam = await login(app, redis, "sam", role="supervisor")
    await set_available(alice)
    async with (
        alice.websocket("/ws") as alice_ws,
        bob.websocket("/ws") as bob_ws,
        carol.websocket("/ws") as carol_ws,
        sam.websocket("/ws") as sam_ws,
    ):
        snapshots = [await receive(socket) for socket in (alice_ws, bob_ws, carol_ws, sam_ws)]
        assert {m["type"] for m in snapshots} == {"snapshot"}
        name = await customer_waits(voice)
        first = await agent_answers(voice, name, "alice")
        await set_available(bob)
        response = await alice.post(
            "/api/transfers", json={"conference": name, "to": "bob", "note": NOTE}
        )
        assert response.status_code == 201
        second = await agent_answers(voice, name, "bob", start=False)
        await leg_leaves(voice, name, first)
        await voice.event(name, "participant-hold", second.call_sid, Hold=True)
        await voice.settle()
        last = await public_marker(app, redis)
        seen = {
            user: await conference_messages(socket, last, name)
            for user, socket in [("alice", alice_ws), ("bob", bob_ws), ("carol", carol_ws)]
        }
        everything = await receive_until(sam_ws, last)
    log = await redis.xrange(keys.EVENTS, min=f"({snapshots[3]['id']}")
    assert [m["id"] for m in everything] == [e[0] for e in log]  # supervisors: all
    # carol is in none of it: the queue is public, conference detail is not
    assert {m["type"] for m in seen["carol"]} <= {"call.queued", "call.dequeued", "queue.updated"}
    assert "transfer.updated" in {m["type"] for m in seen["bob"]}
    bob_transfer = [m["data"] for m in seen["bob"] if m["type"] == "transfer.updated"]
    assert bob_transfer[0]["note"] == NOTE  # escapes and UTF-8 intact, log to socket
    # alice gets her own leaving, then nothing more about the conference
    alice_types = [m["type"] for m in seen["alice"]]
    assert "participant.left" in alice_types
    after_leaving = seen["alice"][alice_types.index("participant.left") + 1 :]
    assert all(m["type"] not in ("participant.updated",) for m in after_leaving)
    assert "participant.updated" in {m["type"] for m in seen["bob"]}


async def _log(redis) -> list[tuple[str, dict[str, str]]]:
    return await redis.xrange(keys.EVENTS)


async def test_since_replays_exactly_the_missed_events_an_agent_may_see(app, redis, voice):
    alice = await login(app, redis, "alice")
    carol = await login(app, redis, "carol")
    await set_available(alice)
    async with carol.websocket("/ws") as socket:
        since = (await receive(socket))["id"]
    name = await customer_waits(voice)
    await agent_answers(voice, name, "alice")
    await set_available(carol)
    await public_marker(app, redis)
    log = await _log(redis)
    async with carol.websocket(f"/ws?since={since}") as socket:
        replayed = await receive_until(socket, log[-1][0])
    expected = [
        i for i, f in log if i > since and (f["audience"] == "*" or "carol" in f["audience"])
    ]
    assert [m["id"] for m in replayed] == expected
    assert all(m["type"] != "snapshot" for m in replayed)
    assert not any(name in json.dumps(m["data"]) for m in replayed if m["type"].startswith("part"))
    assert dials_to(voice, "alice")


async def test_the_log_is_read_only_while_sockets_are_open_and_none_is_missed(app, redis):
    """A process without sockets does not read the log; the next socket's reader starts
    from the log's end before that socket reads its snapshot, and a socket coming back
    with ``since`` gets what was written while nobody read."""
    hub = Hub.of(app)
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    for status in ("available", "offline", "available"):
        await bob.post("/api/me/status", json={"status": status})
    await asyncio.sleep(0.2)
    assert hub.published == 0  # events were written, nobody was there to read them
    async with alice.websocket("/ws") as socket:
        since = (await receive(socket))["id"]
        await bob.post("/api/me/status", json={"status": "offline"})
        [live] = await receive_until(socket, await last_event_id(redis))
        assert (live["type"], live["data"]["status"]) == ("agent.updated", "offline")
    read = hub.published
    assert read >= 1

    async def parked() -> bool:
        return not hub.subscribers and hub.last_id is None

    await until(parked)
    for status in ("available", "offline"):
        await bob.post("/api/me/status", json={"status": status})
    async with alice.websocket(f"/ws?since={since}") as socket:
        missed = await receive_until(socket, await last_event_id(redis))
        statuses = [m["data"]["status"] for m in missed if m["type"] == "agent.updated"]
        assert statuses == ["offline", "available", "offline"]
        await bob.post("/api/me/status", json={"status": "available"})
        [live] = await receive_until(socket, await last_event_id(redis))
        assert live["data"]["status"] == "available"
    assert hub.published == read + 1  # only the event written while a socket was open


async def test_since_older_than_the_retained_log_gets_a_fresh_snapshot(app, redis):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    for _ in range(3):
        await set_available(bob)
        await bob.post("/api/me/status", json={"status": "offline"})
    log = await _log(redis)
    await redis.xtrim(keys.EVENTS, minid=log[2][0], approximate=False)  # retention: 2 gone
    async with alice.websocket(f"/ws?since={log[0][0]}") as socket:
        first = await receive(socket)
    assert first["type"] == "snapshot" and first["id"] == log[-1][0]
    async with alice.websocket(f"/ws?since={log[2][0]}") as socket:
        first = await receive(socket)
    assert (first["type"], first["id"]) == ("agent.updated", log[3][0])
    async with alice.websocket("/ws?since=99999999999999-0") as socket:
        first = await receive(socket)  # an id from another (or a lost) log
    assert first["type"] == "snapshot"


async def test_events_older_than_the_age_limit_are_trimmed(redis):
    from console.domain.events import trim_by_age

    old = "1000-0"
    await redis.xadd(keys.EVENTS, {"type": "agent.updated", "ts": "1", "data": "{}"}, id=old)
    fresh = await redis.xadd(keys.EVENTS, {"type": "agent.updated", "ts": "1", "data": "{}"})
    await trim_by_age(redis, 0)  # 0: no age limit
    assert await redis.xlen(keys.EVENTS) == 2
    await trim_by_age(redis, 24)
    assert [i for i, _ in await redis.xrange(keys.EVENTS)] == [fresh]


async def test_handshake_while_redis_is_down_is_a_clear_503(settings):
    from console.web.auth import SESSION_COOKIE
    from warmline.app import create_app
    from warmline.embedded_redis import free_port

    app = create_app(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with app.test_app():
        client = app.test_client()
        client.set_cookie("localhost", SESSION_COOKIE, "a" * 43)
        assert await handshake_status(client, "/ws") == 503


async def test_a_socket_whose_log_reader_cannot_start_gets_a_clear_503(app, redis, monkeypatch):
    """The log's reader, parked without sockets, is woken by the next one; if it cannot
    find the log's end (Redis unreachable from it), that socket is refused with 503
    within a bound instead of waiting for Redis."""
    import console.realtime.hub

    async def unreachable(self) -> None:
        raise console.realtime.hub.RedisConnectionError("no route to Redis")

    monkeypatch.setattr(console.realtime.hub, "READY_SECONDS", 0.5)
    monkeypatch.setattr(Hub, "_find_ends", unreachable)
    alice = await login(app, redis, "alice")
    assert await handshake_status(alice, "/ws") == 503


async def test_a_websocket_handshake_to_any_other_route_is_a_clean_4xx(app, redis, caplog):
    """Error pages are built for requests and WebSocket handshakes alike: no 500."""
    alice = await login(app, redis, "alice")
    for path in ("/healthz", "/api/state", "/nowhere", "/api/nowhere"):
        status = await handshake_status(alice, path)
        assert 400 <= status < 500, (path, status)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
