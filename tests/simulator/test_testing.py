"""simulator.testing's TwilioDouble (the simulator's REST API, held still) must be
indistinguishable from api.twilio.com to the real `twilio` async client, or app tests built
on it prove nothing. These tests drive it only through that client (plus raw HTTP where the
wire body itself is the point); the facts they hold it to are in docs/twilio.md."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from werkzeug.datastructures import MultiDict

from simulator.testing import TwilioDouble, TwilioVoice, sign

# Own constants so these tests stay independent of tests/conftest.py.
SID = "AC" + "c3" * 16
TOKEN = "double-test-token-0123456789abcdef"
API_KEY = "SK" + "d4" * 16
API_SECRET = "double-test-api-secret"
CALLER_ID = "+15550001111"
EVENTS = ["initiated", "ringing", "answered", "completed"]
CALL_SID = re.compile(r"^CA[0-9a-f]{32}$")


@pytest.fixture
async def double() -> AsyncIterator[TwilioDouble]:
    async with TwilioDouble(SID, TOKEN, api_keys={API_KEY: API_SECRET}) as running:
        yield running


async def make_client(
    double: TwilioDouble, username: str = SID, password: str = TOKEN, account_sid: str | None = None
) -> tuple[Client, AsyncTwilioHttpClient]:
    """A real client aimed at the double; the http client must be built inside the loop."""
    hc = AsyncTwilioHttpClient()
    # A non-empty environment keeps TWILIO_EDGE/TWILIO_REGION from rewriting the host.
    client = Client(username, password, account_sid, http_client=hc, environment={"X": "1"})
    client.api.base_url = double.base_url
    return client, hc


@pytest.fixture
async def client(double: TwilioDouble) -> AsyncIterator[Client]:
    client, hc = await make_client(double)
    yield client
    await hc.close()


# -- Calls -----------------------------------------------------------------------------------


async def test_create_call_speaks_twilio_wire_format(double: TwilioDouble, client: Client) -> None:
    call = await client.calls.create_async(
        to="client:alice",
        from_=CALLER_ID,
        url="https://warmline.example.com/voice/agent",
        status_callback="https://warmline.example.com/status",
        status_callback_event=EVENTS,
        status_callback_method="POST",
        timeout=20,
    )

    assert CALL_SID.match(call.sid)
    assert (call.status, call.to, call._from, call.account_sid) == (
        "queued",
        "client:alice",
        CALLER_ID,
        SID,
    )
    assert call.direction == "outbound-api"
    assert call.date_created is not None  # RFC 2822 parsed by the library
    [recorded] = double.calls_created()
    assert recorded.status == 201
    assert recorded.auth_user == SID
    assert recorded.path == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert recorded.form["StatusCallbackEvent"] == EVENTS
    assert recorded.param("To") == "client:alice"
    assert recorded.param("Url") == "https://warmline.example.com/voice/agent"
    assert recorded.param("Timeout") == "20"
    assert double.call(call.sid) is not None


async def test_create_call_without_url_is_rejected(client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await client.calls.create_async(to="client:alice", from_=CALLER_ID)
    assert caught.value.status == 400


async def test_cancel_fetch_and_unknown_call(double: TwilioDouble, client: Client) -> None:
    created = await client.calls.create_async(
        to="client:alice", from_=CALLER_ID, url="https://x.example/v"
    )

    canceled = await client.calls(created.sid).update_async(status="canceled")
    fetched = await client.calls(created.sid).fetch_async()

    assert canceled.status == "canceled"
    assert fetched.status == "canceled"
    [update] = double.call_updates()
    assert update.param("Status") == "canceled"
    unknown = "CA" + "0" * 32
    with pytest.raises(TwilioRestException) as caught:
        await client.calls(unknown).update_async(status="completed")
    assert caught.value.status == 404
    assert caught.value.code == 20404
    assert "was not found" in caught.value.msg


async def test_canceling_an_answered_call_is_a_no_op_but_completing_ends_it(
    double: TwilioDouble, client: Client
) -> None:
    sid = double.add_call(status="in-progress")

    assert (await client.calls(sid).update_async(status="canceled")).status == "in-progress"
    assert (await client.calls(sid).update_async(status="completed")).status == "completed"
    with pytest.raises(TwilioRestException) as caught:
        await client.calls(sid).update_async(twiml="<Response><Hangup/></Response>")
    assert caught.value.status == 400


async def test_redirecting_a_call_removes_it_from_its_conference(
    double: TwilioDouble, client: Client
) -> None:
    conference = double.add_conference("room-1")
    customer = double.add_call()
    double.add_participant(conference, customer, label="customer")

    await client.calls(customer).update_async(url="https://warmline.example.com/voice/queue")

    assert double.participant(conference, customer) is None
    assert double.call_updates()[0].param("Url") == "https://warmline.example.com/voice/queue"


# -- Conferences -----------------------------------------------------------------------------


async def test_list_conferences_filters_and_pages(double: TwilioDouble, client: Client) -> None:
    first = double.add_conference("room-1")
    second = double.add_conference("room-2")
    double.add_conference("room-3", status="completed")

    live = await client.conferences.list_async(status="in-progress")
    named = await client.conferences.list_async(friendly_name="room-2", status="in-progress")
    paged = await client.conferences.list_async(status="in-progress", page_size=1)

    assert [c.sid for c in live] == [first, second]
    assert [c.friendly_name for c in named] == ["room-2"]
    assert [c.sid for c in paged] == [first, second]  # followed next_page_uri on the double
    listed = double.find("GET", "/Conferences.json")
    assert listed[0].query["Status"] == ["in-progress"]
    assert listed[1].param("FriendlyName") == "room-2"
    assert len(listed) == 4  # 1 + 1 + 2 pages
    assert all(r.status == 200 for r in listed)


async def test_end_conference_needs_its_sid(double: TwilioDouble, client: Client) -> None:
    sid = double.add_conference("room-1")
    double.add_participant(sid, double.add_call(), label="customer")

    ended = await client.conferences(sid).update_async(status="completed")

    assert ended.status == "completed"
    assert ended.reason_conference_ended == "conference-ended-via-api"
    assert await client.conferences(sid).participants.list_async() == []
    with pytest.raises(TwilioRestException) as caught:
        await client.conferences("room-1").fetch_async()
    assert caught.value.status == 404


# -- Participants ----------------------------------------------------------------------------


async def test_add_participant_by_friendly_name(double: TwilioDouble, client: Client) -> None:
    conference = double.add_conference("room-1")
    agent = double.add_call(to="client:agent")
    double.add_participant(conference, agent, label="agent")

    participant = await client.conferences("room-1").participants.create_async(
        from_=CALLER_ID,
        to="client:sup",
        label="supervisor",
        muted=True,
        beep="false",
        coaching=True,
        call_sid_to_coach=agent,
        end_conference_on_exit=False,
        status_callback="https://warmline.example.com/status",
        status_callback_event=EVENTS,
        conference_status_callback_event=["start", "end", "join", "leave"],
    )

    assert CALL_SID.match(participant.call_sid)
    assert participant.call_sid != agent
    assert participant.conference_sid == conference
    assert participant.label == "supervisor"
    assert (participant.muted, participant.hold, participant.coaching) == (True, False, True)
    assert participant.call_sid_to_coach == agent
    assert participant.status == "queued"
    [recorded] = double.participants_created()
    assert recorded.path.endswith("/Conferences/room-1/Participants.json")
    assert recorded.status == 201
    assert recorded.form["StatusCallbackEvent"] == EVENTS
    assert recorded.form["ConferenceStatusCallbackEvent"] == ["start", "end", "join", "leave"]
    assert (recorded.param("Muted"), recorded.param("Coaching")) == ("true", "true")
    assert (recorded.param("Beep"), recorded.param("EndConferenceOnExit")) == ("false", "false")
    assert double.call(participant.call_sid) is not None


async def test_add_participant_to_new_name_starts_conference_but_unknown_sid_is_404(
    double: TwilioDouble, client: Client
) -> None:
    participant = await client.conferences("fresh-room").participants.create_async(
        from_=CALLER_ID, to="client:alice"
    )

    conference = double.conference("fresh-room")
    assert conference is not None
    assert conference["status"] == "init"
    assert participant.conference_sid == conference["sid"]
    with pytest.raises(TwilioRestException) as caught:
        await client.conferences("CF" + "0" * 32).participants.create_async(
            from_=CALLER_ID, to="client:alice"
        )
    assert (caught.value.status, caught.value.code) == (404, 20404)


async def test_hold_mute_and_kick_participants(double: TwilioDouble, client: Client) -> None:
    conference = double.add_conference("room-1")
    customer = double.add_call()
    double.add_participant(conference, customer, label="customer")
    double.add_participant(conference, double.add_call(to="client:agent"), label="agent")
    participants = client.conferences(conference).participants

    held = await participants(customer).update_async(
        hold=True, hold_url="https://warmline.example.com/hold", end_conference_on_exit=False
    )
    muted = await participants("agent").update_async(muted=True)
    muted_list = await participants.list_async(muted=True)
    deleted = await participants("agent").delete_async()
    remaining = await participants.list_async()

    assert (held.hold, held.end_conference_on_exit) == (True, False)
    assert muted.muted is True
    assert [p.label for p in muted_list] == ["agent"]
    assert deleted is True
    assert [p.call_sid for p in remaining] == [customer]
    first, second = double.participant_updates()
    assert first.form == {
        "Hold": ["true"],
        "HoldUrl": ["https://warmline.example.com/hold"],
        "EndConferenceOnExit": ["false"],
    }
    assert second.path.endswith("/Participants/agent.json")
    [kick] = double.participant_deletes()
    assert kick.status == 204
    with pytest.raises(TwilioRestException) as caught:
        await participants("agent").delete_async()
    assert (caught.value.status, caught.value.code) == (404, 20404)


async def test_restore_puts_calls_and_conferences_back(
    double: TwilioDouble, client: Client
) -> None:
    conference = double.add_conference("room-2")
    customer = double.add_call()
    double.add_participant(conference, customer, label="customer", end_conference_on_exit=True)
    saved = double.save()

    await client.calls(customer).update_async(status="completed")
    assert double.conference(conference)["status"] == "completed"
    assert double.participant(conference, "customer") is None

    double.restore(saved)
    assert double.conference(conference)["status"] == "in-progress"
    assert double.participant(conference, "customer")["call_sid"] == customer
    assert double.call(customer)["status"] == "in-progress"
    await client.calls(customer).update_async(status="completed")  # the restored copy is live
    double.restore(saved)  # and the saved state was not changed by it
    assert double.call(customer)["status"] == "in-progress"


# -- Auth --------------------------------------------------------------------------------------


async def test_wrong_credentials_are_401(double: TwilioDouble) -> None:
    client, hc = await make_client(double, password="wrong-token")
    try:
        with pytest.raises(TwilioRestException) as caught:
            await client.calls.create_async(to="client:a", from_=CALLER_ID, url="https://x.e/v")
        # List endpoints raise the base TwilioException ("Unable to fetch page"), not the
        # REST one: a library quirk the app's error handling has to cover.
        with pytest.raises(TwilioException) as listing:
            await client.conferences.list_async(status="in-progress")
    finally:
        await hc.close()

    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert not isinstance(listing.value, TwilioRestException)
    assert [(r.auth_user, r.status) for r in double.requests] == [(SID, 401), (SID, 401)]
    assert double.calls == {}


async def test_api_key_auth_and_foreign_account_path(double: TwilioDouble) -> None:
    keyed, hc = await make_client(double, API_KEY, API_SECRET, SID)
    foreign, hc2 = await make_client(double, API_KEY, API_SECRET, "AC" + "e5" * 16)
    try:
        call = await keyed.calls.create_async(to="+15550003333", from_=CALLER_ID, twiml="<R/>")
        with pytest.raises(TwilioRestException) as caught:
            await foreign.calls(call.sid).fetch_async()
    finally:
        await hc.close()
        await hc2.close()

    assert double.calls_created()[0].auth_user == API_KEY
    assert caught.value.status == 404


async def test_raw_error_bodies_match_twilio(double: TwilioDouble) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()}
    calls_url = f"{double.base_url}/2010-04-01/Accounts/{SID}/Calls"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{calls_url}/CA{'1' * 32}.json", headers=auth) as missing:
            missing_body = await missing.json()
        async with session.delete(f"{calls_url}.json", headers=auth) as wrong_method:
            wrong_method_status = wrong_method.status
        async with session.get(f"{calls_url}.json") as anonymous:
            challenge = anonymous.headers.get("WWW-Authenticate")

    assert missing.status == 404
    assert missing_body == {
        "code": 20404,
        "message": f"The requested resource /2010-04-01/Accounts/{SID}/Calls/CA{'1' * 32}.json"
        " was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }
    assert wrong_method_status == 405
    assert anonymous.status == 401
    assert challenge is not None
    assert challenge.startswith("Basic")


# -- Fault injection ---------------------------------------------------------------------------


async def test_fail_next_returns_twilio_error_once(double: TwilioDouble, client: Client) -> None:
    double.fail_next("/Calls.json", status=503, code=20503, message="Service unavailable")
    double.fail_next(None)

    with pytest.raises(TwilioRestException) as unavailable:
        await client.calls.create_async(to="client:a", from_=CALLER_ID, url="https://x.example/v")
    with pytest.raises(TwilioRestException) as internal:
        await client.calls("CA" + "0" * 32).fetch_async()
    call = await client.calls.create_async(to="client:a", from_=CALLER_ID, url="https://x.e/v")

    assert (unavailable.value.status, unavailable.value.code) == (503, 20503)
    assert (internal.value.status, internal.value.code) == (500, 20500)
    assert list(double.calls) == [call.sid]  # the failed create changed nothing
    assert [r.status for r in double.requests] == [503, 500, 201]


async def test_fail_next_only_hits_matching_paths(double: TwilioDouble, client: Client) -> None:
    double.fail_next("/Participants", times=2)

    conferences = await client.conferences.list_async(status="in-progress")

    assert conferences == []
    assert double.requests[0].status == 200


async def test_delay_next_stalls_past_client_timeout(double: TwilioDouble, client: Client) -> None:
    double.delay_next("/Calls.json", 30)
    started = time.monotonic()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            client.calls.create_async(to="client:a", from_=CALLER_ID, url="https://x.example/v"),
            timeout=0.3,
        )
    later = await client.conferences.list_async(status="in-progress")

    assert later == []
    assert time.monotonic() - started < 5
    assert double.calls_created()[0].status is None  # still stalled when we gave up


async def test_refuse_then_accept_on_the_same_port(double: TwilioDouble, client: Client) -> None:
    await client.conferences.list_async(status="in-progress")  # leaves a pooled connection
    base_url = double.base_url

    await double.refuse()
    with pytest.raises(aiohttp.ClientError):
        await client.conferences.list_async(status="in-progress")
    await double.accept()
    after = await client.conferences.list_async(status="in-progress")

    assert after == []
    assert double.base_url == base_url
    assert [r.status for r in double.requests] == [200, 200]


# -- Webhook signing helper ------------------------------------------------------------------


def test_sign_matches_twilio_documented_vector() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675310",
        "Digits": "1234",
        "From": "+14158675310",
        "To": "+18005551212",
    }

    signature = sign("https://example.com/myapp.php?foo=1&bar=2", params, "12345")

    assert signature == "L/OH5YylLD5NRKLltdqwSvS0BnU="


def test_sign_handles_repeated_keys() -> None:
    url = "https://warmline.example.com/webhooks/conference"
    pairs = [("FriendlyName", "room-1"), ("Event", "b"), ("Event", "a")]

    signature = sign(url, pairs, TOKEN)

    validator = RequestValidator(TOKEN)
    assert validator.validate(url, MultiDict(pairs), signature)
    assert sign(url, {"FriendlyName": "room-1", "Event": ["a", "b"]}, TOKEN) == signature
    assert signature != sign(url, [("FriendlyName", "room-1"), ("Event", "a")], TOKEN)


# -- Held mode and the webhook driver --------------------------------------------------------


async def test_held_calls_stay_queued_and_adds_are_listed_once_answered(
    double: TwilioDouble, client: Client
) -> None:
    call = await client.calls.create_async(
        to="client:alice",
        from_=CALLER_ID,
        url="https://warmline.example.com/voice/agent",
        status_callback="https://warmline.example.com/status",
        status_callback_event=EVENTS,
    )
    conference = double.add_conference("room-1")
    added = await client.conferences("room-1").participants.create_async(
        from_=CALLER_ID, to="client:bob"
    )
    await asyncio.sleep(0.05)

    assert (await client.calls(call.sid).fetch_async()).status == "queued"
    assert (await client.calls(added.call_sid).fetch_async()).status == "queued"
    assert await client.conferences(conference).participants.list_async() == []


async def test_the_last_participant_redirected_away_ends_the_conference(
    double: TwilioDouble, client: Client
) -> None:
    conference = double.add_conference("room-1")
    customer = double.add_call()
    agent = double.add_call(to="client:agent")
    double.add_participant(conference, customer, label="customer")
    double.add_participant(conference, agent, label="agent")

    await client.calls(agent).update_async(twiml="<Response><Hangup/></Response>")
    still = await client.conferences(conference).fetch_async()
    await client.calls(customer).update_async(status="completed")
    ended = await client.conferences(conference).fetch_async()

    assert still.status == "in-progress"
    assert (ended.status, ended.reason_conference_ended) == ("completed", "last-participant-left")


def test_voice_builds_signed_callbacks_as_twilio_sends_them(double: TwilioDouble) -> None:
    voice = TwilioVoice(None, double, "https://warmline.example.com")
    customer = "CA" + "1" * 32

    first = voice.conference_event(customer, "conference-start")
    join = voice.conference_event(customer, "participant-join", customer, Hold=True)

    assert first.path == "/conference/status"
    assert first.params["SequenceNumber"] == "1" and join.params["SequenceNumber"] == "2"
    assert re.fullmatch(r"CF[0-9a-f]{32}", join.params["ConferenceSid"])
    assert join.params["Timestamp"].endswith("+0000")
    assert {k: join.params[k] for k in ("CallSid", "Hold", "Muted", "StartConferenceOnEnter")} == {
        "CallSid": customer,
        "Hold": "true",
        "Muted": "false",
        "StartConferenceOnEnter": "true",
    }
    assert double.conference(customer)["status"] == "in-progress"  # mirrored into the double
    assert double.participant(customer, customer) is not None
    url = "https://warmline.example.com/conference/status"
    assert RequestValidator(TOKEN).validate(url, join.params, sign(url, join.params, TOKEN))


# -- menus, messages and numbers (issue 18) ---------------------------------------------------


class _Recorder:
    """Stands in for an app's test client: records what TwilioVoice posts."""

    def __init__(self, body: str = "<Response><Hangup/></Response>") -> None:
        self.posts: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.body = body

    async def post(self, path: str, form: dict[str, str], headers: dict[str, str]) -> _Recorder:
        self.posts.append((path, form, headers))
        self.status_code = 200 if "/voice" in path else 204
        return self

    async def get_data(self, as_text: bool = True) -> str:
        return self.body


