"""Warm transfers: every way one can fail, cancel, and the hand-offs
(docs/call-flow.md: transfers, endConferenceOnExit)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import PUBLIC_BASE_URL
from tests.support.flow_helpers import (
    Leg,
    agent_answers,
    agent_status,
    alice_with_customer_bob_available,
    dials_to,
    hang_up_customer,
    leg_leaves,
    login,
    state,
)


@pytest.fixture
async def call(app, redis, voice):
    """alice is with a customer; bob is available for a transfer."""
    return await alice_with_customer_bob_available(app, redis, voice)


async def start(call, to="bob"):
    response = await call["alice"].post(
        "/api/transfers", json={"conference": call["name"], "to": to, "note": "vip"}
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def transfer_of(client):
    snapshot = await state(client)
    [transfer] = snapshot["transfers"]
    return transfer


@pytest.mark.parametrize("outcome", ["no-answer", "busy", "failed"])
async def test_colleague_not_answering_fails_the_transfer(call, voice, outcome):
    await start(call)
    create = dials_to(voice, "bob")[-1]
    sid = await voice.ring(create)
    await voice.decline(create, sid, outcome)
    await voice.settle()
    transfer = await transfer_of(call["alice"])
    assert (transfer["status"], transfer["reason"]) == ("failed", outcome)
    snapshot = await state(call["alice"])
    assert agent_status(snapshot, "bob") == "missed"
    assert agent_status(snapshot, "alice") == "busy"
    # alice is alone with the customer again: her hanging up ends the call
    flags = [u.param("EndConferenceOnExit") for u in voice.double.participant_updates()]
    assert flags[-1] == "true"


async def test_first_agent_cancels_a_ringing_transfer(call, voice):
    transfer = await start(call)
    create = dials_to(voice, "bob")[-1]
    sid = await voice.ring(create)
    response = await call["alice"].delete(f"/api/transfers/{transfer['id']}")
    assert response.status_code == 200
    assert (await response.get_json())["status"] == "canceled"
    await voice.settle()
    cancel = [u for u in voice.double.call_updates() if sid in u.path]
    assert cancel and cancel[-1].param("Status") == "canceled"
    await voice.decline(create, sid, "canceled")
    await voice.settle()
    snapshot = await state(call["alice"])
    assert agent_status(snapshot, "bob") == "available"  # a ring we canceled is not missed
    transfer = await transfer_of(call["alice"])
    assert transfer["status"] == "canceled"
    again = await call["alice"].delete(f"/api/transfers/{transfer['id']}")
    assert again.status_code == 409


async def test_colleague_hanging_up_during_consult_leaves_customer_with_first_agent(call, voice):
    await start(call)
    second = await agent_answers(voice, call["name"], "bob", start=False)
    await leg_leaves(voice, call["name"], second)
    transfer = await transfer_of(call["alice"])
    assert (transfer["status"], transfer["reason"]) == ("failed", "colleague-left")
    snapshot = await state(call["alice"])
    [conference] = snapshot["conferences"]
    assert sorted(p["role"] for p in conference["participants"]) == ["agent", "customer"]
    assert snapshot["queue"] == []


async def test_first_agent_leaving_while_colleague_rings_holds_then_requeues(call, voice):
    await start(call)
    create = dials_to(voice, "bob")[-1]
    sid = await voice.ring(create)
    await leg_leaves(voice, call["name"], call["first"])
    holds = [u for u in voice.double.participant_updates() if u.param("Hold") == "true"]
    assert holds and holds[-1].path.endswith(f"{call['name']}.json")
    assert holds[-1].param("HoldUrl") == PUBLIC_BASE_URL + "/conference/wait?greeting=no"
    await voice.decline(create, sid, "no-answer")
    await voice.settle()
    snapshot = await state(call["alice"])
    assert [q["call_sid"] for q in snapshot["queue"]] == [call["name"]]
    transfer = await transfer_of(call["alice"])
    assert (transfer["status"], transfer["reason"]) == ("failed", "no-answer")


async def test_first_agent_leaving_while_colleague_rings_completes_when_colleague_joins(
    call, voice
):
    await start(call)
    await leg_leaves(voice, call["name"], call["first"])
    second = await agent_answers(voice, call["name"], "bob", start=False)
    transfer = await transfer_of(call["bob"])
    assert transfer["status"] == "completed"
    unholds = [u for u in voice.double.participant_updates() if u.param("Hold") == "false"]
    assert unholds, "the customer's hold music must stop when the colleague joins"
    assert isinstance(second, Leg)


async def test_customer_hanging_up_mid_transfer_fails_it_and_stops_the_ring(call, voice):
    await start(call)
    create = dials_to(voice, "bob")[-1]
    sid = await voice.ring(create)
    name = call["name"]
    await hang_up_customer(voice, name, "participant-with-end-conference-on-exit-left")
    await voice.settle()
    cancel = [u for u in voice.double.call_updates() if sid in u.path]
    assert cancel and cancel[-1].param("Status") == "canceled"
    snapshot = await state(call["alice"])
    assert snapshot["conferences"] == []
    assert agent_status(snapshot, "bob") == "available"


async def test_transfer_to_unavailable_or_unknown_agent(call, app, redis):
    carol = await login(app, redis, "carol")
    assert carol is not None
    busy = await call["alice"].post(
        "/api/transfers", json={"conference": call["name"], "to": "carol"}
    )
    assert busy.status_code == 409
    unknown = await call["alice"].post(
        "/api/transfers", json={"conference": call["name"], "to": "zed"}
    )
    assert unknown.status_code == 404
    missing = await call["alice"].post("/api/transfers", json={"conference": "CAnope", "to": "bob"})
    assert missing.status_code == 404
    bad = await call["alice"].post("/api/transfers", json={"to": "bob"})
    assert bad.status_code == 400
    assert "error" in await bad.get_json()


async def test_transfer_to_a_supervisor_is_answered_like_an_unknown_name(call, app, redis):
    """The answer must not tell an agent who the supervisors are (docs/api.md)."""
    sam = await login(app, redis, "sam", role="supervisor")
    assert (await sam.get("/api/webhooks")).status_code == 200  # sam is one, logged in
    answers = []
    for to in ("sam", "zed"):
        response = await call["alice"].post(
            "/api/transfers", json={"conference": call["name"], "to": to, "note": "x"}
        )
        answers.append(
            (response.status_code, await response.get_data(as_text=True), response.content_type)
        )
    assert answers[0] == answers[1]
    assert answers[0][0] == 404
    assert json.loads(answers[0][1]) == {"error": "no such agent"}
    snapshot = await state(call["alice"])
    assert snapshot["transfers"] == []


async def test_transfer_to_any_available_agent(call, voice):
    transfer = await start(call, to=None)
    assert transfer["to_agent"] == "bob"
    assert len(dials_to(voice, "bob")) == 1


async def test_rest_failure_fails_transfer_visibly(call, voice):
    voice.double.fail_next("/Calls.json", status=500)
    transfer = await start(call)
    assert (transfer["status"], transfer["reason"]) == ("failed", "api-error")
    snapshot = await state(call["alice"])
    assert agent_status(snapshot, "bob") == "available"
