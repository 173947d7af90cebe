"""Reconcile (README.md, "Reconcile"): Redis lost its data while calls were live; the app
rebuilds conferences, participants and busy agents from Twilio's REST API, and the
real callbacks that follow fold onto the rebuilt picture as if nothing happened."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from console.domain import keys
from console.domain.derive import derive
from console.domain.records import ConferenceRecord
from console.domain.users import add_user
from console.extension import settings_of
from console.telephony import reconcile as reconcile_module
from console.telephony.gateway import TwilioGateway
from console.telephony.reconcile import MARKER, AutoReconcile, reconcile
from console.telephony.runner import Runner
from console.urls import call_status_url
from simulator.testing import ConferenceTrack, Delivery, TwilioDouble, TwilioVoice, call_sid
from tests.conftest import (
    ACCOUNT_SID,
    API_KEY,
    API_SECRET,
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
)
from tests.support.flow_helpers import (
    PASSWORD,
    agent_answers,
    agent_status,
    customer_waits,
    dials_to,
    events,
    login,
    set_available,
    state,
)
from warmline.app import create_app

CALLER_ID = "+15550001111"
T0 = datetime(2026, 11, 25, 11, 0, 0, tzinfo=UTC)


@dataclass
class Seeded:
    """What Twilio has live before Redis lost it."""

    solo: str  # customer + carol
    solo_sid: str
    carol: str  # carol's CallSid
    transfer: str  # customer + alice + bob (mid-transfer) + sam listening
    transfer_sid: str
    alice: str
    alice_label: str
    bob: str
    bob_label: str
    sam: str
    waiting: str  # a customer alone in a conference that has not started


def _customer(double: TwilioDouble, conference: str, name: str, at: int, **flags: Any) -> None:
    double.add_call(to=CALLER_ID, from_="+15557654321", sid=name)
    double.add_participant(
        conference,
        name,
        label="customer",
        end_conference_on_exit=True,
        start_conference_on_enter=False,
        created=T0 + timedelta(seconds=at),
        **flags,
    )
    double.set_created(conference, T0 + timedelta(seconds=at))


def _softphone(
    double: TwilioDouble, conference: str, username: str, label: str, at: int, **flags: Any
) -> str:
    sid = double.add_call(to=f"client:{username}", from_=CALLER_ID, direction="outbound-api")
    at_time = T0 + timedelta(seconds=at)
    double.add_participant(conference, sid, label=label, created=at_time, **flags)
    return sid


def seed(double: TwilioDouble) -> Seeded:
    solo = call_sid()
    solo_sid = double.add_conference(solo)
    _customer(double, solo_sid, solo, 0)
    carol = _softphone(
        double, solo_sid, "carol", "dial-" + "c" * 16, 20, end_conference_on_exit=True
    )

    transfer = call_sid()
    transfer_sid = double.add_conference(transfer)
    _customer(double, transfer_sid, transfer, 5)
    alice_label, bob_label = "dial-" + "a" * 16, "dial-" + "b" * 16
    alice = _softphone(double, transfer_sid, "alice", alice_label, 30)
    bob = _softphone(double, transfer_sid, "bob", bob_label, 60)
    sam = _softphone(double, transfer_sid, "sam", "dial-" + "5" * 16, 70, muted=True)

    waiting = call_sid()
    waiting_sid = double.add_conference(waiting, status="init")
    _customer(double, waiting_sid, waiting, 10)
    return Seeded(
        solo,
        solo_sid,
        carol,
        transfer,
        transfer_sid,
        alice,
        alice_label,
        bob,
        bob_label,
        sam,
        waiting,
    )


async def startup_reconciled(app: Any) -> None:
    """The app's own start-up reconcile (against an empty Twilio) has finished."""
    auto = AutoReconcile.of(app)
    deadline = time.monotonic() + 10
    while auto.runs < 1:
        assert time.monotonic() < deadline, "the start-up reconcile never finished"
        await asyncio.sleep(0.02)


async def supervisor(app: Any, redis: Redis) -> Any:
    await add_user(redis, "sam", "supervisor", PASSWORD)
    client = app.test_client()
    response = await client.post("/login", form={"username": "sam", "password": PASSWORD})
    assert response.status_code == 303
    return client


async def run(app: Any, redis: Redis) -> reconcile_module.ReconcileReport:
    """Reconcile as the app does: effects go to the runner."""
    report = await reconcile(redis, TwilioGateway.of(app), settings_of(app))
    Runner.of(app).spawn(report.effects)
    await Runner.of(app).drain()
    return report


