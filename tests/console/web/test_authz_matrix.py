"""Who may do what: every route of the URL map, as anonymous / agent / other agent /
supervisor, with the expected status written out (docs/webhooks.md, docs/api.md,
docs/websocket.md), and the security headers on every answer.

The world is a live call: the customer talks to ``alice`` (the agent); ``bob`` is
an agent not involved in it; ``sue`` is a supervisor; ``carol`` is available to
take a transfer. Each cell runs against that same world, restored in Redis before
the cell, so one role's successful action cannot change another role's answer.

A route added to the app without a row here fails
``test_every_route_is_in_the_matrix``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from quart.testing import WebsocketResponseError

from console.domain import voicemails
from console.domain.events import now_ms
from console.extension import SETTINGS_KEY
from console.redis_ext import connect
from console.telephony.runner import Runner
from console.web.auth import SESSION_COOKIE
from tests.support.flow_helpers import agent_answers, customer_waits, login, set_available
from tests.support.redis_state import Saved, dump_all, restore_all

ROLES = ("anonymous", "agent", "other", "supervisor")
WEBHOOK = {"anonymous": 403, "agent": 403, "other": 403, "supervisor": 403}
PUBLIC = {"anonymous": 200, "agent": 200, "other": 200, "supervisor": 200}
API_ANY_USER = {"anonymous": 401, "agent": 200, "other": 200, "supervisor": 200}
API_SUPERVISOR = {"anonymous": 401, "agent": 403, "other": 403, "supervisor": 200}
ANY = {200, 404}


@dataclass(frozen=True)
class Cell:
    """One route's request and the status each role gets."""

    path: str
    expected: dict[str, int | set[int]]
    json: Any = None
    form: dict[str, str] | None = None
    world: str = "call"  # "ringing": alice's transfer to carol is ringing
    locations: dict[str, str] = field(default_factory=dict)


