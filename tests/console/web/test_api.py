"""The JSON API (docs/api.md): presence, hold, leave, monitoring, tokens, visibility."""

from __future__ import annotations

import json

import jwt
import pytest

from console.config import DEFAULT_BREAK_REASONS, DEFAULT_DISPOSITIONS
from tests.conftest import ACCOUNT_SID, API_KEY, API_SECRET, PUBLIC_BASE_URL
from tests.support.flow_helpers import (
    agent_answers,
    agent_status,
    customer_waits,
    login,
    set_available,
    state,
)


@pytest.fixture
async def call(app, redis, voice):
    alice = await login(app, redis, "alice")
    await set_available(alice)
    name = await customer_waits(voice)
    leg = await agent_answers(voice, name, "alice")
    return {"alice": alice, "name": name, "leg": leg}


async def test_anonymous_gets_401_and_agents_get_403_on_supervisor_actions(app, call):
    anonymous = app.test_client()
    for method, path in [
        ("get", "/api/state"),
        ("get", "/api/token"),
        ("post", "/api/me/status"),
        ("post", "/api/transfers"),
    ]:
        response = await getattr(anonymous, method)(path, json={})
        assert response.status_code == 401
        assert (await response.get_json())["error"]
    response = await call["alice"].post(
        f"/api/conferences/{call['name']}/monitor", json={"mode": "listen"}
    )
    assert response.status_code == 403


async def test_token_is_a_voice_token_for_the_logged_in_user_only(call):
    response = await call["alice"].get("/api/token")
    body = await response.get_json()
    assert body["identity"] == "alice"
    claims = jwt.decode(body["token"], API_SECRET, algorithms=["HS256"])
    assert claims["grants"]["identity"] == "alice"
    assert claims["grants"]["voice"]["incoming"] == {"allow": True}
    assert claims["iss"] == API_KEY and claims["sub"] == ACCOUNT_SID
    assert body["expires"] == claims["exp"]


async def test_token_and_me_answers_are_not_cached_or_secret(call):
    token = await call["alice"].get("/api/token")
    assert token.status_code == 200
    assert token.headers["Cache-Control"] == "no-store"
    me = await call["alice"].get("/api/me")
    body = await me.get_json()
    assert set(body) == {
        "username",
        "role",
        "softphone",
        "dispositions",
        "break_reasons",
        "wrap_up_seconds",
        "callback_attempts",
    }
    assert API_SECRET not in json.dumps(body) and "token" not in body


