"""Callbacks (SPEC §9): the offer at arrival, a callback keeping its place among later
calls, the agent rung first and the number dialed into the conference once they are
in it, no answer / busy / a machine, retry and give-up, the longest-wait exit, a
voicemail called back, and who sees what."""

from __future__ import annotations

import json
from typing import Any

import pytest

from console.domain import keys
from console.telephony.runner import Runner
from simulator.testing import RecordedRequest
from tests.conftest import PUBLIC_BASE_URL
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    asks_callback,
    customer_joins,
    events,
    login,
    served,
    set_available,
    state,
    tags,
)

pytestmark = pytest.mark.timeout(60)

CALLER = "+12025550143"  # dialable from the test caller ID's region (US)
OTHERS = ["+12025550144", "+12025550145", "+12025550146"]


async def line(redis: Any) -> list[str]:
    return await redis.lrange(keys.QUEUE, 0, -1)


async def callback_events(redis: Any) -> list[dict[str, Any]]:
    return [e for e in await events(redis) if e["type"] == "callback.updated"]


# An agent alone in a callback's conference does not start it (Twilio starts a
# conference with two people): the tests' agents join with start=False, and the
# conference starts when the number's person joins.


def number_dials(voice: AppVoice) -> list[RecordedRequest]:
    return voice.double.numbers_dialed()


@pytest.fixture
def offer(twilio, redis_server):
    """An app offering callbacks whenever a caller must wait."""
    return served(twilio, redis_server, callback_offer_seconds=0, callback_attempts=2)


async def test_a_callback_keeps_the_callers_place_among_later_calls(offer, redis):
    async with offer as (app, voice):
        sue = await login(app, redis, "sue", role="supervisor")
        alice = await login(app, redis, "alice")
        first, _ = await voice.call_in(OTHERS[0])
        gather = await voice.gathered(
            f"/voice/choice?call={first}&long=0", first, "9", OTHERS[0]
        )  # any other key: the line, as before
        assert tags(gather) == ["Dial"]
        caller, callback = await asks_callback(voice, redis, CALLER)
        later, _ = await voice.call_in(OTHERS[1])
        assert await line(redis) == [first, callback, later]
        everything = await events(redis)
        [left] = [
            e
            for e in everything
            if e["type"] == "call.dequeued" and e["data"]["call_sid"] == caller
        ]
        assert left["data"] | {"arrived_at": 0} == {
            "call_sid": caller,
            "reason": "callback-requested",
            "arrived_at": 0,  # the call's arrival: figures count the choice on its day
        }
        assert left["data"]["arrived_at"] > 0
        [created] = await callback_events(redis)
        assert created["audience"] == ""  # supervisors only while nobody serves it
        assert created["data"] | {"requested_at": 0} == {
            "id": callback,
            "number": CALLER,
            "requested_at": 0,
            "attempts": 0,
            "status": "waiting",
            "agent": None,
            "origin": caller,
            "result": None,
            "disposition": None,
            "conference": callback,
        }
        # The caller's own conference is over: they hung up after the goodbye.
        assert await redis.sismember(keys.LIVE, caller) == 0
        seen = await state(sue)
        assert [q["kind"] for q in seen["queue"]] == ["call", "callback", "call"]
        assert seen["queue"][1]["call_sid"] == caller
        assert [c["id"] for c in seen["callbacks"]] == [callback]
        # The figures tell why the caller left: a choice, not an abandon.
        figures = await (await sue.get("/api/figures")).get_json()
        assert (figures["abandoned"], figures["callbacks_requested"]) == (0, 1)
        mine = await state(alice)
        assert mine["callbacks"] == []  # not hers (yet); the line shows it to her
        assert [q["kind"] for q in mine["queue"]] == ["call", "callback", "call"]