def conference(snapshot: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((c for c in snapshot["conferences"] if c["name"] == name), None)


def people(conf: dict[str, Any]) -> dict[str, tuple[str, str | None, bool, bool, bool]]:
    return {
        p["call_sid"]: (p["role"], p["agent"], p["muted"], p["hold"], p["coaching"])
        for p in conf["participants"]
    }


async def call_ended(voice: TwilioVoice, name: str, dial: str, sid: str, username: str) -> None:
    """Twilio's call-progress ``completed`` for a call the app placed before Redis
    lost it: to the status URL the app gave then (same conference and dial id)."""
    url = call_status_url(settings_of(voice.app), name, dial)
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": "completed",
        "CallbackSource": "call-progress-events",
        "Direction": "outbound-api",
        "From": CALLER_ID,
        "To": f"client:{username}",
        "SequenceNumber": "4",
        "Timestamp": voice.tick(),
    }
    response = await voice.send(Delivery(url, params))
    assert response.status_code == 204


async def test_reconcile_rebuilds_the_live_picture_and_real_callbacks_fold_onto_it(
    app, redis, twilio, voice
):
    await startup_reconciled(app)
    seeded = seed(twilio)
    for name in ("alice", "bob", "carol"):
        await add_user(redis, name, "agent", PASSWORD)
    sam = await supervisor(app, redis)

    report = await run(app, redis)

    assert sorted(r.name for r in report.rebuilt) == sorted(
        [seeded.solo, seeded.transfer, seeded.waiting]
    )
    snapshot = await state(sam)
    solo = conference(snapshot, seeded.solo)
    assert solo is not None and solo["status"] == "in-progress" and solo["sid"] == seeded.solo_sid
    assert people(solo) == {
        seeded.solo: ("customer", None, False, False, False),
        seeded.carol: ("agent", "carol", False, False, False),
    }
    assert solo["from"] == "+15557654321"
    mid = conference(snapshot, seeded.transfer)
    assert mid is not None and mid["status"] == "in-progress"
    assert people(mid) == {
        seeded.transfer: ("customer", None, False, False, False),
        seeded.alice: ("agent", "alice", False, False, False),
        seeded.bob: ("agent", "bob", False, False, False),
        seeded.sam: ("supervisor", "sam", True, False, False),
    }
    for name in ("alice", "bob", "carol"):
        assert agent_status(snapshot, name) == "busy"
    assert [q["call_sid"] for q in snapshot["queue"]] == [seeded.waiting]
    waiting = conference(snapshot, seeded.waiting)
    assert waiting is not None and waiting["status"] == "waiting"
    kinds = [e["type"] for e in await events(redis)]
    assert kinds.count("conference.started") == 2
    assert kinds.count("participant.joined") == 7
    # Nobody is dropped: alice and bob both keep endConferenceOnExit off.
    assert twilio.participant_updates() == []

    # Twilio's numbering for the transfer conference went on while Redis was gone.
    voice.conferences[seeded.transfer] = ConferenceTrack(seeded.transfer_sid, itertools.count(50))
    await voice.event(
        seeded.transfer,
        "participant-leave",
        seeded.alice,
        ParticipantLabel=seeded.alice_label,
        ParticipantCallStatus="completed",
        ReasonParticipantLeft="participant_hung_up",
    )
    await call_ended(voice, seeded.transfer, seeded.alice_label, seeded.alice, "alice")
    await voice.settle()
    snapshot = await state(sam)
    # alice is released as after any call, and routing offers her the waiting customer
    assert agent_status(snapshot, "alice") == "ringing"
    assert len(dials_to(voice, "alice")) == 1
    assert snapshot["queue"][0]["call_sid"] == seeded.waiting
    assert agent_status(snapshot, "bob") == "busy"
    mid = conference(snapshot, seeded.transfer)
    assert mid is not None
    assert set(people(mid)) == {seeded.transfer, seeded.bob, seeded.sam}
    # bob, now alone with the customer, ends the call by hanging up (docs/call-flow.md)
    [update] = twilio.participant_updates()
    assert seeded.bob in update.path and update.param("EndConferenceOnExit") == "true"

    await voice.event(
        seeded.transfer,
        "participant-leave",
        seeded.transfer,
        ParticipantLabel="customer",
        EndConferenceOnExit=True,
        ParticipantCallStatus="completed",
    )
    await voice.event(
        seeded.transfer,
        "conference-end",
        ReasonConferenceEnded="participant-with-end-conference-on-exit-left",
    )
    await voice.settle()
    snapshot = await state(sam)
    assert conference(snapshot, seeded.transfer) is None
    assert agent_status(snapshot, "bob") == "available"
    assert agent_status(snapshot, "carol") == "busy"
    assert conference(snapshot, seeded.solo) is not None


