"""Login throttling (SPEC §11): growing waits per username-and-client, per client and
per known browser (device cookie), so nobody's failures lock out someone else's
correct login; 429 with Retry-After; an audit line for every outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from quart import Quart, Response
from quart.testing import QuartClient
from redis.asyncio import Redis

from console.domain import keys, login_throttle, users
from console.domain.users import Role, User
from console.web.auth import DEVICE_COOKIE, SESSION_COOKIE
from simulator.testing import TwilioDouble
from tests.support.servers import app_server
from warmline.embedded_redis import EmbeddedRedis

PASSWORD = "correct horse battery"
WRONG = "a wrong guess 12345"
OFFICE = "192.0.2.10"  # a call center behind one NAT address
ATTACKER = "203.0.113.7"
HOME = "198.51.100.4"
FREE = login_throttle.PER_USER_AND_CLIENT.free


@pytest.fixture
async def alice(redis: Redis) -> User:
    return await users.add_user(redis, "alice", Role.AGENT, PASSWORD)


@pytest.fixture
async def bob(redis: Redis) -> User:
    return await users.add_user(redis, "bob", Role.AGENT, PASSWORD)


@pytest.fixture(autouse=True)
def minute_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first wait is a minute, not a second, so no wait runs out mid-test on a slow
    machine; the doubling and the cap are as configured."""
    for name in ("PER_USER_AND_CLIENT", "PER_CLIENT", "PER_DEVICE"):
        rule = dataclasses.replace(getattr(login_throttle, name), first_wait_seconds=60)
        monkeypatch.setattr(login_throttle, name, rule)


@pytest.fixture
def small_client_budget(monkeypatch: pytest.MonkeyPatch, minute_waits: None) -> None:
    """Three free failures per address, so spraying stays short."""
    rule = dataclasses.replace(login_throttle.PER_CLIENT, free=3)
    monkeypatch.setattr(login_throttle, "PER_CLIENT", rule)


async def login(
    client: QuartClient,
    address: str,
    username: str = "alice",
    password: str = PASSWORD,
    as_json: bool = False,
) -> Response:
    body: dict[str, Any] = {"username": username, "password": password}
    return await client.post(
        "/login",
        **({"json": body} if as_json else {"form": body}),  # type: ignore[arg-type]
        scope_base={"client": (address, 40000)},
    )


async def fail(client: QuartClient, address: str, times: int, name: str = "alice") -> list[int]:
    return [(await login(client, address, name, WRONG)).status_code for _ in range(times)]


