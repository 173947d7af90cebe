"""Recordings end to end (SPEC §8): a recorded call's pause and resume through Twilio's
conference Recordings API, its recording in the history, playback streamed through
the app with HTTP Range to the people allowed, and deletion."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from simulator.recordings import tone_wav
from simulator.testing import AUTH_TOKEN
from tests.conftest import PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    customer_waits,
    hang_up_customer,
    login,
    set_available,
)


@pytest.fixture
def settings(twilio):
    return make_settings(api_base_url=twilio.base_url, record_calls=True)


async def _call(client: Any, name: str) -> dict[str, Any]:
    response = await client.get(f"/api/calls/{name}")
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def _until(check, what: str) -> Any:
    """Wait (with a deadline) for the history writer to store what ``check`` looks for."""
    async with asyncio.timeout(15):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.05)
    raise AssertionError(what)


async def test_a_recorded_call_is_paused_kept_streamed_and_deleted(history_app, redis, twilio, pg):
    app = history_app
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    sue = await login(app, redis, "sue", role="supervisor")
    await set_available(alice)
    async with app.test_client() as client:
        voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
        name = await customer_waits(voice)
        await agent_answers(voice, name, "alice")
        path = f"/api/conferences/{name}/recording"
        # Twilio has not said it records yet: nothing to pause.
        assert (await alice.post(path, json={"paused": True})).status_code == 409
        recording = await voice.recording(name, "in-progress")

        assert (await bob.post(path, json={"paused": True})).status_code == 403
        for paused in (True, False):
            response = await alice.post(path, json={"paused": paused})
            assert response.status_code == 200, await response.get_data(as_text=True)
            assert (await response.get_json())["paused"] is paused
        updates = twilio.recording_updates()
        assert [u.param("Status") for u in updates] == ["paused", "in-progress"]
        conference_sid = voice.conferences[name].sid
        assert all(
            u.path.endswith(f"/{conference_sid}/Recordings/Twilio.CURRENT.json") for u in updates
        )
        timeline = await (await alice.get(f"/api/conferences/{name}/timeline")).get_json()
        details = [e["detail"] for e in timeline["entries"]]
        assert "recording started" in details
        assert "alice paused the recording" in details
        assert "alice resumed the recording" in details

        await hang_up_customer(voice, name, "participant-with-end-conference-on-exit-left")
        await voice.recording(name, "completed", recording, RecordingDuration=7)

    async def recorded() -> dict[str, Any] | None:
        response = await sue.get(f"/api/calls/{name}")
        if response.status_code == 404:  # the writer has not stored the call yet
            return None
        assert response.status_code == 200, await response.get_data(as_text=True)
        found = (await response.get_json())["recording"]
        return found if found and found["duration"] is not None else None

    url = f"/api/recordings/{recording.sid}"
    assert await _until(recorded, "recording stored") == {
        "sid": recording.sid,
        "duration": 7,
        "url": url,
    }
    assert (await _call(alice, name))["recording"]["url"] == url

    wav = tone_wav()
    for who in (alice, sue):
        response = await who.get(url)
        assert response.status_code == 200
        assert await response.get_data() == wav
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["Content-Type"].startswith("audio/")
    response = await alice.get(url, headers={"Range": "bytes=100-1099"})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes 100-1099/{len(wav)}"
    assert await response.get_data() == wav[100:1100]
    fetched = [r for r in twilio.find("GET", f"/Recordings/{recording.sid}.wav")]
    assert fetched and all(r.auth_user == twilio.account_sid for r in fetched)
    assert fetched[-1].headers.get("Range") == "bytes=100-1099"
    for header, value in response.headers.items():
        assert twilio.base_url not in value and AUTH_TOKEN not in value, header
    assert (await bob.get(url)).status_code == 404  # not on the call
    assert (await alice.delete(url)).status_code == 403

    response = await sue.delete(url)
    assert response.status_code == 200, await response.get_data(as_text=True)
    [deleted] = twilio.recording_deletes()
    assert deleted.path.endswith(f"/Recordings/{recording.sid}.json")
    assert (await sue.get(url)).status_code == 404
    assert (await _call(sue, name))["recording"] is None

    # The writer, recomputing the call with the deletion's event stored, keeps it null.
    async def deletion_stored() -> bool:
        cur = await pg.execute(
            "SELECT 1 FROM events WHERE type = 'recording.updated' AND data->>'status' = 'deleted'"
        )
        return await cur.fetchone() is not None

    await _until(deletion_stored, "deletion stored")
    assert (await _call(sue, name))["recording"] is None


async def test_recording_routes_refuse_bad_and_unknown_sids(history_app, redis):
    sue = await login(history_app, redis, "sue", role="supervisor")
    assert (await sue.get("/api/recordings/nope")).status_code == 400
    assert (await sue.get("/api/recordings/RE" + "0" * 32)).status_code == 404
    assert (await sue.delete("/api/recordings/RE" + "0" * 32)).status_code == 404
    response = await sue.post("/api/conferences/CAx/recording", json={"paused": "maybe"})
    assert response.status_code == 400
    response = await sue.post("/api/conferences/CAx/recording", json={"paused": True})
    assert response.status_code == 404