# (method, rule) -> what is sent and what each role gets. "{name}" is the live
# conference (the customer's CallSid), "{customer}" the customer's call, "{transfer}"
# the ringing transfer's id.
MATRIX: dict[tuple[str, str], Cell] = {
    # -- Twilio webhooks: no signature, 403, whoever is logged in ------------------------
    ("POST", "/conference/connect/client"): Cell("/conference/connect/client", WEBHOOK),
    ("GET", "/conference/wait"): Cell("/conference/wait", WEBHOOK),
    ("POST", "/conference/wait"): Cell("/conference/wait", WEBHOOK),
    ("POST", "/conference/connect/agent"): Cell(
        "/conference/connect/agent?conference={name}&dial=dial-x", WEBHOOK
    ),
    ("POST", "/conference/status"): Cell("/conference/status", WEBHOOK),
    ("POST", "/call/status"): Cell("/call/status?conference={name}&dial=dial-x", WEBHOOK),
    ("POST", "/conference/recording"): Cell("/conference/recording?conference={name}", WEBHOOK),
    ("GET", "/conference/recording/notice"): Cell("/conference/recording/notice", WEBHOOK),
    ("POST", "/voicemail/recording"): Cell("/voicemail/recording?call={voicemail}", WEBHOOK),
    ("POST", "/voicemail/done"): Cell("/voicemail/done", WEBHOOK),
    ("POST", "/conference/recording/notice"): Cell("/conference/recording/notice", WEBHOOK),
    ("POST", "/voice/choice"): Cell("/voice/choice?call={customer}&long=0", WEBHOOK),
    ("POST", "/voice/long-wait"): Cell("/voice/long-wait?call={customer}", WEBHOOK),
    # -- JSON API -------------------------------------------------------------------------
    ("GET", "/api/state"): Cell("/api/state", API_ANY_USER),
    ("GET", "/api/me"): Cell("/api/me", API_ANY_USER),
    ("GET", "/api/token"): Cell("/api/token", API_ANY_USER),
    # alice is busy on the call (409); supervisors are never routed (403)
    ("POST", "/api/me/status"): Cell(
        "/api/me/status",
        {"anonymous": 401, "agent": 409, "other": 200, "supervisor": 403},
        json={"status": "offline"},
    ),
    # only an agent in the conference can transfer its customer (409: not in it)
    ("POST", "/api/transfers"): Cell(
        "/api/transfers",
        {"anonymous": 401, "agent": 201, "other": 409, "supervisor": 409},
        json={"conference": "{name}", "to": "carol", "note": "billing"},
    ),
    ("DELETE", "/api/transfers/<transfer_id>"): Cell(
        "/api/transfers/{transfer}",
        {"anonymous": 401, "agent": 200, "other": 403, "supervisor": 200},
        world="ringing",
    ),
    # docs/api.md: leaving a conference one is not in is a 409
    ("POST", "/api/conferences/<name>/leave"): Cell(
        "/api/conferences/{name}/leave",
        {"anonymous": 401, "agent": 200, "other": 409, "supervisor": 409},
        json={},
    ),
    ("POST", "/api/conferences/<name>/hold"): Cell(
        "/api/conferences/{name}/hold",
        {"anonymous": 401, "agent": 200, "other": 403, "supervisor": 200},
        json={"call_sid": "{customer}", "hold": True},
    ),
    ("POST", "/api/conferences/<name>/monitor"): Cell(
        "/api/conferences/{name}/monitor", API_SUPERVISOR, json={"mode": "listen"}
    ),
    ("GET", "/api/conferences/<name>/timeline"): Cell(
        "/api/conferences/{name}/timeline",
        {"anonymous": 401, "agent": 200, "other": 403, "supervisor": 200},
    ),
    ("GET", "/api/figures"): Cell("/api/figures", API_SUPERVISOR),
    ("GET", "/api/webhooks"): Cell("/api/webhooks", API_SUPERVISOR),
    # -- voicemails: the world's message is claimed by alice -----------------------------
    ("POST", "/api/voicemails/<voicemail_id>/claim"): Cell(
        "/api/voicemails/{voicemail}/claim",
        {"anonymous": 401, "agent": 200, "other": 409, "supervisor": 409},
    ),
    ("POST", "/api/voicemails/<voicemail_id>/close"): Cell(
        "/api/voicemails/{voicemail}/close",
        {"anonymous": 401, "agent": 200, "other": 404, "supervisor": 200},
        json={"disposition": "Resolved"},
    ),
    # alice's claim; its caller's number is not one a callback may dial (409 for her)
    ("POST", "/api/voicemails/<voicemail_id>/callback"): Cell(
        "/api/voicemails/{voicemail}/callback",
        {"anonymous": 401, "agent": 409, "other": 409, "supervisor": 409},
    ),
    # the disposition of a call one took: alice's; nobody else took it (404 as unknown)
    ("POST", "/api/calls/<call_id>/wrap-up"): Cell(
        "/api/calls/{name}/wrap-up",
        {"anonymous": 401, "agent": 200, "other": 404, "supervisor": 404},
        json={"disposition": "Resolved", "notes": "asked about billing"},
    ),
    # -- the directory: everyone reads it, supervisors change it --------------------------
    ("GET", "/api/directory"): Cell("/api/directory", API_ANY_USER),
    ("POST", "/api/directory"): Cell(
        "/api/directory",
        {"anonymous": 401, "agent": 403, "other": 403, "supervisor": 201},
        json={"name": "Partner desk", "number": "+14155550100"},
    ),
    ("DELETE", "/api/directory/<entry_id>"): Cell(
        "/api/directory/DE" + "0" * 16,
        {"anonymous": 401, "agent": 403, "other": 403, "supervisor": 404},
    ),
    # -- help requests: alice, on the call, may ask; nobody else is on it ---------------
    ("POST", "/api/help"): Cell(
        "/api/help",
        {"anonymous": 401, "agent": 201, "other": 409, "supervisor": 403},
        json={"conference": "{name}", "text": "angry customer"},
    ),
    ("DELETE", "/api/help/<help_id>"): Cell(
        "/api/help/HP" + "0" * 32,
        {"anonymous": 401, "agent": 404, "other": 404, "supervisor": 404},
    ),
    # -- callbacks: the world has none (who may act on one: tests/webhooks/test_callbacks.py)
    ("POST", "/api/callbacks/<callback_id>/retry"): Cell(
        "/api/callbacks/CB" + "0" * 32 + "/retry",
        {"anonymous": 401, "agent": 404, "other": 404, "supervisor": 404},
    ),
    ("POST", "/api/callbacks/<callback_id>/close"): Cell(
        "/api/callbacks/CB" + "0" * 32 + "/close",
        {"anonymous": 401, "agent": 404, "other": 404, "supervisor": 404},
        json={"disposition": "Resolved"},
    ),
    # -- the history (the matrix's app keeps it; the live call is stored) ---------------
    ("GET", "/api/reports"): Cell("/api/reports?by=agent", API_SUPERVISOR),
    ("GET", "/api/reports.csv"): Cell("/api/reports.csv?by=hour", API_SUPERVISOR),
    ("GET", "/api/calls"): Cell("/api/calls", API_ANY_USER),  # an agent's: only their own
    ("GET", "/api/calls.csv"): Cell("/api/calls.csv", API_ANY_USER),
    # an agent who was not on the call gets the 404 of an unknown id
    ("GET", "/api/calls/<call_id>"): Cell(
        "/api/calls/{name}", {"anonymous": 401, "agent": 200, "other": 404, "supervisor": 200}
    ),
    # an unknown recording; who may play or delete which: tests/console/web/test_recordings.py
    ("GET", "/api/recordings/<sid>"): Cell(
        "/api/recordings/RE" + "0" * 32,
        {"anonymous": 401, "agent": 404, "other": 404, "supervisor": 404},
    ),
    ("DELETE", "/api/recordings/<sid>"): Cell(
        "/api/recordings/RE" + "0" * 32,
        {"anonymous": 401, "agent": 403, "other": 403, "supervisor": 404},
    ),
    # the matrix's call is not recorded: 409 for whoever may pause it
    ("POST", "/api/conferences/<name>/recording"): Cell(
        "/api/conferences/{name}/recording",
        {"anonymous": 401, "agent": 409, "other": 403, "supervisor": 409},
        json={"paused": True},
    ),
    # -- people-facing pages --------------------------------------------------------------
    ("GET", "/login"): Cell(
        "/login",
        {"anonymous": 200, "agent": 303, "other": 303, "supervisor": 303},
        locations={"agent": "/", "other": "/", "supervisor": "/"},
    ),
    ("POST", "/login"): Cell(
        "/login",
        {role: 401 for role in ROLES},
        form={"username": "alice", "password": "not her password"},
    ),
    ("POST", "/logout"): Cell(
        "/logout", {role: 303 for role in ROLES}, locations=dict.fromkeys(ROLES, "/login")
    ),
    ("GET", "/"): Cell(
        "/",
        {role: 303 for role in ROLES},
        locations={
            "anonymous": "/login?next=%2F",
            "agent": "/agent",
            "other": "/agent",
            "supervisor": "/supervisor",
        },
    ),
    ("GET", "/agent"): Cell(
        "/agent",
        {"anonymous": 303, "agent": 200, "other": 200, "supervisor": 200},
        locations={"anonymous": "/login?next=%2Fagent"},
    ),
    ("GET", "/supervisor"): Cell(
        "/supervisor",
        {"anonymous": 303, "agent": 403, "other": 403, "supervisor": 200},
        locations={"anonymous": "/login?next=%2Fsupervisor"},
    ),
    ("GET", "/history"): Cell(
        "/history",
        {"anonymous": 303, "agent": 403, "other": 403, "supervisor": 200},
        locations={"anonymous": "/login?next=%2Fhistory"},
    ),
    ("GET", "/reports"): Cell(
        "/reports",
        {"anonymous": 303, "agent": 403, "other": 403, "supervisor": 200},
        locations={"anonymous": "/login?next=%2Freports"},
    ),
    # -- public -----------------------------------------------------------------------------
    ("GET", "/static/<path:filename>"): Cell("/static/css/app.css", PUBLIC),
    # 404 with a hint until `npm install` has put the Voice SDK in node_modules
    ("GET", "/vendor/twilio.min.js"): Cell("/vendor/twilio.min.js", dict.fromkeys(ROLES, ANY)),
    ("GET", "/vendor/uplot.esm.js"): Cell("/vendor/uplot.esm.js", dict.fromkeys(ROLES, ANY)),
    ("GET", "/vendor/uplot.min.css"): Cell("/vendor/uplot.min.css", dict.fromkeys(ROLES, ANY)),
    ("GET", "/vendor/libphonenumber.js"): Cell(
        "/vendor/libphonenumber.js", dict.fromkeys(ROLES, ANY)
    ),
    ("GET", "/openapi.json"): Cell("/openapi.json", PUBLIC),
    ("GET", "/healthz"): Cell("/healthz", PUBLIC),
    # open unless METRICS_TOKEN is set (test_metrics covers the token)
    ("GET", "/metrics"): Cell("/metrics", PUBLIC),
    # -- the dashboard socket: 101 is an accepted handshake -----------------------------
    ("WS", "/ws"): Cell("/ws", {"anonymous": 401, "agent": 101, "other": 101, "supervisor": 101}),
}


