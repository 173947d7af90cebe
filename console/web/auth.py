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

from console.domain import keys, users
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
LOGIN_WINDOW_SECONDS = 15 * 60
MAX_FAILURES_PER_USER = 10
MAX_FAILURES_PER_ADDRESS = 30
INVALID_CREDENTIALS = "Invalid username or password"
AUTH_MARK = "__warmline_auth__"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_CACHE = "_warmline_session_user"

# Counts an attempt against every subject (KEYS, limits in ARGV[2..]) in one step,
# before the password is checked, so parallel guesses cannot all slip under a limit.
# Each window is fixed, starting at its first attempt. Returns the seconds to wait
# when a limit is exceeded, else 0.
_CLAIM_ATTEMPT = """
local wait = 0
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[1]) end
  if n > tonumber(ARGV[i + 1]) and wait == 0 then
    wait = math.max(redis.call('TTL', key), 1)
  end
end
return wait
"""

# KEYS[1] is the address counter, KEYS[2] (if any) the user's. DECR only a live key:
# on an expired one it would create a counter that never expires.
_REFUND_ATTEMPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECR', KEYS[1]) end
if KEYS[2] then redis.call('DEL', KEYS[2]) end
return 0
"""

P = ParamSpec("P")
R = TypeVar("R")
View = Callable[P, Awaitable[R]]


@dataclass(frozen=True)
class SessionUser:
    """The user behind the current request."""

    username: str
    role: Role

    @property
    def is_supervisor(self) -> bool:
        return self.role is Role.SUPERVISOR


# --- who is asking -------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _load_session(redis: Redis, token: str | None) -> SessionUser | None:
    """The live session behind a cookie token, dropping it if its user is gone or
    was re-created (a new person must not inherit an old login)."""
    if not token or not _TOKEN.fullmatch(token):
        return None
    key = keys.session(_digest(token))
    raw = await redis.get(key)
    if raw is None:
        return None
    try:
        session = json.loads(raw)
        username, user_created_at = session["username"], session["user_created_at"]
    except (ValueError, KeyError, TypeError):
        await redis.delete(key)
        return None
    user = await users.get_user(redis, username)
    if user is None or user.created_at != user_created_at:
        await redis.delete(key)
        return None
    return SessionUser(username=user.username, role=user.role)


async def current_user() -> SessionUser | None:
    """The logged-in user of this request or WebSocket, looked up once per request."""
    if _CACHE not in g:
        cookies = websocket.cookies if has_websocket_context() else request.cookies
        setattr(g, _CACHE, await _load_session(get_redis(), cookies.get(SESSION_COOKIE)))
    return getattr(g, _CACHE)


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
    """Check the credentials (form or JSON) and start a fresh session."""
    as_json = request.is_json
    username, password, next_path = await _read_credentials(as_json)
    if not username or not password:
        return await _login_failed("Enter your username and password", 400, as_json, next_path)
    redis = get_redis()
    limits = _attempt_limits(username, request.remote_addr)
    retry_after = await _claim_attempt(redis, limits)
    if retry_after:
        return await _too_many(retry_after, as_json, next_path)
    user = await users.verify_password(redis, username, password)
    if user is None:
        log.info("login failed for %s from %s", _loggable(username), request.remote_addr)
        return await _login_failed(INVALID_CREDENTIALS, 401, as_json, next_path)
    await _refund_attempt(redis, limits)
    token = await _start_session(redis, user)
    log.info("login: %s (%s)", user.username, user.role.value)
    if as_json:
        response = jsonify({"username": user.username, "role": user.role.value})
    else:
        response = redirect(next_path, 303)
    _set_cookie(response, token)
    return response


@blueprint.post("/logout")
async def post_logout() -> Response:
    """End the session; JSON clients get 204, browsers go back to the login page."""
    token = request.cookies.get(SESSION_COOKIE)
    if token and _TOKEN.fullmatch(token):
        await get_redis().delete(keys.session(_digest(token)))
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


def _address_key(address: str | None) -> str:
    return keys.login_attempts(f"addr:{address or 'unknown'}")


def _user_key(username: str) -> str:
    """Case-folded, so "Alice" and "alice" draw on one budget."""
    return keys.login_attempts(f"user:{username.casefold()}")


def _attempt_limits(username: str, address: str | None) -> dict[str, int]:
    """Attempt counter key -> limit: this client address (first) and, when the name
    could be a user at all, this username (garbage names must not mint counters)."""
    limits = {_address_key(address): MAX_FAILURES_PER_ADDRESS}
    if USERNAME.fullmatch(username):
        limits[_user_key(username)] = MAX_FAILURES_PER_USER
    return limits


async def _claim_attempt(redis: Redis, limits: dict[str, int]) -> int:
    """Count this attempt; the seconds to wait when over a limit, else 0."""
    return int(
        await redis.eval(
            _CLAIM_ATTEMPT, len(limits), *limits, LOGIN_WINDOW_SECONDS, *limits.values()
        )
    )


async def _refund_attempt(redis: Redis, limits: dict[str, int]) -> None:
    """A successful login was not a failure: give the address its attempt back (many
    agents may share one office address) and clear the user's count."""
    await redis.eval(_REFUND_ATTEMPT, len(limits), *limits)


async def _start_session(redis: Redis, user: users.User) -> str:
    """A new token for ``user``; a token the request carried is revoked, so logging
    in never keeps a session id someone else may have planted or seen."""
    old = request.cookies.get(SESSION_COOKIE)
    if old and _TOKEN.fullmatch(old):
        await redis.delete(keys.session(_digest(old)))
    token = secrets.token_urlsafe(32)
    session = {
        "username": user.username,
        "role": user.role.value,
        "created_at": int(time.time() * 1000),
        "user_created_at": user.created_at,
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
    minutes = max(1, -(-retry_after // 60))
    message = f"Too many failed attempts. Try again in {minutes} minute{'s' * (minutes > 1)}."
    log.warning("login locked out from %s", request.remote_addr)
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


def _loggable(username: str) -> str:
    """A mistyped password often lands in the username field: log only well-formed
    names, and never a password or a token."""
    return repr(username) if USERNAME.fullmatch(username) else "(malformed name)"


@blueprint.after_app_request
async def _no_store_for_auth(response: Response) -> Response:
    """Login answers carry credentials' outcomes; keep them out of shared caches."""
    if request.path in ("/login", "/logout"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
