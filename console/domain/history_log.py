"""The event log as the history's source (docs/history.md): the consumer group the
history writers share, what they have not stored yet (their lag), trimming that
spares it, and the events lost when the log had to be trimmed past it.

With history on, each append caps the log at ``KEEP_FACTOR`` times EVENT_LOG_MAXLEN
(console.domain.events.log_cap) and ``trim_log`` brings it back to EVENT_LOG_MAXLEN
(and the age limit) except for the events the writers have not stored. Events
lost anyway (the cap reached) are logged at ERROR and counted in ``wl:counters``:
those never delivered to the group from Redis's own counters (entries added, read
by the group, still in the log), those delivered to a writer that died by the
writer that claims them (``count_lost``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from console.config import Settings
from console.domain import keys
from console.domain.events import HISTORY_KEEP_FACTOR, now_ms, trim_by_age

log = logging.getLogger(__name__)

GROUP = "history"
KEEP_FACTOR = HISTORY_KEEP_FACTOR
LOST = "history_events_lost"  # field of keys.COUNTERS: events trimmed before stored
# Field of keys.COUNTERS: the undelivered losses already counted (Redis's counters
# give their lifetime total; only the increase is new).
LOST_MARK = "history_lost_mark"
COUNT_PAGE = 5000  # entries counted per script call: a few ms of Redis time at most

# KEYS[1]: the log. ARGV[1]: first id (inclusive, or "(id"), ARGV[2]: at most this many.
# How many entries there are from ARGV[1] on, and the last one's id: only the count
# leaves Redis.
_COUNT = """
local page = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
if #page == 0 then return {0, ''} end
return {#page, page[#page][1]}
"""

# KEYS[1]: the log, KEYS[2]: keys.COUNTERS; ARGV[1]: the group, ARGV[2]: LOST_MARK.
# The group is created at the log's start with its read counter set (the entries
# trimmed before it count as read), so Redis keeps the counter that tells events
# trimmed before the group read them (Position.lost_undelivered). 1: created.
_CREATE_GROUP = """
local read = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  read = (fields['entries-added'] or 0) - fields['length']
end
local reply = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM',
                          'ENTRIESREAD', read)
if type(reply) == 'table' and reply.err then
  if string.find(reply.err, 'BUSYGROUP') then return 0 end
  return reply
end
redis.call('HDEL', KEYS[2], ARGV[2])  -- a new group's counters start afresh
return 1
"""

# KEYS[1]: keys.COUNTERS. ARGV[1]: lifetime undelivered losses. Counts the increase once,
# whichever process notices it first; returns it.
_MARK_LOST = """
local seen = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
local total = tonumber(ARGV[1])
if total <= seen then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], total)
redis.call('HINCRBY', KEYS[1], ARGV[3], total - seen)
return total - seen
"""


def id_pair(raw: str) -> tuple[int, int]:
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


async def create_group(redis: Redis) -> bool:
    """The writers' group, reading from the start of what the log holds (nothing in it
    is skipped on the first start); False when it existed."""
    try:
        created = await redis.eval(_CREATE_GROUP, 2, keys.EVENTS, keys.COUNTERS, GROUP, LOST_MARK)
        return bool(created)
    except ResponseError as exc:
        if "ENTRIESREAD" not in str(exc).upper() and "syntax" not in str(exc).lower():
            raise
    try:  # Redis 6.2: no read counter (lost undelivered events go uncounted)
        await redis.xgroup_create(keys.EVENTS, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


@dataclass(frozen=True)
class Position:
    """One consistent look at the log and the group (see ``position``)."""

    length: int
    first: str | None  # the oldest entry's id
    added: int | None  # entries ever added (Redis 7)
    delivered: str  # the group's last-delivered-id
    read: int | None  # entries the group has read, trimmed ones before it counted (Redis 7)
    lag: int | None  # Redis's lag: undelivered entries, plus any trimmed undelivered
    pending: int
    oldest_pending: str | None
    now_ms: int  # Redis's clock

    @property
    def gap(self) -> bool:
        """Entries after the group's position were trimmed before it read them: the
        oldest entry left is past it (trimming takes the oldest first)."""
        return self.first is not None and id_pair(self.first) > id_pair(self.delivered)

    def lost_undelivered(self) -> int | None:
        """Entries ever trimmed before the group read them (None: Redis cannot say).
        Only exact while ``gap``: every entry up to the group's position was then read
        or lost, and every undelivered one left is in the log."""
        if not self.gap or self.added is None or self.read is None:
            return None
        return self.added - self.read - self.length


def queue_position(pipe: Any) -> None:
    """Queue the commands ``parse_position`` reads, on a MULTI pipeline."""
    pipe.xinfo_stream(keys.EVENTS)
    pipe.xinfo_groups(keys.EVENTS)
    pipe.xpending(keys.EVENTS, GROUP)
    pipe.time()


def parse_position(replies: list[Any]) -> Position | None:
    """The results of ``queue_position``'s commands; None without the group."""
    stream, groups, pending, (seconds, micros) = replies[:4]
    group = next((g for g in groups if g["name"] == GROUP), None)
    if group is None:
        return None
    first = stream.get("first-entry")
    return Position(
        length=int(stream["length"]),
        first=first[0] if first else None,
        added=stream.get("entries-added"),
        delivered=group["last-delivered-id"],
        read=group.get("entries-read"),
        lag=group.get("lag"),
        pending=int(pending["pending"]),
        oldest_pending=pending["min"] if pending["pending"] else None,
        now_ms=int(seconds) * 1000 + int(micros) // 1000,
    )