def routes_of(app: Any) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if getattr(rule, "websocket", False):
            found.add(("WS", rule.rule))
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            found.add((method, rule.rule))
    return found


def test_every_route_is_in_the_matrix(app):
    routes = routes_of(app)
    missing = sorted(routes - MATRIX.keys())
    assert not missing, f"routes without an authorization row in MATRIX: {missing}"
    stale = sorted(MATRIX.keys() - routes)
    assert not stale, f"rows for routes the app no longer has: {stale}"


# --- the world -----------------------------------------------------------------------


@pytest.fixture
async def app(history_app):
    """The matrix's app keeps the call history, so its routes answer as deployed."""
    return history_app


@dataclass
class World:
    app: Any
    clients: dict[str, Any]
    tokens: dict[str, str | None]
    values: dict[str, str]
    dumps: dict[str, Saved]
    twilio: dict[str, object]  # Twilio's side of each dump (simulator.testing's save)


@pytest.fixture
async def world(app, redis, voice, twilio, raw_redis, pg) -> World:
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    carol = await login(app, redis, "carol")
    sue = await login(app, redis, "sue", role="supervisor")
    await set_available(alice)
    name = await customer_waits(voice)
    await agent_answers(voice, name, "alice")
    await set_available(carol)
    await set_available(bob)
    await bob.post("/api/me/status", json={"status": "offline"})
    runner = Runner.of(app)
    await runner.drain()
    await stored(pg, name)
    voicemail = await left_a_message(app, redis, "alice")
    dumps = {"call": await dump_all(raw_redis)}
    saved = {"call": twilio.save()}
    started = await alice.post("/api/transfers", json={"conference": name, "to": "carol"})
    assert started.status_code == 201, await started.get_data(as_text=True)
    transfer = (await started.get_json())["id"]
    await runner.drain()
    dumps["ringing"] = await dump_all(raw_redis)
    saved["ringing"] = twilio.save()
    clients = {"anonymous": app.test_client(), "agent": alice, "other": bob, "supervisor": sue}
    tokens = {role: session_token(client) for role, client in clients.items()}
    values = {"name": name, "customer": name, "transfer": transfer, "voicemail": voicemail}
    return World(app, clients, tokens, values, dumps, saved)