async def test_the_agent_is_rung_first_then_the_number_no_answer_retry_connect(offer, redis):
    async with offer as (app, voice):
        alice = await login(app, redis, "alice")
        _, callback = await asks_callback(voice, redis, CALLER)
        await set_available(alice)
        assert number_dials(voice) == []  # the agent first
        leg = await agent_answers(voice, callback, "alice", start=False)
        await voice.settle()
        [dial] = number_dials(voice)
        assert dial.param("To") == CALLER
        assert dial.param("From") == "+15550001111"
        assert dial.param("Label") == "customer"
        assert dial.param("MachineDetection") == "Enable"
        assert dial.param("EndConferenceOnExit") == "false"
        [agent_view] = (await state(alice))["callbacks"]
        assert (agent_view["status"], agent_view["attempts"], agent_view["agent"]) == (
            "dialing",
            1,
            "alice",
        )
        await voice.person_misses(dial, "no-answer")
        await voice.settle()
        [shown] = (await state(alice))["callbacks"]
        assert (shown["status"], shown["result"]) == ("waiting", "no-answer")
        assert len(number_dials(voice)) == 1  # the agent decides: no redial by itself
        bob = await login(app, redis, "bob")  # not his: as for an unknown callback
        assert (await bob.post(f"/api/callbacks/{callback}/retry")).status_code == 404
        response = await bob.post(f"/api/callbacks/{callback}/close", json={"disposition": "Other"})
        assert response.status_code == 404
        assert (await state(bob))["callbacks"] == []
        response = await alice.post(f"/api/callbacks/{callback}/retry")
        assert response.status_code == 200, await response.get_data(as_text=True)
        await voice.settle()
        second = number_dials(voice)[-1]
        assert len(number_dials(voice)) == 2
        sid = await voice.person_answers(second, "human")
        await voice.event(callback, "participant-join", sid, ParticipantLabel="customer")
        await voice.event(callback, "conference-start")  # two people: Twilio starts it
        await voice.settle()
        [connected] = (await state(alice))["callbacks"]
        assert (connected["status"], connected["attempts"]) == ("connected", 2)
        # Once a person is on the line, their leaving ends the call (as an inbound
        # caller's does).
        updates = [r for r in voice.double.participant_updates() if r.path.endswith(f"/{sid}.json")]
        assert [u.param("EndConferenceOnExit") for u in updates] == ["true"]
        conference = next(c for c in (await state(alice))["conferences"] if c["name"] == callback)
        assert conference["kind"] == "callback"
        customer = next(p for p in conference["participants"] if p["role"] == "customer")
        assert customer["from"] == CALLER
        await voice.event(
            callback,
            "participant-leave",
            sid,
            ParticipantLabel="customer",
            EndConferenceOnExit=True,
        )
        await voice.event(callback, "conference-end", ReasonConferenceEnded="participant-left")
        await voice.settle()
        assert (await state(alice))["callbacks"] == []
        statuses = [e["data"]["status"] for e in await callback_events(redis)]
        assert statuses[-1] == "done"
        assert leg.label


async def test_after_the_last_failed_attempt_the_callback_fails_and_the_agent_is_freed(
    offer, redis
):
    async with offer as (app, voice):
        alice = await login(app, redis, "alice")
        _, callback = await asks_callback(voice, redis, CALLER)
        await set_available(alice)
        leg = await agent_answers(voice, callback, "alice", start=False)
        await voice.settle()
        await voice.person_misses(number_dials(voice)[-1], "busy")
        await voice.settle()
        assert (await alice.post(f"/api/callbacks/{callback}/retry")).status_code == 200
        await voice.settle()
        # A machine answers: hung up at once, and it counts as a failed attempt.
        machine = await voice.person_answers(number_dials(voice)[-1], "machine_start")
        await voice.settle()
        hangups = [r for r in voice.double.call_updates() if r.path.endswith(f"/{machine}.json")]
        assert [h.param("Status") for h in hangups] == ["completed"]
        [failed] = [e["data"] for e in await callback_events(redis)][-1:]
        assert (failed["status"], failed["result"], failed["attempts"]) == ("failed", "machine", 2)
        # Its agent's call is ended for them; no third dial.
        agent_hangups = [
            r for r in voice.double.call_updates() if r.path.endswith(f"/{leg.call_sid}.json")
        ]
        assert [h.param("Status") for h in agent_hangups] == ["completed"]
        assert len(number_dials(voice)) == 2
        response = await alice.post(f"/api/callbacks/{callback}/retry")
        assert response.status_code == 409
        # The agent still records how it ended.
        response = await alice.post(
            f"/api/callbacks/{callback}/close", json={"disposition": "Other"}
        )
        assert response.status_code == 200, await response.get_data(as_text=True)
        closed = await response.get_json()
        assert (closed["status"], closed["disposition"]) == ("failed", "Other")


