"""The call flow (docs/call-flow.md) end to end, over the real app, Redis and the REST double."""

from __future__ import annotations

from console.domain.users import remove_user
from simulator.testing import conference_of
from tests.conftest import PUBLIC_BASE_URL
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    agent_status,
    customer_waits,
    dials_to,
    events,
    hang_up_customer,
    leg_leaves,
    login,
    set_available,
    state,
)


async def test_customer_is_queued_and_routed_to_the_longest_idle_agent(app, redis, voice):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(bob)
    await set_available(alice)
    name, twiml = await voice.call_in()
    conference = conference_of(twiml)
    assert conference.text == name
    assert conference.get("startConferenceOnEnter") == "false"
    assert conference.get("endConferenceOnExit") == "true"
    await voice.settle()
    assert len(dials_to(voice, "bob")) == 1  # bob became available first
    assert dials_to(voice, "alice") == []
    snapshot = await state(bob)
    assert agent_status(snapshot, "bob") == "ringing"
    assert [q["call_sid"] for q in snapshot["queue"]] == [name]


async def test_no_answer_makes_agent_missed_and_dials_the_next(app, redis, voice):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(alice)
    await set_available(bob)
    name = await customer_waits(voice)
    await voice.settle()
    create = dials_to(voice, "alice")[-1]
    sid = await voice.ring(create)
    await voice.decline(create, sid, "no-answer")
    await voice.settle()
    snapshot = await state(alice)
    assert agent_status(snapshot, "alice") == "missed"
    assert agent_status(snapshot, "bob") == "ringing"
    leg = await agent_answers(voice, name, "bob")
    snapshot = await state(bob)
    assert agent_status(snapshot, "bob") == "busy"
    assert snapshot["queue"] == []
    [conf] = snapshot["conferences"]
    assert conf["status"] == "in-progress"
    roles = sorted(p["role"] for p in conf["participants"])
    assert roles == ["agent", "customer"]
    assert leg.label.startswith("dial-")


async def test_warm_transfer_completes_when_first_agent_leaves(app, redis, voice, twilio):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(alice)
    name = await customer_waits(voice)
    first = await agent_answers(voice, name, "alice")
    await set_available(bob)
    response = await alice.post(
        "/api/transfers", json={"conference": name, "to": "bob", "note": "billing question"}
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    transfer = await response.get_json()
    assert transfer["status"] == "ringing"
    assert transfer["note"] == "billing question"
    # alice's endConferenceOnExit was cleared before bob was dialed
    update = twilio.participant_updates()[0]
    assert update.param("EndConferenceOnExit") == "false"
    second = await agent_answers(voice, name, "bob", start=False)
    snapshot = await state(alice)
    [t] = snapshot["transfers"]
    assert t["status"] == "joined"
    await leg_leaves(voice, name, first)
    snapshot = await state(bob)
    [t] = snapshot["transfers"]
    assert t["status"] == "completed"
    # bob is now alone with the customer: his leaving must end the call
    flags = [
        u.param("EndConferenceOnExit")
        for u in twilio.participant_updates()
        if u.path.endswith(f"{second.call_sid}.json")
    ]
    assert flags[-1] == "true"
    types = [e["type"] for e in await events(redis)]
    assert types.count("transfer.updated") >= 3


async def test_customer_hanging_up_while_queued_leaves_the_queue_and_stops_the_ring(
    app, redis, voice
):
    alice = await login(app, redis, "alice")
    await set_available(alice)
    name = await customer_waits(voice)
    await voice.settle()
    create = dials_to(voice, "alice")[-1]
    sid = await voice.ring(create)
    await hang_up_customer(voice, name, "last-participant-left")
    await voice.settle()
    assert [u.param("Status") for u in voice.double.call_updates() if sid in u.path] == ["canceled"]
    # alice picks up in the same instant: she is told, not connected
    response = await voice.send(voice.answer(create, sid))
    body = await response.get_data(as_text=True)
    assert "<Hangup" in body and "<Conference" not in body
    snapshot = await state(alice)
    assert snapshot["queue"] == [] and snapshot["conferences"] == []
    assert agent_status(snapshot, "alice") == "available"
    dequeued = [e for e in await events(redis) if e["type"] == "call.dequeued"]
    assert [e["data"] for e in dequeued] == [{"call_sid": name, "reason": "hung-up"}]


async def test_rest_timeout_on_dial_moves_on_without_redialing(app, redis, voice, twilio):
    alice = await login(app, redis, "alice")
    await set_available(alice)
    twilio.delay_next("/Calls.json", seconds=3)  # beyond the 1 s REST timeout of the tests
    name = await customer_waits(voice)
    await voice.settle()
    assert len(dials_to(voice, "alice")) == 1  # never blindly retried
    snapshot = await state(alice)
    assert agent_status(snapshot, "alice") == "available"
    assert [q["call_sid"] for q in snapshot["queue"]] == [name]


async def test_wrap_up_delays_the_next_call(app, redis, twilio, redis_server):
    from tests.conftest import make_settings
    from warmline.app import create_app

    wrapped = create_app(
        make_settings(twilio.base_url, wrap_up_seconds=60), redis_url=redis_server.url
    )
    async with wrapped.test_app(), wrapped.test_client() as client:
        voice = AppVoice(client, twilio, wrapped, PUBLIC_BASE_URL)
        alice = await login(wrapped, redis, "alice")
        await set_available(alice)
        name = await customer_waits(voice)
        leg = await agent_answers(voice, name, "alice")
        await leg_leaves(voice, name, leg, end_on_exit=True)
        await customer_waits(voice)
        await voice.settle()
        assert len(dials_to(voice, "alice")) == 1  # still wrapping up
        assert agent_status(await state(alice), "alice") == "wrap-up"
        # Ready ends it early: she is routed the waiting customer at once.
        await set_available(alice)
        await voice.settle()
        assert len(dials_to(voice, "alice")) == 2


async def test_a_removed_agent_is_never_dialed_and_goes_offline(app, redis, voice):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(alice)
    await set_available(bob)
    await bob.post("/api/me/status", json={"status": "offline"})
    assert await remove_user(redis, "alice")  # her softphone may still be registered
    await set_available(bob)  # routing runs: alice is the longest idle, but gone
    name = await customer_waits(voice)
    await voice.settle()
    assert dials_to(voice, "alice") == []
    assert len(dials_to(voice, "bob")) == 1
    statuses = {a["username"]: a["status"] for a in (await state(bob))["agents"]}
    assert statuses == {"alice": "offline", "bob": "ringing"}
    assert name in {c["name"] for c in (await state(bob))["conferences"]}
