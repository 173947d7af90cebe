"""Redis saved and put back whole (DUMP/RESTORE with TTLs), for tests that try many
requests from one starting state."""

from __future__ import annotations

from redis.asyncio import Redis

Saved = dict[bytes, tuple[bytes, int]]


async def dump_all(raw: Redis) -> Saved:
    """Every key with its value and TTL; ``raw`` must not decode responses."""
    saved = {}
    for key in await raw.keys("*"):
        saved[key] = (await raw.dump(key), max(await raw.pttl(key), 0))
    return saved


async def restore_all(raw: Redis, saved: Saved) -> None:
    """Redis as ``dump_all`` found it, and nothing else, in one transaction: the app's
    background tasks (sweeper, presence) may write meanwhile, never in between."""
    async with raw.pipeline(transaction=True) as pipe:
        pipe.flushdb()
        for key, (value, ttl) in saved.items():
            pipe.restore(key, ttl, value)
        await pipe.execute()