async def connected_callback(app: Any, redis: Any, voice: AppVoice) -> dict[str, Any]:
    """A callback alice took, its number answered by a person and in the conference."""
    alice = await login(app, redis, "alice")
    caller, callback = await asks_callback(voice, redis, CALLER)
    await set_available(alice)
    leg = await agent_answers(voice, callback, "alice", start=False)
    await voice.settle()
    sid = await voice.person_answers(number_dials(voice)[-1], "human")
    await voice.event(callback, "participant-join", sid, ParticipantLabel="customer")
    await voice.event(callback, "conference-start")  # two people: Twilio starts it
    await voice.settle()
    return {"alice": alice, "caller": caller, "name": callback, "leg": leg, "customer": sid}


async def test_the_customer_of_a_callback_hanging_up_mid_transfer_fails_it_and_ends_the_call(
    offer, redis
):
    async with offer as (app, voice):
        call = await connected_callback(app, redis, voice)
        bob = await login(app, redis, "bob")
        await set_available(bob)
        response = await call["alice"].post(
            "/api/transfers", json={"conference": call["name"], "to": "bob", "note": "vip"}
        )
        assert response.status_code == 201, await response.get_data(as_text=True)
        transfer = await response.get_json()
        await voice.settle()
        ring = [r for r in voice.double.calls_created() if r.param("To") == "client:bob"][-1]
        await voice.ring(ring)
        # The customer hangs up while bob's phone rings: their leaving ends the call.
        await voice.event(
            call["name"],
            "participant-leave",
            call["customer"],
            ParticipantLabel="customer",
            EndConferenceOnExit=True,
        )
        await voice.event(call["name"], "conference-end", ReasonConferenceEnded="participant-left")
        await voice.settle()
        seen = await state(call["alice"])
        assert seen["callbacks"] == []
        [updated] = [
            e["data"]
            for e in await events(redis)
            if e["type"] == "transfer.updated" and e["data"]["id"] == transfer["id"]
        ][-1:]
        assert (updated["status"], updated["reason"]) == ("failed", "customer-hung-up")
        bob_sid = voice.created_sid(ring)
        canceled = [r for r in voice.double.call_updates() if r.path.endswith(f"/{bob_sid}.json")]
        assert [c.param("Status") for c in canceled] == ["canceled"]
        assert (await callback_events(redis))[-1]["data"]["status"] == "done"


async def test_a_callback_whose_agent_lets_it_ring_goes_back_to_the_front(offer, redis):
    async with offer as (app, voice):
        alice = await login(app, redis, "alice")
        bob = await login(app, redis, "bob")
        early, _ = await voice.call_in(OTHERS[0])
        await voice.gathered(f"/voice/choice?call={early}&long=0", early, "", OTHERS[0])
        caller, callback = await asks_callback(voice, redis, CALLER)
        # alice takes the first caller; bob is rung for the callback and lets it ring.
        await set_available(alice)
        await customer_joins(voice, early)
        await agent_answers(voice, early, "alice")
        await set_available(bob)
        await voice.settle()
        ring = [r for r in voice.double.calls_created() if r.param("To") == "client:bob"][-1]
        sid = await voice.ring(ring)
        await voice.decline(ring, sid, "no-answer")
        await voice.settle()
        assert await line(redis) == [callback]  # the same conference: it never started
        [queued] = (await state(bob))["queue"]
        assert (queued["kind"], queued["call_sid"], queued["callback"]) == (
            "callback",
            caller,
            callback,
        )


