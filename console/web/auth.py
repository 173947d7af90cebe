"""Login, logout and who is asking: server-side sessions in Redis.

The cookie holds only a random token; Redis holds the session under a SHA-256 of
it, so a leaked Redis dump cannot be replayed as cookies. Every request re-checks
that the user still exists, so removing a user ends their sessions at once.

Cross-site protection comes from three layers: SameSite=Lax cookies, JSON-only
state-changing API calls, and refusing any state-changing request whose ``Origin``
is not ours (Twilio's webhooks send no ``Origin``, so they pass).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlencode

from quart import (
    Blueprint,
    Response,
    g,
    has_websocket_context,
    jsonify,
    redirect,
    render_template,
    request,
    websocket,
)
from redis.asyncio import Redis
from werkzeug.exceptions import Forbidden

from console.domain import audit, keys, login_throttle, sessions, users
from console.domain.users import Role
from console.extension import get_settings
from console.ids import USERNAME
from console.redis_ext import get_redis
from console.web.errors import error_response

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)

SESSION_COOKIE = "warmline_session"
# One shift; the TTL is absolute so a stolen cookie dies within a working day.
SESSION_TTL_SECONDS = 12 * 60 * 60
# A browser that has logged in as someone: its own throttle bucket for them
# (console/domain/login_throttle.py), sent only to /login.
DEVICE_COOKIE = "warmline_device"
INVALID_CREDENTIALS = "Invalid username or password"
AUTH_MARK = "__warmline_auth__"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_CACHE = "_warmline_session_user"

P = ParamSpec("P")
R = TypeVar("R")
View = Callable[P, Awaitable[R]]


@dataclass(frozen=True)
class SessionUser:
    """The user behind the current request."""

    username: str
    role: Role
    session: str = ""  # the digest its session is stored under

    @property
    def is_supervisor(self) -> bool:
        return self.role is Role.SUPERVISOR


# --- who is asking -------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _load_session(redis: Redis, token: str | None) -> SessionUser | None:
    """The live session behind a cookie token."""
    if not token or not _TOKEN.fullmatch(token):
        return None
    user, _ = await _session_by_digest(redis, _digest(token))
    return user


async def _session_by_digest(redis: Redis, digest: str) -> tuple[SessionUser | None, int]:
    """The session stored under ``digest`` and the milliseconds it has left, dropping
    it if its user is gone, was re-created (a new person must not inherit an old
    login) or has changed password since."""
    key = keys.session(digest)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(key)
        pipe.pttl(key)
        raw, ttl_ms = await pipe.execute()
    if raw is None:
        return None, 0
    try:
        session = json.loads(raw)
        username, user_created_at = session["username"], session["user_created_at"]
        credentials_version = session.get("credentials_version", 0)
    except (ValueError, KeyError, TypeError, AttributeError):
        await redis.delete(key)
        return None, 0
    user = await users.get_user(redis, username)
    if (
        user is None
        or user.created_at != user_created_at
        or user.credentials_version != credentials_version
    ):
        await redis.delete(key)
        return None, 0
    return SessionUser(username=user.username, role=user.role, session=digest), ttl_ms


async def session_time_left_ms(user: SessionUser) -> int:
    """How long ``user``'s session still runs, read afresh (0: it has ended). A socket
    closes when that runs out; it asks after it is subscribed to revocations, so an
    end announced before then is seen here."""
    found, ttl_ms = await _session_by_digest(get_redis(), user.session)
    if found is None or found.username != user.username:
        return 0
    return ttl_ms if ttl_ms > 0 else SESSION_TTL_SECONDS * 1000


async def current_user() -> SessionUser | None:
    """The logged-in user of this request or WebSocket, looked up once per request."""
    if _CACHE not in g:
        cookies = websocket.cookies if has_websocket_context() else request.cookies
        setattr(g, _CACHE, await _load_session(get_redis(), cookies.get(SESSION_COOKIE)))
    return getattr(g, _CACHE)


async def signed_in_user() -> SessionUser:
    """The user of a request ``login_required`` (or ``role_required``) let through."""
    user = await current_user()
    assert user is not None  # the decorators guarantee it
    return user


async def authenticate_websocket() -> SessionUser | None:
    """The user of the WebSocket handshake, or None to refuse it. The handshake's
    ``Origin`` is checked too: browsers do not apply CORS to WebSockets, so this is
    what stops another site from opening a socket with our cookie."""
    if not origin_allowed(websocket.headers.get("Origin")):
        return None
    return await current_user()


# --- cross-origin refusal -------------------------------------------------------------


def origin_allowed(origin: str | None) -> bool:
    """True when there is no ``Origin`` (Twilio, curl) or it is our public origin."""
    return origin is None or origin.lower() == get_settings().public_origin.lower()


@blueprint.before_app_request
async def check_origin() -> None:
    """Refuse (403) a state-changing request sent from another origin."""
    if request.method in STATE_CHANGING and not origin_allowed(request.headers.get("Origin")):
        log.warning("refused cross-origin %s %s", request.method, request.path)
        raise Forbidden(description="cross-origin request refused")


# --- decorators ------------------------------------------------------------------------


def _mark(view: Callable[..., Any], rule: str) -> None:
    """Lets a test walk ``app.url_map`` and prove every /api route checks the session."""
    setattr(view, AUTH_MARK, rule)


def _guard(
    role: Role | None,
    anonymous: Callable[[], Response],
    wrong_role: Callable[[Role], Response],
    mark: str,
) -> Callable[[View[P, R]], View[P, R | Response]]:
    """A view decorator that runs the view only for a session of ``role`` (any role
    when None); the API and the pages differ only in how they refuse."""

    def decorator(view: View[P, R]) -> View[P, R | Response]:
        @wraps(view)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            user = await current_user()
            if user is None:
                return anonymous()
            if role is not None and user.role is not role:
                return wrong_role(role)
            return await view(*args, **kwargs)

        _mark(wrapper, mark)
        return wrapper

    return decorator


def _api_401() -> Response:
    return error_response("login required", 401)


def _api_403(role: Role) -> Response:
    return error_response(f"{role.value}s only", 403)


def _page_403(role: Role) -> Response:
    return Response(f"403 Forbidden: {role.value}s only\n", 403, mimetype="text/plain")


def login_required(view: View[P, R]) -> View[P, R | Response]:
    """API views: JSON 401 without a valid session."""
    return _guard(None, _api_401, _api_403, "login")(view)


def role_required(role: Role | str) -> Callable[[View[P, R]], View[P, R | Response]]:
    """API views: JSON 401 without a session, 403 for users of another role."""
    return _guard(Role(role), _api_401, _api_403, Role(role).value)


def page_login_required(view: View[P, R]) -> View[P, R | Response]:
    """HTML pages: 303 to the login page (coming back here after) without a session."""
    return _guard(None, _to_login, _page_403, "page")(view)


def page_role_required(role: Role | str) -> Callable[[View[P, R]], View[P, R | Response]]:
    """HTML pages: 303 to login without a session, a plain 403 for another role."""
    return _guard(Role(role), _to_login, _page_403, f"page:{Role(role).value}")


def _to_login() -> Response:
    target = request.full_path.rstrip("?") if request.query_string else request.path
    return redirect("/login?" + urlencode({"next": target}), 303)


# --- routes ----------------------------------------------------------------------------


@blueprint.get("/login")
async def get_login() -> Response | str:
    """The login form; a user already logged in goes straight on."""
    next_path = safe_next(request.args.get("next"))
    if await current_user() is not None:
        return redirect(next_path, 303)
    return await _login_page(next_path)


@blueprint.post("/login")
async def post_login() -> Response:
    """Check the credentials (form or JSON) and start a fresh session. The attempt is
    counted before the password is checked, and given back if it was right."""
    as_json = request.is_json
    username, password, next_path = await _read_credentials(as_json)
    if not username or not password:
        return await _login_failed("Enter your username and password", 400, as_json, next_path)
    redis = get_redis()
    client = request.remote_addr
    devices = login_throttle.device_tokens(request.cookies.get(DEVICE_COOKIE))
    attempt = await login_throttle.claim(redis, username, client, devices)
    if attempt.retry_after:
        name, wait = _audit_name(username), attempt.retry_after
        audit.record("login-throttled", actor=name, client=client, retry_after=wait)
        return await _too_many(attempt.retry_after, as_json, next_path)
    user = await users.verify_password(redis, username, password)
    if user is None:
        audit.record("login-failed", actor=_audit_name(username), client=client)
        return await _login_failed(INVALID_CREDENTIALS, 401, as_json, next_path)
    device = await login_throttle.succeeded(redis, attempt)
    token = await _start_session(redis, user)
    audit.record("login", actor=user.username, client=client, role=user.role.value)
    if as_json:
        response = jsonify({"username": user.username, "role": user.role.value})
    else:
        response = redirect(next_path, 303)
    _set_cookie(response, token)
    _set_device_cookie(response, login_throttle.device_cookie(devices, device))
    return response


@blueprint.post("/logout")
async def post_logout() -> Response:
    """End the session; JSON clients get 204, browsers go back to the login page."""
    token = request.cookies.get(SESSION_COOKIE)
    user = await current_user()
    if (
        token
        and _TOKEN.fullmatch(token)
        and await sessions.end_session(get_redis(), _digest(token))
    ):
        audit.record("logout", actor=user.username if user else None, client=request.remote_addr)
    response = Response("", 204) if _wants_json() else redirect("/login", 303)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        secure=get_settings().secure_cookies,
        httponly=True,
        samesite="Lax",
    )
    return response


# --- login helpers ---------------------------------------------------------------------


def safe_next(candidate: str | None) -> str:
    """A local path to go to after login; anything that could leave the site is "/".
    ``//host`` and ``/\\host`` are protocol-relative URLs to browsers."""
    if (
        not candidate
        or not candidate.startswith("/")
        or candidate.startswith("//")
        or "\\" in candidate
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in candidate)
        or len(candidate) > 2048
    ):
        return "/"
    return candidate


