"""Redis failover under Sentinel (issue 21), across real processes on loopback: a
primary, a replica and three Sentinels (tests/support/sentinel.py), two `warmline
serve` processes configured with REDIS_SENTINELS, Twilio's webhooks signed and sent
over HTTP to whichever process each URL names, the REST double as Twilio.

Replication is cut off before the primary is killed, so the writes of one caller are
deterministically the ones a failover loses; the app must get them back from Twilio
by its own reconcile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import aiohttp
import pytest
from redis.asyncio import Redis

from console.domain import keys
from console.redis_ext import connect
from simulator.testing import (
    SIGNATURE_HEADER,
    Delivery,
    TwilioDouble,
    TwilioVoice,
    call_sid,
    conference_of,
    sign,
)
from tests.console.web.test_ws_servers import newest, set_status, user_session
from tests.support.flow_helpers import (
    agent_answers,
    customer_join,
    customer_waits,
    dials_to,
    hang_up_customer,
)
from tests.support.sentinel import MASTER, SentinelSet, start_sentinel_set
from tests.support.servers import AppServer, app_server
from tests.support.waiting import until
from tests.system.test_faults_servers import HttpAnswer, Quiet, get_json, log_after

pytestmark = pytest.mark.timeout(240)

SERVICE_BACK_BOUND_SECONDS = 15.0  # the bound, from the promotion
RECEIVE_SECONDS = 10.0
RETRY_PAUSE_SECONDS = 0.25  # between Twilio's retries of a webhook answered 503


# -- Twilio, over HTTP to either process ------------------------------------------------------


@dataclass
class Answered:
    url: str  # as Twilio was given it, connection-override fragment included
    status: int
    at: float


class Voice(TwilioVoice):
    """Twilio's webhooks for the conferences whose Voice URL ran on ``base_url``; each
    delivery goes to the URL it names (a dial's callbacks reach the process that
    dialed), and every answer is kept in ``answers``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        twilio: TwilioDouble,
        base_url: str,
        redis: Redis,
        answers: list[Answered],
    ) -> None:
        super().__init__(None, twilio, base_url, settle=Quiet(redis, twilio).drain)
        self.session = session
        self.answers = answers

    async def send(self, delivery: Delivery, signature: str | None = None) -> Any:
        url = delivery.url.split("#", 1)[0]
        headers = {SIGNATURE_HEADER: signature or sign(url, delivery.params, self.token)}
        async with self.session.post(url, data=delivery.params, headers=headers) as response:
            answer = HttpAnswer(response.status, await response.text())
        self.answers.append(Answered(delivery.url, answer.status_code, time.monotonic()))
        return answer


async def delivered(voice: Voice, delivery: Delivery, within: float = 40.0) -> int:
    """Send ``delivery`` as Twilio does, again after each 503 (its URL asks for retries
    on 5xx); the number of attempts it took."""
    deadline = time.monotonic() + within
    attempts = 0
    while True:
        attempts += 1
        answer = await voice.send(delivery)
        if answer.status_code < 300:
            return attempts
        assert time.monotonic() < deadline, f"still {answer.status_code} after {attempts} tries"
        await asyncio.sleep(RETRY_PAUSE_SECONDS)


def retried_by_twilio(url: str) -> bool:
    """Twilio retries a 5xx only when the URL's connection overrides ask for it."""
    _, _, fragment = url.partition("#")
    policy = dict(part.partition("=")[::2] for part in fragment.split("&") if part)
    return "5xx" in policy.get("rp", "").split(",") and int(policy.get("rc", "0") or 0) > 0


async def caller(voice: Voice) -> str:
    """A customer calls (the Voice URL must answer TwiML, Redis or not) and Twilio
    reports them joining their conference, retrying until accepted."""
    sid = call_sid()
    answer = await voice.send(voice.incoming(sid))
    assert answer.status_code == 200, answer.text
    assert conference_of(ElementTree.fromstring(answer.text)).text == sid
    join = customer_join(voice, sid)
    await delivered(voice, join)
    return sid


# -- dashboards --------------------------------------------------------------------------------


