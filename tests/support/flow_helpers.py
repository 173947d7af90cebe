"""Building blocks for call-flow tests: logged-in users, the event log, and the
common steps (a customer calls, an agent picks up, a colleague joins)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from redis.asyncio import Redis

from console.domain import keys
from console.domain.users import add_user
from console.telephony.runner import Runner
from simulator.testing import Delivery, RecordedRequest, TwilioDouble, TwilioVoice, conference_of

PASSWORD = "correct horse battery"


class AppVoice(TwilioVoice):
    """``TwilioVoice`` for one app under test: ``settle`` drains the app's Runner."""

    def __init__(self, client: Any, double: TwilioDouble, app: Any, base_url: str) -> None:
        super().__init__(client, double, base_url, settle=lambda: Runner.of(app).drain())
        self.app = app


@asynccontextmanager
async def served(
    twilio: TwilioDouble, redis_server: Any, database_url: str | None = None, **overrides: Any
) -> AsyncIterator[tuple[Any, AppVoice]]:
    """An app of its own, with these settings over the test Redis (and a database), and
    the voice of Twilio for it: for tests of settings the shared ``app`` fixture lacks."""
    from tests.conftest import PUBLIC_BASE_URL, make_settings
    from warmline.app import create_app

    settings = make_settings(api_base_url=twilio.base_url, **overrides)
    app = create_app(settings, redis_url=redis_server.url, database_url=database_url)
    async with app.test_app(), app.test_client() as client:
        yield app, AppVoice(client, twilio, app, PUBLIC_BASE_URL)


async def login(app: Any, redis: Redis, username: str, role: str = "agent") -> Any:
    """A test client holding ``username``'s session cookie."""
    await add_user(redis, username, role, PASSWORD)
    client = app.test_client()
    response = await client.post("/login", form={"username": username, "password": PASSWORD})
    assert response.status_code == 303, await response.get_data(as_text=True)
    return client


async def set_available(client: Any) -> None:
    response = await client.post("/api/me/status", json={"status": "available"})
    assert response.status_code == 200, await response.get_data(as_text=True)


async def events(redis: Redis) -> list[dict[str, Any]]:
    """The whole event log, as (type, data) dicts in order."""
    entries = await redis.xrange(keys.EVENTS)
    return [
        {"id": i, "type": f["type"], "data": json.loads(f["data"]), "audience": f["audience"]}
        for i, f in entries
    ]


async def state(client: Any) -> dict[str, Any]:
    response = await client.get("/api/state")
    assert response.status_code == 200
    return await response.get_json()


def agent_status(snapshot: dict[str, Any], username: str) -> str:
    return next(a["status"] for a in snapshot["agents"] if a["username"] == username)


def dials_to(voice: TwilioVoice, username: str) -> list[RecordedRequest]:
    return [r for r in voice.double.calls_created() if r.param("To") == f"client:{username}"]


@dataclass
class Leg:
    """An agent's answered call in a conference."""

    call_sid: str
    label: str
    create: RecordedRequest


async def customer_waits(voice: TwilioVoice) -> str:
    """A customer calls and joins their conference (not started yet)."""
    name, _ = await voice.call_in()
    await customer_joins(voice, name)
    return name


def customer_join(voice: TwilioVoice, name: str) -> Delivery:
    """Twilio's callback for the caller ``name`` joining their conference, as its TwiML
    says (to send, or to send again)."""
    return voice.conference_event(
        name,
        "participant-join",
        name,
        EndConferenceOnExit=True,
        StartConferenceOnEnter=False,
        ParticipantLabel="customer",
    )


async def customer_joins(voice: TwilioVoice, name: str) -> None:
    """Twilio reports the caller ``name`` joining their conference; the app takes it."""
    response = await voice.send(customer_join(voice, name))
    assert response.status_code == 204, await response.get_data(as_text=True)


async def agent_answers(voice: TwilioVoice, name: str, username: str, start: bool = True) -> Leg:
    """The dial to ``username`` rings, they pick up and join the conference."""
    await voice.settle()
    create = dials_to(voice, username)[-1]
    sid = await voice.ring(create)
    twiml = await voice.pick_up(create, sid)
    conference = conference_of(twiml)
    label = conference.get("participantLabel") or ""
    ecoe = conference.get("endConferenceOnExit") == "true"
    await voice.event(
        name, "participant-join", sid, ParticipantLabel=label, EndConferenceOnExit=ecoe
    )
    if start:
        await voice.event(name, "conference-start")
    await voice.settle()
    return Leg(sid, label, create)