async def test_a_seeded_message_is_served_like_a_record_verb_recording(
    double: TwilioDouble, client: Client
) -> None:
    call = double.add_call()
    kept = double.add_message(call, duration=7)
    fetched = await client.recordings(kept.sid).fetch_async()
    assert (fetched.call_sid, fetched.source, fetched.duration) == (call, "RecordVerb", "7")
    assert fetched.conference_sid is None
    short = double.add_message(call, status="absent")
    media = f"{double.base_url}/2010-04-01/Accounts/{SID}/Recordings"
    async with aiohttp.ClientSession(auth=aiohttp.BasicAuth(SID, TOKEN)) as http:
        async with http.get(f"{media}/{kept.sid}.wav") as response:
            assert response.status == 200 and len(await response.read()) == 44 + 7 * 16000
        async with http.get(f"{media}/{short.sid}.wav") as response:
            assert response.status == 404  # an absent recording has no media
    assert double.recording_deletes() == []


async def test_numbers_dialed_and_people_answering_them(
    double: TwilioDouble, client: Client
) -> None:
    double.add_conference("CB1", status="in-progress")
    await client.conferences("CB1").participants.create_async(
        from_=CALLER_ID, to="client:alice", label="agent"
    )
    await client.conferences("CB1").participants.create_async(
        from_=CALLER_ID,
        to="+15551230000",
        label="customer",
        machine_detection="Enable",
        status_callback="https://warmline.example.com/callback/status",
        status_callback_event=EVENTS,
    )
    [dial] = double.numbers_dialed()
    assert (dial.param("To"), dial.param("MachineDetection")) == ("+15551230000", "Enable")
    app = _Recorder()
    voice = TwilioVoice(app, double, "https://warmline.example.com")
    sid = await voice.person_answers(dial, answered_by="machine_start")
    assert [form["CallStatus"] for _, form, _ in app.posts] == [
        "initiated",
        "ringing",
        "in-progress",
    ]
    assert app.posts[-1][1]["AnsweredBy"] == "machine_start"
    assert double.call(sid)["answered_by"] == "machine_start"
    validator = RequestValidator(TOKEN)
    url = "https://warmline.example.com/callback/status"
    assert all(validator.validate(url, f, h["X-Twilio-Signature"]) for _, f, h in app.posts)


async def test_voice_sends_gather_and_record_webhooks(double: TwilioDouble) -> None:
    app = _Recorder()
    voice = TwilioVoice(app, double, "https://warmline.example.com")
    call = double.add_call()
    await voice.gathered("/voice/choice", call, "2")
    message = double.add_message(call, duration=9)
    await voice.message_left("/voicemail/done", call, message)
    await voice.message_status("/voicemail/recording#rc=3", message)
    (p1, choice, _), (_, done, _), (p3, status, headers) = app.posts
    assert (p1, choice["Digits"], choice["CallSid"]) == ("/voice/choice", "2", call)
    assert (done["RecordingSid"], done["RecordingDuration"], done["Digits"]) == (
        message.sid,
        "9",
        "#",
    )
    assert not done["RecordingUrl"].endswith(".wav")
    assert (p3, status["RecordingSource"], status["CallSid"]) == (
        "/voicemail/recording",
        "RecordVerb",
        call,
    )
    url = "https://warmline.example.com/voicemail/recording"
    assert RequestValidator(TOKEN).validate(url, status, headers["X-Twilio-Signature"])