async def test_presence_rules(app, redis, call):
    response = await call["alice"].post("/api/me/status", json={"status": "offline"})
    assert response.status_code == 409  # busy on a call
    bad = await call["alice"].post("/api/me/status", json={"status": "asleep"})
    assert bad.status_code == 400
    form = await call["alice"].post(
        "/api/me/status",
        data="status=offline",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code in (400, 415)
    bob = await login(app, redis, "bob")
    await set_available(bob)
    response = await bob.post("/api/me/status", json={"status": "offline"})
    assert (await response.get_json())["status"] == "offline"


async def test_hold_and_resume_the_customer(call, voice):
    customer = call["name"]
    response = await call["alice"].post(
        f"/api/conferences/{customer}/hold", json={"call_sid": customer, "hold": True}
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    update = voice.double.participant_updates()[-1]
    assert update.param("Hold") == "true"
    assert update.param("HoldUrl") == PUBLIC_BASE_URL + "/conference/wait?greeting=no"
    missing = await call["alice"].post(
        f"/api/conferences/{customer}/hold", json={"call_sid": "CA" + "0" * 32, "hold": True}
    )
    assert missing.status_code == 404
    unknown = await call["alice"].post(
        "/api/conferences/CAnope/hold", json={"call_sid": customer, "hold": False}
    )
    assert unknown.status_code == 404


async def test_other_agents_cannot_hold_or_leave_someone_elses_conference(app, redis, call):
    bob = await login(app, redis, "bob")
    customer = call["name"]
    hold = await bob.post(
        f"/api/conferences/{customer}/hold", json={"call_sid": customer, "hold": True}
    )
    assert hold.status_code == 403
    leave = await bob.post(f"/api/conferences/{customer}/leave", json={})
    assert leave.status_code == 409


async def test_leave_hangs_up_the_agents_call(call, voice):
    response = await call["alice"].post(f"/api/conferences/{call['name']}/leave", json={})
    assert response.status_code == 200
    [hangup] = [u for u in voice.double.call_updates() if call["leg"].call_sid in u.path]
    assert hangup.param("Status") == "completed"


async def test_supervisor_listens_then_whispers_then_barges_in_place(app, redis, call, voice):
    sam = await login(app, redis, "sam", role="supervisor")
    name = call["name"]
    response = await sam.post(f"/api/conferences/{name}/monitor", json={"mode": "listen"})
    assert response.status_code == 200, await response.get_data(as_text=True)
    [created] = voice.double.participants_created()
    assert created.param("To") == "client:sam"
    assert created.param("Muted") == "true"
    sid = (await response.get_json())["call_sid"]
    await voice.event(
        name, "participant-join", sid, ParticipantLabel=created.param("Label"), Muted=True
    )
    response = await sam.post(f"/api/conferences/{name}/monitor", json={"mode": "whisper"})
    assert response.status_code == 200
    assert len(voice.double.participants_created()) == 1  # updated in place, not re-dialed
    whisper = voice.double.participant_updates()[-1]
    assert whisper.param("Coaching") == "true"
    assert whisper.param("CallSidToCoach") == call["leg"].call_sid
    response = await sam.post(f"/api/conferences/{name}/monitor", json={"mode": "barge"})
    barge = voice.double.participant_updates()[-1]
    assert (barge.param("Coaching"), barge.param("Muted")) == ("false", "false")
    snapshot = await state(sam)
    [conference] = snapshot["conferences"]
    roles = sorted(p["role"] for p in conference["participants"])
    assert roles == ["agent", "customer", "supervisor"]
    # agents are not told who is listening
    alice_view = await state(call["alice"])
    assert alice_view["conferences"][0]["name"] == name


async def test_agents_only_see_their_own_conferences(app, redis, call, voice):
    bob = await login(app, redis, "bob")
    snapshot = await state(bob)
    assert snapshot["conferences"] == [] and snapshot["transfers"] == []
    assert agent_status(snapshot, "alice") == "busy"  # presence is for everyone
    mine = await state(call["alice"])
    assert [c["name"] for c in mine["conferences"]] == [call["name"]]


async def test_openapi_document_lists_the_api(app):
    response = await app.test_client().get("/openapi.json")
    assert response.status_code == 200
    paths = (await response.get_json())["paths"]
    assert "/api/transfers" in paths and "/api/conferences/{name}/monitor" in paths


async def test_monitor_failing_upstream_is_a_502_and_can_be_tried_again(app, redis, call, voice):
    sam = await login(app, redis, "sam", role="supervisor")
    name = call["name"]
    voice.double.fail_next("/Participants.json", status=503, code=20503, method="POST")
    response = await sam.post(f"/api/conferences/{name}/monitor", json={"mode": "listen"})
    assert response.status_code == 502
    assert "error" in await response.get_json()
    [conference] = (await state(sam))["conferences"]
    assert sorted(p["role"] for p in conference["participants"]) == ["agent", "customer"]
    # nothing was left half-done: the retry dials the supervisor in once
    response = await sam.post(f"/api/conferences/{name}/monitor", json={"mode": "listen"})
    assert response.status_code == 200, await response.get_data(as_text=True)
    created = [c for c in voice.double.participants_created() if c.param("To") == "client:sam"]
    assert len(created) == 2  # the failed attempt and the retry; no third
    assert (await response.get_json())["call_sid"].startswith("CA")


async def test_monitor_unknown_or_ended_conference_is_404(app, redis, call):
    sam = await login(app, redis, "sam", role="supervisor")
    response = await sam.post("/api/conferences/CAnothere/monitor", json={"mode": "listen"})
    assert response.status_code == 404
    bad = await sam.post(f"/api/conferences/{call['name']}/monitor", json={"mode": "shout"})
    assert bad.status_code == 400


async def test_me_names_the_user_and_their_softphone(app, redis):
    alice = await login(app, redis, "alice")
    me = await (await alice.get("/api/me")).get_json()
    assert me == {
        "username": "alice",
        "role": "agent",
        "softphone": {"kind": "twilio"},
        "dispositions": list(DEFAULT_DISPOSITIONS),
        "break_reasons": list(DEFAULT_BREAK_REASONS),
        "wrap_up_seconds": 0,
        "callback_attempts": 3,
    }
    assert (await app.test_client().get("/api/me")).status_code == 401
    csp = (await alice.get("/agent")).headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert "wss://*.twilio.com" in csp


async def test_openapi_document_declares_answers_errors_and_required_bodies(app):
    doc = await (await app.test_client().get("/openapi.json")).get_json()
    assert all(path.startswith("/api/") for path in doc["paths"])  # no webhooks or pages
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert statuses & {"200", "201"}, (method, path)
            assert {"400", "401", "403", "404", "409"} <= statuses, (method, path)
            error = operation["responses"]["401"]["content"]["application/json"]["schema"]
            assert error["required"] == ["error"]
            if "requestBody" in operation:
                assert operation["requestBody"]["required"] is True, (method, path)
            for parameter in operation["parameters"]:
                assert parameter["schema"].get("pattern"), (method, path, parameter)
    transfer = doc["paths"]["/api/transfers"]["post"]["responses"]["201"]
    assert "to_agent" in json.dumps(transfer)


async def test_unknown_body_fields_are_refused(app, redis, call):
    response = await call["alice"].post(
        f"/api/conferences/{call['name']}/hold",
        json={"call_sid": call["name"], "hold": True, "holdd": False},
    )
    assert response.status_code == 400
    assert "error" in await response.get_json()
