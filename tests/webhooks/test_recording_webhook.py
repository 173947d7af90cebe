"""RECORD_CALLS and the recording status callback route (SPEC §8): the notice and the
recording attributes in the caller's TwiML only when on; the callback signed like
every webhook, its required parameters named in a 400, and what it reports reaching
the event log for supervisors and the call's agents."""

from __future__ import annotations

import pytest

from console.domain import keys
from tests.conftest import PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    customer_waits,
    events,
    login,
    set_available,
)
from warmline.app import create_app

NOTICE = "This call is recorded for training."


@pytest.fixture
def settings(twilio):
    return make_settings(api_base_url=twilio.base_url, record_calls=True, recording_notice=NOTICE)


async def test_recorded_callers_hear_the_notice_and_the_conference_records(voice):
    name, twiml = await voice.call_in()
    verbs = [child.tag for child in twiml]
    assert verbs == ["Say", "Dial"]
    assert twiml.find("Say").text == NOTICE
    conference = twiml.find("./Dial/Conference")
    assert conference.get("record") == "record-from-start"
    assert conference.get("recordingStatusCallback") == (
        f"{PUBLIC_BASE_URL}/conference/recording?conference={name}#rc=3&rp=5xx,ct,rt"
    )
    assert conference.get("recordingStatusCallbackMethod") == "POST"
    assert conference.get("recordingStatusCallbackEvent") == "in-progress completed absent"


async def test_without_record_calls_there_is_no_notice_and_no_recording(
    twilio, redis, redis_server
):
    app = create_app(make_settings(api_base_url=twilio.base_url), redis_url=redis_server.url)
    async with app.test_app(), app.test_client() as client:
        voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
        _, twiml = await voice.call_in()
    assert [child.tag for child in twiml] == ["Dial"]
    conference = twiml.find("./Dial/Conference")
    assert conference.get("record") is None
    assert conference.get("recordingStatusCallback") is None


async def test_a_recording_callback_reaches_the_log_for_the_calls_agents(app, voice, redis):
    alice = await login(app, redis, "alice")
    await set_available(alice)
    name = await customer_waits(voice)
    await agent_answers(voice, name, "alice")
    recording = await voice.recording(name, "in-progress")
    await voice.recording(name, "in-progress", recording)  # a duplicate: no new event
    await voice.recording(name, "completed", recording, RecordingDuration=12)
    found = [e for e in await events(redis) if e["type"] == "recording.updated"]
    assert [e["data"]["status"] for e in found] == ["in-progress", "completed"]
    assert found[-1]["data"] == {
        "conference": name,
        "sid": recording.sid,
        "status": "completed",
        "duration": 12,
    }
    assert all(e["audience"] == "alice" for e in found)
    state = await (await alice.get("/api/state")).get_json()
    [shown] = [c for c in state["conferences"] if c["name"] == name]
    assert shown["recording"] == {"sid": recording.sid, "status": "completed", "duration": 12}


async def test_unsigned_recording_callbacks_are_refused(voice, redis):
    name = await customer_waits(voice)
    before = await redis.xlen(keys.EVENTS)
    _, delivery = voice.recording_event(name, "completed", RecordingDuration=3)
    response = await voice.send(delivery, signature="forged")
    assert response.status_code == 403
    delivery.params["AccountSid"] = "AC" + "0" * 32  # another account, correctly signed
    assert (await voice.send(delivery)).status_code == 403
    assert await redis.xlen(keys.EVENTS) == before


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"RecordingSid": None}, "missing parameter RecordingSid"),
        ({"RecordingSid": "RE123"}, "malformed parameter RecordingSid"),
        ({"RecordingStatus": None}, "missing parameter RecordingStatus"),
        ({"RecordingStatus": "exploded"}, "unknown RecordingStatus"),
        ({"ConferenceSid": None}, "missing parameter CallSid or ConferenceSid"),
        ({"RecordingDuration": "7s"}, "malformed parameter RecordingDuration"),
    ],
)
async def test_recording_callbacks_missing_a_parameter_are_a_400_naming_it(
    voice, redis, change, named
):
    name = await customer_waits(voice)
    before = await redis.xlen(keys.EVENTS)
    _, delivery = voice.recording_event(name, "completed", RecordingDuration=3)
    for key, value in change.items():
        if value is None:
            delivery.params.pop(key)
        else:
            delivery.params[key] = value
    response = await voice.send(delivery)
    assert response.status_code == 400
    assert named in await response.get_data(as_text=True)
    assert await redis.xlen(keys.EVENTS) == before


async def test_a_recording_callback_without_its_conference_in_the_url_is_a_400(voice):
    name = await customer_waits(voice)
    _, delivery = voice.recording_event(name, "completed")
    delivery.url = delivery.url.replace(f"?conference={name}", "")
    response = await voice.send(delivery)
    assert response.status_code == 400
    assert "missing parameter conference" in await response.get_data(as_text=True)
