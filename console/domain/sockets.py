"""How many ``/ws`` sockets one user holds, across every process of the deployment.

Each open socket is an entry of the user's sorted set, scored by the last time its
process stamped it (the presence beat, every few seconds). A socket is admitted by
one script that first forgets entries not stamped for ``EXPIRY_MS`` (the sockets of
a process that crashed or lost Redis), then adds the new one only while the user
holds fewer than the cap. A socket's entry goes when it closes.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from console.domain import keys
from console.domain.events import now_ms

EXPIRY_MS = 30_000
"""An entry not stamped for this long no longer counts: six beats of at most 5 s."""

_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


async def claim_socket(redis: Redis, username: str, socket_id: str, cap: int) -> bool:
    """Count ``socket_id`` among ``username``'s open sockets unless they already hold
    ``cap`` of them (False: refused). Atomic across processes."""
    now = now_ms()
    admitted = await redis.eval(
        _CLAIM, 1, keys.user_sockets(username), now, now - EXPIRY_MS, cap, socket_id, EXPIRY_MS
    )
    return bool(admitted)


async def release_socket(redis: Redis, username: str, socket_id: str) -> None:
    """The socket closed: it no longer counts."""
    await redis.zrem(keys.user_sockets(username), socket_id)


async def stamp_sockets(redis: Redis, sockets: Iterable[tuple[str, str]]) -> None:
    """Record now as the last time each ``(username, socket_id)`` was open."""
    by_user: dict[str, list[str]] = {}
    for username, socket_id in sockets:
        by_user.setdefault(username, []).append(socket_id)
    if not by_user:
        return
    now = now_ms()
    async with redis.pipeline(transaction=False) as pipe:
        for username, ids in by_user.items():
            key = keys.user_sockets(username)
            pipe.zadd(key, dict.fromkeys(ids, now))
            pipe.pexpire(key, EXPIRY_MS)
        await pipe.execute()


async def open_sockets(redis: Redis, username: str) -> int:
    """How many sockets ``username`` holds now (stale entries excluded)."""
    return await redis.zcount(keys.user_sockets(username), now_ms() - EXPIRY_MS, "+inf")
