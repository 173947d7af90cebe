"""The simulator plays a caller's wait (SPEC §7, §9): ``<Gather>`` with and without a
key, ``<Record>`` (completed, absent, hung up, looping without ``action``), a Calls
API update moving a caller out of a conference, and legs to phone numbers that are
answered, busy, never answered or answered by a machine; all on the wire, signed."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from simulator import Simulator
from simulator.testing import ACCOUNT_SID, AUTH_TOKEN
from simulator.twiml import MAX_RECORD_LOOPS
from tests.simulator.test_simulator import SCALE
from tests.support.waiting import until

VOICE = "/conference/connect/client"
EVENTS = "start end join leave"


class MenuApp:
    """A tiny app answering TwiML from ``pages`` (path -> TwiML, ``{url}`` filled in);
    any other path answers 204. Records every request as received."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((f"{self.url}{request.path_qs}", dict(request.headers), form))
        page = self.pages.get(request.path)
        if page is None:
            return web.Response(status=204)
        body = "<Response>" + page.replace("{url}", self.url) + "</Response>"
        return web.Response(text=body, content_type="text/xml")

    async def __aenter__(self) -> MenuApp:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def posted(self, path: str) -> list[dict[str, str]]:
        return [form for url, _, form in self.requests if url.startswith(self.url + path)]

    def all_signed(self) -> bool:
        validator = RequestValidator(AUTH_TOKEN)
        return all(
            validator.validate(url, form, headers["X-Twilio-Signature"])
            for url, headers, form in self.requests
        )


@pytest.fixture
async def menu() -> AsyncIterator[tuple[Simulator, MenuApp]]:
    async with MenuApp() as app:
        sim = Simulator(app.url, ACCOUNT_SID, AUTH_TOKEN, time_scale=SCALE, seed=11)
        await sim.start()
        try:
            yield sim, app
        finally:
            await sim.stop()


@pytest.fixture
async def client(menu: tuple[Simulator, MenuApp]) -> AsyncIterator[Client]:
    http = AsyncTwilioHttpClient()
    twilio = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http, environment={"X": "1"})
    twilio.api.base_url = menu[0].base_url
    try:
        yield twilio
    finally:
        await http.close()


def status_of(sim: Simulator, sid: str) -> str:
    return next(c["status"] for c in sim.calls() if c["sid"] == sid)


GATHER = (
    '<Gather input="dtmf" numDigits="1" timeout="3" action="/voice/choice">'
    "<Say>Press 1 for a callback, 2 to leave a message</Say></Gather>"
    '<Redirect method="POST">/no-key</Redirect>'
)


# -- <Gather> -------------------------------------------------------------------------------


async def test_a_key_pressed_goes_to_the_action_with_its_digits(menu):
    sim, app = menu
    app.pages = {VOICE: GATHER, "/voice/choice": "<Say>Thanks</Say><Hangup/>"}
    sid = await sim.call_in("+15557654321", keys="27")  # numDigits=1 keeps "2"
    await sim.idle()
    [choice] = app.posted("/voice/choice")
    assert (choice["Digits"], choice["CallSid"], choice["From"]) == ("2", sid, "+15557654321")
    assert choice["CallStatus"] == "in-progress"
    assert app.posted("/no-key") == []  # the rest of the document is abandoned
    assert status_of(sim, sid) == "completed"
    assert app.all_signed()


async def test_no_key_goes_on_with_the_next_verb(menu):
    sim, app = menu
    app.pages = {VOICE: GATHER, "/no-key": "<Hangup/>"}
    sid = await sim.call_in()
    await sim.idle()
    assert app.posted("/voice/choice") == []
    assert [f["CallSid"] for f in app.posted("/no-key")] == [sid]


async def test_action_on_empty_result_posts_empty_digits(menu):
    sim, app = menu
    app.pages = {VOICE: GATHER.replace('timeout="3"', 'actionOnEmptyResult="true"')}
    await sim.call_in(keys=[""])
    await sim.idle()
    assert [f["Digits"] for f in app.posted("/voice/choice")] == [""]
    assert app.posted("/no-key") == []


