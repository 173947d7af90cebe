"""The Voice URL's decision and voicemail (SPEC §9): closed hours and holidays (on a
frozen clock, across a DST change), nobody signed in, the ``<Record>`` answer, the
message's callback creating one voicemail (none when absent), claims that one agent
wins, closing with a disposition, who sees what, and the call in history."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import pytest

from console import intake
from console.config import BusinessHours, Settings
from console.domain import keys
from simulator.testing import Delivery
from tests.conftest import PUBLIC_BASE_URL
from tests.support.flow_helpers import AppVoice, events, login, served, set_available

pytestmark = pytest.mark.timeout(60)

NEW_YORK = "America/New_York"
CLOSED = "We are closed. Our hours are nine to five."


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def hours(text: str) -> BusinessHours:
    parsed = Settings.from_env(
        {
            "BUSINESS_HOURS": text,
            "SECRET_KEY": "x",
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": "t",
            "TWILIO_API_KEY": "SK" + "0" * 32,
            "TWILIO_API_SECRET": "s",
            "TWILIO_CALLER_ID": "+15550001111",
        }
    ).business_hours
    assert parsed is not None
    return parsed


def is_voicemail(twiml: ElementTree.Element, message: str) -> ElementTree.Element:
    """A message, the leave-a-message prompt and a ``<Record>``: no conference."""
    assert [child.tag for child in twiml] == ["Say", "Say", "Record"], ElementTree.tostring(twiml)
    assert twiml[0].text == message
    return twiml[2]


async def call_at(voice: AppVoice, monkeypatch: pytest.MonkeyPatch, when: int) -> Any:
    monkeypatch.setattr(intake, "now_ms", lambda: when)
    return await voice.call_in()


# -- the decision ------------------------------------------------------------------------


async def test_outside_hours_a_caller_hears_the_closed_message_and_may_leave_one(
    twilio, redis, redis_server, monkeypatch
):
    async with served(
        twilio,
        redis_server,
        center_timezone=NEW_YORK,
        business_hours=hours("Mon-Fri 09:00-17:00"),
        closed_message=CLOSED,
    ) as (_app, voice):
        # Friday 2026-11-27 16:59 in New York is open; 17:00 is closed.
        open_sid, open_twiml = await call_at(voice, monkeypatch, ms("2026-11-27T16:59:59-05:00"))
        assert [child.tag for child in open_twiml] == ["Dial"]
        sid, twiml = await call_at(voice, monkeypatch, ms("2026-11-27T17:00:00-05:00"))
        record = is_voicemail(twiml, CLOSED)
        assert record.get("action") == f"{PUBLIC_BASE_URL}/voicemail/done"
        assert record.get("method") == "POST"
        assert record.get("finishOnKey") == "#"
        assert record.get("playBeep") == "true"
        assert int(record.get("maxLength")) > 0
        assert record.get("recordingStatusCallback") == (
            f"{PUBLIC_BASE_URL}/voicemail/recording?call={sid}#rc=3&rp=5xx,ct,rt"
        )
        assert record.get("recordingStatusCallbackEvent") == "completed absent"
        # Not in the line, no conference: supervisors alone are told.
        assert await redis.lrange(keys.QUEUE, 0, -1) == [open_sid]
        assert await redis.exists(keys.conference(sid)) == 0
        [diverted] = [e for e in await events(redis) if e["type"] == "call.diverted"]
        assert diverted["data"] == {
            "call_sid": sid,
            "from": "+15557654321",
            "reason": "closed-hours",
        }
        assert diverted["audience"] == ""


# The spring-forward day (23 hours): 01:59 EST is followed by 03:00 EDT; the fall-back
# day (25 hours): both 01:30s are inside 01:00-02:00.
DST_INSTANTS = [
    ("2027-03-14T00:59:00-05:00", False),
    ("2027-03-14T01:59:00-05:00", True),
    ("2027-03-14T03:00:00-04:00", True),
    ("2027-03-14T04:00:00-04:00", False),
    ("2026-11-01T01:30:00-04:00", True),
    ("2026-11-01T01:30:00-05:00", True),
    ("2026-11-01T02:00:00-05:00", False),
]


async def test_hours_are_the_centers_wall_clock_across_dst_changes(
    twilio, redis, redis_server, monkeypatch
):
    async with served(
        twilio,
        redis_server,
        center_timezone=NEW_YORK,
        business_hours=hours("Sun 01:00-02:00; Sun 03:00-04:00"),
    ) as (_app, voice):
        for when, is_open in DST_INSTANTS:
            _, twiml = await call_at(voice, monkeypatch, ms(when))
            assert ([child.tag for child in twiml] == ["Dial"]) is is_open, when


async def test_a_holiday_is_closed_all_day_in_the_centers_zone(
    twilio, redis, redis_server, monkeypatch
):
    async with served(
        twilio,
        redis_server,
        center_timezone=NEW_YORK,
        holidays=frozenset({date(2026, 12, 25)}),
        closed_message=CLOSED,
    ) as (_app, voice):
        # 2026-12-25 00:30 UTC is still the 24th in New York: open.
        _, before = await call_at(voice, monkeypatch, ms("2026-12-25T00:30:00+00:00"))
        assert [child.tag for child in before] == ["Dial"]
        _, during = await call_at(voice, monkeypatch, ms("2026-12-25T05:00:00+00:00"))
        is_voicemail(during, CLOSED)
        _, after = await call_at(voice, monkeypatch, ms("2026-12-26T05:00:00+00:00"))
        assert [child.tag for child in after] == ["Dial"]


async def test_with_nobody_signed_in_callers_leave_a_message_only_when_asked_to(
    twilio, redis, redis_server
):
    async with served(twilio, redis_server) as (_app, voice):
        _, twiml = await voice.call_in()  # the default: they wait, as in §1
        assert [child.tag for child in twiml] == ["Dial"]
    await redis.flushdb()
    async with served(twilio, redis_server, nobody_signed_in="voicemail") as (app, voice):
        _, twiml = await voice.call_in()
        is_voicemail(twiml, "Sorry, nobody is available to take your call right now.")
        [diverted] = [e for e in await events(redis) if e["type"] == "call.diverted"]
        assert diverted["data"]["reason"] == "no-agents"
        bob = await login(app, redis, "bob")
        await set_available(bob)
        assert (await bob.post("/api/me/status", json={"status": "offline"})).status_code == 200
        _, twiml = await voice.call_in()  # signed in once, offline now: nobody
        assert [child.tag for child in twiml][-1] == "Record"
        alice = await login(app, redis, "alice")
        await set_available(alice)
        _, twiml = await voice.call_in()
        assert [child.tag for child in twiml] == ["Dial"]


# -- messages ------------------------------------------------------------------------------


def recording_sid() -> str:
    return "RE" + secrets.token_hex(16)


async def message(
    voice: AppVoice, twiml: ElementTree.Element, sid: str, status: str, duration: int = 7
) -> Any:
    """The ``<Record>``'s status callback, signed, as Twilio sends it (RecordVerb)."""
    record = twiml.find("Record")
    assert record is not None
    call = dict(
        part.split("=") for part in urlsplit(record.get("recordingStatusCallback")).query.split("&")
    )
    params = {
        "AccountSid": voice.account_sid,
        "CallSid": call["call"],
        "RecordingSid": sid,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{voice.account_sid}/Recordings/{sid}",
        "RecordingStatus": status,
        "RecordingDuration": str(duration) if status == "completed" else "0",
        "RecordingChannels": "1",
        "RecordingSource": "RecordVerb",
        "RecordingStartTime": "Fri, 27 Nov 2026 22:00:00 +0000",
    }
    return await voice.send(Delivery(record.get("recordingStatusCallback"), params))


