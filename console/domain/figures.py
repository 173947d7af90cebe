"""Queue figures (docs/api.md, figures): daily counters folded from the events, and the live queue.

"Today" is the day in ``CENTER_TIMEZONE`` (its midnights found by zoneinfo, so a
daylight-saving day lasts 23 or 25 hours). A call counts on the day it reached the
app (its conference's ``created_at``), a transfer on the day it was requested: the
day of a thing never depends on when its callbacks happened to arrive.

Counters live in one Redis hash per day (``keys.figures(day)``, kept
``RETENTION_SECONDS``), incremented with HINCRBY inside the unit's MULTI so they
commit with the events they count. Each call and each transfer is a *subject*
whose contribution (e.g. ``answered=1;answered_wait_ms=4000;wait_s:4=1``) is
remembered in ``keys.figures_contributions(day)``. Twilio may deliver callbacks late
and out of order, and the derived outcome can then change (a transfer first seen
as failed turns out completed; a conference seen ending unanswered turns out to
have started): the script below takes the old contribution back and adds the new
one, so every subject is counted once, by its latest outcome. It is queued on the
MULTI and reads only inside Redis at EXEC time (works on Redis 6.2).

Fields:

- ``answered``: conferences that started (an agent picked up); ``answered_wait_ms``
  sums their waits (the ``conference.started`` event's ``ts`` minus ``created_at``,
  at least 0: both the app's clock, never Twilio's ``Timestamp``); ``wait_s:<n>`` counts
  answered calls whose wait rounded *up* to whole seconds is n, so the service level
  can be computed for any threshold when read (``SERVICE_LEVEL_SECONDS`` is not
  needed when writing, and changing it applies to the stored days too).
- ``abandoned``: conferences that ended without ever starting, except callers who
  chose to leave the line (SPEC §9): ``callback_requests`` asked for a callback,
  ``left_messages`` left to leave a message. A callback's own conference is not an
  inbound call: never answered or abandoned here, only handled.
- ``handled``, ``handle_ms``: answered conferences that ended, and the sum of their
  lengths from start to end (both Twilio's ``Timestamp``: one clock), for the
  expected wait (console/domain/expected_wait.py).
- ``transfers_completed``, ``transfers_canceled``, ``transfers_failed`` and
  ``transfers_failed:<reason>``: transfers by their final status.
- ``transfer_answers``, ``transfer_answer_ms``: transfers whose colleague answered, and
  the sum of ``updated_at - created_at`` of their ``answered`` update.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, tzinfo
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from console.domain import keys
from console.domain.events import Event

RETENTION_SECONDS = 8 * 24 * 3600
WAIT_BUCKET = "wait_s:"
HANDLED, HANDLE_MS = "handled", "handle_ms"
FAILED_REASON = "transfers_failed:"
# Callers who left the line by choice (SPEC §9), counted apart from abandons.
LEFT_FOR = {"callback-requested": "callback_requests", "voicemail": "left_messages"}

# KEYS[1]: the day's counters, KEYS[2]: the day's contributions by subject.
# ARGV[1]: subject, ARGV[2]: its contribution now ("field=amount;..."), ARGV[3]: TTL.
_CONTRIBUTE = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old ~= ARGV[2] then
  if old then
    for field, amount in string.gmatch(old, '([^;=]+)=(%d+)') do
      redis.call('HINCRBY', KEYS[1], field, -tonumber(amount))
    end
  end
  for field, amount in string.gmatch(ARGV[2], '([^;=]+)=(%d+)') do
    redis.call('HINCRBY', KEYS[1], field, amount)
  end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 0
"""