async def test_a_callback_whose_agent_leaves_before_the_number_answers_keeps_its_place(
    offer, redis
):
    async with offer as (app, voice):
        alice = await login(app, redis, "alice")
        caller, callback = await asks_callback(voice, redis, CALLER)
        later, _ = await voice.call_in(OTHERS[1])
        await voice.gathered(f"/voice/choice?call={later}&long=0", later, "", OTHERS[1])
        await set_available(alice)
        leg = await agent_answers(voice, callback, "alice", start=False)
        await voice.settle()
        dial = number_dials(voice)[-1]
        await voice.ring(dial)
        # alice hangs up while the number rings: its ring stops, the conference ends
        # (a conference never starts again under its name): the callback goes on in a
        # new one, at the front of the line, its attempt counted.
        await voice.event(
            callback,
            "participant-leave",
            leg.call_sid,
            ParticipantLabel=leg.label,
            EndConferenceOnExit=True,
        )
        await voice.event(callback, "conference-end", ReasonConferenceEnded="participant-left")
        await voice.settle()
        number_sid = voice.created_sid(dial)
        stopped = [r for r in voice.double.call_updates() if r.path.endswith(f"/{number_sid}.json")]
        assert [r.param("Status") for r in stopped] == ["canceled"]
        successor = f"{callback}-2"
        assert (await line(redis))[0] == successor
        sue = await login(app, redis, "sue", role="supervisor")
        [shown] = (await state(sue))["callbacks"]
        assert (shown["id"], shown["conference"], shown["status"], shown["attempts"]) == (
            callback,
            successor,
            "waiting",
            1,
        )
        assert shown["origin"] == caller
        # It is served there like any callback: the retry and close routes find it.
        response = await sue.post(f"/api/callbacks/{callback}/retry")
        assert response.status_code == 409  # nobody is in its conference to dial for


async def test_the_longest_wait_moves_a_caller_out_to_the_choice(twilio, redis, redis_server):
    async with served(twilio, redis_server, max_wait_seconds=1) as (app, voice):
        sue = await login(app, redis, "sue", role="supervisor")
        caller, _ = await voice.call_in(CALLER)
        await customer_joins(voice, caller)
        later, _ = await voice.call_in(OTHERS[0])
        await customer_joins(voice, later)
        await voice.settle()
        await _waited_past(redis, caller, 1)
        await Runner.of(app).sweep()
        await voice.settle()
        moves = [r for r in voice.double.call_updates() if r.path.endswith(f"/{caller}.json")]
        assert [m.param("Url") for m in moves] == [
            f"{PUBLIC_BASE_URL}/voice/long-wait?call={caller}"
        ]
        # Still in line (their place is theirs to keep), but nobody is rung for them.
        assert await line(redis) == [caller, later]
        [queued, _] = (await state(sue))["queue"]
        assert queued["moved_at"] > 0
        # Twilio reports them leaving (moved, not hung up): they stay in line.
        await moved_out_of_conference(voice, caller)
        assert await line(redis) == [caller, later]
        offer = await voice.gathered(f"/voice/long-wait?call={caller}", caller, "", CALLER)
        assert tags(offer) == ["Gather", "Redirect"]
        assert offer.find("Redirect").text == (
            f"{PUBLIC_BASE_URL}/voice/choice?call={caller}&long=1"
        )
        answer = await voice.gathered(offer.find("Gather").get("action"), caller, "1", CALLER)
        assert tags(answer) == ["Say", "Hangup"]
        await voice.settle()
        [callback, rest] = await line(redis)
        assert callback.startswith("CB") and rest == later
        reasons = [
            e["data"]["reason"]
            for e in await events(redis)
            if e["type"] == "call.dequeued" and e["data"]["call_sid"] == caller
        ]
        assert reasons == ["callback-requested"]


