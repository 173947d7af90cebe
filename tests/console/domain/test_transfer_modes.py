"""Transfers by mode (SPEC §10): blind (the agent leaves once the colleague is rung;
nobody answering puts the customer at the front of the line), queue (straight to the
front of the line), "any available agent" waiting ahead of the line for the next free
agent (and failing after TRANSFER_WAIT_SECONDS), and external numbers from the
directory or EXTERNAL_TRANSFER_ALLOW (anything else 403), warm or blind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from console.domain import keys
from console.telephony.runner import Runner
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    alice_with_customer_bob_available,
    customer_waits,
    dials_to,
    events,
    hang_up_customer,
    leg_leaves,
    login,
    served,
    set_available,
    state,
)

pytestmark = pytest.mark.timeout(60)

PARTNER = "+14155550100"


@pytest.fixture
async def call(app, redis, voice):
    return await alice_with_customer_bob_available(app, redis, voice)


async def transfer(client: Any, **body: Any) -> Any:
    return await client.post("/api/transfers", json=body)


def hangups(voice: AppVoice, call_sid: str) -> list[str | None]:
    return [
        r.param("Status")
        for r in voice.double.call_updates()
        if r.path.endswith(f"/{call_sid}.json")
    ]


async def the_transfer(client: Any, transfer_id: str) -> dict[str, Any]:
    return next(t for t in (await state(client))["transfers"] if t["id"] == transfer_id)


async def test_blind_the_agent_leaves_at_once_and_the_colleague_takes_over(call, voice, redis):
    name, first = call["name"], call["first"]
    response = await transfer(call["alice"], conference=name, mode="blind", to="bob", note="vip")
    assert response.status_code == 201, await response.get_data(as_text=True)
    shown = await response.get_json()
    assert (shown["mode"], shown["to_agent"]) == ("blind", "bob")
    await voice.settle()
    assert len(dials_to(voice, "bob")) == 1
    assert hangups(voice, first.call_sid) == ["completed"]  # alice is hung up for her
    await leg_leaves(voice, name, first)
    # Alone, the customer hears the wait music until bob answers.
    held = [r.param("Hold") for r in voice.double.participant_updates() if name in r.path]
    assert held[-1] == "true"
    await agent_answers(voice, name, "bob", start=False)
    done = await the_transfer(call["bob"], shown["id"])
    assert done["status"] == "completed"
    assert await redis.lrange(keys.QUEUE, 0, -1) == []


async def test_blind_nobody_answers_the_customer_goes_to_the_front_of_the_line(
    call, voice, redis, app
):
    name, first = call["name"], call["first"]
    sue = await login(app, redis, "sue", role="supervisor")  # alice has left: sue sees it
    response = await transfer(call["alice"], conference=name, mode="blind", to="bob")
    shown = await response.get_json()
    later = await customer_waits(voice)  # another caller, in line while bob's phone rings
    await voice.settle()
    await leg_leaves(voice, name, first)
    ring = dials_to(voice, "bob")[-1]
    sid = await voice.ring(ring)
    await voice.decline(ring, sid, "no-answer")
    await voice.settle()
    failed = await the_transfer(sue, shown["id"])
    assert (failed["status"], failed["reason"]) == ("failed", "no-answer")
    assert await redis.lrange(keys.QUEUE, 0, -1) == [name, later]


async def test_to_the_line_the_customer_waits_at_its_front(call, voice, redis, app):
    name, first = call["name"], call["first"]
    sue = await login(app, redis, "sue", role="supervisor")
    later = await customer_waits(voice)
    bad = await transfer(call["alice"], conference=name, mode="queue", to="bob")
    assert bad.status_code == 400
    response = await transfer(call["alice"], conference=name, mode="queue")
    assert response.status_code == 201, await response.get_data(as_text=True)
    shown = await response.get_json()
    assert hangups(voice, first.call_sid) == ["completed"]
    await leg_leaves(voice, name, first)
    assert (await redis.lrange(keys.QUEUE, 0, -1))[:2] == [name, later]
    assert (await the_transfer(sue, shown["id"]))["status"] == "completed"


async def test_any_agent_waits_ahead_of_the_line_for_the_next_free_one(app, redis, voice):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(alice)
    name = await customer_waits(voice)
    await agent_answers(voice, name, "alice")
    # Nobody else signed in: refused at once, as before.
    assert (await transfer(alice, conference=name)).status_code == 409
    assert (
        await bob.post("/api/me/status", json={"status": "break", "reason": "Lunch"})
    ).status_code == 200
    response = await transfer(alice, conference=name, note="needs billing")
    assert response.status_code == 201, await response.get_data(as_text=True)
    shown = await response.get_json()
    assert (shown["status"], shown["to_agent"]) == ("requested", None)
    later = await customer_waits(voice)
    await voice.settle()
    assert dials_to(voice, "bob") == []
    # bob is back: the transfer goes first, ahead of the caller waiting in line.
    await set_available(bob)
    await voice.settle()
    [ring] = dials_to(voice, "bob")
    assert f"conference={name}" in ring.param("Url")
    ringing = await the_transfer(alice, shown["id"])
    assert (ringing["to_agent"], ringing["status"]) in (("bob", "requested"), ("bob", "ringing"))
    assert await redis.lrange(keys.QUEUE, 0, -1) == [later]


async def test_a_waiting_transfer_fails_after_transfer_wait_seconds(twilio, redis, redis_server):
    async with served(twilio, redis_server, transfer_wait_seconds=1) as (app, voice):
        alice = await login(app, redis, "alice")
        bob = await login(app, redis, "bob")
        await set_available(alice)
        name = await customer_waits(voice)
        first = await agent_answers(voice, name, "alice")
        await bob.post("/api/me/status", json={"status": "break", "reason": "Lunch"})
        shown = await (await transfer(alice, conference=name)).get_json()
        await asyncio.sleep(1.1)  # TRANSFER_WAIT_SECONDS, and nobody freed up
        await Runner.of(app).sweep()
        failed = await the_transfer(alice, shown["id"])
        assert (failed["status"], failed["reason"]) == ("failed", "no-agent-available")
        # The customer is still with alice, whose hanging up ends the call again.
        flags = [
            u.param("EndConferenceOnExit")
            for u in voice.double.participant_updates()
            if u.path.endswith(f"/{first.call_sid}.json")
        ]
        assert flags[-1] == "true"


async def test_external_numbers_from_the_directory_only(call, voice, app, redis):
    name, first = call["name"], call["first"]
    sue = await login(app, redis, "sue", role="supervisor")
    refused = await transfer(call["alice"], conference=name, mode="external", to_number=PARTNER)
    assert refused.status_code == 403  # not in the directory: toll fraud is the risk
    assert (
        await call["alice"].post("/api/directory", json={"name": "x", "number": PARTNER})
    ).status_code == 403
    bad = await sue.post("/api/directory", json={"name": "Partner", "number": "+1555"})
    assert bad.status_code == 400
    added = await sue.post("/api/directory", json={"name": "Partner desk", "number": PARTNER})
    assert added.status_code == 201
    entry = await added.get_json()
    listed = await (await call["alice"].get("/api/directory")).get_json()
    assert listed["entries"] == [entry]
    response = await transfer(
        call["alice"], conference=name, mode="external", to_number=PARTNER, note="escalation"
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    shown = await response.get_json()
    assert (shown["mode"], shown["to_number"]) == ("external", PARTNER)
    [dial] = voice.double.numbers_dialed()
    assert dial.param("To") == PARTNER and (dial.param("Label") or "").startswith("dial-")
    sid = await voice.person_answers(dial)
    await voice.event(name, "participant-join", sid, ParticipantLabel=dial.param("Label"))
    await voice.settle()
    conference = next(c for c in (await state(sue))["conferences"] if c["name"] == name)
    external = next(p for p in conference["participants"] if p["call_sid"] == sid)
    assert (external["role"], external["from"], external["agent"]) == ("external", PARTNER, None)
    await leg_leaves(voice, name, first)
    done = await the_transfer(sue, shown["id"])
    assert done["status"] == "completed"
    # With the external party, the customer is neither in line nor on hold.
    assert await redis.lrange(keys.QUEUE, 0, -1) == []
    held = [
        r.param("Hold")
        for r in voice.double.participant_updates()
        if r.path.endswith(f"/{name}.json")
    ]
    assert "true" not in held
    removed = await sue.delete(f"/api/directory/{entry['id']}")
    assert removed.status_code == 200
    assert (await (await sue.get("/api/directory")).get_json())["entries"] == []


async def test_external_party_hanging_up_mid_consult_leaves_the_customer_with_the_agent(
    twilio, redis, redis_server
):
    async with served(twilio, redis_server, external_transfer_allow=("+1415",)) as (app, voice):
        call = await alice_with_customer_bob_available(app, redis, voice)
        name = call["name"]
        response = await transfer(
            call["alice"], conference=name, mode="external", to_number=PARTNER
        )
        assert response.status_code == 201  # under an allowed prefix
        shown = await response.get_json()
        [dial] = voice.double.numbers_dialed()
        sid = await voice.person_answers(dial)
        await voice.event(name, "participant-join", sid, ParticipantLabel=dial.param("Label"))
        await voice.event(name, "participant-leave", sid, ParticipantLabel=dial.param("Label"))
        await voice.settle()
        failed = await the_transfer(call["alice"], shown["id"])
        assert (failed["status"], failed["reason"]) == ("failed", "colleague-left")
        conference = next(
            c for c in (await state(call["alice"]))["conferences"] if c["name"] == name
        )
        assert sorted(p["role"] for p in conference["participants"]) == ["agent", "customer"]
        # Nobody answers the next one: failed, and alice still has the customer.
        response = await transfer(
            call["alice"], conference=name, mode="external", to_number=PARTNER
        )
        second = await response.get_json()
        await voice.person_misses(voice.double.numbers_dialed()[-1], "busy")
        await voice.settle()
        missed = await the_transfer(call["alice"], second["id"])
        assert (missed["status"], missed["reason"]) == ("failed", "busy")
        assert await redis.lrange(keys.QUEUE, 0, -1) == []


async def test_a_waiting_transfer_can_be_canceled_and_ends_if_the_customer_hangs_up(
    app, redis, voice
):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(alice)
    name = await customer_waits(voice)
    await agent_answers(voice, name, "alice")
    await bob.post("/api/me/status", json={"status": "break", "reason": "Lunch"})
    first = await (await transfer(alice, conference=name)).get_json()
    response = await alice.delete(f"/api/transfers/{first['id']}")
    assert response.status_code == 200
    assert (await response.get_json())["status"] == "canceled"
    second = await (await transfer(alice, conference=name)).get_json()
    await hang_up_customer(voice, name, "participant-with-end-conference-on-exit-left")
    await set_available(bob)  # frees up: nothing is waiting for him any more
    await voice.settle()
    assert dials_to(voice, "bob") == []
    updates = [
        e["data"]
        for e in await events(redis)
        if e["type"] == "transfer.updated" and e["data"]["id"] == second["id"]
    ]
    assert (updates[-1]["status"], updates[-1]["reason"]) == ("failed", "customer-hung-up")
    # The waiting mark is gone with it: the sweeper has nothing to offer bob.
    await Runner.of(app).sweep()
    assert dials_to(voice, "bob") == []