async def test_a_second_reconcile_changes_nothing_and_roles_come_from_flags_without_users(
    app, redis, twilio
):
    await startup_reconciled(app)
    seeded = seed(twilio)  # no users in Redis: sam is a supervisor because he is muted
    first = await run(app, redis)
    assert len(first.rebuilt) == 3
    record = ConferenceRecord.from_json(await redis.get(keys.conference(seeded.transfer)))
    view = derive(record)
    assert view.participants[seeded.sam].role == "supervisor"
    assert view.participants[seeded.alice].role == "agent"
    assert all(c.seq < 0 for c in record.callbacks.values())
    stored = {
        k: await redis.get(keys.conference(k))
        for k in (seeded.solo, seeded.transfer, seeded.waiting)
    }
    agents = await redis.hgetall(keys.AGENTS)
    logged = await redis.xlen(keys.EVENTS)

    second = await run(app, redis)

    assert second.rebuilt == [] and second.unchanged == 3 and second.effects == []
    assert await redis.xlen(keys.EVENTS) == logged
    assert await redis.hgetall(keys.AGENTS) == agents
    for name, raw in stored.items():
        assert await redis.get(keys.conference(name)) == raw


async def test_a_partial_record_from_a_callback_after_the_loss_is_completed(
    app, redis, twilio, voice
):
    await startup_reconciled(app)
    seeded = seed(twilio)
    # Before reconcile ran, Twilio's next callback for the solo call arrived: the app
    # made a record of it alone and, seeing nobody with the customer, queued them.
    voice.conferences[seeded.solo] = ConferenceTrack(seeded.solo_sid, itertools.count(40))
    await voice.event(seeded.solo, "participant-modify", seeded.carol, EndConferenceOnExit=True)
    assert seeded.solo in await redis.lrange(keys.QUEUE, 0, -1)

    await run(app, redis)

    queue = await redis.lrange(keys.QUEUE, 0, -1)
    assert seeded.solo not in queue and queue == [seeded.waiting]
    record = ConferenceRecord.from_json(await redis.get(keys.conference(seeded.solo)))
    view = derive(record)
    assert {p.role for p in view.participants.values()} == {"customer", "agent"}
    assert view.status == "in-progress"
    agents = await redis.hgetall(keys.AGENTS)
    assert '"status":"busy"' in agents["carol"]


async def test_start_up_reconciles_in_the_background_and_again_when_redis_empties(
    settings, redis, redis_server, twilio, monkeypatch
):
    monkeypatch.setattr(reconcile_module, "CHECK_SECONDS", 0.05)
    seeded = seed(twilio)
    app = create_app(settings, redis_url=redis_server.url)
    async with app.test_app():
        assert await redis.exists(MARKER)  # claimed before serving
        await startup_reconciled(app)
        assert (await redis.get(MARKER)).startswith("done:")
        assert await redis.ttl(MARKER) == -1
        assert await redis.sismember(keys.LIVE, seeded.transfer)

        await redis.flushdb()  # Redis restarts empty while the app runs
        deadline = time.monotonic() + 10
        while AutoReconcile.of(app).runs < 2:
            assert time.monotonic() < deadline, "the emptied Redis was never reconciled"
            await asyncio.sleep(0.05)
        assert await redis.sismember(keys.LIVE, seeded.transfer)
        agents = await redis.hgetall(keys.AGENTS)
        assert '"status":"busy"' in agents["alice"]


async def test_only_one_process_reconciles_an_empty_redis(redis):
    first = await reconcile_module.claim(redis)
    assert first is not None
    assert await reconcile_module.claim(redis) is None
    await reconcile_module.finish(redis, first, done=False)  # failed: retry later
    assert 0 < await redis.ttl(MARKER) <= reconcile_module.RETRY_SECONDS
    await redis.delete(MARKER)
    token = await reconcile_module.claim(redis)
    assert token is not None
    await reconcile_module.finish(redis, "running:someone-else", done=True)
    assert await redis.get(MARKER) == token  # not ours to finish
    await reconcile_module.finish(redis, token, done=True)
    assert (await redis.get(MARKER)).startswith("done:") and await redis.ttl(MARKER) == -1