async def moved_out_of_conference(voice: AppVoice, caller: str) -> None:
    """What Twilio reports of a waiting caller the Calls API moved: their leaving (by
    the API), which ends their conference (they end it on exit)."""
    await voice.event(
        caller,
        "participant-leave",
        caller,
        ParticipantLabel="customer",
        EndConferenceOnExit=True,
        ReasonParticipantLeft="participant_updated_via_api",
    )
    await voice.event(caller, "conference-end", ReasonConferenceEnded="participant-left")
    await voice.settle()


async def _waited_past(redis: Any, name: str, seconds: int) -> None:
    """Make the caller's place in line older (as if they had waited ``seconds``)."""
    raw = json.loads(await redis.hget(keys.QUEUE_INFO, name))
    raw["queued_at"] -= seconds * 1000 + 1
    await redis.hset(keys.QUEUE_INFO, name, json.dumps(raw))


async def test_after_the_longest_wait_no_key_leaves_a_message(twilio, redis, redis_server):
    async with served(twilio, redis_server, max_wait_seconds=1) as (app, voice):
        caller, _ = await voice.call_in(CALLER)
        await customer_joins(voice, caller)
        await voice.settle()
        await _waited_past(redis, caller, 1)
        await Runner.of(app).sweep()
        await voice.settle()
        offer = await voice.gathered(f"/voice/long-wait?call={caller}", caller, "", CALLER)
        await moved_out_of_conference(voice, caller)
        redirect = offer.find("Redirect").text.removeprefix(PUBLIC_BASE_URL)
        answer = await voice.gathered(redirect, caller, "", CALLER)
        assert tags(answer) == ["Say", "Say", "Record"]
        await voice.settle()
        assert await line(redis) == []
        reasons = [
            e["data"]["reason"]
            for e in await events(redis)
            if e["type"] == "call.dequeued" and e["data"]["call_sid"] == caller
        ]
        assert reasons == ["voicemail"]
        sue = await login(app, redis, "sue", role="supervisor")
        figures = await (await sue.get("/api/figures")).get_json()
        assert (figures["abandoned"], figures["left_messages"]) == (0, 1)
        # A caller whose number cannot be called back is not offered one at all.
        anonymous, _ = await voice.call_in("+15557654321")
        offer = await voice.gathered(
            f"/voice/long-wait?call={anonymous}", anonymous, "", "+15557654321"
        )
        assert tags(offer) == ["Say", "Say", "Record"]


async def test_a_voicemail_is_called_back_for_its_agent_at_once(twilio, redis, redis_server):
    async with served(twilio, redis_server, nobody_signed_in="voicemail") as (app, voice):
        alice = await login(app, redis, "alice")
        bob = await login(app, redis, "bob")
        caller, twiml = await voice.call_in(CALLER)
        recording = voice.double.add_message(caller, duration=4)
        record = twiml.find("Record")
        response = await voice.message_status(record.get("recordingStatusCallback"), recording)
        assert response.status_code == 204
        response = await alice.post(f"/api/voicemails/{caller}/callback")
        assert response.status_code == 200, await response.get_data(as_text=True)
        callback = await response.get_json()
        assert (callback["status"], callback["agent"], callback["origin"]) == (
            "waiting",
            "alice",
            caller,
        )
        # bob cannot call back alice's message; alice cannot be rung twice.
        assert (await bob.post(f"/api/voicemails/{caller}/callback")).status_code == 409
        assert (await alice.post(f"/api/voicemails/{caller}/callback")).status_code == 409
        assert await line(redis) == []  # never in line: alice's phone rings at once
        assert (await state(bob))["callbacks"] == []
        [mine] = (await state(alice))["callbacks"]
        assert mine["id"] == callback["id"]
        await agent_answers(voice, callback["conference"], "alice", start=False)
        await voice.settle()
        [dial] = number_dials(voice)
        assert dial.param("To") == CALLER
        [event] = [e for e in await callback_events(redis) if e["data"]["status"] == "dialing"]
        assert event["audience"] == "alice"