def set_cookies(response: Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        jar.load(header)
    return jar


async def wait_is_over(redis: Redis) -> None:
    """As if every throttle bucket's current wait had run out (their counts stay)."""
    for key in await redis.keys(keys.login_throttle("*")):
        await redis.hset(key, "until", 0)


# --- growing waits ---------------------------------------------------------------------


async def test_growing_waits_with_retry_after_for_forms_and_json(
    app: Quart, redis: Redis, alice: User
) -> None:
    client = app.test_client()
    assert await fail(client, ATTACKER, FREE) == [401] * FREE

    for minutes in (1, 2, 4):
        throttled = await login(client, ATTACKER)  # the right password waits too, here
        assert throttled.status_code == 429
        assert "Set-Cookie" not in throttled.headers
        assert minutes * 60 - 10 < int(throttled.headers["Retry-After"]) <= minutes * 60
        page = await throttled.get_data(as_text=True)
        assert f"Try again in {minutes} minute{'s' * (minutes > 1)}." in page
        as_json = await login(client, ATTACKER, as_json=True)
        assert as_json.status_code == 429
        assert minutes * 60 - 10 < int(as_json.headers["Retry-After"]) <= minutes * 60
        assert "Too many failed attempts" in (await as_json.get_json())["error"]
        await wait_is_over(redis)
        assert await fail(client, ATTACKER, 1) == [401]

    for key in await redis.keys(keys.login_throttle("*")):
        assert 0 < await redis.ttl(key) <= login_throttle.PER_USER_AND_CLIENT.memory_seconds


async def test_parallel_guesses_cannot_slip_past_the_free_failures(app: Quart, alice: User) -> None:
    client = app.test_client()
    guesses = [login(client, ATTACKER, password=f"{WRONG} {i}") for i in range(15)]

    statuses = [r.status_code for r in await asyncio.gather(*guesses)]

    assert statuses.count(401) == FREE
    assert statuses.count(429) == 15 - FREE


async def test_spraying_names_from_one_address_is_throttled_there_only(
    app: Quart, redis: Redis, alice: User, small_client_budget: None
) -> None:
    client = app.test_client()
    for name in ("bob", "carol", "dave"):
        assert await fail(client, ATTACKER, 1, name) == [401]
    throttled = await login(client, ATTACKER)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1

    assert (await login(client, HOME)).status_code == 303


async def test_names_that_cannot_be_users_count_only_against_the_client(
    app: Quart, redis: Redis, small_client_budget: None
) -> None:
    client = app.test_client()
    for name in ("x" * 200, "robert'); DROP", PASSWORD):
        assert await fail(client, ATTACKER, 1, name) == [401]

    assert await redis.keys(keys.login_throttle("*")) == [keys.login_throttle(f"client:{ATTACKER}")]
    assert await fail(client, ATTACKER, 1, "zz top") == [429]


async def test_a_success_clears_the_users_failures_from_that_client(
    app: Quart, alice: User
) -> None:
    client = app.test_client()
    for _ in range(3):
        assert await fail(client, OFFICE, FREE - 1) == [401] * (FREE - 1)
        assert (await login(client, OFFICE)).status_code == 303


async def test_a_success_gives_the_shared_client_its_attempt_back(
    app: Quart, alice: User, bob: User, small_client_budget: None
) -> None:
    fresh = app.test_client  # one office, three free failures, browsers new to everyone
    assert await fail(fresh(), OFFICE, 2, "carol") == [401, 401]
    assert (await login(fresh(), OFFICE)).status_code == 303  # the 3rd attempt, but right
    assert (await login(fresh(), OFFICE, "bob")).status_code == 303
    # a success never lifts a wait that failures earned
    assert await fail(fresh(), OFFICE, 1, "carol") == [401]
    assert (await login(fresh(), OFFICE)).status_code == 429


# --- someone else's failures ---------------------------------------------------------


async def test_someone_elses_failures_never_lock_out_a_correct_login_from_elsewhere(
    app: Quart, alice: User
) -> None:
    attacker = app.test_client()
    statuses = await fail(attacker, ATTACKER, 20)
    assert statuses == [401] * FREE + [429] * (20 - FREE)

    assert (await login(app.test_client(), HOME)).status_code == 303
    assert (await login(app.test_client(), HOME, as_json=True)).status_code == 200


async def test_a_browser_that_logged_in_before_is_not_locked_out_behind_a_shared_address(
    app: Quart, alice: User, bob: User, small_client_budget: None
) -> None:
    browser = app.test_client()
    assert (await login(browser, OFFICE)).status_code == 303  # alice's desk, last week
    attacker = app.test_client()  # in the same office, or behind the same proxy
    assert (await fail(attacker, OFFICE, 20))[0] == 401
    for name in ("carol", "dave", "erin"):
        await fail(attacker, OFFICE, 1, name)
    assert (await login(attacker, OFFICE)).status_code == 429  # a browser alice never used

    assert await fail(browser, OFFICE, 1) == [401]  # a typo of her own
    assert (await login(browser, OFFICE)).status_code == 303
    assert (await login(browser, OFFICE, as_json=True)).status_code == 200


async def test_the_device_cookie_is_long_lived_http_only_random_and_for_login_only(
    app: Quart, redis: Redis, alice: User
) -> None:
    response = await login(app.test_client(), OFFICE)

    cookie = set_cookies(response)[DEVICE_COOKIE]
    assert cookie["httponly"] and cookie["secure"]
    assert cookie["path"] == "/login"
    assert cookie["samesite"] == "Strict"
    assert int(cookie["max-age"]) == login_throttle.DEVICE_TTL_SECONDS
    assert "alice" not in cookie.value
    assert cookie.value != set_cookies(response)[SESSION_COOKIE].value
    assert not await redis.keys(f"*{cookie.value}*")  # Redis holds only a digest of it
    [record] = await redis.keys(keys.login_device("*"))
    assert await redis.get(record) == "alice"
    assert 0 < await redis.ttl(record) <= login_throttle.DEVICE_TTL_SECONDS


async def test_a_device_cookie_vouches_only_for_its_own_user(
    app: Quart, redis: Redis, alice: User, bob: User
) -> None:
    mallory = app.test_client()
    assert (await login(mallory, OFFICE, "bob")).status_code == 303  # her own account
    forged = app.test_client()
    forged.set_cookie("localhost", DEVICE_COOKIE, "A" * 43, path="/login")

    for client in (mallory, forged):
        assert await fail(client, OFFICE, FREE) == [401] * FREE
        assert (await login(client, OFFICE)).status_code == 429
        await redis.delete(*await redis.keys(keys.login_throttle("*")))
    assert len(await redis.keys(keys.login_device("*"))) == 1  # failures mint no device


async def test_the_device_bucket_throttles_that_browser_alone(
    app: Quart, alice: User, bob: User
) -> None:
    shared = app.test_client()  # one desk, two agents
    assert (await login(shared, OFFICE)).status_code == 303
    assert (await login(shared, OFFICE, "bob")).status_code == 303
    assert await fail(shared, OFFICE, FREE) == [401] * FREE  # someone at alice's desk
    assert (await login(shared, OFFICE)).status_code == 429

    assert (await login(shared, OFFICE, "bob")).status_code == 303  # bob's own device
    assert (await login(app.test_client(), OFFICE)).status_code == 303  # a fresh browser


# --- the audit trail -----------------------------------------------------------------


async def test_every_outcome_leaves_an_audit_line_without_secrets(
    app: Quart, alice: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="console.audit")
    client = app.test_client()
    await fail(client, ATTACKER, FREE + 1)
    await login(client, ATTACKER, username=PASSWORD, password=WRONG)  # password as name
    success = await login(app.test_client(), HOME)

    lines = [r.getMessage() for r in caplog.records if r.name == "console.audit"]
    failed = 'audit login-failed actor="alice" client="203.0.113.7"'
    assert lines.count(failed) == FREE
    throttled = 'audit login-throttled actor="alice" client="203.0.113.7" retry_after='
    assert [line for line in lines if line.startswith(throttled)]
    assert 'audit login-failed actor=null client="203.0.113.7"' in lines
    assert 'audit login actor="alice" client="198.51.100.4" role="agent"' in lines
    cookies = set_cookies(success)
    for secret in (PASSWORD, WRONG, cookies[SESSION_COOKIE].value, cookies[DEVICE_COOKIE].value):
        assert secret not in caplog.text


# --- a running server ------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_a_served_app_behind_one_address_keeps_known_browsers_in(
    redis: Redis, redis_server: EmbeddedRedis, twilio: TwilioDouble, tmp_path: Path
) -> None:
    """Every request reaches the server from 127.0.0.1, as a whole center would."""
    await users.add_user(redis, "alice", "agent", PASSWORD)
    alice_form = {"username": "alice", "password": PASSWORD}
    async with (
        app_server(redis_server.url, twilio.base_url, tmp_path) as server,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser,
        aiohttp.ClientSession() as attacker,
    ):
        url = f"{server.url}/login"
        async with browser.post(url, json=alice_form) as response:
            assert response.status == 200
        failures = 0  # the default waits: 1 s after the free failures, 2 s, 4 s, ...
        while failures < FREE + 4:
            async with attacker.post(url, json={**alice_form, "password": WRONG}) as response:
                assert response.status in (401, 429)
                if response.status == 429:
                    await wait_is_over(redis)  # rather than sleep through it
                failures += response.status == 401
        async with attacker.post(url, json=alice_form) as response:
            assert response.status == 429  # 16 s after the 9th failure
            assert 8 < int(response.headers["Retry-After"]) <= 16

        async with browser.post(url, json=alice_form) as response:
            assert response.status == 200, await response.text()

    log = server.output()
    assert 'audit login-throttled actor="alice" client="127.0.0.1"' in log
    assert log.count('audit login actor="alice" client="127.0.0.1"') == 2
    assert PASSWORD not in log and WRONG not in log
