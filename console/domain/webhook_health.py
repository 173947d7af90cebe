"""Per-route webhook health: when Twilio last reached each route, and the recent
signature failures.

A deployment that "hears nothing" almost always has a proxy or PUBLIC_BASE_URL
mismatch; this makes it visible on `warmline check` and the supervisor console.

A failure is kept as the route (one of the app's own webhook paths), the time, the
reason, the client address and the URL the signature was checked against, which is
this deployment's PUBLIC_BASE_URL + that route: never the query string, a header or
anything else the sender chose, and never the auth token. Each client keeps at most
``FAILURES_PER_CLIENT`` entries, so one sender cannot push the others out.
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
FAILURES_PER_CLIENT = 5
REASONS = ("missing signature", "signature does not match", "wrong account")
_last_written: dict[str, float] = {}
_pending: set[asyncio.Task[None]] = set()

# KEYS[1] the list, newest first; ARGV: the new entry, its client, the per-client and
# overall limits. The entry goes first; older entries of the same client beyond the
# per-client limit, and any entry beyond the overall limit, are dropped. One script,
# so concurrent failures never interleave; at most FAILURES_KEPT + 1 entries are read.
_PUSH = """
local list, entry, client = KEYS[1], ARGV[1], ARGV[2]
local per_client, kept = tonumber(ARGV[3]), tonumber(ARGV[4])
local old = redis.call('LRANGE', list, 0, kept - 1)
local out, same = {entry}, 1
for _, item in ipairs(old) do
  if #out >= kept then break end
  local ok, decoded = pcall(cjson.decode, item)
  local mine = ok and type(decoded) == 'table' and decoded['client'] == client
  if mine then same = same + 1 end
  if not mine or same <= per_client then out[#out + 1] = item end
end
redis.call('DEL', list)
redis.call('RPUSH', list, unpack(out))
return #out
"""


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


async def note_signature_failure(
    redis: Redis, route: str, reason: str, client: str, checked_url: str
) -> None:
    """Keep a refused webhook request. ``route`` is the app's own webhook path,
    ``checked_url`` PUBLIC_BASE_URL + that path (no query), ``reason`` one of
    ``REASONS`` and ``client`` the peer's address: the caller passes nothing the
    sender chose."""
    entry = {"route": route, "at": now_ms(), "reason": reason, "client": client, "url": checked_url}
    try:
        await redis.eval(  # type: ignore[misc]
            _PUSH,
            1,
            keys.SIGNATURE_FAILURES,
            json.dumps(entry),
            client,
            str(FAILURES_PER_CLIENT),
            str(FAILURES_KEPT),
        )
    except (RedisError, OSError) as exc:
        log.debug("signature failure not recorded: %s", exc)


def _public(raw: str) -> dict[str, object] | None:
    """An entry as served: its known fields only. Entries kept before the reason and
    client were recorded held the whole checked URL; its query is cut off."""
    try:
        entry = json.loads(raw)
        return {
            "route": str(entry["route"]).split("?", 1)[0],
            "at": int(entry["at"]),
            "reason": str(entry.get("reason", "signature check failed")),
            "client": str(entry.get("client", "unknown")),
            "url": str(entry.get("url", "")).split("?", 1)[0],
        }
    except (ValueError, TypeError, KeyError):
        return None


async def read_health(redis: Redis) -> dict[str, object]:
    """{"last_request": {route: ms}, "signature_failures": [...newest first]}; each
    failure is {"route", "at", "reason", "client", "url"}."""
    last = await redis.hgetall(keys.WEBHOOK_HEALTH)
    failures = await redis.lrange(keys.SIGNATURE_FAILURES, 0, FAILURES_KEPT - 1)
    entries = [_public(f) for f in failures]
    return {
        "last_request": {route: int(at) for route, at in last.items()},
        "signature_failures": [e for e in entries if e is not None],
    }