async def test_the_offer_at_arrival_follows_the_expected_wait(twilio, redis, redis_server):
    """Offered only when the wait expected at the caller's place (recent handle times,
    agents signed in) is longer than CALLBACK_OFFER_SECONDS, and only to a number the
    app may dial."""
    from console.domain.events import now_ms
    from console.domain.figures import HANDLE_MS, HANDLED, local_day
    from console.extension import settings_of

    async with served(twilio, redis_server, callback_offer_seconds=300) as (app, voice):
        alice = await login(app, redis, "alice")
        await set_available(alice)
        first, twiml = await voice.call_in(OTHERS[0])
        assert tags(twiml) == ["Dial"]  # alice is free: no wait, no offer
        await voice.settle()  # alice is rung for them: signed in, not free
        _, twiml = await voice.call_in(OTHERS[1])
        assert tags(twiml) == ["Dial"]  # nothing handled yet: no estimate, no offer
        today = keys.figures(local_day(now_ms(), settings_of(app).center_zone))
        await redis.hset(today, mapping={HANDLED: 2, HANDLE_MS: 2 * 240_000})  # 4 min each
        # Third in line, one agent: 3 rounds of 4 minutes = 12 minutes > 5.
        _, twiml = await voice.call_in(OTHERS[2])
        assert tags(twiml) == ["Gather", "Dial"]
        gather = twiml.find("Gather")
        assert (gather.get("numDigits"), gather.get("method")) == ("1", "POST")
        assert "press 1" in gather.find("Say").text
        _, twiml = await voice.call_in("+15557654321")  # not dialable: never offered
        assert tags(twiml) == ["Dial"]
        assert (await line(redis))[0] == first


async def test_a_caller_who_hangs_up_at_the_longest_wait_choice_leaves_the_line(
    twilio, redis, redis_server
):
    async with served(twilio, redis_server, max_wait_seconds=1) as (app, voice):
        sue = await login(app, redis, "sue", role="supervisor")
        caller, _ = await voice.call_in(CALLER)
        await customer_joins(voice, caller)
        await voice.settle()
        await _waited_past(redis, caller, 1)
        await Runner.of(app).sweep()
        await voice.settle()
        await moved_out_of_conference(voice, caller)
        await Runner.of(app).sweep()
        assert await line(redis) == [caller]  # choosing, their place kept
        # A minute on, nothing came of it and Twilio says their call is over.
        voice.double.set_call_status(caller, "completed")
        raw = json.loads(await redis.hget(keys.QUEUE_INFO, caller))
        raw["moved_at"] -= 60_001
        await redis.hset(keys.QUEUE_INFO, caller, json.dumps(raw))
        await Runner.of(app).sweep()
        await voice.settle()
        assert await line(redis) == []
        reasons = [
            e["data"]["reason"]
            for e in await events(redis)
            if e["type"] == "call.dequeued" and e["data"]["call_sid"] == caller
        ]
        assert reasons == ["hung-up"]
        figures = await (await sue.get("/api/figures")).get_json()
        assert (figures["abandoned"], figures["left_messages"]) == (1, 0)


