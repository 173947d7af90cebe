"""Users in Redis: validation, argon2 hashing, verification and removal."""

from __future__ import annotations

import json

import pytest
from argon2 import PasswordHasher
from redis.asyncio import Redis

from console.domain import keys, users
from console.domain.users import Role, User, UserError, UserExists

PASSWORD = "correct horse battery"


async def stored_hash(redis: Redis, username: str) -> str:
    return json.loads(await redis.hget(keys.USERS, username))["password_hash"]


async def test_add_user_returns_user_without_hash(redis: Redis) -> None:
    user = await users.add_user(redis, "alice", "agent", PASSWORD)

    assert user == User(username="alice", role=Role.AGENT, created_at=user.created_at)
    assert user.created_at > 1_600_000_000_000  # ms since epoch
    assert not hasattr(user, "password_hash")
    assert await users.get_user(redis, "alice") == user


async def test_password_is_stored_as_salted_argon2id(redis: Redis) -> None:
    await users.add_user(redis, "alice", Role.AGENT, PASSWORD)
    await users.add_user(redis, "bob", Role.AGENT, PASSWORD)

    first, second = await stored_hash(redis, "alice"), await stored_hash(redis, "bob")
    assert first.startswith("$argon2id$")
    assert first != second  # same password, different salts
    assert PASSWORD not in await redis.hget(keys.USERS, "alice")


async def test_verify_password(redis: Redis) -> None:
    await users.add_user(redis, "sup_1", Role.SUPERVISOR, PASSWORD)

    user = await users.verify_password(redis, "sup_1", PASSWORD)
    assert user is not None
    assert user.role is Role.SUPERVISOR
    assert await users.verify_password(redis, "sup_1", PASSWORD + "x") is None
    assert await users.verify_password(redis, "SUP_1", PASSWORD) is None
    assert await users.verify_password(redis, "nobody", PASSWORD) is None
    assert await users.verify_password(redis, "a b", PASSWORD) is None


async def test_verify_rehashes_outdated_hash(redis: Redis) -> None:
    await users.add_user(redis, "alice", Role.AGENT, PASSWORD)
    record = json.loads(await redis.hget(keys.USERS, "alice"))
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    await redis.hset(keys.USERS, "alice", json.dumps({**record, "password_hash": weak}))

    assert await users.verify_password(redis, "alice", PASSWORD) is not None

    upgraded = await stored_hash(redis, "alice")
    assert upgraded != weak
    assert not PasswordHasher().check_needs_rehash(upgraded)
    assert await users.verify_password(redis, "alice", PASSWORD) is not None


@pytest.mark.parametrize("username", ["a b", "x" * 122, "é", "", "alice!", "a-b", "client:x"])
async def test_invalid_usernames_are_rejected(redis: Redis, username: str) -> None:
    with pytest.raises(UserError, match="invalid username"):
        await users.add_user(redis, username, Role.AGENT, PASSWORD)
    assert await redis.hlen(keys.USERS) == 0


@pytest.mark.parametrize("username", ["a", "x" * 121, "Agent_007", "_"])
async def test_valid_usernames_are_accepted(redis: Redis, username: str) -> None:
    await users.add_user(redis, username, Role.AGENT, PASSWORD)
    assert await users.get_user(redis, username) is not None


async def test_invalid_role_and_short_password_are_rejected(redis: Redis) -> None:
    with pytest.raises(UserError, match="invalid role"):
        await users.add_user(redis, "alice", "admin", PASSWORD)
    with pytest.raises(UserError, match="at least 8"):
        await users.add_user(redis, "alice", Role.AGENT, "1234567")
    assert await users.get_user(redis, "alice") is None


async def test_duplicate_is_rejected_and_keeps_the_original(redis: Redis) -> None:
    original = await users.add_user(redis, "alice", Role.AGENT, PASSWORD)

    with pytest.raises(UserExists, match="already exists"):
        await users.add_user(redis, "alice", Role.SUPERVISOR, "another password")

    assert await users.get_user(redis, "alice") == original
    assert await users.verify_password(redis, "alice", PASSWORD) == original


async def test_list_users_sorted(redis: Redis) -> None:
    await users.add_user(redis, "zoe", Role.SUPERVISOR, PASSWORD)
    await users.add_user(redis, "adam", Role.AGENT, PASSWORD)

    listed = await users.list_users(redis)

    assert [(u.username, u.role) for u in listed] == [
        ("adam", Role.AGENT),
        ("zoe", Role.SUPERVISOR),
    ]


async def test_malformed_record_is_skipped_not_fatal(redis: Redis) -> None:
    await users.add_user(redis, "alice", Role.AGENT, PASSWORD)
    await redis.hset(keys.USERS, "broken", "not json")

    assert [u.username for u in await users.list_users(redis)] == ["alice"]
    assert await users.get_user(redis, "broken") is None
    assert await users.verify_password(redis, "broken", PASSWORD) is None


async def test_remove_user(redis: Redis) -> None:
    await users.add_user(redis, "alice", Role.AGENT, PASSWORD)

    assert await users.remove_user(redis, "alice") is True
    assert await users.remove_user(redis, "alice") is False
    assert await users.get_user(redis, "alice") is None
    assert await users.verify_password(redis, "alice", PASSWORD) is None
