"""The agent's day (SPEC §10): breaks with a reason, wrap-up after a call, what each
status allows, and that routing never dials an agent on break or in wrap-up."""

from __future__ import annotations

from typing import Any

import pytest

from console.telephony.runner import Runner
from tests.support.flow_helpers import (
    agent_answers,
    customer_waits,
    dials_to,
    events,
    leg_leaves,
    login,
    served,
    set_available,
    state,
)

pytestmark = pytest.mark.timeout(60)


def agent_of(snapshot: dict[str, Any], username: str) -> dict[str, Any]:
    return next(a for a in snapshot["agents"] if a["username"] == username)


async def status(client: Any, **body: Any) -> Any:
    return await client.post("/api/me/status", json=body)


async def test_a_break_needs_one_of_the_reasons_and_is_never_dialed(app, redis, voice):
    alice = await login(app, redis, "alice")
    for body, why in (
        ({"status": "break"}, "reason"),
        ({"status": "break", "reason": "Nap"}, "Lunch"),
        ({"status": "available", "reason": "Lunch"}, "break only"),
        ({"status": "busy"}, ""),
    ):
        response = await status(alice, **body)
        assert response.status_code == 400, body
        assert why in (await response.get_json())["error"]
    response = await status(alice, status="break", reason="Lunch")
    assert response.status_code == 200, await response.get_data(as_text=True)
    shown = await response.get_json()
    assert (shown["status"], shown["reason"]) == ("break", "Lunch")
    assert agent_of(await state(alice), "alice")["reason"] == "Lunch"
    name = await customer_waits(voice)
    await voice.settle()
    await Runner.of(app).sweep()
    assert dials_to(voice, "alice") == []  # on break: never dialed
    # Back from the break: routed at once, and the reason is gone.
    await set_available(alice)
    await voice.settle()
    assert len(dials_to(voice, "alice")) == 1
    updates = [e["data"] for e in await events(redis) if e["type"] == "agent.updated"]
    assert [(u["status"], u["reason"]) for u in updates if u["username"] == "alice"] == [
        ("break", "Lunch"),
        ("available", None),
        ("ringing", None),
    ]
    # Ringing (or on a call) one cannot take a break.
    response = await status(alice, status="break", reason="Lunch")
    assert response.status_code == 409
    assert name


async def test_wrap_up_follows_a_call_and_ready_or_a_break_ends_it(twilio, redis, redis_server):
    async with served(twilio, redis_server, wrap_up_seconds=600) as (app, voice):
        alice = await login(app, redis, "alice")
        await set_available(alice)
        name = await customer_waits(voice)
        leg = await agent_answers(voice, name, "alice")
        await leg_leaves(voice, name, leg, end_on_exit=True)
        assert agent_of(await state(alice), "alice")["status"] == "wrap-up"
        await customer_waits(voice)
        await Runner.of(app).sweep()
        assert len(dials_to(voice, "alice")) == 1  # in wrap-up: never dialed
        # A break straight from wrap-up; then Ready.
        assert (await status(alice, status="break", reason="Training")).status_code == 200
        assert agent_of(await state(alice), "alice")["status"] == "break"
        # The wrap-up's length goes to the call (its handle time, SPEC §8).
        [wrapped] = [e for e in await events(redis) if e["type"] == "call.wrapped-up"]
        assert (wrapped["data"]["call"], wrapped["data"]["agent"]) == (name, "alice")
        assert wrapped["data"]["wrap_up_ms"] >= 0 and wrapped["audience"] == "alice"
        await set_available(alice)
        await voice.settle()
        assert len(dials_to(voice, "alice")) == 2


async def test_a_ring_that_never_connects_has_no_wrap_up(twilio, redis, redis_server):
    async with served(twilio, redis_server, wrap_up_seconds=600) as (app, voice):
        alice = await login(app, redis, "alice")
        await set_available(alice)
        name = await customer_waits(voice)
        await voice.settle()
        await voice.event(name, "participant-leave", name, ParticipantLabel="customer")
        await voice.event(name, "conference-end", ReasonConferenceEnded="participant-left")
        await voice.settle()
        # The customer hung up while alice's phone rang: she took no call, so she is
        # available again at once.
        assert agent_of(await state(alice), "alice")["status"] == "available"


async def test_an_agent_on_break_whose_dashboard_is_gone_goes_offline(twilio, redis, redis_server):
    async with served(twilio, redis_server, agent_grace_seconds=0) as (app, _voice):
        alice = await login(app, redis, "alice")
        assert (await status(alice, status="break", reason="Lunch")).status_code == 200
        await Runner.of(app).sweep()
        shown = agent_of(await state(alice), "alice")
        assert (shown["status"], shown["reason"]) == ("offline", None)


async def test_the_disposition_and_notes_of_a_call_one_took(app, redis, voice):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(alice)
    name = await customer_waits(voice)
    leg = await agent_answers(voice, name, "alice")
    await leg_leaves(voice, name, leg, end_on_exit=True)
    url = f"/api/calls/{name}/wrap-up"
    bad = await alice.post(url, json={"disposition": "Nope"})
    assert bad.status_code == 400 and "disposition" in (await bad.get_json())["error"]
    long = await alice.post(url, json={"disposition": "Resolved", "notes": "x" * 2001})
    assert long.status_code == 400
    assert (await bob.post(url, json={"disposition": "Resolved"})).status_code == 404
    unknown = await alice.post(
        "/api/calls/CA" + "0" * 32 + "/wrap-up", json={"disposition": "Other"}
    )
    assert unknown.status_code == 404
    for disposition, notes in (("Follow-up", " call back Monday "), ("Resolved", "sorted")):
        response = await alice.post(url, json={"disposition": disposition, "notes": notes})
        assert response.status_code == 200, await response.get_data(as_text=True)
    given = [e for e in await events(redis) if e["type"] == "call.disposition"]
    assert [(e["data"]["disposition"], e["data"]["notes"]) for e in given] == [
        ("Follow-up", "call back Monday"),
        ("Resolved", "sorted"),
    ]
    assert {e["audience"] for e in given} == {"alice"}
    assert given[-1]["data"]["call"] == name and given[-1]["data"]["agent"] == "alice"