async def test_hold_monitoring_and_a_warm_transfer_work_for_a_callback(offer, redis):
    async with offer as (app, voice):
        call = await connected_callback(app, redis, voice)
        name, customer = call["name"], call["customer"]
        sue = await login(app, redis, "sue", role="supervisor")
        bob = await login(app, redis, "bob")
        await set_available(bob)
        # alice holds the customer: the hold music is the app's own.
        response = await call["alice"].post(
            f"/api/conferences/{name}/hold", json={"call_sid": customer, "hold": True}
        )
        assert response.status_code == 200, await response.get_data(as_text=True)
        held = [
            r for r in voice.double.participant_updates() if r.path.endswith(f"/{customer}.json")
        ]
        assert held[-1].param("Hold") == "true"
        assert "/conference/wait" in held[-1].param("HoldUrl")
        # sue listens in: dialed into the callback's conference like any call's.
        response = await sue.post(f"/api/conferences/{name}/monitor", json={"mode": "listen"})
        assert response.status_code == 200, await response.get_data(as_text=True)
        [monitor] = [
            r for r in voice.double.participants_created() if r.param("To") == "client:sue"
        ]
        assert f"/Conferences/{voice.track(name).sid}/" in monitor.path
        # alice hands the customer to bob, who joins; alice leaves: completed.
        response = await call["alice"].post(
            "/api/transfers", json={"conference": name, "to": "bob", "note": "called back"}
        )
        assert response.status_code == 201, await response.get_data(as_text=True)
        transfer = await response.get_json()
        bob_leg = await agent_answers(voice, name, "bob", start=False)
        leg = call["leg"]
        await voice.event(
            name,
            "participant-leave",
            leg.call_sid,
            ParticipantLabel=leg.label,
            EndConferenceOnExit=False,
        )
        await voice.settle()
        [done] = [t for t in (await state(sue))["transfers"] if t["id"] == transfer["id"]]
        assert done["status"] == "completed"
        [callback] = (await state(sue))["callbacks"]
        assert (callback["status"], callback["agent"]) == ("connected", "bob")  # handed over
        assert [c["id"] for c in (await state(bob))["callbacks"]] == [callback["id"]]
        assert (await state(call["alice"]))["callbacks"] == []
        conference = next(c for c in (await state(bob))["conferences"] if c["name"] == name)
        roles = sorted(p["role"] for p in conference["participants"])
        assert roles == ["agent", "customer"]
        assert bob_leg.label


async def test_a_number_that_leaves_before_its_last_status_is_not_a_customer_hanging_up(
    offer, redis
):
    """Twilio may report a dialed number leaving (never having joined) before its
    call's final status: the attempt ends with that status, and the callback goes on."""
    async with offer as (app, voice):
        alice = await login(app, redis, "alice")
        _, callback = await asks_callback(voice, redis, CALLER)
        await set_available(alice)
        await agent_answers(voice, callback, "alice", start=False)
        await voice.settle()
        dial = number_dials(voice)[-1]
        sid = await voice.ring(dial)
        await voice.event(callback, "participant-leave", sid, ParticipantLabel="customer")
        await voice.settle()
        [still] = (await state(alice))["callbacks"]
        assert still["status"] == "dialing"  # its status decides, not the leave
        await voice.decline(dial, sid, "no-answer")
        await voice.settle()
        [shown] = (await state(alice))["callbacks"]
        assert (shown["status"], shown["result"]) == ("waiting", "no-answer")
        assert (await alice.post(f"/api/callbacks/{callback}/retry")).status_code == 200
        await voice.settle()
        assert len(number_dials(voice)) == 2
        [dialing] = (await state(alice))["callbacks"]
        assert (dialing["status"], dialing["attempts"]) == ("dialing", 2)


async def test_closing_after_no_answer_hangs_up_the_agent_and_ends_the_callback(offer, redis):
    async with offer as (app, voice):
        alice = await login(app, redis, "alice")
        _, callback = await asks_callback(voice, redis, CALLER)
        await set_available(alice)
        leg = await agent_answers(voice, callback, "alice", start=False)
        await voice.settle()
        await voice.person_misses(number_dials(voice)[-1], "no-answer")
        await voice.settle()
        response = await alice.post(
            f"/api/callbacks/{callback}/close", json={"disposition": "Follow-up"}
        )
        assert response.status_code == 200, await response.get_data(as_text=True)
        closed = await response.get_json()
        assert (closed["status"], closed["disposition"]) == ("done", "Follow-up")
        await voice.settle()
        hangups = [
            r.param("Status")
            for r in voice.double.call_updates()
            if r.path.endswith(f"/{leg.call_sid}.json")
        ]
        assert hangups == ["completed"]
        # Her leaving empties the conference, which never started: it is over here.
        await voice.event(callback, "participant-leave", leg.call_sid, ParticipantLabel=leg.label)
        await voice.settle()
        assert await redis.sismember(keys.LIVE, callback) == 0
        assert (await state(alice))["callbacks"] == []
        again = await alice.post(f"/api/callbacks/{callback}/close", json={"disposition": "Other"})
        assert again.status_code == 409  # closed once