# -- the command line -----------------------------------------------------------------


def cli_env(api_base_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS"))}
    env.update(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_KEY=API_KEY,
        TWILIO_API_SECRET=API_SECRET,
        TWILIO_CALLER_ID=CALLER_ID,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        SECRET_KEY="test-secret-key",
        TWILIO_API_BASE_URL=api_base_url,
        REDIS_URL=redis_url,
    )
    return env


async def warmline(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in a subprocess without blocking the loop the double serves on."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warmline.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_reconcile_prints_one_line_per_conference_and_a_summary(
    redis, redis_server, twilio
):
    seeded = seed(twilio)
    twilio.update_participant(seeded.solo_sid, seeded.carol, end_conference_on_exit=False)
    code, out, err = await warmline(cli_env(twilio.base_url, redis_server.url), "reconcile")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 4, out
    assert any(line.startswith(f"rebuilt {seeded.transfer} (in-progress)") for line in lines)
    assert any(f"{seeded.waiting} (init)" in line and "queue" in line for line in lines)
    assert lines[-1] == "reconciled 3 live conference(s) on Twilio: 3 rebuilt, 0 already known"
    assert await redis.sismember(keys.LIVE, seeded.solo)
    assert (await redis.get(MARKER)).startswith("done:")
    # carol, alone with the customer, gets endConferenceOnExit back: the CLI applies it
    [update] = twilio.participant_updates()
    assert seeded.carol in update.path and update.param("EndConferenceOnExit") == "true"

    code, out, err = await warmline(cli_env(twilio.base_url, redis_server.url), "reconcile")
    assert code == 0, err
    assert out.strip().splitlines() == [
        "reconciled 3 live conference(s) on Twilio: 0 rebuilt, 3 already known"
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("down", ["twilio", "redis"])
async def test_cli_reconcile_says_what_cannot_be_reached_in_one_line(redis_server, down):
    twilio_url = f"http://127.0.0.1:{free_port()}" if down == "twilio" else "http://127.0.0.1:9"
    redis_url = f"redis://127.0.0.1:{free_port()}/0" if down == "redis" else redis_server.url
    code, out, err = await warmline(cli_env(twilio_url, redis_url), "reconcile")
    assert code == 1
    assert "Traceback" not in err + out
    [line] = err.strip().splitlines()
    expected = "cannot reach Twilio" if down == "twilio" else "cannot reach Redis"
    assert line.startswith(f"warmline: {expected}"), line
    assert AUTH_TOKEN not in err


async def test_a_conference_twilio_ended_while_redis_lost_the_end_is_ended_and_frees_its_agent(
    app, redis, twilio, voice
):
    """A failover dropped the conference-end the old master had taken: Redis still holds
    the call in progress and its agent busy. Reconcile asks Twilio, which says completed."""
    await startup_reconciled(app)
    client = await login(app, redis, "alice")
    await set_available(client)
    name = await customer_waits(voice)
    await agent_answers(voice, name, "alice")
    assert agent_status(await state(client), "alice") == "busy"
    twilio.set_conference_status(voice.conferences[name].sid, "completed")  # end lost
    waiting = await customer_waits(voice)  # another call, still live at Twilio: untouched
    twilio.set_conference_status(voice.conferences[waiting].sid, "init")
    gone = await customer_waits(voice)  # a caller who hung up while waiting: end lost too
    twilio.set_conference_status(voice.conferences[gone].sid, "completed")
    assert await redis.lrange(keys.QUEUE, 0, -1) == [waiting, gone]

    report = await run(app, redis)

    assert sorted(report.ended) == sorted([name, gone]) and not report.rebuilt
    assert "2 ended on Twilio" in report.summary()
    assert await redis.lrange(keys.QUEUE, 0, -1) == [waiting]
    record = ConferenceRecord.from_json(await redis.get(keys.conference(name)))
    assert derive(record).status == "ended"
    assert not await redis.sismember(keys.LIVE, name)
    assert await redis.sismember(keys.LIVE, waiting)
    assert agent_status(await state(client), "alice") != "busy"
    assert (await run(app, redis)).ended == []  # a second run changes nothing
