"""Login throttling: growing waits after failed logins, counted per username and
client address, per client address, and per trusted device.

A device is a browser that has logged in as a user before: it holds a random token
(the device cookie) that Redis binds to that username. A login for that name
presenting it is counted in the device's own bucket only, so failures by others —
even behind the same address — never make that browser wait. Tokens are minted only
by a correct password, so nobody can mint one for another user, and the answers
never depend on whether a username exists.

Each attempt is claimed in one Lua call before the password is checked (parallel
guesses cannot all slip under a limit), and given back when it succeeds.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from console.domain import keys
from console.ids import USERNAME


@dataclass(frozen=True)
class Rule:
    """After ``free`` failures the bucket waits ``first_wait_seconds``, doubling per
    further failure up to ``cap_seconds``; its failures are forgotten after
    ``memory_seconds`` without one."""

    free: int
    cap_seconds: int
    memory_seconds: int
    first_wait_seconds: int = 1

    def argv(self) -> tuple[int, int, int, int]:
        """The rule as the claim script reads it: free, then milliseconds."""
        ms = (self.first_wait_seconds, self.cap_seconds, self.memory_seconds)
        return (self.free, *(seconds * 1000 for seconds in ms))


# 5 typos cost nothing; past that a guesser at one name gets ~100 tries a day per address.
PER_USER_AND_CLIENT = Rule(free=5, cap_seconds=15 * 60, memory_seconds=24 * 60 * 60)
# 50 free: first logins of a whole office behind one NAT; then spraying names slows to 4/h.
PER_CLIENT = Rule(free=50, cap_seconds=15 * 60, memory_seconds=60 * 60)
# The same pace as per name and address: only whoever holds that browser fails here.
PER_DEVICE = Rule(free=5, cap_seconds=15 * 60, memory_seconds=24 * 60 * 60)

DEVICE_TTL_SECONDS = 90 * 24 * 60 * 60  # a quarter: long enough for part-time shifts
MAX_DEVICE_TOKENS = 5  # names remembered by one browser (a shared desk), newest first
_DEVICE_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_SEPARATOR = "."

# KEYS: d pairs (device record, its bucket), then the other buckets. ARGV[1] the
# casefolded username a device record must hold, ARGV[2] d, then Rule.argv(): the
# device rule, then one per other bucket. The first device vouching
# for the name is its only bucket; otherwise the other buckets count. Returns
# {ms to wait (nothing claimed when > 0), device index or 0, then per claimed
# bucket the lock before the claim and the one it set ('0': none)}.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local d = tonumber(ARGV[2])
local chosen, buckets, rules = 0, {}, {}
for i = 1, d do
  if redis.call('GET', KEYS[2 * i - 1]) == ARGV[1] then
    chosen, buckets[1], rules[1] = i, KEYS[2 * i], 3
    break
  end
end
if chosen == 0 then
  for j = 2 * d + 1, #KEYS do
    buckets[#buckets + 1] = KEYS[j]
    rules[#rules + 1] = 7 + 4 * (j - 2 * d - 1)
  end
end
local wait = 0
for _, b in ipairs(buckets) do
  local locked = tonumber(redis.call('HGET', b, 'until') or 0) - now
  if locked > wait then wait = locked end
end
local out = {wait, chosen}
if wait > 0 then return out end
for k, b in ipairs(buckets) do
  local r = rules[k]
  local free, first, cap = tonumber(ARGV[r]), tonumber(ARGV[r + 1]), tonumber(ARGV[r + 2])
  local n = redis.call('HINCRBY', b, 'n', 1)
  local before = redis.call('HGET', b, 'until') or '0'
  local set = '0'
  if n >= free then
    set = string.format('%d', now + math.min(cap, first * 2 ^ (n - free)))
    redis.call('HSET', b, 'until', set)
  end
  redis.call('PEXPIRE', b, ARGV[r + 3])
  out[#out + 1] = before
  out[#out + 1] = set
end
return out
"""