async def test_keys_pressed_live_answer_the_listening_gather(menu):
    sim, app = menu
    app.pages = {VOICE: GATHER.replace('timeout="3"', 'timeout="600"')}
    sid = await sim.call_in()
    await until(lambda: _is(_listening(sim, sid) == "keys"))
    async with (
        aiohttp.ClientSession(base_url=sim.base_url) as http,
        http.post(f"/sim/calls/{sid}/keys", json={"digits": "1"}) as response,
    ):
        assert response.status == 200
        assert (await response.json())["heard"] is True
    await sim.idle()
    assert [f["Digits"] for f in app.posted("/voice/choice")] == ["1"]


# -- <Record> -------------------------------------------------------------------------------

RECORD = (
    "<Say>Leave a message after the beep</Say>"
    '<Record action="/voicemail/done" maxLength="120" finishOnKey="#" playBeep="true" '
    'recordingStatusCallback="{url}/voicemail/recording#rc=3&amp;rp=5xx,ct,rt" '
    'recordingStatusCallbackEvent="completed absent"/>'
    '<Redirect method="POST">/after</Redirect>'
)
DONE = "<Say>Thank you, goodbye</Say><Hangup/>"


async def test_a_message_is_recorded_reported_and_served(menu, client):
    sim, app = menu
    app.pages = {VOICE: RECORD, "/voicemail/done": DONE}
    sid = await sim.call_in("+15557654321", message_seconds=4)
    await sim.idle()
    [done] = app.posted("/voicemail/done")
    recording_sid = done["RecordingSid"]
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid}"
    assert done["RecordingUrl"] == "https://api.twilio.com" + path  # no extension
    assert (done["RecordingDuration"], done["Digits"], done["CallSid"]) == ("4", "#", sid)
    [status] = app.posted("/voicemail/recording")
    assert (status["RecordingStatus"], status["RecordingSource"]) == ("completed", "RecordVerb")
    assert (status["RecordingSid"], status["CallSid"]) == (recording_sid, sid)
    assert status["RecordingDuration"] == "4" and "ConferenceSid" not in status
    assert "SequenceNumber" not in status and "From" not in status
    assert app.all_signed() and app.posted("/after") == []
    assert status_of(sim, sid) == "completed"

    fetched = await client.recordings(recording_sid).fetch_async()
    assert (fetched.call_sid, fetched.source, fetched.duration) == (sid, "RecordVerb", "4")
    auth = aiohttp.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)
    async with aiohttp.ClientSession() as http:
        async with http.get(sim.base_url + path + ".wav") as response:
            assert response.status == 401
        async with http.get(sim.base_url + path + ".wav", auth=auth) as response:
            assert response.status == 200
            with wave.open(io.BytesIO(await response.read())) as wav:
                assert wav.getnframes() / wav.getframerate() == 4
    assert await client.recordings(recording_sid).delete_async() is True


async def test_an_empty_message_is_absent_and_the_document_goes_on(menu):
    sim, app = menu
    app.pages = {VOICE: RECORD, "/voicemail/done": DONE, "/after": "<Hangup/>"}
    sid = await sim.call_in(message_seconds=0)
    await sim.idle()
    assert app.posted("/voicemail/done") == []  # Twilio requests no action for it
    [status] = app.posted("/voicemail/recording")
    assert (status["RecordingStatus"], status["ErrorCode"]) == ("absent", "16102")
    assert [f["CallSid"] for f in app.posted("/after")] == [sid]