async def left_a_message(app: Any, redis: Any, claimer: str) -> str:
    """A caller's message, claimed by ``claimer``; returns its id."""
    settings = app.config[SETTINGS_KEY]
    caller = "CA" + "1" * 32
    await voicemails.record_message(redis, settings, caller, "RE" + "1" * 32, 5, now_ms())
    await voicemails.claim(redis, settings, caller, claimer, now_ms())
    return caller


async def stored(pg: Any, call_id: str) -> None:
    """Wait for the history writer to store the live call with alice's leg."""
    for _ in range(200):
        cursor = await pg.execute("SELECT 1 FROM call_legs WHERE call_id = %s", (call_id,))
        if await cursor.fetchone():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {call_id} never reached the history")


def session_token(client: Any) -> str | None:
    return next((c.value for c in client.cookie_jar if c.name == SESSION_COOKIE), None)


def fresh_client(world: World, role: str) -> Any:
    """A client holding only ``role``'s session (a logout in one cell must not log the
    role out of the next)."""
    client = world.app.test_client()
    token = world.tokens[role]
    if token is not None:
        client.set_cookie("localhost", SESSION_COOKIE, token)
    return client


def fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**values)
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    return template


async def ws_status(client: Any, path: str) -> int:
    try:
        async with client.websocket(path) as socket:
            first = json.loads(await asyncio.wait_for(socket.receive(), 5))
            assert first["type"] == "snapshot"
            return 101
    except WebsocketResponseError as refused:
        return refused.response.status_code


