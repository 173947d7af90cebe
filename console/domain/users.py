"""Console users, kept in Redis like all state (hash ``keys.USERS``).

A username doubles as the Twilio Voice SDK identity of the user's softphone, so it
follows Twilio's identity rule. Passwords are stored only as argon2id hashes (slow
and salted), and a ``User`` never carries the hash out of this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from console.domain import keys
from console.domain.sessions import ALL_SESSIONS, MAX_KEPT
from console.ids import USERNAME, USERNAME_RULE

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
# Bounds the argon2 work one request can ask for; no human password is this long.
MAX_PASSWORD_LENGTH = 1024

# Replaces a stored hash only while it is still the one verified, so a user removed
# (or re-added) meanwhile is never resurrected or overwritten by a stale rehash.
_REPLACE_HASH = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local record = cjson.decode(raw)
if record['password_hash'] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# Removes a user, or replaces their record (ARGV[3], while it is still ARGV[4]), and
# announces that all their sessions ended, in one step. KEYS: users, revocations.
_REVOKING_CHANGE = """
if ARGV[3] == '' then
  if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
else
  if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[4] then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'username', ARGV[1], 'session', ARGV[5])
return 1
"""


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"


class UserError(ValueError):
    """A user operation that cannot be done; the message is one line for a person."""


class UserExists(UserError):
    """The username is already taken."""


@dataclass(frozen=True)
class User:
    """A console user as the rest of the app sees it: no password hash."""

    username: str
    role: Role
    created_at: int  # ms since epoch, like every time in Warmline
    # Bumped when the password changes: a session started under another is void.
    credentials_version: int = 0


_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so that a wrong
    username costs as much time as a wrong password and does not reveal itself."""
    return _hasher.hash("warmline-dummy-password")


def validate_username(username: object) -> str:
    """``username`` if it is a valid Twilio client identity, else UserError."""
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise UserError(f"invalid username {username!r}: use {USERNAME_RULE}")
    return username


def validate_role(role: object) -> Role:
    """``role`` as a Role, else UserError naming the allowed ones."""
    try:
        return Role(role)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise UserError(f"invalid role {role!r}: use one of {allowed}") from None


def validate_password(password: object) -> str:
    """``password`` if long enough to be worth hashing, else UserError."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"password too long: use at most {MAX_PASSWORD_LENGTH} characters")
    return password


async def add_user(redis: Redis, username: str, role: Role | str, password: str) -> User:
    """Create a user; UserExists if the name is taken, UserError if anything is invalid."""
    username = validate_username(username)
    role = validate_role(role)
    password = validate_password(password)
    # argon2 is deliberately slow (~0.1 s): keep it off the event loop.
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    user = User(username=username, role=role, created_at=int(time.time() * 1000))
    record = {"role": role.value, "password_hash": password_hash, "created_at": user.created_at}
    if not await redis.hsetnx(keys.USERS, username, json.dumps(record)):
        raise UserExists(f"user {username!r} already exists")
    return user


async def get_user(redis: Redis, username: str) -> User | None:
    """The user called ``username``, or None."""
    record = await _get_record(redis, username)
    return None if record is None else _to_user(username, record)


async def list_users(redis: Redis) -> list[User]:
    """Every user, sorted by username."""
    raw = await redis.hgetall(keys.USERS)
    users = []
    for username, value in sorted(raw.items()):
        record = _decode(username, value)
        if record is not None:
            users.append(_to_user(username, record))
    return users


async def remove_user(redis: Redis, username: str) -> bool:
    """Delete a user; False if there was none. Their sessions die with them
    (``console.web.auth`` checks the user on every request) and every process closes
    their open sockets."""
    return await _revoking_change(redis, username, new_record="", old_record="")


async def change_password(redis: Redis, username: str, password: str) -> User:
    """Give ``username`` a new password, ending every session they hold (UserError if
    there is no such user or the password is not acceptable)."""
    password = validate_password(password)
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    for _ in range(3):  # lost only to a concurrent change of the same user
        old = await redis.hget(keys.USERS, username)
        record = None if old is None else _decode(username, old)
        if record is None:
            raise UserError(f"no user named {username!r}")
        version = int(record.get("credentials_version", 0)) + 1
        updated = {**record, "password_hash": password_hash, "credentials_version": version}
        if await _revoking_change(redis, username, json.dumps(updated), old):
            return _to_user(username, updated)
    raise UserError(f"user {username!r} changed meanwhile; try again")


async def _revoking_change(redis: Redis, username: str, new_record: str, old_record: str) -> bool:
    """Remove (``new_record`` empty) or replace a user's record, and announce the end
    of all their sessions; False when the user was not there (or not as ``old_record``)."""
    done = await redis.eval(
        _REVOKING_CHANGE,
        2,
        keys.USERS,
        keys.REVOCATIONS,
        username,
        MAX_KEPT,
        new_record,
        old_record,
        ALL_SESSIONS,
    )
    return bool(done)


async def verify_password(redis: Redis, username: str, password: str) -> User | None:
    """The user if ``password`` is theirs, else None — taking about the same time
    whether or not the user exists."""
    record = None
    if isinstance(username, str) and USERNAME.fullmatch(username):
        record = await _get_record(redis, username)
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        password = ""
    stored = record["password_hash"] if record else _dummy_hash()
    if not await asyncio.to_thread(_matches, stored, password) or record is None:
        return None
    if _hasher.check_needs_rehash(stored):
        await _rehash(redis, username, record, password)
    return _to_user(username, record)


def _matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def _rehash(redis: Redis, username: str, record: dict[str, Any], password: str) -> None:
    """Upgrade a hash made with older parameters, now that the password is known."""
    new_hash = await asyncio.to_thread(_hasher.hash, password)
    updated = json.dumps({**record, "password_hash": new_hash})
    await redis.eval(_REPLACE_HASH, 1, keys.USERS, username, record["password_hash"], updated)


async def _get_record(redis: Redis, username: str) -> dict[str, Any] | None:
    value = await redis.hget(keys.USERS, username)
    return None if value is None else _decode(username, value)


def _decode(username: str, value: str) -> dict[str, Any] | None:
    """The stored record, or None (logged) when it is not one we wrote: a damaged
    entry must lock that one user out, not break every listing."""
    try:
        record = json.loads(value)
        Role(record["role"])
        if not isinstance(record["password_hash"], str):
            raise TypeError("password_hash is not a string")
        int(record["created_at"])
        int(record.get("credentials_version", 0))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring malformed user record for %r in %s", username, keys.USERS)
        return None
    return record


def _to_user(username: str, record: dict[str, Any]) -> User:
    return User(
        username=username,
        role=Role(record["role"]),
        created_at=int(record["created_at"]),
        credentials_version=int(record.get("credentials_version", 0)),
    )