async def test_a_too_short_message_is_absent_but_requests_the_action(menu):
    sim, app = menu
    app.pages = {VOICE: RECORD, "/voicemail/done": DONE}
    await sim.call_in(message_seconds=0.4)
    await sim.idle()
    [done] = app.posted("/voicemail/done")
    assert (done["RecordingDuration"], done["Digits"]) == ("0", "#")
    [status] = app.posted("/voicemail/recording")
    assert (status["RecordingStatus"], status["ErrorCode"]) == ("absent", "16101")


async def test_hanging_up_ends_the_message_and_still_requests_the_action(menu):
    sim, app = menu
    app.pages = {VOICE: RECORD, "/voicemail/done": DONE}
    sid = await sim.call_in(message_seconds=3, message_end="hangup")
    await sim.idle()
    [done] = app.posted("/voicemail/done")
    assert (done["Digits"], done["CallStatus"], done["RecordingDuration"]) == (
        "hangup",
        "completed",
        "3",
    )
    assert app.posted("/voicemail/recording")[0]["RecordingStatus"] == "completed"
    assert status_of(sim, sid) == "completed" and app.all_signed()


async def test_record_without_action_loops_on_its_document_boundedly(menu, caplog):
    sim, app = menu
    app.pages = {VOICE: '<Record maxLength="10"/>'}
    sid = await sim.call_in(message_seconds=1)
    await sim.idle()
    voice = app.posted(VOICE)
    assert len(voice) == 1 + MAX_RECORD_LOOPS
    assert all(f["RecordingSid"].startswith("RE") for f in voice[1:])
    assert status_of(sim, sid) == "completed"
    assert "without action" in caplog.text


async def test_a_message_left_live_from_the_control_api(menu):
    sim, app = menu
    app.pages = {VOICE: RECORD.replace("<Record ", '<Record timeout="600" '), "/done": DONE}
    sid = await sim.call_in()
    await until(lambda: _is(_listening(sim, sid) == "message"))
    async with aiohttp.ClientSession(base_url=sim.base_url) as http:
        async with http.post(f"/sim/calls/{sid}/message", json={"seconds": 6}) as response:
            assert response.status == 200
        async with http.post(f"/sim/calls/{sid}/message", json={"seconds": "x"}) as response:
            assert response.status == 400
    await sim.idle()
    assert [f["RecordingDuration"] for f in app.posted("/voicemail/done")] == ["6"]


# -- moving a caller out of a conference ------------------------------------------------------

WAITING = (
    '<Dial><Conference startConferenceOnEnter="false" endConferenceOnExit="true" '
    'participantLabel="customer" waitUrl="/wait" '
    f'statusCallback="{{url}}/status" statusCallbackEvent="{EVENTS}">room</Conference></Dial>'
)


async def test_a_calls_api_update_moves_the_caller_out_of_the_conference(menu, client):
    sim, app = menu
    app.pages = {
        VOICE: WAITING,
        # wait music looping by Redirect, as issue 18's announcements do: idle() must
        # not wait for it
        "/wait": "<Say>You are first in line</Say><Play>http://x/m.mp3</Play><Redirect>/wait</Redirect>",
        "/voice/long-wait": GATHER,
        "/voice/choice": DONE,
    }
    sid = await sim.call_in(keys="2")
    await sim.idle()
    assert sim.conference("room")["status"] == "init"
    await client.calls(sid).update_async(url=f"{app.url}/voice/long-wait", method="POST")
    await sim.idle()
    events = [
        (f["StatusCallbackEvent"], f.get("ReasonParticipantLeft")) for f in app.posted("/status")
    ]
    assert events == [
        ("participant-join", None),
        ("participant-leave", "participant_updated_via_api"),
        ("conference-end", None),
    ]
    assert app.posted("/status")[-1]["ReasonConferenceEnded"].startswith(
        "participant-with-end-conference-on-exit"
    )
    assert [f["Digits"] for f in app.posted("/voice/choice")] == ["2"]
    assert status_of(sim, sid) == "completed"


# -- legs to phone numbers ---------------------------------------------------------------------

PROGRESS = ["initiated", "ringing", "answered", "completed"]


