"""Faults across real processes (issue 7 "Faults"): Redis unreachable under a
running `warmline serve`, the app killed (SIGKILL, worker included) mid-flow and
started again on the same Redis, and SIGTERM with open sockets. Twilio's webhooks
are sent over HTTP, signed as Twilio signs them (simulator.testing.TwilioVoice), against
the REST double."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import aiohttp
import pytest
from redis.asyncio import Redis

from console.domain import keys
from simulator.testing import Delivery, TwilioDouble, TwilioVoice, call_sid, conference_of
from tests.console.web.test_ws_servers import newest, set_status, user_session
from tests.support.browser import crash
from tests.support.flow_helpers import (
    agent_answers,
    customer_join,
    customer_waits,
    dials_to,
    leg_leaves,
)
from tests.support.servers import AppServer, app_server, server_env, spawn_serve, wait_healthy
from tests.support.waiting import until
from warmline.embedded_redis import free_port, start_redis

pytestmark = pytest.mark.timeout(120)

RECEIVE_SECONDS = 10.0


# -- Twilio's webhooks over HTTP ------------------------------------------------------------


@dataclass
class HttpAnswer:
    status_code: int
    text: str

    async def get_data(self, as_text: bool = True) -> str:
        return self.text


class HttpClient:
    """What TwilioVoice needs of a test client (``post(path, form=, headers=)``), over
    real HTTP to whichever process is serving now."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def post(self, path: str, form: dict[str, str], headers: dict[str, str]) -> HttpAnswer:
        async with self.session.post(self.url + path, data=form, headers=headers) as response:
            return HttpAnswer(response.status, await response.text())


