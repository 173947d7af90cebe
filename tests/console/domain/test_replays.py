"""Replays (SPEC §11): an ended CallSid is never queued again, and an agent dialed for a
customer who never reaches the conference is freed within AGENT_GRACE_SECONDS. Real
app, real Redis, webhooks signed as Twilio signs them, the REST double for Twilio."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from xml.etree import ElementTree

import pytest
from redis.asyncio import Redis

from console.domain import keys
from simulator.testing import TwilioDouble, call_sid, conference_of
from tests.conftest import PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    agent_status,
    dials_to,
    events,
    hang_up_customer,
    login,
    set_available,
    state,
)
from warmline.app import create_app

GRACE = 8  # AGENT_GRACE_SECONDS here: Twilio is asked after half of it (the sweeper: 2 s)
WEEK = 7 * 24 * 3600


@pytest.fixture
def settings(twilio: TwilioDouble):
    return make_settings(api_base_url=twilio.base_url, agent_grace_seconds=GRACE)


async def until(what: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    """Wait for ``what`` to hold (the app's sweeper runs every 2 s); fail after ``seconds``."""
    for _ in range(int(seconds * 10)):
        if await what():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"still not so after {seconds} s")


async def twiml_of(response: Any) -> ElementTree.Element:
    assert response.status_code == 200, await response.get_data(as_text=True)
    return ElementTree.fromstring(await response.get_data(as_text=True))


def customer_join(voice: AppVoice, name: str) -> Any:
    return voice.conference_event(
        name,
        "participant-join",
        name,
        EndConferenceOnExit=True,
        StartConferenceOnEnter=False,
        ParticipantLabel="customer",
    )


async def test_an_ended_call_replayed_after_its_record_expired_is_never_queued(
    app, redis: Redis, voice: AppVoice, twilio, settings, redis_server
):
    alice = await login(app, redis, "alice")
    await set_available(alice)
    name = call_sid()
    incoming = voice.incoming(name)
    await twiml_of(await voice.send(incoming))
    join = customer_join(voice, name)
    assert (await voice.send(join)).status_code == 204
    # A replay while the call is live changes nothing: same TwiML, still queued once.
    assert conference_of(await twiml_of(await voice.send(incoming))).text == name
    await voice.settle()
    assert [q["call_sid"] for q in (await state(alice))["queue"]] == [name]
    await agent_answers(voice, name, "alice")
    await hang_up_customer(voice, name, "participant-with-end-conference-on-exit-left")

    await redis.delete(keys.conference(name))  # its record expired (a day later)
    dialed, logged = len(twilio.calls_created()), len(await events(redis))
    other = create_app(settings, redis_url=redis_server.url)  # a process that never saw it
    async with other.test_app(), other.test_client() as client:
        fresh = AppVoice(client, twilio, other, PUBLIC_BASE_URL)
        for replayer in (voice, fresh):
            answer = await twiml_of(await replayer.send(incoming))
            assert answer.find("./Hangup") is not None and answer.find("./Dial") is None
            assert (await replayer.send(join)).status_code == 204
            await replayer.settle()
    await voice.settle()
    assert (await state(alice))["queue"] == []
    assert await redis.get(keys.conference(name)) is None
    assert len(twilio.calls_created()) == dialed
    assert [e["type"] for e in (await events(redis))[logged:] if e["type"] == "call.queued"] == []
    assert await redis.ttl(keys.ended_call(name)) > WEEK - 60  # the marker lasts a week


async def test_an_agent_alone_in_an_empty_conference_is_freed_and_the_call_ended(
    app, redis: Redis, voice: AppVoice, twilio
):
    """A signed Voice URL for a CallSid Twilio has no live call for (a replay): alice is
    dialed, answers and waits alone. bob's customer is up on Twilio but their join
    callback was lost: bob keeps his call."""
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(alice)
    ghost = call_sid()
    await twiml_of(await voice.send(voice.incoming(ghost)))
    leg = await agent_answers(voice, ghost, "alice")
    await set_available(bob)
    live = twilio.add_call(status="in-progress")
    await twiml_of(await voice.send(voice.incoming(live)))
    await agent_answers(voice, live, "bob")
    logged = len(await events(redis))

    async def freed() -> bool:
        return {"type": "agent.updated", "alice": "available"} in [
            {"type": e["type"], e["data"].get("username"): e["data"].get("status")}
            for e in (await events(redis))[logged:]
        ]

    await until(freed)
    later = (await events(redis))[logged:]
    [ended] = [e for e in later if e["type"] == "conference.ended"]
    assert ended["data"]["name"] == ghost and ended["data"]["reason"] == "customer-never-joined"
    assert any(
        e["type"] == "participant.left" and e["data"]["call_sid"] == leg.call_sid for e in later
    )
    hangups = [r for r in twilio.call_updates() if leg.call_sid in r.path]
    assert [r.param("Status") for r in hangups] == ["completed"]
    assert ghost not in await redis.smembers(keys.LIVE)
    await until(lambda: _asked_about(twilio, live))
    assert agent_status(await state(bob), "bob") == "busy"
    # The ghost's CallSid is now an ended call: replayed again, it is hung up.
    answer = await twiml_of(await voice.send(voice.incoming(ghost)))
    assert answer.find("./Hangup") is not None


async def _asked_about(twilio: TwilioDouble, sid: str) -> bool:
    return bool(twilio.find("GET", f"/Calls/{sid}.json"))


async def test_a_caller_who_hung_up_before_reaching_the_conference_frees_the_ringing_agent(
    app, redis: Redis, voice: AppVoice, twilio
):
    """The caller hung up between the Voice URL's answer and joining: no callback ever
    comes. alice's ring is stopped (not missed) and the call leaves the line."""
    alice = await login(app, redis, "alice")
    await set_available(alice)
    gone = twilio.add_call(status="completed")
    await twiml_of(await voice.send(voice.incoming(gone)))
    await voice.settle()
    [create] = dials_to(voice, "alice")
    ring = await voice.ring(create)

    async def dequeued() -> bool:
        return any(
            e["type"] == "call.dequeued" and e["data"] == {"call_sid": gone, "reason": "hung-up"}
            for e in await events(redis)
        )

    await until(dequeued)
    await voice.settle()
    statuses = [e["data"]["status"] for e in await events(redis) if e["type"] == "agent.updated"]
    assert statuses == ["available", "ringing", "available"]  # freed, not missed
    assert [r.param("Status") for r in twilio.call_updates() if ring in r.path] == ["canceled"]
    assert (await state(alice))["queue"] == []