async def _read_credentials(as_json: bool) -> tuple[str, str, str]:
    if as_json:
        body = await request.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
    else:
        body = await request.form
    username, password = body.get("username"), body.get("password")
    next_path = safe_next(body.get("next") or request.args.get("next"))
    return (
        username if isinstance(username, str) else "",
        password if isinstance(password, str) else "",
        next_path,
    )


def _set_device_cookie(response: Response, value: str) -> None:
    """Long-lived and HttpOnly; only the login form needs it, so only /login gets it."""
    response.set_cookie(
        DEVICE_COOKIE,
        value,
        max_age=login_throttle.DEVICE_TTL_SECONDS,
        path="/login",
        secure=get_settings().secure_cookies,
        httponly=True,
        samesite="Strict",
    )


async def _start_session(redis: Redis, user: users.User) -> str:
    """A new token for ``user``; a token the request carried is revoked, so logging
    in never keeps a session id someone else may have planted or seen."""
    old = request.cookies.get(SESSION_COOKIE)
    if old and _TOKEN.fullmatch(old):
        await sessions.end_session(redis, _digest(old))
    token = secrets.token_urlsafe(32)
    session = {
        "username": user.username,
        "role": user.role.value,
        "created_at": int(time.time() * 1000),
        "user_created_at": user.created_at,
        "credentials_version": user.credentials_version,
    }
    await redis.set(keys.session(_digest(token)), json.dumps(session), ex=SESSION_TTL_SECONDS)
    return token


