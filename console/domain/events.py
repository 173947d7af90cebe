"""Events of the durable log (a Redis Stream) and how they are written.

Each entry carries its type, the time the app received what caused it, its JSON
data and its audience: ``*`` for what every user may see (the queue, presence),
else the agents involved in the conference it concerns (supervisors see all); a
supervisor's leg and actions: supervisors only (docs/websocket.md, silent monitoring).
The WebSocket hub filters on the audience without reading any other state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from console.config import Settings
from console.domain import keys
from console.domain.positions import SUBSTITUTE, Positions

EVERYONE = "*"
AGENTS_ONLY = "agents:"
"""Prefix of an audience of agents that supervisors are not sent (they have the
true events that a copy for agents stands in for)."""
# Event data is encoded by msgspec, inside the unit of work: several times faster than
# json.dumps on a long line's queue.updated. Its JSON is compact and UTF-8, which the
# hub splices into each WebSocket message as it is.
_DATA_ENCODER = msgspec.json.Encoder()


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Event:
    """One entry of the event log, before Redis gives it its id."""

    type: str
    data: dict[str, Any]
    ts: int
    audience: frozenset[str] | None = None  # None: everyone
    conference: str | None = field(default=None)
    agents_only: bool = False  # not sent to supervisors

    def fields(self) -> dict[str, str]:
        audience = EVERYONE if self.audience is None else ",".join(sorted(self.audience))
        if self.agents_only:
            audience = AGENTS_ONLY + audience
        return {
            "type": self.type,
            "ts": str(self.ts),
            "data": _DATA_ENCODER.encode(self.data).decode(),
            "audience": audience,
            "conference": self.conference or "",
        }


HISTORY_KEEP_FACTOR = 10
"""With history on, the log keeps events not yet stored up to this many times
EVENT_LOG_MAXLEN (SPEC §3); console.domain.history_log trims it back to the maxlen."""


def log_cap(settings: Settings) -> int:
    """The length each append caps the log at: EVENT_LOG_MAXLEN, or with history on
    (a database configured) ``HISTORY_KEEP_FACTOR`` times it."""
    factor = HISTORY_KEEP_FACTOR if settings.database_url else 1
    return settings.event_log_maxlen * factor


# KEYS: the log, the line. ARGV: maxlen, the 'token offset' pairs, the entry's fields
# and values: an XADD whose joining callers' positions are known at EXEC time
# (console/domain/positions.py).
_XADD_POSITIONED = (
    SUBSTITUTE
    + """
local fields = positioned_args(3, ARGV[2], KEYS[2])
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
"""
)


def append_events(
    pipe: Pipeline, events: list[Event], maxlen: int, positions: Positions | None = None
) -> None:
    """Queue XADDs on a MULTI pipeline, so they commit with the state they announce;
    ``maxlen`` is ``log_cap``'s; ``positions``: the tokens of callers whose place in
    line is worked out at EXEC time."""
    for event in events:
        fields = event.fields()
        pairs = positions.pairs(fields["data"]) if positions else ""
        if pairs:
            flat = [x for pair in fields.items() for x in pair]
            pipe.eval(_XADD_POSITIONED, 2, keys.EVENTS, keys.QUEUE, maxlen, pairs, *flat)
        else:
            pipe.xadd(keys.EVENTS, fields, maxlen=maxlen, approximate=True)
    if events:
        pipe.hincrby(keys.COUNTERS, "events_published", len(events))


async def trim_by_age(redis: Redis, max_age_hours: int) -> int:
    """Drop events older than ``max_age_hours`` (0: keep by length only); the length
    cap is applied on every append. Returns how many were dropped."""
    if max_age_hours <= 0:
        return 0
    cutoff = now_ms() - max_age_hours * 3_600_000
    return await redis.xtrim(keys.EVENTS, minid=f"{cutoff}-0", approximate=False)