async def state_of(client: Any) -> dict[str, Any]:
    response = await client.get("/api/state")
    assert response.status_code == 200
    return await response.get_json()


async def test_a_message_becomes_one_voicemail_that_one_agent_claims_and_closes(
    twilio, redis, redis_server
):
    async with served(twilio, redis_server, nobody_signed_in="voicemail") as (app, voice):
        alice = await login(app, redis, "alice")
        bob = await login(app, redis, "bob")
        sue = await login(app, redis, "sue", role="supervisor")
        caller, twiml = await voice.call_in("+15551112222")
        sid = recording_sid()
        assert (await message(voice, twiml, sid, "completed", 7)).status_code == 204
        assert (await message(voice, twiml, sid, "completed", 7)).status_code == 204  # again
        created = [e for e in await events(redis) if e["type"] == "voicemail.created"]
        assert len(created) == 1 and created[0]["audience"] == "*"
        shape = {
            "id": caller,
            "from": "+15551112222",
            "duration": 7,
            "recording": {"sid": sid, "duration": 7, "url": f"/api/recordings/{sid}"},
            "status": "new",
            "claimed_by": None,
            "disposition": None,
            "reason": "no-agents",
        }
        for client in (alice, bob, sue):
            [shown] = (await state_of(client))["voicemails"]
            assert {k: v for k, v in shown.items() if k != "at"} == shape

        # alice and bob claim at once: one wins, the other is told it is taken.
        answers = await asyncio.gather(
            alice.post(f"/api/voicemails/{caller}/claim"),
            bob.post(f"/api/voicemails/{caller}/claim"),
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        winner, loser = (alice, bob) if answers[0].status_code == 200 else (bob, alice)
        name = "alice" if winner is alice else "bob"
        assert (await state_of(loser))["voicemails"] == []
        [mine] = (await state_of(winner))["voicemails"]
        assert (mine["status"], mine["claimed_by"]) == ("claimed", name)
        [seen] = (await state_of(sue))["voicemails"]
        assert seen["claimed_by"] == name
        # The loser cannot close it (as for a message they cannot see); a bad
        # disposition is refused; the claimer closes it and it leaves every list.
        response = await loser.post(
            f"/api/voicemails/{caller}/close", json={"disposition": "Resolved"}
        )
        assert response.status_code == 404
        response = await winner.post(
            f"/api/voicemails/{caller}/close", json={"disposition": "Nope"}
        )
        assert response.status_code == 400
        assert "disposition" in (await response.get_json())["error"]
        response = await winner.post(
            f"/api/voicemails/{caller}/close", json={"disposition": "Resolved"}
        )
        assert response.status_code == 200
        assert (await response.get_json())["status"] == "closed"
        for client in (alice, bob, sue):
            assert (await state_of(client))["voicemails"] == []
        updates = [e for e in await events(redis) if e["type"] == "voicemail.updated"]
        assert [(e["data"]["status"], e["audience"]) for e in updates] == [
            ("claimed", "*"),
            ("closed", name),
        ]
        response = await winner.post(f"/api/voicemails/{caller}/claim")
        assert response.status_code == 404
        # Twilio repeats the callback (a retry, a replay): the closed message stays closed.
        assert (await message(voice, twiml, sid, "completed", 7)).status_code == 204
        assert (await state_of(sue))["voicemails"] == []
        assert len([e for e in await events(redis) if e["type"] == "voicemail.created"]) == 1


async def test_a_message_too_short_to_keep_makes_no_voicemail(twilio, redis, redis_server):
    async with served(twilio, redis_server, nobody_signed_in="voicemail") as (app, voice):
        sue = await login(app, redis, "sue", role="supervisor")
        _, twiml = await voice.call_in()
        assert (await message(voice, twiml, recording_sid(), "absent")).status_code == 204
        assert (await state_of(sue))["voicemails"] == []
        assert not [e for e in await events(redis) if e["type"].startswith("voicemail.")]


async def test_bad_voicemail_requests_get_clear_answers(twilio, redis, redis_server):
    async with served(twilio, redis_server, nobody_signed_in="voicemail") as (app, voice):
        alice = await login(app, redis, "alice")
        assert (await alice.post("/api/voicemails/nope/claim")).status_code == 404
        unknown = "CA" + "0" * 32
        assert (await alice.post(f"/api/voicemails/{unknown}/claim")).status_code == 404
        response = await alice.post(f"/api/voicemails/{unknown}/close", json={"disposition": ""})
        assert response.status_code == 400
        # the recording route needs its call in the signed query
        _, twiml = await voice.call_in()
        record = twiml.find("Record")
        url = record.get("recordingStatusCallback")
        params = {"AccountSid": voice.account_sid, "RecordingSid": recording_sid()}
        for wrong in (url.replace("call=", "call=x"), url.replace("call=", "other=")):
            answer = await voice.send(Delivery(wrong, params))
            assert answer.status_code == 400, await answer.get_data(as_text=True)
        answer = await voice.send(Delivery(url, {**params, "RecordingStatus": "nonsense"}))
        assert answer.status_code == 400


async def test_the_call_and_its_message_reach_the_history(
    twilio, redis, redis_server, database_url, pg
):
    async with served(twilio, redis_server, database_url, nobody_signed_in="voicemail") as (
        app,
        voice,
    ):
        alice = await login(app, redis, "alice")
        sue = await login(app, redis, "sue", role="supervisor")
        caller, twiml = await voice.call_in("+15551112222")
        sid = recording_sid()
        await message(voice, twiml, sid, "completed", 9)
        silent, twiml = await voice.call_in("+15553334444")  # hangs up before the beep
        assert (await alice.post(f"/api/voicemails/{caller}/claim")).status_code == 200
        response = await alice.post(
            f"/api/voicemails/{caller}/close", json={"disposition": "Follow-up"}
        )
        assert response.status_code == 200

        async def stored() -> dict[str, Any]:
            for _ in range(200):
                cur = await pg.execute("SELECT * FROM calls WHERE disposition IS NOT NULL")
                rows = await cur.fetchall()
                if rows:
                    return rows[0]
                await asyncio.sleep(0.05)
            raise AssertionError("the voicemail never reached the history")

        row = await stored()
        assert row["id"] == caller and row["outcome"] == "voicemail" and row["offered"] is False
        assert row["voicemail"] == {"sid": sid, "duration": 9}
        assert row["disposition"] == "Follow-up" and row["agents"] == ["alice"]
        cur = await pg.execute(
            "SELECT outcome, offered, wait_ms FROM calls WHERE id = %s", (silent,)
        )
        assert await cur.fetchone() == {"outcome": "no-agents", "offered": False, "wait_ms": None}
        # alice (who closed it) and supervisors find it; its timeline tells the story
        response = await alice.get(f"/api/calls/{caller}")
        assert response.status_code == 200
        call = await response.get_json()
        assert call["voicemail"] == {"sid": sid, "duration": 9, "url": f"/api/recordings/{sid}"}
        details = [entry["detail"] for entry in call["timeline"]]
        assert details == [
            "called with nobody signed in: offered voicemail",
            "left a message (9 s)",
            "alice claimed the message",
            "alice closed the message (Follow-up)",
        ]
        assert (await sue.get(f"/api/calls/{silent}")).status_code == 200
        assert json.dumps(call)  # plain JSON


async def test_an_open_voicemails_message_is_not_deleted_until_it_is_closed(
    twilio, redis, redis_server, database_url, pg
):
    async with served(twilio, redis_server, database_url, nobody_signed_in="voicemail") as (
        app,
        voice,
    ):
        sue = await login(app, redis, "sue", role="supervisor")
        caller, twiml = await voice.call_in("+15551112222")
        recording = twilio.add_message(caller, duration=6)
        assert (await message(voice, twiml, recording.sid, "completed", 6)).status_code == 204
        response = await sue.delete(f"/api/recordings/{recording.sid}")
        assert response.status_code == 409
        assert "close the voicemail" in (await response.get_json())["error"]
        played = await sue.get(f"/api/recordings/{recording.sid}")
        assert played.status_code == 200 and (await played.get_data())[:4] == b"RIFF"
        closed = await sue.post(f"/api/voicemails/{caller}/close", json={"disposition": "Other"})
        assert closed.status_code == 200

        async def stored() -> None:
            for _ in range(200):
                cur = await pg.execute("SELECT 1 FROM calls WHERE disposition = 'Other'")
                if await cur.fetchone():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the closed voicemail never reached the history")

        await stored()
        response = await sue.delete(f"/api/recordings/{recording.sid}")
        assert response.status_code == 200, await response.get_data(as_text=True)
        cur = await pg.execute("SELECT voicemail FROM calls WHERE id = %s", (caller,))
        assert await cur.fetchone() == {"voicemail": None}