async def position(redis: Redis) -> Position | None:
    """The log and the group in one MULTI; None when there is no log or no group."""
    try:
        async with redis.pipeline(transaction=True) as pipe:
            queue_position(pipe)
            return parse_position(await pipe.execute())
    except ResponseError as exc:
        if "no such key" in str(exc).lower() or "NOGROUP" in str(exc):
            return None
        raise


async def note_lost_undelivered(redis: Redis, at: Position) -> int:
    """Count (once, in ``wl:counters``) and log what the log lost before the group read
    it, as ``at`` shows; returns how many more were lost."""
    total = at.lost_undelivered()
    if not total or total <= 0:
        return 0
    more = int(await redis.eval(_MARK_LOST, 1, keys.COUNTERS, total, LOST_MARK, LOST))
    if more:
        log.error(
            "history: %d events were trimmed from the event log before the history "
            "writer read them; they are missing from the call history (EVENT_LOG_MAXLEN "
            "x %d reached while PostgreSQL lagged)",
            more,
            KEEP_FACTOR,
        )
    return more


async def count_lost(redis: Redis, ids: list[str]) -> None:
    """Count and log events a writer was given but the log no longer holds (trimmed
    while a writer that died held them)."""
    if not ids:
        return
    await redis.hincrby(keys.COUNTERS, LOST, len(ids))
    log.error(
        "history: %d events (%s … %s) were trimmed from the event log before they were "
        "stored; they are missing from the call history",
        len(ids),
        ids[0],
        ids[-1],
    )


async def oldest_unstored(redis: Redis, at: Position) -> str | None:
    """The id of the oldest event the writers have not stored: the oldest one given to
    a writer and not acknowledged, else the first one not given yet; None if none."""
    if at.oldest_pending is not None:
        return at.oldest_pending
    nxt = await redis.xrange(keys.EVENTS, min=f"({at.delivered}", count=1)
    return nxt[0][0] if nxt else None


async def count_from(redis: Redis, start: str, limit: int) -> int:
    """How many entries the log holds from ``start`` (inclusive) on, counting no
    further than ``limit``; in pages, so Redis is never held long."""
    counted, cursor = 0, start
    while counted < limit:
        page = min(COUNT_PAGE, limit - counted)
        n, last = await redis.eval(_COUNT, 1, keys.EVENTS, cursor, page)
        counted += int(n)
        if int(n) < page:
            break
        cursor = f"({last}"
    return counted


@dataclass(frozen=True)
class Backlog:
    """What the writers have not stored: how many events, and how long the oldest has
    waited (by its id, Redis's clock)."""

    events: int
    seconds: float
    lost: int


async def backlog(redis: Redis) -> Backlog:
    """The history's lag (zero without a group: nothing to store yet)."""
    at = await position(redis)
    lost = int(await redis.hget(keys.COUNTERS, LOST) or 0)
    if at is None:
        return Backlog(0, 0.0, lost)
    undelivered = await _undelivered(redis, at)
    oldest = await oldest_unstored(redis, at)
    seconds = 0.0
    if oldest is not None:
        seconds = max(0, at.now_ms - id_pair(oldest)[0]) / 1000
    return Backlog(at.pending + undelivered, seconds, lost)


async def _undelivered(redis: Redis, at: Position) -> int:
    if at.first is None:
        return 0
    if at.gap:
        return at.length
    if at.lag is not None:
        seen = int(await redis.hget(keys.COUNTERS, LOST_MARK) or 0)
        return max(0, at.lag - seen)
    return await count_from(redis, f"({at.delivered}", at.length)


async def trim(redis: Redis, maxlen: int, max_age_hours: int) -> int:
    """Trim the log to ``maxlen`` entries and the age limit (0: none), sparing the
    events the history writers have not stored (the append's cap bounds those);
    note losses. Returns how many entries were dropped."""
    at = await position(redis)
    oldest = await oldest_unstored(redis, at) if at is not None else None
    dropped = 0
    if await redis.xlen(keys.EVENTS) > maxlen:
        if oldest is not None and await count_from(redis, oldest, maxlen) >= maxlen:
            dropped += await redis.xtrim(keys.EVENTS, minid=oldest, approximate=True)
        else:  # the newest maxlen hold every unstored event
            dropped += await redis.xtrim(keys.EVENTS, maxlen=maxlen, approximate=True)
    if max_age_hours > 0:
        cutoff = f"{now_ms() - max_age_hours * 3_600_000}-0"
        if oldest is not None and id_pair(oldest) < id_pair(cutoff):
            cutoff = oldest
        dropped += await redis.xtrim(keys.EVENTS, minid=cutoff, approximate=False)
    if at is not None:
        await note_lost_undelivered(redis, at)
    return dropped


async def trim_log(redis: Redis, settings: Settings) -> int:
    """The periodic trim (the runner's sweeper): without history as ever (the age
    limit; each append applies the length), with it ``trim``."""
    if not settings.database_url:
        return await trim_by_age(redis, settings.event_log_max_age_hours)
    return await trim(redis, settings.event_log_maxlen, settings.event_log_max_age_hours)
