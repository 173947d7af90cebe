"""Login, sessions, logout, rate limits, the Origin check and the auth decorators."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from http.cookies import Morsel, SimpleCookie
from typing import Any

import pytest
from quart import Blueprint, Quart, Response, jsonify, websocket
from quart.testing import QuartClient
from quart.testing.connections import WebsocketDisconnectError
from redis.asyncio import Redis

from console.domain import keys, users
from console.domain.users import Role, User
from console.web import auth
from console.web.auth import SESSION_COOKIE, current_user
from tests.conftest import PUBLIC_BASE_URL, make_settings
from warmline.app import create_app
from warmline.embedded_redis import EmbeddedRedis

PASSWORD = "correct horse battery"
FOREIGN_ORIGIN = "https://evil.example"


@pytest.fixture
async def alice(redis: Redis) -> User:
    return await users.add_user(redis, "alice", Role.AGENT, PASSWORD)


@pytest.fixture
async def sue(redis: Redis) -> User:
    return await users.add_user(redis, "sue", Role.SUPERVISOR, PASSWORD)


def session_cookie(response: Response) -> Morsel:
    """The ``warmline_session`` Set-Cookie of ``response``, parsed."""
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        jar.load(header)
    assert SESSION_COOKIE in jar, response.headers.getlist("Set-Cookie")
    return jar[SESSION_COOKIE]


def session_key(token: str) -> str:
    return keys.session(hashlib.sha256(token.encode()).hexdigest())


async def logged_in(app: Quart, token: str) -> bool:
    """Whether a fresh client holding only ``token`` counts as logged in."""
    client = app.test_client()
    client.set_cookie("localhost", SESSION_COOKIE, token)
    return (await client.get("/login")).status_code == 303


async def login(
    client: QuartClient, username: str = "alice", password: str = PASSWORD, **kwargs: Any
) -> Response:
    return await client.post("/login", form={"username": username, "password": password}, **kwargs)


# --- the login page ------------------------------------------------------------------


async def test_login_page_is_accessible_and_csp_clean(app: Quart) -> None:
    response = await app.test_client().get("/login?next=/agent")
    body = await response.get_data(as_text=True)

    assert response.status_code == 200
    assert '<label for="username">' in body and 'id="username"' in body
    assert '<label for="password">' in body and 'type="password"' in body
    assert 'href="/static/css/app.css"' in body
    assert 'name="next" value="/agent"' in body
    assert "<script" not in body and "style=" not in body and "<style" not in body
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    css = await app.test_client().get("/static/css/app.css")
    assert css.status_code == 200


async def test_login_page_escapes_next(app: Quart) -> None:
    response = await app.test_client().get('/login?next=/"><script>x</script>')
    body = await response.get_data(as_text=True)
    assert "<script>x" not in body


# --- logging in ----------------------------------------------------------------------


async def test_login_sets_a_secure_http_only_lax_cookie(
    app: Quart, redis: Redis, alice: User
) -> None:
    response = await login(app.test_client())

    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    cookie = session_cookie(response)
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["secure"] is True  # PUBLIC_BASE_URL is https
    assert cookie["path"] == "/"
    token = cookie.value
    assert len(token) >= 43
    # Redis knows the session only by a digest of the token.
    assert await redis.exists(session_key(token))
    assert await redis.ttl(session_key(token)) > 11 * 3600
    assert not await redis.keys(f"*{token}*")


async def test_cookie_is_not_secure_over_plain_http(
    redis_server: EmbeddedRedis, alice: User
) -> None:
    app = create_app(
        make_settings(public_base_url="http://localhost:5000"), redis_url=redis_server.url
    )
    async with app.test_app():
        response = await login(app.test_client())
    assert response.status_code == 303
    assert not session_cookie(response)["secure"]


@pytest.mark.parametrize(
    ("next_path", "location"),
    [
        ("/supervisor?tab=queue", "/supervisor?tab=queue"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=y", "/"),
    ],
)
async def test_login_redirects_only_to_local_next(
    app: Quart,
    alice: User,
    next_path: str,
    location: str,
) -> None:
    client = app.test_client()
    response = await client.post(
        "/login", form={"username": "alice", "password": PASSWORD, "next": next_path}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == location


async def test_login_failure_is_generic(app: Quart, redis: Redis, alice: User) -> None:
    client = app.test_client()
    wrong = await login(client, password="wrong password")
    unknown = await login(client, username="mallory")

    for response in (wrong, unknown):
        assert response.status_code == 401
        body = await response.get_data(as_text=True)
        assert "Invalid username or password" in body
        assert 'role="alert"' in body
        assert "Set-Cookie" not in response.headers
    assert not await redis.keys(keys.session("*"))


async def test_empty_fields_are_a_bad_request(app: Quart, alice: User) -> None:
    response = await app.test_client().post("/login", form={"username": "alice"})
    assert response.status_code == 400


async def test_json_login(app: Quart, alice: User) -> None:
    client = app.test_client()

    ok = await client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert ok.status_code == 200
    assert await ok.get_json() == {"username": "alice", "role": "agent"}
    assert session_cookie(ok)["httponly"]

    bad = await client.post("/login", json={"username": "alice", "password": "nope nope"})
    assert bad.status_code == 401
    assert await bad.get_json() == {"error": "Invalid username or password"}

    malformed = await client.post("/login", json=["alice", PASSWORD])
    assert malformed.status_code == 400
    assert "error" in await malformed.get_json()


async def test_login_rotates_the_session(app: Quart, redis: Redis, alice: User, sue: User) -> None:
    client = app.test_client()
    first = session_cookie(await login(client)).value

    second_response = await login(client, username="sue")
    second = session_cookie(second_response).value

    assert second != first
    assert not await redis.exists(session_key(first))
    assert await redis.exists(session_key(second))
    assert not await logged_in(app, first)
    assert await logged_in(app, second)


async def test_logged_in_user_skips_the_login_page(app: Quart, alice: User) -> None:
    client = app.test_client()
    await login(client)
    response = await client.get("/login?next=/agent")
    assert response.status_code == 303
    assert response.headers["Location"] == "/agent"


# --- logging out ---------------------------------------------------------------------


async def test_logout_ends_the_session(app: Quart, redis: Redis, alice: User) -> None:
    client = app.test_client()
    token = session_cookie(await login(client)).value

    response = await client.post("/logout")

    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    cleared = session_cookie(response)
    assert cleared.value == "" and cleared["max-age"] == "0"
    assert not await redis.exists(session_key(token))
    assert not await logged_in(app, token)  # a kept copy of the cookie is worthless


async def test_logout_answers_json_clients_with_204(app: Quart, redis: Redis, alice: User) -> None:
    client = app.test_client()
    token = session_cookie(await login(client)).value

    response = await client.post("/logout", headers={"Accept": "application/json"})

    assert response.status_code == 204
    assert not await redis.exists(session_key(token))


# --- rate limits (the throttle's own tests: test_login_throttle.py) ----------------


async def test_successful_logins_leave_no_key_without_expiry(
    app: Quart, redis: Redis, alice: User
) -> None:
    for _ in range(4):  # a whole office behind one address, each on a browser of their own
        assert (await login(app.test_client())).status_code == 303
    assert await redis.keys(keys.login_device("*"))
    for key in await redis.keys(keys.login_throttle("*")) + await redis.keys(
        keys.login_device("*")
    ):
        assert await redis.ttl(key) > 0


# --- the Origin check ----------------------------------------------------------------


async def test_foreign_origin_is_refused(app: Quart, redis: Redis, alice: User) -> None:
    client = app.test_client()

    refused = await login(client, headers={"Origin": FOREIGN_ORIGIN})
    assert refused.status_code == 403
    assert "Set-Cookie" not in refused.headers
    assert not await redis.keys(keys.session("*"))
    assert (await client.post("/logout", headers={"Origin": "null"})).status_code == 403

    # Our own origin, and no Origin at all (Twilio, curl), pass; reads are never refused.
    assert (await login(client, headers={"Origin": PUBLIC_BASE_URL})).status_code == 303
    assert (await login(client)).status_code == 303
    assert (await client.get("/login", headers={"Origin": FOREIGN_ORIGIN})).status_code != 403


# --- decorators on a throwaway blueprint ---------------------------------------------


def probe_blueprint() -> Blueprint:
    probe = Blueprint("probe", __name__)

    @probe.get("/api/probe/me")
    @auth.login_required
    async def get_me() -> Response:
        user = await current_user()
        return jsonify({"username": user.username, "role": user.role.value})

    @probe.post("/api/probe/supervise")
    @auth.role_required("supervisor")
    async def post_supervise() -> Response:
        return jsonify({"ok": True})

    @probe.get("/probe/page")
    @auth.page_login_required
    async def get_page() -> str:
        return "page"

    @probe.get("/probe/sup-page")
    @auth.page_role_required(Role.SUPERVISOR)
    async def get_sup_page() -> str:
        return "supervisor page"

    @probe.websocket("/probe/ws")
    async def ws_probe() -> None:
        user = await auth.authenticate_websocket()
        if user is None:
            await websocket.close(1008)
            return
        await websocket.send(user.username)

    return probe


@pytest.fixture
async def probe_app(redis: Redis, redis_server: EmbeddedRedis) -> AsyncIterator[Quart]:
    app = create_app(make_settings(), redis_url=redis_server.url)
    app.register_blueprint(probe_blueprint())
    async with app.test_app():
        yield app


async def test_login_required_gives_json_401(probe_app: Quart, alice: User) -> None:
    client = probe_app.test_client()

    anonymous = await client.get("/api/probe/me")
    assert anonymous.status_code == 401
    assert await anonymous.get_json() == {"error": "login required"}

    await login(client)
    me = await client.get("/api/probe/me")
    assert me.status_code == 200
    assert await me.get_json() == {"username": "alice", "role": "agent"}


async def test_role_required(probe_app: Quart, alice: User, sue: User) -> None:
    anonymous = probe_app.test_client()
    assert (await anonymous.post("/api/probe/supervise", json={})).status_code == 401

    agent = probe_app.test_client()
    await login(agent)
    refused = await agent.post("/api/probe/supervise", json={})
    assert refused.status_code == 403
    assert await refused.get_json() == {"error": "supervisors only"}

    supervisor = probe_app.test_client()
    await login(supervisor, username="sue")
    assert (await supervisor.post("/api/probe/supervise", json={})).status_code == 200


async def test_page_login_required_redirects_to_login(probe_app: Quart, alice: User) -> None:
    client = probe_app.test_client()

    response = await client.get("/probe/page?tab=1")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?next=%2Fprobe%2Fpage%3Ftab%3D1"

    back = await client.post(
        "/login", form={"username": "alice", "password": PASSWORD, "next": "/probe/page?tab=1"}
    )
    assert back.headers["Location"] == "/probe/page?tab=1"
    assert (await client.get("/probe/page")).status_code == 200
    assert (await client.get("/probe/sup-page")).status_code == 403


async def test_removing_a_user_ends_their_session(
    probe_app: Quart, redis: Redis, alice: User
) -> None:
    client = probe_app.test_client()
    await login(client)
    assert (await client.get("/api/probe/me")).status_code == 200

    await users.remove_user(redis, "alice")
    assert (await client.get("/api/probe/me")).status_code == 401

    # Someone new under the same name does not inherit the old login either.
    await users.add_user(redis, "alice", Role.SUPERVISOR, "a different one")
    assert (await client.get("/api/probe/me")).status_code == 401


async def test_decorated_views_are_marked(probe_app: Quart) -> None:
    app = probe_app  # the throwaway blueprint's routes, by rule
    marks = {
        rule.rule: getattr(app.view_functions[rule.endpoint], auth.AUTH_MARK, None)
        for rule in app.url_map.iter_rules()
        if "probe" in rule.rule
    }
    assert marks == {
        "/api/probe/me": "login",
        "/api/probe/supervise": "supervisor",
        "/probe/page": "page",
        "/probe/sup-page": "page:supervisor",
        "/probe/ws": None,
    }


async def test_every_api_route_checks_the_session(app: Quart) -> None:
    unguarded = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        and getattr(app.view_functions[rule.endpoint], auth.AUTH_MARK, None) is None
    ]
    assert unguarded == []


async def test_websocket_authenticates_by_cookie_and_origin(probe_app: Quart, alice: User) -> None:
    client = probe_app.test_client()

    async def greeting(headers: dict[str, str]) -> str | None:
        try:
            async with client.websocket("/probe/ws", headers=headers) as socket:
                async with asyncio.timeout(5):
                    return await socket.receive()
        except WebsocketDisconnectError:
            return None

    assert await greeting({}) is None  # no session yet
    await login(client)
    assert await greeting({"Origin": PUBLIC_BASE_URL}) == "alice"
    assert await greeting({"Origin": FOREIGN_ORIGIN}) is None