async def _dial_number(sim, app, client, number: str, **extra) -> str:
    """A customer waits in conference "room"; the app adds ``number`` to it."""
    app.pages = {
        VOICE: WAITING.replace('endConferenceOnExit="true"', 'endConferenceOnExit="false"')
    }
    await sim.call_in()
    await sim.idle()
    added = await client.conferences("room").participants.create_async(
        from_="+15550001111",
        to=number,
        label="callee",
        status_callback=f"{app.url}/leg",
        status_callback_event=PROGRESS,
        timeout=10,
        **extra,
    )
    await sim.idle()
    return added.call_sid


async def test_a_number_answers_and_joins_with_its_label(menu, client):
    sim, app = menu
    sim.person("+15551230000", after=1)
    leg = await _dial_number(sim, app, client, "+15551230000", machine_detection="Enable")
    progress = app.posted("/leg")
    assert [f["CallStatus"] for f in progress] == ["initiated", "ringing", "in-progress"]
    assert progress[-1]["AnsweredBy"] == "human" and progress[-1]["To"] == "+15551230000"
    joined = [f for f in app.posted("/status") if f.get("CallSid") == leg]
    assert [(f["StatusCallbackEvent"], f["ParticipantLabel"]) for f in joined] == [
        ("participant-join", "callee")
    ]
    assert sim.conference("room")["status"] == "in-progress"
    sim.hangup(leg)
    await sim.idle()
    assert app.posted("/leg")[-1]["CallStatus"] == "completed"
    assert (await client.calls(leg).fetch_async()).answered_by == "human"
    assert app.all_signed()


@pytest.mark.parametrize(
    ("person", "outcome"),
    [({"busy": True}, "busy"), ({"answer": False}, "no-answer"), ({"fails": True}, "failed")],
)
async def test_a_number_that_is_busy_never_answers_or_fails(menu, client, person, outcome):
    sim, app = menu
    sim.person("+15551230001", **person)
    leg = await _dial_number(sim, app, client, "+15551230001")
    statuses = [f["CallStatus"] for f in app.posted("/leg")]
    assert statuses[-1] == outcome and "in-progress" not in statuses
    assert statuses[0] == "initiated"
    left = [f for f in app.posted("/status") if f.get("CallSid") == leg]
    assert [(f["StatusCallbackEvent"], f["ParticipantCallStatus"]) for f in left] == [
        ("participant-leave", outcome)
    ]
    assert status_of(sim, leg) == outcome


async def test_a_machine_answers_with_detection_on(menu, client):
    sim, app = menu
    sim.person("+15551230002", machine=True, talk=2)
    leg = await _dial_number(sim, app, client, "+15551230002", machine_detection="Enable")
    answered = [f for f in app.posted("/leg") if f["CallStatus"] == "in-progress"]
    assert [f["AnsweredBy"] for f in answered] == ["machine_start"]
    await until(lambda: _is(status_of(sim, leg) == "completed"))  # it hangs up after talk
    await sim.idle()
    assert app.posted("/leg")[-1]["AnsweredBy"] == "machine_start"


async def test_without_detection_there_is_no_answered_by(menu, client):
    sim, app = menu
    sim.person("+15551230003", machine=True)
    await _dial_number(sim, app, client, "+15551230003")
    assert all("AnsweredBy" not in f for f in app.posted("/leg"))


async def _is(value: bool) -> bool:
    return value


def _listening(sim: Simulator, sid: str) -> str | None:
    return next(c["listening"] for c in sim.calls() if c["sid"] == sid)


async def test_pressing_before_the_gather_is_kept_for_it(menu):
    sim, app = menu
    app.pages = {VOICE: '<Pause length="1"/>' + GATHER}
    sid = await sim.call_in()
    assert sim.press(sid, "1") is False  # nothing listens yet: kept for the Gather
    await sim.idle()
    assert [f["Digits"] for f in app.posted("/voice/choice")] == ["1"]