def local_day(ms: int, zone: tzinfo) -> str:
    """The calendar day in ``zone`` of a time in ms, as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d")


def project(pipe: Pipeline, events: list[Event], zone: tzinfo) -> None:
    """Queue the counter updates the events imply (see the module docstring); days are
    days in ``zone`` (CENTER_TIMEZONE)."""
    for event in events:
        for day, subject, contribution in contributions(event, zone):
            encoded = ";".join(f"{field}={amount}" for field, amount in contribution.items())
            pipe.eval(
                _CONTRIBUTE,
                2,
                keys.figures(day),
                keys.figures_contributions(day),
                subject,
                encoded,
                RETENTION_SECONDS,
            )


def contributions(event: Event, zone: tzinfo) -> list[tuple[str, str, dict[str, int]]]:
    """(day, subject, counters) for what ``event`` settles; empty for anything else."""
    data = event.data
    callback = data.get("kind") == "callback"  # not an inbound call: never offered
    if callback and event.type == "conference.started":
        return []
    if event.type == "conference.ended" and data.get("started_at") is None:
        left_for = data.get("left_for")
        if callback or left_for:  # not an abandon: a choice (counted by its departure)
            counts = {LEFT_FOR[left_for]: 1} if left_for in LEFT_FOR else {}
            return [(local_day(data["created_at"], zone), "call:" + data["name"], counts)]
    if event.type == "call.dequeued" and data.get("arrived_at") is not None:
        # A caller at the choice leaving the line: the call's count, whichever of its
        # departure and its conference's end came first (one subject, counted once).
        counter = LEFT_FOR.get(data["reason"], "abandoned")
        return [(local_day(data["arrived_at"], zone), "call:" + data["call_sid"], {counter: 1})]
    if event.type == "conference.started" and data.get("started_at") is not None:
        # started_at is Twilio's Timestamp: the wait is measured on the app's clock
        wait = max(0, event.ts - data["created_at"])
        counts = {"answered": 1, "answered_wait_ms": wait, WAIT_BUCKET + str(_ceil_s(wait)): 1}
        return [(local_day(data["created_at"], zone), "call:" + data["name"], counts)]
    if event.type == "conference.ended" and data.get("started_at") is None:
        day = local_day(data["created_at"], zone)
        return [(day, "call:" + data["name"], {"abandoned": 1})]
    if event.type == "conference.ended" and data.get("ended_at") is not None:
        length = max(0, data["ended_at"] - data["started_at"])
        day = local_day(data["created_at"], zone)
        return [(day, "handled:" + data["name"], {HANDLED: 1, HANDLE_MS: length})]
    if event.type == "transfer.updated":
        return _transfer(data, zone)
    return []


def _ceil_s(ms: int) -> int:
    return math.ceil(ms / 1000)


def _transfer(data: dict[str, Any], zone: tzinfo) -> list[tuple[str, str, dict[str, int]]]:
    day, status = local_day(data["created_at"], zone), data["status"]
    if status == "answered":
        took = max(0, data["updated_at"] - data["created_at"])
        counts = {"transfer_answers": 1, "transfer_answer_ms": took}
        return [(day, "answer:" + data["id"], counts)]
    if status == "completed":
        counts = {"transfers_completed": 1}
    elif status == "canceled":
        counts = {"transfers_canceled": 1}
    elif status == "failed":
        reason = data.get("reason") or "unknown"
        counts = {"transfers_failed": 1, FAILED_REASON + reason: 1}
    else:
        # Still under way (or, after late callbacks, briefly so again): an earlier
        # outcome stays counted until the final one replaces it.
        return []
    return [(day, "transfer:" + data["id"], counts)]


def service_level(counters: dict[str, int], seconds: int) -> tuple[int, float | None]:
    """Calls answered within ``seconds``, and that number over answered + abandoned
    (None before the first call of the day)."""
    within = sum(
        count
        for field, count in counters.items()
        if field.startswith(WAIT_BUCKET) and int(field[len(WAIT_BUCKET) :]) <= seconds
    )
    offered = counters.get("answered", 0) + counters.get("abandoned", 0)
    return within, (round(within / offered, 4) if offered else None)


async def read(redis: Redis, now: int, service_level_seconds: int, zone: tzinfo) -> dict[str, Any]:
    """The figures (docs/api.md) as of ``now``: the live queue and today's counters,
    today being the day in ``zone`` (CENTER_TIMEZONE)."""
    day = local_day(now, zone)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lrange(keys.QUEUE, 0, -1)
        pipe.hgetall(keys.QUEUE_INFO)
        pipe.hgetall(keys.figures(day))
        queue, info, raw = await pipe.execute()
    queued_at = [json.loads(info[n])["queued_at"] for n in queue if n in info]
    counters = {field: int(value) for field, value in raw.items()}
    within, level = service_level(counters, service_level_seconds)
    answered = counters.get("answered", 0)
    answers = counters.get("transfer_answers", 0)
    reasons = {
        field[len(FAILED_REASON) :]: count
        for field, count in sorted(counters.items())
        if field.startswith(FAILED_REASON) and count
    }
    return {
        "day": day,
        "waiting": len(queue),
        "longest_wait_ms": max(0, now - min(queued_at)) if queued_at else None,
        "answered": answered,
        "abandoned": counters.get("abandoned", 0),
        "callbacks_requested": counters.get("callback_requests", 0),
        "left_messages": counters.get("left_messages", 0),
        "mean_wait_ms": _mean(counters.get("answered_wait_ms", 0), answered),
        "service_level_seconds": service_level_seconds,
        "answered_within_service_level": within,
        "service_level": level,
        "transfers": {
            "succeeded": counters.get("transfers_completed", 0),
            "failed": counters.get("transfers_failed", 0),
            "failed_reasons": reasons,
            "canceled": counters.get("transfers_canceled", 0),
        },
        "transfer_answer": {
            "count": answers,
            "mean_ms": _mean(counters.get("transfer_answer_ms", 0), answers),
        },
    }


def _mean(total: int, count: int) -> int | None:
    return round(total / count) if count else None