async def leg_leaves(voice: TwilioVoice, name: str, leg: Leg, end_on_exit: bool = False) -> None:
    await voice.event(
        name,
        "participant-leave",
        leg.call_sid,
        ParticipantLabel=leg.label,
        EndConferenceOnExit=end_on_exit,
        ParticipantCallStatus="completed",
        ReasonParticipantLeft="participant_hung_up",
    )
    await voice.send(voice.call_status(leg.create, leg.call_sid, "completed"))
    await voice.settle()


async def hang_up_customer(voice: TwilioVoice, name: str, reason: str) -> None:
    """The customer hangs up: they leave (they end the conference on exit), the
    conference ends for ``reason``, and the app's reactions finish."""
    await voice.event(
        name,
        "participant-leave",
        name,
        ParticipantLabel="customer",
        EndConferenceOnExit=True,
        ParticipantCallStatus="completed",
    )
    await voice.event(name, "conference-end", ReasonConferenceEnded=reason)
    await voice.settle()


async def alice_with_customer_bob_available(app: Any, redis: Redis, voice: TwilioVoice) -> dict:
    """alice is with a customer; bob is available for a transfer."""
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(alice)
    name = await customer_waits(voice)
    first = await agent_answers(voice, name, "alice")
    await set_available(bob)
    return {"alice": alice, "bob": bob, "name": name, "first": first}


async def monitored_warm_transfer(app: Any, redis: Redis, voice: TwilioVoice) -> dict[str, Any]:
    """A call with some of everything a timeline tells: alice answers, the supervisor
    sam listens in and leaves, alice holds and resumes the customer, then hands them
    to bob with a warm transfer (note "vip") and leaves. bob is still on the call:
    the caller ends it (``bob`` is his leg)."""
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    sam = await login(app, redis, "sam", role="supervisor")
    await set_available(alice)
    name = await customer_waits(voice)
    first = await agent_answers(voice, name, "alice")
    response = await sam.post(f"/api/conferences/{name}/monitor", json={"mode": "listen"})
    sam_sid = (await response.get_json())["call_sid"]
    label = voice.double.participants_created()[-1].param("Label")
    await voice.event(name, "participant-join", sam_sid, ParticipantLabel=label, Muted=True)
    for hold, event in ((True, "participant-hold"), (False, "participant-unhold")):
        response = await alice.post(
            f"/api/conferences/{name}/hold", json={"call_sid": name, "hold": hold}
        )
        assert response.status_code == 200
        await voice.event(name, event, name, Hold=hold, ParticipantLabel="customer")
    assert (await sam.post(f"/api/conferences/{name}/leave", json={})).status_code == 200
    await voice.event(name, "participant-leave", sam_sid, ParticipantLabel=label)
    await set_available(bob)
    response = await alice.post(
        "/api/transfers", json={"conference": name, "to": "bob", "note": "vip"}
    )
    assert response.status_code == 201
    second = await agent_answers(voice, name, "bob", start=False)
    await leg_leaves(voice, name, first)
    return {"name": name, "alice": alice, "bob": bob, "sam": sam, "second": second}


def tags(twiml: ElementTree.Element) -> list[str]:
    """The verbs of a TwiML answer, in order."""
    return [child.tag for child in twiml]


async def asks_callback(voice: TwilioVoice, redis: Redis, number: str) -> tuple[str, str]:
    """A caller offered the choice at arrival (SPEC §9) presses 1: their CallSid and
    the callback's id (its conference)."""
    sid, twiml = await voice.call_in(number)
    assert tags(twiml) == ["Gather", "Dial"], ElementTree.tostring(twiml)
    answer = await voice.gathered(twiml.find("Gather").get("action"), sid, "1", number)
    assert tags(answer) == ["Say", "Hangup"]
    await voice.settle()
    [queued] = [
        e
        for e in await events(redis)
        if e["type"] == "call.queued"
        and e["data"].get("kind") == "callback"
        and e["data"]["call_sid"] == sid
    ]
    return sid, queued["data"]["callback"]
