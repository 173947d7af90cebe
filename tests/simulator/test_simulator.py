"""The real app (`warmline serve`, a subprocess) against the Twilio simulator, both
over HTTP: the call flow of docs/call-flow.md, a failed transfer, a whisper, chaos vs
order, and the simulator's own wire fidelity (signatures, REST JSON the twilio client
parses)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from console.domain.users import add_user
from simulator import Chaos, LoadPlan, Simulator
from simulator.testing import ACCOUNT_SID, AUTH_TOKEN
from tests.support.servers import AppServer, app_server
from tests.support.waiting import until
from warmline.embedded_redis import EmbeddedRedis

PASSWORD = "correct horse battery"
SCALE = 0.05  # 20 s of simulated ringing is 1 s here
APP_ENV = {"RING_TIMEOUT_SECONDS": "10"}


class Console:
    """One logged-in user of the app, over HTTP with a cookie jar."""

    def __init__(self, app: AppServer, session: aiohttp.ClientSession) -> None:
        self.app = app
        self.session = session

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.session.request(method, self.app.url + path, json=body) as response:
            text = await response.text()
            assert response.status == expect, f"{method} {path}: {response.status} {text}"
            return await response.json() if text else None

    async def state(self) -> dict[str, Any]:
        return await self.call("GET", "/api/state")


@asynccontextmanager
async def console(
    sim: Simulator, app: AppServer, redis: Redis, name: str, role: str = "agent"
) -> AsyncIterator[Console]:
    """Log ``name`` in; their softphone registers with the simulator first."""
    await add_user(redis, name, role, PASSWORD)
    sim.phone(name)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        form = {"username": name, "password": PASSWORD}
        async with session.post(app.url + "/login", data=form, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        user = Console(app, session)
        if role == "agent":
            await user.call("POST", "/api/me/status", {"status": "available"})
        yield user


@asynccontextmanager
async def world(
    redis_server: EmbeddedRedis, log_dir: Path, chaos: Chaos | None = None
) -> AsyncIterator[tuple[Simulator, AppServer]]:
    """A simulator and a real app pointed at each other."""
    sim = Simulator("http://127.0.0.1:9", ACCOUNT_SID, AUTH_TOKEN, chaos=chaos, time_scale=SCALE)
    await sim.start()
    try:
        async with app_server(redis_server.url, sim.base_url, log_dir, **APP_ENV) as app:
            sim.point_at(app.url)
            yield sim, app
    finally:
        await sim.stop()


def agent_status(state: dict[str, Any], name: str) -> str:
    return next(a["status"] for a in state["agents"] if a["username"] == name)


def conference_in(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((c for c in state["conferences"] if c["name"] == name), None)


def roles(conference: dict[str, Any] | None) -> list[tuple[str, str | None]]:
    if conference is None:
        return []
    return sorted((p["role"], p["agent"]) for p in conference["participants"])


async def customer_reaches(sim: Simulator, boss: Console, agent: str) -> str:
    """A customer calls; ``agent`` is dialed, answers and joins; returns the name."""
    phone = sim.phone(agent)
    customer = await sim.call_in("+15557654321")
    phone.answer(await phone.next_call())

    async def joined() -> bool:
        conf = conference_in(await boss.state(), customer)
        return conf is not None and ("agent", agent) in roles(conf)

    await until(joined)
    return customer


async def warm_transfer(sim: Simulator, first: Console, to: str, name: str) -> dict[str, Any]:
    transfer = await first.call(
        "POST", "/api/transfers", {"conference": name, "to": to, "note": "VIP"}, 201
    )
    phone = sim.phone(to)
    phone.answer(await phone.next_call())
    return transfer


# -- the flows ----------------------------------------------------------------------------


async def test_complete_flow_of_spec_section_1(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        world(redis_server, tmp_path) as (sim, app),
        console(sim, app, redis, "boss", "supervisor") as boss,
        console(sim, app, redis, "alice") as alice,
        console(sim, app, redis, "bob") as bob,
    ):
        name = await customer_reaches(sim, boss, "alice")
        state = await boss.state()
        assert conference_in(state, name)["status"] == "in-progress"
        assert agent_status(state, "alice") == "busy"
        assert sim.conference(name)["status"] == "in-progress"

        transfer = await warm_transfer(sim, alice, "bob", name)

        async def three_way() -> bool:
            return ("agent", "bob") in roles(conference_in(await boss.state(), name))

        await until(three_way)
        await alice.call("POST", f"/api/conferences/{name}/leave")

        async def handed_over() -> bool:
            state = await boss.state()
            done = [t for t in state["transfers"] if t["id"] == transfer["id"]]
            conf = conference_in(state, name)
            return (
                roles(conf) == [("agent", "bob"), ("customer", None)]
                and bool(done)
                and done[0]["status"] == "completed"
            )

        await until(handed_over)
        await bob.call("POST", f"/api/conferences/{name}/leave")

        async def over() -> bool:
            state = await boss.state()
            conf = conference_in(state, name)
            return (conf is None or conf["status"] == "ended") and all(
                agent_status(state, n) == "available" for n in ("alice", "bob")
            )

        await until(over)
        await sim.idle()
        assert sim.conference(name)["status"] == "completed"
        assert sim.board.calls[name].status == "completed"


@pytest.mark.parametrize(("action", "reason"), [("decline", "busy"), ("ignore", "no-answer")])
async def test_failed_transfer_keeps_the_customer_with_the_first_agent(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path, action: str, reason: str
) -> None:
    async with (
        world(redis_server, tmp_path) as (sim, app),
        console(sim, app, redis, "boss", "supervisor") as boss,
        console(sim, app, redis, "alice") as alice,
        console(sim, app, redis, "bob"),
    ):
        name = await customer_reaches(sim, boss, "alice")
        transfer = await alice.call(
            "POST", "/api/transfers", {"conference": name, "to": "bob"}, 201
        )
        bob = sim.phone("bob")
        ring = await bob.next_call()
        if action == "decline":
            bob.decline(ring)

        async def failed() -> bool:
            state = await boss.state()
            found = [t for t in state["transfers"] if t["id"] == transfer["id"]]
            return bool(found) and found[0]["status"] == "failed"

        await until(failed)
        await sim.idle()
        state = await boss.state()
        assert next(t for t in state["transfers"] if t["id"] == transfer["id"])["reason"] == reason
        assert roles(conference_in(state, name)) == [("agent", "alice"), ("customer", None)]
        assert sim.board.calls[ring].status == reason
        assert agent_status(state, "bob") == "missed"


async def test_supervisor_whisper_then_barge_in_place(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    async with (
        world(redis_server, tmp_path) as (sim, app),
        console(sim, app, redis, "boss", "supervisor") as boss,
        console(sim, app, redis, "alice"),
    ):
        name = await customer_reaches(sim, boss, "alice")
        await boss.call("POST", f"/api/conferences/{name}/monitor", {"mode": "whisper"})
        phone = sim.phone("boss")
        leg = phone.answer(await phone.next_call())

        def supervisor(state: dict[str, Any]) -> dict[str, Any] | None:
            conf = conference_in(state, name) or {"participants": []}
            return next((p for p in conf["participants"] if p["role"] == "supervisor"), None)

        async def coaching(flag: bool) -> bool:
            found = supervisor(await boss.state())
            return found is not None and found["coaching"] is flag

        await until(lambda: coaching(True))
        alice_leg = next(c for c in sim.board.calls.values() if c.identity == "alice")
        assert sim.hub.live(name).participants[leg].call_sid_to_coach == alice_leg.sid

        await boss.call("POST", f"/api/conferences/{name}/monitor", {"mode": "barge"})
        await until(lambda: coaching(False))
        assert [c.identity for c in sim.board.calls.values()].count("boss") == 1  # no re-dial


# -- chaos: the final state does not depend on delivery order ---------------------------


def picture(state: dict[str, Any]) -> dict[str, Any]:
    """The order-independent content of /api/state: no times, no sids."""
    return {
        "agents": sorted((a["username"], a["status"]) for a in state["agents"]),
        "queue": len(state["queue"]),
        "conferences": sorted(
            (
                c["status"],
                tuple(roles(c)),
                tuple(sorted((p["hold"], p["muted"], p["coaching"]) for p in c["participants"])),
            )
            for c in state["conferences"]
        ),
        "transfers": sorted(
            (t["from_agent"], t["to_agent"], t["status"], t["reason"]) for t in state["transfers"]
        ),
    }


def disorder(sim: Simulator) -> tuple[int, int]:
    """(duplicated, out-of-order) conference callbacks as the simulator delivered them."""
    seen: dict[str, int] = {}
    tokens: set[str] = set()
    duplicated = late = 0
    for delivery in sim.deliverer.sent:
        duplicated += delivery.token in tokens
        tokens.add(delivery.token)
        seq = int(delivery.params["SequenceNumber"])
        late += seq < seen.get(delivery.key, -1)
        seen[delivery.key] = max(seq, seen.get(delivery.key, -1))
    return duplicated, late


async def scripted_flow(
    redis_server: EmbeddedRedis, redis: Redis, log_dir: Path, chaos: Chaos | None
) -> list[Any]:
    """The call flow (docs/call-flow.md) with a hold, a handover and an end; the
    pictures after each step, then how disorderly the delivery was."""
    await redis.flushdb()
    pictures = []
    async with (
        world(redis_server, log_dir, chaos) as (sim, app),
        console(sim, app, redis, "boss", "supervisor") as boss,
        console(sim, app, redis, "alice") as alice,
        console(sim, app, redis, "bob") as bob,
    ):

        async def settled() -> dict[str, Any]:
            await sim.idle()
            return picture(await boss.state())

        name = await customer_reaches(sim, boss, "alice")
        pictures.append(await settled())
        await alice.call("POST", f"/api/conferences/{name}/hold", {"call_sid": name, "hold": True})
        pictures.append(await settled())
        await warm_transfer(sim, alice, "bob", name)
        await until(lambda: _has(boss, name, ("agent", "bob")))
        await alice.call("POST", f"/api/conferences/{name}/hold", {"call_sid": name, "hold": False})
        await alice.call("POST", f"/api/conferences/{name}/leave")
        pictures.append(await settled())
        await bob.call("POST", f"/api/conferences/{name}/leave")
        pictures.append(await settled())
        pictures.append(disorder(sim))
    return pictures


async def _has(user: Console, name: str, role: tuple[str, str | None]) -> bool:
    return role in roles(conference_in(await user.state(), name))


async def test_chaos_ends_in_the_same_state_as_orderly_delivery(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    *orderly, calm = await scripted_flow(redis_server, redis, tmp_path, None)
    assert calm == (0, 0)
    assert orderly[-1]["agents"] == [("alice", "available"), ("bob", "available")]
    assert orderly[1]["conferences"][0][2][-1] == (True, False, False)  # the customer held
    for seed in (1, 2, 3):
        *chaotic, (duplicated, late) = await scripted_flow(
            redis_server, redis, tmp_path, Chaos(seed=seed)
        )
        assert duplicated and late, f"seed {seed} delivered in order"
        assert chaotic == orderly, f"seed {seed}"


# -- wire fidelity, against a recording stand-in for the app -----------------------------

CONFERENCE_EVENTS = "start end join leave mute hold modify"


class FakeApp:
    """Answers TwiML like Warmline and records every request exactly as received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.fail_status = 0  # answer this many status callbacks 503 first
        self.url = ""
        self._runner: aiohttp.web.AppRunner | None = None

    def twiml(self, name: str, start: bool, end: bool, label: str) -> str:
        status = f"{self.url}/status#rc=3&amp;rp=5xx,ct,rt"
        return (
            f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Conference '
            f'startConferenceOnEnter="{str(start).lower()}" '
            f'endConferenceOnExit="{str(end).lower()}" '
            f'waitUrl="{self.url}/wait" waitMethod="POST" statusCallback="{status}" '
            f'statusCallbackMethod="POST" statusCallbackEvent="{CONFERENCE_EVENTS}" '
            f'participantLabel="{label}">{name}</Conference></Dial></Response>'
        )

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((f"{self.url}{request.path_qs}", dict(request.headers), form))
        if request.path == "/conference/connect/client":
            body = self.twiml(form["CallSid"], False, True, "customer")
        elif request.path == "/agent":
            body = self.twiml(request.query["conference"], True, True, "agent")
        elif request.path == "/wait":
            body = '<Response><Say>Please hold</Say><Play loop="0">http://x/m.mp3</Play></Response>'
        else:
            if self.fail_status > 0:
                self.fail_status -= 1
                return aiohttp.web.Response(status=503)
            return aiohttp.web.Response(status=204)
        return aiohttp.web.Response(text=body, content_type="text/xml")

    async def __aenter__(self) -> FakeApp:
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def posted(self, path: str) -> list[dict[str, str]]:
        return [form for url, _, form in self.requests if url.startswith(self.url + path)]


