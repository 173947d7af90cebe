"""A caller's place in line and the wait to expect (SPEC §9), from what Redis holds:
the line, the agents' statuses and today's handled calls (console/domain/figures.py).

The estimate: callers ahead of an available agent wait for nothing; the others wait
for busy agents to finish, one average handle time (today's, in CENTER_TIMEZONE; the
day before while today has none) per round of all signed-in agents. Unknown (None)
until a call has been handled, or while nobody is signed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import tzinfo

from redis.asyncio import Redis

from console.domain import keys
from console.domain.figures import HANDLE_MS, HANDLED, local_day
from console.domain.records import Agent, AgentStatus

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Place:
    """1 = next; ``expected_ms`` None while the app cannot estimate it."""

    position: int
    expected_ms: int | None


def estimate(position: int, statuses: list[str], handled: int, handle_ms: int) -> int | None:
    """The wait of the caller at ``position`` given the agents' statuses and the
    handled calls' count and total handle time (module docstring)."""
    signed_in = sum(status != AgentStatus.OFFLINE for status in statuses)
    if handled <= 0 or signed_in == 0:
        return None
    free = sum(status == AgentStatus.AVAILABLE for status in statuses)
    ahead = position - free  # callers who must wait for a busy agent, this one included
    if ahead <= 0:
        return 0
    return round(math.ceil(ahead / signed_in) * handle_ms / handled)


def must_wait(position: int, statuses: list[str]) -> bool:
    """The caller at ``position`` has no available agent to take them now."""
    return position > sum(status == AgentStatus.AVAILABLE for status in statuses)


async def handled_figures(redis: Redis, now: int, zone: tzinfo) -> tuple[int, int]:
    """Today's handled calls and their total handle time (the day before's while
    today has none): what ``estimate`` averages."""
    today, yesterday = local_day(now, zone), local_day(now - DAY_MS, zone)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.figures(today), HANDLED, HANDLE_MS)
        pipe.hmget(keys.figures(yesterday), HANDLED, HANDLE_MS)
        now_figures, before = await pipe.execute()
    return _handled(now_figures, before)


def _handled(today: list[str | None], yesterday: list[str | None]) -> tuple[int, int]:
    handled, handle_ms = (int(v or 0) for v in today)
    if not handled:
        handled, handle_ms = (int(v or 0) for v in yesterday)
    return handled, handle_ms


async def read(redis: Redis, call_sid: str | None, now: int, zone: tzinfo) -> Place | None:
    """The place of ``call_sid`` in line (None when it is not there), or with
    ``call_sid`` None the place a caller arriving now would take."""
    today, yesterday = local_day(now, zone), local_day(now - DAY_MS, zone)
    async with redis.pipeline(transaction=False) as pipe:
        if call_sid is None:
            pipe.llen(keys.QUEUE)
        else:
            pipe.lpos(keys.QUEUE, call_sid)
        pipe.hvals(keys.AGENTS)
        pipe.hmget(keys.figures(today), HANDLED, HANDLE_MS)
        pipe.hmget(keys.figures(yesterday), HANDLED, HANDLE_MS)
        index, agents, now_figures, before = await pipe.execute()
    if index is None:
        return None
    position = index + 1
    handled, handle_ms = _handled(now_figures, before)
    statuses = [Agent.from_json(raw).status for raw in agents]
    return Place(position, estimate(position, statuses, handled, handle_ms))