def check_security_headers(response: Any, where: str) -> None:
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    assert csp, f"{where}: no Content-Security-Policy"
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, (where, csp)
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", (where, csp)
    assert directives.get("script-src") == "script-src 'self'", (where, csp)
    assert directives.get("object-src") == "object-src 'none'", (where, csp)
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") in ("same-origin", "no-referrer", "strict-origin"), where
    assert headers.get("X-Frame-Options") == "DENY", where
    # PUBLIC_BASE_URL is https in the test settings
    assert headers.get("Strict-Transport-Security", "").startswith("max-age="), where


@pytest.mark.timeout(300)
async def test_authorization_matrix(app, world, twilio, raw_redis):
    runner = Runner.of(app)
    results: dict[tuple[str, str], dict[str, int]] = {}
    mismatches = []
    for (method, rule), cell in MATRIX.items():
        path = fill(cell.path, world.values)
        for role in ROLES:
            await runner.drain()
            await restore_all(raw_redis, world.dumps[cell.world])
            twilio.restore(world.twilio[cell.world])
            client = fresh_client(world, role)
            if method == "WS":
                status = await ws_status(client, path)
            else:
                kwargs: dict[str, Any] = {}
                if cell.json is not None:
                    kwargs["json"] = fill(cell.json, world.values)
                if cell.form is not None:
                    kwargs["form"] = cell.form
                response = await client.open(path, method=method, **kwargs)
                status = response.status_code
                check_security_headers(response, f"{method} {path} as {role}")
                if role in cell.locations:
                    assert response.headers.get("Location") == cell.locations[role], (
                        method,
                        path,
                        role,
                    )
                if path.startswith("/api/") and status >= 400:
                    assert "error" in await response.get_json(), (method, path, role)
            results.setdefault((method, rule), {})[role] = status
            wanted = cell.expected[role]
            if status != wanted and not (isinstance(wanted, set) and status in wanted):
                mismatches.append(f"{method} {path} as {role}: {status}, expected {wanted}")
    await runner.drain()
    print(f"\n{len(results)} routes x {len(ROLES)} roles = {len(results) * len(ROLES)} cells")
    assert not mismatches, "\n".join(mismatches)


async def test_a_logged_out_cookie_is_anonymous_everywhere(app, world, raw_redis):
    """After logout, the old cookie gets exactly what anonymous gets."""
    assert (await world.clients["agent"].post("/logout")).status_code == 303
    alice = fresh_client(world, "agent")  # still sends the old cookie
    assert session_token(alice) == world.tokens["agent"]
    for (method, _rule), cell in MATRIX.items():
        if method != "GET" or not cell.path.startswith(
            ("/api/", "/agent", "/supervisor", "/history", "/reports")
        ):
            continue
        path = fill(cell.path, world.values)
        response = await alice.get(path)
        assert response.status_code == cell.expected["anonymous"], path
    assert await ws_status(alice, "/ws") == 401


async def test_security_headers_on_errors_and_unknown_routes(app, world):
    for role, client in world.clients.items():
        for method, path in [
            ("GET", "/no/such/page"),
            ("GET", "/api/no-such-call"),
            ("PUT", "/api/state"),
            ("POST", "/api/conferences/CAnope/hold"),
            ("GET", "/api/conferences/bad%20name/timeline"),
        ]:
            response = await client.open(path, method=method, json={"hold": "yes"})
            assert 400 <= response.status_code < 500, (role, method, path)
            check_security_headers(response, f"{method} {path} as {role}")


def test_rediss_urls_verify_certificates_unless_told_not_to():
    """rediss:// verifies the server's certificate; REDIS_TLS_VERIFY=false (Heroku
    Redis presents a self-signed one) turns that off; plain redis:// never turns TLS on."""
    verified = connect("rediss://:secret@redis.example.com:6380/0")
    kwargs = verified.connection_pool.connection_kwargs
    assert verified.connection_pool.connection_class.__name__ == "SSLConnection"
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["decode_responses"] is True
    unverified = connect("rediss://:secret@redis.example.com:6380/0", tls_verify=False)
    assert unverified.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"
    plain = connect("redis://127.0.0.1:6379/0")
    assert plain.connection_pool.connection_class.__name__ == "Connection"
    assert "ssl_cert_reqs" not in plain.connection_pool.connection_kwargs