@pytest.fixture
async def fake() -> AsyncIterator[tuple[Simulator, FakeApp]]:
    async with FakeApp() as app:
        sim = Simulator(app.url, ACCOUNT_SID, AUTH_TOKEN, time_scale=SCALE, seed=5)
        await sim.start()
        try:
            yield sim, app
        finally:
            await sim.stop()


async def test_every_request_is_signed_as_twilio_signs_and_retried_with_a_token(
    fake: tuple[Simulator, FakeApp],
) -> None:
    sim, app = fake
    app.fail_status = 2
    name = await sim.call_in("+15557654321")
    await sim.idle()
    validator = RequestValidator(AUTH_TOKEN)
    for url, headers, form in app.requests:
        assert "#" not in url
        assert validator.validate(url, form, headers["X-Twilio-Signature"]), url
    joins = app.posted("/status")
    assert [f["StatusCallbackEvent"] for f in joins] == ["participant-join"] * 3  # 2 retries
    tokens = {h["I-Twilio-Idempotency-Token"] for u, h, _ in app.requests if "/status" in u}
    assert len(tokens) == 1
    first = joins[0]
    assert first["FriendlyName"] == name and first["SequenceNumber"] == "1"
    assert (first["StartConferenceOnEnter"], first["EndConferenceOnExit"]) == ("false", "true")
    assert first["ParticipantLabel"] == "customer" and first["ConferenceSid"].startswith("CF")
    voice = app.posted("/conference/connect/client")[0]
    assert (voice["CallStatus"], voice["Direction"], voice["From"]) == (
        "ringing",
        "inbound",
        "+15557654321",
    )
    assert app.posted("/wait"), "the waiting caller hears the waitUrl"


