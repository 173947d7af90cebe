"""Login limits per address, passwords only as argon2 hashes, and no secret in a log
line or an error page: the auth token, the API secret, the secret key, passwords,
session tokens and Voice tokens, through failing logins, bad signatures and REST
errors, in-process (every logger at DEBUG) and from a real `warmline serve`.
(Cookie flags and rotation are in test_auth, the throttle in test_login_throttle.)"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from console.domain import keys, login_throttle, users
from console.web.auth import SESSION_COOKIE
from simulator.testing import TwilioDouble, call_sid, sign
from tests.conftest import ACCOUNT_SID, API_SECRET, AUTH_TOKEN, PUBLIC_BASE_URL
from tests.support.flow_helpers import agent_answers, customer_waits, login, set_available
from tests.support.servers import app_server

SECRET_KEY = "test-secret-key"  # conftest.make_settings and servers.server_env
ALICE_PASSWORD = "alice's own passphrase 9"
SUE_PASSWORD = "sue's supervisor phrase 7"
WRONG_PASSWORD = "a wrong guess, 12345"


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s and s in text]


# --- login limits --------------------------------------------------------------------


async def test_the_address_limit_is_per_address(app, redis, monkeypatch):
    rule = dataclasses.replace(login_throttle.PER_CLIENT, free=3, first_wait_seconds=60)
    monkeypatch.setattr(login_throttle, "PER_CLIENT", rule)
    await users.add_user(redis, "alice", "agent", ALICE_PASSWORD)
    client = app.test_client()

    async def attempt(address: str, password: str = WRONG_PASSWORD, name: str = "alice") -> Any:
        return await client.post(
            "/login",
            form={"username": name, "password": password},
            scope_base={"client": (address, 40000)},
        )

    for name in ("bob", "carol", "dave"):  # spraying names from one address
        assert (await attempt("203.0.113.7", name=name)).status_code == 401
    locked = await attempt("203.0.113.7", ALICE_PASSWORD)
    assert locked.status_code == 429
    retry_after = int(locked.headers["Retry-After"])
    assert 0 < retry_after <= rule.cap_seconds
    assert "Set-Cookie" not in locked.headers
    # Another address is not punished for it, and alice's own budget is untouched.
    assert (await attempt("198.51.100.4", ALICE_PASSWORD)).status_code == 303
    assert await redis.ttl(keys.login_throttle("client:203.0.113.7")) > 0


async def test_the_user_limit_is_per_client_and_follows_the_names_case(app, redis, monkeypatch):
    rule = dataclasses.replace(login_throttle.PER_USER_AND_CLIENT, first_wait_seconds=60)
    monkeypatch.setattr(login_throttle, "PER_USER_AND_CLIENT", rule)
    await users.add_user(redis, "alice", "agent", ALICE_PASSWORD)
    client = app.test_client()

    async def attempt(name: str, password: str, address: str) -> Any:
        return await client.post(
            "/login",
            json={"username": name, "password": password},
            scope_base={"client": (address, 40000)},
        )

    for i in range(rule.free):
        name = "Alice" if i % 2 else "alice"
        assert (await attempt(name, WRONG_PASSWORD, "192.0.2.1")).status_code == 401
    locked = await attempt("alice", ALICE_PASSWORD, "192.0.2.1")
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert "Too many failed attempts" in (await locked.get_json())["error"]
    # guesses from one address never lock alice out from another (SPEC §11)
    assert (await attempt("alice", ALICE_PASSWORD, "192.0.2.200")).status_code == 200


# --- passwords -----------------------------------------------------------------------


async def all_values(redis: Redis) -> str:
    """Every key and value in Redis, as one text."""
    parts = []
    for key in await redis.keys("*"):
        kind = await redis.type(key)
        parts.append(key)
        if kind == "string":
            parts.append(await redis.get(key) or "")
        elif kind == "hash":
            parts.extend(f"{f}={v}" for f, v in (await redis.hgetall(key)).items())
        elif kind == "list":
            parts.extend(await redis.lrange(key, 0, -1))
        elif kind == "set":
            parts.extend(await redis.smembers(key))
        elif kind == "stream":
            parts.extend(str(entry) for entry in await redis.xrange(key))
    return "\n".join(parts)


async def test_passwords_live_only_as_argon2id_hashes(app, redis):
    client = app.test_client()
    await users.add_user(redis, "alice", "agent", ALICE_PASSWORD)
    await users.add_user(redis, "sue", "supervisor", SUE_PASSWORD)
    await client.post("/login", form={"username": "alice", "password": WRONG_PASSWORD})
    await client.post("/login", form={"username": ALICE_PASSWORD, "password": "x" * 12})
    ok = await client.post("/login", form={"username": "alice", "password": ALICE_PASSWORD})
    assert ok.status_code == 303

    dump = await all_values(redis)
    assert not leaks(dump, [ALICE_PASSWORD, SUE_PASSWORD, WRONG_PASSWORD, "x" * 12])
    records = await redis.hgetall(keys.USERS)
    assert set(records) == {"alice", "sue"}
    for record in records.values():
        assert '"$argon2id$' in record
    # the session is stored under a digest of the cookie, never the cookie itself
    token = next(c.value for c in client.cookie_jar if c.name == SESSION_COOKIE)
    assert token not in dump


# --- nothing secret in logs or answers, in-process -----------------------------------


async def test_no_secret_in_logs_or_error_pages(app, redis, voice, twilio, caplog):
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []

    async def keep(response: Any) -> Any:
        bodies.append(await response.get_data(as_text=True))
        bodies.append(str(response.headers.get("Location", "")))
        return response

    anonymous = app.test_client()
    await users.add_user(redis, "sue", "supervisor", SUE_PASSWORD)
    # failing logins: a wrong password, a password typed as the name, JSON, empty
    for form in (
        {"username": "sue", "password": WRONG_PASSWORD},
        {"username": SUE_PASSWORD, "password": SUE_PASSWORD},
        {"username": "nobody", "password": SUE_PASSWORD},
        {"username": "sue"},
    ):
        await keep(await anonymous.post("/login", form=form))
    await keep(await anonymous.post("/login", json={"username": "sue", "password": WRONG_PASSWORD}))
    sue = app.test_client()
    await keep(await sue.post("/login", form={"username": "sue", "password": SUE_PASSWORD}))
    sue_token = next(c.value for c in sue.cookie_jar if c.name == SESSION_COOKIE)

    # a live call; the agent's Voice token
    alice = await login(app, redis, "alice")
    alice_token = next(c.value for c in alice.cookie_jar if c.name == SESSION_COOKIE)
    voice_token = (await (await alice.get("/api/token")).get_json())["token"]
    await set_available(alice)
    name = await customer_waits(voice)
    await agent_answers(voice, name, "alice")

    # bad signatures and foreign accounts on the webhooks
    form = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid(), "From": "+15551230000"}
    url = PUBLIC_BASE_URL + "/conference/connect/client"
    for signature in (sign(url, form, "wrong-token"), "garbage", sign(url, form, SUE_PASSWORD)):
        headers = {"X-Twilio-Signature": signature}
        await keep(
            await voice.client.post("/conference/connect/client", form=form, headers=headers)
        )
    await keep(await anonymous.get("/api/webhooks"))
    await keep(await sue.get("/api/webhooks"))

    # REST errors from Twilio: monitoring, a transfer, a hold, a leave
    twilio.fail_next("/Participants.json", status=500, code=20500, method="POST")
    await keep(await sue.post(f"/api/conferences/{name}/monitor", json={"mode": "listen"}))
    carol = await login(app, redis, "carol")
    await set_available(carol)
    twilio.fail_next("/Participants/", status=401, code=20003, message="Authenticate")
    await keep(await alice.post("/api/transfers", json={"conference": name, "to": "carol"}))
    twilio.fail_next(status=429, code=20429, message="Too Many Requests")
    await keep(
        await alice.post(f"/api/conferences/{name}/hold", json={"call_sid": name, "hold": True})
    )
    twilio.fail_next(status=503, code=20503)
    await keep(await alice.post(f"/api/conferences/{name}/leave", json={}))
    await voice.settle()
    # errors of every kind: 400, 404, 405, 413
    await keep(await alice.post("/api/transfers", json={"conference": "bad name"}))
    await keep(await alice.get("/no/such/page"))
    await keep(await alice.put("/api/state"))
    await keep(
        await alice.post(
            "/api/me/status", data=b"x" * 70_000, headers={"Content-Type": "application/json"}
        )
    )

    secrets = [
        AUTH_TOKEN,
        API_SECRET,
        SECRET_KEY,
        SUE_PASSWORD,
        WRONG_PASSWORD,
        "correct horse battery",  # flow_helpers' password
        sue_token,
        alice_token,
        voice_token,
    ]
    assert caplog.records, "nothing was logged at all"
    assert not leaks(caplog.text, secrets), leaks(caplog.text, secrets)
    for record in caplog.records:  # arguments too, in case a handler formats differently
        assert not leaks(repr(record.args) + str(record.msg), secrets)
    answers = "\n".join(bodies)
    assert not leaks(answers, secrets), leaks(answers, secrets)
    assert "Traceback" not in answers


# --- nothing secret in a real server's output ----------------------------------------


@pytest.mark.timeout(120)
async def test_no_secret_in_a_served_apps_output(
    redis: Redis, redis_server, twilio: TwilioDouble, tmp_path
):
    await users.add_user(redis, "alice", "agent", ALICE_PASSWORD)
    await users.add_user(redis, "sue", "supervisor", SUE_PASSWORD)
    async with (
        app_server(redis_server.url, twilio.base_url, tmp_path) as server,
        aiohttp.ClientSession() as anonymous,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as agent,
    ):
        bodies = []
        for form in (
            {"username": "alice", "password": WRONG_PASSWORD},
            {"username": ALICE_PASSWORD, "password": ALICE_PASSWORD},
            {"username": "sue", "password": SUE_PASSWORD + "!"},
        ):
            async with anonymous.post(f"{server.url}/login", data=form) as response:
                bodies.append(await response.text())
        login_form = {"username": "alice", "password": ALICE_PASSWORD}
        async with agent.post(
            f"{server.url}/login", data=login_form, allow_redirects=False
        ) as response:
            assert response.status == 303
            session = response.cookies[SESSION_COOKIE].value
        async with agent.get(f"{server.url}/api/token") as response:
            voice_token = (await response.json())["token"]

        # webhooks: unsigned, mis-signed, then a real call while Twilio fails the dial
        url = server.url + "/conference/connect/client"
        call = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid(), "From": "+15551230000"}
        for headers in ({}, {"X-Twilio-Signature": sign(url, call, "wrong-token")}):
            async with anonymous.post(url, data=call, headers=headers) as response:
                assert response.status == 403
                bodies.append(await response.text())
        twilio.fail_next("/Calls.json", status=401, code=20003, message="Authenticate")
        signed = {"X-Twilio-Signature": sign(url, call, AUTH_TOKEN)}
        async with anonymous.post(url, data=call, headers=signed) as response:
            assert response.status == 200
        async with agent.post(
            f"{server.url}/api/me/status", json={"status": "available"}
        ) as response:
            assert response.status == 200, await response.text()
        for path in ("/api/figures", "/nowhere", "/api/conferences/x/timeline"):
            async with agent.get(server.url + path) as response:
                bodies.append(await response.text())
        await _wait_for_dial(twilio)
    # after the server stopped: everything it printed, shutdown included
    output = server.output()
    secrets = [
        AUTH_TOKEN,
        API_SECRET,
        SECRET_KEY,
        ALICE_PASSWORD,
        SUE_PASSWORD,
        WRONG_PASSWORD,
        session,
        voice_token,
    ]
    assert output.strip(), "the server printed nothing"
    assert not leaks(output, secrets), leaks(output, secrets)
    assert not leaks("\n".join(bodies), secrets)


async def _wait_for_dial(twilio: TwilioDouble) -> None:
    """Routing dials alice in the background; wait until the double has seen it."""
    for _ in range(100):
        if twilio.requests:
            return
        await asyncio.sleep(0.05)
