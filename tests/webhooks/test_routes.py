"""The Twilio-facing edge: signatures, parameters, TwiML and outages (docs/webhooks.md)."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from console.domain import keys
from simulator.testing import Delivery, call_sid, conference_sid, sign
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL
from tests.support.flow_helpers import AppVoice, customer_joins
from warmline.app import create_app
from warmline.embedded_redis import free_port

WEBHOOKS = {
    "/conference/connect/client": "POST",
    "/conference/wait": "POST",
    "/conference/connect/agent?conference=CAx&dial=dial-1": "POST",
    "/conference/status": "POST",
    "/call/status?conference=CAx&dial=dial-1": "POST",
}


def test_every_webhook_route_checks_the_signature_and_every_api_route_the_session(app):
    webhook_rules, api_rules = [], []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.endpoint.startswith("webhooks."):
            webhook_rules.append(rule.rule)
            assert getattr(view, "__warmline_webhook__", False), rule.rule
        if rule.rule.startswith("/api/"):
            api_rules.append(rule.rule)
            assert getattr(view, "__warmline_auth__", None) in ("login", "supervisor"), rule.rule
    assert len(webhook_rules) == 11  # with the recording, voicemail and choice routes
    assert len(api_rules) >= 8


def conference_params(**extra: str) -> dict[str, str]:
    params = {
        "AccountSid": ACCOUNT_SID,
        "ConferenceSid": conference_sid(),
        "FriendlyName": call_sid(),
        "StatusCallbackEvent": "participant-join",
        "SequenceNumber": "1",
        "Timestamp": "Wed, 25 Nov 2026 12:00:00 +0000",
        "CallSid": call_sid(),
        "Muted": "false",
        "Hold": "false",
        "Coaching": "false",
        "EndConferenceOnExit": "true",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v != "-"}


async def state_keys(redis) -> list[str]:
    """State keys, without the webhook-health bookkeeping (written off the request path)."""
    bookkeeping = (keys.SIGNATURE_FAILURES, keys.WEBHOOK_HEALTH)
    return sorted(k for k in await redis.keys("*") if k not in bookkeeping)


@pytest.mark.parametrize("path", list(WEBHOOKS))
async def test_unsigned_forged_or_foreign_requests_get_403_and_change_nothing(voice, redis, path):
    params = conference_params(CallStatus="ringing", From="+15551234567")
    url = PUBLIC_BASE_URL + path
    cases = [
        None,
        "bm90IGEgc2lnbmF0dXJl",
        sign(url, params, "the-wrong-token"),
        sign("https://attacker.example" + path, params, AUTH_TOKEN),
        sign(url, {**params, "AccountSid": "AC" + "0" * 32}, AUTH_TOKEN),
    ]
    before = await state_keys(redis)
    for index, signature in enumerate(cases):
        form = {**params, "AccountSid": "AC" + "0" * 32} if index == 4 else params
        headers = {"X-Twilio-Signature": signature} if signature else {}
        response = await voice.client.post(path, form=form, headers=headers)
        assert response.status_code == 403, (index, await response.get_data(as_text=True))
    assert await state_keys(redis) == before
    failures = await redis.lrange(keys.SIGNATURE_FAILURES, 0, -1)
    assert failures and all(AUTH_TOKEN not in f for f in failures)
    assert PUBLIC_BASE_URL in failures[0]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/conference/connect/client", {"AccountSid": ACCOUNT_SID}),
        ("/conference/connect/client", {"AccountSid": ACCOUNT_SID, "CallSid": "CA123"}),
        ("/conference/status", conference_params(SequenceNumber="-")),
        ("/conference/status", conference_params(SequenceNumber="one")),
        ("/conference/status", conference_params(SequenceNumber="²")),
        (
            "/call/status?conference=CAx&dial=d1",
            {
                "AccountSid": ACCOUNT_SID,
                "CallSid": call_sid(),
                "CallStatus": "ringing",
                "SequenceNumber": "٣",
            },
        ),
        ("/conference/status", conference_params(ConferenceSid="-")),
        ("/conference/status", conference_params(FriendlyName="a b")),
        ("/conference/status", conference_params(Muted="maybe")),
        ("/conference/status", conference_params(Timestamp="yesterday")),
        ("/conference/status", conference_params(CallSid="-")),
        ("/call/status?conference=CAx&dial=d1", {"AccountSid": ACCOUNT_SID, "CallSid": call_sid()}),
        (
            "/call/status?conference=CAx&dial=d1",
            {"AccountSid": ACCOUNT_SID, "CallSid": call_sid(), "CallStatus": "exploded"},
        ),
        (
            "/call/status",
            {"AccountSid": ACCOUNT_SID, "CallSid": call_sid(), "CallStatus": "ringing"},
        ),
        (
            "/conference/connect/agent?conference=CAx",
            {"AccountSid": ACCOUNT_SID, "CallSid": call_sid()},
        ),
    ],
)
async def test_malformed_signed_requests_get_a_clear_400_and_change_nothing(
    voice, redis, path, params
):
    before = await state_keys(redis)
    response = await voice.send(Delivery(PUBLIC_BASE_URL + path, params))
    assert response.status_code == 400
    body = await response.get_data(as_text=True)
    assert "parameter" in body or "CallStatus" in body
    assert await state_keys(redis) == before
    assert await redis.xlen(keys.EVENTS) == 0


async def test_untracked_conference_events_are_acknowledged(voice, redis):
    params = conference_params(StatusCallbackEvent="participant-speech-start")
    response = await voice.send(Delivery(PUBLIC_BASE_URL + "/conference/status", params))
    assert response.status_code == 204
    assert await redis.xlen(keys.EVENTS) == 0


async def test_voice_url_answers_conference_twiml_as_xml(voice, redis):
    sid = call_sid()
    response = await voice.send(voice.incoming(sid))
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    root = ElementTree.fromstring(await response.get_data(as_text=True))
    conference = root.find("./Dial/Conference")
    assert conference is not None and conference.text == sid
    assert conference.get("statusCallbackEvent") == "start end join leave mute hold modify"
    assert conference.get("statusCallbackMethod") == "POST"
    assert (
        conference.get("statusCallback") == PUBLIC_BASE_URL + "/conference/status#rc=3&rp=5xx,ct,rt"
    )
    assert conference.get("waitUrl") == PUBLIC_BASE_URL + f"/conference/wait?call={sid}"
    # Twilio may fetch the Voice URL twice: the caller is queued once.
    await voice.send(voice.incoming(sid))
    assert await redis.lrange(keys.QUEUE, 0, -1) == [sid]


async def test_wait_url_greets_then_loops_music_on_get_and_post(voice):
    query = f"?AccountSid={ACCOUNT_SID}&CallSid={call_sid()}"
    url = PUBLIC_BASE_URL + "/conference/wait" + query
    response = await voice.client.get(
        "/conference/wait" + query, headers={"X-Twilio-Signature": sign(url, {}, AUTH_TOKEN)}
    )
    assert response.status_code == 200 and response.mimetype == "text/xml"
    root = ElementTree.fromstring(await response.get_data(as_text=True))
    assert [child.tag for child in root] == ["Say", "Play"]
    assert root.find("Play").get("loop") == "0"
    posted = await voice.send(
        Delivery(PUBLIC_BASE_URL + "/conference/wait", {"AccountSid": ACCOUNT_SID})
    )
    assert posted.status_code == 200


async def test_redis_down_voice_url_still_answers_and_callbacks_ask_for_retry(settings, twilio):
    app = create_app(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with app.test_app(), app.test_client() as client:
        voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
        sid = call_sid()
        response = await voice.send(voice.incoming(sid))
        assert response.status_code == 200
        assert (
            ElementTree.fromstring(await response.get_data(as_text=True))
            .find("./Dial/Conference")
            .text
            == sid
        )
        callback = await voice.send(voice.conference_event(sid, "participant-join", sid))
        assert callback.status_code == 503
        health = await client.get("/healthz")
        assert health.status_code == 503
        assert (await health.get_json())["status"] == "unhealthy"


async def test_callback_for_a_call_recorded_while_redis_was_down_queues_the_customer(
    voice, redis, app
):
    sid = call_sid()  # the Voice URL never reached Redis for this call
    await customer_joins(voice, sid)
    assert await redis.lrange(keys.QUEUE, 0, -1) == [sid]