async def test_rest_answers_parse_with_the_twilio_client(fake: tuple[Simulator, FakeApp]) -> None:
    sim, app = fake
    sim.phone("alice")
    http = AsyncTwilioHttpClient()
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http, environment={"X": "1"})
    client.api.base_url = sim.base_url
    try:
        name = await sim.call_in()
        await sim.idle(quiet=0.05)
        call = await client.calls.create_async(
            to="client:alice",
            from_="+15550001111",
            url=f"{app.url}/agent?conference={name}",
            status_callback=f"{app.url}/call-status",
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            timeout=20,
        )
        assert call.status == "queued" and call.sid.startswith("CA")
        sim.phone("alice").answer(await sim.phone("alice").next_call())
        await sim.idle(quiet=0.05)
        assert (await client.calls(call.sid).fetch_async()).status == "in-progress"
        live = await client.conferences.list_async(status="in-progress", friendly_name=name)
        assert [c.friendly_name for c in live] == [name]
        members = await client.conferences(live[0].sid).participants.list_async()
        assert {m.label for m in members} == {"customer", "agent"}
        held = (
            await client.conferences(name)
            .participants(name)
            .update_async(hold=True, hold_url=f"{app.url}/wait", hold_method="POST")
        )
        assert held.hold is True
        added = await client.conferences(name).participants.create_async(
            from_="+15550001111", to="client:boss", label="sup", muted=True
        )
        assert added.call_sid.startswith("CA") and added.muted is True
        with pytest.raises(TwilioRestException) as missing:
            await client.calls("CA" + "0" * 32).fetch_async()
        assert (missing.value.status, missing.value.code) == (404, 20404)
        await client.conferences(name).participants(call.sid).delete_async()
        await sim.idle(quiet=0.05)
        ended = await client.conferences(live[0].sid).fetch_async()
        assert ended.status == "completed"
        events = [f["StatusCallbackEvent"] for f in app.posted("/status")]
        assert "participant-hold" in events and events[-1] == "conference-end"
        progress = [f["CallStatus"] for f in app.posted("/call-status")]
        assert progress[:3] == ["initiated", "ringing", "in-progress"]
        bad = Client(ACCOUNT_SID, "wrong", http_client=http, environment={"X": "1"})
        bad.api.base_url = sim.base_url
        with pytest.raises(TwilioRestException) as denied:
            await bad.calls(call.sid).fetch_async()
        assert (denied.value.status, denied.value.code) == (401, 20003)
    finally:
        await http.close()


