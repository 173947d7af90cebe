"""Per-route webhook health: when Twilio last reached each route, and the recent
signature failures with the URL the signature was checked against.

A deployment that "hears nothing" almost always has a proxy or PUBLIC_BASE_URL
mismatch; this makes it visible on `warmline check` and the supervisor console.
The auth token is never stored, only the URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from console.domain import keys
from console.domain.events import now_ms

log = logging.getLogger(__name__)

FAILURES_KEPT = 20
_last_written: dict[str, float] = {}
_pending: set[asyncio.Task[None]] = set()


def note_request(redis: Redis, route: str) -> None:
    """Remember that Twilio reached ``route`` (at most once a second per process,
    off the request's path)."""
    now = time.monotonic()
    if now - _last_written.get(route, 0.0) < 1.0:
        return
    _last_written[route] = now
    task = asyncio.create_task(_write(redis, keys.WEBHOOK_HEALTH, route, str(now_ms())))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _write(redis: Redis, key: str, field: str, value: str) -> None:
    try:
        await redis.hset(key, field, value)
    except (RedisError, OSError) as exc:
        log.debug("webhook health not recorded: %s", exc)


async def note_signature_failure(redis: Redis, route: str, checked_url: str) -> None:
    entry = json.dumps({"route": route, "url": checked_url, "at": now_ms()})
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.lpush(keys.SIGNATURE_FAILURES, entry)
            pipe.ltrim(keys.SIGNATURE_FAILURES, 0, FAILURES_KEPT - 1)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.debug("signature failure not recorded: %s", exc)


async def read_health(redis: Redis) -> dict[str, object]:
    """{"last_request": {route: ms}, "signature_failures": [...newest first]}"""
    last = await redis.hgetall(keys.WEBHOOK_HEALTH)
    failures = await redis.lrange(keys.SIGNATURE_FAILURES, 0, FAILURES_KEPT - 1)
    return {
        "last_request": {route: int(at) for route, at in last.items()},
        "signature_failures": [json.loads(f) for f in failures],
    }
