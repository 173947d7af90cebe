"""Silent monitoring stays silent (SPEC §10, issue 16): an agent never learns of a
supervisor listening in, through /api/state, /ws (snapshot, live, replay), the
timeline or the hold API; a supervisor who whispers or barges is shown while heard."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.console.web.test_ws import public_marker, receive, receive_until
from tests.support.flow_helpers import agent_answers, customer_waits, login, set_available, state


@pytest.fixture
async def listening(app, redis, voice) -> dict[str, Any]:
    """alice on a call with a customer; supervisor sam dialed in, listening (muted)."""
    alice = await login(app, redis, "alice")
    await set_available(alice)
    name = await customer_waits(voice)
    leg = await agent_answers(voice, name, "alice")
    sam = await login(app, redis, "sam", role="supervisor")
    response = await sam.post(f"/api/conferences/{name}/monitor", json={"mode": "listen"})
    assert response.status_code == 200, await response.get_data(as_text=True)
    sid = (await response.get_json())["call_sid"]
    label = voice.double.participants_created()[-1].param("Label")
    await voice.event(name, "participant-join", sid, ParticipantLabel=label, Muted=True)
    return {"alice": alice, "sam": sam, "name": name, "leg": leg, "sid": sid, "label": label}


async def switch(voice, call: dict[str, Any], mode: str) -> None:
    """sam switches mode, and Twilio reports the change as it does (mute, then modify)."""
    response = await call["sam"].post(
        f"/api/conferences/{call['name']}/monitor", json={"mode": mode}
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    muted, coaching = mode == "listen", mode == "whisper"
    fields = {"ParticipantLabel": call["label"], "Muted": muted, "Coaching": coaching}
    await voice.event(
        call["name"], "participant-mute" if muted else "participant-unmute", call["sid"], **fields
    )
    await voice.event(call["name"], "participant-modify", call["sid"], **fields)


def supervisors_in(conference: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in conference["participants"] if p["role"] == "supervisor"]


async def timeline(client: Any, name: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/conferences/{name}/timeline")
    assert response.status_code == 200
    return (await response.get_json())["entries"]


async def test_a_listening_supervisor_is_not_in_the_agents_state_socket_or_timeline(
    app, redis, voice, listening
):
    name, sid = listening["name"], listening["sid"]
    [mine] = (await state(listening["alice"]))["conferences"]
    assert [p["role"] for p in mine["participants"]] == ["customer", "agent"]
    [theirs] = (await state(listening["sam"]))["conferences"]
    assert [p["call_sid"] for p in supervisors_in(theirs)] == [sid]  # supervisors see all

    marker = await public_marker(app, redis)
    async with listening["alice"].websocket("/ws") as socket:
        snapshot = await receive(socket)
        assert snapshot["type"] == "snapshot"
        assert sid not in json.dumps(snapshot) and "sam" not in json.dumps(snapshot)
    async with listening["alice"].websocket("/ws?since=0-0") as socket:
        replay = await receive_until(socket, marker)
    assert [m["type"] for m in replay if m["type"].startswith("participant.")]
    assert sid not in json.dumps(replay) and '"supervisor"' not in json.dumps(replay)

    entries = await timeline(listening["alice"], name)
    assert entries and not [e for e in entries if "sam" in e["detail"] or e["call_sid"] == sid]
    details = [e["detail"] for e in await timeline(listening["sam"], name)]
    assert "sam listens in" in details and "sam joined as supervisor (muted)" in details


async def test_an_agents_request_about_a_supervisors_leg_is_a_404_like_an_unknown_call(
    voice, listening
):
    alice, name = listening["alice"], listening["name"]
    unknown = "CA" + "0" * 32
    answers = {}
    for call_sid in (listening["sid"], unknown):
        response = await alice.post(
            f"/api/conferences/{name}/hold", json={"call_sid": call_sid, "hold": True}
        )
        answers[call_sid] = (response.status_code, await response.get_json())
    assert answers[unknown] == (404, {"error": f"no participant {unknown} in conference {name}"})
    sid = listening["sid"]
    assert answers[sid] == (404, {"error": f"no participant {sid} in conference {name}"})
    assert not [u for u in voice.double.participant_updates() if sid in u.path]
    # heard or not, the supervisor's leg is not the agent's to act on
    await switch(voice, listening, "barge")
    response = await alice.post(
        f"/api/conferences/{name}/hold", json={"call_sid": sid, "hold": True}
    )
    assert response.status_code == 404
    response = await listening["sam"].post(
        f"/api/conferences/{name}/hold", json={"call_sid": sid, "hold": True}
    )
    assert response.status_code == 200  # supervisors still may


async def test_whisper_is_shown_from_when_it_is_heard_and_going_back_to_listen_looks_like_leaving(
    app, redis, voice, listening
):
    alice, sam, name, sid = (listening[k] for k in ("alice", "sam", "name", "sid"))
    [before] = supervisors_in((await state(sam))["conferences"][0])
    async with alice.websocket("/ws") as socket:
        await receive(socket)  # the snapshot
        await switch(voice, listening, "whisper")
        [conference] = (await state(alice))["conferences"]
        [seen] = supervisors_in(conference)
        assert (seen["agent"], seen["coaching"], seen["muted"]) == ("sam", True, False)
        # joined when first heard: the listening before it does not show
        assert seen["joined_at"] > before["joined_at"]
        await switch(voice, listening, "barge")
        await switch(voice, listening, "listen")
        assert supervisors_in((await state(alice))["conferences"][0]) == []
        [still] = supervisors_in((await state(sam))["conferences"][0])
        assert (still["call_sid"], still["muted"]) == (sid, True)  # supervisors see all
        assert (await sam.post(f"/api/conferences/{name}/leave", json={})).status_code == 200
        await voice.event(name, "participant-leave", sid, ParticipantLabel=listening["label"])
        marker = await public_marker(app, redis)
        live = await receive_until(socket, marker)
    # Twilio reports the unmute, then the coaching: sam appears, then coaches
    about_sam = [(m["type"], m["data"]["coaching"]) for m in live if sid in json.dumps(m)]
    assert about_sam == [
        ("participant.joined", False),
        ("participant.updated", True),
        ("participant.updated", False),
        ("participant.left", False),
    ]
    joined = next(m["data"] for m in live if m["type"] == "participant.joined")
    assert joined["joined_at"] == seen["joined_at"]
    async with alice.websocket("/ws?since=0-0") as socket:
        replay = await receive_until(socket, marker)
    assert [(m["type"], m["data"]["coaching"]) for m in replay if sid in json.dumps(m)] == about_sam

    details = [e["detail"] for e in await timeline(alice, name) if "sam" in e["detail"]]
    assert details == [
        "sam joined as supervisor",
        "sam: off hold, unmuted, coaching",
        "sam: off hold, unmuted",
        "sam left",
    ]
    # the supervisor's own record is unchanged: one join, the modes, one leave
    theirs = [e for e in await timeline(sam, name) if e["call_sid"] == sid]
    assert [e["type"] for e in theirs].count("participant.joined") == 1
    assert [e["type"] for e in theirs].count("participant.left") == 1
    # nor does the supervisors' feed carry the copies made for agents
    async with sam.websocket("/ws?since=0-0") as socket:
        feed = await receive_until(socket, marker)
    about_sam = [m for m in feed if sid in json.dumps(m)]
    assert [m["type"] for m in about_sam].count("participant.joined") == 1
    assert not [m for m in feed if m.get("data", {}).get("view") == "agents"]


@pytest.fixture
def audit_lines(caplog):
    """The audit lines logged so far, fixtures' included (ask for it before them)."""
    caplog.set_level(logging.INFO, logger="console.audit")
    return lambda: [
        r.getMessage()
        for phase in ("setup", "call")
        for r in caplog.get_records(phase)
        if r.name == "console.audit"
    ]


async def test_monitoring_leaves_an_audit_line(audit_lines, listening, voice):
    await switch(voice, listening, "whisper")
    name = listening["name"]
    for mode in ("listen", "whisper"):
        expected = f'audit monitor actor="sam" client="<local>" conference="{name}" mode="{mode}"'
        assert expected in audit_lines(), audit_lines()