@dataclass
class Dashboard:
    """An open /ws socket and everything it received."""

    socket: aiohttp.ClientWebSocketResponse
    messages: list[dict[str, Any]] = field(default_factory=list)

    async def read_until(self, event_id: str) -> None:
        """Receive until an event (or snapshot) with ``event_id`` or later."""
        while (
            not self.messages
            or "id" not in self.messages[-1]
            or (_key(self.messages[-1]["id"]) < _key(event_id))
        ):
            message = await self.socket.receive(timeout=RECEIVE_SECONDS)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            self.messages.append(json.loads(message.data))

    async def read_until_resync(self) -> None:
        """Receive until a ``resync`` and the snapshot that follows it."""
        while len(self.messages) < 2 or self.messages[-2]["type"] != "resync":
            message = await self.socket.receive(timeout=RECEIVE_SECONDS)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            self.messages.append(json.loads(message.data))
        assert self.messages[-1]["type"] == "snapshot", self.messages[-1]

    def after_last_resync(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The snapshot sent after the last ``resync``, and the events after it."""
        types = [m["type"] for m in self.messages]
        assert "resync" in types, f"no resync among {types}"
        at = len(types) - 1 - types[::-1].index("resync")
        snapshot = self.messages[at + 1]
        assert snapshot["type"] == "snapshot", snapshot
        return snapshot, self.messages[at + 2 :]


def _key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)


async def opened(session: aiohttp.ClientSession, path: str = "/ws") -> Dashboard:
    board = Dashboard(await session.ws_connect(path))
    message = await board.socket.receive(timeout=RECEIVE_SECONDS)
    board.messages.append(json.loads(message.data))
    return board


# -- the Redis set -----------------------------------------------------------------------------


@asynccontextmanager
async def sentinel_set(directory: Path) -> AsyncIterator[SentinelSet]:
    redis_set = await asyncio.to_thread(start_sentinel_set, directory)
    try:
        yield redis_set
    finally:
        redis_set.stop()


async def switch_seen(
    redis_set: SentinelSet, subscribed: asyncio.Event, seen: asyncio.Event, at: list[float]
) -> None:
    """Wait for a Sentinel's ``+switch-master`` (the promotion) and note when it came."""
    sentinel = Redis(port=redis_set.sentinels[0].port, decode_responses=True)
    try:
        async with sentinel.pubsub() as pubsub:
            await pubsub.subscribe("+switch-master")
            subscribed.set()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and str(message["data"]).startswith(MASTER + " "):
                    at.append(time.monotonic())
                    seen.set()
                    return
    finally:
        await sentinel.aclose()


async def healthy(session: aiohttp.ClientSession, server: AppServer) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        async with session.get(f"{server.url}/healthz") as response:
            return response.status == 200
    return False


async def state_of(session: aiohttp.ClientSession) -> dict[str, Any]:
    status, body = await get_json(session, "/api/state")
    assert status == 200, body
    return body


def queued(state: dict[str, Any]) -> list[str]:
    return [entry["call_sid"] for entry in state["queue"]]


def agents_in_calls(state: dict[str, Any]) -> dict[str, str]:
    """Each agent in a conference, with the conference's name."""
    return {
        p["agent"]: p["conference"]
        for c in state["conferences"]
        for p in c["participants"]
        if p["role"] == "agent"
    }


# -- the test ----------------------------------------------------------------------------------


async def test_primary_killed_mid_flow_fails_over_and_lost_writes_come_back_from_twilio(
    twilio: TwilioDouble, servers_database_url: str, tmp_path: Path
) -> None:
    answers: list[Answered] = []
    env = {"AGENT_GRACE_SECONDS": "600", "DATABASE_URL": servers_database_url}
    async with sentinel_set(tmp_path / "redis") as redis_set:
        env.update(redis_set.env())
        redis = connect(redis_set.target)  # the test's own client follows the failover too
        try:
            async with (
                app_server("", twilio.base_url, tmp_path, **env) as first,
                app_server("", twilio.base_url, tmp_path, **env) as second,
                user_session(redis, first, "sam", "supervisor") as sam,
                user_session(redis, second, "sam", "supervisor") as sam_second,
                user_session(redis, second, "alice") as alice,
                aiohttp.ClientSession() as http,
            ):
                voice_a = Voice(http, twilio, first.url, redis, answers)
                voice_b = Voice(http, twilio, second.url, redis, answers)
                watching = await opened(sam)  # on the first process
                working = await opened(alice)  # alice's own, on the second
                resuming = await opened(sam_second)  # closed before the failover

                # -- before: an agent on a call, a caller waiting; all replicated
                await set_status(alice, "available")
                on_call = await customer_waits(voice_a)
                await agent_answers(voice_a, on_call, "alice")
                waiting = await customer_waits(voice_b)
                await voice_a.settle()
                assert await redis.execute_command("WAIT", 1, 5000) == 1
                replicated = await newest(redis)
                for board in (watching, resuming):  # supervisors: every event
                    await board.read_until(replicated)
                await resuming.socket.close()

                # -- the writes the failover loses: a caller queued on the primary only
                await asyncio.to_thread(redis_set.cut_replication)
                lost_caller = await customer_waits(voice_a)
                await voice_a.settle()
                lost_last = await newest(redis)
                assert _key(lost_last) > _key(replicated)
                await watching.read_until(lost_last)  # it was sent lost ids
                assert lost_caller in queued(await state_of(sam))

                # -- the primary dies mid-flow; callers keep arriving through both apps
                subscribed, switched, switch_at = asyncio.Event(), asyncio.Event(), []
                listener = asyncio.create_task(
                    switch_seen(redis_set, subscribed, switched, switch_at)
                )
                await asyncio.wait_for(subscribed.wait(), RECEIVE_SECONDS)
                killed_at = time.monotonic()
                redis_set.primary.kill()
                with redis_set.replica.client() as replica:  # not promoted yet: 1 s at least
                    before_promotion = await asyncio.to_thread(replica.lrange, keys.QUEUE, 0, -1)
                    stream_tail = await asyncio.to_thread(
                        replica.xrevrange, keys.EVENTS, "+", "-", 1
                    )
                assert lost_caller not in before_promotion and waiting in before_promotion
                assert stream_tail[0][0] == replicated  # the lost writes are really lost

                during: list[asyncio.Task[str]] = []
                back: dict[str, float] = {}
                voices = (voice_a, voice_b)
                deadline = time.monotonic() + 60
                while len(back) < 2:
                    assert time.monotonic() < deadline, "service never came back"
                    during.append(asyncio.create_task(caller(voices[len(during) % 2])))
                    await asyncio.sleep(0.3)
                    if switched.is_set():
                        for server in (first, second):
                            if server.url not in back and await healthy(http, server):
                                back[server.url] = time.monotonic()
                arrived = list(await asyncio.gather(*during))
                await asyncio.wait_for(listener, RECEIVE_SECONDS)  # done: switched was set
                accepted_after = [
                    a.at for a in answers if a.status < 300 and "/conference/status" in a.url
                ]
                # The first callback accepted once the primary was gone: the apps may
                # reach the promoted replica before this test hears +switch-master.
                first_accepted = min(t for t in accepted_after if t >= killed_at)
                service_back = max(*back.values(), first_accepted) - switch_at[0]
                assert service_back <= SERVICE_BACK_BOUND_SECONDS, service_back

                # -- webhooks during the switch: 2xx, or 503 on a URL Twilio retries
                refused = [a for a in answers if a.status >= 300]
                assert refused, "no webhook met the outage: the test proved nothing"
                for answer in refused:
                    assert answer.status == 503, answer
                    assert retried_by_twilio(answer.url), answer

                # -- the lost caller comes back through the app's reconcile with Twilio
                async def line_complete() -> bool:
                    return lost_caller in queued(await state_of(sam))

                await until(line_complete, within=30.0)
                await voice_a.settle()
                state = await state_of(sam)
                line = queued(state)
                assert len(line) == len(set(line)), line  # nobody twice
                assert set(line) == {waiting, lost_caller, *arrived}, line  # nobody missing
                # in the order they called; Twilio dates a conference to the second, so
                # the rebuilt caller may pass one who called within the same second
                assert set(line[:2]) == {waiting, lost_caller}, line
                assert queued(await state_of(sam_second)) == line  # both processes agree
                statuses = {a["username"]: a["status"] for a in state["agents"]}
                assert statuses["alice"] == "busy"  # still with her caller, truly
                assert agents_in_calls(state) == {"alice": on_call}

                # -- every socket: live ones resynced (they were sent lost ids), then
                # exactly the log; one resumed from a replicated id gets the events
                now = await newest(redis)
                await watching.read_until(now)
                snapshot, after = watching.after_last_resync()
                assert [e["id"] for e in after] == await log_after(redis, snapshot["id"])
                assert lost_caller in [q["call_sid"] for q in snapshot["data"]["queue"]] or (
                    lost_caller in json.dumps(after)
                )
                await working.read_until_resync()  # alice sees only her share of the log
                async with sam_second.ws_connect(f"/ws?since={replicated}") as socket:
                    resumed = Dashboard(socket)
                    await resumed.read_until(now)
                    types = [m["type"] for m in resumed.messages]
                    assert "resync" not in types and "snapshot" not in types, types
                    assert [m["id"] for m in resumed.messages] == await log_after(redis, replicated)

                # -- the flow goes on: alice's caller hangs up, she takes the next one
                head = line[0]
                await hang_up_customer(
                    voice_a, on_call, "participant-with-end-conference-on-exit-left"
                )
                await voice_a.settle()
                statuses = {a["username"]: a["status"] for a in (await state_of(sam))["agents"]}
                assert statuses["alice"] != "busy", statuses  # not stuck busy
                assert len(dials_to(voice_a, "alice")) == 2  # dialed for the head of the line
                await agent_answers(voice_b if head == waiting else voice_a, head, "alice")
                final = await state_of(sam)
                assert set(queued(final)) == {waiting, lost_caller, *arrived} - {head}
                busy = {a["username"] for a in final["agents"] if a["status"] == "busy"}
                assert busy == set(agents_in_calls(final)) == {"alice"}
                assert agents_in_calls(final)["alice"] == head
                await watching.socket.close()
                await working.socket.close()
        finally:
            await redis.aclose()
    print(
        f"service back {service_back:.1f} s after the promotion; {len(refused)} webhooks "
        f"answered 503 during the switch, {len(arrived)} callers arrived meanwhile"
    )
