"""The simulator records (SPEC §7, §8): a conference with record-from-start reports its
recording (signed, in-progress then completed with a duration) and serves Twilio's
Recording resource, its WAV media with byte ranges, pause/resume and DELETE, through
the real twilio client where the app uses it."""

from __future__ import annotations

import io
import wave

import aiohttp
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from simulator import Simulator
from simulator.recordings import tone_wav
from simulator.testing import ACCOUNT_SID, AUTH_TOKEN
from tests.simulator.test_simulator import SCALE, FakeApp


class RecordingApp(FakeApp):
    """The fake app, recording its conferences from the start."""

    def twiml(self, name: str, start: bool, end: bool, label: str) -> str:
        recording = f"{self.url}/recording?conference={name}"
        attrs = (
            f'record="record-from-start" recordingStatusCallback="{recording}" '
            'recordingStatusCallbackEvent="in-progress completed" '
        )
        return (
            super().twiml(name, start, end, label).replace("<Conference ", f"<Conference {attrs}")
        )


@pytest.fixture
async def recorded():
    async with RecordingApp() as app:
        sim = Simulator(app.url, ACCOUNT_SID, AUTH_TOKEN, time_scale=SCALE, seed=3)
        await sim.start()
        try:
            yield sim, app
        finally:
            await sim.stop()


def test_the_media_is_a_real_short_wav():
    with wave.open(io.BytesIO(tone_wav())) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (1, 8000)
        assert 2 <= wav.getnframes() / wav.getframerate() <= 10


async def test_a_recorded_conference_reports_and_serves_its_recording(recorded):
    sim, app = recorded
    customer = await sim.call_in("+15557654321")
    await sim.idle()  # the customer is in first: their recording attributes count
    alice = sim.phone("alice")
    http = AsyncTwilioHttpClient()
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http, environment={"X": "1"})
    client.api.base_url = sim.base_url
    try:
        await client.conferences(customer).participants.create_async(
            from_="+15550001111", to="client:alice", start_conference_on_enter=True
        )
        alice.answer(await alice.next_call())
        await sim.idle()
        conference_sid = sim.conference(customer)["sid"]
        [started] = app.posted("/recording")
        assert started["RecordingStatus"] == "in-progress"
        assert started["ConferenceSid"] == conference_sid
        sid = started["RecordingSid"]

        paused = (
            await client.conferences(conference_sid)
            .recordings("Twilio.CURRENT")
            .update_async(status="paused")
        )
        assert (paused.sid, paused.status) == (sid, "paused")
        resumed = (
            await client.conferences(conference_sid)
            .recordings(sid)
            .update_async(status="in-progress")
        )
        assert resumed.status == "in-progress"

        sim.hangup(customer)
        await sim.idle()
        done = app.posted("/recording")[-1]
        assert (done["RecordingStatus"], done["RecordingSid"]) == ("completed", sid)
        assert int(done["RecordingDuration"]) >= 1
        assert "SequenceNumber" not in done and "FriendlyName" not in done
        validator = RequestValidator(AUTH_TOKEN)
        for url, headers, form in app.requests:
            if "/recording" in url:
                assert validator.validate(url, form, headers["X-Twilio-Signature"]), url

        fetched = await client.recordings(sid).fetch_async()
        assert (fetched.status, fetched.conference_sid) == ("completed", conference_sid)
        assert fetched.duration == done["RecordingDuration"]

        media = f"{sim.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}.wav"
        auth = aiohttp.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)
        async with aiohttp.ClientSession() as session:
            async with session.get(media) as response:
                assert response.status == 401  # media needs the account's credentials
            async with session.get(media, auth=auth) as response:
                assert response.status == 200
                assert await response.read() == tone_wav()
            async with session.get(media, auth=auth, headers={"Range": "bytes=-10"}) as response:
                assert response.status == 206
                size = len(tone_wav())
                assert response.headers["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"
                assert await response.read() == tone_wav()[-10:]
            async with session.get(media, auth=auth, headers={"Range": "bytes=999999-"}) as r:
                assert r.status == 416

        assert await client.recordings(sid).delete_async() is True
        with pytest.raises(TwilioRestException) as gone:
            await client.recordings(sid).fetch_async()
        assert gone.value.status == 404
    finally:
        await http.close()