def _set_cookie(response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_TTL_SECONDS,
        path="/",
        secure=get_settings().secure_cookies,
        httponly=True,
        samesite="Lax",
    )


async def _login_failed(message: str, status: int, as_json: bool, next_path: str) -> Response:
    if as_json:
        return error_response(message, status)
    return Response(await _login_page(next_path, error=message), status)


async def _too_many(retry_after: int, as_json: bool, next_path: str) -> Response:
    if retry_after < 60:
        wait = f"{retry_after} second{'s' * (retry_after > 1)}"
    else:
        minutes = -(-retry_after // 60)
        wait = f"{minutes} minute{'s' * (minutes > 1)}"
    message = f"Too many failed attempts. Try again in {wait}."
    if as_json:
        response = error_response(message, 429)
    else:
        response = Response(await _login_page(next_path, error=message), 429)
    response.headers["Retry-After"] = str(retry_after)
    return response


async def _login_page(next_path: str, error: str | None = None) -> str:
    return await render_template("login.html", next=next_path, error=error)


def _wants_json() -> bool:
    """JSON clients say so in ``Accept`` (or send JSON); browsers prefer HTML."""
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _audit_name(username: str) -> str | None:
    """A mistyped password often lands in the username field: audit only well-formed
    names (None otherwise), and never a password or a token."""
    return username if USERNAME.fullmatch(username) else None


@blueprint.after_app_request
async def _no_store_for_auth(response: Response) -> Response:
    """Login answers carry credentials' outcomes; keep them out of shared caches."""
    if request.path in ("/login", "/logout"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