async def test_control_api_drives_a_demo_softphone(fake: tuple[Simulator, FakeApp]) -> None:
    sim, app = fake
    origin = {"Origin": app.url}
    async with aiohttp.ClientSession(base_url=sim.base_url) as http:
        async with http.post("/sim/phones/alice/register", headers=origin) as r:
            assert r.headers["Access-Control-Allow-Origin"] == app.url
        async with http.get("/sim/phones/alice/events", headers=origin) as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"

            async def next_event() -> dict[str, Any]:
                while True:
                    line = (await stream.content.readline()).decode()
                    if line.startswith("data: "):
                        return json.loads(line[6:])

            assert (await next_event())["type"] == "hello"
            async with http.post("/sim/calls", json={"from": "+15551112222"}) as r:
                name = (await r.json())["call_sid"]
            await sim.idle(quiet=0.05)
            http_client = AsyncTwilioHttpClient()
            client = Client(
                ACCOUNT_SID, AUTH_TOKEN, http_client=http_client, environment={"X": "1"}
            )
            client.api.base_url = sim.base_url
            leg = await client.calls.create_async(
                to="client:alice?note=VIP",
                from_="+15550001111",
                url=f"{app.url}/agent?conference={name}",
            )
            await http_client.close()
            incoming = await next_event()
            assert incoming["type"] == "incoming" and incoming["call_sid"] == leg.sid
            assert incoming["parameters"] == {"note": "VIP"} and incoming["to"] == "client:alice"
            async with http.post(f"/sim/phones/calls/{leg.sid}/answer") as r:
                assert r.status == 200
            assert (await next_event())["type"] == "connected"
            async with http.post(f"/sim/phones/calls/{leg.sid}/hangup") as r:
                assert r.status == 200
            assert (await next_event())["type"] == "ended"
        async with http.get("/sim/state") as r:
            state = await r.json()
        assert any(c["friendly_name"] == name for c in state["conferences"])
        async with http.get("/") as page, http.get("/static/sim.js") as script:
            assert "sim.js" in await page.text() and "<script>" not in await page.text()
            assert script.status == 200


async def test_load_keeps_calls_in_flight(fake: tuple[Simulator, FakeApp]) -> None:
    sim, _ = fake
    sim.load.start(LoadPlan(in_flight=3, patience=1000))
    await until(lambda: _is(sim.load.describe()["live"] == 3))
    await sim.load.stop()
    assert sim.load.placed == 3
    assert len(sim.hub.conferences) == 3


async def _is(value: bool) -> bool:
    return value