class Quiet:
    """``voice.settle()`` for a remote app: wait until the event log and the REST
    double's requests have stopped changing and no REST request is still open."""

    def __init__(self, redis: Redis, twilio: TwilioDouble) -> None:
        self.redis = redis
        self.twilio = twilio

    async def drain(self, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        last, since = None, time.monotonic()
        while time.monotonic() - since < 0.3:
            assert time.monotonic() < deadline, "the app never went quiet"
            await asyncio.sleep(0.05)
            now = (
                await self.redis.xlen(keys.EVENTS),
                len(self.twilio.requests),
                sum(r.status is None for r in self.twilio.requests),
            )
            if now != last or now[2]:
                last, since = now, time.monotonic()


@asynccontextmanager
async def twilio_voice(redis: Redis, twilio: TwilioDouble, url: str) -> AsyncIterator[TwilioVoice]:
    async with aiohttp.ClientSession() as session:
        settle = Quiet(redis, twilio).drain
        yield TwilioVoice(HttpClient(session, url), twilio, url, settle=settle)


# -- sockets that may drop and resume ---------------------------------------------------------


async def follow(
    session: aiohttp.ClientSession, socket: aiohttp.ClientWebSocketResponse, last: str, until: str
) -> tuple[list[dict[str, Any]], aiohttp.ClientWebSocketResponse]:
    """Read events after ``last`` up to ``until``; a socket the app closed (1013 when
    Redis fails under it, docs/websocket.md) is resumed with ``since``, as clients do."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while last != until:
        assert time.monotonic() < deadline, f"stuck at {last}, waiting for {until}"
        message = await socket.receive(timeout=RECEIVE_SECONDS)
        if message.type == aiohttp.WSMsgType.TEXT:
            event = json.loads(message.data)
            assert event["type"] not in ("snapshot", "resync"), event
            got.append(event)
            last = event["id"]
            continue
        await socket.close()
        await asyncio.sleep(0.2)
        try:
            socket = await session.ws_connect(f"/ws?since={last}")
        except aiohttp.WSServerHandshakeError:
            await asyncio.sleep(0.3)  # Redis still coming back
    return got, socket


async def log_after(redis: Redis, since: str) -> list[str]:
    return [entry_id for entry_id, _ in await redis.xrange(keys.EVENTS, min=f"({since}")]


async def get_json(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with session.get(path) as response:
        return response.status, await response.json(content_type=None)


# -- 1. Redis unreachable -----------------------------------------------------------------------


async def test_redis_outage_end_to_end(twilio: TwilioDouble, tmp_path: Path) -> None:
    store = tmp_path / "redis"
    first = start_redis(store, persist=True)
    port = first.port
    redis = Redis.from_url(first.url, decode_responses=True)
    second = None
    try:
        async with (
            app_server(first.url, twilio.base_url, tmp_path) as server,
            user_session(redis, server, "sam", "supervisor") as sam,
            user_session(redis, server, "alice") as alice,
            twilio_voice(redis, twilio, server.url) as voice,
            aiohttp.ClientSession(base_url=server.url) as anonymous,
        ):
            socket = await sam.ws_connect("/ws")
            snapshot = json.loads((await socket.receive(timeout=RECEIVE_SECONDS)).data)
            start = snapshot["id"]
            await set_status(alice, "available")  # acknowledged before the outage
            acknowledged = await newest(redis)
            before, socket = await follow(sam, socket, start, acknowledged)

            first.stop()  # Redis is gone
            sid = call_sid()
            started = time.monotonic()
            answer = await voice.send(voice.incoming(sid))
            answered_in = time.monotonic() - started
            assert answer.status_code == 200, answer.text
            assert answered_in < 3.0  # within the Voice URL's 2 s budget, well under 15 s
            twiml = ElementTree.fromstring(answer.text)
            conference = conference_of(twiml)
            assert conference.text == sid
            wait_url = conference.get("waitUrl", "")
            assert wait_url.endswith(f"/conference/wait?call={sid}")
            assert conference.get("statusCallback")
            wait = await voice.send(Delivery(wait_url, {"AccountSid": voice.account_sid}))
            # hold music and the loop, without their place in line: Redis is away
            assert wait.status_code == 200 and "<Play" in wait.text, wait.text
            assert "in line" not in wait.text and "<Redirect" in wait.text
            join = customer_join(voice, sid)
            refused = await voice.send(join)
            assert refused.status_code == 503  # Twilio is asked to retry
            status, health = await get_json(anonymous, "/healthz")
            assert status == 503
            assert health["status"] == "unhealthy" and health["reason"].startswith("redis")

            second = start_redis(store, port=port, persist=True)  # Redis is back
            await redis.aclose()
            redis = Redis.from_url(second.url, decode_responses=True)

            async def healthy() -> bool:
                return (await get_json(anonymous, "/healthz"))[0] == 200

            await until(healthy)
            deliveries = 1

            async def retried() -> bool:  # Twilio's retry: the very same request
                nonlocal deliveries
                deliveries += 1
                return (await voice.send(join)).status_code == 204

            await until(retried)
            assert await redis.lrange(keys.QUEUE, 0, -1) == [sid]  # recorded: queued
            await voice.settle()  # alice, available all along, is dialed
            assert [r.param("To") for r in twilio.calls_created()] == ["client:alice"]
            after, socket = await follow(sam, socket, acknowledged, await newest(redis))
            types = [e["type"] for e in after]
            assert "call.queued" in types and "agent.updated" in types
            # nothing lost: the live socket saw the whole log since its snapshot, in
            # order, once; a socket resuming from the snapshot gets exactly the same
            seen = [e["id"] for e in before + after]
            assert seen == await log_after(redis, start)
            assert acknowledged in seen
            async with sam.ws_connect(f"/ws?since={start}") as resumed:
                again, _ = await follow(sam, resumed, start, seen[-1])
            assert [e["id"] for e in again] == seen
            await socket.close()
    finally:
        await redis.aclose()
        for server in (first, second):
            if server is not None:
                server.stop()
    print(f"events checked: {len(seen)} live + {len(again)} resumed, {deliveries} deliveries")


# -- 2. the app killed mid-flow ------------------------------------------------------------------


class Dyno:
    """`warmline serve` on one fixed port (a dyno restarted keeps its address, so the
    URLs Twilio was given stay valid), killed and started again at will."""

    def __init__(self, redis_url: str, twilio_url: str, log_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.env = server_env(redis_url, twilio_url, self.port, **env)
        self.log_dir = log_dir
        self.runs = 0
        self.server: AppServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> AppServer:
        self.runs += 1
        log = self.log_dir / f"dyno-{self.port}-{self.runs}.log"
        self.server = AppServer(self.url, spawn_serve(self.env, log), log)
        await wait_healthy(self.server)
        return self.server

    def kill(self) -> None:
        """SIGKILL of the Hypercorn worker and its master: no shutdown code runs."""
        assert self.server is not None
        crash(self.server)

    def stop(self) -> None:
        if self.server is not None and self.server.process.poll() is None:
            crash(self.server)


async def test_app_killed_mid_flow_loses_nothing_and_the_flow_completes_through_a_new_one(
    redis_server, redis: Redis, twilio: TwilioDouble, tmp_path: Path
) -> None:
    dyno = Dyno(redis_server.url, twilio.base_url, tmp_path, AGENT_GRACE_SECONDS="600")
    try:
        await dyno.start()
        async with (
            user_session(redis, dyno, "sam", "supervisor") as sam,
            user_session(redis, dyno, "alice") as alice,
            user_session(redis, dyno, "bob") as bob,
            twilio_voice(redis, twilio, dyno.url) as voice,
        ):
            socket = await sam.ws_connect("/ws")
            snapshot = json.loads((await socket.receive(timeout=RECEIVE_SECONDS)).data)
            start = snapshot["id"]
            await set_status(alice, "available")
            name = await customer_waits(voice)
            first = await agent_answers(voice, name, "alice")  # alice answered
            seen, socket = await follow(sam, socket, start, await newest(redis))
            mark = seen[-1]["id"]
            before = await state_of(sam)

            dyno.kill()
            await dyno.start()
            assert await state_of(sam) == before  # nothing was only in the process
            await set_status(bob, "available")
            response = await alice.post(
                "/api/transfers", json={"conference": name, "to": "bob", "note": "vip"}
            )
            assert response.status == 201, await response.text()
            assert (await response.json())["status"] == "ringing"
            await voice.settle()
            during = await state_of(sam)  # bob's softphone rings

            dyno.kill()
            await dyno.start()
            assert await state_of(sam) == during
            await agent_answers(voice, name, "bob", start=False)  # answered via the new one
            [transfer] = (await state_of(sam))["transfers"]
            assert transfer["status"] == "joined"
            await leg_leaves(voice, name, first)  # alice hands over
            final = await state_of(sam)
            [transfer] = final["transfers"]
            assert (transfer["status"], transfer["reason"]) == ("completed", None)
            [conference] = final["conferences"]
            roles = sorted((p["role"], p["agent"]) for p in conference["participants"])
            assert roles == [("agent", "bob"), ("customer", None)]
            statuses = {a["username"]: a["status"] for a in final["agents"]}
            assert statuses == {"alice": "available", "bob": "busy"}
            assert len(dials_to(voice, "alice")) == 1 and len(dials_to(voice, "bob")) == 1

            # sam's socket died with the first process; resuming gets exactly the rest
            await socket.close()
            missed = await log_after(redis, mark)
            async with sam.ws_connect(f"/ws?since={mark}") as resumed:
                replayed, _ = await follow(sam, resumed, mark, missed[-1])
            assert [e["id"] for e in replayed] == missed
            types = [e["type"] for e in replayed]
            for expected in ("transfer.updated", "participant.joined", "participant.left"):
                assert expected in types
    finally:
        dyno.stop()
    print(f"events checked: {len(seen)} before the kills, {len(replayed)} replayed after")


async def state_of(session: aiohttp.ClientSession) -> dict[str, Any]:
    status, body = await get_json(session, "/api/state")
    assert status == 200, body
    return body


# -- 3. SIGTERM ----------------------------------------------------------------------------------


async def test_sigterm_exits_cleanly_after_draining_background_rest_actions(
    redis_server, redis: Redis, twilio: TwilioDouble, tmp_path: Path
) -> None:
    async with (
        app_server(redis_server.url, twilio.base_url, tmp_path) as server,
        user_session(redis, server, "alice") as alice,
        twilio_voice(redis, twilio, server.url) as voice,
    ):
        await set_status(alice, "available")
        twilio.delay_next("/Calls.json", seconds=1.0)  # the dial is slow, not failed
        name = await customer_waits(voice)

        async def dialing() -> bool:
            return bool(twilio.calls_created())

        await until(dialing)
        assert twilio.calls_created()[0].status is None  # still in flight
        # SIGTERM while the dial waits on Twilio (in a thread: the double runs on this loop)
        started = time.monotonic()
        code = await asyncio.to_thread(server.terminate)
        stopped_in = time.monotonic() - started
    output = server.output()
    assert code == 0, output
    assert "Traceback" not in output and "ERROR" not in output, output
    assert stopped_in < 8.0  # inside Hypercorn's 10 s graceful timeout
    # drained: Twilio answered the dial and its CallSid was recorded before exit
    [create] = twilio.calls_created()
    assert create.status == 201
    record = json.loads(await redis.get(keys.conference(name)))
    [dial] = record["dials"].values()
    assert dial["call_sid"] == voice.created_sid(create)
    assert dial["status"] == "queued"


async def test_sigterm_closes_open_sockets_at_once(
    redis_server, redis: Redis, twilio: TwilioDouble, tmp_path: Path
) -> None:
    async with (
        app_server(redis_server.url, twilio.base_url, tmp_path) as server,
        user_session(redis, server, "sam", "supervisor") as sam,
        user_session(redis, server, "alice") as alice,
        sam.ws_connect("/ws") as watching,
        alice.ws_connect("/ws") as working,
    ):
        await set_status(alice, "available")
        # the dashboards keep reading, as browsers do, so they answer the close frame
        readers = [asyncio.create_task(until_closed(s)) for s in (watching, working)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        code = await asyncio.to_thread(server.terminate)
        stopped_in = time.monotonic() - started
        closed = await asyncio.gather(*readers, return_exceptions=True)
    output = server.output()
    assert code == 0, output
    assert closed == [True, True], closed
    assert stopped_in < 8.0, stopped_in
    assert "Traceback" not in output, output


async def until_closed(socket: aiohttp.ClientWebSocketResponse) -> bool:
    """Read (events included) until the app closes the socket; True if it did."""
    while True:
        message = await socket.receive(timeout=RECEIVE_SECONDS)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return True
        if message.type != aiohttp.WSMsgType.TEXT:
            return False