# A success: KEYS[1] the device record to (re)bind to ARGV[1] for ARGV[2] ms, then
# the buckets claimed, each with (mode, lock before, lock set) in ARGV. 'forget'
# clears the bucket; 'give-back' (the shared client bucket) takes back this attempt
# and the lock it set, if no later one replaced it, and never revives an expired bucket.
_SUCCEEDED = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 2, #KEYS do
  local a = 3 * i - 3
  if ARGV[a] == 'forget' then
    redis.call('DEL', KEYS[i])
  elseif redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('HINCRBY', KEYS[i], 'n', -1) <= 0 then
      redis.call('DEL', KEYS[i])
    elseif ARGV[a + 2] ~= '0' and redis.call('HGET', KEYS[i], 'until') == ARGV[a + 2] then
      redis.call('HSET', KEYS[i], 'until', ARGV[a + 1])
    end
  end
end
return 0
"""


@dataclass(frozen=True)
class Attempt:
    """One login attempt, claimed (``retry_after`` 0) or throttled."""

    retry_after: int
    """Seconds to wait before trying again; 0 when the attempt was counted and may go on."""
    name: str
    """The username, casefolded: "Alice" and "alice" share their buckets."""
    device: str | None
    """The presented device token that vouches for ``name``, if any."""
    claimed: tuple[tuple[str, str, str, str], ...] = ()
    """(bucket key, 'forget' or 'give-back', lock before, lock set) per bucket counted."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def device_tokens(cookie: str | None) -> list[str]:
    """The well-formed device tokens of a device cookie, newest first."""
    parts = (cookie or "").split(_SEPARATOR)[:MAX_DEVICE_TOKENS]
    return [token for token in parts if _DEVICE_TOKEN.fullmatch(token)]


def device_cookie(tokens: Sequence[str], newest: str) -> str:
    """The device cookie's value once ``newest`` vouched for (or was minted for) a login."""
    kept = [newest, *(token for token in tokens if token != newest)]
    return _SEPARATOR.join(kept[:MAX_DEVICE_TOKENS])


async def claim(redis: Redis, username: str, client: str | None, devices: Sequence[str]) -> Attempt:
    """Count a login attempt before its password is checked, or say how long to wait.
    A name that could not be a user gets no bucket of its own (garbage must not mint
    keys) and no device, so only the client's bucket counts it."""
    name = username.casefold()
    address = client or "unknown"
    client_bucket = keys.login_throttle(f"client:{address}")
    if not USERNAME.fullmatch(username):
        devices, others = [], [(client_bucket, PER_CLIENT, "give-back")]
    else:
        user_bucket = keys.login_throttle(f"user:{name}@{address}")
        others = [
            (user_bucket, PER_USER_AND_CLIENT, "forget"),
            (client_bucket, PER_CLIENT, "give-back"),
        ]
    devices = list(devices)[:MAX_DEVICE_TOKENS]
    device_keys = []
    for token in devices:
        digest = _digest(token)
        device_keys += [keys.login_device(digest), keys.login_throttle(f"device:{digest}")]
    rules = [PER_DEVICE] + [rule for _, rule, _ in others]
    args = [x for rule in rules for x in rule.argv()]
    reply = await redis.eval(
        _CLAIM,
        len(device_keys) + len(others),
        *device_keys,
        *(key for key, _, _ in others),
        name,
        len(devices),
        *args,
    )
    wait_ms, chosen, locks = int(reply[0]), int(reply[1]), [str(x) for x in reply[2:]]
    device = devices[chosen - 1] if chosen else None
    if wait_ms > 0:
        return Attempt(retry_after=max(1, math.ceil(wait_ms / 1000)), name=name, device=device)
    if device is not None:
        counted = [(keys.login_throttle(f"device:{_digest(device)}"), "forget")]
    else:
        counted = [(key, mode) for key, _, mode in others]
    claimed = tuple(
        (key, mode, locks[2 * i], locks[2 * i + 1]) for i, (key, mode) in enumerate(counted)
    )
    return Attempt(retry_after=0, name=name, device=device, claimed=claimed)


async def succeeded(redis: Redis, attempt: Attempt) -> str:
    """The claimed attempt was a correct login: give it back, and bind a device token
    to its user (the one presented, refreshed, or a new one). Returns that token."""
    token = attempt.device or secrets.token_urlsafe(32)
    args = [x for _, mode, before, set_ in attempt.claimed for x in (mode, before, set_)]
    await redis.eval(
        _SUCCEEDED,
        1 + len(attempt.claimed),
        keys.login_device(_digest(token)),
        *(key for key, _, _, _ in attempt.claimed),
        attempt.name,
        DEVICE_TTL_SECONDS * 1000,
        *args,
    )
    return token
